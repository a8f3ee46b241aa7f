"""The multi-level encoder contract, DeepLabV3+ and LR-ASPP heads, and MobileNetV3: shapes and strides for every
encoder x head x output stride, hand-counted Params and MAdds, and torchvision's LR-ASPP as an oracle."""

import math
from functools import partial

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

from deeplab_mobile.complexity import count_madds, count_params
from deeplab_mobile.models import HEADS, DeepLabV3, DeepLabV3PlusHead, LRASPPHead, build_model
from deeplab_mobile.models.encoders import (
    MobileNetV1Encoder,
    MobileNetV2Encoder,
    MobileNetV3Encoder,
    ResNet101BetaEncoder,
)
from deeplab_mobile.models.encoders.mobilenet_v2 import depthwise_conv

# (encoder, width, channels at strides 4 and 8 from each architecture table)
ENCODER_CASES = [
    (MobileNetV2Encoder, 0.5, (16, 16)),  # 24 * 0.5 -> 16 (rounded to 8), 32 * 0.5 = 16
    (MobileNetV3Encoder, 0.5, (16, 24)),  # 24 * 0.5 = 12 -> 16, 40 * 0.5 = 20 -> 24
    (MobileNetV1Encoder, 0.25, (32, 64)),  # 128 * 0.25, 256 * 0.25
    (ResNet101BetaEncoder, 1.0, (256, 512)),  # block1/unit_2 and block2/unit_3 (the units before the strided ones)
]
SIZE = (65, 47)


def ceil_chain(n, stride):
    """Size after log2(stride) stride-2 convs with symmetric padding: ceil(n / 2) at each."""
    for _ in range(int(math.log2(stride))):
        n = math.ceil(n / 2)
    return n


@pytest.fixture(scope="module", params=ENCODER_CASES, ids=lambda c: c[0].name)
def encoder_case(request):
    cls, width, low = request.param
    return cls(width=width, output_stride=16).eval(), low


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_every_encoder_head_and_stride(encoder_case, output_stride):
    enc, low = encoder_case
    enc.set_output_stride(output_stride)
    levels = enc.levels
    assert [lv.stride for lv in levels] == [4, 8, output_stride]
    assert tuple(lv.channels for lv in levels[:2]) == low and levels[-1].channels == enc.out_channels
    x = torch.zeros(1, 3, *SIZE)
    with torch.no_grad():
        feats = enc.forward_levels(x)
        assert torch.equal(feats[-1], enc(x))
    for feat, level in zip(feats, levels, strict=True):
        assert feat.shape[1:] == (level.channels, *(ceil_chain(n, level.stride) for n in SIZE))
    for name, spec in HEADS.items():
        model = DeepLabV3(enc, partial(spec.cls, num_classes=3, **spec.fixed)).eval()
        expected_stride = {"deeplabv3plus": 4, "lraspp": 8}.get(name, output_stride)
        assert model.logits_stride == expected_stride and model.head.name == name
        with torch.no_grad():
            logits, out = model.logits(x), model(x)
        assert logits.shape == (1, 3, *(ceil_chain(n, expected_stride) for n in SIZE)), name
        assert out.shape == (1, 3, *SIZE)


def test_deeplabv3plus_follows_output_stride_and_keeps_parameters():
    model = build_model("mobilenet_v2", "deeplabv3plus", 16, width=0.35, num_classes=3)
    params = [id(p) for p in model.parameters()]
    assert model.head.rates == (6, 12, 18)
    model.set_output_stride(8)
    assert model.head.rates == (12, 24, 36) and model.output_stride == 8 and model.logits_stride == 4
    dilations = [m.dilation[0] for m in model.head.modules() if isinstance(m, nn.Conv2d) and m.dilation[0] > 1]
    assert dilations == [12, 24, 36]
    assert [id(p) for p in model.parameters()] == params


def bn(c):
    return 2 * c


def v3plus_params(cin, low, classes, separable, aspp=True, ch=256, low_ch=48, dec=256):
    """Written from the DeepLabV3+ paper's decoder and DeepLabv3's ASPP, not from the code."""
    atrous = (9 * cin + cin * ch if separable else 9 * cin * ch) + bn(ch)  # SMP: dw, pw, then one BN
    n_atrous = 3 if aspp else 0
    context = (cin * ch + bn(ch)) + n_atrous * atrous + (cin * ch + bn(ch)) + (2 + n_atrous) * ch * ch + bn(ch)
    reduce = low * low_ch + bn(low_ch)
    if separable:  # TF's split_separable_conv2d: depthwise + BN + ReLU, pointwise + BN + ReLU
        fuse = (9 * (ch + low_ch) + bn(ch + low_ch) + (ch + low_ch) * dec + bn(dec)) + (
            9 * dec + bn(dec) + dec * dec + bn(dec)
        )
    else:
        fuse = 9 * (ch + low_ch) * dec + bn(dec) + 9 * dec * dec + bn(dec)
    return context + reduce + fuse + dec * classes + classes


def lraspp_params(high, low, classes, inter=128):
    """The MobileNetV3 paper's Figure 10, as torchvision builds it."""
    return high * inter + bn(inter) + high * inter + low * classes + classes + inter * classes + classes


@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize("aspp", [True, False])
def test_deeplabv3plus_params_by_hand(separable, aspp):
    levels = MobileNetV2Encoder(width=1.0).levels
    head = DeepLabV3PlusHead(320, 16, levels, num_classes=21, aspp=aspp, separable=separable)
    assert levels[0].channels == 24
    assert count_params(head) == v3plus_params(320, 24, 21, separable, aspp)


def test_lraspp_params_and_madds_by_hand():
    enc = MobileNetV3Encoder(width=1.0)
    model = DeepLabV3(enc, partial(LRASPPHead, num_classes=19))
    assert count_params(model.head) == lraspp_params(960, 40, 19)
    # MAdds at 129 x 129: the output feature is 9 x 9 (OS16), the stride-8 feature 17 x 17
    hi, lo = 9 * 9, 17 * 17
    by_hand = hi * 960 * 128 + 960 * 128 + lo * 128 * 19 + lo * 40 * 19
    assert count_madds(model, 129) - count_madds(enc, 129) == by_hand


def test_deeplabv3plus_madds_by_hand():
    enc = MobileNetV2Encoder(width=0.5)
    model = DeepLabV3(enc, partial(DeepLabV3PlusHead, num_classes=5, aspp=False, separable=False))
    hi, lo = 9 * 9, 33 * 33  # 129 at OS16 and at stride 4
    cin, low = 160, 16
    context = hi * cin * 256 + cin * 256 + hi * 2 * 256 * 256
    decoder = lo * (low * 48 + 9 * 304 * 256 + 9 * 256 * 256 + 256 * 5)
    assert count_madds(model, 129, tf_atrous=False) - count_madds(enc, 129, tf_atrous=False) == context + decoder


def test_mobilenet_v3_matches_torchvision():
    """Our MobileNetV3 is torchvision's modules: at OS32 it is the ImageNet network's body; at OS16 it is
    torchvision's dilated body except for the first block that loses its stride, which TensorFlow's rule keeps at
    rate 1 where torchvision dilates it."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 97, 81)
    ours = MobileNetV3Encoder(width=1.0, output_stride=32).eval()
    plain = mobilenet_v3_large().features.eval()
    plain.load_state_dict(ours.features.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(ours(x), plain(x))
    dilated = mobilenet_v3_large(dilated=True).features.eval()
    dilated.load_state_dict(ours.features.state_dict())
    ours.set_output_stride(16)
    first = depthwise_conv(ours.bottlenecks[12])
    assert first.stride == (1, 1) and first.dilation == (1, 1)  # TF's rule
    assert [depthwise_conv(b).dilation[0] for b in ours.bottlenecks[13:]] == [2, 2]
    first.dilation, first.padding = (2, 2), (4, 4)  # torchvision's rule, for the comparison only
    with torch.no_grad():
        torch.testing.assert_close(ours(x), dilated(x))


def test_lraspp_head_matches_torchvision():
    """torchvision's LR-ASPP classifier and ours on the same features and weights; torchvision's "low" is the
    output of the first stride-8 block (its C2), so it is taken from torchvision's own backbone."""
    torch.manual_seed(0)
    ref = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=7).eval()
    ours = LRASPPHead(960, 16, MobileNetV3Encoder().levels, num_classes=7).eval()
    ours.load_state_dict(ref.classifier.state_dict())
    with torch.no_grad():
        feats = ref.backbone(torch.randn(2, 3, 129, 97))
        expected = ref.classifier(feats)
        got = ours([None, feats["low"], feats["high"]])
    torch.testing.assert_close(got, expected)


def test_heads_follow_the_geometry():
    for head in ("deeplabv3plus", "lraspp"):
        model = build_model("mobilenet_v3", head, 16, width=0.5, num_classes=3, geometry="deeplab")
        assert model.head.align_corners is True


def test_lraspp_has_no_separable_option():
    with pytest.raises(ValueError, match="no separable"):
        build_model("mobilenet_v3", "lraspp", separable=True)


# MobileNetV3-Large, the paper's Table 1: (kernel, expansion size, out channels, squeeze-excite, stride)
MNV3_LARGE = [
    (3, 16, 16, False, 1),
    (3, 64, 24, False, 2),
    (3, 72, 24, False, 1),
    (5, 72, 40, True, 2),
    (5, 120, 40, True, 1),
    (5, 120, 40, True, 1),
    (3, 240, 80, False, 2),
    (3, 200, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 480, 112, True, 1),
    (3, 672, 112, True, 1),
    (5, 672, 160, True, 2),
    (5, 960, 160, True, 1),
    (5, 960, 160, True, 1),
]


def divisible(v, d=8):
    new = max(d, int(v + d / 2) // d * d)
    return new + d if new < 0.9 * v else new


def mobilenet_v3_params(tap):
    """Conv weights, BN scale/shift and the squeeze-excite convs' biases, from the paper's table."""
    c = 16
    total = 3 * 9 * c + bn(c)  # stem 3x3 conv, 16 channels
    for k, exp, out, se, _ in MNV3_LARGE:
        if exp != c:
            total += c * exp + bn(exp)
        total += k * k * exp + bn(exp)
        if se:
            sq = divisible(exp // 4)
            total += exp * sq + sq + sq * exp + exp
        total += exp * out + bn(out)
        c = out
    if tap == "last":
        total += c * 960 + bn(960)
    return total


@pytest.mark.parametrize("tap", ["last", "second_last"])
def test_mobilenet_v3_params_from_the_paper_table(tap):
    enc = MobileNetV3Encoder(width=1.0, tap=tap)
    assert count_params(enc) == mobilenet_v3_params(tap)
    strides = [s for *_, s in MNV3_LARGE]
    assert enc.nominal_strides == strides and enc.out_channels == (960 if tap == "last" else 160)


def test_mobilenet_v3_batchnorm_settings():
    """bn=torch: PyTorch's momentum 0.1 (torchvision's 0.01 lags a short training) with the weights' epsilon 1e-3;
    bn=deeplab: DeepLab's decay 0.9997."""
    for bn_setting, momentum in (("torch", 0.1), ("deeplab", 1 - 0.9997)):
        norms = [m for m in MobileNetV3Encoder(width=0.5, bn=bn_setting).modules() if isinstance(m, nn.BatchNorm2d)]
        assert norms and all(m.momentum == pytest.approx(momentum) and m.eps == 1e-3 for m in norms)
