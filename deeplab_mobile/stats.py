"""How sure an mIoU is: bootstrap intervals from per-image confusion matrices, over images and over training seeds.

The set's mIoU comes from one confusion matrix summed over the images (``metrics.scores``), so it is not a mean
of per-image values: a resample of the images is scored by summing their matrices and taking the mIoU of the sum.
Only three numbers per image and class enter that sum (true positives, ground-truth pixels, predicted pixels), so
a resample is a weighted sum of those: ``counts @ stats``, with ``counts[b, i]`` the number of times resample
``b`` drew image ``i``.

Resampling is seeded and always drawn the same way (``numpy.random.default_rng(seed)``): first the images,
``integers(0, images, (samples, images))``, then, where seeds are resampled too, the seeds,
``integers(0, seeds, (samples, seeds))``. A class absent from a resample's ground truth and predictions has no
IoU and is left out of that resample's mean, as the set's mIoU leaves it out.

Written here rather than with ``scipy.stats.bootstrap``: that resamples independent observations of one factor,
while a sweep's rows are crossed in two (training seeds x the same images), and a comparison of two rows must
reuse one draw of images for both (a paired bootstrap) and pair their seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InvalidValue

SAMPLES = 1000  # resamples per interval
LEVEL = 0.95
SEED = 0


def image_stats(per_image: np.ndarray) -> np.ndarray:
    """Per-image (images, C, C) confusion matrices (rows: ground truth) -> (images, 3C) float64: each image's true
    positives, ground-truth pixels and predicted pixels per class, side by side."""
    m = np.asarray(per_image)
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
        raise InvalidValue(f"per-image confusion matrices must have shape (images, C, C), got {m.shape}")
    tp = np.diagonal(m, axis1=1, axis2=2)
    return np.concatenate([tp, m.sum(2), m.sum(1)], axis=1).astype(np.float64)


def miou_of_stats(stats: np.ndarray) -> np.ndarray:
    """mIoU of summed statistics (..., 3C) -> (...); NaN where no class occurs at all."""
    tp, gt, pr = np.split(np.asarray(stats, np.float64), 3, axis=-1)
    union = gt + pr - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    present = (union > 0).sum(-1)
    total = np.where(union > 0, iou, 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, total / np.maximum(present, 1), np.nan)


def image_counts(images: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples, images) float64: how often each resample draws each image (``images`` draws with replacement)."""
    idx = rng.integers(0, images, (samples, images))
    flat = (idx + images * np.arange(samples)[:, None]).ravel()
    return np.bincount(flat, minlength=samples * images).reshape(samples, images).astype(np.float64)


def percentiles(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (resamples with no class at all are left out)."""
    values = np.asarray(replicates, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_miou(
    per_image: np.ndarray, samples: int = SAMPLES, seed: int = SEED, level: float = LEVEL
) -> tuple[float, float]:
    """The ``level`` percentile interval of the set's mIoU over images resampled with replacement."""
    stats = image_stats(per_image)
    counts = image_counts(len(stats), samples, np.random.default_rng(seed))
    return percentiles(miou_of_stats(counts @ stats), level)


@dataclass(frozen=True)
class Estimate:
    """A mean mIoU over seeds with its interval: ``method`` says what was resampled."""

    value: float
    low: float
    high: float
    method: str  # "seeds x images" | "images" | "seeds (t)" | "paired seeds (t)" | "" (no interval)

    @property
    def excludes_zero(self) -> bool:
        """The interval lies on one side of 0 (a difference that the data can tell apart from none)."""
        return bool(self.method) and (self.low > 0 or self.high < 0)


def _check_same_images(sets: Sequence[np.ndarray]) -> int:
    sizes = {len(s) for s in sets}
    if len(sizes) != 1:
        raise InvalidValue(f"the per-image matrices cover different numbers of images: {sorted(sizes)}")
    return sizes.pop()


def _seed_draws(seeds: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, seeds, (samples, seeds))


def seeds_images(
    per_seed: Sequence[np.ndarray], samples: int = SAMPLES, seed: int = SEED, level: float = LEVEL
) -> Estimate:
    """The mean mIoU of one network over its training seeds (one (images, C, C) array per seed, the same images in
    the same order), with a percentile interval from resampling the images and, with two seeds or more, the seeds
    too: each resample draws the images once (shared by every seed: they are the same images) and the seeds once,
    and averages the drawn seeds' mIoUs on the drawn images."""
    stats = [image_stats(m) for m in per_seed]
    images = _check_same_images(stats)
    value = float(np.mean([miou_of_stats(s.sum(0)) for s in stats]))
    rng = np.random.default_rng(seed)
    counts = image_counts(images, samples, rng)
    per_draw = np.stack([miou_of_stats(counts @ s) for s in stats], axis=1)  # (samples, seeds)
    if len(stats) == 1:
        return Estimate(value, *percentiles(per_draw[:, 0], level), "images")
    drawn = _seed_draws(len(stats), samples, rng)
    replicates = np.take_along_axis(per_draw, drawn, axis=1).mean(1)
    return Estimate(value, *percentiles(replicates, level), "seeds x images")


def paired_difference(
    a: dict[int, np.ndarray],
    b: dict[int, np.ndarray],
    samples: int = SAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Estimate:
    """mIoU(a) - mIoU(b) for two networks scored on the same images (seed -> (images, C, C) each), with a paired
    bootstrap interval: every resample draws one set of images for both. Seeds both have are paired (one draw of
    those seeds for both, the difference taken seed by seed); without a common seed each side's seeds are drawn on
    their own. The value is the mean over the seeds used (the common ones when there are any)."""
    common = sorted(set(a) & set(b))
    sa, sb = (common, common) if common else (sorted(a), sorted(b))
    stats_a = [image_stats(a[s]) for s in sa]
    stats_b = [image_stats(b[s]) for s in sb]
    images = _check_same_images(stats_a + stats_b)
    value = float(
        np.mean([miou_of_stats(s.sum(0)) for s in stats_a]) - np.mean([miou_of_stats(s.sum(0)) for s in stats_b])
    )
    rng = np.random.default_rng(seed)
    counts = image_counts(images, samples, rng)
    draws_a = np.stack([miou_of_stats(counts @ s) for s in stats_a], axis=1)
    draws_b = np.stack([miou_of_stats(counts @ s) for s in stats_b], axis=1)
    if common:
        diff = draws_a - draws_b  # seed by seed
        if len(common) > 1:
            diff = np.take_along_axis(diff, _seed_draws(len(common), samples, rng), axis=1)
        replicates = diff.mean(1)
    else:
        if len(sa) > 1:
            draws_a = np.take_along_axis(draws_a, _seed_draws(len(sa), samples, rng), axis=1)
        if len(sb) > 1:
            draws_b = np.take_along_axis(draws_b, _seed_draws(len(sb), samples, rng), axis=1)
        replicates = draws_a.mean(1) - draws_b.mean(1)
    return Estimate(value, *percentiles(replicates, level), "paired seeds x images" if len(common) > 1 else "images")


def t_interval(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean and Student-t interval of per-seed values (records without per-image matrices): only the seeds'
    spread, nothing of the images'. One value gives no interval."""
    from scipy.stats import t

    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return Estimate(mean, float("nan"), float("nan"), "")
    half = float(t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return Estimate(mean, mean - half, mean + half, "seeds (t)")


def summarize(times_ms: list[float]) -> dict:
    """Median, p90 and min of timings in milliseconds, and how many."""
    return {
        "median_ms": statistics.median(times_ms),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "min_ms": min(times_ms),
        "repeats": len(times_ms),
    }
