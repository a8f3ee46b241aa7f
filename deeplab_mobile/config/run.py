"""A training run: the settings that identify it, DeepLabv3's final stage and the LR schedule (a run folder is
loaded back by ``config.source``)."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..engine.run import FinalStage, SettingError, flatten
from ..engine.schedule import two_stage_poly
from ..errors import ArgumentError

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


# Builders a run's config named before ``build_model`` built Hydra's models too: the same network, so a run
# started with them resumes under this code
LEGACY_MODEL_TARGETS = {"deeplab_mobile.models.DeepLabV3": "deeplab_mobile.models.build_model"}


def identity(cfg: DictConfig) -> dict:
    """The resolved values of ``IDENTITY``, flattened to ``{"optim.lr": 0.007, ...}``."""
    values = {}
    for key in IDENTITY:
        value = OmegaConf.select(cfg, key, default=None)
        values[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    flat = flatten(values)
    target = flat.get("model._target_")
    if target in LEGACY_MODEL_TARGETS:
        flat["model._target_"] = LEGACY_MODEL_TARGETS[target]
    return flat
