"""What every dataset format shares: the ignore label, the error that names a bad file, image and mask reading,
the label checks, and ``PairedFiles``, a split as (image, mask) file pairs (VOC, folder and Cityscapes readers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import InvalidValue

IGNORE_INDEX = 255  # the label of pixels that count nowhere (VOC's object boundaries, padding)


class DatasetError(InvalidValue):
    """A dataset file is missing or malformed; the message names the file and the problem. ``argument``: the
    parameter that named the missing path (``root``), so a caller that took it from a config can name the key."""

    def __init__(self, message: str, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


def read_image(path: str | Path) -> np.ndarray:
    """An RGB uint8 image (H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: image not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: unreadable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: no second image-sized copy


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


def invalid_labels(mask: np.ndarray, num_classes: int) -> list[int]:
    """Label values outside 0..num_classes-1 and 255. A histogram (cv2.calcHist) rather than np.unique (a sort,
    several times slower): this check runs on every training sample."""
    hist = cv2.calcHist([np.ascontiguousarray(mask, dtype=np.uint8)], [0], None, [256], [0, 256]).ravel()
    hist[:num_classes] = 0
    hist[IGNORE_INDEX] = 0
    return np.nonzero(hist)[0].tolist()


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
    list_file: Path | None = None  # the split list the pairs were read from, where there is one (data/manifest.py)

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
