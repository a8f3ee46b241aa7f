"""ONNX export for devices (the module ``prepare.prepare_for_export`` makes: BatchNorm folded, optional label-map
output), static or dynamic H x W, and ``OnnxSegmentor``, its runner."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidValue, MissingFile
from ..extras import require
from ..files import atomic_path
from .exported import ExportedSegmentor, dynamic_shapes
from .prepare import prepare_for_export


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] = (513, 513),
    dynamic: bool = False,
    labels: str | None = None,
    fold_bn: bool = True,
    opset: int = 18,
    upsample: bool = True,
    resize: str = "matmul",
) -> Path:
    """Write ``model`` as ONNX to ``path``: input ``image`` (N, 3, H, W) float32, normalised; output ``logits``
        (N, 21, H, W) or ``labels`` (N, H, W); with ``upsample=False`` the logits at the feature resolution
        (N, 21, H/OS, W/OS), for a runtime that resizes them itself; ``resize``: how the logits reach the input size
    (``RESIZES``). ``dynamic`` leaves N, H and W free; otherwise they
        are fixed to batch 1 and ``size``."""
    require("ONNX export", "onnx", "onnxscript")
    if opset < 17:
        raise InvalidValue(f"opset {opset} < 17: the export needs opset 17 or later")
    net = prepare_for_export(model, labels, fold_bn, upsample, resize, None if dynamic else size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(1, 3, *size)
    output = "labels" if labels else "logits"
    shapes = dynamic_shapes() if dynamic else None
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


class OnnxSegmentor(ExportedSegmentor):
    """An exported model (float or INT8) run by ONNX Runtime (``ExportedSegmentor``: callable like the PyTorch
    model, scored by the same evaluator).

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
        require("Running an ONNX export", "onnxruntime")
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise MissingFile(f"{path}: ONNX file not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        dims = session.get_inputs()[0].shape[2:]
        static = tuple(dims) if all(isinstance(d, int) for d in dims) else None
        labels = session.get_outputs()[0].name == "labels"
        super().__init__(path, geometry, output_stride, static, labels)
        self.session = session

    def _execute(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {"image": x.detach().float().contiguous().cpu().numpy()})
        return torch.from_numpy(out)
