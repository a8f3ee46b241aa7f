"""The runs of a sweep folder, read from their files: ``.hydra/config.yaml`` (the composed config),
``.hydra/overrides.yaml``, ``status.json``, ``metrics.json`` (the training's own evaluation), ``eval/*/metrics.json``
(each later evaluation's record, ``scripts/eval.py``), beside each its ``per_image_confusion.npz``, and
``latency.json``.

Runs that differ only in their training seed are one variant: ``Run.variant`` is the run's config without the seed
and without the settings that do not change a result (``NOT_SETTINGS``), so the report can group them.

A run is any folder with ``.hydra/config.yaml`` that is not inside another run (``scripts/eval.py`` keeps its own
``eval/.hydra`` inside the run it evaluates). Nothing is dropped: a run that failed, stopped or never finished is
returned with its state and reason so the report can list it.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .. import runfolder
from ..config.loss import loss_label, loss_settings
from ..config.model import build_model
from ..config.run import final_stage
from ..config.schema import read_run_config
from ..errors import InvalidValue
from ..models import describe_model
from ..runfolder import RunFolderError


class SweepError(InvalidValue):
    """A folder that holds no training runs."""


@dataclass
class Run:
    """One training run folder. ``arch`` is None for a folder whose config is not a training config."""

    path: Path
    name: str  # relative to the sweep folder ("." for a single run)
    state: str  # done | failed | interrupted | unfinished | foreign
    reason: str = ""
    arch: dict | None = None  # network, encoder, head, os (evaluated at), train_os, final_os, width, tap, ...
    data: str | None = None
    overrides: list[str] = field(default_factory=list)
    metrics: dict | None = None
    latency: dict | None = None
    evaluations: dict[str, dict] = field(default_factory=dict)  # record name ("train": metrics.json) -> record
    quant: dict | None = None  # quant/quant.json: the INT8 model's scores (scripts/quantize.py)
    seed: int | None = None  # trainer.seed
    variant: str | None = None  # the config without the seed (``variant_key``): runs alike in all else share it
    val_split: str | None = None  # data.val_split: the split of the training's own evaluation

    def record_dir(self, name: str) -> Path:
        """The folder of an evaluation record (its metrics.json and per_image_confusion.npz)."""
        return self.path if name == TRAIN else self.path / "eval" / name


# Keys that do not change what a run computes (how it shows progress, threads, workers, where it runs), the seed,
# and ``seeds`` (how many seeds its sweep ran): runs that differ only in these are one variant.
NOT_SETTINGS = (
    "trainer.seed",
    "seeds",
    "resume",
    "progress",
    "data.workers",
    "eval.workers",
    "trainer.threads",
    "trainer.device",
)


def variant_key(cfg) -> str:
    """The config as a canonical string, without ``NOT_SETTINGS`` (interpolations as written, not resolved)."""
    tree = deepcopy(OmegaConf.to_container(cfg, resolve=False))
    for key in NOT_SETTINGS:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return json.dumps(tree, sort_keys=True, default=str)


def identify(run: Run, cfg) -> None:
    """Set the run's seed, variant and val split from its composed config."""
    run.seed = int(cfg.trainer.seed)
    run.variant = variant_key(cfg)
    run.val_split = cfg.data.val_split


def _read_json(path: Path) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, ""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path.name} is unreadable ({exc})"
    return (value, "") if isinstance(value, dict) else (None, f"{path.name} does not hold a JSON object")


def architecture(cfg) -> dict | None:
    """The design of a composed training config's network, as the network describes itself (``describe_model``,
    built on the meta device), with the strides it trains at and is evaluated at; None when ``cfg`` is not a
    training config. A network the config cannot build (the run failed on a bad setting) keeps the config's
    values."""
    encoder = cfg.model.get("encoder")
    if not OmegaConf.is_dict(encoder) or "_target_" not in encoder:  # a network built from a model file's keys
        return None
    target, trained = encoder._target_, int(encoder.output_stride)
    try:
        with torch.device("meta"):
            arch = describe_model(build_model(cfg.model, weights=False))
    except Exception:  # noqa: BLE001 - whatever the model refused, the run's own status says why
        arch = {
            "network": str(target).rsplit(".", 1)[-1],
            "encoder": None,
            "head": None,
            "os": trained,
            "width": float(encoder.get("width") or 1.0),
            "tap": encoder.get("tap"),
            "num_classes": cfg.model.head.get("num_classes"),
        }
    try:
        stage = final_stage(cfg)
    except ValueError:
        stage = None
    final = stage.output_stride if stage else None
    evaluated = cfg.eval.os
    # Table 7's OS is the stride a network is evaluated at (the model zoo evaluates its OS16 network at OS8)
    arch.update(os=int(evaluated) if evaluated is not None else final or trained, train_os=trained, final_os=final)
    arch["loss"] = loss_label(loss_settings(cfg))  # None for plain cross-entropy
    return arch


TRAIN = "train"  # the name of the training's own evaluation record (metrics.json in the run folder)


def evaluation_records(path: Path) -> dict[str, dict]:
    """The run's later evaluations, ``eval/<name>/metrics.json``, by name (unreadable records are left out)."""
    records = {}
    for file in sorted(path.glob("eval/*/metrics.json")):
        record, _ = _read_json(file)
        if record is not None and "ss" in record:
            records[file.parent.name] = record
    return records


def read_run(path: Path, root: Path) -> Run:
    name = path.relative_to(root).as_posix() if path != root else "."
    folder = runfolder.RunFolder(path)
    try:
        raw = OmegaConf.load(folder.config)
        cfg = read_run_config(folder.config) if "trainer" in raw else None
        arch = architecture(cfg) if cfg is not None else None
    except Exception as exc:  # noqa: BLE001 - a broken YAML file or interpolation: list the run, say why
        return Run(path, name, "foreign", f".hydra/config.yaml is unreadable ({exc})")
    if arch is None:
        return Run(path, name, "foreign", "not a training run (its config has no model encoder/head and trainer)")
    overrides = [str(o) for o in OmegaConf.load(folder.overrides)] if folder.overrides.is_file() else []
    run = Run(path, name, "unfinished", arch=arch, overrides=overrides)
    run.data = cfg.data.name
    identify(run, cfg)
    try:
        status, problem = folder.status(), None
    except RunFolderError as exc:
        status, problem = None, str(exc)
    metrics, metrics_problem = _read_json(folder.metrics)
    run.latency, _ = _read_json(path / "latency.json")
    run.quant, _ = _read_json(path / "quant" / "quant.json")
    state = status.state if status else None
    if state == "done" and metrics is not None and "ss" in metrics:
        run.state, run.metrics = "done", metrics
        run.evaluations = {TRAIN: metrics, **evaluation_records(path)}
        evaluated = (metrics.get("eval") or {}).get("os")
        if evaluated is not None:
            arch["os"] = int(evaluated)
    elif state in ("failed", "interrupted"):
        run.state, run.reason = state, status.reason or ""
    elif state == "done":
        run.reason = metrics_problem or "status is done but metrics.json is missing"
    else:
        iteration = status.iteration if status else None
        started = f"; started at iteration {iteration}" if iteration is not None else ""
        run.reason = problem or ("no status.json" if status is None else f"still running or killed{started}")
    return run


def find_runs(folder: str | Path) -> list[Run]:
    """Every run under ``folder`` (or ``folder`` itself when it is a run), in folder-name order.

    Raises:
        SweepError: the folder does not exist or holds no run folder at all.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SweepError(f"{root}: no such folder")
    runs = runfolder.find_runs(root)
    if not runs:
        raise SweepError(
            f"{root} holds no training runs (no */.hydra/config.yaml below it). Point this at a sweep folder "
            "such as outputs/multirun/<date> (python scripts/train.py -m ...) or at a run folder."
        )
    result = [read_run(p, root) for p in runs]
    if all(r.state == "foreign" for r in result):
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in result[:3])
        raise SweepError(f"{root} holds no training runs of scripts/train.py ({reasons})")
    return result
