"""A training run folder: its layout and its state, written and read here and nowhere else
(docs/training.md#the-run-folder).

    <run>/.hydra/config.yaml      the composed config the run was trained with (and overrides.yaml, hydra.yaml)
    <run>/train.log               the log of every attempt on the folder
    <run>/status.json             how the run stands: running, done, failed or interrupted (``Status``)
    <run>/attempts.jsonl          every attempt: when, what it was, how it ended
    <run>/checkpoints/last.pt     the last checkpoint (every random state, the trace)
    <run>/environment.json        code, libraries, hardware, variables, data manifest (``Environment``)
    <run>/train_loss.csv, weight_hashes.json   the trace (``engine.trace``)
    <run>/metrics.json            the final evaluation (``Metrics``); per_class_iou.csv, per_image_confusion.npz
                                  beside it (``engine.report``)
    <run>/eval/<name>/            later evaluations, each its own record; <run>/tb/ TensorBoard

The rules that keep a user's results: a start that is refused (a finished run's command again without ``resume``,
``resume=true`` where there is nothing to resume, a folder that cannot be written) is refused before anything is
written into the folder; once a run is ``done``, a later attempt that fails or is interrupted does not change its
status (it is logged in ``attempts.jsonl``), and only a later attempt that finishes writes ``done`` again.

The records a run folder and an evaluation record hold are typed here, each with its version, and read back from
every version written so far: ``Status`` (status.json), ``Metrics`` (metrics.json), ``Environment``
(environment.json).

Plain Python.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InvalidValue, MissingFile
from .files import write_json, write_text

ENVIRONMENT = Path("environment.json")

HYDRA = Path(".hydra")
CONFIG = HYDRA / "config.yaml"
OVERRIDES = HYDRA / "overrides.yaml"
HYDRA_CONFIG = HYDRA / "hydra.yaml"
CHECKPOINTS = Path("checkpoints")
LAST = CHECKPOINTS / "last.pt"
STATUS = Path("status.json")
ATTEMPTS = Path("attempts.jsonl")
METRICS = Path("metrics.json")
EVAL = Path("eval")
BOARD = Path("tb")
LOG = Path("train.log")
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's job log format

STATES = ("running", "done", "failed", "interrupted")
STATUS_VERSION = 1


class RunFolderError(InvalidValue):
    """A run folder that cannot be used as asked (its state, or a place that cannot be written); the message names
    the folder and what to do."""


@dataclass(frozen=True)
class Status:
    """``status.json``: the run's state, the iteration it had reached, why it ended (``failed``, ``interrupted``)."""

    state: str
    iteration: int | None = None
    reason: str | None = None
    time: str | None = None
    version: int = STATUS_VERSION

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, value: dict, path: Path) -> Status:
        """A status of any version written so far (the first had ``state``, ``iteration`` and ``reason`` only)."""
        if not isinstance(value, dict) or value.get("state") not in STATES:
            raise RunFolderError(f"{path}: not a run status (a state among {', '.join(STATES)} expected)")
        known = {k: value[k] for k in ("state", "iteration", "reason", "time") if k in value}
        return cls(**known)


METRICS_VERSION = 1  # 0: the files written before the version was recorded (the same keys)
NETWORK_KEYS = ("network", "encoder", "head", "os", "width", "tap", "num_classes", "geometry")
SCORED_KEYS = ("params", "madds", "madds_mf", "eval", "bootstrap", "split")
MODES = ("ss", "mf")


@dataclass(frozen=True)
class Metrics:
    """``metrics.json``: one evaluation of a network, a run's final one or an evaluation record's.

    ``network``: the design it scored (``models.describe_model``; ``os`` the stride it ended training at);
    ``params``, ``madds`` (single scale) and ``madds_mf``; ``eval``: how it ran (strides, scales, flip, padding);
    ``bootstrap``: how the intervals were drawn; ``split``; ``scores``: each mode's (``ss``, ``mf``) mIoU, IoU per
    class name, pixel accuracy and intervals; ``source``: what was scored (a run's ``iteration``, ``checkpoint``,
    ``final_os``; a record's ``name``, ``data_root``, ``weights``). The file keeps one flat object, as it always
    has: the network's keys, the settings and the sources at the top, a key per mode, and ``version``."""

    network: dict[str, Any]
    params: int | None
    madds: int | None
    eval: dict[str, Any]
    scores: dict[str, dict[str, Any]]
    split: str | None = None
    madds_mf: int | None = None
    bootstrap: dict[str, Any] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    version: int = METRICS_VERSION

    def miou(self, mode: str = "ss") -> float | None:
        return self.scores[mode]["miou"] if mode in self.scores else None

    def to_dict(self) -> dict[str, Any]:
        scored = {k: getattr(self, k) for k in SCORED_KEYS if k == "split" or getattr(self, k) is not None}
        return {**self.network, **scored, **self.source, **self.scores, "version": self.version}

    @classmethod
    def from_dict(cls, value: Any, path: Path) -> Metrics:
        """A ``metrics.json`` of any version (0: before ``version``)."""
        if not isinstance(value, dict) or "ss" not in value:
            raise RunFolderError(f"{path}: not an evaluation's metrics (no single-scale scores)")
        value = dict(value)
        version = int(value.pop("version", 0))
        if version > METRICS_VERSION:
            raise RunFolderError(f"{path}: metrics version {version}, newer than this code reads ({METRICS_VERSION})")
        network = {k: value.pop(k) for k in NETWORK_KEYS if k in value}
        scored = {k: value.pop(k) for k in SCORED_KEYS if k in value}
        scores = {m: value.pop(m) for m in MODES if isinstance(value.get(m), dict)}
        scored.setdefault("params", None)
        scored.setdefault("madds", None)
        scored.setdefault("eval", {})
        return cls(network=network, scores=scores, source=value, version=version, **scored)


def write_metrics(folder: str | Path, metrics: Metrics) -> Path:
    """``<folder>/metrics.json``, written atomically."""
    return write_json(Path(folder) / METRICS, metrics.to_dict())


def read_metrics(path: str | Path) -> Metrics:
    """A ``metrics.json`` (or the folder that holds one), of any version."""
    path = record_path(path, METRICS)
    return Metrics.from_dict(read_record(path), path)


ENVIRONMENT_VERSION = 1


@dataclass(frozen=True)
class Environment:
    """``environment.json``: what a run's numbers depend on besides its config and data (``environment.py`` takes
    it): the code, Python, the platform, the libraries imported, torch's build, the CPU, the thread counts, the
    numerics variables, what deterministic mode set, the config's hash and the data's manifest."""

    code: dict[str, Any] | None = None
    python: str | None = None
    platform: str | None = None
    libraries: dict[str, str] | None = None
    torch_build: dict[str, Any] | None = None
    cpu: dict[str, Any] | None = None
    threads: dict[str, int] | None = None
    numerics_env: dict[str, str] | None = None
    deterministic: dict[str, Any] | None = None
    config_sha256: str | None = None
    data: dict[str, Any] | None = None
    version: int = ENVIRONMENT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "version"}}

    @classmethod
    def from_dict(cls, value: Any, path: Path) -> Environment:
        if not isinstance(value, dict):
            raise RunFolderError(f"{path}: not an environment record (a JSON object expected)")
        if int(value.get("version", 1)) > ENVIRONMENT_VERSION:
            raise RunFolderError(f"{path}: environment version {value['version']}, newer than this code reads")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


def write_environment(folder: str | Path, environment: Environment) -> Path:
    """``<folder>/environment.json``, written atomically."""
    return write_json(Path(folder) / ENVIRONMENT, environment.to_dict())


def read_environment(path: str | Path) -> Environment:
    """An ``environment.json`` (or the folder that holds one), of any version."""
    path = record_path(path, ENVIRONMENT)
    return Environment.from_dict(read_record(path), path)


def record_path(path: str | Path, name: Path) -> Path:
    """The record file ``path`` names: itself, or ``name`` in it when it is a folder."""
    path = Path(path)
    return path / name if path.is_dir() else path


def read_record(path: Path):
    """A record file's JSON; an unreadable one is a ``RunFolderError`` naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class RunFolder:
    """One run folder (it need not exist yet: a run about to start)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # Layout
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def overrides(self) -> Path:
        return self.path / OVERRIDES

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    def is_run(self) -> bool:
        """Whether the folder holds a run (its config)."""
        return self.config.is_file()

    # State
    def status(self) -> Status | None:
        """The run's status, ``None`` when it has none (not started, or from before status files)."""
        path = self.path / STATUS
        if not path.is_file():
            return None
        return Status.from_dict(read_record(path), path)

    def state(self) -> str | None:
        status = self.status()
        return status.state if status else None

    def attempts(self) -> list[dict]:
        path = self.path / ATTEMPTS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _log_attempt(self, outcome: str, iteration: int | None, reason: str | None) -> None:
        entry = {"time": now(), "outcome": outcome, "iteration": iteration, "reason": reason, "argv": sys.argv[1:]}
        with open(self.path / ATTEMPTS, "a") as f:
            f.write(json.dumps({k: v for k, v in entry.items() if v is not None}) + "\n")

    def begin(self, iteration: int) -> None:
        """An attempt starts work in the folder (after every check passed): ``running``, unless the run is done."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._log_attempt("started", iteration, None)
        if self.state() != "done":
            write_json(self.path / STATUS, Status("running", iteration, time=now()).to_dict())

    def end(self, state: str, iteration: int | None = None, reason: str | None = None) -> None:
        """How the attempt ended. ``done`` is written; ``failed`` or ``interrupted`` replace any state but ``done``
        (a finished run stays finished: the attempt is in ``attempts.jsonl``)."""
        if state not in STATES:
            raise ValueError(f"state {state!r}: one of {STATES}")
        self._log_attempt(state, iteration, reason)
        if state == "done" or self.state() != "done":
            write_json(self.path / STATUS, Status(state, iteration, reason, now()).to_dict())

    def record_config(self, config: str, overrides: str | None = None, hydra: str | None = None) -> None:
        """The composed config the attempt runs with (and the command line's overrides, Hydra's own settings)."""
        write_text(self.config, config)
        if overrides is not None:
            write_text(self.overrides, overrides)
        if hydra is not None:
            write_text(self.path / HYDRA_CONFIG, hydra)

    def open_log(self, pending: logging.handlers.MemoryHandler | None = None) -> logging.Handler:
        """Log into ``train.log`` from here on (appended: every attempt's lines stay), after the lines ``pending``
        held since the attempt's checks began (``hold_log``)."""
        handler = logging.FileHandler(self.path / LOG, mode="a")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        if pending is not None:
            pending.setTarget(handler)
            pending.flush()
            logging.getLogger().removeHandler(pending)
        logging.getLogger().addHandler(handler)
        return handler

    @staticmethod
    def hold_log() -> logging.handlers.MemoryHandler:
        """Keep the log's lines in memory until the attempt begins (``open_log``) or is refused (``drop_log``)."""
        held = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
        logging.getLogger().addHandler(held)
        return held

    @staticmethod
    def drop_log(held: logging.handlers.MemoryHandler) -> None:
        logging.getLogger().removeHandler(held)
        held.buffer.clear()
        held.close()

    @staticmethod
    def close_log(handler: logging.Handler) -> None:
        logging.getLogger().removeHandler(handler)
        handler.close()

    # Checks before a start
    def check_start(self, resume: bool | str, then: str | None = None) -> bool:
        """Whether a training started with ``resume`` (``false``, ``true``, ``auto``) continues this folder's run; a
        start that cannot be honoured is refused with what to do (``then``: the command that carries on, where the
        caller knows it), before anything is written."""
        ckpt = self.last_checkpoint
        status = self.status() if self.path.is_dir() else None
        if resume is True and not ckpt.is_file():
            if status and status.state in ("interrupted", "failed", "running"):
                raise RunFolderError(
                    f"resume=true: {self.path} has no checkpoint yet (its run stopped before the first one, "
                    f"{status.state}): start it again from the beginning with resume=auto"
                )
            raise RunFolderError(
                f"resume=true but {ckpt} does not exist: check hydra.run.dir (resume=auto starts a fresh run there)"
            )
        if resume is False and ckpt.is_file():
            what = f"its run is {status.state} at iteration {status.iteration}" if status else "it holds a run"
            then = then or "pass resume=true to continue it, or choose another hydra.run.dir"
            raise RunFolderError(f"{self.path}: {what} ({ckpt} exists); nothing was changed: {then}")
        check_writable(self.path, "the run folder (hydra.run.dir)")
        if self.checkpoints.exists():
            check_writable(self.checkpoints, "the run's checkpoints folder")
        return ckpt.is_file()


def nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: str | Path, what: str) -> None:
    """Refuse, before any work, a folder that cannot be created or written (a read-only place, no permission, a
    file where a folder should be): one line that names it. Writes nothing that stays: an existing folder gets a
    temporary file, removed at once; a missing one is not created."""
    folder = Path(folder)
    base = nearest_existing(folder)
    if not base.is_dir():
        raise RunFolderError(f"{what} {folder}: {base} is a file, not a folder; choose another place")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=base)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RunFolderError(
            f"{what} {folder}: {base} cannot be written ({reason}); choose a place you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe)


def find_runs(root: str | Path) -> list[Path]:
    """The training runs under ``root`` (a sweep folder): folders with a run's config, not an evaluation's record
    and not inside another run, in name order; ``[root]`` when ``root`` is itself a run."""
    root = Path(root)
    if (root / CONFIG).is_file():
        return [root]
    found = sorted(p.parent.parent for p in root.rglob(str(CONFIG)) if p.parent.parent.name != EVAL.name)
    return [p for p in found if not any(q != p and q in p.parents for q in found)]


def run_folder_of(path: str | Path) -> Path | None:
    """The run folder a path is (a run folder) or lies in (one of its checkpoints); ``None`` otherwise."""
    path = Path(path)
    for folder in (path, path.parent.parent):
        if (folder / CONFIG).is_file() and (path.is_dir() or path.suffix == ".pt"):
            return folder
    return None


def require_run(path: str | Path) -> RunFolder:
    folder = RunFolder(path)
    if not folder.is_run():
        raise MissingFile(f"{path}: not a training run folder (no {CONFIG})")
    return folder


class Attempt:
    """One attempt on a run folder: ``begin`` once every check has passed; ``end`` records how it ended. An attempt
    refused before it began leaves a folder that held a run as it was; in a new folder (a sweep's job) the refusal
    is kept, with the config (``record_config``), so the sweep's report can say why the job did not run."""

    def __init__(self, folder: RunFolder, record_config: Callable[[], None] | None = None) -> None:
        self.folder, self.started, self.iteration = folder, False, None
        self.record_config = record_config
        self.fresh = not folder.is_run() and not (folder.path / STATUS).exists() and not folder.last_checkpoint.exists()

    def begin(self, iteration: int) -> None:
        self.folder.begin(iteration)
        self.started, self.iteration = True, iteration

    def end(self, state: str, reason: str | None = None) -> None:
        if self.started:
            self.folder.end(state, self.iteration, reason)
        elif self.fresh:
            self.folder.path.mkdir(parents=True, exist_ok=True)
            if self.record_config is not None:
                self.record_config()
            self.folder.end(state, None, reason)
