"""Bilinear resizing as two small matrix products, for deployed graphs.

Bilinear interpolation is separable: resizing an (h, w) map to (H, W) is ``A @ x @ B.T`` with ``A`` the (H, h)
and ``B`` the (W, w) interpolation matrices, each row holding the two weights of one output row (column). A runtime
runs that as two GEMMs, which every one of them has tuned, where its generic resize kernel works pixel by pixel:
the final resize of 21 logit maps to 513x513 took a fifth of the INT8 candidate's time in ONNX Runtime as a
``Resize`` node (results/benchmark.md).

The matrices are computed from the sizes with elementwise ops, so an export with free input sizes computes them in
the graph. Each weight is the bilinear ``tent`` ``max(0, 1 - |src - j|)`` at the source coordinate ``src`` of the
output index, with PyTorch's coordinates: ``align_corners=False`` ``src = (i + 0.5) * h / H - 0.5``, ``True``
``src = i * (h - 1) / (H - 1)``, clamped to ``[0, h - 1]`` as ``F.interpolate`` clamps them. Same weights as
``F.interpolate(mode="bilinear")``: the results agree to float32 rounding (``tests/deploy/test_resize.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def interpolation_matrix(n_in, n_out, align_corners: bool, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) bilinear weights in ``like``'s dtype and device (sizes may be symbolic under export). The
    source coordinates are computed in float64: in float32 their rounding (~4e-6 at coordinate 33) times the jump
    between neighbouring logits is the largest error of the resize, PyTorch's own float32 kernel included."""
    out = torch.arange(n_out, device=like.device, dtype=torch.float64)
    if align_corners:
        scale = (n_in - 1) / (n_out - 1) if not isinstance(n_out, int) or n_out > 1 else 0.0
        src = out * scale
    else:
        src = (out + 0.5) * (n_in / n_out) - 0.5
    src = src.clamp(min=0).clamp(max=n_in - 1)
    grid = torch.arange(n_in, device=like.device, dtype=torch.float64)
    return (1 - (src[:, None] - grid[None, :]).abs()).clamp(min=0).to(like.dtype)


def resize_bilinear(x: torch.Tensor, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=...)`` for (N, C, h, w) ``x``, as
    ``A @ x @ B.T``: the width first (B), then the height (A), the order PyTorch's kernel interpolates in."""
    h, w = x.shape[-2:]
    a = interpolation_matrix(h, size[0], align_corners, x)
    b = interpolation_matrix(w, size[1], align_corners, x)
    return a @ (x @ b.transpose(0, 1))


class MatmulUpsample(nn.Module):
    """A segmentor whose final resize (feature-resolution logits to the input size) is ``resize_bilinear``: what
    the deployed graphs with free sizes run (``deploy.onnx.prepare_for_export``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.align_corners = bool(getattr(model, "align_corners", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_bilinear(self.model.logits(x), x.shape[-2:], self.align_corners)


class MatrixResize(nn.Module):
    """The matmul resize of (N, C, ``h``, ``w``) maps to one ``size``, its two matrices computed once and kept as
    buffers: constants in an exported graph, so a runtime that does not fold constants (ExecuTorch) runs two matrix
    products and nothing else. A square resize (both sides the same matrix, as 513x513 from 33x33) keeps its one
    matrix once, for smaller files; its transpose costs nothing at run time."""

    def __init__(self, h: int, w: int, size: Sequence[int], align_corners: bool) -> None:
        super().__init__()
        self.size = tuple(int(v) for v in size)
        like = torch.zeros(())
        a = interpolation_matrix(h, self.size[0], align_corners, like)
        b = interpolation_matrix(w, self.size[1], align_corners, like)
        self.register_buffer("a", a)
        self.same = torch.equal(a, b)
        self.register_buffer("b_t", None if self.same else b.T.contiguous())

    @property
    def b_transposed(self) -> torch.Tensor:
        return self.a.T if self.same else self.b_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a @ (x @ self.b_transposed)


class FixedSizeResize(MatrixResize):
    """``logits`` (a module computing feature-resolution logits) followed by the ``MatrixResize`` to one input
    ``size``: what static-size deployed graphs run."""

    def __init__(self, logits: nn.Module, size: Sequence[int], align_corners: bool) -> None:
        with torch.no_grad():
            h, w = logits(torch.zeros(1, 3, *size)).shape[-2:]
        super().__init__(h, w, size, align_corners)
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.logits(x))
