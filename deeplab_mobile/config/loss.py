"""The training loss a config's ``loss`` node describes (``conf/loss/``; docs/training.md, "Losses").

A node is ``{name, class_weights, ...}``: ``name`` is ``ce``, ``hard_pixels``, ``dice``, ``lovasz``, ``focal``
(``engine.losses``) or ``sum`` (``terms``: a list of such nodes, each with a ``weight``). ``class_weights`` is
``null``, a class-weights file (``scripts/check_data.py class_weights=<rule>``), or a rule's name
(``data.class_weights.RULES``), counted on the training split when the run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..data.class_weights import RULES, pixel_counts, read_class_weights, weights_record
from ..engine.losses import SMP_LOSSES, CrossEntropy, HardPixelCE, SMPLoss, WeightedSum
from ..engine.run import SettingError

NAMES = ("ce", "hard_pixels", *SMP_LOSSES, "sum")
# what a run folder's loss was before the loss group existed: a resume of such a run compares with this
DEFAULT = {"name": "ce", "class_weights": None}


def loss_settings(cfg: DictConfig) -> dict[str, Any]:
    """The run's ``loss`` node as a plain dict (``DEFAULT`` for a config without one)."""
    node = OmegaConf.select(cfg, "loss", default=None)
    return OmegaConf.to_container(node, resolve=True) if node is not None else dict(DEFAULT)


LABELS = {"ce": "CE", "hard_pixels": "hard pixels", "dice": "Dice", "lovasz": "Lovasz", "focal": "Focal"}


def loss_label(node: Mapping) -> str | None:
    """A loss node in a few words for tables and plots (``CE weighted median_frequency``, ``hard pixels 25%``,
    ``CE + Dice``); ``None`` for plain cross-entropy, the default."""
    name = node.get("name")
    if name == "sum":
        parts = []
        for term in node.get("terms") or []:
            weight = float(term.get("weight", 1.0))
            parts.append(("" if weight == 1 else f"{weight:g} ") + (loss_label(term) or "CE"))
        return " + ".join(parts)
    label = LABELS.get(name, str(name))
    if name == "hard_pixels":
        label += f" {100 * float(node.get('top_k', 0.25)):g}%"
        if node.get("ramp_steps"):
            label += f" ramp {node['ramp_steps']}"
    weights = node.get("class_weights")
    if weights is not None:
        label += f" weighted {weights if weights in RULES else Path(str(weights)).stem}"
    return None if label == "CE" else label


def weight_rules(node: Mapping) -> set[str]:
    """The rule names among a loss node's ``class_weights`` (a sum's terms included)."""
    rules = {node["class_weights"]} if node.get("class_weights") in RULES else set()
    for term in node.get("terms") or []:
        rules |= weight_rules(term)
    return rules


def counted_weights(train_set, num_classes: int, names: list[str], rules: set[str], data: str, progress: bool):
    """``{rule: weights record}`` for each rule, from one count of the training split's masks."""
    if not rules:
        return {}
    pixels, image_pixels = pixel_counts(train_set, num_classes, progress)
    return {rule: weights_record(pixels, image_pixels, rule, names, "train", data) for rule in sorted(rules)}


def build_loss(
    node: Mapping, num_classes: int, counted: Mapping[str, dict] | None = None, key: str = "loss"
) -> nn.Module:
    """The loss module of a ``loss`` node; ``counted``: ``counted_weights`` for the rules it names. A bad setting
    is a ``SettingError`` naming its key."""
    name = node.get("name")
    if name not in NAMES:
        raise SettingError(f"{key}.name={name!r} is not supported; choose one of {', '.join(NAMES)}")
    known = {"name", "class_weights", "weight"} | {
        "ce": set(),
        "hard_pixels": {"top_k", "ramp_steps"},
        "sum": {"terms"},
    }.get(name, {"options"})
    unknown = sorted(set(node) - known)
    if unknown:
        raise SettingError(f"{key}: {', '.join(unknown)} not a setting of loss {name!r} (it takes {sorted(known)})")
    if name == "sum":
        if node.get("class_weights") is not None:
            raise SettingError(f"{key}.class_weights: each term of a sum takes its own ({key}.terms[i].class_weights)")
        terms = node.get("terms") or []
        if not terms:
            raise SettingError(f"{key}.terms: a sum needs at least one term, e.g. [{{name: ce}}, {{name: dice}}]")
        return WeightedSum(
            [
                (float(term.get("weight", 1.0)), build_loss(term, num_classes, counted, f"{key}.terms[{i}]"))
                for i, term in enumerate(terms)
            ]
        )
    weights = resolve_weights(node.get("class_weights"), num_classes, counted or {}, f"{key}.class_weights")
    try:
        if name == "ce":
            return CrossEntropy(weights)
        if name == "hard_pixels":
            return HardPixelCE(float(node.get("top_k", 0.25)), int(node.get("ramp_steps", 0)), weights)
        options = dict(node.get("options") or {})
        if weights is not None:
            if name == "lovasz":
                raise SettingError(f"{key}.class_weights: SMP's Lovasz loss takes no class weights")
            options["class_weights"] = weights
        return SMPLoss(name, **options)
    except (ValueError, TypeError) as exc:
        raise SettingError(f"{key}: {exc}") from None


def resolve_weights(value, num_classes: int, counted: Mapping[str, dict], key: str) -> list[float] | None:
    if value is None:
        return None
    if value in RULES:
        if value not in counted:
            raise SettingError(f"{key}={value}: the rule's weights were not counted (counted_weights)")
        return counted[value]["weights"]
    if isinstance(value, str):
        return read_class_weights(Path(value), num_classes)
    raise SettingError(f"{key}={value!r}: give a class-weights file or a rule ({', '.join(RULES)})")
