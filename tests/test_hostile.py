"""A user beside the project's paths: inputs given as outputs, reruns of finished runs, read-only places, bad data in
a split trained later, interrupted runs. Each case asserts the one-line error (exit status 1, no traceback) or the
result, and that nothing the user had changed: the hash of every file of the inputs and of finished run folders,
before and after (docs/cli.md#nothing-is-lost)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deeplab_mobile.runfolder import RunFolder
from tests.helpers import ROOT, small_run

pytestmark = pytest.mark.slow  # commands in fresh processes, on a small trained run


def command(*args, timeout=300):
    environ = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def hashes(*folders):
    """Every file under the folders (or the files themselves), by content."""
    found = {}
    for folder in map(Path, folders):
        for p in sorted(folder.rglob("*")) if folder.is_dir() else [folder]:
            if p.is_file():
                found[p] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def one_line_error(done, *phrases):
    """Exit status 1, no traceback, the phrases in what was printed."""
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    for phrase in phrases:
        assert phrase in out, out[-3000:]


@contextmanager
def read_only(folder):
    """``folder`` read-only for the commands a test runs: its mode bits for a user, a read-only bind mount for root
    (whom mode bits do not stop)."""
    folder = Path(folder)
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def train_overrides(voc, *extra):
    return small_run(
        voc, "trainer.iters=2", "trainer.ckpt_every=2", "eval.mf=false", "data.workers=0", "eval.workers=0", *extra
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_voc):
    """A small finished run, trained by the command line (its .hydra/ and train.log as a user's)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    done = command(ROOT / "scripts" / "train.py", *train_overrides(synthetic_voc), f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert RunFolder(run).state() == "done"
    return run


@pytest.fixture
def photos(tmp_path):
    """A user's photos: a colour JPEG and PNG with one name, a grey PNG, and one with the same name elsewhere."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / "good.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / "good.png")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(folder / "gray.png")
    other = tmp_path / "more"
    other.mkdir()
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(other / "gray.png")
    return folder, other


def predict(*args):
    return command(ROOT / "scripts" / "predict.py", *args, "--no-progress")


def test_predict_never_writes_over_its_inputs(finished_run, photos):
    folder, _ = photos
    before = hashes(folder)
    done = predict(folder, "--weights", finished_run, "--out", folder)
    one_line_error(done, "would be written over the input", "nothing was written", "choose another --out")
    assert hashes(folder) == before and sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in before
    )  # fmt: skip


def test_every_input_gets_outputs_of_its_own(finished_run, photos, tmp_path):
    folder, other = photos
    out = tmp_path / "masks"
    before = hashes(folder, other)
    done = predict(folder, other / "gray.png", "--weights", finished_run, "--out", out)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "predictions.json").read_text())
    masks = [entry["mask"] for entry in record["images"]]
    assert len(masks) == 4 and len(set(masks)) == 4  # good.jpg, good.png, photos/gray.png, more/gray.png
    assert {"good_jpg.png", "good_png.png"} <= set(masks)
    for entry in record["images"]:  # each mask is its own image's size
        with Image.open(entry["image"]) as image, Image.open(out / entry["mask"]) as mask:
            assert image.size == mask.size
    assert hashes(folder, other) == before
    again = hashes(out)
    done = predict(folder, "--weights", finished_run, "--out", out)  # an earlier prediction is not overwritten
    one_line_error(done, "already holds", "choose another --out")
    assert hashes(out) == again


def test_a_rerun_of_a_finished_run_changes_nothing_and_resuming_it_has_nothing_to_do(finished_run, synthetic_voc):
    before = hashes(finished_run)
    done = command(ROOT / "scripts" / "train.py", *train_overrides(synthetic_voc), f"hydra.run.dir={finished_run}")
    one_line_error(done, "its run is done at iteration 2", "nothing was changed", "resume=true")
    assert hashes(finished_run) == before
    done = command(
        ROOT / "scripts" / "train.py", *train_overrides(synthetic_voc), f"hydra.run.dir={finished_run}", "resume=true"
    )
    assert done.returncode == 0 and "nothing to do" in done.stdout + done.stderr
    assert hashes(finished_run) == before


def test_read_only_places_are_refused_before_any_work(finished_run, synthetic_voc, photos, tmp_path):
    place = tmp_path / "shared"
    place.mkdir()
    with read_only(place):
        done = command(ROOT / "scripts" / "train.py", *train_overrides(synthetic_voc), f"hydra.run.dir={place}/run")
        one_line_error(done, f"{place}/run", "cannot be written", "hydra.run.dir")
        done = predict(photos[0], "--weights", finished_run, "--out", place / "masks")
        one_line_error(done, "--out", "cannot be written")
        done = command(ROOT / "scripts" / "export.py", f"run_dir={finished_run}", f"out_dir={place}/export")
        one_line_error(done, "cannot be written", "out_dir=")
    assert not any(place.iterdir())

    run = tmp_path / "run"  # a checkpoints folder that cannot be written: refused before the first iteration
    (run / "checkpoints").mkdir(parents=True)
    with read_only(run / "checkpoints"):
        done = command(ROOT / "scripts" / "train.py", *train_overrides(synthetic_voc), f"hydra.run.dir={run}")
        one_line_error(done, "checkpoints", "cannot be written")
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]


def test_a_read_only_run_is_evaluated_into_another_folder(finished_run, tmp_path):
    before = hashes(finished_run)
    with read_only(finished_run):
        done = command(ROOT / "scripts" / "eval.py", f"run_dir={finished_run}", "eval.mf=false", "progress=false")
        one_line_error(done, "cannot be written", "out_dir=")
        done = command(
            ROOT / "scripts" / "eval.py",
            f"run_dir={finished_run}",
            f"out_dir={tmp_path / 'scores'}",
            "eval.mf=false",
            "progress=false",
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert hashes(finished_run) == before
    record = next((tmp_path / "scores").glob("*/metrics.json"))
    assert json.loads(record.read_text())["ss"]["miou"] == json.loads((finished_run / "metrics.json").read_text())[
        "ss"
    ]["miou"]  # fmt: skip


def test_a_bad_validation_mask_is_found_before_training(synthetic_voc, tmp_path):
    voc = tmp_path / "voc"
    shutil.copytree(synthetic_voc, voc)
    name = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[3]
    mask_path = voc / "SegmentationClass" / f"{name}.png"
    with Image.open(mask_path) as mask:
        labels = np.array(mask)
        palette = mask.getpalette()
    labels[0, 0] = 40
    bad = Image.fromarray(labels, mode="P")
    bad.putpalette(palette)
    bad.save(mask_path)
    run = tmp_path / "run"
    done = command(ROOT / "scripts" / "train.py", *train_overrides(voc), f"hydra.run.dir={run}")
    one_line_error(done, "found before training", f"{name}.png", "40")
    assert not (run / "checkpoints").exists() and not (run / "train_loss.csv").exists()


def test_messages_say_what_to_do_and_nothing_else(synthetic_voc, tmp_path):
    missing = tmp_path / "nowhere"
    done = command(
        ROOT / "scripts" / "train.py", *train_overrides(missing), f"hydra.run.dir={tmp_path / 'r'}", timeout=120
    )
    one_line_error(done, f"{missing}", "data.generate is null")
    assert "could not be written" not in done.stdout + done.stderr

    unsafe = tmp_path / "unsafe.pt"  # a file that would run code if loaded as PyTorch suggests
    torch.save({"model": Path("x")}, unsafe)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photo.png")
    done = predict(tmp_path / "photo.png", "--weights", unsafe, "--out", tmp_path / "masks")
    one_line_error(done, str(unsafe), "never by running code")
    assert "weights_only=False will likely succeed" not in done.stdout + done.stderr

    done = command("-m", "deeplab_mobile", "--version")
    assert done.returncode == 0 and done.stdout.startswith("deeplab-mobile ")
    done = command("-m", "deeplab_mobile", "train", "--help")
    text = done.stdout
    assert done.returncode == 0 and "recipe=cpu_synthetic" in text and "resume=true" in text
    assert "outputs/train/" in text and len(text.splitlines()) < 40  # what it does, not the config dump
    done = command("-m", "deeplab_mobile", "predict", "--help")
    assert done.stdout.startswith("usage: deeplab-mobile predict")


def test_a_failing_sweep_job_is_one_message(synthetic_voc, tmp_path):
    done = command(
        ROOT / "scripts" / "train.py",
        "-m",
        *train_overrides(synthetic_voc),
        "os=12,16",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert "output stride 12 is not supported" in out and "finish the sweep with" in out
    assert (
        RunFolder(
            tmp_path / "sweep" / next(p.name for p in (tmp_path / "sweep").iterdir() if "os=16" in p.name)
        ).state()
        == "done"
    )


def wait_for(condition, timeout=240):
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_sigterm_before_the_first_checkpoint_names_the_command_that_starts_again(synthetic_voc, tmp_path):
    run = tmp_path / "run"
    overrides = train_overrides(synthetic_voc, "trainer.iters=40", "trainer.ckpt_every=40", "trainer.eval_every=0")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, f"hydra.run.dir={run}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: RunFolder(run).state() == "running")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in out
    assert "no checkpoint was written yet" in out and "resume=auto" in out and "resume=true continues" not in out
    again = out.split("start it again with: ")[1].splitlines()[0].split()
    assert again[:2] == ["python", "scripts/train.py"]
    done = command(*again[1:])
    assert done.returncode == 0, done.stderr[-3000:]
    assert RunFolder(run).state() == "done"
    assert [a["outcome"] for a in RunFolder(run).attempts()] == ["started", "interrupted", "started", "done"]


def test_an_interrupted_sweep_finishes_in_place(synthetic_voc, tmp_path):
    """Three jobs; SIGTERM once the second has a checkpoint. The command the interruption prints finishes the sweep
    in its folder: the finished job byte for byte as it was, the interrupted one resumed from its checkpoint, the
    one never started trained."""
    sweep = tmp_path / "sweep"
    overrides = train_overrides(synthetic_voc, "trainer.iters=6", "trainer.eval_every=0", "trainer.seed=0,1,2")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *overrides, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def job(seed):
        return next((p for p in sweep.iterdir() if f"trainer.seed={seed}" in p.name), None) if sweep.is_dir() else None

    wait_for(lambda: job(1) is not None and (job(1) / "checkpoints" / "last.pt").is_file())
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in out, out[-3000:]
    first = hashes(job(0))
    assert RunFolder(job(0)).state() == "done" and RunFolder(job(1)).state() == "interrupted" and job(2) is None
    finish = out.split("finish the sweep with: ")[1].splitlines()[0].split()
    assert finish[:3] == ["python", "scripts/train.py", "-m"] and "resume=auto" in finish
    done = command(*finish[1:], timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert hashes(job(0)) == first  # the finished job: untouched
    attempts = RunFolder(job(1)).attempts()
    assert [a["outcome"] for a in attempts] == ["started", "interrupted", "started", "done"]
    assert attempts[2]["iteration"] >= 2  # resumed from its checkpoint, not started over
    losses = (job(1) / "train_loss.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in losses[1:]] == [str(i) for i in range(1, 7)]
    assert RunFolder(job(2)).state() == "done" and [a["outcome"] for a in RunFolder(job(2)).attempts()] == [
        "started",
        "done",
    ]
