"""The generated dataset: VOC format, determinism, colours shared between classes, and a class that colour alone
cannot decide."""

import filecmp

import numpy as np
from PIL import Image

from deeplab_mobile.data.synthetic import CLASS_NAMES, COLOURS, write_synthetic_voc
from deeplab_mobile.data.voc import VOCSegmentation, check_dataset
from deeplab_mobile.metrics import confusion_matrix, scores


def test_layout_and_format(synthetic_voc):
    lists = synthetic_voc / "ImageSets" / "Segmentation"
    assert len(lists.joinpath("train.txt").read_text().split()) == 60
    assert len(lists.joinpath("val.txt").read_text().split()) == 30
    assert len(lists.joinpath("trainval.txt").read_text().split()) == 90
    for split in ("train", "val"):
        assert check_dataset(synthetic_voc, split)[1] == []
    name = lists.joinpath("train.txt").read_text().split()[0]
    with Image.open(synthetic_voc / "SegmentationClass" / f"{name}.png") as im:
        assert im.mode == "P"
    with Image.open(synthetic_voc / "JPEGImages" / f"{name}.jpg") as im:
        assert im.format == "JPEG"


def test_objects_and_boundaries(synthetic_voc):
    ds = VOCSegmentation(synthetic_voc, "train")
    n_classes, has_boundary, seen = [], [], set()
    for i in range(len(ds)):
        _, mask = ds[i]
        labels = set(np.unique(mask).tolist())
        seen |= labels
        n_classes.append(len(labels - {0, 255}))
        has_boundary.append(255 in labels)
    assert all(has_boundary)
    assert np.mean([n >= 2 for n in n_classes]) > 0.4  # several objects per image
    assert seen == set(range(21)) | {255}


def test_deterministic_per_seed(tmp_path):
    a = write_synthetic_voc(tmp_path / "a", 4, 2, seed=3, progress=False)
    b = write_synthetic_voc(tmp_path / "b", 4, 2, seed=3, progress=False)
    c = write_synthetic_voc(tmp_path / "c", 4, 2, seed=4, progress=False)
    for sub in ("JPEGImages/synth_val_000001.jpg", "SegmentationClass/synth_val_000001.png"):
        assert filecmp.cmp(a / sub, b / sub, shallow=False)
        assert not filecmp.cmp(a / sub, c / sub, shallow=False)


def test_val_split_does_not_depend_on_the_train_size(tmp_path):
    small = write_synthetic_voc(tmp_path / "small", 2, 3, seed=0, progress=False)
    large = write_synthetic_voc(tmp_path / "large", 7, 3, seed=0, progress=False, n_test=2)
    val = (small / "ImageSets/Segmentation/val.txt").read_text()
    assert val == (large / "ImageSets/Segmentation/val.txt").read_text()
    for name in val.split():
        for sub in (f"JPEGImages/{name}.jpg", f"SegmentationClass/{name}.png"):
            assert filecmp.cmp(small / sub, large / sub, shallow=False)
    assert not (small / "ImageSets/Segmentation/test.txt").exists()
    for name in (small / "ImageSets/Segmentation/train.txt").read_text().split():  # a prefix of the larger set
        assert filecmp.cmp(small / f"JPEGImages/{name}.jpg", large / f"JPEGImages/{name}.jpg", shallow=False)


def test_rerun_with_same_settings_writes_nothing(tmp_path):
    voc = write_synthetic_voc(tmp_path, 3, 1, seed=0, progress=False)
    before = {p: p.stat().st_mtime_ns for p in voc.rglob("*.jpg")}
    write_synthetic_voc(tmp_path, 3, 1, seed=0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in voc.rglob("*.jpg")} == before


def test_growing_the_dataset_keeps_what_is_there(tmp_path):
    voc = write_synthetic_voc(tmp_path, 3, 1, seed=0, progress=False)
    before = {p: p.stat().st_mtime_ns for p in voc.rglob("*.jpg")}
    write_synthetic_voc(tmp_path, 5, 1, seed=0, progress=False)
    after = {p: p.stat().st_mtime_ns for p in voc.rglob("*.jpg")}
    assert {p: after[p] for p in before} == before
    assert len(after) == 6
    assert len((voc / "ImageSets/Segmentation/train.txt").read_text().split()) == 5
    # Another seed draws every image anew and leaves none of the old ones behind.
    write_synthetic_voc(tmp_path, 2, 1, seed=1, progress=False)
    assert sorted(p.name for p in voc.rglob("*.jpg")) == [
        "synth_train_000000.jpg",
        "synth_train_000001.jpg",
        "synth_val_000000.jpg",
    ]
    assert all(p.stat().st_mtime_ns not in before.values() for p in voc.rglob("*.jpg"))


def pixels(ds):
    xs, ys = [], []
    for i in range(len(ds)):
        image, mask = ds[i]
        keep = mask != 255
        xs.append(image[keep].astype(np.float32))
        ys.append(mask[keep])
    return np.concatenate(xs), np.concatenate(ys)


def test_colour_alone_does_not_decide_the_class(synthetic_voc):
    x_train, y_train = pixels(VOCSegmentation(synthetic_voc, "train"))
    x_val, y_val = pixels(VOCSegmentation(synthetic_voc, "val"))
    means = np.stack([x_train[y_train == c].mean(0) for c in range(21)])
    pred = np.argmin(((x_val[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    miou = scores(confusion_matrix(pred, y_val, 21))["miou"]
    assert miou < 0.35


def test_classes_share_colours_in_pairs_that_differ_in_shape_and_texture(tmp_path):
    """Read from the written images: snap every object pixel to the nearest palette colour; a class's most
    frequent colour is its body colour. Each palette colour must be the body colour of exactly two classes, and
    those two must differ in shape and in texture (so neither colour nor one cue alone names the class)."""
    voc = write_synthetic_voc(tmp_path, 150, 0, seed=5, progress=False)
    ds = VOCSegmentation(voc, "train")
    counts = np.zeros((21, len(COLOURS)), np.int64)
    for i in range(len(ds)):
        image, mask = ds[i]
        nearest = np.argmin(((image[..., None, :].astype(np.float32) - COLOURS) ** 2).sum(-1), axis=-1)
        keep = mask != 255
        np.add.at(counts, (mask[keep], nearest[keep]), 1)
    body = {c: counts[c].argmax() for c in range(1, 21)}
    for colour in range(len(COLOURS)):
        owners = [CLASS_NAMES[c].split("_") for c in body if body[c] == colour]
        assert len(owners) == 2, (colour, owners)
        (shape_a, texture_a), (shape_b, texture_b) = owners
        assert shape_a != shape_b and texture_a != texture_b


def test_the_test_split_is_held_out_and_grows_without_touching_the_others(tmp_path):
    voc = write_synthetic_voc(tmp_path, 4, 3, seed=0, progress=False, n_test=2)
    lists = {s: (voc / f"ImageSets/Segmentation/{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert len(lists["test"]) == 2 and not set(lists["test"]) & (set(lists["train"]) | set(lists["val"]))
    trainval = (voc / "ImageSets/Segmentation/trainval.txt").read_text().split()
    assert trainval == lists["train"] + lists["val"]  # VOC's trainval: the test split stays out of it
    images = [np.asarray(Image.open(voc / f"JPEGImages/{n}.jpg")) for n in lists["test"] + lists["val"][:1]]
    assert not any(np.array_equal(images[i], images[j]) for i in range(3) for j in range(i))  # its own images
    val_before = (voc / f"JPEGImages/{lists['val'][0]}.jpg").read_bytes()
    write_synthetic_voc(tmp_path, 4, 3, seed=0, progress=False, n_test=3)
    assert len((voc / "ImageSets/Segmentation/test.txt").read_text().split()) == 3
    assert (voc / f"JPEGImages/{lists['val'][0]}.jpg").read_bytes() == val_before
    assert len(VOCSegmentation(voc, "test")) == 3
