"""conf/loss/: every file composes and builds its loss, the default is plain cross-entropy, and a bad setting is
refused naming its key."""

import pytest
import torch
from omegaconf import OmegaConf

from deeplab_mobile.config.loss import build_loss, loss_label, loss_settings, weight_rules
from deeplab_mobile.engine.losses import CrossEntropy, HardPixelCE, SMPLoss, WeightedSum, segmentation_loss
from deeplab_mobile.engine.run import SettingError
from tests.helpers import CONF, composed

COUNTED = {"median_frequency": {"weights": [1.0] * 21}, "inverse_sqrt": {"weights": [0.5] * 21}}


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "loss").glob("*.yaml")))
def test_every_loss_config_builds(name):
    node = loss_settings(composed("train", [f"loss={name}"]))
    loss = build_loss(node, 21, COUNTED)
    logits, masks = torch.randn(2, 21, 9, 9), torch.randint(0, 21, (2, 9, 9))
    masks[0, :3] = 255
    value = loss(logits, masks, 3)
    assert value.dim() == 0 and torch.isfinite(value)
    expected = {
        "ce": CrossEntropy,
        "weighted_ce": CrossEntropy,
        "weighted_ce_sqrt": CrossEntropy,
        "hard_pixels": HardPixelCE,
        "dice": SMPLoss,
        "lovasz": SMPLoss,
        "focal": SMPLoss,
        "ce_dice": WeightedSum,
    }
    assert isinstance(loss, expected[name])


def test_the_default_is_plain_cross_entropy():
    node = loss_settings(composed("train"))
    assert node == {"name": "ce", "class_weights": None} and loss_label(node) is None and not weight_rules(node)
    logits, masks = torch.randn(2, 21, 9, 9), torch.randint(0, 21, (2, 9, 9))
    assert torch.equal(build_loss(node, 21)(logits, masks, 0), segmentation_loss(logits, masks))


def test_labels_and_rules():
    node = loss_settings(composed("train", ["loss=ce_dice", "loss.terms.1.weight=0.5"]))
    assert loss_label(node) == "CE + 0.5 Dice"
    assert loss_label({"name": "hard_pixels", "top_k": 0.25, "class_weights": None}) == "hard pixels 25%"
    assert loss_label({"name": "ce", "class_weights": "median_frequency"}) == "CE weighted median_frequency"
    node = {"name": "sum", "terms": [{"name": "ce", "class_weights": "enet"}, {"name": "dice"}]}
    assert weight_rules(node) == {"enet"}


@pytest.mark.parametrize(
    "node,message",
    [
        ({"name": "tversky"}, r"loss.name='tversky' is not supported"),
        ({"name": "ce", "top_k": 0.2}, r"loss: top_k not a setting of loss 'ce'"),
        ({"name": "hard_pixels", "top_k": 2.0}, r"loss: top_k must be in \(0, 1\]"),
        ({"name": "sum", "terms": []}, r"loss.terms: a sum needs at least one term"),
        ({"name": "sum", "terms": [{"name": "dice", "options": {"bogus": 1}}]}, r"loss.terms\[0\]: .*bogus"),
        ({"name": "lovasz", "class_weights": "median_frequency"}, r"Lovasz loss takes no class weights"),
        ({"name": "ce", "class_weights": 3}, r"loss.class_weights=3: give a class-weights file or a rule"),
    ],
)
def test_bad_settings_name_their_key(node, message):
    with pytest.raises(SettingError, match=message):
        build_loss(OmegaConf.to_container(OmegaConf.create(node)), 21, COUNTED)


def test_a_missing_weights_file_names_itself(tmp_path):
    from deeplab_mobile.data.base import DatasetError

    with pytest.raises(DatasetError, match="none.json: class-weights file not found"):
        build_loss({"name": "ce", "class_weights": str(tmp_path / "none.json")}, 21)
