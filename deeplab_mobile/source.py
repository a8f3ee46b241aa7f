"""Where a model comes from, as one typed record (``ModelSource``): the network (a PyTorch model, or the runner of
an exported file), its classes and normalisation, its output stride and geometry, the side evaluation pads to,
and where it came from.

This module opens the files that describe themselves: a model file (``.pt``, ``models.pretrained``), an ONNX
export or an ExecuTorch program with its ``export.json`` (``deploy.meta``). A training run folder, one of its
checkpoints or evaluation records, and a config are built from their Hydra config: ``config.source.resolve``,
which hands files to ``open_file`` here. Every app that takes a model (evaluate, export, quantize, predict, video,
the benchmarks) gets it from one of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .complexity import TABLE7_SIZE
from .deploy.meta import ExportMeta, read_export_meta
from .deploy.open import RUNTIMES, check_content, open_exported  # runtimes import their packages when used
from .errors import InvalidValue, MissingFile
from .hub import is_hub_folder, load_pretrained, looks_like_id
from .models.build import load_model_file
from .models.pretrained import ModelFile

EXPORT_SUFFIXES = {suffix: what for suffix, (_, what) in RUNTIMES.items()}
KINDS = ("run", "model_file", *(kind for kind, _ in RUNTIMES.values()), "config", "hub")


@dataclass
class ModelSource:
    """A model and what it takes to feed and score it.

    ``kind``: one of ``KINDS``; ``path``: the run folder or file (``None`` for a config); ``model``: a
    ``DeepLabV3`` (``pytorch``) or an ``ExportedSegmentor``; ``pad_to``: the side evaluation pads to (a run's
    training crop, an export's static side, else DeepLab's 513); ``origin``: what records say it came from. A run
    also has its config (``run``: its ``data``, ``eval``, ``trainer`` settings), checkpoint and iteration; a model
    file its ``ModelFile``; an export its ``ExportMeta``.
    """

    kind: str
    path: Path | None
    model: nn.Module
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_stride: int | None
    geometry: str
    pad_to: int = TABLE7_SIZE
    origin: dict = field(default_factory=dict)
    run: Any = None  # a run's config (DictConfig)
    checkpoint: Path | None = None
    iteration: int | None = None
    file: ModelFile | None = None
    export: ExportMeta | None = None

    @classmethod
    def of_model(cls, kind: str, path: Path | None, model: nn.Module, classes, **rest) -> ModelSource:
        """The source of a PyTorch segmentor: its normalisation, output stride and geometry read from it."""
        encoder = model.encoder
        mean, std = tuple(encoder.mean), tuple(encoder.std)
        return cls(kind, path, model, tuple(classes), mean, std, model.output_stride, model.geometry, **rest)

    @property
    def pytorch(self) -> bool:
        """Whether ``model`` is the PyTorch network (not the runner of an exported file)."""
        return self.kind in ("run", "model_file", "config", "hub")


def open_file(path: str | Path, output_stride: int | None = None, threads: int | None = None) -> ModelSource:
    """A model file (at ``output_stride``, default its own), or an exported file (``threads`` for its runtime; it
    keeps the stride it was exported at)."""
    path = Path(path)
    if path.suffix in EXPORT_SUFFIXES:
        return open_export(path, output_stride, threads)
    if is_hub_folder(path) or looks_like_id(path):
        return open_hub(path, output_stride)
    if path.is_dir():
        raise InvalidValue(
            f"{path}: a folder that is not a training run (no .hydra/config.yaml); give a run folder, a model file "
            f"(.pt) or an export ({', '.join(EXPORT_SUFFIXES)})"
        )
    model, info = load_model_file(path, output_stride=output_stride)
    return ModelSource.of_model(
        "model_file", path, model, info.classes, origin={"weights": str(path), "source": info.source}, file=info
    )


def open_hub(path: Path, output_stride: int | None = None) -> ModelSource:
    """A Hub folder of this library (``hub``), or a Hub id."""
    hub = load_pretrained(path)
    model = hub.model
    if output_stride is not None:
        model.set_output_stride(output_stride)
    return ModelSource.of_model("hub", path, model, tuple(hub.classes), origin={"hub": str(path)})


def open_export(path: Path, output_stride: int | None = None, threads: int | None = None) -> ModelSource:
    if not path.is_file():
        raise MissingFile(f"{path}: {EXPORT_SUFFIXES[path.suffix]} not found")
    check_content(path)  # a file of another runtime, before its export.json is read
    meta = read_export_meta(path)
    if output_stride is not None and output_stride != meta.os:
        raise InvalidValue(f"{path}: exported at output stride {meta.os}; re-export for another")
    static = meta.static
    kind = RUNTIMES[path.suffix][0]
    return ModelSource(
        kind=kind,
        path=path,
        model=open_exported(path, meta, threads),
        classes=meta.class_names(),
        mean=tuple(meta.input.mean),
        std=tuple(meta.input.std),
        output_stride=meta.os,
        geometry=meta.geometry,
        pad_to=static[0] if static else TABLE7_SIZE,
        origin={kind: str(path)},
        export=meta,
    )
