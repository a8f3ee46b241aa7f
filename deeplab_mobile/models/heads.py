"""Segmentation heads: DeepLabv3's (Chen et al., 2017) as configured in the MobileNetV2 paper's Table 7, DeepLabV3+'s
decoder (Chen et al., ECCV 2018) and LR-ASPP (Howard et al., ICCV 2019).

DeepLabv3 (``aspp`` / ``no_aspp``):
``aspp=True``: a 1x1 branch, three 3x3 atrous branches and an image-pooling branch.
``aspp=False``: the paper's simplified head, the 1x1 branch and the image-pooling branch only.
Both: concat -> 1x1 projection to 256 + BN + ReLU -> dropout -> 1x1 logits (with bias).

Every head is built as ``head(in_channels=..., output_stride=..., levels=...)`` from the encoder's contract
(``levels``: the encoder's ``Level`` list, strides 4 and 8 and the output). A head with ``multi_level = True`` is
called with the encoder's ``forward_levels`` list, the others with its output; ``logits_stride`` is the stride of
a head's logits (the output stride where it has none). ``classifier_names`` are the modules that make the logits,
the ones a fine-tuning to another class set re-initialises.

The branches are laid out as SMP's DeepLabv3 branches are (the same modules in the same order, so the same
parameter names). They are written here because SMP exports only its whole ``ASPP`` and ``DeepLabV3Decoder``, and
neither is this head: its ``ASPP`` fixes exactly three atrous branches (no ``no_aspp`` head) and its decoder adds a
3x3 conv after the projection that the official head does not have.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.lraspp import LRASPPHead as TorchvisionLRASPPHead

from ..errors import InvalidValue
from .encoders._base import Level, check_output_stride, set_batchnorm, set_conv_geometry

BASE_RATES = (6, 12, 18)  # at output stride 16


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def separable_conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """TensorFlow DeepLab's ``split_separable_conv2d``: 3x3 depthwise + BN + ReLU, then 1x1 + BN + ReLU (SMP's
    ``SeparableConv2d`` has no BatchNorm and activation between the two)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        *conv_bn_relu(in_channels, out_channels),
    )


def atrous_branch(in_channels: int, out_channels: int, rate: int, separable: bool = False) -> nn.Sequential:
    """A 3x3 atrous conv (or a depthwise 3x3 then a 1x1, ``separable``) + BN + ReLU."""
    if separable:
        conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, padding=rate, dilation=rate, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )
    else:
        conv = nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU())


class ImagePooling(nn.Sequential):
    """The image-pooling branch: the mean over the whole map, 1x1 conv + BN + ReLU, spread back over the map."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]  # a 1x1 map resized bilinearly is that value everywhere, whatever align_corners says
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


def level_at(levels: Sequence[Level] | None, stride: int, head: str) -> Level:
    """The encoder level at ``stride`` (the first, a low level, where the output is at that stride too)."""
    for level in levels or ():
        if level.stride == stride:
            return level
    raise InvalidValue(f"head {head} needs the encoder's stride-{stride} feature; the encoder gives {levels}")


def scaled_rates(output_stride: int, base_rates: Sequence[int] = BASE_RATES) -> tuple[int, ...]:
    """ASPP rates for an output stride: the OS16 rates times 16/OS (12/24/36 at OS8, 3/6/9 at OS32)."""
    check_output_stride(output_stride)
    rates = []
    for r in base_rates:
        if (r * 16) % output_stride:
            raise InvalidValue(f"ASPP rate {r} at OS16 has no integer equivalent at output stride {output_stride}")
        rates.append(r * 16 // output_stride)
    return tuple(rates)


def atrous_conv(branch: nn.Module) -> nn.Conv2d:
    """The 3x3 conv of an atrous branch (the depthwise one of a separable branch)."""
    return next(m for m in branch.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))


class ASPPContext(nn.Module):
    """DeepLabv3's context module: the branches, their concatenation projected to ``channels`` + BN + ReLU, and
    dropout (DeepLab's ``keep_prob`` 0.9 after the projection). ``aspp``: with the three atrous branches."""

    def __init__(
        self,
        in_channels: int,
        output_stride: int,
        aspp: bool = True,
        rates: Sequence[int] = BASE_RATES,
        channels: int = 256,
        separable: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.base_rates = tuple(rates) if aspp else ()
        branches = [conv_bn_relu(in_channels, channels)]
        branches += [atrous_branch(in_channels, channels, r, separable) for r in self.base_rates]
        branches.append(ImagePooling(in_channels, channels))
        self.branches = nn.ModuleList(branches)
        self.project = conv_bn_relu(len(self.branches) * channels, channels)
        self.dropout = nn.Dropout(dropout)
        self.set_output_stride(output_stride)

    def set_output_stride(self, output_stride: int) -> ASPPContext:
        """Re-derive the atrous rates for ``output_stride`` and set them on the branches, in place."""
        self.rates = scaled_rates(output_stride, self.base_rates)
        atrous_branches = self.branches[1 : 1 + len(self.rates)]
        for branch, rate in zip(atrous_branches, self.rates, strict=True):
            set_conv_geometry(atrous_conv(branch), 1, rate)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.dropout(self.project(x))


class DeepLabHead(ASPPContext):
    """DeepLabv3 head: the context module and 1x1 logits.

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
        levels: the encoder's levels (unused: this head reads the output only).
    """

    classifier_names = ("classifier",)

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
        levels: Sequence[Level] | None = None,
    ) -> None:
        super().__init__(in_channels, output_stride, aspp, rates, channels, separable, dropout)
        self.name = "aspp" if aspp else "no_aspp"
        self.num_classes = num_classes
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)
        set_batchnorm(self, bn, deeplab_eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(super().forward(x))


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+'s decoder on DeepLabv3's context module, as TensorFlow DeepLab's ``decoder_output_stride=4``.

    The context module's output is resized to the stride-4 feature, which is reduced to 48 channels (1x1 + BN +
    ReLU); the two are concatenated and refined by two 3x3 convs (+ BN + ReLU), then 1x1 logits at stride 4.

    The low-level feature is the encoder's stride-4 level, the output of its last block at stride 4 (24 channels
    in MobileNetV2, 256 in ResNet-101: block1/unit_2, DeepLab's end point for ResNet), as in SMP and VainF's
    DeepLabV3Plus-Pytorch. TensorFlow DeepLab's MobileNetV2 decoder reads the depthwise output inside that block
    instead (``layer_4/depthwise_output``, 144 channels); the encoder contract exposes block outputs only.

    Args:
        in_channels, output_stride, num_classes, rates, channels, dropout, bn: as ``DeepLabHead``.
        levels: the encoder's levels; the stride-4 one is read.
        aspp: the context module with the three atrous branches or without them (the paper's simplified one).
        separable: depthwise-separable atrous branches and decoder convs (default: TensorFlow DeepLab's DeepLabV3+
            setting, ``aspp_with_separable_conv`` and ``decoder_use_separable_conv``); ``False``: plain 3x3 convs.
        low_channels: channels the stride-4 feature is reduced to.
        decoder_channels: width of the two 3x3 convs.
    """

    multi_level = True
    logits_stride = 4
    classifier_names = ("classifier",)

    def __init__(
        self,
        in_channels: int,
        output_stride: int,
        levels: Sequence[Level] | None = None,
        num_classes: int = 21,
        aspp: bool = True,
        rates: Sequence[int] = BASE_RATES,
        channels: int = 256,
        separable: bool = True,
        dropout: float = 0.1,
        low_channels: int = 48,
        decoder_channels: int = 256,
        bn: str = "torch",
    ) -> None:
        super().__init__()
        self.name = "deeplabv3plus" if aspp else "deeplabv3plus_no_aspp"
        self.num_classes = num_classes
        self.align_corners = False  # the segmentor sets its geometry's
        low = level_at(levels, self.logits_stride, self.name)
        self.context = ASPPContext(in_channels, output_stride, aspp, rates, channels, separable, dropout)
        self.reduce = conv_bn_relu(low.channels, low_channels)
        if separable:
            fuse = [
                separable_conv_bn_relu(channels + low_channels, decoder_channels),
                separable_conv_bn_relu(decoder_channels, decoder_channels),
            ]
        else:
            fuse = [
                conv_bn_relu(channels + low_channels, decoder_channels, 3),
                conv_bn_relu(decoder_channels, decoder_channels, 3),
            ]
        self.fuse = nn.Sequential(*fuse)
        self.classifier = nn.Conv2d(decoder_channels, num_classes, kernel_size=1)
        set_batchnorm(self, bn, deeplab_eps=1e-5)

    @property
    def base_rates(self) -> tuple[int, ...]:
        return self.context.base_rates

    @property
    def rates(self) -> tuple[int, ...]:
        return self.context.rates

    def set_output_stride(self, output_stride: int) -> DeepLabV3PlusHead:
        self.context.set_output_stride(output_stride)
        return self

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        low, x = features[0], self.context(features[-1])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.classifier(self.fuse(torch.cat([x, self.reduce(low)], dim=1)))


class LRASPPHead(TorchvisionLRASPPHead):
    """LR-ASPP (MobileNetV3 paper, section 6.1) as torchvision builds it, with torchvision's modules and parameter
    names (its ``lraspp_mobilenet_v3_large`` weights load): on the output feature a 1x1 conv + BN + ReLU branch,
    gated by a sigmoid of a pooled 1x1 conv branch; resized to the stride-8 feature; logits from each, summed.
    The gate pools globally, as torchvision does; the paper's 49x49 window with stride (16, 20) was set for
    1024x2048 Cityscapes crops, where it covers most of the image.

    Here the forward reads the encoder's level list and resizes with the segmentor's ``align_corners``.

    Args:
        in_channels: the encoder's ``out_channels`` (the "high" feature).
        output_stride: the encoder's (the head has no atrous convs; kept for the contract).
        levels: the encoder's levels; the stride-8 one is the "low" feature.
        num_classes: logits channels.
        inter_channels: width of the gated branch (128).
        bn: ``torch`` or ``deeplab`` (decay 0.9997, epsilon 1e-5).
    """

    multi_level = True
    logits_stride = 8
    classifier_names = ("low_classifier", "high_classifier")
    base_rates = ()

    def __init__(
        self,
        in_channels: int,
        output_stride: int,
        levels: Sequence[Level] | None = None,
        num_classes: int = 21,
        inter_channels: int = 128,
        bn: str = "torch",
    ) -> None:
        low = level_at(levels, self.logits_stride, "lraspp")
        super().__init__(low.channels, in_channels, num_classes, inter_channels)
        self.name = "lraspp"
        self.num_classes = num_classes
        self.align_corners = False  # the segmentor sets its geometry's
        check_output_stride(output_stride)
        set_batchnorm(self, bn, deeplab_eps=1e-5)

    def set_output_stride(self, output_stride: int) -> LRASPPHead:
        check_output_stride(output_stride)
        return self

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        low, high = features[1], features[-1]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.low_classifier(low) + self.high_classifier(x)
