"""Evaluation results as files: ``metrics.json`` (``runfolder.Metrics``: scores, model complexity, settings), a
per-class IoU CSV and ``per_image_confusion.npz`` (each image's confusion matrix, for intervals and paired
comparisons)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import runfolder
from ..errors import InvalidValue
from ..files import atomic_path, write_text
from ..runfolder import Metrics

PER_IMAGE = "per_image_confusion.npz"


def _clean(value):
    """JSON has no NaN: a class with no IoU (absent from ground truth and predictions) is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_per_image(path: str | Path, names: Sequence[str], matrices: dict[str, np.ndarray]) -> Path:
    """``per_image_confusion.npz`` (compressed, written atomically): ``names`` (image ids in evaluation order),
    ``confusion`` (single scale) and ``confusion_mf`` (MF + flip, where it ran), each (images, C, C) int64 with rows
    = ground truth, columns = prediction."""
    path = Path(path)
    arrays = {"names": np.asarray(list(names), dtype=str)}
    for mode, matrix in matrices.items():
        if len(matrix) != len(names):
            raise InvalidValue(f"{path}: {len(matrix)} {mode} matrices for {len(names)} images")
        arrays["confusion" if mode == "ss" else f"confusion_{mode}"] = np.asarray(matrix, dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def read_per_image(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """``per_image_confusion.npz`` -> (image ids, {``ss``: matrices[, ``mf``: matrices]})."""
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["names"]]
        keys = [key for key in data.files if key.startswith("confusion")]
        matrices = {"ss" if key == "confusion" else key.removeprefix("confusion_"): data[key] for key in keys}
    return names, matrices


def metrics_record(
    results: dict[str, dict],
    classes: Sequence[str],
    network: dict,
    record: dict,
    split: str | None,
    **source,
) -> Metrics:
    """The ``runfolder.Metrics`` of an evaluation: ``results`` (mode -> ``metrics.scores``, IoU per class index,
    named here by ``classes``), the ``network`` scored (``describe_model``), ``run_protocol``'s ``record`` (Params,
    MAdds, ``eval``, ``bootstrap``) and what was scored (``source``: iteration, checkpoint, ...)."""
    record = dict(record)
    scores = {mode: {**s, "iou": dict(zip(classes, s["iou"], strict=True))} for mode, s in results.items()}
    return Metrics(
        network=dict(network),
        params=record.pop("params", None),
        madds=record.pop("madds", None),
        madds_mf=record.pop("madds_mf", None),
        eval=record.pop("eval", {}),
        bootstrap=record.pop("bootstrap", None),
        split=split,
        scores=_clean(scores),
        source={**record, **source},
    )


def write_metrics(out_dir: str | Path, metrics: Metrics, per_image=None) -> Path:
    """Write ``metrics.json`` (``runfolder.Metrics``) and ``per_class_iou.csv`` into ``out_dir``, and with
    ``per_image`` (an ``evaluator.PerImage``) ``per_image_confusion.npz``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if per_image is not None:  # first: a metrics.json is never seen beside a stale or missing npz
        write_per_image(out_dir / PER_IMAGE, per_image.names, per_image.matrices)
    path = runfolder.write_metrics(out_dir, metrics)
    results = {mode: {"iou": list(s["iou"].values())} for mode, s in metrics.scores.items()}
    classes = list(metrics.scores["ss"]["iou"])
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["class", *(f"iou_{mode}" for mode in results)])
    for i, name in enumerate(classes):
        row = [results[mode]["iou"][i] for mode in results]
        writer.writerow([name, *("" if v is None or math.isnan(v) else f"{v:.6f}" for v in row)])
    write_text(out_dir / "per_class_iou.csv", table.getvalue())
    return path
