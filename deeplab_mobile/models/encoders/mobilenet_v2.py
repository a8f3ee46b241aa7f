"""MobileNetV2 encoder (Sandler et al., CVPR 2018), dilated the way TensorFlow DeepLab dilates it.

Built on torchvision's ``MobileNetV2`` modules, so torchvision's (and SMP's, which wraps the same modules)
ImageNet weights load unchanged. Only the depthwise convs' stride and dilation are edited, per
``atrous_schedule``: at OS16 the first 160-channel block keeps rate 1 and the rest of that row and the
320-channel block get rate 2; at OS8 the first 64-channel block keeps rate 1, the rest of 64 and the 96 row get
rate 2, then 160/320 rate 4.

Taps:
    ``second_last``: the 320*width-channel output of the last bottleneck (the paper's "MNet V2*", DeepLab's
        ``layer_18``); the 1280-channel conv is not built.
    ``last``: the final 1x1 conv (1280 channels, 1280*width for width > 1).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torchvision.models import MobileNet_V2_Weights, MobileNetV2

from ..weights import load_torchvision_weights
from ._base import Encoder, EncoderSpec, atrous_schedule, check_output_stride, set_conv_geometry

WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.4)
N_BOTTLENECKS = 17
STEM_STRIDE = 2


def depthwise_conv(block: nn.Module) -> nn.Conv2d:
    """The depthwise conv (3x3; 5x5 in MobileNetV3) of an inverted residual block."""
    return next(m for m in block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1)


class InvertedResidualBody(Encoder):
    """A torchvision MobileNet body in ``features``: the stem (stride 2), ``n_bottlenecks`` inverted residual
    blocks whose depthwise convs take the output-stride rule, then the final 1x1 conv when tapped (MobileNetV2 and
    MobileNetV3). Subclasses set ``features``, ``nominal_strides`` and ``n_bottlenecks``."""

    n_bottlenecks: int
    torchvision_weights: object  # torchvision's ImageNet weights entry (width 1.0)

    def take_features(self, net: nn.Module) -> None:
        """Take torchvision's ``net.features``: the stem, the bottlenecks, and the final 1x1 conv when tapped."""
        self.features = net.features if self.tap == "last" else net.features[: 1 + self.n_bottlenecks]
        self.out_channels = self.features[-1].out_channels
        self.nominal_strides = [depthwise_conv(block).stride[0] for block in self.bottlenecks]

    def load_weights(self, weights: str | Path | None) -> None:
        ignore = ("classifier.",) + (() if self.tap == "last" else (f"features.{1 + self.n_bottlenecks}.",))
        load_torchvision_weights(self, weights, self.torchvision_weights, self.width, ignore)

    @property
    def bottlenecks(self) -> list[nn.Module]:
        return list(self.features[1 : 1 + self.n_bottlenecks])

    def set_output_stride(self, output_stride: int) -> InvertedResidualBody:
        schedule = atrous_schedule(self.nominal_strides, output_stride, current_stride=STEM_STRIDE)
        for block, (stride, dilation) in zip(self.bottlenecks, schedule, strict=True):
            set_conv_geometry(depthwise_conv(block), stride, dilation)
        self.output_stride = check_output_stride(output_stride)
        return self

    def units(self) -> list[tuple[nn.Module, int]]:
        body = [(self.features[0], STEM_STRIDE), *zip(self.bottlenecks, self.nominal_strides, strict=True)]
        return body + [(m, 1) for m in self.features[1 + self.n_bottlenecks :]]


class MobileNetV2Encoder(InvertedResidualBody):
    """Dilated MobileNetV2 body.

    Arguments as ``Encoder``'s: width 0.35, 0.5, 0.75, 1.0, 1.4; tap ``second_last`` (default, 320*width channels)
    or ``last`` (1280 channels); ImageNet weights torchvision's. Its own option:
        zero_init_residual: start the last BatchNorm of every bottleneck with a residual connection at scale 0,
            so each such block starts as the identity (as timm's ResNets do, ``zero_init_last``, and so our
            ResNet-101). Only random initialisation sees it: loaded weights replace it.
    """

    spec = EncoderSpec(
        "mobilenet_v2", "MobileNetV2", WIDTHS, ("second_last", "last"), options={"zero_init_residual": True}
    )
    n_bottlenecks = N_BOTTLENECKS
    torchvision_weights = MobileNet_V2_Weights.IMAGENET1K_V1

    def build(self) -> None:
        # features[0] is the stem (stride 2), features[1:18] the 17 bottlenecks, features[18] the 1x1 1280 conv.
        self.take_features(MobileNetV2(width_mult=self.width))

    def init_weights(self) -> None:
        if self.settings["zero_init_residual"]:  # torchvision's MobileNetV2 has no such option (its ResNet has)
            for block in self.bottlenecks:
                if block.use_res_connect:
                    nn.init.zeros_(block.conv[-1].weight)

    @property
    def base_label(self) -> str:
        return "MNet V2*" if self.tap == "second_last" else "MNet V2 (1280 tap)"
