"""A training run's life around the loop: DeepLabv3's final stage, the resume identity check, and how an attempt ends
(done, failed, interrupted by Ctrl-C or SIGTERM; the run folder's status is ``runfolder``'s).

Plain Python: the command-line apps (``deeplab_mobile.apps``) map their Hydra configs onto it.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from ..errors import ArgumentError, InvalidValue, is_number
from ..models.encoders import check_output_stride
from ..runfolder import Attempt

log = logging.getLogger(__name__)


class SettingError(InvalidValue):
    """A setting the run cannot honour, refused before any work with a message that names it."""


@dataclass(frozen=True)
class FinalStage:
    """DeepLabv3's last stage: from iteration ``start`` on, the run trains at ``output_stride`` (8 after 16) with
    the same parameters; with ``lr``, the rate decays by poly again from ``lr`` over the stage (0.001 after 0.007
    in DeepLabv3)."""

    start: int
    output_stride: int
    lr: float | None = None

    @classmethod
    def plan(cls, iters: int, output_stride: int, stage_iters: int | None, lr: float | None = None) -> FinalStage:
        """The last ``stage_iters`` of ``iters`` iterations at ``output_stride``; refuses what it cannot honour (an
        ``ArgumentError`` naming the argument)."""
        try:
            output_stride = check_output_stride(output_stride)
        except ValueError as exc:
            raise ArgumentError("output_stride", str(exc)) from None
        stage_iters = int(stage_iters or 0)
        if not 0 < stage_iters <= iters:
            message = f"must be between 1 and the run's {iters} iterations (at output stride {output_stride}), got"
            raise ArgumentError("stage_iters", f"{message} {stage_iters}")
        if lr is not None and (not is_number(lr) or lr <= 0):
            raise ArgumentError("lr", f"must be a positive number or null, got {lr!r}")
        return cls(iters - stage_iters, output_stride, None if lr is None else float(lr))

    def stride_at(self, iteration: int, first_stride: int) -> int:
        """The output stride of the network after ``iteration`` iterations."""
        return self.output_stride if iteration >= self.start else first_stride

    def record(self) -> dict:
        """``metrics.json``'s ``final_os``: the stride, the iteration the stage starts at, and its LR."""
        return {"os": self.output_stride, "from_iteration": self.start, "lr": self.lr}


# Resume: the settings that define a run

IDENTITY = "identity"  # a schema field's metadata key: the setting identifies the run


def same_run(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A schema field that identifies a run: a resume with it changed is refused (``identity_keys``). A field of a
    dataclass type marked so counts whole; one not marked is looked into."""
    return field(default=default, default_factory=default_factory, metadata={IDENTITY: True})


def identity_keys(schema: type, prefix: str = "") -> list[str]:
    """The dotted keys of ``schema``'s fields marked ``same_run``, looking into unmarked fields whose type is a
    dataclass (``trainer.iters``, ``data.crop_size``; ``model`` whole)."""
    import typing

    hints = typing.get_type_hints(schema)
    keys = []
    for f in fields(schema):
        if f.metadata.get(IDENTITY):
            keys.append(prefix + f.name)
        elif is_dataclass(hints[f.name]):
            keys.extend(identity_keys(hints[f.name], f"{prefix}{f.name}."))
    return keys


class ConfigMismatch(InvalidValue):
    """``resume=true`` on a run folder whose checkpoint was trained with different settings."""


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.007}}`` -> ``{"optim.lr": 0.007}``."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def check_same_run(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Refuse a resume whose settings (flattened) differ from those the checkpoint was trained with."""
    changed = [
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if saved.get(k) != current.get(k)
    ]
    if changed:
        raise ConfigMismatch(f"{path} was trained with other settings; refusing to resume:\n  " + "\n  ".join(changed))


class Terminated(Exception):
    """SIGTERM arrived (``kill``, ``timeout``, a job manager); raised in the main thread so the run unwinds.
    ``Terminated.received`` stays set: code that wraps what it catches (``load_state_dict`` reports it as a
    ``RuntimeError``) must not turn the stop into a failure."""

    received = False


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` inside the block.

    By default SIGTERM ends the process on the spot: no ``finally`` runs, status.json keeps saying "running", and
    the DataLoader workers (children of the forkserver, not of this process) are left behind. Unwinding shuts the
    workers down and records the stop. A handler that is already installed (submitit's, which requeues a
    preempted Slurm job) is left alone.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        Terminated.received = True
        raise Terminated("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_guarded(
    job: Callable[[], Any],
    attempt: Attempt,
    expected: tuple[type[BaseException], ...],
    sweep: bool = False,
    hint: Callable[[], str] | None = None,
) -> Any:
    """Run a training job and record how its attempt ended (``runfolder``: nothing, if it was refused before it
    began; a finished run's status stays ``done``).

    - ``expected`` errors (bad data, a bad setting, a NaN loss): ``failed`` with the message, logged without a
      traceback; exit status 1, or re-raised in a sweep (Hydra records the job and goes on).
    - Ctrl-C: ``interrupted``, re-raised. SIGTERM: ``interrupted``, exit status 143 (128 + SIGTERM, the shell's
      convention), which also ends a sweep. Both log ``hint()``: the command that continues the run.
    - anything else: ``failed`` with the exception's type, re-raised with its traceback.
    """
    try:
        with sigterm_unwinds():
            return job()
    except expected as exc:
        if Terminated.received:  # the stop arrived inside a reader, which reported it as its own failure
            return _terminated(attempt, hint)
        attempt.end("failed", str(exc))
        log.error("%s", exc)
        if sweep:
            raise
        sys.exit(1)
    except KeyboardInterrupt:
        attempt.end("interrupted", "stopped by the user")
        if attempt.started and hint:
            log.error("stopped by the user; %s", hint())
        raise
    except Exception as exc:
        if isinstance(exc, Terminated) or Terminated.received:
            return _terminated(attempt, hint)
        attempt.end("failed", f"{type(exc).__name__}: {exc}")
        raise


def _terminated(attempt: Attempt, hint: Callable[[], str] | None):
    attempt.end("interrupted", "terminated by SIGTERM")
    log.error("terminated by SIGTERM at %s%s", attempt.folder.path, f"; {hint()}" if hint else "")
    sys.exit(128 + signal.SIGTERM)
