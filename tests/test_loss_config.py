"""The loss options: every one composes and builds its loss by ``_target_``, the default is plain cross-entropy, a
bad setting is refused at composition (an unknown key) or naming the loss, and a run folder's loss of the earlier
``name:`` form reads as the same loss."""

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from deeplab_mobile.config import schema
from deeplab_mobile.config.loss import (
    build_loss,
    loss_label,
    loss_settings,
    upgrade_identity,
    upgrade_loss,
    weight_rules,
)
from deeplab_mobile.engine.losses import (
    CrossEntropy,
    DiceLoss,
    FocalLoss,
    HardPixelCE,
    LovaszLoss,
    WeightedSum,
    segmentation_loss,
)
from deeplab_mobile.engine.run import SettingError
from tests.helpers import composed

COUNTED = {"median_frequency": {"weights": [1.0] * 21}, "inverse_sqrt": {"weights": [0.5] * 21}}
EXPECTED = {
    "ce": CrossEntropy,
    "weighted_ce": CrossEntropy,
    "weighted_ce_sqrt": CrossEntropy,
    "hard_pixels": HardPixelCE,
    "dice": DiceLoss,
    "lovasz": LovaszLoss,
    "focal": FocalLoss,
    "ce_dice": WeightedSum,
}


def test_the_options_are_the_schemas():
    assert schema.options("loss") == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_loss_option_builds(name):
    node = loss_settings(composed("train", [f"loss={name}"]))
    assert "_target_" in node
    loss = build_loss(node, 21, COUNTED)
    logits, masks = torch.randn(2, 21, 9, 9), torch.randint(0, 21, (2, 9, 9))
    masks[0, :3] = 255
    value = loss(logits, masks, 3)
    assert value.dim() == 0 and torch.isfinite(value)
    assert isinstance(loss, EXPECTED[name])


def test_the_default_is_plain_cross_entropy():
    node = loss_settings(composed("train"))
    assert node == {"_target_": "deeplab_mobile.engine.losses.CrossEntropy", "class_weights": None}
    assert loss_label(node) is None and not weight_rules(node)
    logits, masks = torch.randn(2, 21, 9, 9), torch.randint(0, 21, (2, 9, 9))
    assert torch.equal(build_loss(node, 21)(logits, masks, 0), segmentation_loss(logits, masks))


def test_class_weights_reach_the_class():
    node = loss_settings(composed("train", ["loss=weighted_ce_sqrt"]))
    loss = build_loss(node, 21, COUNTED)
    assert torch.equal(loss.class_weights, torch.full((21,), 0.5))
    node = loss_settings(composed("train", ["loss=ce_dice", "loss.terms.0.class_weights=median_frequency"]))
    loss = build_loss(node, 21, COUNTED)
    assert torch.equal(loss.terms[0].class_weights, torch.ones(21))


def test_labels_and_rules():
    node = loss_settings(composed("train", ["loss=ce_dice", "loss.weights.1=0.5"]))
    assert loss_label(node) == "CE + 0.5 Dice"
    assert build_loss(node, 21).weights == [1.0, 0.5]
    assert loss_label(loss_settings(composed("train", ["loss=hard_pixels"]))) == "hard pixels 25%"
    assert loss_label(loss_settings(composed("train", ["loss=weighted_ce"]))) == "CE weighted median_frequency"
    node = loss_settings(composed("train", ["loss=ce_dice", "loss.terms.0.class_weights=enet"]))
    assert weight_rules(node) == {"enet"}


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss=tversky"],  # no such option
        ["loss=ce", "loss.top_k=0.2"],  # not a key of cross-entropy
        ["loss=lovasz", "loss.class_weights=median_frequency"],  # Lovasz takes no class weights
        ["loss=hard_pixels", "loss.ramp_steps=many"],  # a wrong type
    ],
)
def test_a_bad_key_or_type_fails_at_composition(overrides):
    with pytest.raises(ConfigCompositionException):
        composed("train", overrides)


@pytest.mark.parametrize(
    "node,message",
    [
        ({"_target_": "deeplab_mobile.engine.losses.HardPixelCE", "top_k": 2.0}, r"top_k must be in \(0, 1\]"),
        ({"_target_": "deeplab_mobile.engine.losses.WeightedSum", "terms": []}, r"at least one term"),
        ({"_target_": "deeplab_mobile.engine.losses.DiceLoss", "bogus": 1}, r"DiceLoss.*bogus"),
        ({"_target_": "deeplab_mobile.engine.losses.CrossEntropy", "class_weights": 3}, r"class_weights=3: give"),
    ],
)
def test_bad_settings_name_the_loss(node, message):
    with pytest.raises(SettingError, match=message):
        build_loss(OmegaConf.to_container(OmegaConf.create(node)), 21, COUNTED)


def test_a_missing_weights_file_names_itself(tmp_path):
    from deeplab_mobile.data.base import DatasetError

    node = {"_target_": "deeplab_mobile.engine.losses.CrossEntropy", "class_weights": str(tmp_path / "none.json")}
    with pytest.raises(DatasetError, match="none.json: class-weights file not found"):
        build_loss(node, 21)


# The run folders' loss nodes before _target_ (each as conf/loss/<name>.yaml held it), and today's option for each
LEGACY = {
    "ce": {"name": "ce", "class_weights": None},
    "weighted_ce": {"name": "ce", "class_weights": "median_frequency"},
    "hard_pixels": {"name": "hard_pixels", "top_k": 0.25, "ramp_steps": 0, "class_weights": None},
    "dice": {"name": "dice", "class_weights": None, "options": {"smooth": 0.0, "log_loss": False}},
    "lovasz": {"name": "lovasz", "class_weights": None, "options": {"per_image": False}},
    "focal": {"name": "focal", "class_weights": None, "options": {"gamma": 2.0, "alpha": None}},
    "ce_dice": {
        "name": "sum",
        "class_weights": None,
        "terms": [
            {"name": "ce", "weight": 1.0, "class_weights": None},
            {"name": "dice", "weight": 1.0, "class_weights": None, "options": {"smooth": 0.0, "log_loss": False}},
        ],
    },
}


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_a_legacy_loss_node_reads_as_todays_option(name):
    today = loss_settings(composed("train", [f"loss={name}"]))
    assert upgrade_loss(LEGACY[name]) == today
    assert upgrade_loss(today) == today


def test_a_legacy_identity_reads_as_todays():
    from deeplab_mobile.engine.run import flatten

    today = loss_settings(composed("train", ["loss=dice"]))
    saved = {"os": 16, **flatten({"loss": LEGACY["dice"]})}
    assert upgrade_identity(saved) == {"os": 16, **flatten({"loss": today})}
    # before the loss group: no loss keys at all, trained with cross-entropy
    assert upgrade_identity({"os": 16}) == {"os": 16, **flatten({"loss": loss_settings(composed("train"))})}
