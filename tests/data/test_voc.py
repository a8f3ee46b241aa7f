"""Bad input: each problem is an error naming the file; --check reports every problem at once."""

import shutil

import cv2
import numpy as np
import pytest

from deeplab_mobile.apps import prepare_voc
from deeplab_mobile.data.base import DatasetError
from deeplab_mobile.data.voc import PALETTE, VOCSegmentation, read_mask, write_mask


@pytest.fixture
def voc(synthetic_voc, tmp_path):
    root = tmp_path / "VOC2012"
    shutil.copytree(synthetic_voc, root)
    return root


def ids(root, split="train"):
    return (root / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()


def test_reads_palette_masks_and_images(voc):
    ds = VOCSegmentation(voc, "train")
    image, mask = ds[0]
    assert image.dtype == np.uint8 and image.shape[2] == 3 and image.shape[:2] == mask.shape
    assert set(np.unique(mask)) <= set(range(21)) | {255}


def test_palette_is_vocs():
    # Spot values of the VOC devkit colour map.
    assert PALETTE[1].tolist() == [128, 0, 0] and PALETTE[15].tolist() == [192, 128, 128]
    assert PALETTE[255].tolist() == [224, 224, 192]


def corrupt(voc, kind):
    name = ids(voc)[0]
    image, mask = voc / "JPEGImages" / f"{name}.jpg", voc / "SegmentationClass" / f"{name}.png"
    if kind == "missing image":
        image.unlink()
    elif kind == "unreadable image":
        image.write_bytes(b"\x00garbage")
    elif kind == "size mismatch":
        write_mask(mask, np.zeros((7, 9), np.uint8))
    elif kind == "bad label":
        m = read_mask(mask)
        m[0, 0] = 42
        write_mask(mask, m)
    elif kind == "rgb mask":
        m = read_mask(mask)
        cv2.imwrite(str(mask), cv2.cvtColor(PALETTE[m], cv2.COLOR_RGB2BGR))
    elif kind == "missing mask":
        mask.unlink()
    return name


@pytest.mark.parametrize(
    "kind,message",
    [
        ("missing image", r"\.jpg: image not found"),
        ("unreadable image", r"\.jpg: unreadable image"),
        ("size mismatch", r"\.png: mask size \(9, 7\) differs from image size"),
        ("bad label", r"\.png: labels \[42\] outside 0-20 and 255"),
        ("rgb mask", r"\.png: mask is RGB, not a palette-indexed PNG"),
        ("missing mask", r"\.png: mask not found"),
    ],
)
def test_bad_sample_names_file_and_problem(voc, kind, message):
    name = corrupt(voc, kind)
    with pytest.raises(DatasetError, match=name + message):
        VOCSegmentation(voc, "train")[0]


def test_empty_and_missing_lists(voc):
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"val\.txt: split list is empty"):
        VOCSegmentation(voc, "val")
    with pytest.raises(DatasetError, match=r"train_aug\.txt: split list not found"):
        VOCSegmentation(voc, "train_aug")


def test_check_reports_every_problem(voc, capsys):
    names = ids(voc)
    (voc / "JPEGImages" / f"{names[0]}.jpg").unlink()
    (voc / "SegmentationClass" / f"{names[0]}.png").unlink()  # two problems in one sample
    m = read_mask(voc / "SegmentationClass" / f"{names[3]}.png")
    m[1, 1] = 99
    write_mask(voc / "SegmentationClass" / f"{names[3]}.png", m)
    write_mask(voc / "SegmentationClass" / f"{names[5]}.png", np.zeros((3, 3), np.uint8))
    code = prepare_voc.main(["--check", "--voc-root", str(voc), "--splits", "train", "val"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"train: {len(names)} samples checked, 4 problems" in out
    assert f"{names[0]}.jpg: image not found" in out and f"{names[0]}.png: mask not found" in out
    assert f"{names[3]}.png: labels [99]" in out and f"{names[5]}.png: mask size (3, 3)" in out
    assert "val: 30 samples checked, 0 problems" in out


def test_check_passes_on_clean_data(voc, capsys):
    assert prepare_voc.main(["--check", "--voc-root", str(voc), "--splits", "train", "val"]) == 0


def test_shared_trainaug_list_with_paths(voc):
    names = ids(voc)[:3]
    lines = [f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png" for n in names]
    (voc / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(lines) + "\n")
    shutil.copytree(voc / "SegmentationClass", voc / "SegmentationClassAug")
    ds = VOCSegmentation(voc, "train_aug")
    assert ds.ids == names
    assert ds.paths(0)[1] == voc / "SegmentationClassAug" / f"{names[0]}.png"
    image, mask = ds[2]
    assert image.shape[:2] == mask.shape
