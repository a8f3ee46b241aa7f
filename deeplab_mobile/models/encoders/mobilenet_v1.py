"""MobileNetV1 encoder (Howard et al., 2017), feature ``conv13`` (1024*width channels), as in Table 7.

timm's ``mobilenetv1_100`` supplies the network and its ImageNet weights. It is built at its nominal strides and
dilated here by the same rule as the other encoders (``atrous_schedule``), so that ``set_output_stride`` can
change a built network; timm's own ``output_stride`` argument applies the same rule at build time only, which a
test checks. timm registers only widths 1.0 and 1.25, so other widths go through timm's generator with
``channel_multiplier``.
"""

from __future__ import annotations

from pathlib import Path

# timm's builder of any MobileNetV1 width: its public entry points (``timm.create_model("mobilenetv1_100")``) fix the
# width at 1.0 and 1.25, and this encoder offers 0.25-1.0. This module is the one place that uses it.
from timm.models.efficientnet import _gen_mobilenet_v1
from torch import nn

from ..weights import load_timm_weights
from ._base import Encoder, EncoderSpec, atrous_schedule, check_output_stride, set_conv_geometry

WIDTHS = (0.25, 0.5, 0.75, 1.0)
STEM_STRIDE = 2


class MobileNetV1Encoder(Encoder):
    """Dilated MobileNetV1 body up to conv13.

    Arguments as ``Encoder``'s: width 0.25, 0.5, 0.75, 1.0; tap only ``None``/``"last"`` (conv13); ImageNet weights
    timm's (a local file: a timm state dict).
    """

    spec = EncoderSpec("mobilenet_v1", "MobileNetV1", WIDTHS)
    base_label = "MNet V1"

    def build(self) -> None:
        net = _gen_mobilenet_v1(
            "mobilenetv1_100", channel_multiplier=self.width, pretrained=False, num_classes=0, global_pool=""
        )
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.out_channels = net.num_features
        self.nominal_strides = [conv.stride[0] for conv in self.depthwise_convs]

    def load_weights(self, weights: str | Path | None) -> None:
        hub_id = "timm/mobilenetv1_100.ra4_e3600_r224_in1k"
        load_timm_weights(self, weights, "mobilenetv1_100", hub_id, self.width, ("classifier.",))

    @property
    def depthwise_convs(self) -> list[nn.Conv2d]:
        return [block.conv_dw for stage in self.blocks for block in stage]

    def set_output_stride(self, output_stride: int) -> MobileNetV1Encoder:
        schedule = atrous_schedule(self.nominal_strides, output_stride, current_stride=STEM_STRIDE)
        for conv, (stride, dilation) in zip(self.depthwise_convs, schedule, strict=True):
            set_conv_geometry(conv, stride, dilation)
        self.output_stride = check_output_stride(output_stride)
        return self

    def units(self) -> list[tuple[nn.Module, int]]:
        blocks = [block for stage in self.blocks for block in stage]
        return [(self.conv_stem, STEM_STRIDE), (self.bn1, 1), *zip(blocks, self.nominal_strides, strict=True)]
