"""Evaluation: one confusion matrix over the whole set (VOC convention), padded batches, MF + flip averaging."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplab_mobile.data import Normalize, pad_collate
from deeplab_mobile.engine.evaluator import Protocol, evaluate, predict_probs, run_protocol
from deeplab_mobile.models import build_model

C = 5  # classes 0..4; class 4 never occurs in ground truth or prediction


class RedIsTheClass(nn.Module):
    """Predicts, at every pixel, the class written in the image's red channel (0-255 input, see ``identity``)."""

    def forward(self, x):
        return F.one_hot(x[:, 0].round().long().clamp(0, C - 1), C).permute(0, 3, 1, 2).float() * 10


identity = Normalize(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))  # keeps 0-255 values


def sample(pred, truth):
    pred, truth = np.asarray(pred, np.uint8), np.asarray(truth, np.int64)
    image = np.zeros((*pred.shape, 3), np.uint8)
    image[..., 0] = pred
    return torch.from_numpy(image), torch.from_numpy(truth)


# Two images of different sizes; 255 pixels; class 3 only in one image's ground truth.
PRED_A, TRUTH_A = [[0, 0, 1], [1, 2, 2]], [[0, 1, 1], [1, 2, 255]]
PRED_B, TRUTH_B = [[0, 0], [3, 1], [2, 2]], [[0, 0], [3, 3], [2, 255]]


def hand_scores(pairs):
    """IoU per class from (truth, pred) pixel pairs, counted in plain Python; classes with no pixel in either
    truth or prediction have no IoU and are left out of the mean."""
    ious = []
    for c in range(C):
        tp = sum(1 for t, p in pairs if t == c and p == c)
        fp = sum(1 for t, p in pairs if t != c and p == c)
        fn = sum(1 for t, p in pairs if t == c and p != c)
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else None)
    present = [v for v in ious if v is not None]
    return ious, sum(present) / len(present)


def pixel_pairs(*samples):
    return [
        (t, p)
        for pred, truth in samples
        for prow, trow in zip(pred, truth, strict=True)
        for p, t in zip(prow, trow, strict=True)
        if t != 255
    ]


@pytest.mark.parametrize("batch_size,pad_to", [(1, None), (2, None), (2, 8)])
def test_miou_from_one_confusion_matrix_over_the_set(batch_size, pad_to):
    batch = [sample(PRED_A, TRUTH_A), sample(PRED_B, TRUTH_B)]
    loader = [pad_collate(batch[i : i + batch_size], fill=(0, 0, 0), min_size=pad_to) for i in range(0, 2, batch_size)]
    s, conf, *_ = evaluate(RedIsTheClass(), identity, loader, C)
    ious, miou = hand_scores(pixel_pairs((PRED_A, TRUTH_A), (PRED_B, TRUTH_B)))
    assert ious[4] is None and np.isnan(s["iou"][4])  # absent from both: excluded, not counted as 0 or 1
    np.testing.assert_allclose([v for v in s["iou"] if v == v], [v for v in ious if v is not None])
    assert s["miou"] == pytest.approx(miou)
    assert conf.sum() == 10  # 12 labelled pixels minus the two 255s; padding never counts
    # A per-image average would differ: the matrix is accumulated over the whole set.
    per_image = np.mean([hand_scores(pixel_pairs(x))[1] for x in [(PRED_A, TRUTH_A), (PRED_B, TRUTH_B)]])
    assert abs(per_image - miou) > 0.01


class Pairs(torch.utils.data.Dataset):
    """The two samples above as a dataset with image ids (what ``per_image`` names its rows by)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]

    def names(self):
        return [f"img{i}" for i in range(len(self.samples))]


def hand_confusion(pred, truth):
    conf = np.zeros((C, C), np.int64)
    for t, p in pixel_pairs((pred, truth)):
        conf[t, p] += 1
    return conf


@pytest.mark.parametrize("batch_size", [1, 2])
def test_per_image_matrices_are_each_images_own_and_sum_to_the_set(batch_size):
    pairs = [(PRED_A, TRUTH_A), (PRED_B, TRUTH_B), (PRED_B, TRUTH_B)]
    dataset = Pairs([sample(p, t) for p, t in pairs])
    loader = torch.utils.data.DataLoader(dataset, batch_size, collate_fn=lambda b: pad_collate(b, fill=(0, 0, 0)))
    result = evaluate(RedIsTheClass(), identity, loader, C, per_image=True)
    assert result.names == ["img0", "img1", "img2"] and result.per_image.dtype == np.int64
    for got, (pred, truth) in zip(result.per_image, pairs, strict=True):
        assert (got == hand_confusion(pred, truth)).all()  # padding never counts
    assert (result.per_image.sum(0) == result.confusion.numpy()).all()


def test_a_shard_puts_its_images_back_in_the_whole_sets_order():
    """Under torchrun each process scores every world_size-th image; its rows land at their places in the whole
    set (the others stay zero until the ranks' matrices are summed)."""
    pairs = [(PRED_A, TRUTH_A), (PRED_B, TRUTH_B), (PRED_A, TRUTH_A)]
    dataset = Pairs([sample(p, t) for p, t in pairs])
    shard = torch.utils.data.Subset(dataset, [1])
    loader = torch.utils.data.DataLoader(shard, 1, collate_fn=lambda b: pad_collate(b, fill=(0, 0, 0)))
    result = evaluate(RedIsTheClass(), identity, loader, C, per_image=True)
    assert result.names == ["img0", "img1", "img2"]
    assert result.per_image[0].sum() == result.per_image[2].sum() == 0
    assert (result.per_image[1] == hand_confusion(PRED_B, TRUTH_B)).all()


def test_per_image_matrices_need_a_dataset():
    loader = [pad_collate([sample(PRED_A, TRUTH_A)], fill=(0, 0, 0))]
    with pytest.raises(ValueError, match="DataLoader over a dataset"):
        evaluate(RedIsTheClass(), identity, loader, C, per_image=True)


class LeftRightAsymmetric(nn.Module):
    """Logits depend on the column: class 0 on the left, class 1 on the right (not flip-equivariant)."""

    def forward(self, x):
        w = x.shape[-1]
        ramp = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(x.shape[0], 1, x.shape[2], w)
        return torch.cat([-ramp, ramp], 1) * 3


def test_flip_averages_the_mirrored_prediction():
    x = torch.zeros(1, 3, 4, 6)
    single = predict_probs(LeftRightAsymmetric(), x)
    both = predict_probs(LeftRightAsymmetric(), x, flip=True)
    # softmax(3r) for class 1 at column ramp r; the mirrored pass gives softmax(-3r); the average is 1/2.
    ramp = torch.linspace(-1, 1, 6)
    torch.testing.assert_close(single[0, 1, 0], torch.sigmoid(6 * ramp))
    torch.testing.assert_close(both, torch.full_like(both, 0.5))


def test_scales_are_averaged_at_the_input_size():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 12)
    got = predict_probs(conv, x, scales=(0.5, 1.0))
    small = F.interpolate(conv(F.interpolate(x, size=(4, 6), mode="bilinear")), size=(8, 12), mode="bilinear")
    want = (small.softmax(1) + conv(x).softmax(1)) / 2
    torch.testing.assert_close(got, want)
    assert got.shape == (1, 4, 8, 12)


def test_multi_scale_runs_deeplabs_sizes_and_resizes():
    """DeepLab's ``predict_labels_multi_scale`` on a 65-pixel input at OS8, with sizes written out by hand: scale
    0.5 -> 33 pixels (logits 5x5), 0.75 -> 49 (7x7), 1.25 -> 81 (11x11); logits resized to the logits grid of
    max(1, s) (9x9 below scale 1, 11x11 above), then to 65, every resize with align_corners=True."""
    torch.manual_seed(0)
    model = build_model(width=0.35, head="no_aspp", output_stride=8, geometry="deeplab").eval()
    seen = []
    logits = model.logits
    model.logits = lambda v: seen.append(tuple(v.shape[-2:])) or logits(v)
    x = torch.randn(1, 3, 65, 65)
    got = predict_probs(model, x, scales=(0.5, 0.75, 1.25), flip=True)
    assert seen == [(33, 33), (33, 33), (49, 49), (49, 49), (81, 81), (81, 81)]

    def resize(t, n):
        return F.interpolate(t, size=(n, n), mode="bilinear", align_corners=True)

    want = 0
    with torch.no_grad():
        for size, feat, grid in ((33, 5, 9), (49, 7, 9), (81, 11, 11)):
            xs = resize(x, size)
            for flip in (False, True):
                out = logits(xs.flip(-1) if flip else xs)
                assert out.shape[-1] == feat
                out = resize(out, grid)
                want = want + resize(out.flip(-1) if flip else out, 65).softmax(1)
    torch.testing.assert_close(got, want / 6)


class StrideMarked(nn.Module):
    """Predicts class 1 everywhere at output stride 8, class 0 otherwise; a stand-in for a segmentor."""

    def __init__(self):
        super().__init__()
        self.output_stride, self.conv = 16, nn.Conv2d(3, 2, 1)

    def set_output_stride(self, os_):
        if os_ not in (8, 16, 32):
            raise ValueError(f"output stride {os_} is not supported")
        self.output_stride = os_
        return self

    def forward(self, x):
        logits = self.conv(x) * 0  # a 1x1 conv for the MAdds count: 2 x 3 per pixel
        logits[:, 1 if self.output_stride == 8 else 0] = 5
        return logits


def test_a_protocol_runs_single_scale_and_mf_each_at_its_stride():
    """The model zoo's protocol: single scale at the trained stride (16), MF + flip at 8, with the same model,
    which is back at its own stride afterwards; the record says what ran."""
    truth = [[1, 1], [1, 255]]
    loader = [pad_collate([sample([[0, 0], [0, 0]], truth)], fill=(0, 0, 0))]
    model = StrideMarked()
    proto = Protocol(os=None, mf=True, mf_os=8, mf_scales=(1.0, 1.5), flip=True)
    results, record, _ = run_protocol(model, identity, loader, 2, proto, size=65, per_image=False)
    assert results["ss"]["miou"] == pytest.approx(0.5 * (0 + 0))  # all predicted 0 at OS16: IoU 0 for both
    assert results["mf"]["iou"][1] == 1.0  # all predicted 1 at OS8
    assert model.output_stride == 16
    assert record["eval"] == {"os": 16, "mf": True, "mf_os": 8, "mf_scales": [1.0, 1.5], "flip": True}
    # MAdds of what ran: single scale at `size`; MF at DeepLab's sizes int(512 s + 1) = 513, 769, each flipped
    assert record["madds"] == 2 * 3 * 65 * 65 and record["madds_mf"] == 2 * 2 * 3 * (513 * 513 + 769 * 769)
    assert proto.name(model) == "os16_mf-os8-1-1.5-flip" and Protocol(os=8).name(model) == "os8"


@pytest.mark.parametrize(
    "proto, message",
    [
        (Protocol(os=12), "^os=12: output stride 12"),
        (Protocol(mf=True, mf_os=12, mf_scales=(1.0,)), "^mf_os=12"),
        (Protocol(mf=True, mf_scales=()), "non-empty list of positive numbers"),
        (Protocol(mf=True, mf_scales=(1.0, -0.5)), "non-empty list of positive numbers"),
    ],
)
def test_a_protocol_refuses_what_the_model_cannot_run(proto, message):
    model = StrideMarked()
    with pytest.raises(ValueError, match=message):
        proto.check(model)
    assert model.output_stride == 16
