"""The training loss: pixel-mean cross-entropy over labelled pixels, in either memory layout."""

import numpy as np
import pytest
import torch

from deeplab_mobile.engine.trainer import segmentation_loss


def test_loss_is_the_mean_over_labelled_pixels_in_either_layout():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 21, 5, 7))
    masks = rng.integers(0, 21, size=(2, 5, 7))
    masks[0, :2] = masks[1, :, -1] = 255
    labelled = np.argwhere(masks != 255)
    # by hand: -log softmax at the target class, averaged over the pixels that are not 255
    expected = np.mean(
        [np.log(np.exp(logits[n, :, y, x]).sum()) - logits[n, masks[n, y, x], y, x] for n, y, x in labelled]
    )
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.tensor(logits).contiguous(memory_format=layout).requires_grad_()
        loss = segmentation_loss(x, torch.tensor(masks))
        loss.backward()
        grads.append(x.grad)
        assert loss.item() == pytest.approx(expected, rel=1e-6), layout
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[1][0, :, :2].abs().max() == 0  # 255 pixels get no gradient
    none = torch.full((1, 3, 3), 255)
    assert segmentation_loss(torch.zeros(1, 21, 3, 3), none).item() == 0
