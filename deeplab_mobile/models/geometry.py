"""Resize and padding conventions: PyTorch's (``torch``) or TensorFlow DeepLab's (``deeplab``).

The official DeepLab checkpoints were trained and evaluated under TensorFlow's conventions, and give their published
numbers only under them (docs/protocol.md, section 6):

- every bilinear resize maps corner pixels onto corner pixels (``align_corners=True``); DeepLab's sizes
  (513 = 2^9 + 1, and ``scale_dimension``'s 257 ... 897) are built for that grid;
- a strided convolution pads "SAME": the total padding is what makes the output ``ceil(size / stride)`` and the
  extra pixel of an odd total goes bottom/right. At odd sizes that is PyTorch's symmetric ``padding=k//2``; at even
  sizes it is not (PyTorch samples one pixel up/left of TensorFlow).

``torch`` keeps PyTorch's: ``align_corners=False`` and symmetric padding everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidValue

GEOMETRIES = ("torch", "deeplab")


def check_geometry(geometry: str) -> str:
    if geometry not in GEOMETRIES:
        raise InvalidValue(f"geometry={geometry!r} is not supported; choose one of {GEOMETRIES}")
    return geometry


def scale_dimension(size: int, scale: float) -> int:
    """DeepLab's size of a ``size``-pixel side scaled by ``scale``: ``int((size - 1) * scale + 1)`` (the grid of
    ``align_corners=True``): 513 at scale 0.5 -> 257, at 1.75 -> 897, and at 1/16 -> 33, the OS16 feature size."""
    return int((size - 1) * scale + 1)


class SameConv2d(nn.Conv2d):
    """A ``Conv2d`` that pads like TensorFlow's ``padding="SAME"`` when it is strided.

    Written here rather than taken from timm (``Conv2dSame``/``pad_same``): timm's computes the padding with
    ``math.ceil`` on the input size, which does not trace with symbolic sizes (``torch.export``, the ONNX export's
    dynamic height and width), and it pads every conv, where a stride-1 conv with an odd kernel is already "SAME"
    with its own symmetric padding (which ``set_output_stride`` keeps current).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        sizes = (x.shape[-1], x.shape[-2])  # F.pad's order: width first
        for size, k, s, d in zip(sizes, self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1], strict=True):
            if k < s:
                raise InvalidValue(f"{self}: a kernel smaller than its stride has no 'SAME' padding rule here")
            # ceil(size / s) on non-negative integers: it traces with symbolic sizes, and the exported graph's
            # integer division (which truncates towards zero in ONNX Runtime) agrees with Python's floor division
            out = (size + s - 1) // s
            total = (out - 1) * s + (k - 1) * d + 1 - size  # >= 0 because k >= s
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def use_same_padding(module: nn.Module) -> nn.Module:
    """Make every convolution in ``module`` with a kernel larger than 1 a ``SameConv2d``, in place; the parameter
    objects (and so the state dict and any optimizer) are kept. Convs whose stride ``set_output_stride`` changes
    stay ``SameConv2d`` at any stride."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and max(child.kernel_size) > 1:
                if child.padding_mode != "zeros":
                    raise InvalidValue(f"{child}: only zero-padded convolutions can pad 'SAME'")
                same = SameConv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups,
                    child.bias is not None,
                    device="meta",
                )
                same.weight = child.weight
                same.bias = child.bias
                same.train(child.training)
                setattr(parent, name, same)
    return module
