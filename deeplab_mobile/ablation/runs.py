"""The runs of a sweep folder, read from their files: ``.hydra/config.yaml`` (the composed config),
``.hydra/overrides.yaml``, ``status.json``, ``metrics.json`` and ``latency.json``.

A run is any folder with ``.hydra/config.yaml`` that is not inside another run (``scripts/eval.py`` keeps its own
``eval/.hydra`` inside the run it evaluates). Nothing is dropped: a run that failed, stopped or never finished is
returned with its state and reason so the report can list it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from ..models.encoders import ENCODERS

# Encoder classes (as written in a config's _target_) -> the encoder keys of Table 7 and conf/encoder/.
ENCODER_KEYS = {cls.__name__: key for key, cls in ENCODERS.items()}


class SweepError(ValueError):
    """A folder that holds no training runs."""


@dataclass
class Run:
    """One training run folder. ``arch`` is None for a folder whose config is not a training config."""

    path: Path
    name: str  # relative to the sweep folder ("." for a single run)
    state: str  # done | failed | interrupted | unfinished | foreign
    reason: str = ""
    arch: dict | None = None  # encoder, head, os (evaluated at), train_os, final_os, width, tap, num_classes
    data: str | None = None
    overrides: list[str] = field(default_factory=list)
    metrics: dict | None = None
    latency: dict | None = None


def _read_json(path: Path) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, ""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{path.name} is unreadable ({exc})"
    return (value, "") if isinstance(value, dict) else (None, f"{path.name} does not hold a JSON object")


def architecture(cfg) -> dict | None:
    """The Table 7 design choices of a composed training config, or None when it is not one."""
    target = OmegaConf.select(cfg, "model.encoder._target_", default=None)
    aspp = OmegaConf.select(cfg, "model.head.aspp", default=None)
    if target is None or aspp is None or OmegaConf.select(cfg, "trainer", default=None) is None:
        return None
    encoder = ENCODER_KEYS.get(str(target).rsplit(".", 1)[-1], str(target).rsplit(".", 1)[-1])
    tap = OmegaConf.select(cfg, "model.encoder.tap", default=None)
    trained = int(OmegaConf.select(cfg, "model.encoder.output_stride"))
    final = OmegaConf.select(cfg, "trainer.final_os", default=None)  # the last iterations' stride
    final = int(final) if final is not None else None
    evaluated = OmegaConf.select(cfg, "eval.os", default=None)
    if encoder == "mobilenet_v2":
        tap = tap or "second_last"  # the encoder's default
    return {
        "encoder": encoder,
        "head": "aspp" if aspp else "no_aspp",
        # Table 7's OS is the stride a network is evaluated at (the model zoo evaluates its OS16 network at OS8)
        "os": int(evaluated) if evaluated is not None else final or trained,
        "train_os": trained,
        "final_os": final,
        "width": float(OmegaConf.select(cfg, "model.encoder.width", default=1.0)),
        "tap": tap if encoder == "mobilenet_v2" else None,
        "num_classes": int(OmegaConf.select(cfg, "model.head.num_classes", default=21)),
    }


def read_run(path: Path, root: Path) -> Run:
    name = path.relative_to(root).as_posix() if path != root else "."
    try:
        cfg = OmegaConf.load(path / ".hydra" / "config.yaml")
        arch = architecture(cfg)
    except Exception as exc:  # a broken YAML file or interpolation: list the run, say why
        return Run(path, name, "foreign", f".hydra/config.yaml is unreadable ({exc})")
    if arch is None:
        return Run(path, name, "foreign", "not a training run (its config has no model encoder/head and trainer)")
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(overrides_file)] if overrides_file.is_file() else []
    run = Run(path, name, "unfinished", arch=arch, overrides=overrides)
    run.data = OmegaConf.select(cfg, "data.name", default=None)
    status, problem = _read_json(path / "status.json")
    metrics, metrics_problem = _read_json(path / "metrics.json")
    run.latency, _ = _read_json(path / "latency.json")
    state = (status or {}).get("state")
    if state == "done" and metrics is not None and "ss" in metrics:
        run.state, run.metrics = "done", metrics
        evaluated = (metrics.get("eval") or {}).get("os")  # scripts/eval.py eval.os=8 rewrites metrics.json
        if evaluated is not None:
            arch["os"] = int(evaluated)
    elif state in ("failed", "interrupted"):
        run.state, run.reason = state, str(status.get("reason", ""))
    elif state == "done":
        run.reason = metrics_problem or "status is done but metrics.json is missing"
    else:
        iteration = (status or {}).get("iteration")
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
    found = sorted(p.parent.parent for p in root.rglob(".hydra/config.yaml"))
    runs = [p for p in found if not any(q != p and q in p.parents for q in found)]
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
