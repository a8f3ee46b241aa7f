"""Encoders: each exposes ``out_channels``, ``output_stride``, ``set_output_stride``, ``levels`` /
``forward_levels``, ``mean``, ``std`` and its description (``name``, ``label``, ``width``, ``tap``); see ``_base``."""

from ._base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LEVEL_STRIDES,
    SUPPORTED_OUTPUT_STRIDES,
    Encoder,
    EncoderSpec,
    Level,
    atrous_schedule,
    check_output_stride,
)
from .mobilenet_v1 import MobileNetV1Encoder
from .mobilenet_v2 import MobileNetV2Encoder
from .mobilenet_v3 import MobileNetV3Encoder
from .resnet import ResNet101BetaEncoder

# The registry: each encoder's spec (``EncoderSpec``) is its class's ``spec``; a new encoder is listed here
ENCODERS: dict[str, type[Encoder]] = {
    cls.spec.name: cls for cls in (MobileNetV2Encoder, MobileNetV3Encoder, MobileNetV1Encoder, ResNet101BetaEncoder)
}

__all__ = [
    "ENCODERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SUPPORTED_OUTPUT_STRIDES",
    "LEVEL_STRIDES",
    "Encoder",
    "EncoderSpec",
    "Level",
    "MobileNetV1Encoder",
    "MobileNetV2Encoder",
    "MobileNetV3Encoder",
    "ResNet101BetaEncoder",
    "atrous_schedule",
    "check_output_stride",
]
