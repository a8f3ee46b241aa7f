"""A training run: the settings that identify it, DeepLabv3's final stage and the LR schedule, and a run folder
loaded back (its config, and its model with the checkpoint's weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint, model_state
from ..engine.run import FinalStage, SettingError, flatten
from ..engine.schedule import two_stage_poly
from ..errors import ArgumentError
from ..models import DeepLabV3
from ..predict import Segmenter
from .model import build_model, class_names, load_run_config

# Settings that define a run: a resume with any of them changed is refused.
IDENTITY = (
    "model",
    "loss",
    "os",
    "width",
    "tap",
    "num_classes",
    "encoder_weights",
    "data.name",
    "data.train_split",
    "data.crop_size",
    "data.scales",
    "data.batch_size",
    "optim",
    "sched",
    "trainer.iters",
    "trainer.seed",
    "trainer.amp",
    "trainer.freeze_bn",
    "trainer.sync_bn",
    "trainer.decay_depthwise",
    "trainer.final_stage",
    "weights",
)


def final_stage(cfg: DictConfig) -> FinalStage | None:
    """``trainer.final_stage`` ({os, iters, lr}) as a ``FinalStage``, or ``None``; refused if it cannot be honoured.
    Run folders written before it existed kept the same settings as ``trainer.final_os`` / ``final_os_iters`` /
    ``final_lr``."""
    iters = int(cfg.trainer.iters)
    stage = OmegaConf.select(cfg, "trainer.final_stage", default=None)
    legacy = OmegaConf.select(cfg, "trainer.final_os", default=None)
    try:
        if stage is not None:
            return FinalStage.plan(iters, stage.get("os"), stage.get("iters"), stage.get("lr"))
        if legacy is not None:
            t = cfg.trainer
            return FinalStage.plan(iters, legacy, t.get("final_os_iters"), t.get("final_lr"))
    except ArgumentError as exc:
        key, hint = FINAL_STAGE_KEYS[exc.argument]
        raise SettingError(exc.with_key(key, hint)) from None
    return None


# FinalStage.plan's arguments -> the keys that set them, and what to do
FINAL_STAGE_KEYS = {
    "output_stride": ("trainer.final_stage.os", ""),
    "stage_iters": (
        "trainer.final_stage.iters",
        "; trainer.iters sets the run's iterations: set both, or trainer.final_stage=null to train at one stride",
    ),
    "lr": ("trainer.final_stage.lr", ""),
}


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, stage: FinalStage | None):
    """``sched`` over all iterations; with a final stage that has its own LR, ``sched`` until the stage, then poly
    again from that LR to zero over it (DeepLabv3's two trainings: ``sched.total_iters`` at the switch)."""
    if stage is None or stage.lr is None:
        return instantiate(cfg.sched)(optimizer)
    if not str(cfg.sched.get("_target_", "")).endswith("PolynomialLR"):
        raise SettingError(
            f"trainer.final_stage.lr restarts the poly schedule; sched {cfg.sched.get('_target_')} is not poly"
        )
    first_total, power = int(cfg.sched.total_iters), float(cfg.sched.power)
    return two_stage_poly(optimizer, stage.start, int(cfg.trainer.iters), power, stage.lr, first_total)


def identity(cfg: DictConfig) -> dict:
    """The resolved values of ``IDENTITY``, flattened to ``{"optim.lr": 0.007, ...}``."""
    values = {}
    for key in IDENTITY:
        value = OmegaConf.select(cfg, key, default=None)
        values[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return flatten(values)


@dataclass
class LoadedRun:
    """A training run folder's config, its model with the checkpoint's weights at the stride the checkpoint ended
    at, the checkpoint and its path."""

    config: DictConfig
    model: DeepLabV3
    state: dict
    checkpoint: Path


def load_segmenter(
    path: str | Path, *, device: str = "cpu", output_stride: int | None = None, threads: int | None = None
) -> Segmenter:
    """A ``Segmenter`` for a training run folder (its network built from its config, the last checkpoint's weights),
    or for anything else ``Segmenter.from_pretrained`` reads (a model file, an ONNX export, an ExecuTorch program;
    ``threads`` for their runtimes)."""
    if not Path(path).is_dir():
        return Segmenter.from_pretrained(path, device=device, output_stride=output_stride, threads=threads)
    loaded = load_run(path)
    model = loaded.model
    if output_stride is not None:
        model.set_output_stride(output_stride)
    return Segmenter(model, class_names(loaded.config), model.encoder.mean, model.encoder.std, device)


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> LoadedRun:
    """Load a training run folder (``checkpoint``: another checkpoint of the same network)."""
    cfg = load_run_config(run_dir)
    model = build_model(cfg.model, weights=False)  # the checkpoint holds every weight
    path = Path(checkpoint) if checkpoint else last_checkpoint(run_dir)
    state = load_checkpoint(path, map_location="cpu")
    try:
        model.load_state_dict(model_state(state, path))
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the run's model ({exc})") from exc
    stage = final_stage(cfg)
    if stage is not None:
        model.set_output_stride(stage.stride_at(int(state.get("iteration") or 0), model.output_stride))
    return LoadedRun(cfg, model, state, path)
