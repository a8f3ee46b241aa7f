"""The segmentor: an encoder, a head sized from the encoder's contract, and bilinear upsampling to the input
(DeepLabv3, DeepLabV3+ or LR-ASPP, by the head)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Encoder, check_output_stride
from .geometry import check_geometry, use_same_padding
from .heads import scaled_rates


class DeepLabV3(nn.Module):
    """Encoder + head; returns logits at the input resolution for any input size.

    Args:
        encoder: exposes ``out_channels``, ``output_stride`` and ``set_output_stride``.
        head: a factory called as ``head(in_channels=..., output_stride=..., levels=...)`` (e.g. a
            ``functools.partial`` of ``DeepLabHead``), so the head is sized by the encoder and never by a name. A
            head with ``multi_level`` reads the encoder's ``forward_levels`` (strides 4, 8 and the output).
        geometry: ``torch`` (PyTorch's resize and padding) or ``deeplab`` (TensorFlow DeepLab's: bilinear resizes
            with ``align_corners=True``, "SAME" padding in strided convs; see ``geometry.py``). The evaluator's
            multi-scale resizes follow the model's ``align_corners``.
    """

    def __init__(self, encoder: Encoder, head: Callable[..., nn.Module], geometry: str = "torch") -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head(in_channels=encoder.out_channels, output_stride=encoder.output_stride, levels=encoder.levels)
        self.geometry = check_geometry(geometry)
        self.align_corners = geometry == "deeplab"
        if hasattr(self.head, "align_corners"):  # a head that resizes inside (a decoder) follows the geometry
            self.head.align_corners = self.align_corners
        if geometry == "deeplab":
            use_same_padding(self)

    @property
    def output_stride(self) -> int:
        return self.encoder.output_stride

    @property
    def logits_stride(self) -> int:
        """Input size / logits size: the output stride, or the stride a decoder head resolves to (4, 8)."""
        return getattr(self.head, "logits_stride", None) or self.output_stride

    def set_output_stride(self, output_stride: int) -> DeepLabV3:
        """The same network at another output stride, in place: the encoder's strides, dilations and paddings and
        the head's atrous rates change by the rules that build them; every parameter and buffer stays the same
        object (an optimizer, DDP and SyncBatchNorm keep working on them). DeepLab evaluates a network trained at
        OS16 at OS8 too, and DeepLabv3 trains its last iterations at OS8. Refused as a whole, before any change,
        for a stride the model cannot take."""
        check_output_stride(output_stride)
        scaled_rates(output_stride, getattr(self.head, "base_rates", ()))
        self.encoder.set_output_stride(output_stride)
        self.head.set_output_stride(output_stride)
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at their own resolution (input size / ``logits_stride``), before the upsampling."""
        if getattr(self.head, "multi_level", False):
            return self.head(self.encoder.forward_levels(x))
        return self.head(self.encoder(x))

    def upsample(self, logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Bilinear resize of logits to ``size`` under the model's geometry."""
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.logits(x), x.shape[-2:])


@contextmanager
def output_stride(model: DeepLabV3, stride: int | None) -> Iterator[DeepLabV3]:
    """Run ``model`` at ``stride`` inside the block and at its own stride again after it (``None``: unchanged)."""
    own = model.output_stride
    if stride is None or stride == own:
        yield model
        return
    model.set_output_stride(stride)
    try:
        yield model
    finally:
        model.set_output_stride(own)
