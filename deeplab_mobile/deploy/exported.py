"""An exported model: ``export.json``, written beside an exported ``.onnx`` or ``.pte`` file, what whoever runs it
needs (the network, the input with its normalisation, the output, the class names; ``scripts/export.py`` and
``scripts/quantize.py`` write it, ``Segmenter`` and ``scripts/quantize.py`` read it), and ``ExportedSegmentor``,
what the runners of both formats share."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from ..files import write_json
from ..models import describe_model

EXPORT_JSON = "export.json"


def export_meta(model: nn.Module, classes: Sequence[str] | None, shape: list, output: dict) -> dict:
    """The description of ``model`` exported with input ``shape`` (``["N", 3, "H", "W"]`` for free sizes) and
    ``output`` (``name``, ``dtype``, and ``stride`` for feature-resolution logits)."""
    input_ = {
        "name": "image",
        "shape": shape,
        "dtype": "float32",
        "mean": list(model.encoder.mean),
        "std": list(model.encoder.std),
    }
    return {**describe_model(model), "input": input_, "output": output, "classes": list(classes) if classes else None}


def dynamic_shapes(batch: bool = True, min_side: int = 33, max_side: int | None = None) -> tuple[dict]:
    """``torch.export`` dimensions of the image argument (by position): free (batch,) height and width; the models
    need at least a 33x33 input (OS16 -> 3x3 features). ``max_side``: the largest (ExecuTorch plans its memory for
    it)."""
    dims = {2: Dim("height", min=min_side, max=max_side), 3: Dim("width", min=min_side, max=max_side)}
    if batch:
        dims[0] = Dim("batch")
    return (dims,)


def exported_shape(meta: dict) -> tuple[int, int] | None:
    """The static (H, W) of an export from its ``export.json``, ``None`` for free sizes."""
    dims = meta.get("input", {}).get("shape", ["N", 3, "H", "W"])[2:]
    return tuple(dims) if all(isinstance(d, int) for d in dims) else None


def open_exported(path: str | Path, meta: dict, threads: int | None = None) -> ExportedSegmentor:
    """The runner of an exported file, by its suffix: ``OnnxSegmentor`` for ``.onnx``, ``PteSegmentor`` for ``.pte``,
    set up from its ``export.json`` (``meta``: geometry, the stride of feature-resolution logits, a static size,
    a label output); ``threads`` for the runtime."""
    # imported here: both runner modules build on this one
    from .executorch import PTE_SUFFIX, PteSegmentor
    from .onnx import OnnxSegmentor

    path = Path(path)
    geometry = meta.get("geometry", "torch")
    stride = meta.get("output", {}).get("stride")  # a feature-resolution export (scripts/quantize.py)
    if path.suffix == PTE_SUFFIX:
        labels = meta.get("output", {}).get("name") == "labels"
        return PteSegmentor(path, geometry, threads, stride, exported_shape(meta), labels)
    return OnnxSegmentor(path, geometry, threads, stride)


def write_export_meta(onnx_path: str | Path, meta: dict) -> Path:
    """``export.json`` beside ``onnx_path`` (written atomically)."""
    return write_json(Path(onnx_path).with_name(EXPORT_JSON), meta)


def read_export_meta(onnx_path: str | Path) -> dict:
    """The ``export.json`` beside ``onnx_path``; a missing one is named with what it is for."""
    path = Path(onnx_path).with_name(EXPORT_JSON)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; an exported model needs the {EXPORT_JSON} written with it")
    return json.loads(path.read_text())


class ExportedSegmentor(nn.Module):
    """An exported model callable like the PyTorch model on a normalised NCHW tensor, so the evaluator scores it on
    the same code path. A feature-resolution export (``output_stride`` given) has the segmentor's ``logits``,
    ``upsample`` and ``output_stride``, and the evaluator runs DeepLab's staged multi-scale resizes on it as on the
    PyTorch model; a full-size export is resized from its input-size logits. A runtime subclass runs the file
    (``_execute``)."""

    def __init__(
        self,
        path: str | Path,
        geometry: str = "torch",
        output_stride: int | None = None,
        static: tuple[int, int] | None = None,
        labels: bool = False,
        other_sizes: str = "export with dynamic=true for other sizes and multi-scale",
    ) -> None:
        super().__init__()
        self.other_sizes = other_sizes  # how to get a model for other sizes, for the static-size refusal
        self.path = Path(path)
        self.align_corners = geometry == "deeplab"
        self.static = tuple(static) if static else None
        self.labels = labels
        if output_stride is not None:
            self.output_stride = int(output_stride)  # only then: the evaluator's staged path needs it

    def _execute(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def upsample(self, logits: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Feature-resolution logits (a feature-resolution export only)."""
        if not hasattr(self, "output_stride"):
            raise ValueError(f"{self.path}: outputs input-size logits, not feature-resolution ones")
        return self.raw(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x)
        return self.upsample(out, x.shape[-2:]) if hasattr(self, "output_stride") else out

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The file's output as it is (feature-resolution or input-size logits, or labels), checked for size."""
        if self.static and tuple(x.shape[-2:]) != self.static:
            raise ValueError(
                f"{self.path}: exported for {self.static[0]}x{self.static[1]} inputs only, got "
                f"{x.shape[-2]}x{x.shape[-1]} ({self.other_sizes})"
            )
        return self._execute(x).to(x.device)
