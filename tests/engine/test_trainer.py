"""The training loss (pixel-mean cross-entropy over labelled pixels, in either memory layout) and the weight-decay
groups."""

import numpy as np
import pytest
import torch

from deeplab_mobile.engine.losses import segmentation_loss
from deeplab_mobile.engine.trainer import param_groups
from deeplab_mobile.models import build_model


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


# MobileNetV2's bottleneck rows (t, c, n, s), the paper's Table 2: the counts below follow from the table alone.
ROWS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def test_depthwise_kernels_can_be_left_undecayed():
    """MNet V2* with the simplified head. Conv kernels: the stem, per block an expansion (t > 1), a depthwise and
    a projection; the head's 1x1 branch, pooling conv, projection and logits. Undecayed: BatchNorm's scale and
    shift (one BN per conv but the logits) and the logits' bias; with decay_depthwise=False the 17 depthwise
    kernels as well."""
    blocks = sum(n for *_, n, _ in ROWS)
    expansions = sum(n for t, _, n, _ in ROWS if t > 1)
    kernels = 1 + expansions + 2 * blocks + 4
    batchnorms = kernels - 1
    model = build_model("mobilenet_v2", "no_aspp", 16, width=0.5)
    for decay_depthwise, moved in ((True, 0), (False, blocks)):
        decayed, undecayed = param_groups(model, 4e-5, decay_depthwise)
        assert (decayed["weight_decay"], undecayed["weight_decay"]) == (4e-5, 0.0)
        assert len(decayed["params"]) == kernels - moved
        assert len(undecayed["params"]) == 2 * batchnorms + 1 + moved
    depthwise = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1}
    assert len(depthwise) == blocks and depthwise <= {id(p) for p in undecayed["params"]}
