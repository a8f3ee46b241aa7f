"""Params and MAdds, counted the way the MobileNetV2 paper's Table 7 counts them.

Counting uses ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors (instant, no memory), with one
formula replaced: TensorFlow runs an atrous conv (rate r > 1) as space-to-batch -> VALID conv -> batch-to-space,
so it computes over r*ceil(H/r) x r*ceil(W/r) output positions rather than H x W. Table 7's ASPP rows only
match under that convention, which torch's own conv formula cannot express (it does not see the dilation).

- Params: every parameter (conv weights, the logits bias, BN scale and shift; running stats are buffers).
- MAdds: convolution multiply-adds only (torch counts 2 FLOPs per multiply-add; we report MAdds).
- MF (multi-scale + flip): 2 x the sum over the evaluation's scales, each at DeepLab's size int(512*s + 1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from .models.geometry import scale_dimension

aten = torch.ops.aten

TABLE7_SIZE = 513


def tf_conv_flop(x_shape, w_shape, _bias, _stride, _padding, dilation, transposed, *args, out_shape=None, **kwargs):
    """FLOPs of a conv, with atrous convs counted over the positions TensorFlow's space-to-batch computes."""
    if transposed or all(d == 1 for d in dilation):
        return conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed)
    positions = math.prod(d * math.ceil(o / d) for o, d in zip(out_shape[2:], dilation, strict=True))
    return 2 * out_shape[0] * w_shape[0] * math.prod(w_shape[1:]) * positions


TF_CONV_MAPPING = {aten.convolution: tf_conv_flop, aten._convolution: tf_conv_flop}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _on_meta(model: nn.Module) -> nn.Module:
    if all(p.is_meta for p in model.parameters()):
        return model
    return copy.deepcopy(model).to("meta")


def count_madds(
    model: nn.Module, size: int | tuple[int, int] = TABLE7_SIZE, tf_atrous: bool = True, in_channels: int = 3
) -> int:
    """Conv multiply-adds of one forward pass at ``size`` (batch 1, ``in_channels`` input channels)."""
    h, w = (size, size) if isinstance(size, int) else size
    meta = _on_meta(model).eval()
    mapping = TF_CONV_MAPPING if tf_atrous else {}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        meta(torch.empty(1, in_channels, h, w, device="meta"))
    return counter.get_total_flops() // 2


def mf_sizes(scales: Sequence[float], size: int = TABLE7_SIZE) -> list[int]:
    """DeepLab's input size at each eval scale, ``scale_dimension(513, s)`` = int(512*s + 1): 257, 385, 513, 641,
    769, 897 for VOC's scales (the sizes the evaluator runs)."""
    return [scale_dimension(size, s) for s in scales]


def count_madds_mf(model: nn.Module, scales: Sequence[float], flip: bool = True) -> int:
    """MAdds of multi-scale (+ left-right flip) inference: each scale run once, twice with the flip."""
    meta = _on_meta(model)
    return (2 if flip else 1) * sum(count_madds(meta, s) for s in mf_sizes(scales))
