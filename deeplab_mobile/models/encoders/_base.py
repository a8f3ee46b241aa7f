"""The encoder contract and the TensorFlow DeepLab output-stride rule shared by the encoders.

Every encoder is an ``nn.Module`` that maps an image batch to one feature map and exposes

- ``out_channels``: channels of that feature map (heads size themselves from it),
- ``output_stride``: input size / feature size (heads derive their atrous rates from it),
- ``levels`` and ``forward_levels(x)``: the features at strides 4 and 8 and the output, each level's stride and
  channels (``Level``), for heads that read low-level features (DeepLabV3+, LR-ASPP) without knowing the encoder,
- ``set_output_stride(os)``: the same network at another stride, in place (same parameters),
- ``mean`` / ``std``: the input normalisation its weights were trained with, on a 0-1 pixel scale,
- ``name`` (its key in ``ENCODERS``), ``width``, ``tap`` and ``label`` (its name in Table 7), for reports.

Nothing outside ``models/`` looks at an encoder's name; everything reads these attributes.

An encoder is data plus its network: its class attributes are its spec (``name``, ``family``, ``widths``, ``taps``,
``deeplab_bn_eps``, ``base_label``), and the base class does what every encoder does around building its network:
``Encoder.__init__`` checks width, tap and output stride against the spec; ``finish`` applies the output-stride
rule, the BatchNorm setting and the weights choice (``load_weights``, the subclass's source of ImageNet weights).
A new encoder subclasses ``Encoder``, builds its network between the two and lists it in ``ENCODERS``
(docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ...errors import InvalidValue, is_number

SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)
BN_SETTINGS = ("torch", "deeplab")
DEEPLAB_BN_MOMENTUM = 1 - 0.9997  # TensorFlow DeepLab's batch_norm_decay, as PyTorch's momentum
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LEVEL_STRIDES = (4, 8)  # the low-level features every encoder exposes besides its output


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder as data: its key in ``ENCODERS``, how messages name it, the width multipliers and taps it builds
    (the first tap is the default), its BatchNorm epsilon in DeepLab's code (``bn="deeplab"``), and its own options
    with their defaults (MobileNetV2's ``zero_init_residual``). A subclass of ``Encoder`` declares one as ``spec``;
    its attributes (``name``, ``family``, ``widths``, ``taps``, ``deeplab_bn_eps``, ``options``) are the spec's."""

    name: str
    family: str
    widths: tuple[float, ...] = (1.0,)
    taps: tuple[str, ...] = ("last",)
    deeplab_bn_eps: float = 1e-3
    options: dict = field(default_factory=dict)


class Level(NamedTuple):
    """One feature level of an encoder: its stride (input size / feature size) and channels."""

    stride: int
    channels: int


def check_output_stride(output_stride: int) -> int:
    if not is_number(output_stride, integer=True) or output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise InvalidValue(
            f"output stride {output_stride!r} is not supported; choose one of {SUPPORTED_OUTPUT_STRIDES}"
        )
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
        raise InvalidValue(f"output stride {output_stride} unreachable: the network's stride ends at {current_stride}")
    return schedule


def set_conv_geometry(conv: nn.Conv2d, stride: int, dilation: int) -> None:
    """Give a conv with an odd square kernel a new stride and dilation, keeping 'same' padding."""
    if conv.padding_mode != "zeros":  # other modes pad from a cached copy of the padding, outside this rule
        raise InvalidValue(f"{conv}: only zero-padded convolutions can change their geometry")
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
        raise InvalidValue(f"bn={bn!r} is not supported; choose one of {BN_SETTINGS}")
    if bn == "deeplab":
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum, m.eps = DEEPLAB_BN_MOMENTUM, deeplab_eps


def last_conv_channels(module: nn.Module) -> int | None:
    """Output channels of the last convolution registered in ``module`` (its output's, for the blocks here: the
    projection of an inverted residual, the pointwise conv of a separable block, conv3 of a bottleneck)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


class Encoder(nn.Module):
    """Base class: holds the contract attributes (see module docstring) and runs the network.

    Subclasses build their network at its nominal strides, then call ``set_output_stride``, so that building at
    one stride and building at another, then setting the first, give the same network. They list the network as
    ``units()``: the modules ``forward`` runs one after the other, each with its nominal stride; a low level is
    the output of the last unit at that nominal stride (DeepLab's decoder end points: the block before the one
    that halves the resolution). Levels at strides 4 and 8 never move with the output stride (8 at the least).
    """

    name: str
    family: str  # how messages name the network ("MobileNetV2")
    widths: tuple[float, ...] = (1.0,)  # the width multipliers it builds
    out_channels: int
    output_stride: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    width: float = 1.0
    taps: tuple[str, ...] = ("last",)
    tap: str = "last"
    deeplab_bn_eps: float = 1e-3  # BatchNorm's epsilon in DeepLab's version of the network (``bn="deeplab"``)

    options: dict = {}  # the encoder's own settings and their defaults (MobileNetV2: zero_init_residual)
    spec: EncoderSpec

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is not None:
            cls.name, cls.family, cls.widths, cls.taps = spec.name, spec.family, spec.widths, spec.taps
            cls.deeplab_bn_eps, cls.options = spec.deeplab_bn_eps, dict(spec.options)

    def __init__(
        self,
        width: float = 1.0,
        output_stride: int = 16,
        tap: str | None = None,
        weights: str | Path | None = None,
        bn: str = "torch",
        **options,
    ) -> None:
        """Every encoder is built the same way: the spec's checks of ``width``, ``tap``, ``output_stride`` and
        ``options`` before anything is built, the subclass's ``build`` at nominal strides, then ``finish``.

        Args:
            width: the width multiplier, one of ``widths``.
            output_stride: 8, 16 or 32.
            tap: one of ``taps`` (``None``: the first).
            weights: ``None``/``"random"``, ``"imagenet"`` (the library's; width 1.0) or a local state dict path.
            bn: BatchNorm's momentum and epsilon: ``torch`` (PyTorch's) or ``deeplab`` (TF DeepLab's: decay
                0.9997, epsilon ``deeplab_bn_eps``); see ``set_batchnorm``.
            options: the encoder's own settings, keys of ``options``.
        """
        super().__init__()
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            own = ", ".join(sorted(self.options)) or "none"
            raise InvalidValue(f"{self.family} has no setting {', '.join(unknown)} (its own: {own})")
        self.settings = {**self.options, **options}
        if width not in self.widths:
            if len(self.widths) == 1:
                raise InvalidValue(f"{self.family} has no width multiplier; width={width!r} is not supported")
            raise InvalidValue(
                f"{self.family} width multiplier {width!r} is not supported; choose one of {self.widths}"
            )
        self.tap = self.resolve_tap(tap)
        check_output_stride(output_stride)
        self.width = float(width)
        self.build()
        self.finish(output_stride, bn, weights)

    def build(self) -> None:  # pragma: no cover - abstract
        """Build the network at its nominal strides: its modules, ``out_channels`` and ``nominal_strides``."""
        raise NotImplementedError

    def finish(self, output_stride: int, bn: str, weights: str | Path | None) -> None:
        """The closing every encoder shares, once its network is built at nominal strides: the output-stride rule,
        ``init_weights``, the BatchNorm setting (``set_batchnorm``, then ``adjust_batchnorm``), the weights."""
        self.set_output_stride(output_stride)
        self.init_weights()
        set_batchnorm(self, bn, self.deeplab_bn_eps)
        self.adjust_batchnorm(bn)
        self.load_weights(weights)

    def init_weights(self) -> None:
        """Changes to the random initialisation (before any weights load); none by default."""

    def adjust_batchnorm(self, bn: str) -> None:
        """An encoder's own BatchNorm settings after ``set_batchnorm``; none by default."""

    def load_weights(self, weights: str | Path | None) -> None:  # pragma: no cover - abstract
        """Apply the weights choice: ``None``/``"random"``, ``"imagenet"`` or a local file (``models.weights``)."""
        raise NotImplementedError

    @classmethod
    def resolve_tap(cls, tap: str | None) -> str:
        """``None`` is the encoder's default tap (the first of ``taps``); anything else must be one of them."""
        if tap is None:
            return cls.taps[0]
        if tap not in cls.taps:
            raise InvalidValue(f"{cls.__name__} tap {tap!r} is not supported; choose one of {cls.taps}")
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

    def units(self) -> list[tuple[nn.Module, int]]:  # pragma: no cover - abstract
        """The network in execution order, each module with its nominal stride. Listed afresh on each call, so
        modules replaced in place (``use_same_padding``, BatchNorm folding) are the ones that run."""
        raise NotImplementedError

    def level_units(self) -> list[int]:
        """Index in ``units()`` after which each of ``LEVEL_STRIDES`` is read."""
        ends, stride = {}, 1
        for i, (_, unit_stride) in enumerate(self.units()):
            stride *= unit_stride
            ends[stride] = i
        missing = [s for s in LEVEL_STRIDES if s not in ends]
        if missing:  # pragma: no cover - every encoder here reaches them
            raise InvalidValue(f"{type(self).__name__} has no feature at stride(s) {missing}")
        return [ends[s] for s in LEVEL_STRIDES]

    @property
    def levels(self) -> tuple[Level, ...]:
        """The low levels (strides 4 and 8) and the output level (``output_stride``, ``out_channels``)."""
        units = self.units()
        levels = []
        for stride, end in zip(LEVEL_STRIDES, self.level_units(), strict=True):
            channels = next(c for m, _ in reversed(units[: end + 1]) if (c := last_conv_channels(m)) is not None)
            levels.append(Level(stride, channels))
        return (*levels, Level(self.output_stride, self.out_channels))

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features of ``levels``, in its order (the last is ``forward``'s output)."""
        ends = set(self.level_units())
        out = []
        for i, (unit, _) in enumerate(self.units()):
            x = unit(x)
            if i in ends:
                out.append(x)
        return [*out, x]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit, _ in self.units():
            x = unit(x)
        return x
