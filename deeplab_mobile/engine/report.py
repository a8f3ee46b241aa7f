"""Evaluation results as files: ``metrics.json`` (scores, model complexity, settings) and a per-class IoU CSV."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path


def _clean(value):
    """JSON has no NaN: a class with no IoU (absent from ground truth and predictions) is written as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_metrics(out_dir: str | Path, results: dict[str, dict], classes: Sequence[str], extra: dict) -> Path:
    """Write ``metrics.json`` and ``per_class_iou.csv`` into ``out_dir``.

    Args:
        results: evaluation mode (``ss``, ``mf``) -> ``metrics.scores`` output.
        classes: class names, in index order.
        extra: recorded beside the scores (Params, MAdds, iteration, checkpoint, scales ...).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**extra}
    for mode, s in results.items():
        payload[mode] = {**s, "iou": dict(zip(classes, s["iou"], strict=True))}
    path = out_dir / "metrics.json"
    tmp = path.with_name(".metrics.json.tmp")
    tmp.write_text(json.dumps(_clean(payload), indent=2))
    tmp.replace(path)
    with open(out_dir / "per_class_iou.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", *(f"iou_{mode}" for mode in results)])
        for i, name in enumerate(classes):
            row = [results[mode]["iou"][i] for mode in results]
            writer.writerow([name, *("" if math.isnan(v) else f"{v:.6f}" for v in row)])
    return path
