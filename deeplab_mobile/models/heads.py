"""DeepLabv3 heads (Chen et al., 2017) as configured in the MobileNetV2 paper's Table 7.

``aspp=True``: a 1x1 branch, three 3x3 atrous branches and an image-pooling branch.
``aspp=False``: the paper's simplified head, the 1x1 branch and the image-pooling branch only.
Both: concat -> 1x1 projection to 256 + BN + ReLU -> dropout -> 1x1 logits (with bias).

The branch modules are SMP's (``ASPPConv``, ``ASPPSeparableConv``, ``ASPPPooling``). SMP's own ``ASPP`` is not
used because it fixes exactly three atrous branches (no ``no_aspp`` head) and SMP's ``DeepLabV3Decoder`` adds a
3x3 conv after the projection that the official head does not have.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segmentation_models_pytorch.decoders.deeplabv3.decoder import ASPPConv, ASPPPooling, ASPPSeparableConv
from torch import nn

from .encoders._base import check_output_stride, set_batchnorm, set_conv_geometry

BASE_RATES = (6, 12, 18)  # at output stride 16


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def scaled_rates(output_stride: int, base_rates: Sequence[int] = BASE_RATES) -> tuple[int, ...]:
    """ASPP rates for an output stride: the OS16 rates times 16/OS (12/24/36 at OS8, 3/6/9 at OS32)."""
    check_output_stride(output_stride)
    rates = []
    for r in base_rates:
        if (r * 16) % output_stride:
            raise ValueError(f"ASPP rate {r} at OS16 has no integer equivalent at output stride {output_stride}")
        rates.append(r * 16 // output_stride)
    return tuple(rates)


def atrous_conv(branch: nn.Module) -> nn.Conv2d:
    """The 3x3 conv of an atrous branch (the depthwise one of a separable branch)."""
    return next(m for m in branch.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))


class DeepLabHead(nn.Module):
    """DeepLabv3 head.

    Args:
        in_channels: the encoder's ``out_channels``.
        output_stride: the encoder's ``output_stride``; the atrous rates follow from it.
        num_classes: logits channels (21 for PASCAL VOC).
        aspp: with the three atrous branches (``aspp``) or without (``no_aspp``).
        rates: the atrous rates at output stride 16.
        channels: branch and projection width.
        separable: depthwise-separable atrous convs (TF DeepLab's default; Table 7 used plain convs).
        dropout: dropout before the logits.
        bn: BatchNorm's momentum and epsilon: ``torch`` or ``deeplab`` (decay 0.9997, epsilon 1e-5).
    """

    def __init__(
        self,
        in_channels: int,
        output_stride: int,
        num_classes: int = 21,
        aspp: bool = True,
        rates: Sequence[int] = BASE_RATES,
        channels: int = 256,
        separable: bool = False,
        dropout: float = 0.1,
        bn: str = "torch",
    ) -> None:
        super().__init__()
        self.name = "aspp" if aspp else "no_aspp"
        self.num_classes = num_classes
        self.base_rates = tuple(rates) if aspp else ()
        atrous = ASPPSeparableConv if separable else ASPPConv
        branches = [conv_bn_relu(in_channels, channels)]
        branches += [atrous(in_channels, channels, r) for r in self.base_rates]
        branches.append(ASPPPooling(in_channels, channels))
        self.branches = nn.ModuleList(branches)
        self.project = conv_bn_relu(len(self.branches) * channels, channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        set_batchnorm(self, bn, deeplab_eps=1e-5)
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> DeepLabHead:
        """Re-derive the atrous rates for ``output_stride`` and set them on the branches, in place."""
        self.rates = scaled_rates(output_stride, self.base_rates)
        atrous_branches = self.branches[1 : 1 + len(self.rates)]
        for branch, rate in zip(atrous_branches, self.rates, strict=True):
            set_conv_geometry(atrous_conv(branch), 1, rate)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.classifier(self.dropout(self.project(x)))
