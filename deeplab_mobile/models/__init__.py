"""Models: encoders, heads and the DeepLabv3 segmentor; ``build_model`` (``build.py``) builds every one."""

from __future__ import annotations

from .build import HEAD_LABELS, HEADS, HeadSpec, build_model, describe_model, head_label, load_model_file
from .encoders import ENCODERS, Encoder
from .heads import DeepLabHead, DeepLabV3PlusHead, LRASPPHead
from .segmentor import DeepLabV3, output_stride

__all__ = [
    "ENCODERS",
    "HEADS",
    "HEAD_LABELS",
    "DeepLabHead",
    "DeepLabV3",
    "DeepLabV3PlusHead",
    "Encoder",
    "HeadSpec",
    "LRASPPHead",
    "build_model",
    "describe_model",
    "head_label",
    "load_model_file",
    "output_stride",
]
