"""ONNX export for devices: BatchNorm folded, optional label-map output (argmax), static or dynamic H x W."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.export import Dim

from ..extras import require
from ..files import atomic_path
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


class FeatureLogits(nn.Module):
    """The segmentor's logits at the feature resolution (``model.logits``), without the upsampling to the input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


def prepare_for_export(
    model: nn.Module, labels: str | None = None, fold_bn: bool = True, upsample: bool = True
) -> nn.Module:
    """The module that gets exported: eval mode, BN folded (``fold_bn``), wrapped in ``LabelMap`` if ``labels`` is
    ``"int32"`` or ``"uint8"``; ``upsample=False``: the logits at the feature resolution (``FeatureLogits``)."""
    if labels is not None and labels not in LABEL_DTYPES:
        raise ValueError(f"labels must be one of {sorted(LABEL_DTYPES)} or None, not {labels!r}")
    if not upsample:
        if labels:
            raise ValueError("labels need the logits at the input size: upsample=False exports logits only")
        model = FeatureLogits(model)
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
    upsample: bool = True,
) -> Path:
    """Write ``model`` as ONNX to ``path``: input ``image`` (N, 3, H, W) float32, normalised; output ``logits``
    (N, 21, H, W) or ``labels`` (N, H, W); with ``upsample=False`` the logits at the feature resolution
    (N, 21, H/OS, W/OS), for a runtime that resizes them itself. ``dynamic`` leaves N, H and W free; otherwise they
    are fixed to batch 1 and ``size``."""
    require("ONNX export", "onnx", "onnxscript")
    if opset < 17:
        raise ValueError(f"opset {opset} < 17: the export needs opset 17 or later")
    net = prepare_for_export(model, labels, fold_bn, upsample)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, 3, *size)
    output = "labels" if labels else "logits"
    shapes = None
    if dynamic:  # torch.export dimensions; the model needs at least a 33x33 input (OS16 -> 3x3 features)
        batch, height, width = Dim("batch"), Dim("height", min=33), Dim("width", min=33)
        shapes = ({0: batch, 2: height, 3: width},)  # by position: any forward argument name
    # The torch.export-based exporter (torch's maintained path; the TorchScript one is deprecated).
    with torch.no_grad():
        program = torch.onnx.export(
            net,
            (example,),
            input_names=["image"],
            output_names=[output],
            opset_version=opset,
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    with atomic_path(path) as tmp:
        program.save(str(tmp))
    return path


class OnnxSegmentor(nn.Module):
    """An exported model (float or INT8) run by ONNX Runtime, callable like the PyTorch model on a normalised NCHW
    tensor, so the evaluator scores it on the same code path. An export of feature-resolution logits
    (``upsample=False``, ``output_stride`` given) has the segmentor's ``logits``/``upsample``/``output_stride``, and
    the evaluator runs DeepLab's staged multi-scale resizes on it exactly as on the PyTorch model; a full-size
    export is resized from its input-size logits.

    Args:
        path: the ``.onnx`` file.
        geometry: the exported model's (``export.json``'s ``geometry``): ``deeplab`` resizes with
            ``align_corners=True``.
        threads: ONNX Runtime's intra-op threads (``None``: its default, every core).
        output_stride: the stride of a feature-resolution export; ``None`` for one that outputs input-size logits.
    """

    def __init__(
        self, path: str | Path, geometry: str = "torch", threads: int | None = None, output_stride: int | None = None
    ) -> None:
        super().__init__()
        require("Running an ONNX export", "onnxruntime")
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX file not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.align_corners = geometry == "deeplab"
        output = self.session.get_outputs()[0]
        self.labels = output.name == "labels"
        dims = self.session.get_inputs()[0].shape[2:]
        self.static = tuple(dims) if all(isinstance(d, int) for d in dims) else None
        if output_stride is not None:
            self.output_stride = int(output_stride)  # only then: the evaluator's staged path needs it

    def upsample(self, logits: torch.Tensor, size) -> torch.Tensor:
        return torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Feature-resolution logits (a ``upsample=False`` export only)."""
        if not hasattr(self, "output_stride"):
            raise ValueError(f"{self.path}: outputs input-size logits, not feature-resolution ones")
        return self._run(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._run(x)
        return self.upsample(out, x.shape[-2:]) if hasattr(self, "output_stride") else out

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.static and tuple(x.shape[-2:]) != self.static:
            raise ValueError(
                f"{self.path}: exported for {self.static[0]}x{self.static[1]} inputs only, got "
                f"{x.shape[-2]}x{x.shape[-1]} (export with dynamic=true for other sizes and multi-scale)"
            )
        (out,) = self.session.run(None, {"image": x.detach().float().contiguous().cpu().numpy()})
        return torch.from_numpy(out).to(x.device)
