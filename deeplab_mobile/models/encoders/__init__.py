"""Encoders: each exposes ``out_channels``, ``output_stride``, ``mean`` and ``std`` (see ``_base``)."""

from ._base import SUPPORTED_OUTPUT_STRIDES, Encoder, atrous_schedule
from .mobilenet_v1 import MobileNetV1Encoder
from .mobilenet_v2 import MobileNetV2Encoder
from .resnet import ResNet101BetaEncoder

ENCODERS = {
    "mobilenet_v2": MobileNetV2Encoder,
    "mobilenet_v1": MobileNetV1Encoder,
    "resnet101": ResNet101BetaEncoder,
}

__all__ = [
    "ENCODERS",
    "SUPPORTED_OUTPUT_STRIDES",
    "Encoder",
    "MobileNetV1Encoder",
    "MobileNetV2Encoder",
    "ResNet101BetaEncoder",
    "atrous_schedule",
]
