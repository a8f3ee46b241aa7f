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

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
NUM_CLASSES = len(CLASSES)
IGNORE_INDEX = 255
AUG_SPLIT = "train_aug"


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


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


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


def read_image(path: str | Path) -> np.ndarray:
    """An RGB uint8 image (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: unreadable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def open_mask(path: str | Path) -> tuple[str, np.ndarray]:
    """A mask file's PIL mode and pixels, as they are; a missing or unreadable file names itself."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: mask not found")
    try:
        with Image.open(path) as im:
            return im.mode, np.array(im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unreadable file
        raise DatasetError(f"{path}: unreadable mask ({exc})") from exc


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


def invalid_labels(mask: np.ndarray, num_classes: int = NUM_CLASSES) -> list[int]:
    """Label values outside 0..num_classes-1 and 255. A histogram (cv2.calcHist) rather than np.unique (a sort,
    several times slower): this check runs on every training sample."""
    hist = cv2.calcHist([np.ascontiguousarray(mask, dtype=np.uint8)], [0], None, [256], [0, 256]).ravel()
    hist[:num_classes] = 0
    hist[IGNORE_INDEX] = 0
    return np.nonzero(hist)[0].tolist()


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temporary name, then rename): a list or stamp is never seen half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write a palette-indexed PNG atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(PALETTE.tobytes())
    im.save(tmp, format="PNG")
    os.replace(tmp, path)


def size_mismatch(mask_path: Path, image: np.ndarray, mask: np.ndarray) -> str:
    return f"{mask_path}: mask size {mask.shape[::-1]} differs from image size {image.shape[1::-1]}"


BAD_LABEL = 256  # a label table's entry for a pixel value that is no label


def map_labels(mask: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """A mask through a 256-entry label table (class index, 255 for ignored, ``BAD_LABEL`` for a value that is
    no label): the uint8 labels and the bad values found (sorted; empty when there are none)."""
    out = table[mask]
    bad = out == BAD_LABEL
    if bad.any():
        return out.astype(np.uint8), np.unique(mask[bad]).tolist()
    return out.astype(np.uint8), []


class PairedFiles(Dataset):
    """A split as ``pairs`` of (image, mask) paths, read with ``read_image`` and the subclass's ``read_mask`` (which
    decodes a mask to class indices with 255 for ignored pixels); a size mismatch names the mask."""

    pairs: list[tuple[Path, Path]]
    transform: Callable | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def paths(self, index: int) -> tuple[Path, Path]:
        return self.pairs[index]

    def read_mask(self, path: Path) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def names(self) -> list[str]:
        """Each sample's id: its image file's stem, or its path where two stems are alike (nested folders)."""
        stems = [image.stem for image, _ in self.pairs]
        if len(set(stems)) == len(stems):
            return stems
        return [image.as_posix() for image, _ in self.pairs]

    def __getitem__(self, index: int):
        image_path, mask_path = self.paths(index)
        image, mask = read_image(image_path), self.read_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise DatasetError(size_mismatch(mask_path, image, mask))
        return (image, mask) if self.transform is None else self.transform(image, mask)


def sample_names(dataset) -> list[str]:
    """The ids of a dataset's samples, in order: its ``names()`` (``PairedFiles``), else their positions."""
    names = getattr(dataset, "names", None)
    return list(names()) if callable(names) else [str(i) for i in range(len(dataset))]


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
            raise DatasetError(f"{self.root}: dataset root not found")
        self.split = split
        self.ids = read_list(self.root / "ImageSets" / "Segmentation" / f"{split}.txt")
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


def check_samples(dataset, progress: bool = False) -> list[str]:
    """Every problem of every sample of a dataset that has ``paths(i)`` and ``read_mask(path)`` (VOC, folder,
    Cityscapes): a missing or unreadable image or mask, a bad label, a size mismatch; never stopping early."""
    problems = []
    for i in tqdm(range(len(dataset)), desc="checking", unit="sample", disable=not progress, leave=False):
        image_path, mask_path = dataset.paths(i)
        image = mask = None
        try:
            image = read_image(image_path)
        except DatasetError as exc:
            problems.append(str(exc))
        try:
            mask = dataset.read_mask(mask_path)
        except DatasetError as exc:
            problems.append(str(exc))
        if image is not None and mask is not None and image.shape[:2] != mask.shape:
            problems.append(size_mismatch(mask_path, image, mask))
    return problems
