"""Hydra configs -> the package's objects, shared by the apps: the model, the class names, DeepLabv3's final
stage and the LR schedule, a run's identity, a run folder's model, and how parallel sweep jobs share a machine."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ..data.datasets import classes_file
from ..data.folder import read_classes
from ..engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint, model_state
from ..engine.evaluator import Protocol
from ..engine.run import FinalStage, SettingError, flatten
from ..engine.schedule import two_stage_poly
from ..models import DeepLabV3
from ..models.pretrained import ModelFile, read_model_file
from ..models.weights import WeightsError

log = logging.getLogger(__name__)

# Settings that define a run: a resume with any of them changed is refused.
IDENTITY = (
    "model", "os", "width", "tap", "num_classes", "encoder_weights", "data.name", "data.train_split",
    "data.crop_size", "data.scales", "data.batch_size", "optim", "sched", "trainer.iters", "trainer.seed",
    "trainer.amp", "trainer.freeze_bn", "trainer.sync_bn", "trainer.decay_depthwise", "trainer.final_stage",
    "weights",
)  # fmt: skip


def build_model(model_cfg: DictConfig, weights: bool = True) -> DeepLabV3:
    """The model a config describes; ``weights=False`` skips ``encoder.weights`` (no download, no file: a
    checkpoint or nothing will supply the weights). A refused setting or weights file is raised as itself, not
    wrapped in Hydra's ``InstantiationException``, so the apps can report it in one line."""
    cfg = model_cfg.copy()
    if not weights and OmegaConf.is_dict(cfg.get("encoder")):
        cfg.encoder.weights = None
    try:
        return instantiate(cfg)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, WeightsError):
            raise cause from None
        if isinstance(cause, ValueError):
            raise SettingError(str(cause)) from None
        raise


# The network a model file (weights=FILE) decides: these keys given with it on the command line are refused.
MODEL_FILE_DECIDES = ("encoder", "head", "width", "tap", "bn", "geometry", "encoder_weights")


def command_line_keys() -> set[str]:
    """The keys given on the command line (Hydra's task overrides); none outside a Hydra app."""
    if not HydraConfig.initialized():
        return set()
    keys = set()
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        keys.add(key)
    return keys


@dataclass
class Adopted:
    """Weights a run starts from (``weights=``): what they are, their state dict, and their class count."""

    description: str
    state: dict
    num_classes: int


def run_folder_of(path: str | Path) -> Path | None:
    """The training run folder ``path`` is, or whose checkpoint it is (``<run>/checkpoints/*.pt``)."""
    path = Path(path)
    for folder in (path, path.parent.parent):
        if (folder / ".hydra" / "config.yaml").is_file() and (path.is_dir() or path.suffix == ".pt"):
            return folder
    return None


def retarget(model: dict, num_classes: int, os: int) -> dict:
    """A resolved model config (a Hydra ``DeepLabV3`` node, or ``build_model``'s arguments) at another class count
    and output stride, its weights to come from elsewhere."""
    if "head" in model and isinstance(model["head"], dict):
        model["head"]["num_classes"] = num_classes
        model["encoder"]["output_stride"] = os
        model["encoder"]["weights"] = None
    else:
        model.update(num_classes=num_classes, output_stride=os)
    return model


def adopt_weights(cfg: DictConfig) -> Adopted | None:
    """With ``weights=`` a model file, a training run folder or one of its checkpoints: ``cfg.model`` becomes that
    network (a model file's ``build_model`` arguments, or the run's model config, at ``cfg.os``), so the run's
    config rebuilds it without the source. The class count is the data's: where it differs from the weights',
    training re-initialises the classifier (``load_weights(..., other_classes=True)``). Refused: a design key given
    with it on the command line."""
    path = OmegaConf.select(cfg, "weights", default=None)
    if not path:
        return None
    run_dir = run_folder_of(path)
    if run_dir is not None:
        run = load_run_config(run_dir)
        checkpoint = Path(path) if Path(path).is_file() else last_checkpoint(run_dir)
        state = model_state(load_checkpoint(checkpoint, map_location="cpu"), checkpoint)
        model = OmegaConf.to_container(run.model, resolve=True)
        n_weights = int(run.num_classes)
        description = f"the network of run {run_dir} ({n_weights} classes), {checkpoint.name}"
    else:
        info, state = read_model_file(path)
        model = {"_target_": "deeplab_mobile.models.build_model", **info.build_args()}
        n_weights = int(info.config["num_classes"])
        description = describe_file(info)
    clash = sorted(command_line_keys() & set(MODEL_FILE_DECIDES))
    if clash:
        raise SettingError(f"weights={path} decides the network ({description}); drop {', '.join(clash)}")
    with open_dict(cfg):
        cfg.model = OmegaConf.create(retarget(model, int(cfg.num_classes), int(cfg.os)))
    return Adopted(description, state, n_weights)


def adopt_data_classes(cfg: DictConfig) -> None:
    """A folder dataset's classes file decides the class count and names: ``num_classes`` and ``data.classes``
    become the file's (so the run's config holds them). ``num_classes`` given on the command line and differing is
    refused."""
    path = classes_file(cfg.data)
    if path is None:
        return
    names = read_classes(path).names
    if "num_classes" in command_line_keys() and int(cfg.num_classes) != len(names):
        raise SettingError(f"num_classes={cfg.num_classes}, but {path} names {len(names)} classes; drop num_classes")
    with open_dict(cfg):
        cfg.num_classes = len(names)
        cfg.data.classes = list(names)


def describe_file(info: ModelFile) -> str:
    c = info.config
    return f"MobileNetV2 x{c['width']:g}, {c['head']}, {c['num_classes']} classes, {c['geometry']} geometry"


def class_names(cfg: DictConfig) -> tuple[str, ...]:
    """The class names ``data.classes`` lists or points at (a Python sequence, e.g.
    ``deeplab_mobile.data.voc.CLASSES``), or the class indices for a config without one."""
    where = OmegaConf.select(cfg, "data.classes", default=None)
    n = int(cfg.num_classes)
    if where is None:
        return tuple(map(str, range(n)))
    names = tuple(where) if OmegaConf.is_list(where) else tuple(get_object(str(where)))
    if len(names) != n:
        raise ValueError(f"data.classes ({where}) names {len(names)} classes, but num_classes is {n}")
    return names


def final_stage(cfg: DictConfig) -> FinalStage | None:
    """``trainer.final_stage`` ({os, iters, lr}) as a ``FinalStage``, or ``None``; refused if it cannot be honoured.
    Run folders written before it existed kept the same settings as ``trainer.final_os`` / ``final_os_iters`` /
    ``final_lr``."""
    iters = int(cfg.trainer.iters)
    stage = OmegaConf.select(cfg, "trainer.final_stage", default=None)
    if stage is not None:
        return FinalStage.plan(iters, stage.get("os"), stage.get("iters"), stage.get("lr"))
    legacy = OmegaConf.select(cfg, "trainer.final_os", default=None)
    if legacy is not None:
        t = cfg.trainer
        return FinalStage.plan(iters, legacy, t.get("final_os_iters"), t.get("final_lr"))
    return None


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


def protocol(eval_cfg: DictConfig) -> Protocol:
    """The evaluation protocol of an ``eval`` config node."""
    scales = eval_cfg.get("mf_scales")
    return Protocol(
        os=eval_cfg.get("os"), mf=bool(eval_cfg.get("mf")), mf_os=eval_cfg.get("mf_os"),
        mf_scales=tuple(scales) if scales is not None else (), flip=bool(eval_cfg.get("flip", True)),
    )  # fmt: skip


def check_protocol(proto: Protocol, model: DeepLabV3, eval_cfg: DictConfig | None = None) -> Protocol:
    """The protocol, checked against the model, and the evaluation loader's settings (``eval.batch_size``,
    ``eval.workers``, ``eval.pad_to``): a one-line ``SettingError`` before any work."""
    try:
        proto.check(model)
    except ValueError as exc:
        raise SettingError(str(exc)) from None
    if eval_cfg is not None:
        for key, low, none_ok in (("batch_size", 1, False), ("workers", 0, False), ("pad_to", 1, True)):
            value = eval_cfg.get(key)
            if value is None and none_ok:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SettingError(
                    f"eval.{key} must be an integer >= {low}{' or null' if none_ok else ''}, got {value!r}"
                )
    return proto


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


def load_run_config(run_dir: str | Path) -> DictConfig:
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a training run folder (no .hydra/config.yaml)")
    return OmegaConf.load(path)


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


def share_machine(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """Jobs that a launcher runs side by side on one machine (joblib) split its cores and its GPUs.

    Each job would otherwise start as many compute threads as the machine has cores, and n jobs would fight over
    them (each ran many times slower than one alone). With ``trainer.threads=auto`` a job takes
    cores / n_jobs threads; with ``trainer.device=auto`` and several GPUs, job k takes GPU k mod the GPU count.
    Sequential runs and torchrun processes keep torch's defaults.
    """
    launcher = str(OmegaConf.select(hydra_cfg, "launcher._target_", default="") or "")
    parallel = "joblib" in launcher.lower() and hydra_cfg.mode == RunMode.MULTIRUN
    n_jobs = int(OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=1) or 1) if parallel else 1
    cores = os.cpu_count() or 1
    n_jobs = cores if n_jobs < 0 else n_jobs  # joblib's -1 = as many jobs as cores
    threads = cfg.trainer.threads
    if threads == "auto":
        threads = max(1, cores // n_jobs) if n_jobs > 1 else None
    if threads:
        torch.set_num_threads(int(threads))
    gpus = torch.cuda.device_count()
    if n_jobs > 1 and cfg.trainer.device == "auto" and gpus > 1:
        cfg.trainer.device = f"cuda:{hydra_cfg.job.num % gpus}"
    if n_jobs > 1:
        log.info("job %d, %d at a time: %d CPU threads, device %s", hydra_cfg.job.num, n_jobs,
                 torch.get_num_threads(), cfg.trainer.device)  # fmt: skip
