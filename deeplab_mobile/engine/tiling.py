"""Sliding-window (tiled) inference: an image larger than a window is segmented window by window, the windows'
class probabilities blended where they overlap, so the network's memory is bounded by the window, not the image.

Windows are ``size`` pixels (height, width) apart by ``size * (1 - overlap)`` (rounded up to whole windows), the
last one on each axis moved back to end at the image's edge (mmseg's ``slide`` test mode); a side no longer than
the window is one window of the image's own length. Each window runs whatever inference it is given (single scale,
or multi-scale + flip within the window), and overlapping probabilities are averaged with a weight per pixel:
``mean`` (every pixel of a window alike) or ``gaussian`` (a window's centre counts more than its border, whose
context is cut off: a Gaussian of sigma = 1/4 of the window, nnU-Net's scheme with a wider sigma).

``tiled_labels`` keeps little in memory besides the labels: the windows of one row are blended left to right,
the columns no later window of the row reaches are final at once (reduced to labels, or handed on), and only the
rows the next row of windows overlaps are carried down, (N, C, overlap rows, W): the window plus that strip, not
the image. The input can be a tensor or anything with ``shape``, ``device`` and ``crop(top, left, h, w)``
(``predict.LazyInput`` normalises each window from the uint8 image, so no image-sized float copy is made).
``tiled_probs`` returns the whole (N, C, H, W) probabilities (image-sized), for callers that need them.

When one window covers the image, the window's inference runs once on the whole image: the result is exactly
whole-image inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import InvalidValue

BLENDS = ("mean", "gaussian")
Infer = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, h, w) normalised crop -> (N, C, h, w) probabilities


@dataclass(frozen=True)
class Tiling:
    """Windows of ``size`` (height, width) pixels, overlapping by the fraction ``overlap`` of a window, blended by
    ``blend``."""

    size: tuple[int, int]
    overlap: float = 0.25
    blend: str = "gaussian"

    def __post_init__(self) -> None:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(int(v) for v in self.size)
        object.__setattr__(self, "size", size)
        if len(size) != 2 or min(size) < 1:
            raise InvalidValue(f"tile size must be one or two positive integers, got {self.size}")
        if not 0 <= self.overlap < 1:
            raise InvalidValue(f"tile overlap must be in [0, 1), got {self.overlap}")
        if self.blend not in BLENDS:
            raise InvalidValue(f"tile blend {self.blend!r} is not supported; choose one of {', '.join(BLENDS)}")

    @property
    def stride(self) -> tuple[int, int]:
        return tuple(max(1, math.floor(s * (1 - self.overlap))) for s in self.size)

    def starts(self, length: int, axis: int) -> list[int]:
        """The windows' first pixels along one axis of ``length`` pixels."""
        size, stride = self.size[axis], self.stride[axis]
        if length <= size:
            return [0]
        n = math.ceil((length - size) / stride) + 1
        return sorted({min(i * stride, length - size) for i in range(n)})

    def windows(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of every window, row by row."""
        h, w = min(self.size[0], height), min(self.size[1], width)
        return [(t, left, h, w) for t in self.starts(height, 0) for left in self.starts(width, 1)]

    def covers(self, height: int, width: int) -> bool:
        """One window covers an image of this size."""
        return height <= self.size[0] and width <= self.size[1]

    def weight(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """A window's blending weights, (height, width), float32, largest 1."""
        if self.blend == "mean":
            return torch.ones(height, width, device=device)
        axes = []
        for n in (height, width):
            x = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2
            axes.append(torch.exp(-0.5 * (x / (n / 4)) ** 2))
        weight = axes[0][:, None] * axes[1][None, :]
        return (weight / weight.max()).clamp(min=1e-3)  # every pixel keeps a weight: a border pixel is never 0/0

    def record(self) -> dict:
        return {"size": list(self.size), "overlap": self.overlap, "blend": self.blend}

    def name(self) -> str:
        """``tile513-0.25-gaussian`` (``tile513x1025-...`` for a non-square window)."""
        size = f"{self.size[0]}" if self.size[0] == self.size[1] else f"{self.size[0]}x{self.size[1]}"
        return f"tile{size}-{self.overlap:g}-{self.blend}"


class Crops(Protocol):
    """A (N, 3, H, W) input read window by window."""

    shape: tuple[int, ...]
    device: torch.device

    def crop(self, top: int, left: int, height: int, width: int) -> torch.Tensor: ...


class _TensorCrops:
    def __init__(self, x: torch.Tensor) -> None:
        self.x, self.shape, self.device = x, tuple(x.shape), x.device

    def crop(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        return self.x[:, :, top : top + height, left : left + width]


def _crops(x: torch.Tensor | Crops) -> Crops:
    return _TensorCrops(x) if isinstance(x, torch.Tensor) else x


def tiled_labels(infer: Infer, x: torch.Tensor | Crops, tiling: Tiling) -> torch.Tensor:
    """Labels (N, H, W) of the tiled inference of ``x`` (N, 3, H, W), uint8 for at most 256 classes (else int64);
    besides them, one window and the strip of rows shared with the next row of windows in memory."""
    source = _crops(x)
    n, _, height, width = source.shape
    if tiling.covers(height, width):
        probs = infer(source.crop(0, 0, height, width))
        return probs.argmax(1).to(torch.uint8 if probs.shape[1] <= 256 else torch.int64)
    labels = None
    for top, left, block in _blocks(infer, source, tiling):
        if labels is None:
            dtype = torch.uint8 if block.shape[1] <= 256 else torch.int64
            labels = torch.empty(n, height, width, dtype=dtype, device=source.device)
        labels[:, top : top + block.shape[2], left : left + block.shape[3]] = block.argmax(1)
    return labels


def tiled_probs(infer: Infer, x: torch.Tensor | Crops, tiling: Tiling) -> torch.Tensor:
    """Probabilities (N, C, H, W) of the tiled inference of ``x``: the same blend as ``tiled_labels``, kept whole."""
    source = _crops(x)
    n, _, height, width = source.shape
    if tiling.covers(height, width):
        return infer(source.crop(0, 0, height, width))
    probs = None
    for top, left, block in _blocks(infer, source, tiling):
        if probs is None:
            probs = block.new_empty(n, block.shape[1], height, width)
        probs[:, :, top : top + block.shape[2], left : left + block.shape[3]] = block
    return probs


def _blocks(infer: Infer, source: Crops, tiling: Tiling):
    """Yield (top, left, blended probabilities (N, C, rows, cols)) of final blocks, each row of windows left to
    right, top to bottom. Every pixel's weighted sum adds the windows that cover it in the order the windows run
    (the rows carried from above first), so a block is what blending the whole image at once would give."""
    n, _, height, width = source.shape
    windows = tiling.windows(height, width)
    tops = sorted({top for top, _, _, _ in windows})
    wh, ww = windows[0][2], windows[0][3]
    weight = tiling.weight(wh, ww, source.device)
    carry, carry_norm = None, None  # rows [top, top + carried) of the rows above: (N, C, carried, W), (carried, W)
    for i, top in enumerate(tops):
        final = (tops[i + 1] if i + 1 < len(tops) else height) - top  # rows no later row of windows reaches
        lefts = sorted({left for t, left, _, _ in windows if t == top})
        down, down_norm = None, None  # rows [top + final, top + wh), handed to the next row of windows
        acc, norm, c0 = None, None, 0  # this row's sums over the columns [c0, c0 + acc width) not yet final
        for j, left in enumerate(lefts):
            probs = infer(source.crop(top, left, wh, ww)).float()
            acc, norm = _widened(acc, norm, probs, c0, left + ww, carry, carry_norm)
            acc[:, :, :, left - c0 : left - c0 + ww] += probs * weight
            norm[:, left - c0 : left - c0 + ww] += weight
            done = (lefts[j + 1] if j + 1 < len(lefts) else width) - c0  # columns no later window here reaches
            yield top, c0, acc[:, :, :final, :done] / norm[:final, :done]
            if final < wh:
                if down is None:
                    down, down_norm = (
                        probs.new_zeros(n, probs.shape[1], wh - final, width),
                        norm.new_zeros(wh - final, width),
                    )
                down[:, :, :, c0 : c0 + done] = acc[:, :, final:, :done]
                down_norm[:, c0 : c0 + done] = norm[final:, :done]
            acc, norm, c0 = acc[:, :, :, done:], norm[:, done:], c0 + done
        carry, carry_norm = down, down_norm


def _widened(acc, norm, probs: torch.Tensor, c0: int, end: int, carry, carry_norm):
    """The row's pending sums over columns [c0, end): new columns start from the rows carried from above (0 below
    them), so each pixel's sum begins with the windows above it."""
    n, c, wh = probs.shape[0], probs.shape[1], probs.shape[2]
    have = 0 if acc is None else acc.shape[3]
    grow = end - c0 - have
    if grow <= 0:
        return acc, norm
    new = probs.new_zeros(n, c, wh, grow)
    new_norm = probs.new_zeros(wh, grow)
    if carry is not None:
        rows = carry.shape[2]
        new[:, :, :rows] = carry[:, :, :, c0 + have : end]
        new_norm[:rows] = carry_norm[:, c0 + have : end]
    if acc is None:
        return new, new_norm
    return torch.cat([acc, new], dim=3), torch.cat([norm, new_norm], dim=1)


def whole_image_bytes(model, x_shape: tuple[int, ...], num_classes: int) -> int | None:
    """An estimate of the memory whole-image inference of a float32 batch of ``x_shape`` needs: twice the network's
    largest activation (a layer's input and output live together) plus four image-sized probability maps (logits,
    their resize, the softmax and the running sum), from one pass on the meta device (no memory, no compute).
    ``None`` for a model that cannot run there (an exported one)."""
    import copy

    if not isinstance(model, torch.nn.Module):
        return None
    largest = [0]

    def hook(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    try:
        meta = copy.deepcopy(model).to("meta")
        handles = [m.register_forward_hook(hook) for m in meta.modules() if not list(m.children())]
        with torch.no_grad():
            meta(torch.empty(x_shape, device="meta"))
        for handle in handles:
            handle.remove()
    except Exception:  # noqa: BLE001 - an estimate only: a model that cannot run on meta gets none
        return None
    n, _, h, w = x_shape
    return 2 * largest[0] + 4 * n * num_classes * h * w * 4


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device``: CUDA's free memory, or Linux's ``MemAvailable``; ``None`` when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
