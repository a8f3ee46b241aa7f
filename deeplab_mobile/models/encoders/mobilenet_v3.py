"""MobileNetV3-Large encoder (Howard et al., ICCV 2019), dilated by the same TensorFlow rule as the MobileNetV2 one.

Built on torchvision's ``MobileNetV3`` modules, so torchvision's ImageNet weights (and those of its LR-ASPP
segmentation model) load unchanged. torchvision's own ``dilated=True`` is not used: it dilates every block of the
last stage including the first (rate 2 at its depthwise conv), where TensorFlow's rule (``atrous_schedule``) keeps
the first block that loses its stride at the rate reached so far, and it knows OS16 only. Here the depthwise convs
get their stride and dilation from ``atrous_schedule`` at 8, 16 or 32, and ``set_output_stride`` changes them in
place. The 5x5 depthwise convs keep "same" padding at any rate.

Taps:
    ``last`` (default): the final 1x1 conv, 960*width channels (LR-ASPP's "high" feature in the MobileNetV3 paper).
    ``second_last``: the 160*width-channel output of the last bottleneck; the 960-channel conv is not built.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights, mobilenet_v3_large

from ._base import EncoderSpec
from .mobilenet_v2 import InvertedResidualBody

WIDTHS = (0.5, 0.75, 1.0, 1.25)
N_BOTTLENECKS = 15
TORCH_BN_MOMENTUM = 0.1  # PyTorch's default, as every other encoder here trains with (see ``bn`` below)


class MobileNetV3Encoder(InvertedResidualBody):
    """Dilated MobileNetV3-Large body.

    Arguments as ``Encoder``'s: width 0.5, 0.75, 1.0, 1.25 (torchvision's channel rounding); tap ``last`` (default,
    960*width channels) or ``second_last`` (160*width channels); ImageNet weights torchvision's. BatchNorm:
        bn: ``torch``: PyTorch's BatchNorm momentum 0.1, with torchvision's epsilon 1e-3 (its weights' own);
            ``deeplab``: decay 0.9997, epsilon 1e-3. torchvision builds MobileNetV3 with momentum 0.01, which suits
            its long ImageNet schedule but lags a short training: from random weights, 300 iterations of the CPU
            recipe left the running statistics so far behind the weights that evaluation predicted background
            only (3.9% mIoU; 37.7% with the statistics recomputed on 20 training batches).
    """

    spec = EncoderSpec("mobilenet_v3", "MobileNetV3", WIDTHS, ("last", "second_last"))
    n_bottlenecks = N_BOTTLENECKS
    torchvision_weights = MobileNet_V3_Large_Weights.IMAGENET1K_V1

    def build(self) -> None:
        # features[0] is the stem (stride 2), features[1:16] the 15 bottlenecks, features[16] the 1x1 960 conv.
        self.take_features(mobilenet_v3_large(width_mult=self.width))

    def adjust_batchnorm(self, bn: str) -> None:
        if bn == "torch":
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = TORCH_BN_MOMENTUM

    @property
    def base_label(self) -> str:
        return "MNet V3" if self.tap == "last" else "MNet V3 (160 tap)"
