"""ResNet-101 as DeepLab uses it: ``resnet_v1_101_beta`` (tensorflow/models research/deeplab).

Differences from a torchvision ResNet-101, all three of which change Table 7's Params or MAdds:
- the "beta" stem: three 3x3 convs (64, 64, 128) instead of one 7x7 conv; timm's ``resnet101s`` has exactly
  this stem, so the network and its ImageNet weights come from timm;
- each of blocks 1-3 downsamples in its *last* unit (3x3 conv stride 2, identity shortcut subsampled), not in
  the first unit of the next block. timm has no option for this, so the strides are moved here after building;
  parameter names and shapes are unchanged, so timm weights still load;
- multi-grid (1, 2, 4) in block 4, multiplying the rate given by the output-stride rule.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from ..weights import load_timm_weights
from ._base import Encoder, EncoderSpec, atrous_schedule, check_output_stride, set_conv_geometry

MULTI_GRID = (1, 2, 4)
STEM_STRIDE = 4  # the stem's stride-2 conv and max-pool


class Subsample(nn.Module):
    """TF-slim ``resnet_utils.subsample``: a 1x1 max-pool with stride, i.e. strided slicing."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x


def _move_strides_to_last_unit(layers: list[nn.Sequential]) -> None:
    """Turn a timm ResNet (stride in the first unit of layers 2-4) into TF's beta layout (last unit of 1-3)."""
    for layer in layers[1:]:
        first = layer[0]
        first.conv2.stride = (1, 1)
        first.downsample[0].stride = (1, 1)
    for layer in layers[:-1]:
        last = layer[-1]
        last.conv2.stride = (2, 2)
        last.downsample = Subsample(2)


class ResNet101BetaEncoder(Encoder):
    """DeepLab's ResNet-101 beta, dilated per the TensorFlow rule with multi-grid in block 4.

    Arguments as ``Encoder``'s: width only 1.0; tap only ``None``/``"last"`` (block 4, 2048 channels); ImageNet
    weights timm's ``resnet101s``; BatchNorm epsilon 1e-5 with ``bn="deeplab"``. Its own option:
        multi_grid: rate multipliers of block 4's three units.
    """

    spec = EncoderSpec("resnet101", "ResNet-101", deeplab_bn_eps=1e-5, options={"multi_grid": MULTI_GRID})
    base_label = "ResNet-101"

    def build(self) -> None:
        net = timm.create_model("resnet101s", pretrained=False, num_classes=0, global_pool="")
        self.conv1, self.bn1, self.act1, self.maxpool = net.conv1, net.bn1, net.act1, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        _move_strides_to_last_unit(self.layers)
        self.nominal_strides = [unit.conv2.stride[0] for unit in self.bottlenecks]
        self.multi_grid = [1] * (len(self.bottlenecks) - len(self.layer4)) + list(self.settings["multi_grid"])
        self.out_channels = net.num_features

    def load_weights(self, weights: str | Path | None) -> None:
        load_timm_weights(self, weights, "resnet101s", "timm/resnet101s.gluon_in1k", self.width, ("fc.",))

    @property
    def layers(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    @property
    def bottlenecks(self) -> list[nn.Module]:
        return [unit for layer in self.layers for unit in layer]

    def set_output_stride(self, output_stride: int) -> ResNet101BetaEncoder:
        schedule = atrous_schedule(self.nominal_strides, output_stride, current_stride=STEM_STRIDE)
        for unit, (stride, rate), mult in zip(self.bottlenecks, schedule, self.multi_grid, strict=True):
            set_conv_geometry(unit.conv2, stride, rate * mult)
            if isinstance(unit.downsample, Subsample):
                unit.downsample.stride = stride
        self.output_stride = check_output_stride(output_stride)
        return self

    def units(self) -> list[tuple[nn.Module, int]]:
        stem = [(self.conv1, 2), (self.bn1, 1), (self.act1, 1), (self.maxpool, 2)]
        return stem + list(zip(self.bottlenecks, self.nominal_strides, strict=True))
