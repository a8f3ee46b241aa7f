"""Every training loss against an independent computation (numpy, pixel by pixel) on hand-built batches: one with
ignored pixels, one where a class is absent, one that is all ignored; ignored pixels get no gradient."""

import numpy as np
import pytest
import torch

from deeplab_mobile.engine.losses import (
    CrossEntropy,
    DiceLoss,
    FocalLoss,
    HardPixelCE,
    LovaszLoss,
    SMPLoss,
    WeightedSum,
    segmentation_loss,
)

C = 4


def batch(absent: int | None = None, all_ignored: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(2, C, 5, 6))
    masks = rng.integers(0, C, size=(2, 5, 6))
    if absent is not None:
        masks[masks == absent] = (absent + 1) % C
    masks[0, :2, :3] = 255
    masks[1, -1] = 255
    if all_ignored:
        masks[:] = 255
    return logits, masks


def softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def labelled_pixels(logits, masks):
    """(pixel logits (P, C), labels (P,)) of the labelled pixels."""
    keep = masks != 255
    return np.moveaxis(logits, 1, -1)[keep], masks[keep]


def ce_by_hand(logits, masks, weights=None):
    x, y = labelled_pixels(logits, masks)
    if len(y) == 0:
        return 0.0
    w = np.ones(C) if weights is None else np.asarray(weights)
    nll = [np.log(np.exp(row).sum()) - row[t] for row, t in zip(x, y, strict=True)]
    return float(sum(w[t] * v for t, v in zip(y, nll, strict=True)) / len(y))


def hard_pixels_by_hand(logits, masks, fraction, weights=None):
    w = np.ones(C) if weights is None else np.asarray(weights)
    losses = []
    for n, i, j in np.ndindex(masks.shape):
        t = masks[n, i, j]
        row = logits[n, :, i, j]
        losses.append(0.0 if t == 255 else w[t] * (np.log(np.exp(row).sum()) - row[t]))
    k = int(np.float32(fraction) * np.float32(len(losses)))
    top = sorted(losses, reverse=True)[:k]
    present = sum(v != 0 for v in top)
    return float(sum(top) / present) if present else 0.0


def dice_by_hand(logits, masks):
    p, y = labelled_pixels(softmax(logits), masks)
    losses = []
    for c in range(C):
        t = (y == c).astype(float)
        if t.sum() == 0:
            losses.append(0.0)  # a class absent from the batch's labels counts 0
            continue
        losses.append(1 - 2 * (p[:, c] * t).sum() / max((p[:, c] + t).sum(), 1e-7))
    return float(np.mean(losses))


def focal_by_hand(logits, masks, gamma=2.0):
    x, y = labelled_pixels(logits, masks)
    if len(y) == 0:
        return 0.0  # the project's rule for a batch with no labelled pixel (SMP's own mean of nothing is NaN)
    per_class = []
    for c in range(C):
        t = (y == c).astype(float)
        bce = np.log1p(np.exp(-x[:, c])) * t + np.log1p(np.exp(x[:, c])) * (1 - t)
        per_class.append(np.mean((1 - np.exp(-bce)) ** gamma * bce))
    return float(np.mean(per_class))


def lovasz_by_hand(logits, masks):
    """Lovasz-softmax (Berman et al., CVPR 2018, Algorithm 1) over the classes present."""
    p, y = labelled_pixels(softmax(logits), masks)
    losses = []
    for c in range(C):
        fg = (y == c).astype(float)
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - p[:, c])
        order = np.argsort(-errors, kind="stable")
        fg_sorted = fg[order]
        intersection = fg.sum() - np.cumsum(fg_sorted)
        union = fg.sum() + np.cumsum(1 - fg_sorted)
        jaccard = 1 - intersection / union
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
        losses.append(float(errors[order] @ jaccard))
    return float(np.mean(losses)) if losses else 0.0


WEIGHTS = [0.5, 2.0, 1.0, 3.0]

CASES = {
    "ce": (lambda: CrossEntropy(), lambda lg, m: ce_by_hand(lg, m)),
    "weighted_ce": (lambda: CrossEntropy(WEIGHTS), lambda lg, m: ce_by_hand(lg, m, WEIGHTS)),
    "hard_pixels": (lambda: HardPixelCE(0.3), lambda lg, m: hard_pixels_by_hand(lg, m, 0.3)),
    "weighted_hard_pixels": (
        lambda: HardPixelCE(0.3, class_weights=WEIGHTS),
        lambda lg, m: hard_pixels_by_hand(lg, m, 0.3, WEIGHTS),
    ),
    "dice": (lambda: SMPLoss("dice"), dice_by_hand),
    "focal": (lambda: SMPLoss("focal", gamma=2.0), focal_by_hand),
    "lovasz": (lambda: SMPLoss("lovasz"), lovasz_by_hand),
    "DiceLoss": (lambda: DiceLoss(), dice_by_hand),
    "FocalLoss": (lambda: FocalLoss(gamma=2.0), focal_by_hand),
    "LovaszLoss": (lambda: LovaszLoss(), lovasz_by_hand),
    "ce+dice": (
        lambda: WeightedSum([CrossEntropy(), SMPLoss("dice")], [1.0, 0.5]),
        lambda lg, m: ce_by_hand(lg, m) + 0.5 * dice_by_hand(lg, m),
    ),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("case", ["ignored", "absent_class", "all_ignored"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_loss_matches_an_independent_computation(name, case, layout):
    make, by_hand = CASES[name]
    logits, masks = batch(absent=2 if case == "absent_class" else None, all_ignored=case == "all_ignored")
    if case == "absent_class":
        assert not (masks == 2).any()
    x = torch.tensor(logits, dtype=torch.float32).contiguous(memory_format=layout).requires_grad_()
    loss = make()(x, torch.tensor(masks))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(by_hand(logits, masks), rel=1e-5, abs=1e-6)
    loss.backward()
    ignored = torch.tensor(masks == 255)[:, None].expand_as(x)
    assert torch.isfinite(x.grad).all()
    assert x.grad[ignored].abs().max() == 0  # 255 pixels get no gradient
    if case == "all_ignored":
        assert loss.item() == 0 and x.grad.abs().max() == 0


def test_unweighted_ce_is_the_trainers_loss_bit_for_bit():
    logits, masks = batch()
    x, m = torch.tensor(logits, dtype=torch.float32), torch.tensor(masks)
    assert torch.equal(CrossEntropy()(x, m, step=7), segmentation_loss(x, m))


def test_hard_pixel_share_ramps_linearly_from_all_to_top_k():
    loss = HardPixelCE(0.2, ramp_steps=100)
    assert [loss.fraction(t) for t in (0, 50, 100, 1000)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    logits, masks = batch(seed=3)
    x, m = torch.tensor(logits, dtype=torch.float32), torch.tensor(masks)
    for step, fraction in ((0, 1.0), (50, 0.6), (200, 0.2)):
        assert loss(x, m, step).item() == pytest.approx(hard_pixels_by_hand(logits, masks, fraction), rel=1e-5)
    # at share 1 it is the plain mean over labelled pixels
    assert loss(x, m, 0).item() == pytest.approx(ce_by_hand(logits, masks), rel=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="top_k"):
        HardPixelCE(0.0)
    with pytest.raises(ValueError, match="class weights"):
        CrossEntropy([1.0, -1.0])
    with pytest.raises(ValueError, match="choose one of"):
        SMPLoss("tversky")
    with pytest.raises(ValueError, match="at least one term"):
        WeightedSum([])
