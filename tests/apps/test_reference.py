"""The shipped reference record reproduces on the machine that runs the tests: the smoke reference
(results/reference/smoke-deterministic), re-run from its own overrides in deterministic mode, gives the weights'
hash of every iteration and of every checkpoint the record holds, and its losses (docs/reproducibility.md)."""

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from deeplab_mobile.compare import compare_runs
from deeplab_mobile.engine.trace import read_hashes, read_trace
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # the generated dataset and 250 iterations of the quickstart's network

REFERENCE = ROOT / "results" / "reference" / "smoke-deterministic"


def test_the_smoke_reference_trains_the_same_weights_here(tmp_path_factory):
    overrides = [str(o) for o in OmegaConf.load(REFERENCE / ".hydra" / "overrides.yaml")]
    assert "trainer.deterministic=true" in overrides
    tmp = tmp_path_factory.mktemp("reference")
    run = tmp / "run"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "ONEDNN_", "ATEN_", "MKL_"))}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            *overrides,
            f"data.generate.root={tmp / 'data'}",  # the same generated data, written here (its manifest is checked)
            f"hydra.run.dir={run}",
            "progress=false",
        ],
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    comparison = compare_runs(run, REFERENCE)
    assert comparison.sections["data"] == []  # the same images and labels
    mine, ours = read_trace(run / "train_loss.csv"), read_trace(REFERENCE / "train_loss.csv")
    assert len(ours) == 250 and all(h for _, h in ours.values())
    assert mine == ours  # every iteration's loss and the weights' hash after it
    assert read_hashes(run / "weight_hashes.json") == read_hashes(REFERENCE / "weight_hashes.json")
    assert (
        json.loads((run / "metrics.json").read_text())["ss"]["miou"]
        == json.loads((REFERENCE / "metrics.json").read_text())["ss"]["miou"]
    )
