"""A generated segmentation dataset written in exactly the PASCAL VOC layout (the embedded default).

21 classes: background + 20 object classes, each a (shape, texture) pair: 5 shapes (disc, square, triangle,
cross, ring) x 4 textures (solid, stripes, checker, dots). Colours come from one shared palette of 10. As in
real images, colour is a cue but never the answer: each object class has a body colour, and every body colour
belongs to two classes that differ in both shape and texture; the texture's second colour is any other palette
colour, and the background mixes all of them. So a pixel's colour leaves at least two object classes and the
background open, and the class is decided by shape and texture. Objects sit at random positions, scales and
rotations (texture rotates with the object), several per image and overlapping; backgrounds are smooth colour
fields with a lighting gradient and sensor noise; images are saved as JPEG. Masks are palette PNGs with 255 on
a band around every object boundary, as in VOC.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from filelock import FileLock
from tqdm import tqdm

from ..errors import InvalidValue
from ..files import atomic_path, write_text
from .base import IGNORE_INDEX
from .voc import write_mask

SHAPES = ("disc", "square", "triangle", "cross", "ring")
TEXTURES = ("solid", "stripes", "checker", "dots")
COLOURS = np.array(
    [
        [220, 40, 40],
        [40, 180, 60],
        [50, 80, 220],
        [230, 210, 50],
        [40, 200, 210],
        [200, 60, 200],
        [235, 235, 235],
        [120, 120, 120],
        [30, 30, 30],
        [240, 140, 30],
    ],
    np.float32,
)
TEXTURE_PERIOD = (4.0, 7.0)  # px: stripe width, checker cell, dot spacing
OBJECT_RADIUS = (0.12, 0.32)  # x the image's shorter side
MAX_OBJECTS = 4
CLASS_NAMES = ("background",) + tuple(f"{s}_{t}" for s in SHAPES for t in TEXTURES)


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the object's unit frame (u, v in [-1, 1])."""
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # equilateral, circumradius 1
        return (v <= 0.5) & (np.sqrt(3) * u - v <= 1.0) & (-np.sqrt(3) * u - v <= 1.0)
    if shape == "cross":
        return ((np.abs(u) <= 0.32) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.32) & (np.abs(u) <= 1.0))
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    raise InvalidValue(shape)


def texture_bits(texture: str, x: np.ndarray, y: np.ndarray, period: float) -> np.ndarray:
    """Which of the object's two colours each pixel takes (x, y in object pixels, rotated with it)."""
    if texture == "solid":
        return np.zeros(x.shape, bool)
    if texture == "stripes":
        return np.floor(x / period) % 2 == 1
    if texture == "checker":
        return (np.floor(x / period) + np.floor(y / period)) % 2 == 1
    if texture == "dots":
        fx, fy = x % period - period / 2, y % period - period / 2
        return fx * fx + fy * fy <= (period / 3) ** 2
    raise InvalidValue(texture)


def body_colour(cls: int) -> int:
    """The palette index of class ``cls``'s body colour. Each colour is the body colour of exactly two classes,
    which differ in both shape and texture: (shape s, texture t) for t in {0, 1} shares colour 2s + t with
    (shape s + 1, texture t + 2)."""
    s, t = divmod(cls - 1, len(TEXTURES))
    if t >= 2:
        s, t = (s - 1) % len(SHAPES), t - 2
    return 2 * s + t


def _two_colours(rng: np.random.Generator, cls: int) -> tuple[np.ndarray, np.ndarray]:
    body = body_colour(cls)
    other = int(rng.integers(0, len(COLOURS) - 1))
    return COLOURS[body], COLOURS[other + (other >= body)]


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    grid = COLOURS[rng.integers(0, len(COLOURS), (rng.integers(2, 5), rng.integers(2, 5)))]
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = COLOURS[rng.integers(0, len(COLOURS), (h // 8 + 1, w // 8 + 1))]
    fine = cv2.resize(fine, (w, h), interpolation=cv2.INTER_LINEAR)
    return 0.75 * field + 0.25 * fine


def generate_sample(
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 224),
    max_objects: int = MAX_OBJECTS,
    rare: Rare | None = None,
):
    """One (RGB uint8 image, uint8 mask) pair; with ``rare``, its classes are drawn that much less often."""
    h, w = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
    image = background(rng, h, w)
    label = np.zeros((h, w), np.uint8)
    instance = np.zeros((h, w), np.int32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for k in range(1, int(rng.integers(1, max_objects + 1)) + 1):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        if rare is not None:
            cls = rare.redraw(rng, cls)
        shape, texture = SHAPES[(cls - 1) // len(TEXTURES)], TEXTURES[(cls - 1) % len(TEXTURES)]
        radius = float(rng.uniform(*OBJECT_RADIUS) * min(h, w))
        cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
        theta = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(theta), np.sin(theta)
        dx, dy = xs - cx, ys - cy
        px, py = c * dx + s * dy, -s * dx + c * dy  # object frame, in pixels
        inside = shape_mask(shape, px / radius, py / radius)
        if not inside.any():
            continue
        bits = texture_bits(texture, px, py, period=float(rng.uniform(*TEXTURE_PERIOD)))
        c0, c1 = _two_colours(rng, cls)
        image[inside] = np.where(bits[inside, None], c1, c0)
        label[inside] = cls
        instance[inside] = k
    # Lighting gradient and sensor noise over the whole image.
    gx, gy = rng.uniform(-0.3, 0.3, 2)
    light = 1.0 + gx * (xs / w - 0.5) + gy * (ys / h - 0.5)
    image = image * light[..., None] + rng.normal(0, 8, image.shape)
    # VOC marks a band around each object's outline as 255 ("difficult"/boundary).
    kernel = np.ones((3, 3), np.uint8)
    inst = instance.astype(np.float32)
    edge = cv2.dilate(inst, kernel) != cv2.erode(inst, kernel)
    label[edge] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), label


class Rare:
    """Rare classes: an object drawn as one of ``classes`` keeps its class with probability ``keep`` and is
    otherwise drawn again among the other object classes, so those classes cover ``keep`` times their usual share
    of pixels (about 0.1% each at ``keep=0.1``; an object class covers about 1% of the dataset's pixels), in the
    ``splits`` named (default the training split only: val and test stay the usual images, so every class can be
    scored). No extra draws without it: the default dataset's images are the same."""

    def __init__(self, classes, keep: float, splits=("train",)) -> None:
        self.classes = sorted({int(c) for c in classes})
        if not self.classes or not all(1 <= c < len(CLASS_NAMES) for c in self.classes):
            raise InvalidValue(f"rare classes must be object classes 1..{len(CLASS_NAMES) - 1}, got {list(classes)}")
        if len(self.classes) == len(CLASS_NAMES) - 1:
            raise InvalidValue("rare classes: leave at least one object class common")
        if not 0 <= keep <= 1:
            raise InvalidValue(f"rare keep must be in [0, 1], got {keep}")
        self.keep = float(keep)
        self.splits = [str(x) for x in splits]
        if not set(self.splits) <= set(SPLITS):
            raise InvalidValue(f"rare splits must be among {SPLITS}, got {list(splits)}")
        self.common = [c for c in range(1, len(CLASS_NAMES)) if c not in self.classes]

    def redraw(self, rng: np.random.Generator, cls: int) -> int:
        if cls not in self.classes or rng.random() < self.keep:
            return cls
        return self.common[int(rng.integers(len(self.common)))]

    def record(self) -> dict:
        return {"classes": self.classes, "keep": self.keep, "splits": self.splits}


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    with atomic_path(path, suffix=".jpg") as tmp:  # OpenCV picks the encoder by the extension
        cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])


SPLITS = ("train", "val", "test")  # test: held out from choosing settings, which are chosen on val
GENERATOR_VERSION = 3  # bump whenever generate_sample changes what it draws, so old trees are rewritten


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Each image has its own random stream, keyed by (seed, split, index): a split is the same whatever the
    sizes of the others are, and growing a split adds images without redrawing the others."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def sample_ids(split: str, n: int) -> list[str]:
    return [f"synth_{split}_{i:06d}" for i in range(n)]


def write_synthetic_voc(
    root: str | Path,
    n_train: int = 300,
    n_val: int = 100,
    seed: int = 0,
    size: tuple[int, int] = (128, 224),
    progress: bool = True,
    n_test: int = 0,
    rare: dict | None = None,
) -> Path:
    """Write the dataset under ``root/VOCdevkit/VOC2012`` and return that folder: ``train``, ``val``,
    ``trainval`` and, with ``n_test``, a held-out ``test`` split.

    Deterministic per seed; image ``i`` of a split depends only on (seed, split, i, size). A finished tree with
    the same settings is left as it is (the ``.synthetic.json`` stamp); a tree with the same seed and size but
    other counts keeps the images it already has and writes only the missing ones. ``rare``: ``{classes, keep}``
    (``Rare``), classes made rare on purpose, for class-imbalance experiments.
    """
    rarity = Rare(rare["classes"], rare["keep"], rare.get("splits") or ("train",)) if rare else None
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    stamp = voc / ".synthetic.json"
    drawn = {"version": GENERATOR_VERSION, "seed": seed, "size": [int(v) for v in size]}
    if rarity is not None:  # only then: the default tree's stamp stays what it was
        drawn["rare"] = rarity.record()
    settings = {**drawn, "n_train": n_train, "n_val": n_val, "n_test": n_test}
    if _read_stamp(stamp) == settings:
        return voc
    voc.mkdir(parents=True, exist_ok=True)
    # Parallel sweep jobs (joblib, Slurm) may all reach this point: one writes, the others wait and then read.
    with FileLock(str(voc / ".synthetic.lock")):
        old = _read_stamp(stamp)
        if old != settings:
            reuse = old is not None and {k: old.get(k) for k in drawn} == drawn
            stamp.unlink(missing_ok=True)  # an interrupted rewrite must not look finished
            counts = {"train": n_train, "val": n_val, "test": n_test}
            _write_tree(voc, counts, seed, tuple(size), progress, reuse, rarity)
            write_text(stamp, json.dumps(settings))
    return voc


def _read_stamp(stamp: Path) -> dict | None:
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def _write_tree(
    voc: Path,
    counts: dict[str, int],
    seed: int,
    size: tuple[int, int],
    progress: bool,
    reuse: bool,
    rare: Rare | None = None,
) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    lists = {split: sample_ids(split, n) for split, n in counts.items() if n or split != "test"}
    if not reuse:  # drawn with other settings (or an older generator): none of the old images may stay listed
        for old in [*voc.glob("JPEGImages/synth_*.jpg"), *voc.glob("SegmentationClass/synth_*.png")]:
            old.unlink()
    jobs = []
    for split, names in lists.items():
        for i, name in enumerate(names):
            image, mask = voc / "JPEGImages" / f"{name}.jpg", voc / "SegmentationClass" / f"{name}.png"
            if not (reuse and image.is_file() and mask.is_file()):  # both files are written atomically
                jobs.append((split, i, image, mask))
    for split, i, image_path, mask_path in tqdm(jobs, desc="generating dataset", disable=not progress):
        image, mask = generate_sample(
            sample_rng(seed, split, i), size, rare=rare if rare and split in rare.splits else None
        )
        _write_jpeg(image_path, image)
        write_mask(mask_path, mask)
    lists["trainval"] = lists["train"] + lists["val"]
    if not counts["test"]:
        (voc / "ImageSets" / "Segmentation" / "test.txt").unlink(missing_ok=True)
    for split, names in lists.items():
        write_text(voc / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(names) + "\n")
