"""The predict app: segment images, a folder or a glob, videos and cameras, with a model file, a training run
folder, an exported ONNX file or an ExecuTorch program (``scripts/predict.py`` is its command line;
docs/predict.md).

For each image ``<name>.png`` (palette PNG: class indices in VOC's colours) and ``<name>_overlay.jpg`` (the image
blended with the colours, a legend of the classes present) go to the output folder; for each video file
(``clip.mp4``) or camera index (``0``) ``<name>_overlay.mp4`` and its frame rates (``video.segment_video``);
``predictions.json`` has the settings, each image's classes (pixel fractions), each video's frames and frames per
second, and what could not be read. An unreadable image or video is named and skipped; the exit status is then 1.

Nothing given is overwritten: every input gets names of its own (``output_names``), and before any work an output
folder is refused where a file it would write is one of the inputs, or already there (an earlier prediction), or
where it cannot be written.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..config.source import load_segmenter
from ..data import DatasetError
from ..data.base import read_image
from ..engine.tiling import BLENDS, Tiling, available_bytes
from ..errors import InvalidValue
from ..files import atomic_path, write_json
from ..predict import GIB, MAX_SIZE, PAD_TO, TooLarge
from ..runfolder import check_writable
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


def output_names(inputs: list[Path]) -> dict[Path, str]:
    """Each input's output stem, unique among them: its own stem; where inputs share one, with the extension
    (``good.jpg``, ``good.png``: ``good_jpg``, ``good_png``); where that still leaves two alike (the same name in two
    folders), the folder's name before it; a number as the last resort."""
    names = {p: p.stem for p in inputs}
    for rule in (lambda p, n: f"{n}_{p.suffix[1:].lower()}" if p.suffix else n, lambda p, n: f"{p.parent.name}_{n}"):
        clash = {n for n in names.values() if list(names.values()).count(n) > 1}
        names = {p: rule(p, n) if n in clash else n for p, n in names.items()}
    taken: set[str] = set()
    for p, n in names.items():
        name, i = n, 1
        while name in taken:
            name, i = f"{n}_{i}", i + 1
        taken.add(name)
        names[p] = name
    return names


def planned_outputs(images: list[Path], videos: list[str], names: dict, out: Path, overlay: bool) -> dict[Path, str]:
    """Every file the command will write -> the input it comes from (``predictions.json``: all of them)."""
    planned = {out / "predictions.json": "the run"}
    for path in images:
        planned[out / f"{names[path]}.png"] = str(path)
        if overlay:
            planned[out / f"{names[path]}_overlay.jpg"] = str(path)
    for item in videos:
        planned[out / f"{names[Path(item)]}_overlay.mp4"] = item
    return planned


def check_outputs(planned: dict[Path, str], inputs: list[Path], out: Path) -> None:
    """Refuse, before any work, an output that is an input, a folder that already holds one of the outputs, or one
    that cannot be written."""
    given = {p.resolve(): p for p in inputs if p.exists()}
    for path, source in planned.items():
        if path.resolve() in given:
            what = "its mask" if path.suffix == ".png" else "an output"
            raise InvalidValue(
                f"--out {out}: {what} {path.name} (of {source}) would be written over the input "
                f"{given[path.resolve()]}; nothing was written: choose another --out"
            )
    there = [p for p in planned if p.exists()]
    if there:
        raise InvalidValue(
            f"--out {out} already holds {there[0].name}{f' and {len(there) - 1} more' if len(there) > 1 else ''} "
            "(an earlier prediction?); nothing was written: choose another --out, or remove them"
        )
    check_writable(out, "--out")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="deeplab-mobile predict", description="Segment images and videos with a trained or official model."
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="images, folders or globs ('photos/*.jpg'), videos (clip.mp4), camera indices (0)",
    )
    what = "a model file (scripts/convert_weights.py), a training run folder, or an export (.onnx, .pte, .tflite, .xml)"
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
    parser.add_argument(
        "--pad-to",
        type=int,
        default=None,
        help=f"pad smaller images to this square, as evaluation (default {PAD_TO}; a static square export's size)",
    )
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
    names = output_names([*images, *(Path(v) for v in videos)])
    inputs = [*images, *(Path(v) for v in videos if not is_camera(v))]
    check_outputs(planned_outputs(images, videos, names, out, not args.no_overlay), inputs, out)
    segmenter = load_segmenter(args.weights, device=args.device, output_stride=args.os, threads=args.threads)
    static = getattr(segmenter.model, "static", None)  # an export of one input size (LiteRT, static ONNX, .pte)
    pad_to = args.pad_to or (static[0] if static and static[0] == static[1] else PAD_TO)
    out.mkdir(parents=True, exist_ok=True)
    scales, flip = (tuple(args.scales), not args.no_flip) if args.mf else ((1.0,), False)
    settings = {"scales": scales, "flip": flip, "max_size": max_size or None, "pad_to": pad_to, "tile": tile}
    record = {
        "weights": str(args.weights),
        "mf": args.mf,
        "scales": list(scales),
        "flip": flip,
        "max_size": max_size,
        "pad_to": pad_to,
        "tile": tile.record() if tile else None,
        "classes": list(segmenter.classes),
        "threads": args.threads,
        "images": [],
        "videos": [],
        "errors": [],
    }
    for path in tqdm(images, desc="predict", disable=args.no_progress):
        segment_image(segmenter, path, out / names[path], settings, record, overlay=not args.no_overlay)
    for item in videos:
        segment_one_video(segmenter, item, out, settings, record, args, names[Path(item)])
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


def check_memory(segmenter, path: Path, settings: dict, overlay: bool) -> None:
    """Refuse an image whose segmenting would not fit in free memory, from its size in the file's header: the
    decoded image, the prediction's every stage (``Segmenter.memory_needed``) and the overlay written after it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a large photo is what this is for
            with Image.open(path) as header:
                width, height = header.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return  # read_image names an unreadable file; a header PIL refuses is read by OpenCV
    kwargs = {k: settings[k] for k in ("scales", "max_size", "pad_to", "tile")}
    needed = segmenter.memory_needed(height, width, **kwargs)
    free = available_bytes(segmenter.device)
    if needed is None or free is None:
        return
    needed += 3 * height * width + (3 * height * (width + 200) if overlay else 0)
    if needed > free:
        how = "a smaller window (--tile)" if settings["tile"] else "--tile 513"
        raise TooLarge(
            f"{path}: a {width}x{height} image needs about {needed / GIB:.1f} GiB to segment (the image, the "
            f"prediction and its overlay), and {free / GIB:.1f} GiB of memory is free: {how}, --max-size, or "
            "--no-overlay"
        )


def segment_image(segmenter, path: Path, stem: Path, settings: dict, record: dict, overlay: bool) -> None:
    """One image -> ``<stem>.png`` (and ``<stem>_overlay.jpg``), its classes into ``record``; an unreadable image is
    recorded and skipped, a setting the model cannot run (MF on a static export) stops the command."""
    try:
        check_memory(segmenter, path, settings, overlay)  # from the file's header, before the image is decoded
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
        del image
        with atomic_path(stem.with_name(f"{stem.name}_overlay.jpg"), suffix=".jpg") as tmp:  # OpenCV: by extension
            cv2.imwrite(str(tmp), cv2.cvtColor(blended, cv2.COLOR_RGB2BGR, dst=blended))
    counts = np.bincount(labels.ravel(), minlength=len(segmenter.classes))
    present = {segmenter.classes[c]: round(float(n) / labels.size, 5) for c, n in enumerate(counts) if n}
    record["images"].append({"image": str(path), "mask": f"{stem.name}.png", "classes": present})


def segment_one_video(segmenter, item: str, out: Path, settings: dict, record: dict, args, stem: str) -> None:
    """A video file or camera -> ``<name>_overlay.mp4`` and its frame rates into ``record``; one that cannot be
    read is recorded and skipped."""
    try:
        done = segment_video(
            segmenter, item, out, args.max_frames, not args.no_progress, args.threads, stem, **settings
        )
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
