"""Models: encoders, heads and the DeepLabv3 segmentor; ``build_model`` wires them without Hydra."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from ..errors import InvalidValue
from .encoders import ENCODERS, Encoder
from .heads import DeepLabHead, DeepLabV3PlusHead, LRASPPHead
from .segmentor import DeepLabV3, output_stride

# head name -> (class, its fixed arguments); the Hydra configs in conf/head/ build the same
HEADS = {
    "aspp": (DeepLabHead, {"aspp": True}),
    "no_aspp": (DeepLabHead, {"aspp": False}),
    "deeplabv3plus": (DeepLabV3PlusHead, {"aspp": True}),
    "lraspp": (LRASPPHead, {}),
}
# How tables and plots name each head (``describe_model``'s ``head``), Table 7's two first
HEAD_LABELS = {
    "aspp": "ASPP",
    "no_aspp": "no ASPP",
    "deeplabv3plus": "V3+ (ASPP)",
    "deeplabv3plus_no_aspp": "V3+ (no ASPP)",
    "lraspp": "LR-ASPP",
}


def head_label(head: str | None) -> str:
    return HEAD_LABELS.get(head, str(head))


def build_model(
    encoder: str = "mobilenet_v2",
    head: str = "aspp",
    output_stride: int = 16,
    width: float = 1.0,
    tap: str | None = None,
    num_classes: int = 21,
    encoder_weights: str | Path | None = None,
    separable: bool | None = None,
    bn: str = "torch",
    geometry: str = "torch",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> DeepLabV3:
    """Build a DeepLabv3 model by names (the Hydra configs in ``conf/`` build the same classes). ``mean``/``std``
    replace the encoder's input normalisation (0-1 pixel scale) for weights trained with another one (DeepLab's
    official checkpoints: 0.5 / 0.5)."""
    if encoder not in ENCODERS:
        raise InvalidValue(f"unknown encoder {encoder!r}; choose one of {sorted(ENCODERS)}")
    if head not in HEADS:
        raise InvalidValue(f"unknown head {head!r}; choose one of {sorted(HEADS)}")
    enc = ENCODERS[encoder](width=width, output_stride=output_stride, tap=tap, weights=encoder_weights, bn=bn)
    head_cls, fixed = HEADS[head]
    if separable is not None:  # None: the head's own default
        if head_cls is LRASPPHead:
            raise InvalidValue("head lraspp has no separable option")
        fixed = {**fixed, "separable": bool(separable)}
    make_head = partial(head_cls, num_classes=num_classes, bn=bn, **fixed)
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != 3 or len(std) != 3:
            raise InvalidValue(f"mean and std are given together, 3 values each; got mean={mean}, std={std}")
        enc.mean, enc.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return DeepLabV3(enc, make_head, geometry=geometry)


def describe_model(model: DeepLabV3) -> dict:
    """The Table 7 design choices of a built model, read from the model itself (for reports and hparams)."""
    encoder, head = model.encoder, model.head
    return {
        "network": encoder.label,
        "encoder": encoder.name,
        "head": head.name,
        "os": model.output_stride,
        "width": float(encoder.width),
        "tap": encoder.tap,
        "num_classes": head.num_classes,
        "geometry": model.geometry,
    }


__all__ = [
    "ENCODERS",
    "HEADS",
    "HEAD_LABELS",
    "DeepLabHead",
    "DeepLabV3",
    "DeepLabV3PlusHead",
    "Encoder",
    "LRASPPHead",
    "build_model",
    "describe_model",
    "head_label",
    "output_stride",
]
