"""The runner of an exported file, by its suffix: a module of its own, above the runtimes' modules (``onnx``,
``executorch``, ``litert``, ``openvino``), so none of them imports another nor this.

``RUNTIMES`` is the one table of the export formats a model source can be: suffix -> kind, what the file is.
``check_content`` reads a file's first bytes and refuses one whose content is another format's (a ``.tflite``
that is an ONNX file, say) before any runtime is started.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidValue
from .executorch import PTE_SUFFIX, PteSegmentor
from .exported import ExportedSegmentor
from .litert import TFLITE_SUFFIX, TfliteSegmentor
from .meta import ExportMeta
from .onnx import OnnxSegmentor
from .openvino import XML_SUFFIX, OpenVinoSegmentor

# suffix -> (the model source's kind, what the file is)
RUNTIMES = {
    ".onnx": ("onnx", "ONNX file"),
    PTE_SUFFIX: ("pte", "ExecuTorch program"),
    TFLITE_SUFFIX: ("tflite", "LiteRT model"),
    XML_SUFFIX: ("openvino", "OpenVINO IR"),
}


def sniff(head: bytes) -> str | None:
    """The export suffix whose format ``head`` (a file's first bytes) is, ``None`` if none is recognised: a
    FlatBuffer's identifier at bytes 4-8 (``TFL3`` LiteRT, ``ET`` + version ExecuTorch), XML, or ONNX's protobuf
    (its first field, ``ir_version``, a varint: tag byte 0x08)."""
    if head[4:8] == b"TFL3":
        return TFLITE_SUFFIX
    if head[4:6] == b"ET" and head[6:8].isdigit():
        return PTE_SUFFIX
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return XML_SUFFIX
    if head[:1] == b"\x08":
        return ".onnx"
    return None


def check_content(path: Path) -> None:
    """Refuse a file whose content is another export format than its suffix says, naming both."""
    with open(path, "rb") as f:
        found = sniff(f.read(64))
    if found is not None and found != path.suffix:
        raise InvalidValue(
            f"{path}: the file is a {RUNTIMES[found][1]} ({found}), not a {RUNTIMES[path.suffix][1]} as its name "
            f"says; give it its own suffix"
        )


def export_bytes(path: str | Path) -> int:
    """An exported file's size on disk; an OpenVINO IR's with its weights (``.bin``)."""
    path = Path(path)
    weights = path.with_suffix(".bin")
    return path.stat().st_size + (weights.stat().st_size if path.suffix == XML_SUFFIX and weights.is_file() else 0)


def open_exported(
    path: str | Path, meta: ExportMeta, threads: int | None = None, precision: str = "f32"
) -> ExportedSegmentor:
    """The runner of ``path`` by its suffix (``RUNTIMES``), set up from its ``export.json`` (geometry, the stride
    of feature-resolution logits, a static size, a label output); ``threads`` for the runtime; ``precision`` for
    OpenVINO (``f32`` or ``bf16``)."""
    path = Path(path)
    if path.is_file():
        check_content(path)
    stride = meta.output.stride  # a feature-resolution export (quantize)
    if path.suffix == PTE_SUFFIX:
        return PteSegmentor(path, meta.geometry, threads, stride, meta.static, meta.labels)
    if path.suffix == TFLITE_SUFFIX:
        return TfliteSegmentor(path, meta.geometry, threads, stride)
    if path.suffix == XML_SUFFIX:
        return OpenVinoSegmentor(path, meta.geometry, threads, stride, precision)
    return OnnxSegmentor(path, meta.geometry, threads, stride)
