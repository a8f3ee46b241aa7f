"""The encoder contract and the TensorFlow DeepLab output-stride rule shared by the encoders.

Every encoder is an ``nn.Module`` that maps an image batch to one feature map and exposes

- ``out_channels``: channels of that feature map (heads size themselves from it),
- ``output_stride``: input size / feature size (heads derive their atrous rates from it),
- ``set_output_stride(os)``: the same network at another stride, in place (same parameters),
- ``mean`` / ``std``: the input normalisation its weights were trained with, on a 0-1 pixel scale,
- ``name`` (its key in ``ENCODERS``), ``width``, ``tap`` and ``label`` (its name in Table 7), for reports.

Nothing outside ``models/`` looks at an encoder's name; everything reads these attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)
BN_SETTINGS = ("torch", "deeplab")
DEEPLAB_BN_MOMENTUM = 1 - 0.9997  # TensorFlow DeepLab's batch_norm_decay, as PyTorch's momentum
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_output_stride(output_stride: int) -> int:
    if isinstance(output_stride, bool) or output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise ValueError(f"output stride {output_stride!r} is not supported; choose one of {SUPPORTED_OUTPUT_STRIDES}")
    return int(output_stride)


def atrous_schedule(strides: Sequence[int], output_stride: int, current_stride: int) -> list[tuple[int, int]]:
    """Stride and dilation of each unit under TensorFlow DeepLab's output-stride rule.

    Written here because SMP's ``make_dilated`` dilates every conv of a stage including the first, which
    differs from the official models: once the running stride reaches ``output_stride``, a unit that would
    downsample runs at stride 1 and keeps the rate accumulated so far, and the rate multiplies by its stride
    for the units after it (``stack_blocks_dense`` / ``mobilenet_base`` in tensorflow/models).

    Args:
        strides: the nominal stride of each unit, in order.
        output_stride: the wanted input/feature size ratio.
        current_stride: the stride already reached before the first unit (the stem's).

    Returns:
        one ``(stride, dilation)`` pair per unit.
    """
    check_output_stride(output_stride)
    rate = 1
    schedule = []
    for stride in strides:
        if current_stride == output_stride:
            schedule.append((1, rate))
            rate *= stride
        else:
            schedule.append((stride, 1))
            current_stride *= stride
    if current_stride != output_stride:
        raise ValueError(f"output stride {output_stride} unreachable: the network's stride ends at {current_stride}")
    return schedule


def set_conv_geometry(conv: nn.Conv2d, stride: int, dilation: int) -> None:
    """Give a conv with an odd square kernel a new stride and dilation, keeping 'same' padding."""
    if conv.padding_mode != "zeros":  # other modes pad from a cached copy of the padding, outside this rule
        raise ValueError(f"{conv}: only zero-padded convolutions can change their geometry")
    k = conv.kernel_size[0]
    conv.stride = (stride, stride)
    conv.dilation = (dilation, dilation)
    conv.padding = ((k - 1) // 2 * dilation,) * 2


def set_batchnorm(module: nn.Module, bn: str, deeplab_eps: float) -> None:
    """BatchNorm's running-average momentum and epsilon for every BN layer in ``module``.

    ``torch`` keeps PyTorch's (momentum 0.1, eps 1e-5), with which torchvision's and timm's ImageNet weights were
    trained; ``deeplab`` sets TensorFlow DeepLab's: decay 0.9997 (momentum 3e-4) and ``deeplab_eps``, the epsilon
    of the network in DeepLab's code (1e-3 in its MobileNets, 1e-5 in its ResNet and head).
    """
    if bn not in BN_SETTINGS:
        raise ValueError(f"bn={bn!r} is not supported; choose one of {BN_SETTINGS}")
    if bn == "deeplab":
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum, m.eps = DEEPLAB_BN_MOMENTUM, deeplab_eps


class Encoder(nn.Module):
    """Base class: holds the contract attributes (see module docstring).

    Subclasses build their network at its nominal strides, then call ``set_output_stride``, so that building at
    one stride and building at another, then setting the first, give the same network.
    """

    name: str
    out_channels: int
    output_stride: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    width: float = 1.0
    taps: tuple[str, ...] = ("last",)
    tap: str = "last"
    deeplab_bn_eps: float = 1e-3  # BatchNorm's epsilon in DeepLab's version of the network (``bn="deeplab"``)

    @classmethod
    def resolve_tap(cls, tap: str | None) -> str:
        """``None`` is the encoder's default tap (the first of ``taps``); anything else must be one of them."""
        if tap is None:
            return cls.taps[0]
        if tap not in cls.taps:
            raise ValueError(f"{cls.__name__} tap {tap!r} is not supported; choose one of {cls.taps}")
        return tap

    @property
    def base_label(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The network's name in Table 7 (``MNet V2*``), with the width where it is not 1 (``MNet V2* x0.5``)."""
        return self.base_label if self.width == 1.0 else f"{self.base_label} x{self.width:g}"

    def set_output_stride(self, output_stride: int) -> Encoder:  # pragma: no cover - abstract
        """Re-apply the output-stride rule in place: strides, dilations and paddings change, parameters stay."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
