"""OpenCV augmentation for training and the evaluation-time preparation (DeepLab's protocol: docs/protocol.md,
sections 4 and 5).

Train: random scale in {0.5, 0.75, ..., 2.0}, pad to the crop with the mean pixel (mask 255), random crop,
left-right flip. Images stay uint8 and HWC until the batch reaches the device, where ``Normalize`` applies
the encoder's mean/std and returns NCHW in channels_last memory: a quarter of the host memory traffic of
float32 samples, and no CHW transpose on the CPU. The padding value is the mean pixel,
so padded pixels normalise to zero as in DeepLab.
Eval: the full image, no resize; ``pad_collate`` pads a batch to a common size, at least DeepLab's evaluation
canvas (513x513 on VOC), with the same padding as training, so metrics are computed on the original pixels only.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from .base import IGNORE_INDEX

TRAIN_SCALES = tuple(0.5 + 0.25 * i for i in range(7))  # 0.5 ... 2.0 in steps of 0.25


def mean_pixel(mean: Sequence[float]) -> tuple[int, int, int]:
    """The 0-255 RGB value that normalises to (about) zero."""
    return tuple(int(round(255 * m)) for m in mean)


def pad_bottom_right(
    image: np.ndarray, mask: np.ndarray, height: int, width: int, fill: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Pad an HWC image with ``fill`` (the mean pixel) and its mask with 255, bottom and right, to at least
    ``height`` x ``width``: the one padding of training crops and evaluation batches."""
    h, w = mask.shape
    pad_h, pad_w = max(height - h, 0), max(width - w, 0)
    if not (pad_h or pad_w):
        return image, mask
    image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=tuple(fill))
    mask = cv2.copyMakeBorder(mask, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE_INDEX)
    return image, mask


def to_tensors(image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """HWC uint8 array -> contiguous HWC uint8 tensor, mask -> int64 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(mask.astype(np.int64))


class TrainTransform:
    """Random scale, pad, crop and flip; returns (uint8 HWC image, int64 mask).

    Args:
        crop_size: output side (513 in the official recipe).
        mean: the encoder's normalisation mean on a 0-1 scale; the padding value is this mean pixel.
        scales: the scale factors drawn uniformly.
        flip: left-right flip with probability 0.5.
        seed: for a reproducible stream when used without DataLoader workers (workers reseed per process).
    """

    def __init__(
        self,
        crop_size: int,
        mean: Sequence[float],
        scales: Sequence[float] = TRAIN_SCALES,
        flip: bool = True,
        seed: int | None = None,
    ) -> None:
        self.crop_size = int(crop_size)
        self.fill = mean_pixel(mean)
        self.scales = tuple(scales)
        self.flip = flip
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | Sequence[int]) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.scales[self.rng.integers(len(self.scales))]
        if scale != 1.0:
            h, w = mask.shape
            size = (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            # INTER_NEAREST_EXACT samples at pixel centres like INTER_LINEAR; plain INTER_NEAREST is off by
            # half a source pixel, which misaligns mask and image.
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST_EXACT)
        c = self.crop_size
        image, mask = pad_bottom_right(image, mask, c, c, self.fill)
        h, w = mask.shape
        y, x = int(self.rng.integers(h - c + 1)), int(self.rng.integers(w - c + 1))
        image, mask = image[y : y + c, x : x + c], mask[y : y + c, x : x + c]
        if self.flip and self.rng.random() < 0.5:
            image, mask = cv2.flip(image, 1), mask[:, ::-1]
        return to_tensors(image, mask)


class EvalTransform:
    """The full image at its own size: (uint8 HWC image, int64 mask)."""

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(image, mask)


def pad_collate(
    batch: list[tuple[torch.Tensor, torch.Tensor]], fill: Sequence[int], min_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack samples of different sizes, padded by ``pad_bottom_right`` to the largest and to at least
    ``min_size`` x ``min_size`` (DeepLab evaluates every image inside a 513x513 canvas, which is what the
    image-pooling branch averages over).

    Returns (images uint8 NHWC, masks int64 NHW, sizes int64 N x 2 of the original heights and widths).
    """
    h = max(min_size or 0, *(img.shape[0] for img, _ in batch))
    w = max(min_size or 0, *(img.shape[1] for img, _ in batch))
    images, masks = [], []
    for img, mask in batch:
        img, mask = pad_bottom_right(img.numpy(), mask.numpy().astype(np.uint8), h, w, fill)
        images.append(torch.from_numpy(np.ascontiguousarray(img)))
        masks.append(torch.from_numpy(mask.astype(np.int64)))
    sizes = torch.tensor([tuple(mask.shape) for _, mask in batch], dtype=torch.int64)
    return torch.stack(images), torch.stack(masks), sizes


class Normalize(nn.Module):
    """uint8 (or 0-255 float) NHWC batch on any device -> float NCHW (channels_last memory), (x/255 - mean)/std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)), persistent=False)
        self.register_buffer(
            "shift", -torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).float() * self.scale + self.shift
