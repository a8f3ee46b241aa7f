"""Evaluation as in DeepLab (docs/protocol.md, section 5; its ``eval.py``): full images padded to the crop size
(by the loader's ``pad_collate``), single scale or multi-scale + left-right flip with softmax probabilities averaged
at the padded size, one confusion matrix over the set; ``Protocol`` names what an evaluation runs (which stride for
single scale, which for MF), and ``run_protocol`` runs it and records it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..complexity import TABLE7_SIZE, count_madds, count_madds_mf, count_params
from ..data.base import IGNORE_INDEX, sample_names
from ..errors import ArgumentError, InvalidValue, is_number
from ..metrics import confusion_matrix, per_image_confusion, scores
from ..models import output_stride
from ..models.geometry import scale_dimension
from ..stats import LEVEL, SAMPLES, SEED, bootstrap_miou
from .distributed import Dist, all_reduce_sum
from .tiling import Tiling, tiled_labels


@torch.no_grad()
def predict_probs(
    model: nn.Module, x: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """Softmax probabilities (N, C, H, W) at the input's size, averaged over ``scales`` and, with ``flip``, over
    the left-right mirrored input as well, with DeepLab's geometry (``predict_labels_multi_scale``): the input at
    scale ``s`` is resized to ``scale_dimension(H, s)`` (257 ... 897 for 513); its feature-resolution logits are
    resized to the logits grid of ``max(1, s)`` (``scale_dimension(H, max(1, s) / stride)``, the stride of the
    model's logits: the output stride, or 4 for DeepLabV3+'s decoder) and then to the input's
    size. Every resize is bilinear with the model's ``align_corners``. A model without ``logits``/``upsample`` (an
    exported one) is resized from its own output."""
    size = tuple(x.shape[-2:])
    align = bool(getattr(model, "align_corners", False))
    staged = hasattr(model, "logits") and hasattr(model, "output_stride")
    stride = getattr(model, "logits_stride", None) or getattr(model, "output_stride", None)
    total = None
    for scale in scales:
        scaled = tuple(scale_dimension(n, scale) for n in size)
        xs = x if scaled == size else F.interpolate(x, size=scaled, mode="bilinear", align_corners=align)
        views = (xs, xs.flip(-1)) if flip else (xs,)
        for i, view in enumerate(views):
            if staged:
                logits = model.logits(view).float()
                grid = tuple(scale_dimension(n, max(1.0, scale) / stride) for n in size)
                if logits.shape[-2:] != grid:
                    logits = F.interpolate(logits, size=grid, mode="bilinear", align_corners=align)
            else:
                logits = model(view).float()
            if i == 1:
                logits = logits.flip(-1)
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=align)
            probs = logits.softmax(1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


def mean_padded(x: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """The normalised batch with each image's padding (beyond its ``sizes`` row) set to 0, the exact mean pixel:
    DeepLab pads with 127.5 before normalising, which a uint8 batch can only round (in place; returns ``x``)."""
    for i, (h, w) in enumerate(sizes.tolist()):
        x[i, :, h:, :] = 0
        x[i, :, :, w:] = 0
    return x


class Evaluation(NamedTuple):
    """What ``evaluate`` returns: ``scores`` (``metrics.scores``), the set's ``confusion`` matrix, up to ``keep``
    ``examples`` (image, mask, prediction) uint8 arrays cropped to their original sizes (for TensorBoard), and with
    ``per_image`` each image's own confusion matrix, (images, C, C) int64 in the dataset's order, and ``names``,
    the images' ids in that order."""

    scores: dict
    confusion: torch.Tensor
    examples: list
    per_image: np.ndarray | None = None
    names: list[str] | None = None


def _positions(loader) -> tuple[list[int], int, list[str]]:
    """Where each sample the loader yields sits in the whole set (a ``shard``'s ``Subset`` holds every
    ``world_size``-th one), the set's size and its image ids."""
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        raise InvalidValue("per-image matrices need a DataLoader over a dataset (its image ids name the rows)")
    whole = getattr(dataset, "dataset", dataset)
    positions = list(getattr(dataset, "indices", range(len(dataset))))
    return positions, len(whole), sample_names(whole)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    normalize: nn.Module,
    loader: DataLoader | Iterable,
    num_classes: int,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    ignore_index: int = IGNORE_INDEX,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    env: Dist | None = None,
    progress: bool = False,
    keep: int = 0,
    per_image: bool = False,
    tile: Tiling | None = None,
) -> Evaluation:
    """Scores over the whole loader (summed over distributed ranks). The loader yields ``pad_collate`` batches:
    (uint8 NHWC images, int64 masks with ``ignore_index`` on padding, original sizes), in the order of its dataset
    (``per_image`` needs the loader's dataset: its ids name the matrices, and a distributed shard's are put back in
    the whole set's order). ``tile``: sliding-window inference (``engine.tiling``), each window single scale or
    MF + flip as asked.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    if per_image:
        positions, total, names = _positions(loader)
        images = torch.zeros(total, num_classes, num_classes, dtype=torch.int64, device=device)
    seen = 0
    examples = []
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    desc = "eval MF+flip" if len(scales) > 1 or flip else "eval"
    for batch, masks, sizes in tqdm(loader, desc=desc, leave=False, disable=not progress):
        batch, masks = batch.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        with amp:
            x = mean_padded(normalize(batch), sizes)
            if tile is None:
                pred = predict_probs(model, x, scales, flip).argmax(1)
            else:
                pred = tiled_labels(lambda crop: predict_probs(model, crop, scales, flip), x, tile)
        conf += confusion_matrix(pred, masks, num_classes, ignore_index)
        if per_image:
            rows = torch.as_tensor(positions[seen : seen + len(pred)], device=device)
            images[rows] = per_image_confusion(pred, masks, num_classes, ignore_index)
        seen += len(pred)
        for i in range(min(keep - len(examples), len(batch))):
            h, w = sizes[i].tolist()
            examples.append(tuple(t[i, :h, :w].to("cpu", torch.uint8).numpy() for t in (batch, masks, pred)))
    model.train(was_training)
    conf = all_reduce_sum(conf, env) if env is not None else conf
    conf = conf.cpu()
    if not per_image:
        return Evaluation(scores(conf), conf, examples)
    images = (all_reduce_sum(images, env) if env is not None else images).cpu().numpy()
    return Evaluation(scores(conf), conf, examples, images, names)


@dataclass(frozen=True)
class Protocol:
    """What an evaluation runs: single scale at ``os``, and with ``mf`` the MF scales (each also flipped with
    ``flip``) at ``mf_os``. DeepLab's model zoo reports one network trained at OS16 at OS16 single scale and at
    OS8 with MF + flip (``os=None, mf_os=8``). ``None`` strides are the model's own (``mf_os``: ``os``'s)."""

    os: int | None = None
    mf: bool = False
    mf_os: int | None = None
    mf_scales: tuple[float, ...] = ()
    flip: bool = True
    tile: Tiling | None = None  # sliding-window inference for both (engine.tiling)

    def strides(self, model: nn.Module) -> tuple[int, int]:
        ss = self.os if self.os is not None else model.output_stride
        return ss, self.mf_os if self.mf_os is not None else ss

    def check(self, model: nn.Module) -> None:
        """Refuse, before any work, a setting this model cannot evaluate with: an ``ArgumentError`` naming the field
        (``os``, ``mf_os``, ``mf_scales``)."""
        for field, stride in (("os", self.os), ("mf_os", self.mf_os)):
            if stride is not None:
                try:
                    with output_stride(model, stride):
                        pass
                except ValueError as exc:
                    raise ArgumentError(field, f"={stride}: {exc}") from None
        if self.mf:
            scales = list(self.mf_scales or ())
            bad = [s for s in scales if not is_number(s) or s <= 0]
            if not scales or bad:
                raise ArgumentError("mf_scales", f"must be a non-empty list of positive numbers, got {scales}")

    def name(self, model: nn.Module) -> str:
        """A record name that spells the settings: ``os16``, ``os16_mf-os8-0.5-0.75-1-1.25-1.5-1.75-flip``."""
        ss, mf = self.strides(model)
        tile = f"_{self.tile.name()}" if self.tile else ""
        if not self.mf:
            return f"os{ss}{tile}"
        scales = "-".join(f"{s:g}" for s in self.mf_scales)
        return f"os{ss}_mf-os{mf}-{scales}{'-flip' if self.flip else ''}{tile}"

    def record(self, model: nn.Module) -> dict:
        ss, mf = self.strides(model)
        record = {"os": ss, "mf": self.mf}
        if self.mf:
            record.update(mf_os=mf, mf_scales=list(self.mf_scales), flip=self.flip)
        if self.tile:
            record["tile"] = self.tile.record()
        return record


@dataclass
class PerImage:
    """An evaluation record's per-image confusion matrices: ``names`` (image ids, in evaluation order) and one
    (images, C, C) int64 array per evaluation mode (``ss``, ``mf``)."""

    names: list[str]
    matrices: dict[str, np.ndarray]


def run_protocol(
    model: nn.Module,
    normalize: nn.Module,
    loader: DataLoader | Iterable,
    num_classes: int,
    protocol: Protocol,
    size: int = TABLE7_SIZE,
    per_image: bool = True,
    network: nn.Module | None = None,
    **kwargs,
) -> tuple[dict[str, dict], dict, PerImage | None]:
    """``({"ss": scores[, "mf": scores]}, record, per-image matrices)``: each evaluation at its stride, and the
    record of what ran: the protocol, Params, and the MAdds at ``size`` of each evaluation as it ran (stride, scales,
    flip), counted on ``model`` or, for an exported file's runner, on ``network``, the PyTorch network it runs.
    With ``per_image`` (it needs a DataLoader), each mode's scores carry ``miou_ci95``, the 95% bootstrap interval
    of its mIoU over the images (``stats.bootstrap_miou``), and the record says how it was drawn."""
    ss_os, mf_os = protocol.strides(model)
    runs = {}
    with output_stride(model, ss_os) as at:
        runs["ss"] = evaluate(at, normalize, loader, num_classes, per_image=per_image, tile=protocol.tile, **kwargs)
        counted = network if network is not None else at
        record = {"params": count_params(counted), "madds": count_madds(counted, size)}
    if protocol.mf:
        scales = list(protocol.mf_scales)
        with output_stride(model, mf_os) as at:
            runs["mf"] = evaluate(
                at,
                normalize,
                loader,
                num_classes,
                scales=scales,
                flip=protocol.flip,
                per_image=per_image,
                tile=protocol.tile,
                **kwargs,
            )
            record["madds_mf"] = count_madds_mf(network if network is not None else at, scales, protocol.flip)
    results = {mode: run.scores for mode, run in runs.items()}
    record["eval"] = protocol.record(model)
    if not per_image:
        return results, record, None
    for mode, run in runs.items():
        results[mode]["miou_ci95"] = list(bootstrap_miou(run.per_image))
    record["bootstrap"] = bootstrap_record()
    return results, record, PerImage(runs["ss"].names, {mode: run.per_image for mode, run in runs.items()})


def bootstrap_record() -> dict:
    """How ``miou_ci95`` was drawn (``stats``): resamples, seed, level, and what was resampled."""
    return {"samples": SAMPLES, "seed": SEED, "level": LEVEL, "over": "images"}
