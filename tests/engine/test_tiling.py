"""Sliding-window inference: the windows cover the image, blending matches a hand computation, one window covering
the image is exactly whole-image inference (single scale and MF + flip), a per-pixel network gives the same result
tiled or whole, only a band of rows is held, and the evaluator and ``Segmenter`` take a tiling."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplab_mobile.engine import tiling as tiling_module
from deeplab_mobile.engine.evaluator import predict_probs
from deeplab_mobile.engine.tiling import Tiling, tiled_labels, tiled_probs
from deeplab_mobile.models import build_model


def test_windows_cover_the_image_and_end_at_its_edges():
    t = Tiling((6, 5), overlap=0.5)
    assert t.stride == (3, 2)
    assert t.starts(10, 0) == [0, 3, 4]  # the last window moved back to end at row 10
    assert t.starts(6, 0) == [0] and t.starts(4, 0) == [0]
    assert t.windows(4, 5) == [(0, 0, 4, 5)]  # shorter than the window: one window of the image's length
    covered = np.zeros((17, 13), int)
    for top, left, h, w in t.windows(17, 13):
        assert top + h <= 17 and left + w <= 13
        covered[top : top + h, left : left + w] += 1
    assert covered.min() >= 1
    with pytest.raises(ValueError, match="overlap"):
        Tiling(8, overlap=1.0)
    with pytest.raises(ValueError, match="blend"):
        Tiling(8, blend="max")


def test_mean_blend_is_the_average_over_the_windows_covering_each_pixel():
    """Each window answers its own index as a one-hot class: a pixel's probability of class k is then the share of
    the windows covering it that are window k, counted here by hand."""
    t = Tiling((4, 6), overlap=0.5, blend="mean")
    windows = t.windows(7, 10)
    calls = []

    def infer(crop):
        k = len(calls)
        calls.append(crop.shape[-2:])
        out = torch.zeros(crop.shape[0], len(windows), *crop.shape[-2:])
        out[:, k] = 1
        return out

    probs = tiled_probs(infer, torch.zeros(1, 3, 7, 10), t)
    expected = np.zeros((len(windows), 7, 10))
    for k, (top, left, h, w) in enumerate(windows):
        expected[k, top : top + h, left : left + w] = 1
    expected /= expected.sum(0, keepdims=True)
    np.testing.assert_allclose(probs[0].numpy(), expected, atol=1e-6)
    assert all(tuple(s) == (4, 6) for s in calls)  # every window is a full window


@pytest.mark.parametrize("blend", ["mean", "gaussian"])
@pytest.mark.parametrize("size,overlap", [((5, 7), 0.25), ((8, 8), 0.5), ((3, 20), 0.0)])
def test_a_per_pixel_network_gives_the_same_result_tiled_or_whole(blend, size, overlap):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 6, 1)

    def infer(x):
        return net(x).softmax(1)

    x = torch.randn(2, 3, 19, 23)
    t = Tiling(size, overlap, blend)
    with torch.no_grad():
        whole = infer(x)
        torch.testing.assert_close(tiled_probs(infer, x, t), whole, atol=1e-6, rtol=1e-5)
        assert torch.equal(tiled_labels(infer, x, t), whole.argmax(1))


def blended_whole(infer, x, t):
    """The blend written the plain way, independently of the streaming one: every window's weighted probabilities
    added into image-sized sums in window order, then divided by the summed weights."""
    n, _, h, w = x.shape
    total, norm = None, torch.zeros(h, w)
    weight = None
    for top, left, wh, ww in t.windows(h, w):
        probs = infer(x[:, :, top : top + wh, left : left + ww])
        if total is None:
            total, weight = torch.zeros(n, probs.shape[1], h, w), t.weight(wh, ww, x.device)
        total[:, :, top : top + wh, left : left + ww] += probs * weight
        norm[top : top + wh, left : left + ww] += weight
    return total / norm


@pytest.mark.parametrize("size,overlap", [(8, 0.25), ((6, 9), 0.5), (7, 0.75), ((5, 30), 0.0)])
def test_the_streamed_blend_is_the_plain_blend_to_the_bit_holding_a_strip(size, overlap):
    """Blocks of one row of windows are final left to right and only the rows the next row of windows overlaps
    are carried down: the result is the plain image-sized blend bit for bit, the blocks partition the image, and
    no block is wider than a window or taller than a window row's final rows."""
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 4, 3, padding=1)  # not per pixel: windows see different context

    def infer(c):
        return net(c).softmax(1)

    x = torch.randn(1, 3, 61, 47)
    t = Tiling(size, overlap, "gaussian")
    with torch.no_grad():
        want = blended_whole(infer, x, t)
        blocks = list(tiling_module._blocks(infer, tiling_module._crops(x), t))
        assert torch.equal(tiled_probs(infer, x, t), want)
        assert torch.equal(tiled_labels(infer, x, t).long(), want.argmax(1))
    covered = torch.zeros(61, 47, dtype=torch.int64)
    for top, left, block in blocks:
        covered[top : top + block.shape[2], left : left + block.shape[3]] += 1
        assert block.shape[3] <= t.size[1] and block.shape[2] <= t.size[0]
    assert torch.equal(covered, torch.ones_like(covered))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("mobilenet_v2", head="no_aspp", width=0.35, output_stride=16, num_classes=5)
    return m.eval()


@pytest.mark.parametrize("scales,flip", [((1.0,), False), ((0.75, 1.0, 1.25), True)])
def test_one_window_covering_the_image_is_exactly_whole_image_inference(model, scales, flip):
    x = torch.randn(1, 3, 49, 65)
    with torch.no_grad():
        whole = predict_probs(model, x, scales, flip)
        tiled = tiled_probs(lambda c: predict_probs(model, c, scales, flip), x, Tiling((65, 65)))
        labels = tiled_labels(lambda c: predict_probs(model, c, scales, flip), x, Tiling(129))
    assert torch.equal(tiled, whole)
    assert torch.equal(labels, whole.argmax(1))


def test_the_evaluator_scores_tiled_inference(model):
    from deeplab_mobile.engine.evaluator import evaluate

    rng = np.random.default_rng(0)
    images = torch.tensor(rng.integers(0, 256, (1, 40, 70, 3)), dtype=torch.uint8)
    masks = torch.tensor(rng.integers(0, 5, (1, 40, 70)))
    batch = [(images, masks, torch.tensor([[40, 70]]))]

    def normalize(b):
        return b.permute(0, 3, 1, 2).float() / 255

    whole = evaluate(model, normalize, batch, 5)
    covered = evaluate(model, normalize, batch, 5, tile=Tiling((40, 70)))
    assert torch.equal(whole.confusion, covered.confusion)
    tiled = evaluate(model, normalize, batch, 5, tile=Tiling(33, overlap=0.5))
    assert tiled.confusion.sum() == whole.confusion.sum() == 40 * 70


def test_segmenter_refuses_an_image_too_large_for_memory_and_tiles_it(model, monkeypatch):
    from deeplab_mobile import predict as predict_module
    from deeplab_mobile.predict import Segmenter, TooLarge

    segmenter = Segmenter(model, [str(i) for i in range(5)], model.encoder.mean, model.encoder.std)
    image = np.random.default_rng(0).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    need = tiling_module.whole_image_bytes(model, (1, 3, 90, 140), 5)
    assert need > 4 * 5 * 90 * 140 * 4  # the probability maps and at least one activation
    monkeypatch.setattr(predict_module, "available_bytes", lambda device: need // 2)
    with pytest.raises(TooLarge, match=r"140x90 image needs about .* GiB.*--tile 513"):
        segmenter.predict(image, max_size=None, pad_to=1)
    labels = segmenter.predict(image, max_size=None, pad_to=1, tile=Tiling(64))
    assert labels.shape == (90, 140) and labels.dtype == np.uint8
    monkeypatch.setattr(predict_module, "available_bytes", lambda device: need * 2)
    whole = segmenter.predict(image, max_size=None, pad_to=1)
    assert np.array_equal(segmenter.predict(image, max_size=None, pad_to=1, tile=Tiling(140)), whole)


def test_labels_are_the_argmax_of_the_full_resolution_resize_without_it(model):
    """The band-by-band resize and argmax give the labels of resizing all class maps to the image (PyTorch's
    kernel) and taking the argmax, up to float32 rounding at near ties; the class maps never exist at full size."""
    from deeplab_mobile import predict as predict_module

    torch.manual_seed(0)
    probs = torch.rand(5, 33, 47).softmax(0)
    for align in (False, True):
        want = F.interpolate(probs[None], size=(301, 421), mode="bilinear", align_corners=align)[0].argmax(0)
        old, predict_module.BAND_BYTES = predict_module.BAND_BYTES, 5 * 421 * 4 * 7  # bands of 7 rows
        try:
            got = predict_module.labels_at(probs, (301, 421), align)
        finally:
            predict_module.BAND_BYTES = old
        assert got.dtype == np.uint8 and (torch.from_numpy(got).long() == want).float().mean() > 0.999


def test_a_tiled_image_is_normalised_window_by_window_as_it_would_be_whole(model):
    """LazyInput's windows are the windows of the whole normalised, mean-padded input, to the bit."""
    from deeplab_mobile.data import Normalize
    from deeplab_mobile.engine.evaluator import mean_padded
    from deeplab_mobile.predict import LazyInput

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    padded = np.full((64, 80, 3), 124, np.uint8)
    padded[:50, :70] = image
    normalize = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    whole = mean_padded(normalize(torch.from_numpy(padded)[None]), torch.tensor([[50, 70]]))
    lazy = LazyInput(padded, (50, 70), normalize, torch.device("cpu"))
    for top, left, h, w in [(0, 0, 20, 30), (40, 60, 24, 20), (30, 0, 34, 80)]:
        assert torch.equal(lazy.crop(top, left, h, w), whole[:, :, top : top + h, left : left + w])


def test_a_refusal_comes_before_the_network_runs_and_counts_every_stage(model, monkeypatch):
    from deeplab_mobile import predict as predict_module
    from deeplab_mobile.predict import BAND_BYTES, Segmenter, TooLarge

    calls = []
    segmenter = Segmenter(model, [str(i) for i in range(5)], model.encoder.mean, model.encoder.std)
    segmenter.model.register_forward_pre_hook(lambda *_: calls.append(1))
    per_pixel = segmenter._network_bytes_per_pixel()
    calls.clear()
    h, w = 9000, 12000
    want = per_pixel * 513 * 513 + 3 * 513 * 513 + 12 * 513 * 513 + h * w + BAND_BYTES  # scaled to 513: small
    assert segmenter.memory_needed(h, w) == int(want)
    mf = segmenter.memory_needed(h, w, scales=(0.5, 1.0, 1.75))
    assert mf - segmenter.memory_needed(h, w) == int(per_pixel * 513 * 513 * (1.75**2 - 1))
    tiled = segmenter.memory_needed(h, w, max_size=None, tile=Tiling(513))
    assert tiled < 3 * h * w  # the window and the carried strip, not the image's class maps
    monkeypatch.setattr(predict_module, "available_bytes", lambda device: 1000)
    with pytest.raises(TooLarge, match="12000x9000 image"):
        segmenter.predict(np.zeros((h, w, 3), np.uint8))
    assert calls == []
