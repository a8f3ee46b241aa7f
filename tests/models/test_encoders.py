"""Encoders: the TF output-stride rule, feature sizes, channel counts, and parameter counts from the paper's table."""

import pytest
import torch
from torch import nn

from deeplab_mobile.models.encoders import MobileNetV1Encoder, MobileNetV2Encoder, ResNet101BetaEncoder
from deeplab_mobile.models.encoders.mobilenet_v2 import depthwise_conv

# MobileNetV2 bottleneck rows (t, c, n, s) from the paper's Table 2.
MNV2_ROWS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
BLOCKS = [(c, s if i == 0 else 1) for _, c, n, s in MNV2_ROWS for i in range(n)]  # (channels, nominal stride)


def expected_geometry(output_stride):
    """(stride, dilation) of each of the 17 depthwise convs, written out from DeepLab's rule (docs/protocol.md,
    section 3)."""
    out = []
    seen = set()
    for c, s in BLOCKS:
        first = c not in seen
        seen.add(c)
        if output_stride == 32:
            out.append((s, 1))
        elif output_stride == 16:
            out.append((1, 1) if (c == 160 and first) else (1, 2) if c in (160, 320) else (s, 1))
        else:  # OS8: first 64 block at rate 1, rest of 64 and the 96 row at 2, first 160 at 2, then 4
            if c == 64 and first:
                out.append((1, 1))
            elif c in (64, 96) or (c == 160 and first):
                out.append((1, 2))
            elif c in (160, 320):
                out.append((1, 4))
            else:
                out.append((s, 1))
    return out


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_mobilenet_v2_depthwise_stride_and_dilation(output_stride):
    enc = MobileNetV2Encoder(output_stride=output_stride)
    got = []
    for block in enc.features[1:18]:
        conv = depthwise_conv(block)
        assert conv.padding == conv.dilation  # 'same' padding for a 3x3 conv
        got.append((conv.stride[0], conv.dilation[0]))
    assert got == expected_geometry(output_stride)
    # Only the depthwise convs are touched: every other conv keeps dilation 1.
    others = [m for m in enc.modules() if isinstance(m, nn.Conv2d) and m.groups == 1]
    assert all(m.dilation == (1, 1) for m in others)


@pytest.mark.parametrize("output_stride,size", [(8, 65), (16, 33), (32, 17)])
def test_mobilenet_v2_feature_size_at_513(output_stride, size):
    enc = MobileNetV2Encoder(width=0.35, output_stride=output_stride).eval()
    with torch.no_grad():
        feat = enc(torch.zeros(1, 3, 513, 513))
    assert feat.shape == (1, 112, size, size)  # 320 * 0.35 = 112
    assert enc.output_stride == output_stride


def make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenet_v2_params(width, tap):
    """Parameters of the MobileNetV2 body from the architecture table: conv weights + BN scale/shift."""
    k = make_divisible(32 * width)
    total = 3 * 9 * k + 2 * k  # stem conv 3x3, 32 channels
    for t, c, n, _ in MNV2_ROWS:
        c = make_divisible(c * width)
        for _ in range(n):
            hidden = k * t
            if t != 1:
                total += k * hidden + 2 * hidden
            total += 9 * hidden + 2 * hidden + hidden * c + 2 * c
            k = c
    if tap == "last":
        last = make_divisible(1280 * max(1.0, width))
        total += k * last + 2 * last
    return total


@pytest.mark.parametrize(
    "width,tap,channels",
    [
        (1.0, "second_last", 320),
        (1.0, "last", 1280),
        (0.5, "second_last", 160),
        (0.5, "last", 1280),
        (1.4, "last", 1792),
    ],
)
def test_mobilenet_v2_channels_and_params_from_table(width, tap, channels):
    enc = MobileNetV2Encoder(width=width, tap=tap)
    assert enc.out_channels == channels
    assert sum(p.numel() for p in enc.parameters()) == mobilenet_v2_params(width, tap)


def test_mobilenet_v2_body_params_match_paper_scale():
    # The 320 tap drops the 1280 conv (320*1280 weights + 2*1280 BN) from the ~2.2M-parameter body.
    assert mobilenet_v2_params(1.0, "last") - mobilenet_v2_params(1.0, "second_last") == 320 * 1280 + 2 * 1280


def test_mobilenet_v2_residual_blocks_start_as_identity():
    # A bottleneck has a residual connection when it keeps stride 1 and its width, i.e. every block of a row but
    # the first: sum(n - 1) over the table's rows = 10 blocks.
    assert sum(n - 1 for *_, n, _ in MNV2_ROWS) == 10
    enc = MobileNetV2Encoder(width=0.5, output_stride=16).train()
    last_bn = [b.conv[-1] for b in enc.features[1:18]]
    zeroed = [i for i, bn in enumerate(last_bn) if not bn.weight.any()]
    first_of_row = {sum(n for *_, n, _ in MNV2_ROWS[:r]) for r in range(len(MNV2_ROWS))}
    assert zeroed == [i for i in range(17) if i not in first_of_row]
    x = torch.randn(2, enc.features[2].conv[-1].num_features, 9, 9)
    assert torch.equal(enc.features[3](x), x)  # the second 24-channel block passes its input through
    plain = MobileNetV2Encoder(width=0.5, output_stride=16, zero_init_residual=False)
    assert all(b.conv[-1].weight.eq(1).all() for b in plain.features[1:18])  # torchvision's init


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_mobilenet_v1_follows_tf_rule(output_stride):
    enc = MobileNetV1Encoder(width=0.25, output_stride=output_stride).eval()
    dws = [m for m in enc.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    nominal = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]  # the 13 depthwise convs of MobileNetV1
    assert len(dws) == 13
    stride, rate, expected = 2, 1, []
    for s in nominal:  # DeepLab's rule (docs/protocol.md, section 3), restated
        if stride == output_stride:
            expected.append((1, rate))
            rate *= s
        else:
            expected.append((s, 1))
            stride *= s
    assert [(m.stride[0], m.dilation[0]) for m in dws] == expected
    with torch.no_grad():
        feat = enc(torch.zeros(1, 3, 129, 129))
    assert feat.shape[1] == enc.out_channels == 256  # 1024 * 0.25
    assert feat.shape[-1] == -(-129 // output_stride)


def test_resnet101_beta_layout():
    enc = ResNet101BetaEncoder(output_stride=16)
    stem = [m for m in enc.conv1.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.out_channels) for m in stem] == [((3, 3), 64), ((3, 3), 64), ((3, 3), 128)]
    layers = [enc.layer1, enc.layer2, enc.layer3, enc.layer4]
    assert [len(layer) for layer in layers] == [3, 4, 23, 3]
    # Stride 2 in the last unit of blocks 1 and 2; block 3's last unit is made atrous at OS16.
    assert [u.conv2.stride[0] for u in enc.layer1] == [1, 1, 2]
    assert [u.conv2.stride[0] for u in enc.layer2] == [1, 1, 1, 2]
    assert all(u.conv2.stride[0] == 1 for u in (*enc.layer3, *enc.layer4))
    assert [u.conv2.dilation[0] for u in enc.layer4] == [2, 4, 8]  # multi-grid (1, 2, 4) x rate 2
    assert enc.layer3[-1].conv2.dilation[0] == 1
    assert enc.out_channels == 2048


@pytest.mark.parametrize("output_stride,rates", [(8, [4, 8, 16]), (16, [2, 4, 8]), (32, [1, 2, 4])])
def test_resnet101_multigrid_and_size(output_stride, rates):
    enc = ResNet101BetaEncoder(output_stride=output_stride).eval()
    assert [u.conv2.dilation[0] for u in enc.layer4] == rates
    with torch.no_grad():
        feat = enc(torch.zeros(1, 3, 65, 65))
    assert feat.shape == (1, 2048, -(-65 // output_stride), -(-65 // output_stride))


@pytest.mark.parametrize("cls", [MobileNetV2Encoder, MobileNetV1Encoder, ResNet101BetaEncoder])
def test_unsupported_settings_are_refused(cls):
    with pytest.raises(ValueError, match="output stride"):
        cls(output_stride=12)
    with pytest.raises(ValueError, match="width"):
        cls(width=0.6)
    with pytest.raises(ValueError, match="tap"):
        cls(tap="middle")


@pytest.mark.parametrize(
    "cls, kwargs, label, tap",
    [
        (MobileNetV2Encoder, {}, "MNet V2*", "second_last"),
        (MobileNetV2Encoder, {"width": 0.5}, "MNet V2* x0.5", "second_last"),
        (MobileNetV2Encoder, {"tap": "last"}, "MNet V2 (1280 tap)", "last"),
        (MobileNetV1Encoder, {"width": 0.25}, "MNet V1 x0.25", "last"),
        (ResNet101BetaEncoder, {}, "ResNet-101", "last"),
    ],
)
def test_encoders_describe_themselves(cls, kwargs, label, tap):
    with torch.device("meta"):
        enc = cls(**kwargs)
    assert (enc.label, enc.tap, enc.width) == (label, tap, kwargs.get("width", 1.0))
    assert len(enc.mean) == len(enc.std) == 3


@pytest.mark.parametrize(
    "cls, kwargs, eps",
    [
        (MobileNetV2Encoder, {"width": 0.35}, 1e-3),
        (MobileNetV1Encoder, {"width": 0.25}, 1e-3),
        (ResNet101BetaEncoder, {}, 1e-5),
    ],
)
def test_batchnorm_as_deeplab_or_as_pytorch(cls, kwargs, eps):
    """bn=deeplab: TF DeepLab's decay 0.9997 (PyTorch momentum 3e-4) and the network's own epsilon there
    (docs/protocol.md, section 6: 1e-3 in MobileNetV2); bn=torch keeps PyTorch's 0.1 / 1e-5."""
    with torch.device("meta"):
        deeplab, plain = cls(bn="deeplab", **kwargs), cls(**kwargs)
    bns = [m for m in deeplab.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.momentum == pytest.approx(3e-4) and m.eps == eps for m in bns)
    assert all(m.momentum == 0.1 and m.eps == 1e-5 for m in plain.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ValueError, match="bn='tf' is not supported"):
        cls(bn="tf", **kwargs)
