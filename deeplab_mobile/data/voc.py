"""PASCAL VOC 2012 segmentation on disk: reading, validation, and the ``Dataset``.

Layout (as downloaded)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png          palette-indexed PNG, index = class, 255 = boundary
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png       trainaug masks (``prepare_voc`` or the shared download)
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt

Images are decoded with OpenCV. Masks are decoded with Pillow because OpenCV expands a palette PNG to colours
and loses the class indices; that is one PNG decode per sample, and every transform after it is OpenCV.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_path
from .base import IGNORE_INDEX, DatasetError, PairedFiles, check_samples, invalid_labels, open_mask

CLASSES = tuple(
    (
        "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
        "pottedplant sheep sofa train tvmonitor"
    ).split()
)
NUM_CLASSES = len(CLASSES)
AUG_SPLIT = "train_aug"


def default_classes(n: int) -> tuple[str, ...]:
    """The class names of a model that records none: VOC's for 21 classes, else the indices."""
    return CLASSES if n == len(CLASSES) else tuple(map(str, range(n)))


def voc_palette(n: int = 256) -> np.ndarray:
    """The VOC colour map (``VOCdevkit/VOCcode/VOClabelcolormap.m``): (n, 3) uint8, 255 -> (224, 224, 192)."""
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


PALETTE = voc_palette()


def read_list(path: str | Path) -> list[str]:
    """Image ids of a split list: VOC's one id a line, or the shared trainaug list's
    ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` lines."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found")
    ids = [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{path}: split list is empty")
    return ids


def read_mask(path: str | Path, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """A class-index mask (H, W) uint8 from a palette-indexed (or single-channel) PNG; labels are checked."""
    mode, mask = open_mask(path)
    if mode not in ("P", "L"):
        raise DatasetError(
            f"{path}: mask is {mode}, not a palette-indexed PNG; VOC masks store class indices "
            "(convert colours to indices with the VOC palette)"
        )
    bad = invalid_labels(mask, num_classes)
    if bad:
        raise DatasetError(f"{path}: labels {bad[:10]} outside 0-{num_classes - 1} and {IGNORE_INDEX}")
    return mask


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a palette-indexed PNG atomically (temporary name, then rename)."""
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(PALETTE.tobytes())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def mask_dir_for(split: str) -> str:
    return "SegmentationClassAug" if split == AUG_SPLIT else "SegmentationClass"


class VOCSegmentation(PairedFiles):
    """PASCAL VOC 2012 (or a tree in its layout) for one split.

    Args:
        root: the ``VOC2012`` folder (``VOCdevkit/VOC2012``).
        split: a list in ``ImageSets/Segmentation`` (``train``, ``val``, ``trainval``, ``train_aug``).
        transform: ``(image, mask) -> sample``; ``None`` returns the arrays.
        mask_dir: overrides the mask folder (default ``SegmentationClassAug`` for ``train_aug``,
            else ``SegmentationClass``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        mask_dir: str | None = None,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset root not found", argument="root")
        self.split = split
        self.list_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        self.ids = read_list(self.list_file)
        self.image_dir = self.root / "JPEGImages"
        self.mask_dir = self.root / (mask_dir or mask_dir_for(split))
        self.pairs = [(self.image_dir / f"{name}.jpg", self.mask_dir / f"{name}.png") for name in self.ids]
        self.transform = transform
        self.num_classes = num_classes

    def read_mask(self, path: Path) -> np.ndarray:
        return read_mask(path, self.num_classes)


def check_dataset(root: str | Path, split: str, mask_dir: str | None = None) -> tuple[int, list[str]]:
    """Scan every sample of a split; returns (number checked, every problem found), never stopping early."""
    try:
        dataset = VOCSegmentation(root, split, mask_dir=mask_dir)
    except DatasetError as exc:
        return 0, [str(exc)]
    return len(dataset), check_samples(dataset)
