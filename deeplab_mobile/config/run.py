"""A training run: the settings that identify it (the schema's ``same_run`` fields), DeepLabv3's final stage and
the LR schedule (a run folder is loaded back by ``config.source``)."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..engine.run import FinalStage, SettingError, flatten
from ..engine.schedule import two_stage_poly
from ..engine.trainer import FinalStageSettings
from ..errors import ArgumentError
from .loss import upgrade_identity
from .schema import run_identity_keys


def final_stage(cfg: DictConfig) -> FinalStage | None:
    """``trainer.final_stage`` ({os, iters, lr}) as a ``FinalStage``, or ``None``; refused if it cannot be honoured
    (a run folder of any version reads so: ``schema.read_run_config``)."""
    stage = cfg.trainer.final_stage
    if stage is None:
        return None
    try:
        stage = OmegaConf.merge(OmegaConf.structured(FinalStageSettings), stage)
    except OmegaConfBaseException as exc:
        raise SettingError(f"trainer.final_stage={stage}: {str(exc).splitlines()[0]}; give {{os, iters, lr}}") from None
    try:
        return FinalStage.plan(int(cfg.trainer.iters), stage.os, stage.iters, stage.lr)
    except ArgumentError as exc:
        key, hint = FINAL_STAGE_KEYS[exc.argument]
        raise SettingError(exc.with_key(key, hint)) from None


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
    """The run's identity: the resolved values of the schema's ``same_run`` fields (``schema.run_identity_keys``),
    flattened to ``{"optim.lr": 0.007, ...}``."""
    values = {}
    for key in run_identity_keys():
        value = OmegaConf.select(cfg, key)
        values[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return canonical(flatten(values))


def saved_identity(state: dict) -> dict:
    """The identity a checkpoint was trained with, in today's keys (a loss named by ``name`` as its ``_target_``
    node; a builder renamed since as today's)."""
    return canonical(upgrade_identity(dict(state.get("config", {}))))


def canonical(flat: dict) -> dict:
    target = flat.get("model._target_")
    if target in LEGACY_MODEL_TARGETS:
        flat["model._target_"] = LEGACY_MODEL_TARGETS[target]
    return flat
