"""Segment a video or a camera stream frame by frame with a ``Segmenter`` (a model file, a run, an ONNX export or an
ExecuTorch program): an overlaid video is written and the frame rate measured.

Each frame goes through ``Segmenter.predict`` as an image does (the evaluation's padding, single scale unless MF is
asked for), is blended with the class colours (``Segmenter.overlay``, legend on the right) and written with OpenCV's
``VideoWriter`` (MPEG-4 Part 2, ``mp4v``: in every OpenCV build, no licence-bound encoder needed). Two rates are
reported: the model's (the time in ``predict``: normalisation, network, resize and argmax) and the whole loop's
(decoding, overlay and encoding too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .errors import InvalidValue
from .files import atomic_path
from .predict import Segmenter
from .stats import summarize

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
CAMERA_FPS = 30.0  # what an overlaid camera stream is written at when the camera does not say


class VideoError(InvalidValue):
    """A video that cannot be opened or written, or a camera that is absent; the message names it."""


def is_video(item: str) -> bool:
    return Path(item).suffix.lower() in VIDEO_SUFFIXES


def is_camera(item: str) -> bool:
    """A camera index (``0``, ``1``...) rather than a file."""
    return item.isdigit() and not Path(item).exists()


@dataclass
class Source:
    capture: cv2.VideoCapture
    name: str  # the file's path, or "camera N"
    stem: str  # for the output file's name
    fps: float
    frames: int | None  # the file's frame count (None: a camera)


def open_source(item: str) -> Source:
    """A video file or a camera index, opened; a missing or unreadable one is a ``VideoError`` naming it."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV's own warnings would repeat ours
    if is_camera(item):
        capture = cv2.VideoCapture(int(item))
        if not capture.isOpened():
            raise VideoError(f"camera {item}: not available (no such device, or no access to it)")
        return Source(capture, f"camera {item}", f"camera{item}", capture.get(cv2.CAP_PROP_FPS) or CAMERA_FPS, None)
    path = Path(item)
    if not path.is_file():
        raise VideoError(f"{path}: video not found")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError(f"{path}: cannot be opened as a video")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    return Source(capture, str(path), path.stem, capture.get(cv2.CAP_PROP_FPS) or CAMERA_FPS, count)


def segment_video(
    segmenter: Segmenter,
    item: str,
    out_dir: str | Path,
    max_frames: int | None = None,
    progress: bool = True,
    threads: int | None = None,
    stem: str | None = None,
    **predict_kwargs,
) -> dict:
    """Segment the video file or camera ``item`` into ``<out_dir>/<name>_overlay.mp4`` (written atomically: a run
    that stops early leaves the frames done so far, complete, under that name). ``max_frames`` ends it sooner (a
    camera runs until then, or until interrupted). ``predict_kwargs`` go to ``Segmenter.predict``. Returns the
    record: frames, frame size, threads, the model's and the whole loop's frames per second. ``stem``: the output's
    name instead of the video's (``predict`` gives each input its own)."""
    source = open_source(item)
    out = Path(out_dir) / f"{stem or source.stem}_overlay.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    model_ms: list[float] = []
    size = None
    limits = [n for n in (source.frames, max_frames) if n]
    total = min(limits) if limits else None
    bar = tqdm(total=total, desc=f"video {source.stem}", unit="frame", disable=not progress)
    start = time.perf_counter()
    try:
        with atomic_path(out, suffix=".mp4") as tmp:
            writer = None
            try:
                while max_frames is None or len(model_ms) < max_frames:
                    ok, bgr = source.capture.read()
                    if not ok:
                        break
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    t0 = time.perf_counter()
                    labels = segmenter.predict(rgb, **predict_kwargs)
                    model_ms.append((time.perf_counter() - t0) * 1000)
                    frame = segmenter.overlay(rgb, labels)
                    if writer is None:
                        size = rgb.shape[:2]
                        width = frame.shape[1]  # the legend's column is as wide on every frame
                        writer = cv2.VideoWriter(
                            str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), source.fps, (width, size[0])
                        )
                        if not writer.isOpened():
                            raise VideoError(f"{out}: OpenCV cannot write an mp4v video here")
                    if frame.shape[1] != width:  # a legend scaled down for many classes: pad to the same width
                        frame = cv2.copyMakeBorder(
                            frame, 0, 0, 0, width - frame.shape[1], cv2.BORDER_CONSTANT, value=255
                        )
                    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                    bar.update()
            except KeyboardInterrupt:  # a camera runs until stopped: keep what was recorded
                pass
            finally:
                if writer is not None:
                    writer.release()
            if not model_ms:
                raise VideoError(f"{source.name}: no frame could be read")
    finally:
        bar.close()
        source.capture.release()
    wall = time.perf_counter() - start
    model = summarize(model_ms)
    return {
        "source": source.name,
        "output": str(out),
        "frames": len(model_ms),
        "frame_size": list(size),
        "threads": threads,
        "model_ms": model,
        "fps_model": 1000 / model["median_ms"],
        "fps_total": len(model_ms) / wall,
    }


def write_clip(
    path: str | Path, frames: int = 48, size: tuple[int, int] = (240, 320), fps: float = 12.0, seed: int = 0
):
    """A generated test clip: a window of ``size`` panning across one generated scene (the dataset's classes,
    ``data.synthetic``), ``frames`` frames at ``fps``, written atomically as mp4v. Returns the path."""
    from .data.synthetic import generate_sample

    h, w = size
    side = 2 * max(h, w)
    image, _ = generate_sample(np.random.default_rng(seed), size=(side, side))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=path.suffix or ".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise VideoError(f"{path}: OpenCV cannot write an mp4v video here")
        for t in range(frames):
            y = round((side - h) * t / max(frames - 1, 1))
            x = round((side - w) * (0.5 + 0.5 * np.sin(2 * np.pi * t / max(frames, 1))))
            writer.write(cv2.cvtColor(np.ascontiguousarray(image[y : y + h, x : x + w]), cv2.COLOR_RGB2BGR))
        writer.release()
    return path
