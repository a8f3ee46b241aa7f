"""MobileNetV1 encoder (Howard et al., 2017), feature ``conv13`` (1024*width channels), as in Table 7.

timm's ``mobilenetv1_100`` supplies the network and its ImageNet weights; its builder already applies the
TensorFlow output-stride rule (the block whose stride is removed keeps the previous rate), which a test checks.
timm registers only widths 1.0 and 1.25, so other widths go through timm's generator with
``channel_multiplier``.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models.efficientnet import _gen_mobilenet_v1

from ..weights import load_encoder_weights
from ._base import Encoder, check_output_stride

WIDTHS = (0.25, 0.5, 0.75, 1.0)


class MobileNetV1Encoder(Encoder):
    """Dilated MobileNetV1 body up to conv13.

    Args:
        width: width multiplier (0.25, 0.5, 0.75, 1.0).
        output_stride: 8, 16 or 32.
        tap: only ``None``/``"last"`` (conv13); MobileNetV1 has no other tap.
        weights: ``None``, ``"imagenet"`` (timm's, width 1.0 only) or a local timm state dict path.
    """

    def __init__(
        self,
        width: float = 1.0,
        output_stride: int = 16,
        tap: str | None = None,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if width not in WIDTHS:
            raise ValueError(f"MobileNetV1 width multiplier {width!r} is not supported; choose one of {WIDTHS}")
        if tap not in (None, "last"):
            raise ValueError(f"MobileNetV1 has a single tap (conv13, 'last'); tap={tap!r} is not supported")
        self.output_stride = check_output_stride(output_stride)
        self.width = float(width)
        net = _gen_mobilenet_v1(
            "mobilenetv1_100",
            channel_multiplier=width,
            pretrained=False,
            output_stride=self.output_stride,
            num_classes=0,
            global_pool="",
        )
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.out_channels = net.num_features

        imagenet = None
        if width == 1.0:
            imagenet = lambda: timm.create_model("mobilenetv1_100", pretrained=True).state_dict()  # noqa: E731
        load_encoder_weights(self, weights, imagenet=imagenet, host="huggingface.co", ignore=("classifier.",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.bn1(self.conv_stem(x)))
