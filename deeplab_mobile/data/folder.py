"""Your own data: images and masks in two folders, and a classes file (``data=folder``; docs/data.md).

Layout::

    <root>/classes.txt                   one class a line, in index order: ``name`` or ``name R G B``;
                                         optionally a line ``ignore: N`` (default 255), the label not scored
    <root>/images/<split>/<name>.jpg     (or .jpeg, .png, .bmp)
    <root>/masks/<split>/<name>.png      palette or grey-level PNG: the pixel value is the class index;
                                         an RGB PNG is read through the classes' colours when they are given
    <root>/<split>.txt                   optional, instead of the split folders: one line per sample, either a name
                                         (looked up in images/ and masks/) or ``image_path mask_path`` (relative
                                         to the root)

The class count follows the classes file. Masks are checked as VOC's are: a value outside the classes and the
ignore label, a colour that is no class's, a size that differs from the image's, each names its file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import BAD_LABEL, IGNORE_INDEX, DatasetError, PairedFiles, map_labels, open_mask

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class ClassSet:
    """A classes file: names in index order, their colours (or ``None``), and the ignore label."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...] | None
    ignore_index: int = IGNORE_INDEX


def read_classes(path: str | Path) -> ClassSet:
    """Read a classes file (module docstring); every malformed line is named with its number."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: classes file not found (one class name a line, optionally 'name R G B')")
    names, colors, ignore, problems = [], [], IGNORE_INDEX, []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.lower().startswith("ignore:"):
            value = line.split(":", 1)[1].strip()
            if not value.isdigit() or int(value) > 255:
                problems.append(f"line {number}: ignore label {value!r} is not an integer 0-255")
            else:
                ignore = int(value)
            continue
        parts = line.split()
        if len(parts) == 1:
            names.append(parts[0])
            colors.append(None)
        elif len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts[1:]):
            names.append(parts[0])
            colors.append(tuple(int(p) for p in parts[1:]))
        else:
            problems.append(f"line {number}: {raw.strip()!r} is not 'name' or 'name R G B' (0-255)")
    if not names and not problems:
        problems.append("no classes")
    if len(set(names)) != len(names):
        problems.append(f"duplicate class names {sorted({n for n in names if names.count(n) > 1})}")
    if ignore < len(names):
        problems.append(f"ignore label {ignore} is one of the {len(names)} class indices")
    if len(names) > 255:
        problems.append(f"{len(names)} classes; masks are 8-bit with 255 for ignored pixels, so 255 at most")
    given = [c for c in colors if c is not None]
    if given and len(given) != len(colors):
        problems.append("colours given for some classes only: give one for every class or for none")
    if len(set(given)) != len(given):
        problems.append("two classes share a colour")
    if problems:
        raise DatasetError(f"{path}: " + "; ".join(problems))
    return ClassSet(tuple(names), tuple(colors) if given else None, ignore)


def find_image(folder: Path, name: str) -> Path:
    for ext in IMAGE_EXTENSIONS:
        if (path := folder / f"{name}{ext}").is_file():
            return path
    return folder / f"{name}.jpg"  # reported as missing when read


class FolderSegmentation(PairedFiles):
    """One split of a folder dataset (module docstring).

    Args:
        root: the dataset folder.
        split: a split folder under ``images/`` and ``masks/``, or a list file ``<root>/<split>.txt``.
        transform: ``(image, mask) -> sample``; ``None`` returns the arrays.
        num_classes: the model's class count, which must be the classes file's.
        images, masks: the two folders' names under ``root``.
        classes: the classes file (default ``<root>/classes.txt``).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        num_classes: int | None = None,
        images: str = "images",
        masks: str = "masks",
        classes: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset root not found", argument="root")
        self.classes = read_classes(classes or self.root / CLASSES_FILE)
        self.num_classes = len(self.classes.names)
        if num_classes is not None and int(num_classes) != self.num_classes:
            raise DatasetError(
                f"{classes or self.root / CLASSES_FILE}: {self.num_classes} classes, but num_classes is {num_classes}"
            )
        self.split, self.transform = split, transform
        self.pairs = self.list_pairs(split, images, masks)
        self.lut = self.label_table()

    def list_pairs(self, split: str, images: str, masks: str) -> list[tuple[Path, Path]]:
        listing = self.root / f"{split}.txt"
        image_dir, mask_dir = self.root / images / split, self.root / masks / split
        if listing.is_file():
            self.list_file = listing
            if not image_dir.is_dir():  # names in a list file may also live directly in images/ and masks/
                image_dir, mask_dir = self.root / images, self.root / masks
            pairs = []
            for number, line in enumerate(listing.read_text().splitlines(), 1):
                parts = line.split()
                if len(parts) == 1:
                    pairs.append((find_image(image_dir, parts[0]), mask_dir / f"{parts[0]}.png"))
                elif len(parts) == 2:
                    pairs.append((self.root / parts[0], self.root / parts[1]))
                elif parts:
                    raise DatasetError(f"{listing}: line {number} is not 'name' or 'image_path mask_path'")
        elif image_dir.is_dir():
            files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            pairs = [(p, mask_dir / f"{p.stem}.png") for p in files]
        else:
            raise DatasetError(f"{self.root}: no split {split!r}: expected {listing} or the folder {image_dir}")
        if not pairs:
            raise DatasetError(f"{self.root}: split {split!r} has no images")
        return pairs

    def label_table(self) -> np.ndarray:
        """Pixel value -> label: the classes as they are, the ignore label to 255, anything else ``BAD_LABEL``."""
        lut = np.full(256, BAD_LABEL, np.int32)
        lut[: self.num_classes] = np.arange(self.num_classes)
        lut[self.classes.ignore_index] = IGNORE_INDEX
        if self.classes.ignore_index != IGNORE_INDEX:
            lut[IGNORE_INDEX] = BAD_LABEL
        return lut

    def read_mask(self, path: Path) -> np.ndarray:
        """Class indices (H, W) uint8 with 255 for ignored pixels; bad values name the file."""
        mode, mask = open_mask(path)
        if mode in ("RGB", "RGBA"):
            return self.colors_to_labels(path, mask[..., :3])
        if mode not in ("P", "L"):
            raise DatasetError(f"{path}: mask is {mode}; expected a palette or grey-level PNG of class indices")
        out, bad = map_labels(mask, self.lut)
        if bad:
            raise DatasetError(
                f"{path}: labels {bad[:10]} outside 0-{self.num_classes - 1} and the ignore label "
                f"{self.classes.ignore_index}"
            )
        return out

    def colors_to_labels(self, path: Path, rgb: np.ndarray) -> np.ndarray:
        if self.classes.colors is None:
            raise DatasetError(f"{path}: an RGB mask, but the classes file gives no colours (name R G B)")
        codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
        table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(self.classes.colors)}
        keys, inverse = np.unique(codes, return_inverse=True)
        unknown = [int(k) for k in keys if int(k) not in table]
        if unknown:
            shown = [((k >> 16) & 255, (k >> 8) & 255, k & 255) for k in unknown[:5]]
            raise DatasetError(f"{path}: colours {shown} are no class's colour in the classes file")
        return np.array([table[int(k)] for k in keys], np.uint8)[inverse].reshape(codes.shape)
