"""scripts/replay.py on a small deterministic run: the replayed iteration's loss and weights are the run's own (its
train_loss.csv, written by the training), nothing is written into the run folder, and bad arguments are refused
in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deeplab_mobile.engine.trace import read_trace
from tests.helpers import ROOT, small_run

pytestmark = pytest.mark.slow  # a training and its replay, each in fresh processes


def command(*args):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "ONEDNN_", "ATEN_", "MKL_"))}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        env={**environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )


def listing(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(Path(folder).rglob("*"))}


def test_a_replay_gives_the_run_s_own_iteration_op_by_op(synthetic_voc, tmp_path):
    run = tmp_path / "run"
    overrides = small_run(
        synthetic_voc, "trainer.iters=3", "trainer.ckpt_every=3", "eval.mf=false", "eval.workers=0", "data.workers=0"
    )
    done = command(ROOT / "scripts" / "train.py", *overrides, "trainer.deterministic=true", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    trace = read_trace(run / "train_loss.csv")
    before = listing(run)

    out = tmp_path / "replay" / "it2.json"
    done = command(ROOT / "scripts" / "replay.py", run, "--iteration", "2", "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gave the run's own losses (2 compared)" in done.stdout
    record = json.loads(out.read_text())
    assert record["iteration"] == 2 and float(record["loss"]) == trace[2][0]
    assert record["weights_after"][:16] == trace[2][1]  # the training's own hash of its weights after iteration 2
    assert record["against_the_run"]["first_differing_loss"] is None
    assert record["environment"]["deterministic"]["threads"] == 2
    assert {op["phase"] for op in record["ops"]} >= {"forward", "backward", "optimizer"}
    assert listing(run) == before  # nothing written into the run folder

    cases = {
        ("--iteration", "4", "--out", tmp_path / "x.json"): "trained iterations 1..3",
        ("--iteration", "1", "--out", run / "x.json"): "inside the run folder",
        ("--iteration", "1", "--out", tmp_path / "x.txt"): "a .json file",
    }
    for args, message in cases.items():
        done = command(ROOT / "scripts" / "replay.py", run, *args)
        assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    done = command(
        ROOT / "scripts" / "replay.py", tmp_path / "nowhere", "--iteration", "1", "--out", tmp_path / "y.json"
    )
    assert done.returncode == 1 and "not a training run folder" in done.stderr
    assert listing(run) == before
