"""A training run planned once: the composed config resolved, before anything is built or written, into a
read-only ``RunPlan`` that every later step reads (docs/configuration.md#the-run-plan).

What the command line leaves open is decided here, each by a function that returns its answer and changes
nothing: a folder dataset's classes (``model.data_classes``), the network of ``weights=`` (``model.adopt_weights``),
the job's device on a shared machine (``machine.share_machine``), deterministic mode's thread count, DeepLabv3's
final stage, whether the run resumes. The plan's ``config`` is the composed one with those answers in it
(``num_classes``, ``data.classes``, ``model``, ``trainer.device``), made read-only: the config the run records and
its identity (``run.identity``) are that one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..engine.run import FinalStage, SettingError
from ..runfolder import RunFolder
from .machine import share_machine
from .model import Adopted, adopt_weights, class_names, data_classes
from .run import final_stage, identity

RESUME_MODES = (False, True, "auto")


@dataclass(frozen=True)
class RunPlan:
    """A training run as it will run: its resolved, read-only ``config`` and what was decided on the way."""

    config: DictConfig
    out_dir: Path
    names: tuple[str, ...]  # the class names, in index order
    adopted: Adopted | None  # the weights of weights=, or None
    stage: FinalStage | None  # DeepLabv3's final stage, or None
    threads: int | None  # deterministic mode's fixed thread count, or None when it is off
    resuming: bool  # the folder's checkpoint is continued

    @property
    def identity(self) -> dict:
        """The settings a resume must match (``run.identity``)."""
        return identity(self.config)


def resume_mode(cfg: DictConfig) -> bool | str:
    """``resume``: false, true or auto (the one setting of two types, so its check is here)."""
    if cfg.resume not in RESUME_MODES:
        raise SettingError(f"resume={cfg.resume!r} is not supported; choose false, true or auto")
    return cfg.resume


def resuming(cfg: DictConfig, out_dir: Path, then: str | None = None) -> bool:
    """``resume``: ``false`` refuses a folder that has a checkpoint, ``true`` one that has none (a mistyped folder
    must not start a fresh run), ``auto`` resumes when there is one (a requeued Slurm job, a sweep finished in
    place). Refused before anything is written (``runfolder.RunFolder.check_start``)."""
    return RunFolder(out_dir).check_start(resume_mode(cfg), then)


def deterministic_threads(cfg: DictConfig) -> int | None:
    """``trainer.deterministic``'s fixed thread count (``trainer.deterministic_threads``), or ``None`` when off."""
    if not cfg.trainer.deterministic:
        return None
    threads = cfg.trainer.deterministic_threads
    if threads < 1:
        raise SettingError(f"trainer.deterministic_threads must be at least 1, got {threads}")
    return threads


def plan_run(cfg: DictConfig, out_dir: str | Path, hydra_cfg: DictConfig | None = None) -> RunPlan:
    """The run ``cfg`` describes in ``out_dir``, resolved; a setting that cannot be honoured is refused here, before
    anything is built, downloaded or written. ``cfg`` itself is not changed."""
    out_dir = Path(out_dir)
    threads = deterministic_threads(cfg)
    resumes = resuming(cfg, out_dir)
    stage = final_stage(cfg)
    names = data_classes(cfg)
    num_classes = len(names) if names is not None else int(cfg.num_classes)
    adopted = adopt_weights(cfg, num_classes)
    device = share_machine(cfg, hydra_cfg)
    config = copy.deepcopy(cfg)
    OmegaConf.set_readonly(config, False)
    config.num_classes = num_classes
    if names is not None:
        config.data.classes = list(names)
    if adopted is not None:
        config.model = adopted.model
    config.trainer.device = device
    OmegaConf.set_readonly(config, True)
    return RunPlan(config, out_dir, class_names(config), adopted, stage, threads, resumes)
