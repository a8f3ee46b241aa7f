"""PT2E with XNNPACK's quantizer: the ``keep_float`` layers found by the graph's structure and left in float, after
post-training quantization and under QAT; BatchNorm statistics and activation ranges that freeze when told."""

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from deeplab_mobile.deploy.fold import randomize_batchnorm
from deeplab_mobile.deploy.prepare import prepare_for_export
from deeplab_mobile.deploy.pt2e import float_layer_nodes, freeze_batchnorm, freeze_observers, xnnpack_quantizer
from deeplab_mobile.models import build_model

pytest.importorskip("executorch")
CONV = torch.ops.aten.conv2d.default
HARDTANH_ = torch.ops.aten.hardtanh_.default
QUANTIZE = "quantized_decomposed.quantize_per_tensor.default"  # registered when torchao is imported


def weight_of(conv, graph_module):
    """The parameter name a conv node's weight comes from, through any dequantize op (None: computed)."""
    node = conv.args[1]
    while node.op == "call_function" and node.all_input_nodes:
        node = node.all_input_nodes[0]
    return node.target if node.op == "get_attr" else None


def captured(model, size=65):
    net = prepare_for_export(model.eval(), None, True, True, "matmul", (size, size))
    return torch.export.export(net, (torch.randn(1, 3, size, size),)).module()


def test_keep_float_groups_are_the_first_layer_and_the_classifier_with_its_resize():
    model = build_model(head="no_aspp", width=0.35)
    graph = captured(model)
    first = float_layer_nodes(graph.graph, ["first"])
    assert [n.target for n in first] == [CONV, HARDTANH_]  # BN folded by the export
    assert weight_of(first[0], graph).endswith("encoder.features.0.0.weight")
    logits = float_layer_nodes(graph.graph, ["logits"])
    convs = [n for n in logits if n.target == CONV]
    assert len(convs) == 1 and weight_of(convs[0], graph).endswith("head.classifier.weight")
    assert sum("matmul" in str(n.target) for n in logits) == 2  # the resize: A @ x @ B.T
    assert not set(first) & set(logits)
    with pytest.raises(ValueError, match=r"unknown layer group\(s\) \['last'\]"):
        xnnpack_quantizer(keep_float=["last"])


@pytest.mark.slow
def test_kept_layers_read_float_weights_after_post_training_int8():
    from deeplab_mobile.deploy.executorch import quantize_pt2e

    model = build_model(head="no_aspp", width=0.35).eval()
    net = prepare_for_export(model, None, True, False, "matmul", None)
    batches = [torch.randn(1, 3, 65, 65) for _ in range(2)]
    converted = quantize_pt2e(net, batches, (65, 65), dynamic=False, keep_float=("first", "logits"))
    convs = [n for n in converted.graph.nodes if n.target == CONV]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    float_weights = [n for n in convs if n.args[1].op == "get_attr"]  # a quantized weight comes through dequantize
    assert len(float_weights) == 2  # every other conv is int8
    first, classifier = (weight_of(n, converted) for n in float_weights)
    assert first.endswith("encoder.features.0.0.weight") and classifier.endswith("head.classifier.weight")
    assert float_weights[0].args[0].op == "placeholder"  # the first conv reads the image as it is
    # each quantized conv's ReLU6 reads the conv itself (no quantize between them) and is quantized at its output
    clamps = [n for n in converted.graph.nodes if n.target in (torch.ops.aten.hardtanh.default, HARDTANH_)]
    fused = [n for n in clamps if n.args[0].target == CONV and n.args[0] not in float_weights]
    assert len(fused) == len(clamps) - 1 == sum(isinstance(m, nn.ReLU6) for m in model.modules()) - 1
    assert all([str(u.target) for u in n.users] == [QUANTIZE] for n in fused)


@pytest.mark.slow
def test_batchnorm_statistics_and_activation_ranges_freeze_under_qat():
    from deeplab_mobile.deploy.qat import prepare_qat

    model = build_model(head="no_aspp", width=0.35)
    with pytest.raises(ValueError, match=r"BatchNorm scale \(weight\) exactly 0 in 10 layer\(s\)"):
        prepare_qat(model, 33)  # the residual blocks' last BNs start at 0: PT2E's conv-BN fusion divides by them
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) - 1  # the float first layer's is folded
    prepared = prepare_qat(model, 33, keep_float=("first", "logits"))
    buffers = dict(prepared.named_buffers())
    running = {k: v for k, v in buffers.items() if k.endswith("running_mean")}
    scales = {k: v for k, v in buffers.items() if k.endswith(".scale")}
    assert len(running) == n_bn and scales
    torch.manual_seed(0)
    prepared(torch.randn(2, 3, 33, 33))
    before = {k: v.clone() for k, v in {**running, **scales}.items()}
    prepared(3 * torch.randn(2, 3, 33, 33) + 1)  # statistics and ranges that move while not frozen
    assert all(not torch.equal(before[k], v) for k, v in running.items())
    assert any(not torch.equal(before[k], v) for k, v in scales.items())

    assert freeze_batchnorm(prepared) == n_bn
    freeze_observers(prepared)
    before = {k: v.clone() for k, v in {**running, **scales}.items()}
    out = prepared(10 * torch.randn(2, 3, 33, 33) - 5)
    assert all(torch.equal(before[k], v) for k, v in {**running, **scales}.items())
    out.sum().backward()  # still trains: gradients reach the weights
    assert all(p.grad is not None for p in prepared.parameters() if p.requires_grad and p.dim() == 4)


def test_int8_activations_become_uint8_with_the_same_numbers():
    """A hand-built QDQ graph with int8 activations (as XNNPACK's quantizer writes them) and an int8 weight: after
    ``activations_to_uint8`` the activations' zero points are the old ones + 128 as uint8, the weight's is as it was,
    and ONNX Runtime gives bit-identical outputs."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from deeplab_mobile.deploy.qat import activations_to_uint8

    def const(name, value, dtype):
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    g = np.random.default_rng(0)
    weight = g.integers(-127, 128, (4, 3, 1, 1)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s1", "z1"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s1", "z1"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "s2", "z2"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s2", "z2"], ["out"]),
    ]
    inits = [
        const("s1", 0.05, np.float32),
        const("z1", -7, np.int8),
        const("s2", 0.2, np.float32),
        const("z2", 100, np.int8),
        numpy_helper.from_array(weight, "w"),
        const("sw", [0.01, 0.02, 0.03, 0.04], np.float32),
        const("zw", [0, 0, 0, 0], np.int8),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 5, 5])],
        inits,
        value_info=[helper.make_tensor_value_info(n, TensorProto.INT8, None) for n in ("xq", "yq")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = 4 * g.standard_normal((1, 3, 5, 5), dtype=np.float32)

    def run(m):
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})[0]

    before = run(model)
    converted = activations_to_uint8(onnx.load_from_string(model.SerializeToString()))
    values = {t.name: numpy_helper.to_array(t) for t in converted.graph.initializer}
    zero_points = {n.input[0]: values[n.input[2]] for n in converted.graph.node if n.op_type != "Conv"}
    assert zero_points["x"].dtype == np.uint8 and zero_points["x"] == 121  # -7 + 128
    assert zero_points["y"].dtype == np.uint8 and zero_points["y"] == 228  # 100 + 128
    assert zero_points["w"].dtype == np.int8  # weights stay int8
    assert {"z1", "z2"}.isdisjoint(values)  # the int8 zero points are gone
    np.testing.assert_array_equal(run(converted), before)
