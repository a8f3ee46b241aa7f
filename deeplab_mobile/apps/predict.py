"""The predict app: segment images, a folder or a glob, videos and cameras, with a model file, a training run
folder, an exported ONNX file or an ExecuTorch program (``scripts/predict.py`` is its command line;
docs/predict.md).

For each image ``<name>.png`` (palette PNG: class indices in VOC's colours) and ``<name>_overlay.jpg`` (the image
blended with the colours, a legend of the classes present) go to the output folder; for each video file
(``clip.mp4``) or camera index (``0``) ``<name>_overlay.mp4`` and its frame rates (``video.segment_video``);
``predictions.json`` has the settings, each image's classes (pixel fractions), each video's frames and frames per
second, and what could not be read. An unreadable image or video is named and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..config.source import load_segmenter
from ..data import DatasetError
from ..data.base import read_image
from ..engine.tiling import BLENDS, Tiling
from ..errors import InvalidValue
from ..files import atomic_path, write_json
from ..predict import MAX_SIZE, PAD_TO
from ..table7 import MF_SCALES
from ..video import VideoError, is_camera, is_video, segment_video

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def find_images(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and globs, in the order given, each once."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            found += sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        else:
            found.append(path)  # a missing file is reported with the unreadable ones
    seen, unique = set(), []
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def output_names(images: list[Path]) -> dict[Path, str]:
    """Each image's output stem: its own, or with its parent folder's name where two images share one."""
    stems = [p.stem for p in images]
    return {p: (p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}_{p.stem}") for p in images}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="predict.py", description="Segment images with a trained or official model.")
    parser.add_argument(
        "inputs",
        nargs="+",
        help="images, folders or globs ('photos/*.jpg'), videos (clip.mp4), camera indices (0)",
    )
    what = "a model file (scripts/convert_weights.py), a training run folder, an exported .onnx or an ExecuTorch .pte"
    parser.add_argument("--weights", required=True, help=what)
    parser.add_argument("--out", default=None, help="output folder (default outputs/predict/<time>)")
    parser.add_argument("--mf", action="store_true", help="multi-scale + left-right flip (DeepLab's MF)")
    parser.add_argument("--scales", type=float, nargs="+", default=list(MF_SCALES), help="MF scales")
    parser.add_argument("--no-flip", action="store_true", help="MF without the flipped pass")
    parser.add_argument(
        "--os", type=int, default=None, choices=(8, 16, 32), help="output stride (default: the model's)"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=None,
        help=f"scale longer sides down to this (0: never; default {MAX_SIZE}, or never with --tile)",
    )
    parser.add_argument(
        "--tile", type=int, nargs="+", default=None, metavar="SIZE", help="sliding windows of SIZE (or H W) pixels"
    )
    parser.add_argument("--tile-overlap", type=float, default=0.25, help="windows' overlap, a fraction of a window")
    parser.add_argument("--tile-blend", default="gaussian", choices=BLENDS, help="how overlapping windows are averaged")
    parser.add_argument("--pad-to", type=int, default=PAD_TO, help="pad smaller images to this square, as evaluation")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads: PyTorch's, or the runtime's for an export"
    )
    parser.add_argument("--max-frames", type=int, default=None, help="stop a video or camera after this many frames")
    parser.add_argument("--no-overlay", action="store_true", help="write the masks only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def tiling(args) -> Tiling | None:
    """``--tile SIZE [W]`` with its overlap and blend, or ``None``."""
    if args.tile is None:
        return None
    if len(args.tile) not in (1, 2):
        raise InvalidValue(f"give one size or two (height width), got {args.tile}")
    size = args.tile[0] if len(args.tile) == 1 else tuple(args.tile)
    return Tiling(size, args.tile_overlap, args.tile_blend)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    segmenter = load_segmenter(args.weights, device=args.device, output_stride=args.os, threads=args.threads)
    videos = [item for item in args.inputs if is_video(item) or is_camera(item)]
    images = find_images([item for item in args.inputs if item not in videos])
    if not images and not videos:
        raise InvalidValue(f"no images in {' '.join(args.inputs)}")
    try:
        tile = tiling(args)
    except InvalidValue as exc:
        raise InvalidValue(f"--tile: {exc}") from None
    max_size = args.max_size if args.max_size is not None else (0 if tile else MAX_SIZE)
    out = Path(args.out or f"outputs/predict/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    out.mkdir(parents=True, exist_ok=True)
    scales, flip = (tuple(args.scales), not args.no_flip) if args.mf else ((1.0,), False)
    settings = {"scales": scales, "flip": flip, "max_size": max_size or None, "pad_to": args.pad_to, "tile": tile}
    record = {
        "weights": str(args.weights),
        "mf": args.mf,
        "scales": list(scales),
        "flip": flip,
        "max_size": max_size,
        "pad_to": args.pad_to,
        "tile": tile.record() if tile else None,
        "classes": list(segmenter.classes),
        "threads": args.threads,
        "images": [],
        "videos": [],
        "errors": [],
    }
    names = output_names(images)
    for path in tqdm(images, desc="predict", disable=args.no_progress):
        segment_image(segmenter, path, out / names[path], settings, record, overlay=not args.no_overlay)
    for item in videos:
        segment_one_video(segmenter, item, out, settings, record, args)
    write_json(out / "predictions.json", record)
    if images:
        print(f"{len(record['images'])} of {len(images)} images segmented -> {out}")
    if record["errors"]:
        print(
            f"{len(record['errors'])} could not be read: "
            + ", ".join(e.get("image") or e["video"] for e in record["errors"]),
            file=sys.stderr,
        )
        return 1
    return 0


def segment_image(segmenter, path: Path, stem: Path, settings: dict, record: dict, overlay: bool) -> None:
    """One image -> ``<stem>.png`` (and ``<stem>_overlay.jpg``), its classes into ``record``; an unreadable image is
    recorded and skipped, a setting the model cannot run (MF on a static export) stops the command."""
    try:
        image = read_image(path)
    except DatasetError as exc:
        tqdm.write(f"error: {exc}", file=sys.stderr)
        record["errors"].append({"image": str(path), "error": str(exc)})
        return
    try:
        labels = segmenter.predict(image, **settings)
    except InvalidValue as exc:
        raise InvalidValue(f"{path}: {exc}") from None
    with atomic_path(stem.with_name(f"{stem.name}.png")) as tmp:
        segmenter.colorize(labels).save(tmp, format="PNG")
    if overlay:
        blended = segmenter.overlay(image, labels)
        with atomic_path(stem.with_name(f"{stem.name}_overlay.jpg"), suffix=".jpg") as tmp:  # OpenCV: by extension
            cv2.imwrite(str(tmp), cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
    counts = np.bincount(labels.ravel(), minlength=len(segmenter.classes))
    present = {segmenter.classes[c]: round(float(n) / labels.size, 5) for c, n in enumerate(counts) if n}
    record["images"].append({"image": str(path), "mask": f"{stem.name}.png", "classes": present})


def segment_one_video(segmenter, item: str, out: Path, settings: dict, record: dict, args) -> None:
    """A video file or camera -> ``<name>_overlay.mp4`` and its frame rates into ``record``; one that cannot be
    read is recorded and skipped."""
    try:
        done = segment_video(segmenter, item, out, args.max_frames, not args.no_progress, args.threads, **settings)
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        record["errors"].append({"video": f"camera {item}" if is_camera(item) else item, "error": str(exc)})
        return
    except InvalidValue as exc:  # a setting the model cannot run: stop here
        raise InvalidValue(f"{item}: {exc}") from None
    record["videos"].append(done)
    h, w = done["frame_size"]
    print(
        f"{done['source']}: {done['frames']} frames of {w}x{h}, {done['fps_model']:.1f} frames/s in the model "
        f"({done['model_ms']['median_ms']:.1f} ms median), {done['fps_total']:.1f} frames/s with decoding and "
        f"writing, threads {args.threads or 'default'} -> {done['output']}"
    )
