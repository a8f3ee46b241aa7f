"""Evaluation as in DeepLab (SPEC section 3): full images padded to the crop size, single scale or multi-scale +
left-right flip with softmax probabilities averaged at the padded size, one confusion matrix over the set."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..complexity import MF_SCALES
from ..metrics import scores
from .distributed import Dist, all_reduce_sum


def pad_batch(images: torch.Tensor, masks: torch.Tensor, pad_to: int | None, fill: Sequence[int], ignore: int):
    """Pad NHWC uint8 images (with the mean pixel) and masks (with ``ignore``) bottom/right to at least
    ``pad_to`` x ``pad_to``: DeepLab evaluates every image inside a 513x513 canvas, which is what the
    image-pooling branch averages over."""
    if not pad_to:
        return images, masks
    n, h, w, _ = images.shape
    ph, pw = max(pad_to - h, 0), max(pad_to - w, 0)
    if not (ph or pw):
        return images, masks
    canvas = torch.tensor(fill, dtype=images.dtype, device=images.device).view(1, 1, 1, 3).repeat(n, h + ph, w + pw, 1)
    canvas[:, :h, :w] = images
    return canvas, F.pad(masks, (0, pw, 0, ph), value=ignore)


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
    pad_to: int | None = None,
    fill: Sequence[int] = (124, 116, 104),
    ignore_index: int = 255,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    env: Dist | None = None,
    progress: bool = False,
    keep: int = 0,
) -> tuple[dict, torch.Tensor, list]:
    """Scores over the whole loader (summed over distributed ranks).

    Returns ``(scores, confusion matrix, examples)``: ``examples`` holds up to ``keep`` (image, mask, prediction)
    uint8 arrays cropped to their original sizes, for TensorBoard.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    examples = []
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    desc = "eval MF+flip" if len(scales) > 1 or flip else "eval"
    for images, masks, sizes in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        images, masks = pad_batch(images, masks, pad_to, fill, ignore_index)
        with amp:
            probs = predict_probs(model, normalize(images), scales, flip)
        pred = probs.argmax(1)
        keep_px = masks != ignore_index
        conf += torch.bincount(masks[keep_px] * num_classes + pred[keep_px], minlength=num_classes * num_classes)
        for i in range(min(keep - len(examples), len(images))):
            h, w = sizes[i].tolist()
            examples.append(tuple(t[i, :h, :w].to("cpu", torch.uint8).numpy() for t in (images, masks, pred)))
    model.train(was_training)
    conf = all_reduce_sum(conf, env) if env is not None else conf
    conf = conf.view(num_classes, num_classes).cpu()
    return scores(conf), conf, examples


def evaluate_modes(
    model: nn.Module,
    normalize: nn.Module,
    loader: DataLoader | Iterable,
    num_classes: int,
    *,
    mf: bool,
    mf_scales: Sequence[float] = MF_SCALES,
    flip: bool = True,
    **kwargs,
) -> dict[str, dict]:
    """``{"ss": scores}`` and, with ``mf``, ``{"mf": scores}`` (``mf_scales``, each also flipped when ``flip``)."""
    results = {"ss": evaluate(model, normalize, loader, num_classes, **kwargs)[0]}
    if mf:
        results["mf"] = evaluate(model, normalize, loader, num_classes, scales=mf_scales, flip=flip, **kwargs)[0]
    return results
