"""Whole-model files: a network's weights together with what it needs to run them as trained.

A model file (``scripts/convert_weights.py`` writes them from DeepLab's official checkpoints) is a ``torch.save``d
dict that ``torch.load(..., weights_only=True)`` reads:

- ``format`` / ``version``: ``deeplab-mobile/model``, 1;
- ``config``: the ``build_model`` arguments (encoder, head, width, tap, output stride, class count, BatchNorm
  setting, geometry);
- ``mean`` / ``std``: the input normalisation on a 0-1 pixel scale (DeepLab's ``(x - 127.5) / 127.5`` is 0.5 / 0.5);
- ``classes``: the class names; ``source``: where the weights came from;
- ``state_dict``: every weight of the model.

``weights=FILE`` (train, eval, export, predict) loads one; ``encoder_weights`` stays the ImageNet encoder only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InvalidValue, load_failure
from ..files import atomic_path
from .segmentor import DeepLabV3
from .weights import WeightsError

FORMAT = "deeplab-mobile/model"
VERSION = 1
CONFIG_KEYS = ("encoder", "head", "output_stride", "width", "tap", "num_classes", "bn", "geometry")


@dataclass
class ModelFile:
    """The content of a model file except its weights."""

    config: dict
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: tuple[str, ...]
    source: str = ""
    extra: dict = field(default_factory=dict)

    def build_args(self, output_stride: int | None = None) -> dict:
        """``build_model``'s arguments for the network the file describes (a run's config records them)."""
        config = dict(self.config)
        if output_stride is not None:
            config["output_stride"] = int(output_stride)
        return {**config, "mean": list(self.mean), "std": list(self.std)}


def save_model_file(path: str | Path, model: DeepLabV3, info: ModelFile) -> Path:
    """Write ``model``'s weights and ``info`` to ``path`` atomically (a temporary file renamed into place): an
    interrupted write leaves no file, never half of one."""
    path = Path(path)
    missing = [k for k in CONFIG_KEYS if k not in info.config]
    if missing:
        raise InvalidValue(f"model file config lacks {missing}")
    if len(info.classes) != info.config["num_classes"]:
        raise InvalidValue(f"{len(info.classes)} class names for {info.config['num_classes']} classes")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": dict(info.config),
        "mean": list(info.mean),
        "std": list(info.std),
        "classes": list(info.classes),
        "source": info.source,
        "extra": dict(info.extra),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_model_file(path: str | Path) -> tuple[ModelFile, dict[str, torch.Tensor]]:
    """The file's description and state dict; a ``WeightsError`` naming the file for anything else. A published
    weights name (``zoo``) is its cached model file, downloaded and converted on first use."""
    from ..zoo import resolve

    path = resolve(path)
    if not path.is_file():
        raise WeightsError(f"{path}: model file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
        raise WeightsError(f"{path}: not a readable model file ({load_failure(exc)})") from exc
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        hint = (
            " (a training checkpoint? pass its run folder instead)"
            if isinstance(obj, Mapping) and "model" in obj
            else ""
        )
        raise WeightsError(
            f"{path}: not a deeplab-mobile model file{hint}; convert official checkpoints with "
            "scripts/convert_weights.py"
        )
    if obj.get("version") != VERSION:
        raise WeightsError(f"{path}: model file version {obj.get('version')!r}; this code reads version {VERSION}")
    config = dict(obj.get("config") or {})
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise WeightsError(f"{path}: model file config lacks {missing}")
    info = ModelFile(
        config=config,
        mean=tuple(obj["mean"]),
        std=tuple(obj["std"]),
        classes=tuple(obj["classes"]),
        source=str(obj.get("source", "")),
        extra=dict(obj.get("extra") or {}),
    )
    return info, obj["state_dict"]


def load_weights(model: DeepLabV3, state: dict, path: str | Path, other_classes: bool = False) -> tuple[str, ...]:
    """A state dict (a model file's or a run's) into ``model``, strictly: a ``WeightsError`` naming the file
    otherwise. ``other_classes``: the model may have another class count than the weights; then every weight but
    the head's classifier (``head.classifier_names``) is loaded, the classifier keeps its fresh initialisation, and
    the names of the modules re-initialised are returned (none when the class counts agree)."""
    names = tuple(getattr(model.head, "classifier_names", ("classifier",)))
    prefixes = tuple(f"head.{name}." for name in names)
    own = model.state_dict()
    differs = [k for k, v in state.items() if k.startswith(prefixes) and k in own and own[k].shape != v.shape]
    skipped: tuple[str, ...] = ()
    if differs and other_classes:
        state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
        skipped = tuple(f"head.{name}" for name in names)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: the weights do not fit the network ({exc})") from exc
    missing = [k for k in missing if not (skipped and k.startswith(prefixes))]
    if missing or unexpected:
        raise WeightsError(
            f"{path}: the weights do not fit the network (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return skipped
