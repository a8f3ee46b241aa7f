"""Memory-efficient inference for inverted residual blocks (MobileNetV2 paper, section 5.1).

A block computes ``project(dw(expand(x)))``; the expanded tensor has t (= 6) times the block's channels and is
the largest activation alive. Expansion, depthwise conv, BN and ReLU6 all act per hidden channel, and the
projection is a sum over hidden channels, so the hidden channels can be split into k chunks:
``y = sum_i project_i(dw_i(expand_i(x)))`` with only one chunk's tensors alive at a time. The final BN (no
activation after it) is affine per output channel and is applied once to the sum. Inference only (BN uses its
running statistics); torchvision has no such mode, hence this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

from ..errors import InvalidValue


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, sl: slice) -> torch.Tensor:
    w = None if bn.weight is None else bn.weight[sl]
    b = None if bn.bias is None else bn.bias[sl]
    return F.batch_norm(x, bn.running_mean[sl], bn.running_var[sl], w, b, False, 0.0, bn.eps)


class ChunkedInvertedResidual(nn.Module):
    """The same function as a torchvision ``InvertedResidual`` with an expansion layer (eval mode), computed
    over ``chunks`` slices of its hidden channels. Shares the block's parameters (no copy)."""

    def __init__(self, block: InvertedResidual, chunks: int = 4) -> None:
        super().__init__()
        layers = list(block.conv)
        if len(layers) != 4:
            raise InvalidValue("only blocks with an expansion layer (expand_ratio > 1) can be chunked")
        (self.expand, self.expand_bn, self.expand_act), (self.dw, self.dw_bn, self.dw_act) = layers[0], layers[1]
        self.project, self.project_bn = layers[2], layers[3]
        self.use_res_connect = block.use_res_connect
        hidden = self.dw.in_channels
        self.chunks = max(1, min(chunks, hidden))
        bounds = [round(i * hidden / self.chunks) for i in range(self.chunks + 1)]
        self.slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError("ChunkedInvertedResidual is for inference: call .eval() first")
        dw = self.dw
        y = None
        for sl in self.slices:
            h = self.expand_act(_bn(F.conv2d(x, self.expand.weight[sl]), self.expand_bn, sl))
            h = F.conv2d(h, dw.weight[sl], None, dw.stride, dw.padding, dw.dilation, groups=sl.stop - sl.start)
            h = self.dw_act(_bn(h, self.dw_bn, sl))
            part = F.conv2d(h, self.project.weight[:, sl])
            y = part if y is None else y.add_(part)
            del h, part
        y = _bn(y, self.project_bn, slice(None))
        return x + y if self.use_res_connect else y


def make_memory_efficient(model: nn.Module, chunks: int = 4) -> nn.Module:
    """Replace, in place, every inverted residual block with an expansion layer by its chunked form; returns the
    model (in eval mode). Blocks keep their parameters, so weights loaded before or after stay in effect."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, InvertedResidual) and len(child.conv) == 4:
                setattr(module, child_name, ChunkedInvertedResidual(child, chunks))
    return model.eval()
