"""An evaluation as a config describes it: the protocol (``eval`` node) and its checks, and the one evaluation
set-up (the split, its loader and the normalisation) that training, evaluation and quantization share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from ..data import EvalTransform, Normalize, mean_pixel
from ..data.loader import eval_loader
from ..engine.distributed import Dist, shard
from ..engine.evaluator import Protocol
from ..engine.run import SettingError
from ..engine.tiling import Tiling
from ..errors import ArgumentError, is_number
from ..models import DeepLabV3
from .data import open_data_split


def protocol(eval_cfg: DictConfig) -> Protocol:
    """The evaluation protocol of an ``eval`` config node."""
    scales = eval_cfg.get("mf_scales")
    return Protocol(
        os=eval_cfg.get("os"),
        mf=bool(eval_cfg.get("mf")),
        mf_os=eval_cfg.get("mf_os"),
        mf_scales=tuple(scales) if scales is not None else (),
        flip=bool(eval_cfg.get("flip", True)),
        tile=tiling(eval_cfg.get("tile")),
    )


def tiling(node) -> Tiling | None:
    """``eval.tile``: null, or ``{size, overlap, blend}`` (``engine.tiling.Tiling``); a bad one names the key."""
    if node is None:
        return None
    if is_number(node, integer=True):  # eval.tile=513: a size alone
        node = {"size": node}
    try:
        size = node["size"]
        size = int(size) if isinstance(size, int) else tuple(size)
        return Tiling(size, float(node.get("overlap", 0.25)), str(node.get("blend", "gaussian")))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SettingError(
            f"eval.tile={node!r}: {exc}; e.g. eval.tile={{size: 513, overlap: 0.25, blend: gaussian}}"
        ) from None


def check_protocol(proto: Protocol, model: DeepLabV3, eval_cfg: DictConfig | None = None) -> Protocol:
    """The protocol, checked against the model, and the evaluation loader's settings (``eval.batch_size``,
    ``eval.workers``, ``eval.pad_to``): a one-line ``SettingError`` before any work."""
    try:
        proto.check(model)
    except ArgumentError as exc:
        raise SettingError(exc.with_key(f"eval.{exc.argument}")) from None
    if eval_cfg is not None:  # typed by the schema (config/schema.py): their ranges are checked here
        for key, low in (("batch_size", 1), ("workers", 0), ("pad_to", 1)):
            value = eval_cfg.get(key)
            if value is not None and value < low:
                raise SettingError(f"eval.{key} must be an integer >= {low}, got {value}")
    return proto


@dataclass
class EvalData:
    """A split as the evaluator reads it: the dataset (full images), its loader (padded batches, this process's
    share under torchrun) and the normalisation of the network that is scored."""

    dataset: Dataset
    loader: DataLoader
    normalize: Normalize


def evaluation_data(
    data: DictConfig,
    split: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    eval_cfg: DictConfig,
    pad_to: int | None,
    env: Dist | None = None,
    source: str | None = None,
) -> EvalData:
    """``split`` of the config's data padded to ``pad_to`` with the network's mean pixel (``eval.batch_size``
    images a batch, ``eval.workers`` workers), and ``Normalize(mean, std)`` on the process's device; ``source``:
    where ``data`` was read, for the message when the data is not there."""
    dataset = open_data_split(data, split, EvalTransform(), num_classes=num_classes, source=source)
    shared = shard(dataset, env) if env is not None else dataset
    loader = eval_loader(shared, eval_cfg.batch_size, eval_cfg.workers, mean_pixel(mean), pad_to)
    normalize = Normalize(mean, std).to(env.device if env is not None else "cpu")
    return EvalData(dataset, loader, normalize)
