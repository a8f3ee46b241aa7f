"""Bootstrap intervals of mIoU: against computations written here from the definitions (loops over resamples of
summed confusion matrices), against SciPy's bootstrap, and by coverage on a population whose mIoU is known."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from deeplab_mobile import stats
from deeplab_mobile.metrics import scores


def random_images(rng, images, classes, pixels=400, accuracy=0.7, absent=()):
    """Per-image confusion matrices: each image shows a few classes; a pixel is right with ``accuracy``."""
    out = np.zeros((images, classes, classes), np.int64)
    shown = [c for c in range(classes) if c not in absent]
    for i in range(images):
        present = rng.choice(shown, size=min(3, len(shown)), replace=False)
        truth = rng.choice(present, size=pixels)
        wrong = rng.random(pixels) > accuracy
        pred = np.where(wrong, rng.choice(shown, size=pixels), truth)
        np.add.at(out[i], (truth, pred), 1)
    return out


def miou_by_hand(conf):
    """mIoU of one confusion matrix from the definition: classes with no pixel in truth or prediction left out."""
    ious = []
    for c in range(conf.shape[0]):
        tp, fn, fp = conf[c, c], conf[c].sum() - conf[c, c], conf[:, c].sum() - conf[c, c]
        if tp + fn + fp:
            ious.append(tp / (tp + fn + fp))
    return sum(ious) / len(ious)


def draws(seed, images, samples, seeds=None):
    """The resamples as ``stats`` documents them: images first, then seeds, from one seeded generator."""
    rng = np.random.default_rng(seed)
    image_idx = rng.integers(0, images, (samples, images))
    seed_idx = rng.integers(0, seeds, (samples, seeds)) if seeds else None
    return image_idx, seed_idx


def test_the_image_bootstrap_is_the_percentiles_of_resampled_summed_matrices():
    per_image = random_images(np.random.default_rng(1), 40, 6, absent=(5,))
    low, high = stats.bootstrap_miou(per_image, samples=1000, seed=3)
    idx, _ = draws(3, 40, 1000)
    replicates = [miou_by_hand(per_image[row].sum(0)) for row in idx]
    assert (low, high) == pytest.approx(tuple(np.percentile(replicates, [2.5, 97.5])), abs=1e-12)
    point = miou_by_hand(per_image.sum(0))
    assert low < point < high
    assert point == pytest.approx(scores(per_image.sum(0))["miou"], abs=1e-12)


def test_the_image_bootstrap_agrees_with_scipy():
    """SciPy's percentile bootstrap over the same images (its own random draws): the same interval to within the
    Monte Carlo error of 5000 resamples each."""
    per_image = random_images(np.random.default_rng(2), 60, 5)
    low, high = stats.bootstrap_miou(per_image, samples=5000, seed=0)

    def statistic(idx, axis=-1):
        return np.array([miou_by_hand(per_image[np.asarray(row, int)].sum(0)) for row in np.atleast_2d(idx)])

    ref = scipy_stats.bootstrap(
        (np.arange(60),), statistic, n_resamples=5000, method="percentile", vectorized=True, random_state=1
    ).confidence_interval
    width = high - low
    assert abs(low - ref.low) < 0.1 * width and abs(high - ref.high) < 0.1 * width


def test_a_class_absent_from_a_resample_is_left_out_of_its_mean():
    """Class 2 is in one image only: resamples without it average two classes, not three with a zero."""
    a = np.array([[[5, 0, 0], [0, 5, 0], [0, 0, 0]]])  # classes 0 and 1, perfect
    b = np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 4]]])  # class 2 only, perfect
    c = np.array([[[3, 2, 0], [1, 4, 0], [0, 0, 0]]])
    per_image = np.concatenate([a, b, c])
    counts = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    got = stats.miou_of_stats(counts @ stats.image_stats(per_image))
    assert got[0] == pytest.approx(miou_by_hand(2 * a[0] + c[0]))  # (IoU0 + IoU1) / 2
    assert got[1] == pytest.approx(1.0)  # class 2 alone


def test_seeds_and_images_are_resampled_together():
    rng = np.random.default_rng(4)
    per_seed = [random_images(rng, 30, 4, accuracy=a) for a in (0.6, 0.7, 0.8)]
    got = stats.seeds_images(per_seed, samples=1000, seed=5)
    idx, seed_idx = draws(5, 30, 1000, seeds=3)
    replicates = [
        np.mean([miou_by_hand(per_seed[s][row].sum(0)) for s in picks])
        for row, picks in zip(idx, seed_idx, strict=True)
    ]
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(replicates, [2.5, 97.5])), abs=1e-12)
    assert got.value == pytest.approx(np.mean([miou_by_hand(m.sum(0)) for m in per_seed]))
    assert got.method == "seeds x images"
    alone = stats.seeds_images(per_seed[1:2], samples=1000, seed=5)  # one seed: the image bootstrap
    assert alone.method == "images"
    assert (alone.low, alone.high) == pytest.approx(stats.bootstrap_miou(per_seed[1], 1000, 5))
    # the seeds' spread widens the interval beyond any one seed's
    assert got.high - got.low > alone.high - alone.low


def test_the_paired_difference_gets_sign_and_interval_right_when_one_model_wins_on_every_image():
    """Model A is right on more pixels of every image than model B (same images, same truth, images of varied
    difficulty): the difference is positive with an interval above 0; swapped, it is the mirror image; unpaired,
    the images' difficulty would swamp it."""
    rng = np.random.default_rng(6)
    images, classes, pixels = 50, 4, 300
    a = np.zeros((images, classes, classes), np.int64)
    b = np.zeros_like(a)
    for i in range(images):
        truth = rng.integers(0, classes, pixels)
        noise = rng.integers(0, classes, pixels)
        u, hard = rng.random(pixels), rng.uniform(0.0, 0.5)  # images differ in how hard they are, for both models
        np.add.at(a[i], (truth, np.where(u < hard, noise, truth)), 1)  # B errs wherever A errs, and more
        np.add.at(b[i], (truth, np.where(u < hard + 0.1, noise, truth)), 1)
        assert np.trace(a[i]) >= np.trace(b[i])
    ab = stats.paired_difference({0: a}, {0: b}, samples=1000, seed=7)
    assert ab.value == pytest.approx(miou_by_hand(a.sum(0)) - miou_by_hand(b.sum(0)))
    assert 0 < ab.low < ab.value < ab.high and ab.excludes_zero
    ba = stats.paired_difference({0: b}, {0: a}, samples=1000, seed=7)
    assert (ba.value, ba.low, ba.high) == pytest.approx((-ab.value, -ab.high, -ab.low), abs=1e-12)
    # independently: the same image draw for both models, the difference per resample
    idx, _ = draws(7, images, 1000)
    diffs = [miou_by_hand(a[row].sum(0)) - miou_by_hand(b[row].sum(0)) for row in idx]
    assert (ab.low, ab.high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    # unpaired, the same two models look far less certain: pairing is what narrows the interval
    unpaired = np.subtract(
        *[[miou_by_hand(m[row].sum(0)) for row in draws(s, images, 1000)[0]] for m, s in ((a, 8), (b, 9))]
    )
    assert np.subtract(*np.percentile(unpaired, [97.5, 2.5])) > 1.5 * (ab.high - ab.low)


def test_the_paired_difference_pairs_common_seeds():
    rng = np.random.default_rng(10)
    a = {s: random_images(rng, 25, 4, accuracy=0.75) for s in (0, 1, 2)}
    b = {s: random_images(rng, 25, 4, accuracy=0.7) for s in (0, 1, 3)}
    got = stats.paired_difference(a, b, samples=1000, seed=11)
    common = [0, 1]  # seed 2 of a and seed 3 of b have no partner
    idx, seed_idx = draws(11, 25, 1000, seeds=2)
    diffs = [
        np.mean([miou_by_hand(a[common[s]][row].sum(0)) - miou_by_hand(b[common[s]][row].sum(0)) for s in picks])
        for row, picks in zip(idx, seed_idx, strict=True)
    ]
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    assert got.value == pytest.approx(np.mean([miou_by_hand(a[s].sum(0)) - miou_by_hand(b[s].sum(0)) for s in common]))
    assert got.method == "paired seeds x images"


def test_different_images_are_refused():
    with pytest.raises(ValueError, match="different numbers of images"):
        stats.paired_difference({0: np.zeros((3, 2, 2))}, {0: np.zeros((4, 2, 2))})


def test_the_t_interval_over_seeds_is_students():
    values = [0.71, 0.74, 0.73, 0.70]
    got = stats.t_interval(values)
    ref = scipy_stats.t.interval(0.95, 3, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (got.low, got.high) == pytest.approx(ref) and got.method == "seeds (t)"
    assert stats.t_interval([0.7]).method == ""  # one value: no interval


def test_the_interval_covers_the_true_miou_about_95_percent_of_the_time():
    """A population of 20,000 images whose set mIoU is the truth; 400 sets of 120 images drawn from it, each with
    its 95% bootstrap interval. The share that covers the truth is 0.95 up to the binomial spread of 400 trials
    (sd 0.011) and the percentile bootstrap's small-sample bias: within 0.035 of 0.95. An interval that ignored
    the images' spread (one image draw per set, the point alone) would cover almost never."""
    rng = np.random.default_rng(12)
    population = random_images(rng, 20000, 5, pixels=200, accuracy=0.65)
    truth = miou_by_hand(population.sum(0))
    population_stats = stats.image_stats(population)
    covered = 0
    for trial in range(400):
        sample = population[rng.integers(0, len(population), 120)]
        low, high = stats.bootstrap_miou(sample, samples=1000, seed=trial)
        covered += low <= truth <= high
    assert population_stats.shape == (20000, 15)
    assert abs(covered / 400 - 0.95) <= 0.035, covered / 400
