"""Segment anyone's images: ``Segmenter.from_pretrained(path).predict(image)``.

``path`` is a model file (DeepLab's official checkpoint converted by ``scripts/convert_weights.py``), a training run
folder, or an exported ONNX file or ExecuTorch program (with the ``export.json`` written beside it). An image goes
through the evaluation's geometry: a side longer than ``max_size`` (DeepLab's 513) is scaled down, the image is
padded bottom/right with the mean pixel to at least ``pad_to`` x ``pad_to`` (513, as DeepLab evaluates VOC), single
scale or multi-scale + flip probabilities are averaged (``engine.evaluator.predict_probs``), and the result is
cropped and resized back to the image before the argmax. With ``tile`` the network runs window by window
(``engine.tiling``): for images too large for memory whole (give ``max_size=None`` to keep every pixel); without
it, an image whose whole-image inference would not fit in free memory is refused with the estimate and how to tile.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .data import Normalize
from .data.transforms import mean_pixel, pad_collate
from .data.voc import PALETTE
from .deploy.exported import ExportedSegmentor
from .engine.evaluator import mean_padded, predict_probs
from .engine.tiling import Tiling, available_bytes, tiled_labels, tiled_probs, whole_image_bytes
from .errors import InvalidValue
from .source import ModelSource, open_file

MAX_SIZE = 513  # DeepLab's demo scales an image's long side to this; VOC images are at most 500 pixels
PAD_TO = 513
GIB = 2**30


class TooLarge(InvalidValue):
    """Whole-image inference of this image would not fit in the device's free memory; the message says how much
    it needs and how to tile."""


class Segmenter:
    """A model with what it needs to segment an RGB uint8 image: its normalisation, class names and colours."""

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
        palette: np.ndarray = PALETTE,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval() if not isinstance(model, ExportedSegmentor) else model
        self.classes = tuple(classes)
        self.mean, self.std = tuple(mean), tuple(std)
        self.normalize = Normalize(mean, std).to(self.device)
        self.palette = palette
        self._bytes_per_pixel: float | None | bool = False  # whole-image inference's memory per pixel (False: not yet)

    @classmethod
    def from_source(cls, source: ModelSource, device: str | torch.device = "cpu") -> Segmenter:
        """The model of a ``ModelSource``, with its classes and normalisation (an export runs on the CPU)."""
        device = device if source.pytorch else "cpu"
        return cls(source.model, source.classes, source.mean, source.std, device)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str = "cpu", output_stride: int | None = None, threads: int | None = None
    ) -> Segmenter:
        """A model file (``.pt``), or an ``.onnx`` or ExecuTorch ``.pte`` file with its ``export.json``
        (``source.open_file``; a training run folder too: ``deeplab_mobile.config.source.load_segmenter``).
        ``threads``: the runtime's threads for an export (PyTorch's are ``torch.set_num_threads``)."""
        path = Path(path)
        if path.is_dir():
            raise InvalidValue(
                f"{path}: a folder; this reads a model file (.pt) or an export. A training run folder loads with "
                "deeplab_mobile.config.source.load_segmenter(path), which builds the run's network from its config"
            )
        return cls.from_source(open_file(path, output_stride, threads), device)

    def _input(self, image: np.ndarray, max_size: int | None, pad_to: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The normalised, padded network input (1, 3, H', W') of an image and the size it was scaled to."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidValue(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        work = image
        if max_size and max(h, w) > max_size:
            ratio = max_size / max(h, w)
            work = cv2.resize(image, (round(w * ratio), round(h * ratio)), interpolation=cv2.INTER_AREA)
        wh, ww = work.shape[:2]
        sample = (torch.from_numpy(np.ascontiguousarray(work)), torch.zeros(wh, ww, dtype=torch.int64))
        images, _, sizes = pad_collate([sample], fill=mean_pixel(self.mean), min_size=pad_to)  # as evaluation pads
        return mean_padded(self.normalize(images.to(self.device)), sizes), (wh, ww)

    def _check_memory(self, x: torch.Tensor, tile: Tiling | None) -> None:
        """Refuse whole-image inference that would not fit in free memory (``TooLarge``), before it starts."""
        if tile is not None and not tile.covers(*x.shape[-2:]):
            return
        if self._bytes_per_pixel is False:  # one pass on the meta device per model: activations scale with pixels
            ref = whole_image_bytes(self.model, (1, 3, PAD_TO, PAD_TO), len(self.classes))
            self._bytes_per_pixel = None if ref is None else ref / PAD_TO**2
        n, _, h, w = x.shape
        free = available_bytes(self.device)
        if self._bytes_per_pixel is None or free is None:
            return
        need = self._bytes_per_pixel * n * h * w
        if need <= free:
            return
        raise TooLarge(
            f"a {w}x{h} input needs about {need / GIB:.1f} GiB for whole-image inference, and {free / GIB:.1f} GiB "
            f"of {self.device.type} memory is free: tile it (predict.py --tile 513, or tile=Tiling(513) in "
            "Segmenter.predict), or scale it down (--max-size)"
        )

    def _infer(self, scales: Sequence[float], flip: bool):
        if getattr(self.model, "labels", False) and (len(scales) > 1 or flip):
            raise InvalidValue("this exported model outputs class labels: multi-scale + flip needs a logits export")
        if getattr(self.model, "labels", False):
            n = len(self.classes)
            return lambda x: F.one_hot(self.model(x).long(), n).permute(0, 3, 1, 2).float()
        return lambda x: predict_probs(self.model, x, scales, flip)

    @torch.no_grad()
    def predict_probs(
        self,
        image: np.ndarray,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        max_size: int | None = MAX_SIZE,
        pad_to: int = PAD_TO,
        tile: Tiling | None = None,
    ) -> torch.Tensor:
        """Class probabilities (C, H, W) at the image's own size (image-sized: ``predict`` with ``tile`` keeps only
        a band of windows in memory)."""
        infer = self._infer(scales, flip)
        x, (wh, ww) = self._input(image, max_size, pad_to)
        self._check_memory(x, tile)
        probs = (tiled_probs(infer, x, tile) if tile is not None else infer(x))[0, :, :wh, :ww]
        h, w = image.shape[:2]
        if (wh, ww) != (h, w):
            align = bool(getattr(self.model, "align_corners", False))
            probs = F.interpolate(probs[None], size=(h, w), mode="bilinear", align_corners=align)[0]
        return probs

    @torch.no_grad()
    def predict(
        self,
        image: np.ndarray,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        max_size: int | None = MAX_SIZE,
        pad_to: int = PAD_TO,
        tile: Tiling | None = None,
    ) -> np.ndarray:
        """Class labels (H, W) uint8 at the image's own size; arguments as ``predict_probs``. With ``tile`` and an
        image kept at its size (``max_size=None``, or an image no larger), one band of windows is in memory at a
        time."""
        h, w = image.shape[:2]
        if tile is None or (max_size and max(h, w) > max_size):
            return (
                self.predict_probs(image, scales, flip, max_size, pad_to, tile).argmax(0).to(torch.uint8).cpu().numpy()
            )
        infer = self._infer(scales, flip)
        x, _ = self._input(image, max_size, pad_to)
        self._check_memory(x, tile)  # a window covering the image is whole-image inference
        return tiled_labels(infer, x, tile)[0, :h, :w].to(torch.uint8).cpu().numpy()

    def colorize(self, labels: np.ndarray) -> Image.Image:
        """A palette PNG image of ``labels`` (VOC's colours; it reads back as class indices)."""
        mask = Image.fromarray(labels.astype(np.uint8), mode="P")
        mask.putpalette(self.palette.tobytes())
        return mask

    def overlay(self, image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The image blended with the class colours (background left as it is), with a legend of the classes
        present along its right side; RGB uint8."""
        colours = self.palette[labels]
        blended = image.astype(np.float32)
        fg = labels > 0
        blended[fg] = (1 - alpha) * blended[fg] + alpha * colours[fg]
        blended = blended.round().astype(np.uint8)
        present = [int(c) for c in np.unique(labels) if c < len(self.classes)]
        return np.concatenate([blended, self._legend(present, image.shape[0])], axis=1)

    def _legend(self, present: Sequence[int], height: int) -> np.ndarray:
        row, width = 22, 170
        legend = np.full((max(height, row * len(present) + 8), width, 3), 255, np.uint8)
        for i, c in enumerate(present):
            y = 4 + i * row
            colour = tuple(int(v) for v in self.palette[c])
            cv2.rectangle(legend, (6, y + 3), (22, y + 17), colour, thickness=-1)
            cv2.rectangle(legend, (6, y + 3), (22, y + 17), (0, 0, 0), thickness=1)
            cv2.putText(
                legend, self.classes[c][:18], (30, y + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
            )
        if legend.shape[0] > height:  # more classes than rows fit beside the image: scale the legend down
            legend = cv2.resize(legend, (width * height // legend.shape[0], height), interpolation=cv2.INTER_AREA)
        return legend
