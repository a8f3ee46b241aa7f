"""A split of the configured data, whatever its format: ``data.format`` is ``voc`` (PASCAL VOC's layout, also the
generated dataset's; the default, and so for run folders written before the key existed), ``folder`` (your own
images, masks and classes file) or ``cityscapes``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from torch.utils.data import Dataset

from ..errors import ArgumentError
from .base import DatasetError, check_samples
from .cityscapes import CityscapesSegmentation
from .folder import FolderSegmentation
from .voc import VOCSegmentation

FORMATS = ("voc", "folder", "cityscapes")


def data_format(data: Mapping) -> str:
    fmt = data.get("format") or "voc"
    if fmt not in FORMATS:
        raise ArgumentError("format", f"={fmt!r} is not supported; choose one of {FORMATS}")
    if not data.get("root"):
        raise ArgumentError("root", f"is not set: a {fmt} dataset needs the folder it is in")
    return fmt


def open_split(data: Mapping, split: str, transform: Callable | None = None, num_classes: int | None = None) -> Dataset:
    """The ``split`` of the data ``data`` describes (a ``data`` config node: ``format``, ``root`` and the format's
    own keys), decoding masks to class indices with 255 for ignored pixels."""
    fmt, root = data_format(data), data["root"]
    if fmt == "folder":
        return FolderSegmentation(
            root,
            split,
            transform,
            num_classes,
            images=data.get("images") or "images",
            masks=data.get("masks") or "masks",
            classes=data.get("classes_file"),
        )
    if fmt == "cityscapes":
        return CityscapesSegmentation(root, split, transform, num_classes if num_classes is not None else 19)
    return VOCSegmentation(root, split, transform, num_classes=num_classes if num_classes is not None else 21)


def check_split(
    data: Mapping, split: str, num_classes: int | None = None, progress: bool = False
) -> tuple[int, list[str]]:
    """Read every image and mask of a split; (number of samples, every problem, each naming its file)."""
    try:
        dataset = open_split(data, split, num_classes=num_classes)
    except DatasetError as exc:
        return 0, [str(exc)]
    return len(dataset), check_samples(dataset, progress)


def classes_file(data: Mapping) -> Path | None:
    """The classes file of a folder dataset (``data.classes_file``, default ``<root>/classes.txt``), else None."""
    if data_format(data) != "folder":
        return None
    return Path(data.get("classes_file") or Path(data["root"]) / "classes.txt")
