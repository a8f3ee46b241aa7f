"""Confusion-matrix segmentation metrics, PASCAL VOC convention.

The matrix is accumulated over the whole set (rows: ground truth, columns: prediction); pixels labelled 255
are ignored. IoU_c = TP / (TP + FP + FN); a class absent from both the ground truth and the predictions of
the whole set has no IoU (NaN) and is left out of the mean, as the VOC devkit does.
"""

from __future__ import annotations

import numpy as np
import torch

from .data.base import IGNORE_INDEX


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts of (ground truth, prediction) pairs, on the inputs' device."""
    pred, target = torch.as_tensor(pred).reshape(-1), torch.as_tensor(target).reshape(-1)
    cells = num_classes * num_classes
    # ignored pixels go to one extra bin that is dropped: cheaper than selecting the others (a copy)
    pairs = torch.where(target != ignore_index, target.long() * num_classes + pred.long(), cells)
    return torch.bincount(pairs, minlength=cells + 1)[:cells].reshape(num_classes, num_classes)


def per_image_confusion(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """(N, num_classes, num_classes) int64: each image's own confusion matrix for a batch of (N, H, W) predictions
    and targets, counted in one pass (each image's pairs offset into a block of bins of its own)."""
    n = pred.shape[0]
    cells = num_classes * num_classes
    pred, target = pred.reshape(n, -1), target.reshape(n, -1)
    pairs = torch.where(target != ignore_index, target.long() * num_classes + pred.long(), cells)
    pairs = pairs + torch.arange(n, device=pairs.device)[:, None] * (cells + 1)
    counts = torch.bincount(pairs.reshape(-1), minlength=n * (cells + 1)).reshape(n, cells + 1)
    return counts[:, :cells].reshape(n, num_classes, num_classes)


def scores(conf: torch.Tensor | np.ndarray) -> dict:
    """mIoU, per-class IoU (NaN where a class never occurs), pixel accuracy and mean class accuracy."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    gt, pr = conf.sum(1), conf.sum(0)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    total = conf.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "iou": iou.tolist(),
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
        "mean_acc": float(np.nanmean(acc)) if np.any(gt > 0) else float("nan"),
    }
