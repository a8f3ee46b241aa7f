"""Deterministic mode end to end: the same few iterations trained in fresh processes under other thread counts and
instruction-set caps give bit-identical weights and losses, where the default mode's differ; compare_runs says
so, and names the variables the environments differed in."""

import json
import os
import subprocess
import sys

import pytest
import torch

from deeplab_mobile.compare import compare_runs
from deeplab_mobile.engine.checkpoint import load_checkpoint, weights_sha256
from tests.helpers import ROOT, small_run

pytestmark = pytest.mark.slow  # four trainings, each in a fresh process

SETTINGS = {
    "one_thread": {"OMP_NUM_THREADS": "1"},
    "wide": {"OMP_NUM_THREADS": "2", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"},
}


def train(voc, folder, env, *extra):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "ONEDNN_", "ATEN_", "MKL_"))}
    overrides = small_run(voc, "trainer.iters=4", "trainer.ckpt_every=2", "eval.mf=false", "eval.workers=0")
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, "data.workers=0"]
    done = subprocess.run(
        [*command, *extra, f"hydra.run.dir={folder}"],
        env={**environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def weights(folder):
    return load_checkpoint(folder / "checkpoints" / "last.pt")["model"]


def test_deterministic_weights_are_bit_identical_across_threads_and_isa(synthetic_voc, tmp_path):
    det = {name: train(synthetic_voc, tmp_path / f"det_{name}", env, "trainer.deterministic=true")
           for name, env in SETTINGS.items()}  # fmt: skip
    a, b = weights(det["one_thread"]), weights(det["wide"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (det["one_thread"] / "train_loss.csv").read_text() == (det["wide"] / "train_loss.csv").read_text()
    hashes = json.loads((det["wide"] / "weight_hashes.json").read_text())
    assert list(hashes) == ["2", "4"] and hashes["4"] == weights_sha256(b)
    record = json.loads((det["wide"] / "environment.json").read_text())
    assert record["deterministic"]["threads"] == 2 and record["threads"]["intra_op"] == 2
    assert record["cpu"]["aten_capability"] == "AVX2" and record["numerics_env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    c = compare_runs(det["one_thread"], det["wide"])
    assert c.training == [
        "weights after every iteration: bit-identical over 1..4",
        "losses: bit-identical over iterations 1..4",
        "weights: bit-identical at every common checkpoint (2, 4)",
    ]
    assert c.metrics[0]["difference"] == 0

    plain = {name: train(synthetic_voc, tmp_path / f"plain_{name}", env) for name, env in SETTINGS.items()}
    a, b = weights(plain["one_thread"]), weights(plain["wide"])
    assert not all(torch.equal(a[k], b[k]) for k in a)  # the default mode follows the environment
    c = compare_runs(plain["one_thread"], plain["wide"])
    assert "weights: first differ" in c.training[-1] and "replay.py" in c.training[1]
    assert {k for k, _, _ in c.sections["numerics environment variables"]} == {
        "OMP_NUM_THREADS",
        "ONEDNN_MAX_CPU_ISA",
        "ATEN_CPU_CAPABILITY",
    }


def test_a_process_without_the_pins_is_refused_with_the_fix(synthetic_voc, tmp_path):
    from deeplab_mobile.apps.train import train as train_in_process
    from deeplab_mobile.determinism import DeterminismError
    from tests.helpers import tiny

    with pytest.raises(DeterminismError, match="ONEDNN_MAX_CPU_ISA"):
        train_in_process(tiny(synthetic_voc, "trainer.deterministic=true"), tmp_path)


def test_numerics_probe_finds_what_changes_the_weights_and_names_its_variants(tmp_path):
    """scripts/numerics_probe.py on two variants: the same run again is identical, ATen without vectors is not
    (whatever thread count the test process has: xdist workers run one); the table and the JSON name both, and a
    variant whose folder name holds "=" (Hydra's command line must take it quoted) runs."""
    from deeplab_mobile.apps.numerics import main

    out = tmp_path / "probe"
    args = ["--iters", "2", "--out", str(out), "--data", str(tmp_path / "data")]
    assert main([*args, "--only", "again", "aten_default", "threads=3"]) == 0
    rows = {r["name"]: r for r in json.loads((out / "probe.json").read_text())["variants"]}
    assert list(rows) == ["default", "again", "threads=3", "aten_default"]
    assert rows["again"]["identical_weights"] and not rows["aten_default"]["identical_weights"]
    assert "| aten_default |" in (out / "probe.md").read_text() and (out / "threads=3" / "metrics.json").is_file()
