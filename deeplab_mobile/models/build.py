"""The one way a model is built: ``build_model``, from names (``build_model("mobilenet_v2", "no_aspp")``) or from
the modules Hydra instantiates from the config's ``encoder`` and ``head`` options (``config/schema.py``; the
``model`` node's ``_target_`` is this function). Heads are data: ``HEADS`` names each head's class and its fixed
arguments, and a head's defaults are its class's signature (``HeadSpec.defaults``); ``tests/models/test_registry.py``
pairs every head option with them, so the configs cannot drift from the code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from torch import nn

from ..errors import InvalidValue
from .encoders import ENCODERS, Encoder
from .heads import DeepLabHead, DeepLabV3PlusHead, LRASPPHead
from .pretrained import ModelFile, load_weights, read_model_file
from .segmentor import DeepLabV3
from .weights import WeightsError

# the arguments the segmentor (or the run's top-level keys) gives every head: not a head's own defaults
SUPPLIED = ("in_channels", "output_stride", "levels", "num_classes", "bn")


@dataclass(frozen=True)
class HeadSpec:
    """A head: its class, the arguments its name fixes (``no_aspp``: ``aspp=False``), and how tables name it."""

    cls: type[nn.Module]
    label: str
    fixed: dict = field(default_factory=dict)
    unused: tuple[str, ...] = ()  # arguments of the class this head does not use (no_aspp: no atrous branches)

    def defaults(self) -> dict:
        """The head's own settings and their defaults: its class's signature, with the fixed ones applied."""
        params = inspect.signature(self.cls.__init__).parameters.values()
        skip = {"self", *SUPPLIED, *self.unused}
        own = {p.name: p.default for p in params if p.name not in skip}
        values = {**own, **self.fixed}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @property
    def target(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__name__}"


HEADS = {
    "aspp": HeadSpec(DeepLabHead, "ASPP", {"aspp": True}),
    "no_aspp": HeadSpec(DeepLabHead, "no ASPP", {"aspp": False}, unused=("rates", "separable")),
    "deeplabv3plus": HeadSpec(DeepLabV3PlusHead, "V3+ (ASPP)", {"aspp": True}),
    "lraspp": HeadSpec(LRASPPHead, "LR-ASPP"),
}
# How tables and plots name each head (``describe_model``'s ``head``), Table 7's two first
HEAD_LABELS = {**{name: spec.label for name, spec in HEADS.items()}, "deeplabv3plus_no_aspp": "V3+ (no ASPP)"}


def head_label(head: str | None) -> str:
    return HEAD_LABELS.get(head, str(head))


def build_model(
    encoder: str | Encoder = "mobilenet_v2",
    head: str | Callable[..., nn.Module] = "aspp",
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
    weights: str | Path | None = None,
) -> DeepLabV3:
    """A DeepLabv3 model. ``encoder``: a name in ``ENCODERS`` (built with ``width``, ``output_stride``, ``tap``,
    ``encoder_weights``, ``bn``) or a built encoder (Hydra's, from an ``encoder`` option); ``head``: a name in
    ``HEADS`` (its defaults, ``num_classes``, ``bn``, ``separable`` where given) or a head factory (Hydra's partial,
    from a ``head`` option). ``mean``/``std`` replace the encoder's input normalisation (0-1 pixel scale) for weights
    trained with another one (DeepLab's official checkpoints: 0.5 / 0.5).

    ``weights``: a model file, or the name of published weights (``zoo``: downloaded and converted on first use):
    the network is the weights' own, with them loaded, at ``output_stride``; an architecture argument given as well
    must agree with it."""
    if weights is not None:
        given = {"encoder": encoder, "head": head, "width": width, "num_classes": num_classes}
        default = inspect.signature(build_model).parameters  # an argument left at its default is not a choice
        return _with_weights(weights, output_stride, {k: v for k, v in given.items() if v != default[k].default})
    enc = (
        encoder
        if isinstance(encoder, Encoder)
        else encoder_by_name(encoder, width, output_stride, tap, encoder_weights, bn)
    )
    make_head = head if callable(head) else head_by_name(head, num_classes, bn, separable)
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != 3 or len(std) != 3:
            raise InvalidValue(f"mean and std are given together, 3 values each; got mean={mean}, std={std}")
        enc.mean, enc.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return DeepLabV3(enc, make_head, geometry=geometry)


def load_model_file(path: str | Path, output_stride: int | None = None) -> tuple[DeepLabV3, ModelFile]:
    """The model a model file (or published weights' name, ``zoo``) holds, with its weights, at ``output_stride``
    (default: the file's own)."""
    info, state = read_model_file(path)
    try:
        model = build_model(**info.build_args(output_stride))
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    load_weights(model, state, path)
    return model, info


def _with_weights(weights: str | Path, output_stride: int, given: dict) -> DeepLabV3:
    model, info = load_model_file(weights, output_stride=output_stride)
    clash = {k: (v, info.config.get(k)) for k, v in given.items() if info.config.get(k) != v}
    if clash:
        said = ", ".join(f"{k}={v!r} (the weights': {w!r})" for k, (v, w) in clash.items())
        raise InvalidValue(f"weights={weights}: the network is the weights' own; {said}")
    return model


def encoder_by_name(name: str, width, output_stride, tap, weights, bn) -> Encoder:
    if name not in ENCODERS:
        raise InvalidValue(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](width=width, output_stride=output_stride, tap=tap, weights=weights, bn=bn)


def head_by_name(name: str, num_classes: int, bn: str, separable: bool | None) -> Callable[..., nn.Module]:
    if name not in HEADS:
        raise InvalidValue(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    spec = HEADS[name]
    settings = spec.defaults()
    if separable is not None:  # None: the head's own default
        if "separable" not in inspect.signature(spec.cls.__init__).parameters:
            raise InvalidValue(f"head {name} has no separable option")
        settings["separable"] = bool(separable)
    return partial(spec.cls, num_classes=num_classes, bn=bn, **settings)


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
