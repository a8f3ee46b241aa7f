"""Transforms: image and mask stay aligned; scale, pad, crop and flip hold exactly."""

import numpy as np
import pytest
import torch

from deeplab_mobile.data import VOCSegmentation
from deeplab_mobile.data.transforms import TRAIN_SCALES, EvalTransform, Normalize, TrainTransform, pad_collate
from tests.helpers import blocks_mask

COLOURS = np.random.default_rng(7).integers(0, 256, (21, 3)).astype(np.uint8)
MEAN = (0.485, 0.456, 0.406)
MEAN_PIXEL = [124, 116, 104]


def test_scales_are_deeplabs():
    assert TRAIN_SCALES == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


@pytest.mark.parametrize("seed", range(12))
def test_mask_derived_from_image_stays_derivable(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(40, 120, 2)
    mask = blocks_mask(h, w, rng)
    image = COLOURS[mask]  # the image is a function of the mask
    img, out = TrainTransform(crop_size=64, mean=MEAN, seed=seed)(image, mask)
    img = img.numpy().astype(int)
    out = out.numpy()
    # Where the 3x3 neighbourhood of the mask is one class, linear interpolation of the image is exact.
    # The crop's own border is excluded: its neighbours outside the crop are unknown.
    pad = np.pad(out, 1, constant_values=254)
    uniform = np.ones_like(out, bool)
    for dy in range(3):
        for dx in range(3):
            uniform &= pad[dy : dy + out.shape[0], dx : dx + out.shape[1]] == out
    inside = uniform & (out != 255)
    assert inside.sum() > 100
    np.testing.assert_allclose(img[inside], COLOURS[out[inside]].astype(int), atol=2)  # fixed-point rounding
    padded = out == 255  # the source mask has no 255: these pixels are padding
    assert (img[padded] == MEAN_PIXEL).all()


def test_output_size_and_types():
    rng = np.random.default_rng(0)
    mask = blocks_mask(90, 70, rng)
    t = TrainTransform(crop_size=33, mean=MEAN, seed=0)
    for _ in range(20):
        img, out = t(COLOURS[mask], mask)
        assert img.shape == (33, 33, 3) and img.dtype == torch.uint8
        assert out.shape == (33, 33) and out.dtype == torch.int64


def test_pad_is_bottom_right_with_mean_pixel_and_255():
    mask = np.ones((40, 50), np.uint8)
    t = TrainTransform(crop_size=64, mean=MEAN, scales=(1.0,), flip=False, seed=0)
    img, out = t(COLOURS[mask], mask)
    assert (out[:40, :50] == 1).all() and (out[40:] == 255).all() and (out[:, 50:] == 255).all()
    assert (img[40:] == torch.tensor(MEAN_PIXEL)).all() and (img[:, 50:] == torch.tensor(MEAN_PIXEL)).all()


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_scale_is_exact(scale):
    mask = np.full((30, 20), 3, np.uint8)
    t = TrainTransform(crop_size=64, mean=MEAN, scales=(scale,), flip=False, seed=0)
    _, out = t(COLOURS[mask], mask)
    assert (out != 255).sum() == int(30 * scale + 0.5) * int(20 * scale + 0.5)


def test_crop_is_a_window_of_the_input():
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 21, (100, 120)).astype(np.uint8)
    t = TrainTransform(crop_size=32, mean=MEAN, scales=(1.0,), flip=False, seed=1)
    _, out = t(COLOURS[mask], mask)
    out = out.numpy()
    hits = [(y, x) for y in range(69) for x in range(89) if (mask[y : y + 32, x : x + 32] == out).all()]
    assert len(hits) == 1


def test_flip_mirrors_image_and_mask_together():
    rng = np.random.default_rng(5)
    mask = blocks_mask(80, 80, rng)
    flipped = 0
    for seed in range(10):
        a_img, a_mask = TrainTransform(64, MEAN, flip=False, seed=seed)(COLOURS[mask], mask)
        b_img, b_mask = TrainTransform(64, MEAN, flip=True, seed=seed)(COLOURS[mask], mask)
        if torch.equal(b_mask, a_mask.flip(-1)) and not torch.equal(b_mask, a_mask):
            assert torch.equal(b_img, a_img.flip(1))
            flipped += 1
        else:
            assert torch.equal(b_img, a_img) and torch.equal(b_mask, a_mask)
    assert 0 < flipped < 10


def test_eval_keeps_full_image_and_collate_pads():
    rng = np.random.default_rng(0)
    m1, m2 = blocks_mask(30, 40, rng), blocks_mask(35, 25, rng)
    t = EvalTransform()
    batch = [t(COLOURS[m1], m1), t(COLOURS[m2], m2)]
    assert batch[0][0].shape == (30, 40, 3)
    images, masks, sizes = pad_collate(batch, fill=MEAN_PIXEL)
    assert images.shape == (2, 35, 40, 3) and masks.shape == (2, 35, 40)
    assert images.dtype == torch.uint8 and masks.dtype == torch.int64
    assert sizes.tolist() == [[30, 40], [35, 25]]
    assert (masks[0, 30:] == 255).all() and (masks[1, :, 25:] == 255).all()
    assert torch.equal(masks[1, :35, :25], torch.from_numpy(m2.astype(np.int64)))
    assert (images[1, :, 25:] == torch.tensor(MEAN_PIXEL)).all()
    assert torch.equal(images[0, :30, :40], batch[0][0])
    # DeepLab's evaluation canvas: at least min_size x min_size, bottom/right, whatever the batch holds
    images, masks, _ = pad_collate(batch[:1], fill=(1, 2, 3), min_size=48)
    assert images.shape == (1, 48, 48, 3) and (images[0, 30:] == torch.tensor([1, 2, 3])).all()
    assert (masks[0, :, 40:] == 255).all() and torch.equal(masks[0, :30, :40], batch[0][1])


def test_normalize_maps_mean_pixel_to_zero():
    norm = Normalize(MEAN, (0.229, 0.224, 0.225))
    x = torch.tensor(MEAN_PIXEL, dtype=torch.uint8).view(1, 1, 1, 3)
    assert norm(x).abs().max() < 0.01
    white = norm(torch.full((1, 1, 1, 3), 255, dtype=torch.uint8)).flatten()
    torch.testing.assert_close(white, (1 - torch.tensor(MEAN)) / torch.tensor((0.229, 0.224, 0.225)))


class Same(VOCSegmentation):  # every index is the same image: only the augmentation differs
    def __getitem__(self, index):
        return super().__getitem__(0)


@pytest.mark.slow
def test_loader_workers_draw_different_augmentations(synthetic_voc):
    from deeplab_mobile.data.loader import train_loader

    ds = Same(synthetic_voc, "train", transform=TrainTransform(48, MEAN, seed=0))
    torch.manual_seed(0)
    masks = [m.numpy().tobytes() for _, m in train_loader(ds, batch_size=1, workers=2)][:8]
    # Batches alternate between the two workers; copies of one RNG would give pairwise-equal streams.
    assert sum(masks[i] != masks[i + 1] for i in range(0, 8, 2)) >= 3


def test_normalize_gives_nchw_channels_last():
    norm = Normalize(MEAN, (0.229, 0.224, 0.225))
    x = torch.arange(2 * 5 * 7 * 3, dtype=torch.uint8).view(2, 5, 7, 3)
    y = norm(x)
    assert y.shape == (2, 3, 5, 7) and y.is_contiguous(memory_format=torch.channels_last)
    assert abs(y[1, 2, 4, 6].item() - (x[1, 4, 6, 2].item() / 255 - MEAN[2]) / 0.225) < 1e-5
