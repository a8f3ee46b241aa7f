"""Your own data (folder layout) and Cityscapes: decoding, label mapping, and the check that names bad files."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from deeplab_mobile.data import DatasetError
from deeplab_mobile.data.cityscapes import CLASSES, CityscapesSegmentation
from deeplab_mobile.data.datasets import check_split, open_split
from deeplab_mobile.data.folder import FolderSegmentation, read_classes
from tests.helpers import (
    FOLDER_CLASSES,
    FOLDER_COLORS,
    ROOT,
    blocks_mask,
    write_cityscapes,
    write_folder_dataset,
    write_png,
)

# cityscapesScripts' labels.py, written out: (name, id, trainId) for the 19 training classes
CITYSCAPES_TRAIN = [
    ("road", 7, 0),
    ("sidewalk", 8, 1),
    ("building", 11, 2),
    ("wall", 12, 3),
    ("fence", 13, 4),
    ("pole", 17, 5),
    ("traffic light", 19, 6),
    ("traffic sign", 20, 7),
    ("vegetation", 21, 8),
    ("terrain", 22, 9),
    ("sky", 23, 10),
    ("person", 24, 11),
    ("rider", 25, 12),
    ("car", 26, 13),
    ("truck", 27, 14),
    ("bus", 28, 15),
    ("train", 31, 16),
    ("motorcycle", 32, 17),
    ("bicycle", 33, 18),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder_dataset(tmp_path_factory.mktemp("folder") / "mydata")


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    return write_cityscapes(tmp_path_factory.mktemp("cs") / "cityscapes")


def test_classes_file(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("# comment\nbackground\ncat  # pet\n\ndog\nignore: 0\n")
    with pytest.raises(DatasetError, match="ignore label 0 is one of the 3 class indices"):
        read_classes(path)
    path.write_text("background 0 0 0\ncat 10 20 30\nignore: 200\n")
    classes = read_classes(path)
    assert classes.names == ("background", "cat") and classes.colors == ((0, 0, 0), (10, 20, 30))
    assert classes.ignore_index == 200
    path.write_text("background 0 0 0\ncat 10 20\ndog 1 2 300\nbackground\n")
    with pytest.raises(DatasetError) as err:
        read_classes(path)
    message = str(err.value)
    assert "line 2: 'cat 10 20'" in message and "line 3: 'dog 1 2 300'" in message
    assert "duplicate class names ['background']" in message and "colours given for some classes only" in message


@pytest.mark.parametrize("mode", ["P", "L", "RGB"])
def test_folder_masks_decode_to_the_same_labels(tmp_path, mode):
    root = write_folder_dataset(tmp_path / "d", n_train=2, n_val=1, mask_mode="P", seed=3)
    expected = [np.array(__import__("PIL.Image").Image.open(p)) for p in sorted((root / "masks/train").iterdir())]
    if mode != "P":
        for path, mask in zip(sorted((root / "masks/train").iterdir()), expected, strict=True):
            if mode == "L":
                write_png(path, mask, "L")
            else:
                colors = np.array([*FOLDER_COLORS] + [(0, 0, 0)] * 250 + [(255, 255, 255)], np.uint8)
                write_png(path, colors[mask], "RGB")
    if mode == "RGB":  # white marks the ignored pixels
        (root / "classes.txt").write_text(
            "\n".join(f"{n} {r} {g} {b}" for n, (r, g, b) in zip(FOLDER_CLASSES, FOLDER_COLORS, strict=True))
            + "\nunlabelled 255 255 255\n"
        )
    ds = FolderSegmentation(root, "train")
    for i, mask in enumerate(expected):
        image, got = ds[i]
        want = mask if mode != "RGB" else np.where(mask == 255, 5, mask)
        assert image.shape[:2] == got.shape and np.array_equal(got, want)


def test_folder_ignore_label_and_list_files(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    mask = blocks_mask(32, 40, rng, num_classes=3)
    mask[0] = 9  # the file's ignore label
    write_png(root / "masks" / "a.png", mask, "L")
    import cv2

    cv2.imwrite(str(root / "images" / "a.jpg"), np.zeros((32, 40, 3), np.uint8))
    (root / "classes.txt").write_text("x\ny\nz\nignore: 9\n")
    (root / "train.txt").write_text("a\n")
    (root / "val.txt").write_text("images/a.jpg masks/a.png\n")
    for split in ("train", "val"):
        _, got = FolderSegmentation(root, split)[0]
        assert (got[0] == 255).all() and np.array_equal(got[1:], mask[1:])
    with pytest.raises(DatasetError, match="3 classes, but num_classes is 21"):
        FolderSegmentation(root, "train", num_classes=21)
    with pytest.raises(DatasetError, match="no split 'test'"):
        FolderSegmentation(root, "test")


def test_folder_check_names_every_bad_file(tmp_path):
    root = write_folder_dataset(tmp_path / "d", n_train=5, n_val=2)
    masks = sorted((root / "masks/train").iterdir())
    bad_label = np.full((72, 80), 7, np.uint8)  # class 7 of 5
    write_png(masks[0], bad_label, "P")
    write_png(masks[1], np.zeros((70, 80), np.uint8), "P")  # wrong size
    masks[2].unlink()
    (root / "images/train/train003.png").write_bytes(b"not a png")
    n, problems = check_split({"format": "folder", "root": str(root)}, "train")
    assert n == 5 and len(problems) == 4
    text = "\n".join(problems)
    assert f"{masks[0]}: labels [7] outside 0-4" in text
    assert f"{masks[1]}: mask size (80, 70) differs from image size (80, 72)" in text
    assert f"{masks[2]}: mask not found" in text
    assert "train003.png: unreadable image" in text
    assert check_split({"format": "folder", "root": str(root)}, "val") == (2, [])


def test_cityscapes_label_ids_to_train_ids(cityscapes):
    ds = CityscapesSegmentation(cityscapes, "train")
    assert len(ds) == 4 and len(CityscapesSegmentation(cityscapes, "val")) == 2
    assert list(CLASSES) == [name for name, _, _ in CITYSCAPES_TRAIN]
    table = {label_id: train_id for _, label_id, train_id in CITYSCAPES_TRAIN}
    for i in range(len(ds)):
        image_path, mask_path = ds.paths(i)
        assert mask_path.name == image_path.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        ids = np.array(__import__("PIL.Image").Image.open(mask_path))
        _, got = ds[i]
        want = np.vectorize(lambda v: table.get(int(v), 255))(ids)
        assert np.array_equal(got, want)
    assert set(np.unique(got)) <= set(range(19)) | {255}


def test_cityscapes_check_and_errors(cityscapes, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(cityscapes, root)
    bad = next((root / "gtFine/val/frankfurt").iterdir())
    write_png(bad, np.full((64, 128), 40, np.uint8), "L")
    n, problems = check_split({"format": "cityscapes", "root": str(root)}, "val")
    assert n == 2 and problems == [f"{bad}: values [40] are no Cityscapes label id (0-33, 255)"]
    with pytest.raises(DatasetError, match="19 training classes, but num_classes is 21"):
        open_split({"format": "cityscapes", "root": str(root)}, "train", num_classes=21)
    with pytest.raises(DatasetError, match="leftImg8bit/test: not found"):
        open_split({"format": "cityscapes", "root": str(root)}, "test")


@pytest.mark.slow
def test_check_data_app(folder, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(folder, root)
    bad = root / "masks/val/val001.png"
    write_png(bad, np.full((72, 80), 6, np.uint8), "L")
    out = tmp_path / "check"
    cmd = [
        sys.executable,
        str(ROOT / "scripts/check_data.py"),
        "data=folder",
        f"data.root={root}",
        f"hydra.run.dir={out}",
        "progress=false",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert "train: 12 samples checked, 0 problems" in proc.stdout and f"{bad}: labels [6]" in proc.stdout
    report = json.loads((out / "check.json").read_text())
    assert report["splits"]["val"]["samples"] == 6 and len(report["splits"]["val"]["problems"]) == 1
    bad.unlink()
    shutil.copy(folder / "masks/val/val001.png", bad)
    assert subprocess.run(cmd, capture_output=True, cwd=ROOT).returncode == 0


def test_a_folder_dataset_needs_its_root():
    """The core names its argument; the config layer names the key that sets it."""
    from omegaconf import OmegaConf

    from deeplab_mobile.config.data import open_data_split
    from deeplab_mobile.errors import ArgumentError

    with pytest.raises(ArgumentError, match="^root is not set: a folder dataset needs the folder it is in$"):
        open_split({"name": "folder", "format": "folder", "root": None}, "train")
    data = OmegaConf.create({"name": "folder", "format": "folder", "root": None})
    with pytest.raises(DatasetError, match="^data.root is not set: a folder dataset needs the folder it is in: data="):
        open_data_split(data, "train")
    with pytest.raises(DatasetError, match="data.format='coco' is not supported"):
        open_data_split(OmegaConf.create({"format": "coco", "root": "x"}), "train")
