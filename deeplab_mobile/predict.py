"""Segment anyone's images: ``Segmenter.from_pretrained(path).predict(image)``.

``path`` is a model file (DeepLab's official checkpoint converted by ``scripts/convert_weights.py``), a training run
folder, or an exported ONNX file or ExecuTorch program (with the ``export.json`` written beside it). An image goes
through the evaluation's geometry: a side longer than ``max_size`` (DeepLab's 513) is scaled down, the image is
padded bottom/right with the mean pixel to at least ``pad_to`` x ``pad_to`` (513, as DeepLab evaluates VOC), single
scale or multi-scale + flip probabilities are averaged (``engine.evaluator.predict_probs``), and the result is
cropped and resized back to the image before the argmax. With ``tile`` the network runs window by window
(``engine.tiling``): for images too large for memory whole (give ``max_size=None`` to keep every pixel); without
it, an image whose whole-image inference would not fit in free memory is refused with the estimate and how to tile.

Memory follows the image, not the classes: ``predict`` resizes the probabilities back to the image and takes the
argmax in bands of rows (``labels_at``), so the class maps never exist at full resolution; a tiled image is
normalised window by window (``LazyInput``). What a prediction will need is estimated from the image's size, every
stage counted, before anything is allocated (``memory_needed``), and refused when it would not fit.
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
from .data.transforms import mean_pixel
from .data.voc import PALETTE
from .deploy.exported import ExportedSegmentor
from .deploy.resize import interpolation_matrix
from .engine.evaluator import mean_padded, predict_probs
from .engine.tiling import Tiling, available_bytes, tiled_labels, tiled_probs, whole_image_bytes
from .errors import InvalidValue
from .hub import is_hub_folder
from .source import ModelSource, open_file

MAX_SIZE = 513  # DeepLab's demo scales an image's long side to this; VOC images are at most 500 pixels
PAD_TO = 513
GIB = 2**30
BAND_BYTES = 64 * 2**20  # the class maps of one band of output rows, resized back to the image


def labels_at(probs: torch.Tensor, size: tuple[int, int], align_corners: bool) -> np.ndarray:
    """The argmax (H, W) uint8 of ``probs`` (C, h, w) resized bilinearly to ``size``, band by band of rows: the
    resize as two interpolation-matrix products (``deploy.resize``, PyTorch's weights), so a band of (C, rows, W)
    is all that exists at full width."""
    height, width = size
    c, h, w = probs.shape
    if (h, w) == (height, width):
        return probs.argmax(0).to(torch.uint8).cpu().numpy()
    rows_of = interpolation_matrix(h, height, align_corners, probs)  # (H, h)
    cols_of = interpolation_matrix(w, width, align_corners, probs).transpose(0, 1)  # (w, W)
    labels = np.empty((height, width), np.uint8)
    band = max(1, BAND_BYTES // (c * width * 4))
    for top in range(0, height, band):
        rows = rows_of[top : top + band]  # (rows, h)
        resized = torch.einsum("rh,chw->crw", rows, probs) @ cols_of  # (C, rows, W)
        labels[top : top + rows.shape[0]] = resized.argmax(0).to(torch.uint8).cpu().numpy()
    return labels


class LazyInput:
    """A large image as the network's input, normalised window by window when a window is asked for
    (``engine.tiling.Crops``): a whole float copy would be four times the uint8 image. Rows and columns beyond the
    image's own ``size`` (its padding) are the exact mean, 0, as ``engine.evaluator.mean_padded`` makes them."""

    def __init__(self, image: np.ndarray, size: tuple[int, int], normalize: nn.Module, device: torch.device) -> None:
        self.image, self.size, self.normalize, self.device = torch.from_numpy(image), size, normalize, device
        self.shape = (1, 3, image.shape[0], image.shape[1])

    def crop(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        x = self.normalize(self.image[top : top + height, left : left + width][None].to(self.device))
        h, w = self.size
        if top + height > h:
            x[:, :, max(0, h - top) :, :] = 0
        if left + width > w:
            x[:, :, :, max(0, w - left) :] = 0
        return x


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
        """A model file (``.pt``), or an export (``.onnx``, ``.pte``, ``.tflite``, OpenVINO ``.xml``) with its
        ``export.json`` (``source.open_file``; a training run folder too:
        ``deeplab_mobile.config.source.load_segmenter``).
        ``threads``: the runtime's threads for an export (PyTorch's are ``torch.set_num_threads``)."""
        path = Path(path)
        if path.is_dir() and not is_hub_folder(path):
            raise InvalidValue(
                f"{path}: a folder; this reads a model file (.pt) or an export. A training run folder loads with "
                "deeplab_mobile.config.source.load_segmenter(path), which builds the run's network from its config"
            )
        return cls.from_source(open_file(path, output_stride, threads), device)

    @staticmethod
    def scaled_size(height: int, width: int, max_size: int | None) -> tuple[int, int]:
        """The size an image is scaled to before the network (its own, unless a side is longer than ``max_size``)."""
        if max_size and max(height, width) > max_size:
            ratio = max_size / max(height, width)
            return round(height * ratio), round(width * ratio)
        return height, width

    def _padded(self, image: np.ndarray, max_size: int | None, pad_to: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The uint8 image scaled to ``max_size`` and padded bottom/right with the mean pixel to at least
        ``pad_to`` x ``pad_to`` (as evaluation pads), and the size it was scaled to."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidValue(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        wh, ww = self.scaled_size(h, w, max_size)
        work = image if (wh, ww) == (h, w) else cv2.resize(image, (ww, wh), interpolation=cv2.INTER_AREA)
        if wh >= pad_to and ww >= pad_to:
            return work, (wh, ww)
        fill = np.asarray(mean_pixel(self.mean), np.uint8)
        padded = np.empty((max(wh, pad_to), max(ww, pad_to), 3), np.uint8)
        padded[:] = fill
        padded[:wh, :ww] = work
        return padded, (wh, ww)

    def _input(self, image: np.ndarray, max_size: int | None, pad_to: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """The normalised, padded network input (1, 3, H', W') of an image and the size it was scaled to."""
        padded, (wh, ww) = self._padded(image, max_size, pad_to)
        sizes = torch.tensor([[wh, ww]])
        return mean_padded(self.normalize(torch.from_numpy(padded)[None].to(self.device)), sizes), (wh, ww)

    def _network_bytes_per_pixel(self) -> float | None:
        if self._bytes_per_pixel is False:  # one pass on the meta device per model: activations scale with pixels
            ref = whole_image_bytes(self.model, (1, 3, PAD_TO, PAD_TO), len(self.classes))
            self._bytes_per_pixel = None if ref is None else ref / PAD_TO**2
        return self._bytes_per_pixel

    def memory_needed(
        self,
        height: int,
        width: int,
        scales: Sequence[float] = (1.0,),
        max_size: int | None = MAX_SIZE,
        pad_to: int = PAD_TO,
        tile: Tiling | None = None,
        probs: bool = False,
    ) -> int | None:
        """Bytes ``predict`` (``probs``: ``predict_probs``) of a ``height`` x ``width`` image will allocate beyond
        the decoded image, every stage counted: the scaled and padded copy and its normalised input (or, tiled, one
        window and the strip of rows carried between rows of windows), the network at the largest scale, the
        labels, and the band of class maps resized back (or, for ``probs``, the image-sized class maps). ``None``
        for a model whose memory cannot be estimated (an export)."""
        per_pixel = self._network_bytes_per_pixel()
        if per_pixel is None:
            return None
        c, scale = len(self.classes), max(scales) ** 2
        wh, ww = self.scaled_size(height, width, max_size)
        ph, pw = max(wh, pad_to), max(ww, pad_to)
        labels = height * width
        if tile is not None and (wh, ww) == (height, width) and not tile.covers(ph, pw):
            th, tw = tile.size
            window = per_pixel * th * tw * scale + 3 * 4 * th * tw
            strip = 2 * (c * 4 + 4) * max(0, th - tile.stride[0]) * pw  # carried down, and the next one
            pending = (c * 4 + 4) * th * (2 * tw)
            padded = 3 * ph * pw if (ph, pw) != (height, width) else 0
            return int(window + strip + pending + padded + labels)
        network = per_pixel * ph * pw * scale + 3 * ph * pw + 3 * 4 * ph * pw
        back = c * 4 * height * width if probs else min(BAND_BYTES, c * 4 * width * height)
        return int(network + labels + back)

    def _check_memory(self, needed: int | None, height: int, width: int, tile: Tiling | None) -> None:
        """Refuse, before anything is allocated, a prediction that would not fit in free memory (``TooLarge``)."""
        free = available_bytes(self.device)
        if needed is None or free is None or needed <= free:
            return
        how = (
            "a smaller window (--tile), or scale it down (--max-size)"
            if tile is not None
            else "tile it (predict.py --tile 513, or tile=Tiling(513) in Segmenter.predict), or scale it down "
            "(--max-size)"
        )
        raise TooLarge(
            f"a {width}x{height} image needs about {needed / GIB:.1f} GiB to segment this way, and "
            f"{free / GIB:.1f} GiB of {self.device.type} memory is free: {how}"
        )

    def _infer(self, scales: Sequence[float], flip: bool):
        if getattr(self.model, "labels", False) and (len(scales) > 1 or flip):
            raise InvalidValue("this exported model outputs class labels: multi-scale + flip needs a logits export")
        if getattr(self.model, "labels", False):
            n = len(self.classes)
            return lambda x: F.one_hot(self.model(x).long(), n).permute(0, 3, 1, 2).float()
        return lambda x: predict_probs(self.model, x, scales, flip)

    def _scaled_probs(self, image, infer, max_size, pad_to, tile) -> torch.Tensor:
        """Class probabilities (C, h, w) at the size the image was scaled to."""
        x, (wh, ww) = self._input(image, max_size, pad_to)
        return (tiled_probs(infer, x, tile) if tile is not None else infer(x))[0, :, :wh, :ww]

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
        """Class probabilities (C, H, W) at the image's own size: image-sized, C times the image; ``predict`` gives
        the labels without them."""
        h, w = image.shape[:2]
        self._check_memory(self.memory_needed(h, w, scales, max_size, pad_to, tile, probs=True), h, w, tile)
        infer = self._infer(scales, flip)
        probs = self._scaled_probs(image, infer, max_size, pad_to, tile)
        if probs.shape[1:] != (h, w):
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
        """Class labels (H, W) uint8 at the image's own size; arguments as ``predict_probs``. The probabilities are
        resized back and reduced to labels in bands of rows; with ``tile`` and an image kept at its size
        (``max_size=None``, or an image no larger), the image is normalised and blended window by window."""
        h, w = image.shape[:2]
        self._check_memory(self.memory_needed(h, w, scales, max_size, pad_to, tile), h, w, tile)
        infer = self._infer(scales, flip)
        if tile is not None and self.scaled_size(h, w, max_size) == (h, w):
            padded, size = self._padded(image, max_size, pad_to)
            if not tile.covers(*padded.shape[:2]):
                lazy = LazyInput(padded, size, self.normalize, self.device)
                return tiled_labels(infer, lazy, tile)[0, :h, :w].cpu().numpy()
        probs = self._scaled_probs(image, infer, max_size, pad_to, tile)
        return labels_at(probs, (h, w), bool(getattr(self.model, "align_corners", False)))

    def colorize(self, labels: np.ndarray) -> Image.Image:
        """A palette PNG image of ``labels`` (VOC's colours; it reads back as class indices)."""
        mask = Image.fromarray(labels.astype(np.uint8), mode="P")
        mask.putpalette(self.palette.tobytes())
        return mask

    def overlay(self, image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The image blended with the class colours (background left as it is), with a legend of the classes
        present along its right side; RGB uint8. Blended in bands of rows into the one output array, so a large
        image costs the output, not float copies of it."""
        height, width = labels.shape
        present = [int(c) for c in np.flatnonzero(np.bincount(labels.ravel(), minlength=1)) if c < len(self.classes)]
        legend = self._legend(present, height)
        out = np.empty((legend.shape[0], width + legend.shape[1], 3), np.uint8)
        out[:, width:] = legend
        band = max(1, (16 * 2**20) // (width * 3 * 4))
        for top in range(0, height, band):
            rows = slice(top, top + band)
            part, fg = image[rows].astype(np.float32), labels[rows] > 0
            part[fg] = (1 - alpha) * part[fg] + alpha * self.palette[labels[rows]][fg]
            out[rows, :width] = part.round().astype(np.uint8)
        return out

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
