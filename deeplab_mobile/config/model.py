"""A config's network: the model, its class names, and the weights a run starts from (``weights=``).

Hydra's ``instantiate`` builds the model from the config's ``model`` node; the errors it wraps are raised as
themselves, so the apps report them in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf, read_write

from ..data.datasets import classes_file
from ..data.folder import read_classes
from ..engine.checkpoint import last_checkpoint, load_checkpoint, model_state
from ..engine.run import SettingError
from ..errors import ArgumentError, InvalidValue
from ..models import DeepLabV3
from ..models.pretrained import ModelFile, read_model_file
from ..models.weights import WeightsError
from ..runfolder import require_run, run_folder_of
from .data import translate
from .schema import read_run_config


def build_model(model_cfg: DictConfig, weights: bool = True) -> DeepLabV3:
    """The model a config describes; ``weights=False`` skips ``encoder.weights`` (no download, no file: a
    checkpoint or nothing will supply the weights). A refused setting or weights file is raised as itself, not
    wrapped in Hydra's ``InstantiationException``, so the apps can report it in one line."""
    cfg = model_cfg.copy()
    if not weights and OmegaConf.is_dict(cfg.get("encoder")):
        with read_write(cfg):  # a copy of a read-only plan's node
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


@dataclass(frozen=True)
class Adopted:
    """Weights a run starts from (``weights=``): what they are, their state dict, their class count, and the run's
    ``model`` node that builds their network at the run's class count and stride."""

    description: str
    state: dict
    num_classes: int
    model: dict


def load_run_config(run_dir: str | Path) -> DictConfig:
    """A training run folder's config, typed by the schema (``schema.read_run_config``)."""
    return read_run_config(require_run(run_dir).config)


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


def adopt_weights(cfg: DictConfig, num_classes: int) -> Adopted | None:
    """With ``weights=`` a model file, a training run folder or one of its checkpoints: that network (a model
    file's ``build_model`` arguments, or the run's model config, at ``cfg.os`` and ``num_classes``, the data's) as
    the run's ``model`` node, so the run's config rebuilds it without the source. Where the class count differs
    from the weights', training re-initialises the classifier (``load_weights(..., other_classes=True)``).
    Refused: a design key given with it on the command line. ``cfg`` is not changed (``config.plan``)."""
    path = cfg.weights
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
    return Adopted(description, state, n_weights, retarget(model, int(num_classes), int(cfg.os)))


def data_classes(cfg: DictConfig) -> tuple[str, ...] | None:
    """A folder dataset's classes, from its classes file: they decide the class count and names (the plan puts
    them into ``num_classes`` and ``data.classes``); ``None`` for a dataset with fixed classes. ``num_classes`` given
    on the command line and differing is refused."""
    try:
        path = classes_file(cfg.data)
    except ArgumentError as exc:
        raise translate(exc, cfg.data) from None
    if path is None:
        return None
    names = tuple(read_classes(path).names)
    if "num_classes" in command_line_keys() and int(cfg.num_classes) != len(names):
        raise SettingError(f"num_classes={cfg.num_classes}, but {path} names {len(names)} classes; drop num_classes")
    return names


def describe_file(info: ModelFile) -> str:
    c = info.config
    return f"MobileNetV2 x{c['width']:g}, {c['head']}, {c['num_classes']} classes, {c['geometry']} geometry"


def class_names(cfg: DictConfig) -> tuple[str, ...]:
    """The class names ``data.classes`` lists or points at (a Python sequence, e.g.
    ``deeplab_mobile.data.voc.CLASSES``), or the class indices for a config without one."""
    where = cfg.data.classes if "data" in cfg else None
    n = int(cfg.num_classes)
    if where is None:
        return tuple(map(str, range(n)))
    names = tuple(where) if OmegaConf.is_list(where) else tuple(get_object(str(where)))
    if len(names) != n:
        raise InvalidValue(f"data.classes ({where}) names {len(names)} classes, but num_classes is {n}")
    return names
