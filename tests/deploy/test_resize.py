"""The final resize as two interpolation-matrix products: hand-computed weights, agreement with the exact
(float64) bilinear resize under both geometries, and the exported graphs that use it (float, and INT8 with the
resize kept in float)."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from deeplab_mobile.deploy import export_onnx
from deeplab_mobile.deploy.prepare import FeatureLogits
from deeplab_mobile.deploy.quantize import quantize_model
from deeplab_mobile.deploy.resize import FixedSizeResize, MatmulUpsample, interpolation_matrix, resize_bilinear
from deeplab_mobile.models import build_model

# 2 -> 4 by hand. align_corners=True: source rows i * 1/3 = 0, 1/3, 2/3, 1. align_corners=False: (i + 0.5) / 2 - 0.5
# = -0.25, 0.25, 0.75, 1.25, clamped to the edge rows: 0, 0.25, 0.75, 1.
HAND = {
    True: [[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]],
    False: [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]],
}
SIZES = [(33, 33, 513, 513), (17, 25, 257, 385), (65, 65, 513, 513), (5, 7, 9, 11), (33, 33, 16, 16), (4, 1, 1, 6)]


@pytest.mark.parametrize("align_corners", [True, False])
def test_matrix_by_hand(align_corners):
    a = interpolation_matrix(2, 4, align_corners, torch.zeros((), dtype=torch.float64))
    assert torch.allclose(a, torch.tensor(HAND[align_corners], dtype=torch.float64), atol=1e-15)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("h, w, H, W", SIZES)
def test_resize_is_the_exact_bilinear_resize(align_corners, h, w, H, W):
    """Against F.interpolate in float64 (the exact resize): the same weights to float64 rounding, and in float32
    within 1e-5 on logits of magnitude ~40 (PyTorch's own float32 kernel is off by up to ~4e-4 there: its source
    coordinates are rounded to float32)."""
    x = torch.randn(2, 21, h, w, generator=torch.Generator().manual_seed(h * w)) * 10
    exact = F.interpolate(x.double(), (H, W), mode="bilinear", align_corners=align_corners)
    assert (resize_bilinear(x.double(), (H, W), align_corners) - exact).abs().max() < 1e-12
    out = resize_bilinear(x, (H, W), align_corners)
    assert out.dtype == torch.float32 and out.shape == (2, 21, H, W)
    assert (out.double() - exact).abs().max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("geometry", ["torch", "deeplab"])
def test_exported_graph_resizes_with_matmuls(tmp_path, geometry):
    """The final resize is two MatMuls instead of a Resize node (the head's image pooling keeps its own), the
    export matches the PyTorch model, and INT8 with ``keep_float=logits`` leaves both in float. (Static exports: a
    fraction of a dynamic one's export time; free sizes are test_deploy.py's parity test, which runs this resize.)"""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = build_model(head="no_aspp", width=0.35, geometry=geometry).eval()
    ops = {}
    for resize in ("interpolate", "matmul"):
        path = export_onnx(net, tmp_path / f"{resize}.onnx", (65, 81), resize=resize)
        ops[resize] = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops["interpolate"].count("Resize") == ops["matmul"].count("Resize") + 1
    assert ops["matmul"].count("MatMul") == 2 and ops["interpolate"].count("MatMul") == 0
    session = ort.InferenceSession(str(tmp_path / "matmul.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        ref = net(x).numpy()
    (out,) = session.run(None, {"image": x.numpy()})
    assert np.abs(out - ref).max() <= 1e-4

    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 3, 65, 81), dtype=np.float32) for _ in range(2)]
    int8 = quantize_model(tmp_path / "matmul.onnx", tmp_path / "int8.onnx", batches, keep_float=("logits",))
    graph = onnx.load(str(int8)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == 2
    assert all(producer.get(i) != "DequantizeLinear" for n in matmuls for i in n.input)


def test_wrapper_matches_the_model():
    net = build_model(head="lraspp", width=0.35).eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        assert torch.allclose(MatmulUpsample(net)(x), net(x), atol=1e-4)


@pytest.mark.parametrize("size, own", [((65, 65), ["a"]), ((65, 81), ["a", "b_t"])])
def test_static_resize_matches_the_model_and_keeps_a_square_matrix_once(size, own):
    """A static export's resize keeps its matrices as buffers; a square one (both sides the same matrix) one."""
    net = build_model(head="no_aspp", width=0.35).eval()
    fixed = FixedSizeResize(FeatureLogits(net), size, align_corners=False).eval()
    assert [name for name, _ in fixed.named_buffers() if "." not in name] == own
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert torch.allclose(fixed(x), net(x), atol=1e-4)
