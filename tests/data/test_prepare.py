"""trainaug preparation on a tiny VOC + SBD tree in the raw formats (JPEG, palette PNG, MATLAB .mat)."""

import json

import cv2
import numpy as np
import pytest
import scipy.io

from deeplab_mobile.apps import prepare_voc
from deeplab_mobile.data.base import DatasetError
from deeplab_mobile.data.voc import read_mask, write_mask

VOC_TRAIN, VOC_VAL = ["a", "b", "c"], ["d", "e"]
SBD_TRAIN, SBD_VAL = ["b", "f", "g", "d"], ["h", "e", "i"]
TRAINAUG = ["a", "b", "c", "f", "g", "h", "i"]  # (SBD train ∪ SBD val ∪ VOC train) − VOC val, by hand
H, W = 24, 32


def label_map(seed, with_boundary):
    rng = np.random.default_rng(seed)
    mask = np.zeros((H, W), np.uint8)
    mask[4:16, 6:20] = rng.integers(1, 21)
    if with_boundary:  # VOC marks object outlines with 255; SBD does not
        mask[4, 6:20] = 255
    return mask


@pytest.fixture
def raw_tree(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    for d in ("img", "cls"):
        (sbd / d).mkdir(parents=True)
    image = np.full((H, W, 3), 90, np.uint8)
    all_ids = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))
    for i, name in enumerate(all_ids):
        if name != "i":  # 'i' exists only in SBD's img/: preparation must copy it
            cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), image)
        if name in VOC_TRAIN + VOC_VAL:
            write_mask(voc / "SegmentationClass" / f"{name}.png", label_map(i, True))
        if name in SBD_TRAIN + SBD_VAL:
            cv2.imwrite(str(sbd / "img" / f"{name}.jpg"), image)
            seg = label_map(100 + i, False)
            gtcls = {"Segmentation": seg, "Boundaries": np.zeros(1), "CategoriesPresent": np.unique(seg)[1:]}
            scipy.io.savemat(str(sbd / "cls" / f"{name}.mat"), {"GTcls": gtcls})
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (lists / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    return voc, sbd


def run(voc, sbd, capsys):
    code = prepare_voc.main(["--voc-root", str(voc), "--sbd-root", str(sbd), "--no-progress"])
    out = capsys.readouterr().out
    return code, json.loads(out[: out.rindex("}") + 1])


def test_trainaug_list_and_masks(raw_tree, capsys):
    voc, sbd = raw_tree
    code, report = run(voc, sbd, capsys)
    assert code == 0
    assert (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split() == TRAINAUG
    assert report == {"train_aug": 7, "val": 2, "from_voc": 3, "from_sbd": 4, "already_done": 0, "images_copied": 1}
    all_ids = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))
    for name in TRAINAUG:
        i = all_ids.index(name)
        got = read_mask(voc / "SegmentationClassAug" / f"{name}.png")
        # VOC's mask wins where both exist ('b'); SBD's .mat is converted exactly otherwise.
        want = label_map(i, True) if name in VOC_TRAIN else label_map(100 + i, False)
        np.testing.assert_array_equal(got, want)
    assert (voc / "JPEGImages" / "i.jpg").is_file()
    assert not any(p.name.endswith(".tmp") for p in (voc / "SegmentationClassAug").iterdir())


def test_rerun_does_no_work_twice(raw_tree, capsys):
    voc, sbd = raw_tree
    run(voc, sbd, capsys)
    stamps = {p.name: p.stat().st_mtime_ns for p in (voc / "SegmentationClassAug").iterdir()}
    code, report = run(voc, sbd, capsys)
    assert code == 0
    assert (report["from_voc"], report["from_sbd"], report["already_done"]) == (0, 0, 7)
    assert {p.name: p.stat().st_mtime_ns for p in (voc / "SegmentationClassAug").iterdir()} == stamps


def test_bad_mat_is_named_and_leaves_no_list(raw_tree, capsys):
    voc, sbd = raw_tree
    (sbd / "cls" / "g.mat").write_bytes(b"not matlab")
    assert prepare_voc.main(["--voc-root", str(voc), "--sbd-root", str(sbd), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "g.mat: unreadable SBD mask" in err
    assert not (voc / "ImageSets/Segmentation/train_aug.txt").exists()
    assert not any(p.name.startswith(".") for p in (voc / "SegmentationClassAug").iterdir())
    # The other masks were finished; once the file is fixed, a re-run does only what is left.
    scipy.io.savemat(str(sbd / "cls" / "g.mat"), {"GTcls": {"Segmentation": label_map(0, False)}})
    code, report = run(voc, sbd, capsys)
    assert code == 0 and report["from_sbd"] == 1 and report["already_done"] == 6


def test_sbd_labels_outside_range_are_refused(raw_tree, capsys):
    voc, sbd = raw_tree
    scipy.io.savemat(str(sbd / "cls" / "f.mat"), {"GTcls": {"Segmentation": np.full((H, W), 33, np.uint8)}})
    assert prepare_voc.main(["--voc-root", str(voc), "--sbd-root", str(sbd), "--no-progress"]) == 1
    assert "f.mat: labels [33] outside 0-20 and 255" in capsys.readouterr().err


def test_wrong_sbd_folder_says_how_to_get_it(raw_tree):
    from deeplab_mobile.data.prepare import prepare_trainaug

    voc, sbd = raw_tree
    with pytest.raises(DatasetError, match="not an SBD dataset folder .*benchmark.tgz"):
        prepare_trainaug(voc, sbd.parent)
