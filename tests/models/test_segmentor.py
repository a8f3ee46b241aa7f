"""The model owns its stride: ``set_output_stride`` turns a built network into the one built at another stride,
in place, for every encoder and head (strict state-dict loads both ways, identical outputs, the same geometry)."""

import pytest
import torch
from timm.models.efficientnet import _gen_mobilenet_v1

from deeplab_mobile.deploy import randomize_batchnorm
from deeplab_mobile.models import build_model, output_stride
from deeplab_mobile.models.encoders import MobileNetV1Encoder
from tests.helpers import geometry

ENCODERS = [
    ("mobilenet_v2", 0.35, None),
    ("mobilenet_v2", 0.35, "last"),
    ("mobilenet_v1", 0.25, None),
    ("resnet101", 1.0, None),
]
IDS = ["mnv2", "mnv2_last", "mnv1", "r101"]


def built(encoder, width, tap, head, os_, seed=0):
    torch.manual_seed(seed)
    model = build_model(encoder, head, os_, width=width, tap=tap).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed))  # so the logits depend on the geometry
    return model


@pytest.mark.parametrize("head", ["aspp", "no_aspp"])
@pytest.mark.parametrize("encoder, width, tap", ENCODERS, ids=IDS)
def test_set_output_stride_equals_building_at_that_stride(encoder, width, tap, head):
    x = torch.randn(1, 3, 65, 65, generator=torch.Generator().manual_seed(1))
    model = built(encoder, width, tap, head, 16)
    params = [id(p) for p in model.parameters()]
    with torch.no_grad():
        at16 = model(x)
        for os_ in (8, 32, 16):
            reference = built(encoder, width, tap, head, os_)
            assert model.set_output_stride(os_) is model
            reference.load_state_dict(model.state_dict(), strict=True)
            model.load_state_dict(reference.state_dict(), strict=True)
            assert model.output_stride == model.encoder.output_stride == os_
            assert geometry(model) == geometry(reference)
            assert torch.equal(model(x), reference(x))
            if head == "aspp":  # DeepLab: the rates scale with 16 / OS, on the atrous convs themselves
                rates = [r * 16 // os_ for r in (6, 12, 18)]
                atrous = [c for c in model.head.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (3, 3)]
                assert [(c.dilation[0], c.padding[0]) for c in atrous] == [(r, r) for r in rates]
        assert torch.equal(model(x), at16)  # back at 16: the network it was
    assert [id(p) for p in model.parameters()] == params  # the optimizer's parameters, not copies


def test_strides_differ_and_a_refused_stride_changes_nothing():
    model = built("mobilenet_v2", 0.35, None, "aspp", 16)
    before = geometry(model)
    assert geometry(built("mobilenet_v2", 0.35, None, "aspp", 8)) != before
    with pytest.raises(ValueError, match="output stride 12 is not supported"):
        model.set_output_stride(12)
    assert geometry(model) == before and model.output_stride == 16 and model.head.rates == (6, 12, 18)


def test_output_stride_block_runs_at_a_stride_then_restores():
    model = built("mobilenet_v2", 0.35, None, "no_aspp", 16)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        want8 = built("mobilenet_v2", 0.35, None, "no_aspp", 8)(x)
        at16 = model(x)
        with output_stride(model, 8) as m:
            assert m is model and torch.equal(m(x), want8)
        assert model.output_stride == 16 and torch.equal(model(x), at16)
        with output_stride(model, None):
            assert model.output_stride == 16


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_mobilenet_v1_dilation_equals_timms_own(os_):
    """The encoder applies the TF rule itself (so it can change a built network); timm's builder applies the same
    rule at build time: the two networks compute the same function."""
    torch.manual_seed(0)
    ours = MobileNetV1Encoder(width=0.25, output_stride=os_).eval()
    theirs = _gen_mobilenet_v1(
        "mobilenetv1_100", channel_multiplier=0.25, output_stride=os_, num_classes=0, global_pool=""
    ).eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    dws = [m for m in theirs.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert [(c.stride, c.dilation, c.padding) for c in ours.depthwise_convs] == [
        (c.stride, c.dilation, c.padding) for c in dws
    ]
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs.blocks(theirs.bn1(theirs.conv_stem(x))))
