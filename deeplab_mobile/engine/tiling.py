"""Sliding-window (tiled) inference: an image larger than a window is segmented window by window, the windows'
class probabilities blended where they overlap, so the network's memory is bounded by the window, not the image.

Windows are ``size`` pixels (height, width) apart by ``size * (1 - overlap)`` (rounded up to whole windows), the
last one on each axis moved back to end at the image's edge (mmseg's ``slide`` test mode); a side no longer than
the window is one window of the image's own length. Each window runs whatever inference it is given (single scale,
or multi-scale + flip within the window), and overlapping probabilities are averaged with a weight per pixel:
``mean`` (every pixel of a window alike) or ``gaussian`` (a window's centre counts more than its border, whose
context is cut off: a Gaussian of sigma = 1/4 of the window, nnU-Net's scheme with a wider sigma).

``tiled_labels`` keeps only one band of rows in memory: the probabilities of the rows the current row of windows
covers, (N, C, window height + stride, W); the rows above it are final once the next row of windows starts below
them, and are reduced to labels (argmax) at once. ``tiled_probs`` returns the whole (N, C, H, W) probabilities
(image-sized), for callers that need them.

When one window covers the image, the window's inference runs once on the whole image: the result is exactly
whole-image inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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


def tiled_labels(infer: Infer, x: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """Labels (N, H, W) int64 of the tiled inference of ``x`` (N, 3, H, W), one band of rows in memory."""
    n, _, height, width = x.shape
    if tiling.covers(height, width):
        return infer(x).argmax(1)
    labels = torch.empty(n, height, width, dtype=torch.int64, device=x.device)
    for top, band in _bands(infer, x, tiling):
        labels[:, top : top + band.shape[2]] = band.argmax(1)
    return labels


def tiled_probs(infer: Infer, x: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """Probabilities (N, C, H, W) of the tiled inference of ``x``: the same blend as ``tiled_labels``, kept whole."""
    height, width = x.shape[-2:]
    if tiling.covers(height, width):
        return infer(x)
    return torch.cat([band for _, band in _bands(infer, x, tiling)], dim=2)


def _bands(infer: Infer, x: torch.Tensor, tiling: Tiling):
    """Yield (first row, blended probabilities (N, C, rows, W)) of consecutive row bands, top to bottom."""
    height, width = x.shape[-2:]
    windows = tiling.windows(height, width)
    tops = sorted({top for top, _, _, _ in windows})
    wh, ww = windows[0][2], windows[0][3]
    weight = tiling.weight(wh, ww, x.device)
    lo, total, norm = 0, None, None  # the band starts at row lo: weighted sums (N, C, rows, W), weights (rows, W)
    for i, top in enumerate(tops):
        for _, left, _, _ in (w for w in windows if w[0] == top):
            probs = infer(x[:, :, top : top + wh, left : left + ww]).float()
            total, norm = _grown(total, norm, probs, top + wh - lo, width)
            r = top - lo
            total[:, :, r : r + wh, left : left + ww] += probs * weight
            norm[r : r + wh, left : left + ww] += weight
        done = (tops[i + 1] if i + 1 < len(tops) else height) - lo  # rows no later window reaches
        yield lo, total[:, :, :done] / norm[:done]
        total, norm = total[:, :, done:], norm[done:]
        lo += done


def _grown(total, norm, probs: torch.Tensor, rows: int, width: int):
    """The band's sums with at least ``rows`` rows (new rows 0)."""
    n, c = probs.shape[:2]
    if total is None:
        return probs.new_zeros(n, c, rows, width), probs.new_zeros(rows, width)
    grow = rows - total.shape[2]
    if grow <= 0:
        return total, norm
    return (
        torch.cat([total, total.new_zeros(n, c, grow, width)], dim=2),
        torch.cat([norm, norm.new_zeros(grow, width)], dim=0),
    )


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
