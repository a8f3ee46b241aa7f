"""PT2E quantization (torchao) with XNNPACK's quantizer: the one quantization path of the ExecuTorch INT8 programs
(post-training, ``executorch.quantize_pt2e``) and of quantization-aware fine-tuning (``qat``).

XNNPACK's quantizer: int8 weights per output channel, symmetric; int8 activations; each ReLU6 quantized with its
conv (``fuse_clamps``). Its ``set_module_name(name,
None)`` would leave a layer in float but is not supported in ExecuTorch 1.5 ("quantization_config == None is not
supported yet"), so the layers ``keep_float`` names are left in float here, by a quantizer that annotates the graph
as XNNPACK's does and then removes the annotations of those layers' nodes: the same groups as ONNX Runtime's
post-training INT8 (``deploy.quantize.KEEP_FLOAT``), found the same way, by the graph's structure:

- ``first``: the conv that reads the graph's input (the image), with its BatchNorm and activation;
- ``logits``: the nodes from the graph's output back to (and including) the last conv: the classifier, and the
  final resize where the graph has one.

A kept layer's input is still quantized where its producer's output is (a quantize/dequantize pair), as in ONNX
Runtime's file; the layer itself computes in float.

The usual QAT recipe's late phase, also here: ``freeze_batchnorm`` stops BatchNorm's batch statistics (the running
ones are used and no longer updated) and ``freeze_observers`` stops the activation ranges from moving.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import fx

from ..errors import InvalidValue
from ..extras import require
from .quantize import KEEP_FLOAT

_CONVS = (torch.ops.aten.conv2d.default,)
# BatchNorm: eval, training, and the form QAT's conv-BN fusion writes
_BATCHNORM = {
    torch.ops.aten.batch_norm.default,
    torch.ops.aten._native_batch_norm_legit.default,
    torch.ops.aten._native_batch_norm_legit_no_training.default,
}
_CLAMPS = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}
# what follows a conv inside its layer: BatchNorm and the activation; the first layer ends where the chain meets
# anything else
_LAYER_TAIL = (
    _BATCHNORM | _CLAMPS | {torch.ops.aten.relu.default, torch.ops.aten.relu_.default, torch.ops.aten.clamp.default}
)
# BatchNorm ops whose 6th argument is ``training``
_TRAINING_BN = (torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit.default)


def _check_groups(groups: Sequence[str]) -> None:
    unknown = sorted(set(groups) - set(KEEP_FLOAT))
    if unknown:
        raise InvalidValue(f"keep_float: unknown layer group(s) {unknown}; choose from {KEEP_FLOAT}")


def float_layer_nodes(graph: fx.Graph, groups: Sequence[str]) -> list[fx.Node]:
    """The nodes of the ``groups`` of ``KEEP_FLOAT`` in a captured graph (see the module's note)."""
    _check_groups(groups)
    nodes: list[fx.Node] = []
    if "first" in groups:
        inputs = {n for n in graph.nodes if n.op == "placeholder"}
        for conv in [n for n in graph.nodes if n.target in _CONVS and n.args[0] in inputs]:
            node = conv
            while True:
                nodes.append(node)
                users = list(node.users)
                if len(users) != 1 or users[0].target not in _LAYER_TAIL:
                    break
                node = users[0]
    if "logits" in groups:
        frontier = [i for n in graph.nodes if n.op == "output" for i in n.all_input_nodes]
        while frontier:
            node = frontier.pop()
            if node.op != "call_function" or node in nodes:
                continue
            nodes.append(node)
            if node.target not in _CONVS:
                frontier += node.all_input_nodes
    return nodes


def fuse_clamps(graph: fx.Graph) -> int:
    """Quantize each ReLU6 (``hardtanh``) that follows a conv (or conv + BatchNorm) at its own output, not at the
    conv's: conv -> ReLU6 -> quantize, the fused pattern that XNNPACK's quantizer writes for ReLU but not for ReLU6,
    whose annotation quantizes the conv's output and then the clamp's with the same range. Written by hand because
    the quantizer has no such pattern. Two gains: the range covers [0, 6] instead of the conv's wider pre-clamp
    range (finer steps), and both runtimes fuse the pair into one integer conv (ONNX Runtime drops a clip whose
    quantized range lies inside it; XNNPACK folds the clamp into the conv's output bounds), where ONNX Runtime left
    the clip between a dequantize and a quantize and ran its conv in float. Returns the number of clamps fused."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    key = "quantization_annotation"
    fused = 0
    for node in graph.nodes:
        if node.target not in _CLAMPS or not isinstance(node.args[0], fx.Node):
            continue
        producer = node.args[0]
        annotation = producer.meta.get(key)
        if (
            annotation is None
            or annotation.output_qspec is None
            or isinstance(annotation.output_qspec, SharedQuantizationSpec)
            or len(producer.users) != 1
            or not _after_conv(producer)
        ):
            continue
        node.meta[key] = QuantizationAnnotation(output_qspec=annotation.output_qspec, _annotated=True)
        annotation.output_qspec = None
        fused += 1
    return fused


def _after_conv(node: fx.Node) -> bool:
    """``node`` is a conv, or the BatchNorm (through its ``getitem``) of one."""
    while node.target in _BATCHNORM or node.target is operator.getitem:
        node = node.args[0]
    return node.target in _CONVS


def xnnpack_quantizer(qat: bool = False, keep_float: Sequence[str] = ()):
    """XNNPACK's PT2E quantizer (``qat``: with fake-quant observers for training), each conv's ReLU6 quantized as
    one with it (``fuse_clamps``), the ``keep_float`` layers left in float."""
    require("INT8 with XNNPACK's quantizer", "executorch", "torchao")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantizer import Quantizer

    base = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
    _check_groups(keep_float)  # now, not at annotation

    class DeployQuantizer(Quantizer):
        """XNNPACK's annotation, ReLU6 fused to its conv, less the ``keep_float`` layers'."""

        def transform_for_annotation(self, model: fx.GraphModule) -> fx.GraphModule:
            return base.transform_for_annotation(model)

        def annotate(self, model: fx.GraphModule) -> fx.GraphModule:
            base.annotate(model)
            fuse_clamps(model.graph)
            for node in float_layer_nodes(model.graph, keep_float):
                node.meta.pop("quantization_annotation", None)
            return model

        def validate(self, model: fx.GraphModule) -> None:
            base.validate(model)

    return DeployQuantizer()


def freeze_batchnorm(prepared: fx.GraphModule) -> int:
    """BatchNorm of a QAT model from now on normalises with its running statistics and stops updating them; the
    number of BatchNorm layers frozen. (PT2E graphs carry BatchNorm's mode as an argument of the op, not as a
    module's ``training`` flag, so the argument is what changes.)"""
    frozen = 0
    for node in prepared.graph.nodes:
        if node.target in _TRAINING_BN and node.args[5] is True:
            node.args = (*node.args[:5], False, *node.args[6:])
            frozen += 1
    prepared.recompile()
    return frozen


def freeze_observers(prepared: fx.GraphModule) -> None:
    """The fake quantizers keep their current ranges (scales and zero points) for the rest of the fine-tuning."""
    from torchao.quantization.pt2e import disable_observer

    prepared.apply(disable_observer)
