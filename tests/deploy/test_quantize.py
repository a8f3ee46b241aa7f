"""Post-training INT8 with ONNX Runtime: the quantized graph's structure (QDQ, per-channel int8 weights), its
closeness to the float model, and refusals that leave no file behind."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from deeplab_mobile.deploy import OnnxSegmentor, export_onnx, randomize_batchnorm
from deeplab_mobile.deploy.quantize import QuantizationError, quantize_model
from deeplab_mobile.models import build_model

pytestmark = pytest.mark.slow  # ONNX export and INT8 calibration

SIZE = (65, 65)


@pytest.fixture(scope="module")
def float_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(head="no_aspp", width=0.5), torch.Generator().manual_seed(0)).eval()
    for m in model.modules():  # kernels at He scale: activations of order 1 all the way to the logits
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = export_onnx(model, tmp_path_factory.mktemp("float") / "model.onnx", SIZE, dynamic=True)
    return model, path


def calibration(n=8, seed=0):
    g = np.random.default_rng(seed)
    return [g.standard_normal((1, 3, *SIZE), dtype=np.float32) for _ in range(n)]


@pytest.mark.parametrize("keep_float", [(), ("first", "logits")])
def test_int8_model_is_qdq_with_per_channel_weights_and_close_to_float(float_onnx, tmp_path, keep_float):
    model, path = float_onnx
    out = quantize_model(path, tmp_path / "model.int8.onnx", calibration(), keep_float=keep_float)
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    int8_weights = [a for a in inits.values() if a.dtype == np.int8 and a.ndim == 4]
    float_weights = [a for a in inits.values() if a.dtype == np.float32 and a.ndim == 4]
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    n_float = 2 if keep_float else 0  # the first conv (3 input channels) and the classifier (21 outputs)
    assert len(int8_weights) == n_convs - n_float and len(float_weights) == n_float
    assert sorted(w.shape[1] for w in float_weights)[:1] == ([3] if keep_float else [])
    # per channel: each kernel's DequantizeLinear has one scale per output channel (depthwise: per filter)
    by_output = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in by_output:
            dq = by_output[node.input[1]]
            assert dq.op_type == "DequantizeLinear"
            kernel, scale = inits[dq.input[0]], inits[dq.input[1]]
            assert kernel.dtype == np.int8 and scale.shape == (kernel.shape[0],)
    assert out.stat().st_size < 0.45 * path.stat().st_size  # int8 kernels: about a quarter, plus the QDQ graph


def test_int8_outputs_are_the_float_outputs_within_the_quantization_step(tmp_path):
    """A conv / depthwise / ReLU6 / 1x1 stack (a deep random network amplifies rounding without bound, a trained
    one does not; the trained case is the quantize app's test): INT8 logits within a few steps of the output's
    8-bit grid on average (the rounding of the input and two activations adds up)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU6(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.ReLU6(),
        nn.Conv2d(16, 5, 1),
    ).eval()
    path = export_onnx(net, tmp_path / "small.onnx", SIZE, fold_bn=False)
    out = quantize_model(path, tmp_path / "small.int8.onnx", calibration(16), keep_float=())
    x = torch.from_numpy(calibration(1, seed=5)[0])
    with torch.no_grad():
        ref = net(x)
    q = OnnxSegmentor(out)(x)
    step = (ref.max() - ref.min()) / 255  # one uint8 step of the output's range
    err = (q - ref).abs().flatten()
    assert err.mean() < 2 * step and torch.quantile(err, 0.99) < 8 * step
    assert (q.argmax(1) == ref.argmax(1)).float().mean() > 0.9


@pytest.mark.parametrize(("weight_type", "reduce_range"), [("uint8", False), ("int8", True)])
def test_uint8_weights_and_the_reduced_range(tmp_path, weight_type, reduce_range):
    """u8u8: uint8 kernels, symmetric about the zero point 128; reduce_range: int8 kernels in 7 bits (each filter's
    largest weight at +-64, not +-127). Both still compute the float network."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU6(), nn.Conv2d(16, 5, 1)).eval()
    path = export_onnx(net, tmp_path / "small.onnx", SIZE, fold_bn=False)
    out = quantize_model(
        path, tmp_path / "q.onnx", calibration(8), keep_float=(), weight_type=weight_type, reduce_range=reduce_range
    )
    graph = onnx.load(str(out)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kernels = [a for a in inits.values() if a.ndim == 4]
    assert len(kernels) == 2 and all(k.dtype == np.dtype(weight_type) for k in kernels)
    zero = 128 if weight_type == "uint8" else 0
    peaks = [np.abs(k.astype(np.int32) - zero).reshape(len(k), -1).max(1) for k in kernels]
    if reduce_range:
        assert all((p == 64).all() for p in peaks)  # symmetric 7 bits: [-64, 64]
    else:
        assert all((p >= 127).all() for p in peaks)  # the full 8 bits
    x = torch.from_numpy(calibration(1, seed=5)[0])
    with torch.no_grad():
        ref = net(x)
    err = (OnnxSegmentor(out)(x) - ref).abs()
    assert err.mean() < 2 * (ref.max() - ref.min()) / 255


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_other_calibration_methods_run(float_onnx, tmp_path, method):
    _, path = float_onnx
    out = quantize_model(path, tmp_path / "q.onnx", calibration(4), method=method)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)


def leaves_nothing(tmp_path):
    return [p.name for p in tmp_path.iterdir() if p.name != "other.onnx"]


def test_refusals_name_the_problem_and_write_nothing(float_onnx, tmp_path):
    _, path = float_onnx
    out = tmp_path / "q.onnx"
    with pytest.raises(QuantizationError, match="method='kl'"):
        quantize_model(path, out, calibration(), method="kl")
    with pytest.raises(QuantizationError, match="weight_type='int4'"):
        quantize_model(path, out, calibration(), weight_type="int4")
    with pytest.raises(QuantizationError, match="no calibration images"):
        quantize_model(path, out, [])
    assert not leaves_nothing(tmp_path)
    # an ONNX model that is not this framework's logits export
    other = tmp_path / "other.onnx"
    torch.onnx.export(nn.Conv2d(3, 4, 1), (torch.randn(1, 3, 8, 8),), str(other), input_names=["x"], dynamo=False)
    with pytest.raises(QuantizationError, match="not a deeplab-mobile logits export"):
        quantize_model(other, out, calibration())
    other.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(QuantizationError, match="not a readable ONNX file"):
        quantize_model(other, out, calibration())
    assert not leaves_nothing(tmp_path)
