"""Confusion-matrix metrics against hand computations (VOC convention: 255 ignored, absent classes left out)."""

import numpy as np
import torch

from deeplab_mobile.metrics import confusion_matrix, scores


def test_metrics_against_a_hand_built_confusion_matrix():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 3]])
    conf = confusion_matrix(pred, target, num_classes=4).numpy()
    want = np.zeros((4, 4), int)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 1), (2, 2), (2, 0), (1, 3)]:  # the 255 pixel is ignored
        want[t, p] += 1
    np.testing.assert_array_equal(conf, want)
    s = scores(conf)
    # IoU: class 0: 1/(2+2-1)=1/3, class 1: 2/(3+3-2)=1/2, class 2: 1/(2+1-1)=1/2, class 3: 0/(0+1-0)=0
    np.testing.assert_allclose(s["iou"], [1 / 3, 1 / 2, 1 / 2, 0])
    assert abs(s["miou"] - (1 / 3 + 1 / 2 + 1 / 2 + 0) / 4) < 1e-12
    assert abs(s["pixel_acc"] - 4 / 7) < 1e-12


def test_absent_class_is_left_out_of_the_mean():
    conf = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2 absent from target and prediction
    s = scores(conf)
    assert np.isnan(s["iou"][2])
    assert abs(s["miou"] - (3 / 4 + 2 / 3) / 2) < 1e-12


def test_the_matrix_stays_on_the_inputs_device_and_accepts_tensors():
    target = torch.tensor([[0, 255], [1, 1]])
    pred = torch.tensor([[0, 1], [1, 0]])
    conf = confusion_matrix(pred, target, num_classes=2)
    assert conf.device == target.device and conf.dtype == torch.int64
    assert conf.tolist() == [[1, 0], [1, 1]]
