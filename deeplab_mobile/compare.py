"""Why two runs' numbers differ: the settings, code, libraries, hardware, environment variables and data two run
folders (or evaluation records) were made with, where their trainings first part, and their metric difference
with a paired interval over the images (``scripts/compare_runs.py``; docs/reproducibility.md).

Reads only: nothing is ever written into the folders compared. A folder from before a record existed is compared
on what it has, with a note saying what is missing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .engine.report import PER_IMAGE, read_per_image
from .engine.trace import LOSS_LOG, WEIGHT_HASHES, TraceError, read_hashes, read_trace
from .environment import RECORD
from .errors import InvalidValue
from .runfolder import CONFIG, LAST, METRICS, RunFolderError, read_environment, read_metrics
from .stats import paired_difference

MISSING = "(unset)"


class CompareError(InvalidValue):
    """A folder that cannot be compared (missing, not a run, another task); the message names it."""


@dataclass
class RunRecord:
    """What one folder holds: ``kind`` is ``training run`` or ``evaluation record``; ``None`` where a file is
    missing (``notes`` says which)."""

    path: Path
    kind: str
    config: dict | None = None
    environment: dict | None = None
    metrics: dict | None = None
    losses: dict[int, float] | None = None
    steps: dict[int, str] | None = None  # the weights' hash after each iteration (deterministic mode)
    hashes: dict[int, str] | None = None
    per_image: tuple[list[str], dict[str, np.ndarray]] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """``sections``: title -> [(key, value in A, value in B)] for every key that differs; ``training`` and
    ``metrics``: lines of the divergence and score findings; ``notes``: what could not be compared."""

    a: RunRecord
    b: RunRecord
    sections: dict[str, list[tuple[str, Any, Any]]]
    training: list[str]
    metrics: list[dict]
    notes: list[str]

    @property
    def identical_setup(self) -> bool:
        return not any(self.sections.values())


def _read_record(path: Path, notes: list[str], what: str) -> dict | None:
    """``environment.json`` or ``metrics.json`` of any version, read by ``runfolder``, as a dict."""
    if not path.is_file():
        notes.append(f"{path.parent}: no {path.name} ({what})")
        return None
    read = read_metrics if path.name == METRICS.name else read_environment
    try:
        return read(path).to_dict()
    except RunFolderError as exc:
        raise CompareError(str(exc)) from None


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _read_config(path: Path, read_config: Callable[[Path], dict | None] | None = None) -> dict | None:
    """A run's settings, flattened: as ``read_config`` reads the file (the compare app's: through the schema, so
    two versions differ only where their settings do), else as written."""
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CompareError(f"{path}: unreadable config ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict):
        return None
    typed = read_config(path) if read_config is not None else None
    return flatten(typed if typed is not None else value)


def open_record(path: str | Path, read_config: Callable[[Path], dict | None] | None = None) -> RunRecord:
    """A training run folder or an evaluation record (``<run>/eval/<name>/``, or a ``metrics.json`` in one);
    ``read_config``: how its config file reads (``_read_config``)."""
    path = Path(path)
    if path.is_file() and path.name == METRICS.name:
        path = path.parent
    if not path.exists():
        raise CompareError(f"{path}: no such folder")
    if not path.is_dir():
        raise CompareError(f"{path}: not a folder (give a run folder or an evaluation record)")
    markers = [CONFIG, METRICS, Path(RECORD), LAST, Path(LOSS_LOG)]
    if not any((path / m).exists() for m in markers):
        raise CompareError(
            f"{path}: not a run folder or an evaluation record (none of {', '.join(str(m) for m in markers)})"
        )
    config_file = path / CONFIG
    kind = "training run"
    if not config_file.is_file() and (path.parent.parent / CONFIG).is_file() and path.parent.name == "eval":
        config_file, kind = path.parent.parent / CONFIG, "evaluation record"
    elif not config_file.is_file() and (path / METRICS).is_file():
        kind = "evaluation record"
    record = RunRecord(path, kind)
    notes = record.notes
    if config_file.is_file():
        record.config = _read_config(config_file, read_config)
    else:
        notes.append(f"{path}: no {CONFIG} (settings cannot be compared)")
    record.environment = _read_record(path / RECORD, notes, "code, libraries, hardware and variables not recorded")
    record.metrics = _read_record(path / METRICS, notes, "no scores")
    if kind == "training run":
        try:
            if (path / LOSS_LOG).is_file():
                trace = read_trace(path / LOSS_LOG)
                record.losses = {i: loss for i, (loss, _) in trace.items()}
                record.steps = {i: h for i, (_, h) in trace.items() if h} or None
            else:
                notes.append(f"{path}: no {LOSS_LOG} (per-iteration losses not recorded)")
            if (path / WEIGHT_HASHES).is_file():
                record.hashes = read_hashes(path / WEIGHT_HASHES)
            else:
                notes.append(f"{path}: no {WEIGHT_HASHES} (checkpoint weights not hashed)")
        except TraceError as exc:
            raise CompareError(str(exc)) from None
    if (path / PER_IMAGE).is_file():
        try:
            record.per_image = read_per_image(path / PER_IMAGE)
        except (OSError, ValueError, KeyError) as exc:
            raise CompareError(f"{path / PER_IMAGE}: unreadable ({type(exc).__name__}: {exc})") from None
    elif record.metrics is not None:
        notes.append(f"{path}: no {PER_IMAGE} (no paired interval)")
    return record


def classes_of(record: RunRecord) -> tuple[list[str] | None, int | None]:
    """The class names a record was scored on (``metrics.json``), and their count (from its config where it has no
    scores yet: a run still training, or one that failed)."""
    if record.metrics:
        for mode in ("ss", "mf"):
            iou = record.metrics.get(mode, {}).get("iou") if isinstance(record.metrics.get(mode), dict) else None
            if isinstance(iou, dict):
                return list(iou), len(iou)
    if record.config and "num_classes" in record.config:
        return None, int(record.config["num_classes"])
    return None, None


def check_same_task(a: RunRecord, b: RunRecord) -> None:
    (na, ca), (nb, cb) = classes_of(a), classes_of(b)
    if na is not None and nb is not None and na != nb:
        raise CompareError(
            f"{a.path} and {b.path} are scored on different classes ({len(na)}: {', '.join(na[:4])}... vs "
            f"{len(nb)}: {', '.join(nb[:4])}...): their runs are not of one task"
        )
    if ca is not None and cb is not None and ca != cb:
        raise CompareError(f"{a.path} has {ca} classes and {b.path} {cb}: their runs are not of one task")


def diff_maps(a: Mapping | None, b: Mapping | None, keys: list[str] | None = None) -> list[tuple[str, Any, Any]]:
    a, b = a or {}, b or {}
    names = keys if keys is not None else sorted(set(a) | set(b))
    return [(k, a.get(k, MISSING), b.get(k, MISSING)) for k in names if a.get(k, MISSING) != b.get(k, MISSING)]


def _isa_diff(a: list, b: list) -> list[tuple[str, Any, Any]]:
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if not only_a and not only_b:
        return []
    return [("cpu.isa", "only A: " + (" ".join(only_a) or "-"), "only B: " + (" ".join(only_b) or "-"))]


def environment_sections(a: dict | None, b: dict | None) -> dict[str, list]:
    if a is None or b is None:
        return {}
    sections = {
        "code": diff_maps(a.get("code"), b.get("code"), ["package_version", "commit", "dirty", "diff_sha256"]),
        "libraries": diff_maps(
            {"python": a.get("python"), **a.get("libraries", {})},
            {
                "python": b.get("python"),
                **b.get("libraries", {}),
            },
        ),
    }
    cpu_a, cpu_b = a.get("cpu", {}), b.get("cpu", {})
    hardware = diff_maps(
        {f"cpu.{k}": v for k, v in cpu_a.items() if k != "isa"}, {f"cpu.{k}": v for k, v in cpu_b.items() if k != "isa"}
    )
    hardware += _isa_diff(cpu_a.get("isa", []), cpu_b.get("isa", []))
    hardware += diff_maps(flatten({"threads": a.get("threads", {})}), flatten({"threads": b.get("threads", {})}))
    build_a = {f"torch_build.{k}": v for k, v in a.get("torch_build", {}).items()}
    build_b = {f"torch_build.{k}": v for k, v in b.get("torch_build", {}).items()}
    hardware += diff_maps(build_a, build_b)
    sections["hardware and build"] = hardware
    sections["numerics environment variables"] = diff_maps(a.get("numerics_env"), b.get("numerics_env"))
    sections["deterministic mode"] = diff_maps(
        flatten({"deterministic": a.get("deterministic") or {}}),
        flatten({"deterministic": b.get("deterministic") or {}}),
    )
    sections["data"] = data_diff(a.get("data"), b.get("data"))
    return sections


def data_diff(a: dict | None, b: dict | None) -> list[tuple[str, Any, Any]]:
    if a is None or b is None:
        return [] if a is b else [("data", "recorded" if a else "not recorded", "recorded" if b else "not recorded")]
    if a.get("sha256") == b.get("sha256"):
        return []
    rows = [("data.sha256", a.get("sha256"), b.get("sha256"))]
    splits_a, splits_b = a.get("splits", {}), b.get("splits", {})
    for split in sorted(set(splits_a) | set(splits_b)):
        flat_a = flatten(splits_a.get(split) or {}, f"data.{split}.")
        flat_b = flatten(splits_b.get(split) or {}, f"data.{split}.")
        rows += diff_maps(flat_a, flat_b)
    return rows


def first_difference(a: dict[int, Any], b: dict[int, Any]) -> tuple[int | None, list[int]]:
    """The first common key whose values differ (``None``: none), and the common keys."""
    common = sorted(set(a) & set(b))
    return next((i for i in common if a[i] != b[i]), None), common


REPLAY = "`scripts/replay.py <run> --iteration {i} --out <file>.json` on each machine, then `scripts/compare_runs.py`"


def training_divergence(a: RunRecord, b: RunRecord) -> list[str]:
    lines = []
    step = None  # the iteration whose update first differs, as far as the traces tell
    if a.steps is not None and b.steps is not None:
        first, common = first_difference(a.steps, b.steps)
        if common and first is None:
            lines.append(f"weights after every iteration: bit-identical over {common[0]}..{common[-1]}")
        elif common:
            lines.append(f"weights: first differ after iteration {first}'s update (identical after {first - 1})")
            step = first
    if a.losses is not None and b.losses is not None:
        first, common = first_difference(a.losses, b.losses)
        if not common:
            lines.append("losses: the two loss logs share no iteration")
        else:
            span = f"iterations {common[0]}..{common[-1]}"
            if first is None:
                lines.append(f"losses: bit-identical over {span}")
            else:
                same = sum(1 for i in common if i < first)
                lines.append(
                    f"losses: first differ at iteration {first} (A {a.losses[first]!r}, B {b.losses[first]!r}; "
                    f"{same} identical iterations before it, {span} compared)"
                )
                if step is None:  # the weights the first differing loss is computed with come from the update before
                    step = max(1, first - 1)
                    lines.append(
                        f"to find the operator: {REPLAY.format(i=step)} on the two files; where the weights before "
                        "it already differ, an earlier iteration (a loss can stay identical for a few iterations "
                        "after the weights part)"
                    )
        if set(a.losses) != set(b.losses):
            lines.append(
                f"losses: A logs iterations {min(a.losses, default=0)}..{max(a.losses, default=0)}, "
                f"B {min(b.losses, default=0)}..{max(b.losses, default=0)}"
            )
    if step is not None and a.steps is not None and b.steps is not None:
        lines.append(f"to find the operator: {REPLAY.format(i=step)} on the two files")
    if a.hashes is not None and b.hashes is not None:
        common = sorted(set(a.hashes) & set(b.hashes))
        if not common:
            lines.append("weights: no checkpoint iteration in common")
        else:
            differ = [i for i in common if a.hashes[i] != b.hashes[i]]
            same = [i for i in common if a.hashes[i] == b.hashes[i]]
            if not differ:
                lines.append(f"weights: bit-identical at every common checkpoint ({', '.join(map(str, common))})")
            else:
                before = [i for i in same if i < differ[0]]
                last = f"last identical at iteration {before[-1]}" if before else "never identical"
                lines.append(f"weights: first differ at the checkpoint of iteration {differ[0]} ({last})")
    return lines


def _paired(a: RunRecord, b: RunRecord, mode: str) -> tuple[float, float] | str:
    if a.per_image is None or b.per_image is None:
        return "no per-image matrices"
    (names_a, ma), (names_b, mb) = a.per_image, b.per_image
    if mode not in ma or mode not in mb:
        return f"no per-image {mode} matrices"
    if sorted(names_a) != sorted(names_b):
        return f"different images ({len(names_a)} vs {len(names_b)}, {len(set(names_a) & set(names_b))} shared)"
    order = {n: i for i, n in enumerate(names_b)}
    mb_aligned = mb[mode][[order[n] for n in names_a]]
    if ma[mode].shape[1:] != mb_aligned.shape[1:]:
        return "matrices of different class counts"
    estimate = paired_difference({0: mb_aligned}, {0: ma[mode]})
    return estimate.low, estimate.high


def metric_differences(a: RunRecord, b: RunRecord) -> list[dict]:
    rows = []
    if not a.metrics or not b.metrics:
        return rows
    for mode in ("ss", "mf"):
        sa, sb = a.metrics.get(mode), b.metrics.get(mode)
        if not isinstance(sa, dict) or not isinstance(sb, dict) or "miou" not in sa or "miou" not in sb:
            continue
        row = {"mode": mode, "a": sa["miou"], "b": sb["miou"], "difference": sb["miou"] - sa["miou"]}
        paired = _paired(a, b, mode)
        if isinstance(paired, tuple):
            row["ci95"] = list(paired)
        else:
            row["note"] = paired
        rows.append(row)
    return rows


def compare_runs(a: str | Path, b: str | Path, read_config: Callable[[Path], dict | None] | None = None) -> Comparison:
    """Compare two run folders or evaluation records; raises ``CompareError`` for a folder that is not one, or for
    two records scored on different classes. ``read_config``: how a config file reads (``_read_config``)."""
    ra, rb = open_record(a, read_config), open_record(b, read_config)
    check_same_task(ra, rb)
    sections: dict[str, list] = {"settings": diff_maps(ra.config, rb.config) if ra.config and rb.config else []}
    if ra.metrics and rb.metrics and (ra.metrics.get("eval") or rb.metrics.get("eval")):
        sections["evaluation settings"] = diff_maps(
            flatten({"eval": ra.metrics.get("eval") or {}}), flatten({"eval": rb.metrics.get("eval") or {}})
        )
    sections.update(environment_sections(ra.environment, rb.environment))
    notes = [f"A {n}" for n in ra.notes] + [f"B {n}" for n in rb.notes]
    return Comparison(ra, rb, sections, training_divergence(ra, rb), metric_differences(ra, rb), notes)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 70 else text[:67] + "..."


def format_comparison(c: Comparison) -> str:
    lines = [f"A: {c.a.path} ({c.a.kind})", f"B: {c.b.path} ({c.b.kind})", ""]
    for title, rows in c.sections.items():
        if not rows:
            lines.append(f"{title}: same")
            continue
        lines.append(f"{title}: {len(rows)} differ")
        width = min(44, max(len(k) for k, _, _ in rows))
        lines += [f"  {k:<{width}}  A {_show(va)}  |  B {_show(vb)}" for k, va, vb in rows]
    if c.training:
        lines += ["", "training:"] + [f"  {line}" for line in c.training]
    if c.metrics:
        lines += ["", "mIoU (B - A, 95% paired bootstrap interval over the images):"]
        for row in c.metrics:
            ci = row.get("ci95")
            interval = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci and not any(map(math.isnan, ci)) else row.get("note", "")
            lines.append(
                f"  {row['mode']}: A {row['a']:.4f}  B {row['b']:.4f}  B - A {row['difference']:+.4f}  {interval}"
            )
    if c.notes:
        lines += ["", "not compared:"] + [f"  {n}" for n in c.notes]
    return "\n".join(lines)


def comparison_record(c: Comparison) -> dict:
    """The comparison as JSON-ready data (``compare_runs --json``)."""
    return {
        "a": str(c.a.path),
        "b": str(c.b.path),
        "differences": {t: [{"key": k, "a": va, "b": vb} for k, va, vb in rows] for t, rows in c.sections.items()},
        "training": c.training,
        "metrics": c.metrics,
        "notes": c.notes,
    }
