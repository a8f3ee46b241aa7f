"""The training loss a config's ``loss`` node describes (docs/training.md, "Losses").

A loss node is instantiated by its ``_target_``, like every other group: the options are ``config.schema``'s
(``loss=ce``, ``weighted_ce``, ``hard_pixels``, ``dice``, ``lovasz``, ``focal``, ``ce_dice``), each a class of
``engine.losses`` with its own arguments, so an unknown key fails when the config is composed. ``class_weights``
is ``null``, a class-weights file (``scripts/check_data.py class_weights=<rule>``), or a rule's name
(``data.class_weights.RULES``), counted on the training split when the run starts and given to the class as the
weights themselves. A ``WeightedSum`` holds its ``terms`` (loss nodes) and their ``weights``.

Run folders written before the losses had ``_target_`` named them (``name: ce``, ``options: {...}``,
``terms: [{name, weight}]``); ``upgrade_loss`` reads those as today's nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..data.class_weights import RULES, pixel_counts, read_class_weights, weights_record
from ..engine.run import SettingError, flatten
from ..errors import ProjectError

LOSSES = "deeplab_mobile.engine.losses"
LABELS = {
    "CrossEntropy": "CE",
    "HardPixelCE": "hard pixels",
    "DiceLoss": "Dice",
    "LovaszLoss": "Lovasz",
    "FocalLoss": "Focal",
}

# the loss names of run folders written before ``_target_``, and the class each named
LEGACY_NAMES = {
    "ce": "CrossEntropy",
    "hard_pixels": "HardPixelCE",
    "dice": "DiceLoss",
    "lovasz": "LovaszLoss",
    "focal": "FocalLoss",
    "sum": "WeightedSum",
}


def upgrade_loss(node: Mapping | None) -> dict[str, Any]:
    """A loss node as a plain dict in today's form: a ``_target_`` node as it is; a run folder's ``name`` node (or
    none at all, from before losses could be chosen: cross-entropy) as the node that builds the same loss."""
    if node is None:
        return {"_target_": f"{LOSSES}.CrossEntropy", "class_weights": None}
    node = dict(node)
    if "name" not in node:
        return node
    name = node.pop("name")
    if name not in LEGACY_NAMES:
        raise SettingError(f"loss.name={name!r}: not a loss this version knows ({', '.join(LEGACY_NAMES)})")
    upgraded = {"_target_": f"{LOSSES}.{LEGACY_NAMES[name]}"}
    options = node.pop("options", None) or {}
    node.pop("weight", None)  # a sum's term: its weight goes to the sum's weights
    if name == "sum":
        terms = node.get("terms") or []
        upgraded["terms"] = [upgrade_loss(term) for term in terms]
        upgraded["weights"] = [float(term.get("weight", 1.0)) for term in terms]
        return upgraded
    if name == "lovasz" and node.get("class_weights") is None:
        node.pop("class_weights", None)  # it never took any; today's node has no such key
    return {**upgraded, **node, **options}


def upgrade_identity(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's saved identity (``{"loss.name": "ce", ...}``) with its ``loss.*`` keys in today's form."""
    loss: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("loss."):
            *path, last = key.removeprefix("loss.").split(".")
            place = loss
            for part in path:
                place = place.setdefault(part, {})
            place[last] = value
    rest = {k: v for k, v in flat.items() if not k.startswith("loss.")}
    return {**rest, **flatten({"loss": upgrade_loss(loss or None)})}


def loss_settings(cfg: DictConfig) -> dict[str, Any]:
    """The run's ``loss`` node as a plain dict in today's form (``upgrade_loss``)."""
    node = cfg.get("loss")
    return upgrade_loss(OmegaConf.to_container(node, resolve=True) if node is not None else None)


def class_name(node: Mapping) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def loss_label(node: Mapping) -> str | None:
    """A loss node in a few words for tables and plots (``CE weighted median_frequency``, ``hard pixels 25%``,
    ``CE + Dice``); ``None`` for plain cross-entropy, the default."""
    node = upgrade_loss(node)
    name = class_name(node)
    if name == "WeightedSum":
        terms = node.get("terms") or []
        weights = node.get("weights") or [1.0] * len(terms)
        parts = [
            ("" if float(w) == 1 else f"{float(w):g} ") + (loss_label(t) or "CE")
            for w, t in zip(weights, terms, strict=False)
        ]
        return " + ".join(parts)
    label = LABELS.get(name, name)
    if name == "HardPixelCE":
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


def with_weights(node: Mapping, num_classes: int, counted: Mapping[str, dict], key: str) -> dict:
    """The node with each ``class_weights`` (its own and its terms') replaced by the weights themselves."""
    node = dict(node)
    if "class_weights" in node:
        node["class_weights"] = resolve_weights(node["class_weights"], num_classes, counted, f"{key}.class_weights")
    if isinstance(node.get("terms"), list):
        node["terms"] = [
            with_weights(t, num_classes, counted, f"{key}.terms[{i}]") for i, t in enumerate(node["terms"])
        ]
    return node


def build_loss(node: Mapping, num_classes: int, counted: Mapping[str, dict] | None = None) -> nn.Module:
    """The loss module of a ``loss`` node (``upgrade_loss`` form); ``counted``: ``counted_weights`` for the rules it
    names. A setting the class refuses is a ``SettingError`` naming the loss key."""
    node = with_weights(upgrade_loss(node), num_classes, counted or {}, "loss")
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ProjectError | ValueError | TypeError):
            raise SettingError(f"loss ({class_name(node)}): {cause}") from None
        raise SettingError(f"loss: {exc}") from None


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
