"""ONNX export for devices: BatchNorm folded, optional label-map output (argmax), static or dynamic H x W."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.export import Dim

from .fold import fold_batchnorm

LABEL_DTYPES = {"int32": torch.int32, "uint8": torch.uint8}


class LabelMap(nn.Module):
    """Logits -> class indices (N, H, W), so a device receives classes rather than 21 float maps."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.uint8) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).argmax(dim=1).to(self.dtype)


def prepare_for_export(model: nn.Module, labels: str | None = None, fold_bn: bool = True) -> nn.Module:
    """The module that gets exported: eval mode, BN folded (``fold_bn``), wrapped in ``LabelMap`` if ``labels`` is
    ``"int32"`` or ``"uint8"``."""
    if labels is not None and labels not in LABEL_DTYPES:
        raise ValueError(f"labels must be one of {sorted(LABEL_DTYPES)} or None, not {labels!r}")
    model = fold_batchnorm(model) if fold_bn else model.eval()
    return LabelMap(model, LABEL_DTYPES[labels]).eval() if labels else model


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] = (513, 513),
    dynamic: bool = False,
    labels: str | None = None,
    fold_bn: bool = True,
    opset: int = 18,
) -> Path:
    """Write ``model`` as ONNX to ``path``: input ``image`` (N, 3, H, W) float32, normalised; output ``logits``
    (N, 21, H, W) or ``labels`` (N, H, W). ``dynamic`` leaves N, H and W free; otherwise they are fixed to
    batch 1 and ``size``."""
    if opset < 17:
        raise ValueError(f"opset {opset} < 17: the export needs opset 17 or later")
    net = prepare_for_export(model, labels, fold_bn)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, 3, *size)
    output = "labels" if labels else "logits"
    shapes = None
    if dynamic:  # torch.export dimensions; the model needs at least a 33x33 input (OS16 -> 3x3 features)
        batch, height, width = Dim("batch"), Dim("height", min=33), Dim("width", min=33)
        shapes = ({0: batch, 2: height, 3: width},)  # by position: any forward argument name
    tmp = path.with_name(f".{path.name}.tmp")
    # The torch.export-based exporter (torch's maintained path; the TorchScript one is deprecated).
    with torch.no_grad():
        program = torch.onnx.export(
            net, (example,), input_names=["image"], output_names=[output], opset_version=opset,
            dynamic_shapes=shapes, dynamo=True, external_data=False, verbose=False,
        )  # fmt: skip
    program.save(str(tmp))
    tmp.replace(path)
    return path
