"""A training's trace, for telling where two trainings part: the loss of every iteration (``train_loss.csv``) and
a hash of the weights at every checkpoint (``weight_hashes.json``).

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


class Trace:
    """``losses[i]`` is iteration ``first + i``'s loss; ``hashes`` maps a checkpoint's iteration to its weights'
    hash (``checkpoint.weights_sha256``)."""

    def __init__(self) -> None:
        self.first, self.losses, self.hashes = 1, [], {}

    def add(self, loss: float) -> None:
        self.losses.append(float(loss))

    def checkpoint(self, iteration: int, weights_hash: str) -> None:
        self.hashes[int(iteration)] = weights_hash

    def state(self) -> dict:
        """For the checkpoint (``torch.load(weights_only=True)`` reads tensors and plain containers)."""
        return {
            "first": self.first,
            "losses": torch.tensor(self.losses, dtype=torch.float64),
            "weight_hashes": {str(k): v for k, v in self.hashes.items()},
        }

    def load(self, state: dict | None, iteration: int) -> None:
        """Restore from a checkpoint at ``iteration``; one written before traces were kept starts the trace at the
        next iteration."""
        if not state:
            self.first, self.losses, self.hashes = iteration + 1, [], {}
            return
        self.first = int(state["first"])
        self.losses = [float(v) for v in state["losses"].tolist()][: max(0, iteration - self.first + 1)]
        self.hashes = {int(k): str(v) for k, v in state["weight_hashes"].items() if int(k) <= iteration}

    def write(self, out_dir: str | Path) -> None:
        table = io.StringIO()
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["iteration", "loss"])
        for i, loss in enumerate(self.losses, self.first):
            writer.writerow([i, repr(loss)])
        write_text(Path(out_dir) / LOSS_LOG, table.getvalue())
        write_json(Path(out_dir) / WEIGHT_HASHES, {str(k): v for k, v in sorted(self.hashes.items())})


def read_losses(path: str | Path) -> dict[int, float]:
    """``train_loss.csv`` -> {iteration: loss}."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            return {int(row["iteration"]): float(row["loss"]) for row in csv.DictReader(f)}
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"{path}: not a loss log ({type(exc).__name__}: {exc})") from None


def read_hashes(path: str | Path) -> dict[int, str]:
    """``weight_hashes.json`` -> {iteration: hash}."""
    path = Path(path)
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, AttributeError, ValueError) as exc:
        raise TraceError(f"{path}: not a weight-hash record ({type(exc).__name__}: {exc})") from None
