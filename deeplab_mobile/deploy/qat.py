"""Quantization-aware fine-tuning with PyTorch's maintained flow, PT2E in torchao: the trained float model is
captured with ``torch.export`` (free batch, height and width), fake quantization is inserted (int8 weights per
output channel; BatchNorm kept and folded at conversion), the model is fine-tuned with a small LR, converted, and
exported to ONNX as QuantizeLinear/DequantizeLinear pairs that ONNX Runtime runs with integer kernels, the same
format as post-training quantization (``deploy.quantize``), so both are evaluated and timed the same way.

The quantizer is XNNPACK's (int8 per-channel symmetric weights, int8 activations; ``executorch.xnnpack_quantizer``),
the one the ExecuTorch INT8 export calibrates with: the fine-tuned model goes to ONNX Runtime as a QDQ file and to
ExecuTorch as an XNNPACK program from the same converted graph. (torchao's x86 and Arm inductor quantizers refuse
MobileNetV2's residual conv -> BN -> add partitions: "Input partition has more than one output node".) The model is
the segmentor's feature-resolution logits (``FeatureLogits``); the resize to the image runs outside, in float, as
it does for the PTQ model.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn
from tqdm import tqdm

from ..extras import require
from ..files import atomic_path
from .executorch import xnnpack_quantizer
from .exported import dynamic_shapes
from .onnx import FeatureLogits


def prepare_qat(model: nn.Module, crop_size: int) -> fx.GraphModule:
    """The segmentor (``logits``) captured and annotated for QAT, in training mode."""
    require("Quantization-aware training", "torchao", "executorch")
    from torchao.quantization.pt2e import move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    net = FeatureLogits(model).train()
    example = torch.randn(2, 3, crop_size, crop_size)
    exported = torch.export.export(net, (example,), dynamic_shapes=dynamic_shapes()).module()
    prepared = prepare_qat_pt2e(exported, xnnpack_quantizer(qat=True))
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
) -> list[float]:
    """``steps`` SGD steps on (uint8 NHWC image, int64 mask) batches: the logits resized to the mask, cross-entropy
    (TF DeepLab's QAT recipe: momentum SGD, LR 3e-5, 2-5K steps at batch 8). Returns the losses."""
    optimizer = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=momentum)
    losses: list[float] = []
    it = iter(batches)
    for _ in tqdm(range(steps), desc="QAT", leave=False, disable=not progress):
        images, masks = next(it)
        logits = prepared(normalize(images))
        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=align_corners)
        loss = F.cross_entropy(logits, masks, ignore_index=ignore_index)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"QAT loss is {loss.item()} at step {len(losses) + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def convert(prepared: fx.GraphModule) -> fx.GraphModule:
    """Freeze the fine-tuned model's quantization (BN folded): the integer model both runtimes get."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared)


def export_qdq_onnx(converted: fx.GraphModule, path: str | Path, opset: int = 18) -> Path:
    """A converted PT2E model as a QDQ ONNX file (free batch, height and width), atomically."""
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
    with atomic_path(path) as tmp:
        program.save(str(tmp))
    return path
