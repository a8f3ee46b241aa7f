"""``export.json``, written beside an exported ``.onnx`` file: what whoever runs it needs (the network, the input
with its normalisation, the output, the class names). ``scripts/export.py`` and ``scripts/quantize.py`` write it;
``Segmenter`` (``scripts/predict.py``) and ``scripts/quantize.py`` read it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from torch import nn

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


def write_export_meta(onnx_path: str | Path, meta: dict) -> Path:
    """``export.json`` beside ``onnx_path`` (written atomically)."""
    return write_json(Path(onnx_path).with_name(EXPORT_JSON), meta)


def read_export_meta(onnx_path: str | Path) -> dict:
    """The ``export.json`` beside ``onnx_path``; a missing one is named with what it is for."""
    path = Path(onnx_path).with_name(EXPORT_JSON)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; an exported model needs the {EXPORT_JSON} written with it")
    return json.loads(path.read_text())
