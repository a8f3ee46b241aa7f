"""What the runners of every export format share (``ExportedSegmentor``), the free dimensions the exports take
(``dynamic_shapes``) and a converter's failure as one line (``convert_error``); ``export.json`` is ``meta.py``'s,
the runner of a file ``open.py``'s."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from ..errors import InvalidValue


def dynamic_shapes(batch: bool = True, min_side: int = 33, max_side: int | None = None) -> tuple[dict]:
    """``torch.export`` dimensions of the image argument (by position): free (batch,) height and width; the models
    need at least a 33x33 input (OS16 -> 3x3 features). ``max_side``: the largest (ExecuTorch plans its memory for
    it)."""
    dims = {2: Dim("height", min=min_side, max=max_side), 3: Dim("width", min=min_side, max=max_side)}
    if batch:
        dims[0] = Dim("batch")
    return (dims,)


def convert_error(exc: Exception, fmt: str) -> InvalidValue:
    """A converter's failure as one line naming the op it could not take (the ``aten`` op in the message, when the
    converter names one) and the format."""
    text = str(exc)
    found = re.search(r"aten[.:]+(\w+)", text)
    op = f"aten.{found.group(1)}" if found else None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    what = f"the op {op}" if op else "an op"
    return InvalidValue(f"{fmt} cannot take {what} of this model: {first}")


class ExportedSegmentor(nn.Module):
    """An exported model callable like the PyTorch model on a normalised NCHW tensor, so the evaluator scores it on
    the same code path. A feature-resolution export (``output_stride`` given) has the segmentor's ``logits``,
    ``upsample`` and ``output_stride``, and the evaluator runs DeepLab's staged multi-scale resizes on it as on the
    PyTorch model; a full-size export is resized from its input-size logits. A runtime subclass runs the file
    (``_execute``)."""

    def __init__(
        self,
        path: str | Path,
        geometry: str = "torch",
        output_stride: int | None = None,
        static: tuple[int, int] | None = None,
        labels: bool = False,
        other_sizes: str = "export with dynamic=true for other sizes and multi-scale",
    ) -> None:
        super().__init__()
        self.other_sizes = other_sizes  # how to get a model for other sizes, for the static-size refusal
        self.path = Path(path)
        self.align_corners = geometry == "deeplab"
        self.static = tuple(static) if static else None
        self.labels = labels
        if output_stride is not None:
            self.output_stride = int(output_stride)  # only then: the evaluator's staged path needs it

    def _execute(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def upsample(self, logits: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Feature-resolution logits (a feature-resolution export only)."""
        if not hasattr(self, "output_stride"):
            raise InvalidValue(f"{self.path}: outputs input-size logits, not feature-resolution ones")
        return self.raw(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x)
        return self.upsample(out, x.shape[-2:]) if hasattr(self, "output_stride") else out

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The file's output as it is (feature-resolution or input-size logits, or labels), checked for size."""
        if self.static and tuple(x.shape[-2:]) != self.static:
            raise InvalidValue(
                f"{self.path}: exported for {self.static[0]}x{self.static[1]} inputs only, got "
                f"{x.shape[-2]}x{x.shape[-1]} ({self.other_sizes})"
            )
        return self._execute(x).to(x.device)


class ExportedNetwork(nn.Module):
    """An exported file's runner seen as the network it was exported from, for the evaluation protocol: its
    ``output_stride`` is the network's (``os`` of ``export.json``), which it cannot change
    (``set_output_stride`` refuses another); ``forward`` is the runner's. ``as_network`` gives a feature-resolution
    export the runner's ``logits`` and ``upsample`` too, so the evaluator runs DeepLab's staged resizes on it."""

    def __init__(self, runner: ExportedSegmentor, output_stride: int) -> None:
        super().__init__()
        self.runner = runner
        self.align_corners = runner.align_corners
        self._output_stride = int(output_stride)

    @property
    def output_stride(self) -> int:
        return self._output_stride

    def set_output_stride(self, output_stride: int) -> ExportedNetwork:
        if output_stride != self._output_stride:
            raise InvalidValue(
                f"{self.runner.path}: exported at output stride {self._output_stride}; re-export for {output_stride}"
            )
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner(x)


class _StagedNetwork(ExportedNetwork):
    """A feature-resolution export: the evaluator's staged path (``logits``, ``upsample``, ``logits_stride``)."""

    @property
    def logits_stride(self) -> int:
        return self.runner.output_stride

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner.logits(x)

    def upsample(self, logits: torch.Tensor, size) -> torch.Tensor:
        return self.runner.upsample(logits, size)


def as_network(runner: ExportedSegmentor, output_stride: int) -> ExportedNetwork:
    """``runner`` with the network's ``output_stride`` (``ExportedNetwork``)."""
    staged = hasattr(runner, "output_stride")  # a feature-resolution export
    return (_StagedNetwork if staged else ExportedNetwork)(runner, output_stride)
