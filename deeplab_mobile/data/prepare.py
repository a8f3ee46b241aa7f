"""Build PASCAL VOC 2012 "trainaug" from the raw VOC 2012 and SBD downloads.

trainaug = (SBD train ∪ SBD val ∪ VOC train) − VOC val  (10,582 images on the real data; val has 1,449).
Masks go to ``VOC2012/SegmentationClassAug/<id>.png``: the VOC mask where VOC has one (it marks boundaries
with 255; SBD's do not), else SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``) converted to a palette PNG.
The list goes to ``ImageSets/Segmentation/train_aug.txt``. Every file is written under a temporary name and
renamed, and existing outputs are kept, so an interrupted run leaves nothing half-written and a re-run only
does what is left.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from ..files import atomic_path, write_text
from .base import IGNORE_INDEX, DatasetError, invalid_labels
from .voc import AUG_SPLIT, NUM_CLASSES, read_list, write_mask

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
SBD_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"


@dataclass
class PrepareReport:
    train_aug: int = 0
    val: int = 0
    from_voc: int = 0
    from_sbd: int = 0
    already_done: int = 0
    images_copied: int = 0


def read_sbd_mask(path: Path) -> np.ndarray:
    """``GTcls.Segmentation`` of an SBD ``cls/*.mat`` file, as uint8 class indices."""
    if not path.is_file():
        raise DatasetError(f"{path}: SBD mask not found")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        seg = np.asarray(mat["GTcls"].Segmentation)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unreadable file
        raise DatasetError(f"{path}: unreadable SBD mask, expected a MATLAB struct GTcls.Segmentation ({exc})") from exc
    if seg.ndim != 2:
        raise DatasetError(f"{path}: GTcls.Segmentation has shape {seg.shape}, expected a 2-D label map")
    if seg.min() < 0 or seg.max() > 255:
        raise DatasetError(f"{path}: labels outside 0-{NUM_CLASSES - 1} and {IGNORE_INDEX}")
    seg = seg.astype(np.uint8)
    bad = invalid_labels(seg, NUM_CLASSES)
    if bad:
        raise DatasetError(f"{path}: labels {bad[:10]} outside 0-{NUM_CLASSES - 1} and {IGNORE_INDEX}")
    return seg


def check_voc_layout(voc: Path) -> None:
    missing = [p for p in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation") if not (voc / p).is_dir()]
    if missing:
        raise DatasetError(
            f"{voc}: not a VOC2012 folder (missing {', '.join(missing)}). Download {VOC_URL}, extract it, and "
            "pass the VOCdevkit/VOC2012 folder"
        )


def check_sbd_layout(sbd: Path) -> None:
    missing = [p for p in ("img", "cls", "train.txt", "val.txt") if not (sbd / p).exists()]
    if missing:
        raise DatasetError(
            f"{sbd}: not an SBD dataset folder (missing {', '.join(missing)}). Download {SBD_URL}, extract it, "
            "and pass benchmark_RELEASE/dataset"
        )


def trainaug_ids(voc_train: list[str], voc_val: list[str], sbd_train: list[str], sbd_val: list[str]) -> list[str]:
    val = set(voc_val)
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - val)


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def prepare_trainaug(voc_root: str | Path, sbd_root: str | Path, progress: bool = True) -> PrepareReport:
    """Write SegmentationClassAug/ and train_aug.txt into ``voc_root``; returns the counts."""
    voc, sbd = Path(voc_root), Path(sbd_root)
    check_voc_layout(voc)
    check_sbd_layout(sbd)
    lists = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_list(lists / "train.txt"), read_list(lists / "val.txt")
    sbd_train, sbd_val = read_list(sbd / "train.txt"), read_list(sbd / "val.txt")
    ids = trainaug_ids(voc_train, voc_val, sbd_train, sbd_val)

    out = voc / "SegmentationClassAug"
    out.mkdir(exist_ok=True)
    report = PrepareReport(train_aug=len(ids), val=len(voc_val))
    problems = []
    for name in tqdm(ids, desc="trainaug masks", disable=not progress):
        image = voc / "JPEGImages" / f"{name}.jpg"
        if not image.is_file():
            sbd_image = sbd / "img" / f"{name}.jpg"
            if sbd_image.is_file():
                _copy_atomic(sbd_image, image)
                report.images_copied += 1
            else:
                problems.append(f"{image}: image not found (nor in {sbd / 'img'})")
        dst = out / f"{name}.png"
        if dst.is_file():
            report.already_done += 1
            continue
        voc_mask = voc / "SegmentationClass" / f"{name}.png"
        try:
            if voc_mask.is_file():
                _copy_atomic(voc_mask, dst)
                report.from_voc += 1
            else:
                write_mask(dst, read_sbd_mask(sbd / "cls" / f"{name}.mat"))
                report.from_sbd += 1
        except DatasetError as exc:
            problems.append(str(exc))
    if problems:
        shown = "\n  ".join(problems[:20])
        raise DatasetError(f"{len(problems)} problems preparing trainaug:\n  {shown}")
    write_text(lists / f"{AUG_SPLIT}.txt", "\n".join(ids) + "\n")
    return report
