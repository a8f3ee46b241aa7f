"""An evaluation as a config describes it: the protocol (``eval`` node) and its checks."""

from __future__ import annotations

from omegaconf import DictConfig

from ..engine.evaluator import Protocol
from ..engine.run import SettingError
from ..models import DeepLabV3


def protocol(eval_cfg: DictConfig) -> Protocol:
    """The evaluation protocol of an ``eval`` config node."""
    scales = eval_cfg.get("mf_scales")
    return Protocol(
        os=eval_cfg.get("os"), mf=bool(eval_cfg.get("mf")), mf_os=eval_cfg.get("mf_os"),
        mf_scales=tuple(scales) if scales is not None else (), flip=bool(eval_cfg.get("flip", True)),
    )  # fmt: skip


def check_protocol(proto: Protocol, model: DeepLabV3, eval_cfg: DictConfig | None = None) -> Protocol:
    """The protocol, checked against the model, and the evaluation loader's settings (``eval.batch_size``,
    ``eval.workers``, ``eval.pad_to``): a one-line ``SettingError`` before any work."""
    try:
        proto.check(model)
    except ValueError as exc:
        raise SettingError(str(exc)) from None
    if eval_cfg is not None:
        for key, low, none_ok in (("batch_size", 1, False), ("workers", 0, False), ("pad_to", 1, True)):
            value = eval_cfg.get(key)
            if value is None and none_ok:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SettingError(
                    f"eval.{key} must be an integer >= {low}{' or null' if none_ok else ''}, got {value!r}"
                )
    return proto
