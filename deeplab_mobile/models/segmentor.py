"""DeepLabv3: an encoder, a head sized from the encoder's contract, and bilinear upsampling to the input."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import Encoder


class DeepLabV3(nn.Module):
    """Encoder + head; returns logits at the input resolution for any input size.

    Args:
        encoder: exposes ``out_channels`` and ``output_stride``.
        head: a factory called as ``head(in_channels=..., output_stride=...)`` (e.g. a ``functools.partial`` of
            ``DeepLabHead``), so the head is sized by the encoder and never by a name.
    """

    def __init__(self, encoder: Encoder, head: Callable[..., nn.Module]) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head(in_channels=encoder.out_channels, output_stride=encoder.output_stride)

    @property
    def output_stride(self) -> int:
        return self.encoder.output_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.encoder(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
