"""Heads: rates follow the output stride, branch structure, parameter counts, output resolution."""

from functools import partial

import pytest
import torch
from torch import nn

from deeplab_mobile.models import DeepLabHead, DeepLabV3, build_model
from deeplab_mobile.models.encoders import MobileNetV2Encoder


@pytest.mark.parametrize("output_stride,rates", [(8, (12, 24, 36)), (16, (6, 12, 18)), (32, (3, 6, 9))])
def test_aspp_rates_follow_output_stride(output_stride, rates):
    head = DeepLabHead(in_channels=32, output_stride=output_stride)
    dilated = [m.dilation[0] for m in head.modules() if isinstance(m, nn.Conv2d) and m.dilation[0] > 1]
    assert tuple(dilated) == rates


def head_params(cin, n_atrous, classes=21, ch=256):
    """1x1 branch, 3x3 atrous branches, pooling branch, projection, logits (+bias); BN adds 2 per channel."""
    branch1x1 = cin * ch + 2 * ch
    atrous = n_atrous * (9 * cin * ch + 2 * ch)
    pooling = cin * ch + 2 * ch
    project = (2 + n_atrous) * ch * ch + 2 * ch
    logits = ch * classes + classes
    return branch1x1 + atrous + pooling + project + logits


@pytest.mark.parametrize("aspp,n_atrous", [(True, 3), (False, 0)])
def test_head_params(aspp, n_atrous):
    head = DeepLabHead(in_channels=320, output_stride=16, aspp=aspp)
    assert sum(p.numel() for p in head.parameters()) == head_params(320, n_atrous)
    assert len(head.branches) == 2 + n_atrous


def test_separable_aspp_is_smaller():
    plain = DeepLabHead(in_channels=320, output_stride=16)
    sep = DeepLabHead(in_channels=320, output_stride=16, separable=True)
    assert sum(p.numel() for p in sep.parameters()) < sum(p.numel() for p in plain.parameters())


def test_head_sized_from_encoder_contract():
    enc = MobileNetV2Encoder(width=0.5, output_stride=8)
    model = DeepLabV3(enc, partial(DeepLabHead, num_classes=5))
    assert model.head.branches[0][0].in_channels == enc.out_channels == 160
    assert model.head.rates == (12, 24, 36)


@pytest.mark.parametrize("size", [(513, 513), (97, 131), (33, 47)])
@pytest.mark.parametrize("head", ["aspp", "no_aspp"])
def test_logits_at_input_resolution_any_size(size, head):
    model = build_model("mobilenet_v2", head, 16, width=0.35, num_classes=21).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *size))
    assert out.shape == (1, 21, *size)


@pytest.mark.parametrize("encoder", ["mobilenet_v1", "resnet101"])
def test_other_encoders_odd_sizes(encoder):
    width = 0.25 if encoder == "mobilenet_v1" else 1.0
    model = build_model(encoder, "aspp", 8, width=width, num_classes=21).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 61, 75))
    assert out.shape == (1, 21, 61, 75)
