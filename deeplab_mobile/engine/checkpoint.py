"""Atomic, safely loaded training checkpoints with every random state needed for a bit-identical resume."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ProjectError, load_failure
from ..files import atomic_path
from ..runfolder import RunFolder


class CheckpointError(ProjectError, RuntimeError):
    """A checkpoint is missing, unreadable or does not fit; the message names the file."""


def last_checkpoint(run_dir: str | Path) -> Path:
    """Where a run folder keeps its latest checkpoint (``runfolder``)."""
    return RunFolder(run_dir).last_checkpoint


@contextmanager
def signals_held():
    """Hold Ctrl-C and SIGTERM until the block ends, then hand them to the handlers that were installed.

    A handler that raises inside ``torch.save`` interrupts its zip writer, whose cleanup then fails with an
    error of its own that replaces the handler's exception (the run was recorded as failed, not interrupted).
    Swapping the handlers rather than masking the signals: a signal sent to the process may be delivered to any
    thread that does not mask it (torch's, TensorBoard's), and Python then runs its handler in the main thread
    all the same.
    """
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set from it
        yield
        return
    pending = []

    def hold(signum, frame):
        pending.append((signum, frame))

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in pending:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)  # the default action, now that the write is done


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to a temporary file in the same folder, flush it to disk, then rename it over ``path``:
    a crash mid-write leaves the previous checkpoint intact, never a truncated one, and a Ctrl-C or SIGTERM
    during the write takes effect once it is done."""
    with signals_held(), atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True`` (tensors and plain containers only; no code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated, foreign or unsafe files
        raise CheckpointError(f"{path}: unreadable checkpoint ({load_failure(exc)})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(state).__name__}, expected a dict)")
    return state


def model_state(state: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of a training checkpoint, or of a bare state dict."""
    weights = state.get("model", state)
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: no model state dict in this checkpoint")
    return weights


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names, dtypes, shapes and values (in logical order, whatever each tensor's memory
    layout or device): equal hashes, bit-identical weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rng_states() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generators, as tensors and plain lists (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_as_tuples(states["python"]))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuples(value):
    """``random.setstate`` needs tuples; some serialisers turn them into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
