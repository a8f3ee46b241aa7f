"""TensorBoard: scalars, an input | ground truth | prediction grid in the VOC palette, and hparams."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.voc import PALETTE


def _tensorboard():
    """``torch.utils.tensorboard``, kept off TensorFlow.

    ``torch.utils.tensorboard`` reaches ``tensorboard.compat.tf``, which imports TensorFlow whenever it is installed
    in the environment; TensorFlow's runtime loaded into a training process crashes it. TensorBoard's own switch
    for its TensorFlow-free stub is the presence of the module ``tensorboard.compat.notf``: it is registered here,
    when a writer is first made, not when this module is imported."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    return SummaryWriter, hparams


def colorize(mask: np.ndarray) -> np.ndarray:
    """Class indices (255 = ignore) -> RGB in the VOC palette."""
    return PALETTE[mask]


def example_grid(examples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], gap: int = 4) -> np.ndarray:
    """One row per example: image | ground truth | prediction (HWC uint8), rows padded to the widest."""
    rows = []
    for image, mask, pred in examples:
        sep = np.full((image.shape[0], gap, 3), 255, np.uint8)
        rows.append(np.concatenate([image, sep, colorize(mask), sep, colorize(pred)], axis=1))
    width = max(r.shape[1] for r in rows)
    padded = []
    for r in rows:
        padded.append(np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255))
    return np.concatenate(padded, axis=0)


class Board:
    """A SummaryWriter on the main process only; every method is a no-op elsewhere (and when disabled)."""

    def __init__(self, log_dir: str | Path, enabled: bool = True) -> None:
        self.writer = _tensorboard()[0](str(log_dir)) if enabled else None

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def examples(self, tag: str, examples, step: int) -> None:
        if self.writer and examples:
            self.writer.add_image(tag, example_grid(examples), step, dataformats="HWC")

    def hparams(self, params: dict, metrics: dict[str, float], step: int) -> None:
        """Write the HParams summaries into this run's own folder (``SummaryWriter.add_hparams`` would open a
        timestamped sub-run, which splits one run in two in the HParams view)."""
        if not self.writer:
            return
        params = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in params.items()}
        for summary in _tensorboard()[1](params, metrics):
            self.writer.file_writer.add_summary(summary)
        self.scalars(metrics, step)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
