"""Class frequencies and weights: counted on hand-built masks, each rule against its formula worked by hand, the
file checked on reading; the generated data's rare classes; check_data's option."""

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from deeplab_mobile.data.base import DatasetError
from deeplab_mobile.data.class_weights import (
    class_weights,
    pixel_counts,
    read_class_weights,
    weights_record,
    write_class_weights,
)
from deeplab_mobile.data.synthetic import CLASS_NAMES, Rare, generate_sample, sample_rng


class Masks:
    """A dataset of masks only, as ``pixel_counts`` reads one (``paths``, ``read_mask``)."""

    def __init__(self, masks):
        self.masks = masks

    def __len__(self):
        return len(self.masks)

    def paths(self, i):
        return (f"img{i}.jpg", i)

    def read_mask(self, i):
        return self.masks[i]


MASKS = [
    np.array([[0, 0, 1, 1], [0, 0, 1, 255]], np.uint8),  # 8 pixels: 4 x class 0, 3 x class 1, 1 ignored
    np.array([[0, 0, 0, 0], [0, 0, 2, 2]], np.uint8),  # 8 pixels: 6 x class 0, 2 x class 2
]


def test_pixel_counts_of_hand_built_masks():
    pixels, image_pixels = pixel_counts(Masks(MASKS), 4)
    assert pixels.tolist() == [10, 3, 2, 0]
    # the labelled pixels of the images each class appears in: class 0 both (7 + 8), 1 the first, 2 the second
    assert image_pixels.tolist() == [15, 7, 8, 0]
    with pytest.raises(DatasetError, match="img0.jpg|0: labels outside"):
        pixel_counts(Masks([np.array([[7]], np.uint8)]), 4)


def test_each_rule_against_its_formula():
    pixels, image_pixels = np.array([10, 3, 2, 0]), np.array([15, 7, 8, 0])
    # median frequency: p = 10/15, 3/7, 2/8; median 3/7
    p = np.array([10 / 15, 3 / 7, 2 / 8])
    np.testing.assert_allclose(class_weights(pixels, image_pixels, "median_frequency"), [*(3 / 7) / p, 0])
    f = np.array([10, 3, 2]) / 15
    raw = 1 / np.sqrt(f)
    np.testing.assert_allclose(class_weights(pixels, image_pixels, "inverse_sqrt"), [*(raw / (f * raw).sum()), 0])
    np.testing.assert_allclose(class_weights(pixels, image_pixels, "inverse"), [*((1 / f) / 3), 0])
    np.testing.assert_allclose(class_weights(pixels, image_pixels, "enet"), [*(1 / np.log(1.02 + f)), 0])
    for rule in ("inverse_sqrt", "inverse"):  # a labelled pixel weighs 1 on average
        assert (f * class_weights(pixels, image_pixels, rule)[:3]).sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="choose one of"):
        class_weights(pixels, image_pixels, "log")


def test_the_weights_file_round_trips_and_is_checked(tmp_path):
    record = weights_record(np.array([10, 3, 2, 0]), np.array([15, 7, 8, 0]), "inverse", list("abcd"), "train", "x")
    assert record["absent"] == ["d"] and record["frequency"] == pytest.approx([10 / 15, 3 / 15, 2 / 15, 0])
    path = write_class_weights(tmp_path / "w.json", record)
    assert read_class_weights(path, 4) == pytest.approx(record["weights"])
    with pytest.raises(DatasetError, match="4 class weights for 21 classes"):
        read_class_weights(path, 21)
    with pytest.raises(DatasetError, match="not found"):
        read_class_weights(tmp_path / "none.json", 4)
    (tmp_path / "other.json").write_text(json.dumps({"weights": [1, 2]}))
    with pytest.raises(DatasetError, match="not a class-weights file"):
        read_class_weights(tmp_path / "other.json", 2)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="unreadable"):
        read_class_weights(tmp_path / "bad.json", 2)


def test_rare_classes_are_rarer_and_the_default_data_unchanged():
    rare = Rare([3, 8], keep=0.0)
    counts = np.zeros(len(CLASS_NAMES), np.int64)
    for i in range(20):
        image, mask = generate_sample(sample_rng(0, "train", i))
        again, again_mask = generate_sample(sample_rng(0, "train", i), rare=None)
        assert np.array_equal(image, again) and np.array_equal(mask, again_mask)
        _, rare_mask = generate_sample(sample_rng(0, "train", i), rare=rare)
        counts += np.bincount(rare_mask.ravel(), minlength=256)[: len(CLASS_NAMES)]
    assert counts[3] == counts[8] == 0 and counts[1:].sum() > 0  # keep=0: never drawn
    assert Rare([3], 0.5).splits == ["train"]  # val and test keep the usual images by default
    with pytest.raises(ValueError, match="rare splits"):
        Rare([3], 0.5, splits=["holdout"])
    with pytest.raises(ValueError, match="object classes"):
        Rare([0], 0.1)


def test_check_data_writes_the_weights_the_loss_reads(synthetic_voc, tmp_path, capsys):
    from deeplab_mobile.apps.check_data import main

    cfg = OmegaConf.create(
        {
            "data": {
                "name": "synthetic",
                "root": str(synthetic_voc),
                "train_split": "train",
                "val_split": "val",
                "classes": "deeplab_mobile.data.synthetic.CLASS_NAMES",
            },
            "splits": None,
            "num_classes": None,
            "progress": False,
            "class_weights": "median_frequency",
            "class_weights_split": None,
            "class_weights_file": None,
        }
    )
    main(cfg, tmp_path)
    record = json.loads((tmp_path / "class_weights.json").read_text())
    from deeplab_mobile.data import VOCSegmentation

    dataset = VOCSegmentation(synthetic_voc, "train")
    pixels, image_pixels = pixel_counts(dataset, 21)
    assert record["pixels"] == pixels.tolist() and record["classes"] == list(CLASS_NAMES)
    np.testing.assert_allclose(record["weights"], class_weights(pixels, image_pixels, "median_frequency"))
    assert "loss=weighted_ce loss.class_weights=" in capsys.readouterr().out
    assert read_class_weights(tmp_path / "class_weights.json", 21) == pytest.approx(record["weights"])
