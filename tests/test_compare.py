"""compare_runs on hand-built run folders whose differences are known: every section finds exactly what was made
to differ, the first divergences, the metric difference against an independent mIoU, and the refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from deeplab_mobile.apps.compare_runs import main
from deeplab_mobile.compare import CompareError, compare_runs
from tests.helpers import ROOT

CLASSES = ["background", "cat", "dog"]


def environment(**changes):
    record = {
        "version": 1,
        "code": {"package_version": "0.1.0", "commit": "a" * 40, "dirty": False, "diff_sha256": None},
        "python": "3.12.3",
        "libraries": {"numpy": "2.3.0", "torch": "2.14.1"},
        "torch_build": {"torch": "2.14.1", "onednn": "v3.12.0", "mkl": "2024.2"},
        "cpu": {"vendor": "AuthenticAMD", "model": "AMD EPYC", "isa": ["avx2", "avx512f"], "logical_cores": 2},
        "threads": {"intra_op": 2, "inter_op": 2},
        "numerics_env": {},
        "deterministic": None,
        "config_sha256": "c" * 64,
        "data": {"sha256": "d" * 64, "splits": {"train": {"samples": 4, "masks_sha256": "m" * 64}}},
    }
    for key, value in changes.items():
        target = record
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    return record


def hand_matrices(seed, images=6):
    """(images, 3, 3) confusion matrices with every class present."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 20, (images, 3, 3))
    m[:, np.arange(3), np.arange(3)] += 60
    return m.astype(np.int64)


def miou(per_image):
    """The set's mIoU from the summed matrix, written out independently of the package."""
    m = per_image.sum(0).astype(float)
    tp = np.diag(m)
    return float(np.mean(tp / (m.sum(0) + m.sum(1) - tp)))


def make_run(folder, lr=0.007, env=None, losses=None, hashes=None, matrices=None, classes=CLASSES, steps=None):
    folder.mkdir(parents=True)
    (folder / ".hydra").mkdir()
    config = {"num_classes": len(classes), "optim": {"lr": lr, "weight_decay": 1e-4}, "trainer": {"seed": 0}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if env is not None:
        (folder / "environment.json").write_text(json.dumps(env))
    if losses is not None and steps is not None:  # deterministic mode's log: the weights' hash after each iteration
        lines = ["iteration,loss,weights"] + [
            f"{i},{v!r},{h}" for i, (v, h) in enumerate(zip(losses, steps, strict=True), 1)
        ]
        (folder / "train_loss.csv").write_text("\n".join(lines) + "\n")
    elif losses is not None:
        lines = ["iteration,loss"] + [f"{i},{v!r}" for i, v in enumerate(losses, 1)]
        (folder / "train_loss.csv").write_text("\n".join(lines) + "\n")
    if hashes is not None:
        (folder / "weight_hashes.json").write_text(json.dumps({str(k): v for k, v in hashes.items()}))
    if matrices is not None:
        names = [f"img{i}" for i in range(len(matrices))]
        np.savez(folder / "per_image_confusion.npz", names=np.asarray(names), confusion=matrices)
        score = miou(matrices)
        metrics = {"ss": {"miou": score, "iou": dict.fromkeys(classes, 0.5)}, "eval": {"os": 8}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def two_runs(tmp_path):
    losses_a = [2.5, 2.25, 2.0, 1.75, 1.5]
    losses_b = [2.5, 2.25, 2.0000002, 1.75, 1.5]  # the third iteration parts
    env_b = environment(
        **{
            "libraries.torch": "2.15.0",
            "cpu.vendor": "GenuineIntel",
            "cpu.isa": ["amx_bf16", "avx2", "avx512f"],
            "numerics_env": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
            "data.sha256": "e" * 64,
        }
    )
    a = make_run(
        tmp_path / "a", env=environment(), losses=losses_a, hashes={2: "h2", 4: "h4"}, matrices=hand_matrices(0)
    )
    b = make_run(
        tmp_path / "b", lr=0.01, env=env_b, losses=losses_b, hashes={2: "h2", 4: "other"}, matrices=hand_matrices(1)
    )
    return a, b


def listing(*folders):
    return {p: p.stat().st_mtime_ns for f in folders for p in sorted(Path(f).rglob("*"))}


def test_each_section_finds_exactly_what_differs(two_runs):
    a, b = two_runs
    c = compare_runs(a, b)
    keys = {title: [k for k, _, _ in rows] for title, rows in c.sections.items()}
    assert keys["settings"] == ["optim.lr"]
    assert keys["code"] == []
    assert keys["libraries"] == ["torch"]
    assert keys["hardware and build"] == ["cpu.vendor", "cpu.isa"]
    assert dict((k, (va, vb)) for k, va, vb in c.sections["hardware and build"])["cpu.isa"][1] == "only B: amx_bf16"
    assert c.sections["numerics environment variables"] == [("ONEDNN_MAX_CPU_ISA", "(unset)", "AVX2")]
    assert [k for k, _, _ in c.sections["data"]][:1] == ["data.sha256"]
    assert c.training[0].startswith("losses: first differ at iteration 3")
    assert "2 identical iterations before it" in c.training[0]
    # the loss of iteration 3 is computed with the weights iteration 2's update made: the replay to run first
    assert c.training[1].startswith("to find the operator: `scripts/replay.py <run> --iteration 2 --out")
    assert c.training[2] == "weights: first differ at the checkpoint of iteration 4 (last identical at iteration 2)"


def test_per_iteration_weight_hashes_name_the_update_that_parts_before_the_losses_do(tmp_path):
    """Deterministic mode's log: the weights part after iteration 2 while the losses stay identical until 4 (the
    difference sits where it barely reaches the loss yet); the hint names iteration 2, not 3."""
    losses = [2.5, 2.25, 2.0, 1.75]
    a = make_run(tmp_path / "a", losses=losses, steps=["s1", "s2", "s3", "s4"], matrices=hand_matrices(0))
    b = make_run(
        tmp_path / "b", losses=[*losses[:3], 1.7500001], steps=["s1", "t2", "t3", "t4"], matrices=hand_matrices(0)
    )
    c = compare_runs(a, b)
    assert c.training[0] == "weights: first differ after iteration 2's update (identical after 1)"
    assert c.training[1].startswith("losses: first differ at iteration 4")
    assert "--iteration 2 " in c.training[2] and len([line for line in c.training if "replay" in line]) == 1
    same = compare_runs(a, make_run(tmp_path / "c", losses=losses, steps=["s1", "s2", "s3", "s4"]))
    assert same.training[:2] == ["weights after every iteration: bit-identical over 1..4", "losses: bit-identical over "
                                 "iterations 1..4"]  # fmt: skip


def test_a_run_still_training_is_compared_with_a_finished_one_by_its_class_count(tmp_path):
    """A run without scores yet (its config's class count) against one scored on named classes: compared; another
    count is refused."""
    finished = make_run(tmp_path / "done", losses=[1.0], matrices=hand_matrices(0))
    running = make_run(tmp_path / "running", losses=[1.0])
    assert compare_runs(running, finished).training[0] == "losses: bit-identical over iterations 1..1"
    other = make_run(tmp_path / "other", losses=[1.0], classes=["a", "b"])
    with pytest.raises(CompareError, match="has 2 classes"):
        compare_runs(other, finished)


def test_the_metric_difference_is_independent_mious_with_a_paired_interval(two_runs):
    a, b = two_runs
    (row,) = compare_runs(a, b).metrics
    want = miou(hand_matrices(1)) - miou(hand_matrices(0))
    assert row["difference"] == pytest.approx(want, abs=1e-12)
    low, high = row["ci95"]
    assert low <= want <= high and high - low > 0


def test_identical_runs_have_nothing_to_report(tmp_path):
    args = dict(env=environment(), losses=[1.0, 0.5], hashes={2: "h"}, matrices=hand_matrices(0))
    a, b = make_run(tmp_path / "a", **args), make_run(tmp_path / "b", **args)
    c = compare_runs(a, b)
    assert c.identical_setup
    assert c.training == [
        "losses: bit-identical over iterations 1..2",
        "weights: bit-identical at every common checkpoint (2)",
    ]
    assert c.metrics[0]["difference"] == 0 and c.metrics[0]["ci95"] == [0.0, 0.0]


def test_the_command_prints_exits_0_and_writes_nothing_into_the_folders(two_runs, tmp_path, capsys):
    a, b = two_runs
    before = listing(a, b)
    assert main([str(a), str(b), "--json", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    assert "optim.lr" in out and "first differ at iteration 3" in out and "ONEDNN_MAX_CPU_ISA" in out
    assert json.loads((tmp_path / "cmp.json").read_text())["differences"]["settings"][0]["key"] == "optim.lr"
    assert listing(a, b) == before
    assert main([str(a), str(b), "--json", str(a / "cmp.json")]) == 1  # never into a compared folder
    assert "never writes there" in capsys.readouterr().err and listing(a, b) == before


def test_an_older_run_is_compared_on_what_it_has(two_runs, tmp_path):
    a, _ = two_runs
    old = make_run(tmp_path / "old", matrices=hand_matrices(0))  # no environment.json, no trace
    c = compare_runs(a, old)
    assert any("no environment.json" in n for n in c.notes) and any("no train_loss.csv" in n for n in c.notes)
    assert c.metrics[0]["difference"] == 0 and c.training == []


def test_refusals_are_named_with_exit_status_1(two_runs, tmp_path, capsys):
    a, _ = two_runs
    (tmp_path / "empty").mkdir()
    other = make_run(tmp_path / "other", matrices=hand_matrices(0, images=6), classes=["road", "car", "sky"])
    cases = {
        tmp_path / "missing": "no such folder",
        tmp_path / "empty": "not a run folder or an evaluation record",
        other: "different classes",
    }
    for folder, message in cases.items():
        with pytest.raises(CompareError, match=message):
            compare_runs(a, folder)
        assert main([str(a), str(folder)]) == 1
        assert message in capsys.readouterr().err
    assert not any((tmp_path / "empty").iterdir())


def test_the_script_runs_as_a_user_would(two_runs):
    a, b = two_runs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare_runs.py"), str(a), str(b)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0 and "settings: 1 differ" in done.stdout
