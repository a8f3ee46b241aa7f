"""Evaluation as in DeepLab (SPEC section 3): full images padded to the crop size (by the loader's
``pad_collate``), single scale or multi-scale + left-right flip with softmax probabilities averaged at the padded
size, one confusion matrix over the set."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.voc import IGNORE_INDEX
from ..metrics import confusion_matrix, scores
from .distributed import Dist, all_reduce_sum


@torch.no_grad()
def predict_probs(
    model: nn.Module, x: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """Softmax probabilities (N, C, H, W) at the input's size, averaged over ``scales`` (bilinear resize of the
    normalised input) and, with ``flip``, over the left-right mirrored input as well."""
    size = x.shape[-2:]
    total = None
    for scale in scales:
        xs = x if scale == 1.0 else F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        views = (xs, xs.flip(-1)) if flip else (xs,)
        for i, view in enumerate(views):
            logits = model(view).float()
            if i == 1:
                logits = logits.flip(-1)
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            probs = logits.softmax(1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))


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
) -> tuple[dict, torch.Tensor, list]:
    """Scores over the whole loader (summed over distributed ranks). The loader yields ``pad_collate`` batches:
    (uint8 NHWC images, int64 masks with ``ignore_index`` on padding, original sizes).

    Returns ``(scores, confusion matrix, examples)``: ``examples`` holds up to ``keep`` (image, mask, prediction)
    uint8 arrays cropped to their original sizes, for TensorBoard.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    examples = []
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    desc = "eval MF+flip" if len(scales) > 1 or flip else "eval"
    for images, masks, sizes in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        with amp:
            probs = predict_probs(model, normalize(images), scales, flip)
        pred = probs.argmax(1)
        conf += confusion_matrix(pred, masks, num_classes, ignore_index)
        for i in range(min(keep - len(examples), len(images))):
            h, w = sizes[i].tolist()
            examples.append(tuple(t[i, :h, :w].to("cpu", torch.uint8).numpy() for t in (images, masks, pred)))
    model.train(was_training)
    conf = all_reduce_sum(conf, env) if env is not None else conf
    conf = conf.cpu()
    return scores(conf), conf, examples


def evaluate_modes(
    model: nn.Module,
    normalize: nn.Module,
    loader: DataLoader | Iterable,
    num_classes: int,
    *,
    mf: bool,
    mf_scales: Sequence[float],
    flip: bool = True,
    **kwargs,
) -> dict[str, dict]:
    """``{"ss": scores}`` and, with ``mf``, ``{"mf": scores}`` (``mf_scales``, each also flipped when ``flip``)."""
    results = {"ss": evaluate(model, normalize, loader, num_classes, **kwargs)[0]}
    if mf:
        results["mf"] = evaluate(model, normalize, loader, num_classes, scales=mf_scales, flip=flip, **kwargs)[0]
    return results
