"""The on-device path: BN folding, the memory-efficient inverted residual, peak-memory counting, ONNX export with
ONNX Runtime parity (logits and class maps, static and dynamic sizes)."""

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
from torch import nn

from deeplab_mobile.deploy import (
    ChunkedInvertedResidual,
    count_batchnorm,
    export_onnx,
    fold_batchnorm,
    make_memory_efficient,
    randomize_batchnorm,
)
from deeplab_mobile.deploy.peak import peak_activation_bytes
from deeplab_mobile.models import build_model


def model(encoder="mobilenet_v2", head="no_aspp", os_=16, width=0.35, seed=0, geometry="torch"):
    torch.manual_seed(seed)
    net = build_model(encoder, head, os_, width=width, geometry=geometry)
    return randomize_batchnorm(net, torch.Generator().manual_seed(seed)).eval()


@pytest.mark.parametrize(
    "encoder, head, width",
    [
        ("mobilenet_v2", "aspp", 0.35),
        ("mobilenet_v2", "no_aspp", 0.5),
        ("mobilenet_v1", "aspp", 0.25),
        ("mobilenet_v2", "deeplabv3plus", 0.35),
        ("mobilenet_v3", "lraspp", 0.5),
    ],
)
def test_folding_removes_every_batchnorm_and_keeps_the_function(encoder, head, width):
    net = model(encoder, head, width=width)
    folded = fold_batchnorm(net)
    assert count_batchnorm(net) > 20 and count_batchnorm(folded) == 0
    x = torch.randn(2, 3, 65, 97)
    with torch.no_grad():
        assert (folded(x) - net(x)).abs().max().item() < 1e-4
    assert count_batchnorm(net) > 20  # the original is untouched


def test_folding_only_the_first_layer():
    """``first_only``: the conv that reads the input gets its BN folded, every other BN stays (QAT keeps the first
    layer in float this way)."""
    net = model("mobilenet_v2", "no_aspp", width=0.35)
    folded = fold_batchnorm(net, first_only=True)
    assert count_batchnorm(folded) == count_batchnorm(net) - 1
    names = {name for name, _ in folded.named_modules()}
    assert "encoder.features.0.1" not in names and "encoder.features.1.conv.0.1" in names  # the stem's BN only
    x = torch.randn(2, 3, 65, 97)
    with torch.no_grad():
        assert (folded(x) - net.eval()(x)).abs().max().item() < 1e-4


def test_folding_matches_the_formula_on_one_conv():
    conv, bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)
    randomize_batchnorm(nn.Sequential(conv, bn))
    folded = fold_batchnorm(nn.Sequential(conv, bn))
    (fused,) = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # w' = w * gamma / sigma; b' = beta - mean * scale
    assert torch.allclose(fused.weight, conv.weight * scale[:, None, None, None], atol=1e-6)
    assert torch.allclose(fused.bias, bn.bias - bn.running_mean * scale, atol=1e-6)


def test_memory_efficient_blocks_same_output_less_memory():
    net = model(width=1.0)
    chunked = make_memory_efficient(copy.deepcopy(net), chunks=4)
    assert sum(isinstance(m, ChunkedInvertedResidual) for m in chunked.modules()) == 16  # 17 blocks, 1 w/o expansion
    x = torch.randn(1, 3, 129, 161)
    with torch.no_grad():
        assert (chunked(x) - net(x)).abs().max().item() <= 1e-5
    # Block 1 of MobileNetV2 at 257x257 (a 513 input): 16 -> 96 channels expanded, then the depthwise output:
    # 2 x 96 x 257^2 fp32 = 48.4 MB alive together without chunking.
    x = torch.randn(1, 3, 513, 513)
    plain, low = peak_activation_bytes(net, x), peak_activation_bytes(chunked, x)
    assert plain >= 2 * 96 * 257 * 257 * 4
    assert low < 0.6 * plain


def test_peak_count_of_a_known_graph():
    """Three convs in a row: at most the input-side output and the next output are alive together."""
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 16, 1), nn.Conv2d(16, 4, 1)).eval()
    x = torch.randn(1, 3, 10, 10)
    assert peak_activation_bytes(net, x) == (8 + 16) * 100 * 4


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("head, geometry", [("aspp", "torch"), ("lraspp", "torch"), ("deeplabv3plus", "deeplab")])
@pytest.mark.slow
def test_onnx_parity_dynamic_sizes(tmp_path, head, geometry):
    """Also under DeepLab's geometry, whose strided convs pad by the input's size ("SAME"): the even size checks
    that the padding follows the size at run time and was not frozen at the export size."""
    net = model(head=head, geometry=geometry)
    path = export_onnx(net, tmp_path / "m.onnx", (65, 65), dynamic=True)
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 17
    assert not any(n.op_type == "BatchNormalization" for n in graph.graph.node)  # folded
    s = session(path)
    for h, w in [(65, 65), (97, 129), (96, 66)]:
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            ref = net(x).numpy()
        (out,) = s.run(None, {"image": x.numpy()})
        assert out.shape == (1, 21, h, w)
        assert np.abs(out - ref).max() <= 1e-4
        assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("labels, dtype", [("uint8", np.uint8), ("int32", np.int32)])
def test_onnx_label_map_static(tmp_path, labels, dtype):
    net = model()
    path = export_onnx(net, tmp_path / "m.onnx", (65, 81), dynamic=False, labels=labels)
    x = torch.randn(1, 3, 65, 81)
    (out,) = session(path).run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = net(x).argmax(1).numpy()
    assert out.dtype == dtype and out.shape == (1, 65, 81)
    assert np.mean(out == ref) >= 0.999
    with pytest.raises(InvalidArgument, match="dimensions"):  # static: another size is refused by the runtime
        session(path).run(None, {"image": np.zeros((1, 3, 97, 97), np.float32)})


def test_bad_export_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        export_onnx(model(), tmp_path / "m.onnx", (65, 65), labels="float")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model(), tmp_path / "m.onnx", (65, 65), opset=13)


def test_untraceable_model_gives_a_clear_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            if x.shape[-1] % 8:  # like SMP's input check: Python control flow on a traced value
                raise RuntimeError("size")
            return self.bn(self.conv(x))

    with pytest.raises(ValueError, match="Branchy cannot be traced"):
        fold_batchnorm(Branchy())
