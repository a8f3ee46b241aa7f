"""Quantization-aware fine-tuning with PyTorch's maintained flow, PT2E in torchao: the trained float model is
captured with ``torch.export`` (free batch, height and width), fake quantization is inserted (int8 weights per
output channel; BatchNorm kept and folded at conversion), the model is fine-tuned with a small LR, converted, and
exported to ONNX as QuantizeLinear/DequantizeLinear pairs that ONNX Runtime runs with integer kernels, the same
format as post-training quantization (``deploy.quantize``: uint8 activations, int8 weights), so both are evaluated
and timed the same way.

The quantizer is XNNPACK's (int8 per-channel symmetric weights, int8 activations; ``pt2e.xnnpack_quantizer``, the
layers ``keep_float`` names left in float as post-training INT8 leaves them), the one the ExecuTorch INT8 export
calibrates with: the fine-tuned model goes to ONNX Runtime as a QDQ file and to ExecuTorch as an XNNPACK program
from the same converted graph. (torchao's x86 and Arm inductor quantizers refuse
MobileNetV2's residual conv -> BN -> add partitions: "Input partition has more than one output node".) The model is
the segmentor's feature-resolution logits (``FeatureLogits``); the resize to the image runs outside, in float, as
it does for the PTQ model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from tqdm import tqdm

from ..errors import InvalidValue
from ..extras import require
from ..files import atomic_path
from .exported import dynamic_shapes
from .fold import fold_batchnorm
from .prepare import FeatureLogits
from .pt2e import freeze_batchnorm, freeze_observers, xnnpack_quantizer

SCHEDULES = ("constant", "poly")


def prepare_qat(model: nn.Module, crop_size: int, keep_float: Sequence[str] = ()) -> fx.GraphModule:
    """The segmentor (``logits``) captured and annotated for QAT (the ``keep_float`` layers in float), in training
    mode. With ``first`` kept in float, the first layer's BatchNorm is folded into its conv beforehand (with its
    trained statistics): otherwise PT2E's conv-BN fusion for QAT leaves that float layer as a conv, a division, an
    addition and a BatchNorm, which ONNX Runtime and XNNPACK run unfused."""
    require("Quantization-aware training", "torchao", "executorch")
    zero = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.affine and (m.weight == 0).any()]
    if zero:  # a freshly built model's residual BNs start at zero scale
        raise InvalidValue(
            f"QAT: BatchNorm scale (weight) exactly 0 in {len(zero)} layer(s) ({', '.join(zero[:3])}"
            f"{', ...' if len(zero) > 3 else ''}): PT2E's conv-BN fusion divides by it; fine-tune a trained model"
        )
    from torchao.quantization.pt2e import move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    net = FeatureLogits(model)
    if "first" in keep_float:  # a float layer needs no simulated BN folding: folded now, it runs as one float conv
        net = fold_batchnorm(net, first_only=True)
    net = net.train()
    example = torch.randn(2, 3, crop_size, crop_size)
    exported = torch.export.export(net, (example,), dynamic_shapes=dynamic_shapes()).module()
    prepared = prepare_qat_pt2e(exported, xnnpack_quantizer(qat=True, keep_float=keep_float))
    move_exported_model_to_train(prepared)
    return prepared


def finetune(
    prepared: fx.GraphModule,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    normalize: nn.Module,
    steps: int,
    lr: float,
    momentum: float = 0.9,
    align_corners: bool = False,
    ignore_index: int = 255,
    progress: bool = False,
    schedule: str = "constant",
    freeze_bn_after: int | None = None,
    freeze_observers_after: int | None = None,
) -> list[float]:
    """``steps`` SGD steps on (uint8 NHWC image, int64 mask) batches: the logits resized to the mask, cross-entropy
    (TF DeepLab's QAT recipe: momentum SGD, LR 3e-5, 2-5K steps at batch 8). ``schedule``: the LR ``constant`` or
    ``poly`` (decayed to 0 with power 0.9, as training decays it). BatchNorm's statistics freeze after
    ``freeze_bn_after`` steps, the activation ranges after ``freeze_observers_after`` (None: never). Returns the
    losses."""
    if schedule not in SCHEDULES:
        raise InvalidValue(f"qat.schedule={schedule!r} is not supported; choose one of {SCHEDULES}")
    optimizer = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=momentum)
    decay = (lambda step: (1 - step / steps) ** 0.9) if schedule == "poly" else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    losses: list[float] = []
    it = iter(batches)
    for step in tqdm(range(steps), desc="QAT", leave=False, disable=not progress):
        if step == freeze_bn_after:
            freeze_batchnorm(prepared)
        if step == freeze_observers_after:
            freeze_observers(prepared)
        images, masks = next(it)
        logits = prepared(normalize(images))
        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=align_corners)
        loss = F.cross_entropy(logits, masks, ignore_index=ignore_index)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"QAT loss is {loss.item()} at step {len(losses) + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss))
    return losses


def convert(prepared: fx.GraphModule) -> fx.GraphModule:
    """Freeze the fine-tuned model's quantization (BN folded): the integer model both runtimes get."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared)


def export_qdq_onnx(converted: fx.GraphModule, path: str | Path, opset: int = 18) -> Path:
    """A converted PT2E model as a QDQ ONNX file (free batch, height and width; activations as uint8,
    ``activations_to_uint8``), atomically."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        program = torch.onnx.export(
            converted,
            (example,),
            input_names=["image"],
            output_names=["logits"],
            opset_version=opset,
            dynamic_shapes=dynamic_shapes(),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    model = activations_to_uint8(program.model_proto)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def activations_to_uint8(model):
    """Every int8 activation of a QDQ ONNX model (a QuantizeLinear with a scalar int8 zero point, and the
    DequantizeLinear ops that read it) made uint8: the zero point moves by 128, so every value and every dequantized
    number stays the same. XNNPACK's quantizer writes int8 activations, but ONNX Runtime's integer kernels on x86
    take uint8 activations with int8 weights (u8s8, the format of ``deploy.quantize``'s post-training files): it
    converts only some int8 pairs itself and runs the other convs and Adds in float (results/quantize.md). The
    weights (int8 constants, per channel) are left as they are. ONNX's own tools have no such rewrite, hence this
    one. Returns ``model``, changed in place."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    moved: dict[str, str] = {}

    def uint8_zero_point(name: str) -> str:
        if name not in moved:
            zero = numpy_helper.to_array(initializers[name]).astype(np.int16) + 128
            moved[name] = f"{name}_uint8"
            graph.initializer.append(numpy_helper.from_array(zero.astype(np.uint8), moved[name]))
        return moved[name]

    def int8_scalar(name: str) -> bool:
        t = initializers.get(name)
        return t is not None and t.data_type == onnx.TensorProto.INT8 and not t.dims

    quantized: set[str] = set()
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and int8_scalar(node.input[2]):
            node.input[2] = uint8_zero_point(node.input[2])
            quantized.add(node.output[0])
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in quantized:
            node.input[2] = uint8_zero_point(node.input[2])
    for info in graph.value_info:
        if info.name in quantized:
            info.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    used = {i for node in graph.node for i in node.input}
    unused = [t for t in graph.initializer if t.name in moved and t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    return model
