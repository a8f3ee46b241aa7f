"""The runner of an exported file, by its suffix: a module of its own, above both runtimes (``onnx``,
``executorch``), so neither imports the other nor this."""

from __future__ import annotations

from pathlib import Path

from .executorch import PTE_SUFFIX, PteSegmentor
from .exported import ExportedSegmentor
from .meta import ExportMeta
from .onnx import OnnxSegmentor


def open_exported(path: str | Path, meta: ExportMeta, threads: int | None = None) -> ExportedSegmentor:
    """``OnnxSegmentor`` for ``.onnx``, ``PteSegmentor`` for ``.pte``, set up from its ``export.json`` (geometry,
    the stride of feature-resolution logits, a static size, a label output); ``threads`` for the runtime."""
    path = Path(path)
    stride = meta.output.stride  # a feature-resolution export (quantize)
    if path.suffix == PTE_SUFFIX:
        return PteSegmentor(path, meta.geometry, threads, stride, meta.static, meta.labels)
    return OnnxSegmentor(path, meta.geometry, threads, stride)
