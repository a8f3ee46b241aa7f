"""Cityscapes in its official layout (``data=cityscapes``; docs/data.md)::

    <root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The ``labelIds`` masks hold the 34 label ids (0-33; the license plate's -1 is written as 255); they are mapped to
the 19 training classes (``trainId``, cityscapesScripts' ``labels.py``), every other id to 255, ignored. A value
that is no label id names its file, as a VOC mask's does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import BAD_LABEL, IGNORE_INDEX, DatasetError, PairedFiles, map_labels, open_mask

# label id -> train id, from cityscapesScripts' labels.py; ids not listed are ignored (255)
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)  # of train ids 0, 1, ..., 18
TRAIN_IDS = {label: train for train, label in enumerate(LABEL_IDS)}
NUM_LABEL_IDS = 34
CLASSES = tuple(
    (
        "road, sidewalk, building, wall, fence, pole, traffic light, traffic sign, vegetation, terrain, sky, person, "
        "rider, car, truck, bus, train, motorcycle, bicycle"
    ).split(", ")
)
COLORS = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"


def label_table() -> np.ndarray:
    """Pixel value -> train id: the 19 classes, 255 for the other label ids and 255 itself, ``BAD_LABEL`` for a
    value that is no label id."""
    lut = np.full(256, BAD_LABEL, np.int32)
    lut[:NUM_LABEL_IDS] = IGNORE_INDEX
    for label_id, train_id in TRAIN_IDS.items():
        lut[label_id] = train_id
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


LUT = label_table()


def to_train_ids(mask: np.ndarray, path: Path) -> np.ndarray:
    out, bad = map_labels(mask, LUT)
    if bad:
        raise DatasetError(f"{path}: values {bad[:10]} are no Cityscapes label id (0-{NUM_LABEL_IDS - 1}, 255)")
    return out


class CityscapesSegmentation(PairedFiles):
    """One split (``train``, ``val``, ``test``) of Cityscapes' fine annotations, in train ids.

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
        transform: ``(image, mask) -> sample``; ``None`` returns the arrays.
        num_classes: must be 19.
    """

    def __init__(
        self, root: str | Path, split: str = "train", transform: Callable | None = None, num_classes: int = 19
    ) -> None:
        self.root = Path(root)
        if int(num_classes) != len(CLASSES):
            raise DatasetError(f"Cityscapes has {len(CLASSES)} training classes, but num_classes is {num_classes}")
        image_dir = self.root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise DatasetError(f"{image_dir}: not found (Cityscapes' leftImg8bit/<split>/<city>/ layout)")
        self.split, self.transform, self.num_classes = split, transform, len(CLASSES)
        images = sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))
        if not images:
            raise DatasetError(f"{image_dir}: no *{IMAGE_SUFFIX} images in its city folders")
        mask_dir = self.root / "gtFine" / split
        self.pairs = [(p, mask_dir / p.parent.name / p.name.replace(IMAGE_SUFFIX, MASK_SUFFIX)) for p in images]

    def read_mask(self, path: Path) -> np.ndarray:
        mode, mask = open_mask(path)
        if mode not in ("L", "P"):
            raise DatasetError(f"{path}: mask is {mode}; Cityscapes' *{MASK_SUFFIX} are 8-bit label ids")
        return to_train_ids(mask, path)
