"""A training's trace, for telling where two trainings part: the loss of every iteration (``train_loss.csv``) and
a hash of the weights at every checkpoint (``weight_hashes.json``); in deterministic mode also the weights' hash
after every iteration (a third column of ``train_loss.csv``, its first 16 hex digits), so the iteration whose update
first differs is known exactly: a loss can stay bit-identical for a few iterations after the weights part, when the
difference sits in weights that barely reach it yet (a residual branch behind a BatchNorm scale started at zero).

Both are kept in the checkpoint too, so a resumed run's files go on from where the checkpoint left them, and both
are rewritten whole (atomically) at every checkpoint. Losses are written as the shortest decimal that reads back
as the same float: two trainings' losses are bit-identical exactly when their lines are.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from ..errors import InvalidValue
from ..files import write_json, write_text

LOSS_LOG = "train_loss.csv"
WEIGHT_HASHES = "weight_hashes.json"


class TraceError(InvalidValue):
    """A trace file that cannot be read; the message names it."""


HASH_DIGITS = 16  # of the per-iteration weight hash: 64 bits tell two trainings apart


class Trace:
    """``losses[i]`` is iteration ``first + i``'s loss and ``steps[i]`` (when kept) the hash of the weights after
    it; ``hashes`` maps a checkpoint's iteration to its weights' hash (``checkpoint.weights_sha256``)."""

    def __init__(self) -> None:
        self.first, self.losses, self.steps, self.hashes = 1, [], [], {}

    def add(self, loss: float, weights_hash: str | None = None) -> None:
        self.losses.append(float(loss))
        if weights_hash is not None:
            self.steps.append(weights_hash[:HASH_DIGITS])

    def checkpoint(self, iteration: int, weights_hash: str) -> None:
        self.hashes[int(iteration)] = weights_hash

    def state(self) -> dict:
        """For the checkpoint (``torch.load(weights_only=True)`` reads tensors and plain containers)."""
        return {
            "first": self.first,
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "steps": list(self.steps),
            "weight_hashes": {str(k): v for k, v in self.hashes.items()},
        }

    def load(self, state: dict | None, iteration: int) -> None:
        """Restore from a checkpoint at ``iteration``; one written before traces were kept starts the trace at the
        next iteration."""
        if not state:
            self.first, self.losses, self.steps, self.hashes = iteration + 1, [], [], {}
            return
        self.first = int(state["first"])
        kept = max(0, iteration - self.first + 1)
        self.losses = [float(v) for v in state["losses"].tolist()][:kept]
        self.steps = list(state.get("steps", []))[:kept]
        self.hashes = {int(k): str(v) for k, v in state["weight_hashes"].items() if int(k) <= iteration}

    def write(self, out_dir: str | Path) -> None:
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        steps = len(self.steps) == len(self.losses) and self.steps
        writer.writerow(["iteration", "loss", "weights"] if steps else ["iteration", "loss"])
        for i, loss in enumerate(self.losses, self.first):
            writer.writerow([i, repr(loss), self.steps[i - self.first]] if steps else [i, repr(loss)])
        write_text(Path(out_dir) / LOSS_LOG, table.getvalue())
        write_json(Path(out_dir) / WEIGHT_HASHES, {str(k): v for k, v in sorted(self.hashes.items())})


def read_losses(path: str | Path) -> dict[int, float]:
    """``train_loss.csv`` -> {iteration: loss}."""
    return {i: loss for i, (loss, _) in read_trace(path).items()}


def read_trace(path: str | Path) -> dict[int, tuple[float, str | None]]:
    """``train_loss.csv`` -> {iteration: (loss, the weights' hash after it, or ``None`` where not kept)}."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            return {int(row["iteration"]): (float(row["loss"]), row.get("weights")) for row in csv.DictReader(f)}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"{path}: not a loss log ({type(exc).__name__}: {exc})") from None


def read_hashes(path: str | Path) -> dict[int, str]:
    """``weight_hashes.json`` -> {iteration: hash}."""
    path = Path(path)
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, AttributeError, ValueError) as exc:
        raise TraceError(f"{path}: not a weight-hash record ({type(exc).__name__}: {exc})") from None
