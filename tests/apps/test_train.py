"""The training app end to end on the generated data: files, TensorBoard, poly LR, bit-identical resume,
refusals, the non-finite-loss stop, the final stage, one progress setting, a SIGTERM stop, evaluation from a run
folder, and the DDP code path."""

import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import deeplab_mobile.apps.train as train_module
from deeplab_mobile.apps.evaluate import evaluate_run
from deeplab_mobile.apps.train import check_batch, train
from deeplab_mobile.compare import compare_runs
from deeplab_mobile.complexity import count_madds, count_params
from deeplab_mobile.config.source import open_run
from deeplab_mobile.data import DatasetError, EvalTransform, Normalize, VOCSegmentation, mean_pixel
from deeplab_mobile.data.loader import eval_loader
from deeplab_mobile.data.synthetic import CLASS_NAMES
from deeplab_mobile.engine import losses as losses_module
from deeplab_mobile.engine import trainer as trainer_module
from deeplab_mobile.engine.checkpoint import load_checkpoint, weights_sha256
from deeplab_mobile.engine.distributed import Dist
from deeplab_mobile.engine.evaluator import evaluate
from deeplab_mobile.engine.report import read_per_image
from deeplab_mobile.engine.run import ConfigMismatch, SettingError
from deeplab_mobile.engine.trace import read_hashes, read_losses
from deeplab_mobile.engine.trainer import NonFiniteLoss
from deeplab_mobile.metrics import scores
from deeplab_mobile.models.weights import WeightsError
from deeplab_mobile.runfolder import RunFolderError
from deeplab_mobile.stats import bootstrap_miou
from tests.helpers import ITERS, LR, ROOT, composed, small_run, tiny

pytestmark = pytest.mark.slow  # trainings end to end, subprocesses (torchrun, SIGTERM)


def final_state(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")


@pytest.fixture(scope="module")
def reference(synthetic_voc, tmp_path_factory):
    """One uninterrupted run; returns (run folder, returned metrics)."""
    out = tmp_path_factory.mktemp("reference")
    return out, train(tiny(synthetic_voc), out)


def scalars(run_dir, tag):
    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc, {e.step: e.value for e in acc.Scalars(tag)}


def test_run_folder_holds_checkpoint_metrics_and_status(reference, synthetic_voc):
    out, returned = reference
    state = final_state(out)
    assert state["iteration"] == ITERS
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["ss"]["iou"]) == set(CLASS_NAMES)
    assert metrics["ss"]["miou"] == pytest.approx(returned["ss"]["miou"])
    # Each image's confusion matrix, in the val list's order: summed, they are the set's matrix, so they give back
    # every score the record holds, and the bootstrap interval around its mIoU
    names, matrices = read_per_image(out / "per_image_confusion.npz")
    assert names == VOCSegmentation(synthetic_voc, "val").ids and set(matrices) == {"ss", "mf"}
    for mode, per_image in matrices.items():
        assert per_image.shape == (30, 21, 21) and per_image.dtype == np.int64
        again = scores(per_image.sum(0))
        assert again["miou"] == pytest.approx(metrics[mode]["miou"], abs=1e-12)
        assert again["pixel_acc"] == pytest.approx(metrics[mode]["pixel_acc"], abs=1e-12)
        assert [again["iou"][i] for i in range(21)] == pytest.approx(
            [np.nan if v is None else v for v in metrics[mode]["iou"].values()], abs=1e-12, nan_ok=True
        )
        low, high = metrics[mode]["miou_ci95"]  # (this barely trained model's mIoU may lie outside it: resamples
        assert low < high and (low, high) == pytest.approx(bootstrap_miou(per_image))  # drop rare classes)
    assert metrics["bootstrap"] == {"samples": 1000, "seed": 0, "level": 0.95, "over": "images"}
    # Trained at OS16, evaluated at OS8 (the synthetic recipe's eval.os): MAdds are those of the network evaluated
    model = instantiate(tiny(synthetic_voc, "os=8").model)
    assert metrics["params"] == count_params(model) and metrics["madds"] == count_madds(model, 513)
    assert (metrics["head"], metrics["os"], metrics["width"], metrics["eval"]["os"]) == ("no_aspp", 16, 0.35, 8)
    rows = (out / "per_class_iou.csv").read_text().splitlines()
    assert rows[0] == "class,iou_ss,iou_mf" and len(rows) == 22
    assert json.loads((out / "status.json").read_text())["state"] == "done"


def test_loss_falls_and_lr_follows_poly_decay(reference):
    acc, loss = scalars(reference[0], "train/loss")
    assert sorted(loss) == list(range(1, ITERS + 1))
    assert np.mean([loss[ITERS - 1], loss[ITERS]]) < loss[1] - 0.3
    _, lr = scalars(reference[0], "train/lr")
    for t, value in lr.items():  # logged after step t: the rate of iteration t + 1
        assert value == pytest.approx(LR * (1 - t / ITERS) ** 0.9, abs=1e-9)


def test_the_run_records_its_environment_every_loss_and_each_checkpoints_weights(reference):
    out = reference[0]
    _, logged = scalars(out, "train/loss")  # log_every=1: each iteration's loss, as TensorBoard's float32
    assert read_losses(out / "train_loss.csv") == {i: float(np.float32(v)) for i, v in logged.items()}
    hashes = read_hashes(out / "weight_hashes.json")
    assert sorted(hashes) == [2, 4, 6] and hashes[ITERS] == weights_sha256(final_state(out)["model"])
    record = json.loads((out / "environment.json").read_text())
    assert record["libraries"]["torch"] == importlib.metadata.version("torch")
    assert record["libraries"]["hydra-core"] == importlib.metadata.version("hydra-core")
    splits = record["data"]["splits"]
    assert (splits["train"]["samples"], splits["val"]["samples"]) == (60, 30)
    assert record["threads"]["intra_op"] >= 1 and record["cpu"]["logical_cores"] >= 1


def test_tensorboard_has_val_scores_image_grid_and_hparams(reference):
    acc, miou = scalars(reference[0], "val/miou")
    assert list(miou) == [3]
    tags = acc.Tags()
    assert "train/img_per_s" in tags["scalars"] and "val_iou/background" in tags["scalars"]
    image = acc.Images("val/image_truth_prediction")[0]
    assert image.width > 3 * 128 and image.height >= 4 * 128  # 4 rows of image | truth | prediction
    for tag in ("hparams/miou", "hparams/miou_mf", "hparams/params_m", "hparams/madds_b"):
        assert tag in tags["scalars"]
    assert "_hparams_/experiment" in acc.summary_metadata


@pytest.mark.parametrize("crash_at", [3, 5])
def test_resume_after_a_crash_is_bit_identical(reference, synthetic_voc, tmp_path, monkeypatch, crash_at):
    step = trainer_module.Trainer.step

    def crashing_step(self, images, masks):
        if self.iteration + 1 == crash_at:
            raise KeyboardInterrupt(f"killed at iteration {crash_at}")
        return step(self, images, masks)

    monkeypatch.setattr(trainer_module.Trainer, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(synthetic_voc), tmp_path)
    assert final_state(tmp_path)["iteration"] == crash_at - 1  # the last checkpoint before the crash
    monkeypatch.undo()
    train(tiny(synthetic_voc, "resume=true"), tmp_path)
    want, got = final_state(reference[0]), final_state(tmp_path)
    assert got["iteration"] == ITERS
    for name in ("train_loss.csv", "weight_hashes.json"):  # the trace goes on from the checkpoint
        assert (tmp_path / name).read_text() == (reference[0] / name).read_text(), name
    for name, tensor in want["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    for pid, s in want["optimizer"]["state"].items():  # AdamW: step, exp_avg, exp_avg_sq
        for key, value in s.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(got["optimizer"]["state"][pid][key])), key


def test_a_stop_after_the_last_checkpoint_resumes_to_its_whole_trace(reference, synthetic_voc, tmp_path):
    """The final checkpoint is written, the stop comes before the trace files are: the resume has nothing left to
    train, and writes the trace the checkpoint holds."""
    from deeplab_mobile.engine import trace as trace_module

    write = trace_module.Trace.write

    def stopped_write(self, out_dir):
        if self.first + len(self.losses) - 1 == ITERS:
            raise KeyboardInterrupt("stopped after the last checkpoint")
        return write(self, out_dir)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trace_module.Trace, "write", stopped_write)
        with pytest.raises(KeyboardInterrupt):
            train(tiny(synthetic_voc), tmp_path)
    assert final_state(tmp_path)["iteration"] == ITERS
    assert read_losses(tmp_path / "train_loss.csv") != read_losses(reference[0] / "train_loss.csv")
    train(tiny(synthetic_voc, "resume=true"), tmp_path)
    for name in ("train_loss.csv", "weight_hashes.json"):
        assert (tmp_path / name).read_text() == (reference[0] / name).read_text(), name


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_an_existing_checkpoint(reference, synthetic_voc):
    out = reference[0]
    with pytest.raises(ConfigMismatch, match=r"optim.lr: 0.001 -> 0.1"):
        train(tiny(synthetic_voc, "resume=true", "optim.lr=0.1"), out)
    with pytest.raises(RunFolderError, match="pass resume=true"):
        train(tiny(synthetic_voc), out)


def test_resuming_a_run_that_is_done_returns_its_metrics_and_writes_nothing(reference, synthetic_voc, monkeypatch):
    out, returned = reference
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(train_module, "TrainingRun", None)  # nothing is built
    for resume in ("true", "auto"):
        assert train(tiny(synthetic_voc, f"resume={resume}"), out) == json.loads((out / "metrics.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_resume_true_needs_a_checkpoint_and_auto_starts_without_one(synthetic_voc, tmp_path):
    """A mistyped folder with resume=true is an error, not a fresh run; resume=auto (a requeued Slurm job's first
    start) begins one."""
    with pytest.raises(RunFolderError, match=r"resume=true but .*last\.pt does not exist: check hydra.run.dir"):
        train(tiny(synthetic_voc, "resume=true"), tmp_path / "typo")
    assert not (tmp_path / "typo" / "checkpoints").exists()
    with pytest.raises(SettingError, match="resume='yes' is not supported"):
        train(tiny(synthetic_voc, "resume=yes"), tmp_path / "typo")
    metrics = train(tiny(synthetic_voc, "resume=auto", "trainer.iters=2", "eval.mf=false"), tmp_path / "auto")
    assert metrics["iteration"] == 2


def test_non_finite_loss_stops_naming_the_iteration(synthetic_voc, tmp_path, monkeypatch):
    loss_fn = losses_module.segmentation_loss
    calls = []

    def nan_on_third(logits, masks, ignore_index):
        calls.append(1)
        loss = loss_fn(logits, masks, ignore_index)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(losses_module, "segmentation_loss", nan_on_third)
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at iteration 3.*last good checkpoint is .*last\.pt"):
        train(tiny(synthetic_voc), tmp_path)
    assert final_state(tmp_path)["iteration"] == 2
    assert all(torch.isfinite(t).all() for t in final_state(tmp_path)["model"].values() if t.is_floating_point())


@pytest.mark.parametrize("progress", [True, False])
def test_one_progress_setting_governs_every_bar(synthetic_voc, tmp_path, capsys, progress):
    """Training, periodic and final evaluation (single scale and MF) all draw their bars with progress=true, none
    with progress=false."""
    train(tiny(synthetic_voc, f"progress={str(progress).lower()}", "trainer.iters=2", "trainer.eval_every=1"), tmp_path)
    err = capsys.readouterr().err
    assert all((bar in err) == progress for bar in ("train: ", "eval MF+flip: ")), err[-2000:]


def test_freeze_bn_keeps_statistics_and_affine(synthetic_voc, tmp_path):
    cfg = tiny(synthetic_voc, "trainer.freeze_bn=true", "trainer.iters=2", "eval.mf=false")
    torch.manual_seed(cfg.trainer.seed)
    initial = instantiate(cfg.model).state_dict()
    train(cfg, tmp_path)
    trained = final_state(tmp_path)["model"]
    bn = [k for k in initial if k.rsplit(".", 1)[0] + ".running_mean" in initial]
    assert bn, "no BatchNorm found"
    for k in bn:
        assert torch.equal(initial[k], trained[k]), k
    conv = [k for k in initial if initial[k].ndim == 4]
    assert any(not torch.equal(initial[k], trained[k]) for k in conv)


def test_training_evaluates_at_eval_os_with_the_trained_weights(reference, synthetic_voc):
    """The run trained at OS16 and reported OS8 (eval.os=8): its single-scale score is that of a network built at
    OS8 from the config and given the checkpoint's weights, and the two strides compute different logits."""
    out, returned = reference
    weights = final_state(out)["model"]
    at = {}
    for os_ in (8, 16):
        at[os_] = instantiate(tiny(synthetic_voc, f"os={os_}").model).to(memory_format=torch.channels_last).eval()
        at[os_].load_state_dict(weights)
    norm_mean = at[8].encoder.mean
    norm = Normalize(norm_mean, at[8].encoder.std)
    loader = eval_loader(VOCSegmentation(synthetic_voc, "val", EvalTransform()), 2, 0, mean_pixel(norm_mean), 65)
    scores, *_ = evaluate(at[8], norm, loader, 21)
    assert scores["miou"] == returned["ss"]["miou"]
    x = torch.randint(0, 256, (1, 65, 65, 3), dtype=torch.uint8)  # an NHWC uint8 batch, as Normalize takes
    with torch.no_grad():
        assert not torch.allclose(at[8](norm(x)), at[16](norm(x)))


def test_final_stage_trains_the_last_iterations_at_its_stride_and_resumes_into_it(synthetic_voc, tmp_path, monkeypatch):
    """trainer.final_stage={os: 8, iters: 2, lr: 0.0004} of 6 iterations: iterations 1-4 at OS16, 5-6 at OS8; the
    LR follows the poly schedule over the 6 iterations for the first 4, then decays again from 0.0004 over the
    last 2. A crash at iteration 5 leaves the checkpoint of iteration 4, and the resumed run goes on at OS8 on the
    same schedule to the same weights."""
    final = ("trainer.final_stage={os:8,iters:2,lr:0.0004}",)
    want_lr = [LR * (1 - t / 6) ** 0.9 for t in range(4)] + [0.0004 * (1 - t / 2) ** 0.9 for t in range(2)]
    step, strides, rates = trainer_module.Trainer.step, [], []

    def recording_step(self, images, masks):
        strides.append(self.bare_model.output_stride)
        rates.append(self.optimizer.param_groups[0]["lr"])
        return step(self, images, masks)

    monkeypatch.setattr(trainer_module.Trainer, "step", recording_step)
    whole = tmp_path / "whole"
    metrics = train(tiny(synthetic_voc, *final), whole)
    assert strides == [16, 16, 16, 16, 8, 8]
    assert rates == pytest.approx(want_lr, abs=1e-12)
    assert metrics["final_os"] == {"os": 8, "from_iteration": 4, "lr": 0.0004}
    assert metrics["os"] == 8 == metrics["eval"]["os"]
    assert open_run(whole).model.output_stride == 8  # eval.py and export.py load the network it ended as
    again = evaluate_run(composed("eval", [f"run_dir={whole}", "eval.workers=0", "eval.mf=false"]))
    assert again["ss"]["miou"] == metrics["ss"]["miou"] and again["final_os"] == metrics["final_os"]

    def crashing_step(self, images, masks):
        if self.iteration + 1 == 5:
            raise KeyboardInterrupt("killed at iteration 5")
        return recording_step(self, images, masks)

    strides.clear()
    rates.clear()
    monkeypatch.setattr(trainer_module.Trainer, "step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(synthetic_voc, *final), tmp_path / "crashed")
    monkeypatch.setattr(trainer_module.Trainer, "step", recording_step)
    train(tiny(synthetic_voc, *final, "resume=true"), tmp_path / "crashed")
    assert strides == [16, 16, 16, 16, 8, 8]
    assert rates == pytest.approx(want_lr, abs=1e-12)
    want, got = final_state(whole), final_state(tmp_path / "crashed")
    for name, tensor in want["model"].items():
        assert torch.equal(tensor, got["model"][name]), name


NOT_POLY = "sched._target_=torch.optim.lr_scheduler.ConstantLR"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["trainer.final_stage={os:8,iters:250}"],
            r"trainer.final_stage.iters must be between 1 and the run's 6 iterations \(at output stride 8\), got 250",
        ),
        (["trainer.final_stage={os:8}"], "got 0"),
        (["trainer.final_stage={os:8,iters:7}"], "got 7"),
        (["trainer.final_stage={os:12,iters:2}"], "output stride 12"),
        (["trainer.final_stage={os:8,iters:2,lr:0}"], "positive number or null, got 0"),
        (["trainer.final_stage={os:8,iters:2,lr:1}", NOT_POLY], "ConstantLR is not"),
    ],
)
def test_final_stage_refuses_what_it_cannot_do(synthetic_voc, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(tiny(synthetic_voc, *overrides), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_eval_app_agrees_with_training_and_with_a_plain_loop(reference, synthetic_voc):
    out, returned = reference
    # Without overrides the script evaluates as the run did: its MF scales (0.75, 1.0) and its eval.os (8)
    cfg = composed("eval", [f"run_dir={out}", "eval.workers=0", "eval.batch_size=2", "progress=false"])
    result = evaluate_run(cfg)
    assert result["ss"]["miou"] == returned["ss"]["miou"]
    assert result["mf"]["miou"] == returned["mf"]["miou"]
    assert result["iteration"] == ITERS and result["params"] == returned["params"]
    assert result["eval"]["mf_scales"] == [0.75, 1.0] and result["eval"]["os"] == 8

    # The evaluator's single-scale confusion matrix and mIoU, recomputed image by image with numpy (images are
    # larger than the 65 crop, so no padding is involved). This barely trained model has many near-tied logits,
    # and another batch shape or memory layout rounds a few of them the other way (10 of ~750,000 pixels here),
    # so the matrices must agree to within 0.01% of the pixels; a counting or indexing bug moves far more.
    model = instantiate(tiny(synthetic_voc).model)
    model.load_state_dict(final_state(out)["model"])
    model.eval()
    norm = Normalize(model.encoder.mean, model.encoder.std)
    val_loader = eval_loader(VOCSegmentation(synthetic_voc, "val", EvalTransform()), 1, 0, (0, 0, 0), 65)
    library, library_conf, *_ = evaluate(model, norm, val_loader, 21)
    conf = np.zeros((21, 21), np.int64)
    for image, mask in VOCSegmentation(synthetic_voc, "val"):
        with torch.no_grad():
            pred = model(norm(torch.from_numpy(image)[None])).argmax(1)[0].numpy()
        keep = mask != 255
        np.add.at(conf, (mask[keep].astype(int), pred[keep]), 1)
    library_conf = library_conf.numpy()
    per_image = evaluate(model, norm, val_loader, 21, per_image=True)
    assert (per_image.per_image.sum(0) == per_image.confusion.numpy()).all()  # exactly the set's matrix
    assert (per_image.confusion.numpy() == library_conf).all() and len(per_image.per_image) == 30
    assert library_conf.sum() == conf.sum() and library_conf.sum(1).tolist() == conf.sum(1).tolist()
    assert np.abs(library_conf - conf).sum() <= 1e-4 * conf.sum()
    tp, union = np.diag(library_conf), library_conf.sum(0) + library_conf.sum(1) - np.diag(library_conf)
    assert library["miou"] == pytest.approx(np.mean(tp[union > 0] / union[union > 0]), abs=1e-12)


def test_eval_app_tiles_with_its_own_record(reference, synthetic_voc, monkeypatch):
    """eval.tile: a window covering every padded image scores exactly as untiled; smaller windows give a record
    of their own, named and described by the tiling."""
    out, returned = reference
    base = [f"run_dir={out}", "eval.workers=0", "eval.batch_size=1", "progress=false", "eval.mf=false"]
    covered = evaluate_run(composed("eval", [*base, "eval.tile={size: 1000}"]))
    assert covered["ss"]["miou"] == returned["ss"]["miou"]
    assert covered["eval"]["tile"] == {"size": [1000, 1000], "overlap": 0.25, "blend": "gaussian"}
    from deeplab_mobile.engine import evaluator

    calls, tiled_labels = [], evaluator.tiled_labels
    monkeypatch.setattr(evaluator, "tiled_labels", lambda *a: calls.append(a[2]) or tiled_labels(*a))
    tiled = evaluate_run(composed("eval", [*base, "eval.tile={size: 49, overlap: 0.5, blend: mean}"]))
    assert (out / "eval" / "os8_tile49-0.5-mean" / "metrics.json").is_file() and 0 <= tiled["ss"]["miou"] <= 1
    assert len(calls) == 30 and calls[0].size == (49, 49)  # every val image went through the windows
    with pytest.raises(SettingError, match="eval.tile=.*overlap"):
        evaluate_run(composed("eval", [*base, "eval.tile={size: 49, overlap: 1.5}"]))


def test_eval_app_on_another_split_keeps_its_own_record(reference, synthetic_voc):
    out, returned = reference
    before = (out / "metrics.json").read_bytes()
    cfg = composed("eval", [f"run_dir={out}", "split=train", "eval.mf=false", "eval.workers=0", "progress=false"])
    result = evaluate_run(cfg)
    assert (out / "metrics.json").read_bytes() == before  # the training's record is untouched
    record = out / "eval" / "os8_split-train"  # named from its settings: OS8 single scale, the train split
    saved = json.loads((record / "metrics.json").read_text())
    assert saved["split"] == "train" and saved["ss"]["miou"] == pytest.approx(result["ss"]["miou"])
    assert result["ss"]["miou"] != returned["ss"]["miou"] and "mf" not in saved and saved["name"] == record.name
    assert len((record / "per_class_iou.csv").read_text().splitlines()) == 22


def test_every_evaluation_is_its_own_record_with_the_madds_it_ran(reference, synthetic_voc):
    """The model zoo's protocol (single scale at OS16, MF + flip at OS8) and a plain OS16 one: two records beside
    the training's, each with the MAdds of the network and scales it ran."""
    out, returned = reference
    before = (out / "metrics.json").read_bytes()
    common = [f"run_dir={out}", "eval.workers=0", "progress=false"]
    zoo = evaluate_run(composed("eval", [*common, "eval.os=16", "eval.mf_os=8", "eval.mf_scales=[1.0]"]))
    plain = evaluate_run(composed("eval", [*common, "eval.os=16", "eval.mf=false"]))
    assert (out / "metrics.json").read_bytes() == before
    assert Path(zoo["record"]).name == "os16_mf-os8-1-flip" and Path(plain["record"]).name == "os16"
    at = {}
    for os_ in (8, 16):
        at[os_] = instantiate(tiny(synthetic_voc, f"os={os_}").model)
    assert zoo["madds"] == plain["madds"] == count_madds(at[16], 513)
    assert zoo["madds_mf"] == 2 * count_madds(at[8], 513)  # one scale (513), flipped
    at[16].load_state_dict(final_state(out)["model"])  # independently: the weights in a network built at OS16
    mean = at[16].encoder.mean
    norm = Normalize(mean, at[16].encoder.std)
    loader = eval_loader(VOCSegmentation(synthetic_voc, "val", EvalTransform()), 1, 0, mean_pixel(mean), 65)
    want, *_ = evaluate(at[16].to(memory_format=torch.channels_last), norm, loader, 21)
    assert zoo["ss"]["miou"] == plain["ss"]["miou"] == want["miou"]
    assert zoo["eval"] == {"os": 16, "mf": True, "mf_os": 8, "mf_scales": [1.0], "flip": True, "pad_to": 65}
    # each record has its environment and the manifest of the split it scored; compare_runs reads two records
    env = json.loads((Path(plain["record"]) / "environment.json").read_text())
    assert list(env["data"]["splits"]) == ["val"] and env["data"]["splits"]["val"]["samples"] == 30
    c = compare_runs(zoo["record"], plain["record"])
    assert c.a.kind == c.b.kind == "evaluation record" and c.sections["settings"] == []
    assert {k for k, _, _ in c.sections["evaluation settings"]} == {
        "eval.mf",
        "eval.mf_os",
        "eval.mf_scales",
        "eval.flip",
    }
    assert c.metrics[0]["mode"] == "ss" and c.metrics[0]["difference"] == 0 and c.metrics[0]["ci95"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="eval.os=12: output stride 12 is not supported"):
        evaluate_run(composed("eval", [*common, "eval.os=12"]))


def test_eval_app_names_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        evaluate_run(composed("eval", [f"run_dir={tmp_path}"]))


def moved_run(run, data_root, tmp_path):
    """A copy of a run folder whose config puts its data at a relative path that does not exist from here."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval", "tb", "quant"))
    config = copy / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace(f"root: {data_root}", "root: data/VOCdevkit/VOC2012"))
    return copy


def test_a_run_folder_whose_data_is_elsewhere_names_the_path_and_the_key(
    reference, synthetic_voc, tmp_path, monkeypatch
):
    """From another working directory, a run whose data.root is relative: the path tried, where it was read, the
    working directory, and the key that points elsewhere; with it, the evaluation runs."""
    run = moved_run(reference[0], synthetic_voc, tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as caught:
        evaluate_run(composed("eval", [f"run_dir={run}", "eval.mf=false", "eval.workers=0", "progress=false"]))
    message = str(caught.value)
    assert message.startswith("data/VOCdevkit/VOC2012: dataset root not found (data.root in ")
    assert f"{run}/.hydra/config.yaml" in message and f"relative to the working directory {tmp_path}" in message
    assert message.endswith("; pass data_root=<folder> to use a copy elsewhere")
    result = evaluate_run(
        composed("eval", [f"run_dir={run}", f"data_root={synthetic_voc}", "eval.mf=false", "eval.workers=0"])
    )
    assert result["ss"]["miou"] == reference[1]["ss"]["miou"]


def test_missing_voc_says_how_to_get_and_prepare_it(tmp_path):
    cmd = [
        sys.executable,
        "scripts/train.py",
        f"data.root={tmp_path}/VOC2012",
        f"hydra.run.dir={tmp_path}/run",
        "progress=false",
        "encoder_weights=random",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out
    assert f"{tmp_path}/VOC2012: dataset root not found" in out
    assert "scripts/prepare_voc.py" in out and "recipe=cpu_synthetic" in out
    assert "encoder_weights=random: DeepLab-MobileNetV2 trained from random weights reaches about 30%" in out
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "failed"


def test_offline_without_weights_the_voc_recipe_stops_before_reading_data(tmp_path, monkeypatch):
    """The VOC recipe starts from ImageNet weights: offline it stops at once, saying where to get them, before the
    dataset (absent here) is looked at."""

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    cfg = composed("train", [f"data.root={tmp_path}/absent", "progress=false"])
    with pytest.raises(WeightsError, match=r"cannot be reached.*mobilenet_v2-b0353104\.pth.*encoder_weights="):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_batchnorm_guards(synthetic_voc, tmp_path, caplog):
    """One image per process is refused before any work; fewer than 12 images of BatchNorm statistics warns with
    the fix (sync_bn under DDP); frozen BatchNorm needs neither."""
    with pytest.raises(SettingError, match=r"batch_size=1 over 1 process\(es\) leaves 1 image per process"):
        train(tiny(synthetic_voc, "data.batch_size=1"), tmp_path / "one")
    assert not (tmp_path / "one" / "checkpoints").exists()
    ddp = Dist(rank=0, world_size=2)
    with pytest.raises(SettingError, match="over 2 process"):
        check_batch(tiny(synthetic_voc, "data.batch_size=2"), ddp)
    caplog.clear()
    check_batch(tiny(synthetic_voc, "data.batch_size=16"), ddp)
    assert "statistics over 8 images" in caplog.text and "trainer.sync_bn=true" in caplog.text
    caplog.clear()
    check_batch(tiny(synthetic_voc, "data.batch_size=16", "trainer.sync_bn=true"), ddp)
    check_batch(tiny(synthetic_voc, "data.batch_size=2", "trainer.freeze_bn=true"), ddp)
    assert caplog.text == ""
    check_batch(tiny(synthetic_voc, "data.batch_size=4"), Dist())
    assert "statistics over 4 images" in caplog.text and "larger data.batch_size" in caplog.text


@pytest.mark.parametrize(
    "setting, message",
    [
        ("eval.mf_os=12", "eval.mf_os=12: output stride 12"),
        ("eval.mf_scales=[]", "eval.mf_scales must be"),
        ("eval.batch_size=0", "eval.batch_size must be an integer >= 1, got 0"),
        ("eval.pad_to=-1", "eval.pad_to"),
    ],
)
def test_an_evaluation_setting_that_cannot_run_is_refused_before_training(synthetic_voc, tmp_path, setting, message):
    with pytest.raises(SettingError, match=message):
        train(tiny(synthetic_voc, setting), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def processes_with(marker):
    """PIDs whose environment holds ``marker`` (DataLoader workers inherit it, wherever they were forked from)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds the run's processes through Linux's /proc")
def test_sigterm_records_the_stop_and_leaves_no_worker_behind(synthetic_voc, tmp_path):
    """``kill`` (or ``timeout``) of a run with loader workers: the run unwinds, status.json says interrupted,
    the exit status is 143, no train or eval worker outlives it, and the last checkpoint loads."""
    marker = f"DEEPLAB_MOBILE_TEST_RUN={uuid.uuid4().hex}"
    key, value = marker.split("=")
    overrides = small_run(
        synthetic_voc,
        "data.workers=1",
        "trainer.iters=100000",
        "trainer.eval_every=1",
        "trainer.ckpt_every=1",
        "eval.mf=false",
        "eval.workers=1",
        "eval.batch_size=2",
        f"hydra.run.dir={tmp_path}",
    )
    env = {**os.environ, key: value}
    proc = subprocess.Popen(
        [sys.executable, "scripts/train.py", *overrides],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        log = tmp_path / "train.log"
        while not (log.is_file() and "iteration 2: val mIoU" in log.read_text()):  # both loaders' workers run
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the run did not reach iteration 2"
            time.sleep(0.2)
        assert len(processes_with(marker)) >= 3  # the run itself, a train worker, an eval worker (at least)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "interrupted" and "SIGTERM" in status["reason"]
    deadline = time.monotonic() + 30
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(marker) == []
    assert final_state(tmp_path)["iteration"] >= 1  # the last checkpoint is whole: resume=true continues it


def test_two_process_ddp_run_evaluates_like_a_single_process(synthetic_voc, tmp_path):
    """torchrun with 2 CPU processes (Gloo): the evaluation is sharded and its confusion matrices summed; it
    must equal a single-process evaluation of the checkpoint that rank 0 saved."""
    overrides = small_run(
        synthetic_voc,
        "data.workers=0",
        "trainer.iters=2",
        "trainer.eval_every=1",
        "eval.mf=false",
        "eval.workers=0",
        f"hydra.run.dir={tmp_path}",
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*cmd, "scripts/train.py", *overrides], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "metrics.json").read_text())
    single = evaluate_run(composed("eval", [f"run_dir={tmp_path}", "eval.workers=0", "eval.mf=false"]))
    assert ddp["ss"]["miou"] == pytest.approx(single["ss"]["miou"], abs=1e-12)
    # each rank scored every other image: the per-image matrices come back in the val list's order
    names, ddp_images = read_per_image(tmp_path / "per_image_confusion.npz")
    single_names, single_images = read_per_image(Path(single["record"]) / "per_image_confusion.npz")
    assert names == single_names == VOCSegmentation(synthetic_voc, "val").ids
    assert (ddp_images["ss"] == single_images["ss"]).all() and ddp_images["ss"].sum((1, 2)).min() > 0
    assert final_state(tmp_path)["iteration"] == 2
    log = (tmp_path / "train.log").read_text()
    assert log.count("iteration 1: val mIoU") == 1  # both ranks evaluate; only rank 0 logs (rank 1: warnings)


def test_a_weighted_loss_counts_the_training_split_and_gets_each_step(synthetic_voc, tmp_path, monkeypatch):
    """loss.class_weights=<rule>: the weights are counted on the training split's masks (here again, by
    ``pixel_counts``) and kept in the run folder; the loss is called with the number of steps done."""
    from deeplab_mobile.data.class_weights import class_weights, pixel_counts
    from deeplab_mobile.engine.losses import HardPixelCE

    steps = []
    forward = HardPixelCE.forward

    def recording(self, logits, masks, step=0):
        steps.append(step)
        return forward(self, logits, masks, step)

    monkeypatch.setattr(HardPixelCE, "forward", recording)
    cfg = tiny(
        synthetic_voc, "loss=hard_pixels", "loss.class_weights=inverse_sqrt", "loss.ramp_steps=4", "eval.mf=false"
    )
    train(cfg, tmp_path)
    assert steps == list(range(ITERS))
    record = json.loads((tmp_path / "class_weights.json").read_text())["inverse_sqrt"]
    pixels, image_pixels = pixel_counts(VOCSegmentation(synthetic_voc, "train"), 21)
    assert record["pixels"] == pixels.tolist()
    np.testing.assert_allclose(record["weights"], class_weights(pixels, image_pixels, "inverse_sqrt"))
    with pytest.raises(
        ConfigMismatch,
        match="loss._target_: '.*HardPixelCE' -> '.*CrossEntropy'",
    ):
        train(tiny(synthetic_voc, "resume=true", "eval.mf=false"), tmp_path)
