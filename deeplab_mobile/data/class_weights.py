"""Class frequencies of a split and the class weights derived from them, as a file the weighted losses read
(``scripts/check_data.py class_weights=<rule>`` writes it; ``loss.class_weights=<file>`` reads it).

Rules (``f_c``: class c's share of the split's labelled pixels; ``p_c``: its pixels over the pixels of the images
where it appears):

- ``median_frequency``: ``median(p) / p_c`` (Eigen and Fergus, ICCV 2015, section 4.1; SegNet's class balancing);
- ``inverse_sqrt``: ``1 / sqrt(f_c)``, scaled so that ``sum(f_c * w_c) = 1`` (a labelled pixel weighs 1 on
  average, so the loss keeps cross-entropy's scale);
- ``inverse``: ``1 / f_c``, scaled the same way;
- ``enet``: ``1 / ln(1.02 + f_c)`` (ENet, Paszke et al. 2016, section 5.2).

A class with no pixel in the split gets weight 0 and is listed under ``absent``: no pixel carries it, so no loss
term is scaled by it, and a weight taken from nothing would be a guess.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import InvalidValue
from ..files import write_json
from .base import IGNORE_INDEX, DatasetError

RULES = ("median_frequency", "inverse_sqrt", "inverse", "enet")
FORMAT = "deeplab_mobile/class_weights/1"


def pixel_counts(dataset, num_classes: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per class: its labelled pixels over the split, and the pixels of the images it appears in (int64 arrays).
    Reads only the masks (``dataset.paths(i)``, ``dataset.read_mask``); 255 counts nowhere."""
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for i in tqdm(range(len(dataset)), desc="counting pixels", unit="mask", disable=not progress, leave=False):
        mask = dataset.read_mask(dataset.paths(i)[1])
        counts = np.bincount(mask.ravel(), minlength=256)
        bad = np.nonzero(counts)[0]
        if ((bad >= num_classes) & (bad != IGNORE_INDEX)).any():
            raise DatasetError(f"{dataset.paths(i)[1]}: labels outside 0..{num_classes - 1} and {IGNORE_INDEX}")
        counts = counts[:num_classes]
        pixels += counts
        image_pixels[counts > 0] += int(counts.sum())
    return pixels, image_pixels


def class_weights(pixels: np.ndarray, image_pixels: np.ndarray, rule: str) -> np.ndarray:
    """The weights of ``rule`` (module docstring) from ``pixel_counts``; 0 for a class with no pixel."""
    if rule not in RULES:
        raise InvalidValue(f"class weight rule {rule!r} is not supported; choose one of {', '.join(RULES)}")
    pixels, image_pixels = np.asarray(pixels, np.float64), np.asarray(image_pixels, np.float64)
    present = pixels > 0
    if not present.any():
        raise InvalidValue("no labelled pixel in the split: no class frequency to weigh by")
    weights = np.zeros_like(pixels)
    share = pixels[present] / pixels.sum()
    if rule == "median_frequency":
        per_image = pixels[present] / image_pixels[present]
        weights[present] = np.median(per_image) / per_image
    elif rule == "enet":
        weights[present] = 1.0 / np.log(1.02 + share)
    else:
        raw = 1.0 / (np.sqrt(share) if rule == "inverse_sqrt" else share)
        weights[present] = raw / (share * raw).sum()
    return weights


def weights_record(
    pixels: np.ndarray, image_pixels: np.ndarray, rule: str, names: list[str], split: str, data: str
) -> dict:
    """The class-weights file's content: the counts, each class's share, the rule and its weights."""
    weights = class_weights(pixels, image_pixels, rule)
    total = int(np.sum(pixels))
    return {
        "format": FORMAT,
        "data": data,
        "split": split,
        "rule": rule,
        "classes": list(names),
        "pixels": [int(n) for n in pixels],
        "image_pixels": [int(n) for n in image_pixels],
        "frequency": [int(n) / total for n in pixels],
        "weights": [float(w) for w in weights],
        "absent": [name for name, n in zip(names, pixels, strict=True) if n == 0],
    }


def write_class_weights(path: str | Path, record: dict) -> Path:
    path = Path(path)
    write_json(path, record)
    return path


def read_class_weights(path: str | Path, num_classes: int) -> list[float]:
    """The ``weights`` of a class-weights file, checked: it exists, it is one, and it has ``num_classes``
    finite weights >= 0; a ``DatasetError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"{path}: class-weights file not found (write one with scripts/check_data.py class_weights=<rule>)"
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable class-weights file ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or "weights" not in record:
        raise DatasetError(f"{path}: not a class-weights file (scripts/check_data.py class_weights=<rule> writes one)")
    weights = record["weights"]
    if len(weights) != num_classes:
        raise DatasetError(f"{path}: {len(weights)} class weights for {num_classes} classes")
    if not all(isinstance(w, int | float) and np.isfinite(w) and w >= 0 for w in weights):
        raise DatasetError(f"{path}: class weights must be finite numbers >= 0")
    return [float(w) for w in weights]
