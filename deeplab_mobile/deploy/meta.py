"""``export.json``, written beside every exported file (``.onnx``, ``.pte``, ``.tflite``, OpenVINO's ``.xml``):
what whoever runs the file needs (the network, the input with its normalisation, the output, the class names), as
``ExportMeta``. This module is the one that writes and reads it; the JSON's layout is that of
``ExportMeta.to_dict``, and files written before the dataclass existed read the same."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from torch import nn

from ..data.voc import default_classes
from ..errors import InvalidValue, MissingFile
from ..files import write_json
from ..models import describe_model

EXPORT_JSON = "export.json"
FREE = ["N", 3, "H", "W"]  # the input shape of an export with free sizes


@dataclass
class InputSpec:
    """The image input: its name, shape (``FREE`` or ``[1, 3, H, W]``), dtype and normalisation (0-1 scale)."""

    mean: list[float]
    std: list[float]
    shape: list = field(default_factory=lambda: list(FREE))
    name: str = "image"
    dtype: str = "float32"


@dataclass
class OutputSpec:
    """The output: ``logits`` (float32) or ``labels`` (``uint8``/``int32``); ``stride`` for logits at the feature
    resolution (the runner resizes them), ``None`` for input-size ones."""

    name: str = "logits"
    dtype: str = "float32"
    stride: int | None = None


@dataclass
class ExportMeta:
    """An exported file's ``export.json``: ``describe_model``'s fields, input, output, classes, and ``extra`` (what
    the exporting app records besides: its source, format, size, parity checks)."""

    network: str
    encoder: str
    head: str
    os: int
    width: float
    tap: str | None
    num_classes: int
    geometry: str
    input: InputSpec
    output: OutputSpec = field(default_factory=OutputSpec)
    classes: list[str] | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module, classes: Sequence[str] | None, shape: list, output: OutputSpec) -> ExportMeta:
        """The description of ``model`` exported with input ``shape`` and ``output``."""
        spec = InputSpec(list(model.encoder.mean), list(model.encoder.std), list(shape))
        return cls(**describe_model(model), input=spec, output=output, classes=list(classes) if classes else None)

    @property
    def static(self) -> tuple[int, int] | None:
        """The static (H, W) of the export, ``None`` for free sizes."""
        dims = self.input.shape[2:]
        return tuple(dims) if all(isinstance(d, int) for d in dims) else None

    @property
    def labels(self) -> bool:
        """Whether the file outputs class labels rather than logits."""
        return self.output.name == "labels"

    def class_names(self) -> tuple[str, ...]:
        """The classes, or for an export that names none ``default_classes``."""
        return tuple(self.classes) if self.classes else default_classes(self.num_classes)

    def to_dict(self) -> dict:
        """The JSON of ``export.json``: the fields in their order (the model's description, input, output,
        classes), then ``extra``'s keys."""
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}

    @classmethod
    def from_dict(cls, data: dict, where: str | Path = EXPORT_JSON) -> ExportMeta:
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            inp, out = dict(data["input"]), dict(data.get("output") or {})
            return cls(
                **{k: data.get(k) for k in known - {"input", "output", "geometry"}},
                geometry=data.get("geometry") or "torch",  # files written before geometry was recorded
                input=InputSpec(**{k: inp[k] for k in ("mean", "std", "shape", "name", "dtype") if k in inp}),
                output=OutputSpec(**{k: out[k] for k in ("name", "dtype", "stride") if k in out}),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError) as exc:
            raise InvalidValue(f"{where}: not an export description ({type(exc).__name__}: {exc})") from None


def write_export_meta(exported: str | Path, meta: ExportMeta) -> Path:
    """``export.json`` beside the exported file ``exported`` (written atomically)."""
    return write_json(Path(exported).with_name(EXPORT_JSON), meta.to_dict())


def read_export_meta(exported: str | Path) -> ExportMeta:
    """The ``export.json`` beside the exported file; a missing one is named with what it is for."""
    path = Path(exported).with_name(EXPORT_JSON)
    if not path.is_file():
        raise MissingFile(f"{path}: not found; an exported model needs the {EXPORT_JSON} written with it")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidValue(f"{path}: not readable JSON ({exc})") from None
    return ExportMeta.from_dict(data, path)
