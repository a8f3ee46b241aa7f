"""Whole-image against sliding-window inference on one large image: peak memory, time, agreement and mIoU.

    python scripts/benchmark_tiling.py --weights outputs/train/<run>                 # a 6000x4000 mosaic
    python scripts/benchmark_tiling.py --weights mnv2_voc.pt --image big.jpg --overlap 0.25 0.5 --blend mean

The default image is a mosaic of generated samples (200 x 200 pixels each, with their masks) the size of a
6000 x 4000 photo, so the mIoU of each mode is measured too. Each mode runs in a process of its own and its peak
resident memory is the process's (``ru_maxrss``), beside the memory of a process that only loads the model and
the image; whole-image inference that would not fit in free memory is refused by ``Segmenter`` (recorded as such).
Results: tiling.json and tiling.md in ``--out`` (default outputs/benchmark_tiling/<time>).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic import generate_sample, sample_rng
from ..engine.tiling import BLENDS, Tiling
from ..files import write_json, write_text
from ..metrics import confusion_matrix, scores

CELL = 200


def mosaic(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image of ``width`` x ``height`` made of generated samples, CELL pixels square, and its mask."""
    image = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    index = 0
    for top in range(0, height, CELL):
        for left in range(0, width, CELL):
            tile_image, tile_mask = generate_sample(sample_rng(seed, "test", index), size=(CELL, CELL))
            h, w = min(CELL, height - top), min(CELL, width - left)
            image[top : top + h, left : left + w] = tile_image[:h, :w]
            mask[top : top + h, left : left + w] = tile_mask[:h, :w]
            index += 1
    return image, mask


def one_mode(args) -> dict:
    """Run one mode in this process; the result with this process's peak memory."""
    import resource

    from ..config.source import load_segmenter
    from ..data.base import read_image
    from ..predict import TooLarge

    if args.threads:
        torch.set_num_threads(args.threads)
    segmenter = load_segmenter(args.weights)
    if args.image:
        image, truth = read_image(args.image), None
    else:
        image, truth = mosaic(*args.size)
    result = {"mode": args.mode}
    labels = None
    if args.mode != "load":
        if args.mode == "whole":
            tile = None
        else:
            _, overlap, blend = args.mode.split(":")
            tile = Tiling(args.tile, float(overlap), blend)
        scales, flip = ((0.875, 1.0, 1.125), True) if args.mf else ((1.0,), False)
        result["seconds"] = []
        try:
            for _ in range(args.repeat):  # the first in a fresh process includes PyTorch's set-up for the sizes
                start = time.perf_counter()
                labels = segmenter.predict(image, scales=scales, flip=flip, max_size=None, pad_to=1, tile=tile)
                result["seconds"].append(time.perf_counter() - start)
        except TooLarge as exc:
            result["refused"] = str(exc)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if labels is not None:
        np.save(Path(args.out) / f"labels_{args.mode.replace(':', '_')}.npy", labels)
        if truth is not None:
            conf = confusion_matrix(torch.from_numpy(labels).long(), torch.from_numpy(truth).long(), 21, 255)
            result["miou"] = scores(conf)["miou"]
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmark_tiling.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="a training run folder or a model file")
    parser.add_argument("--image", default=None, help="an image (default: a generated mosaic of --size)")
    parser.add_argument("--size", type=int, nargs=2, default=(6000, 4000), metavar=("W", "H"))
    parser.add_argument("--tile", type=int, default=513)
    parser.add_argument("--overlap", type=float, nargs="+", default=[0.25])
    parser.add_argument("--blend", nargs="+", default=["gaussian"], choices=BLENDS)
    parser.add_argument("--mf", action="store_true", help="MF (0.875-1.125) + flip in every mode")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each mode (the first is cold)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # one mode, in a child process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode:
        print(json.dumps(one_mode(args)))
        return 0
    out = Path(args.out or f"outputs/benchmark_tiling/{dt.datetime.now():%Y-%m-%d_%H-%M-%S}")
    out.mkdir(parents=True, exist_ok=True)
    argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a]
    modes = ["load", "whole", *[f"tiled:{o:g}:{b}" for b in args.blend for o in args.overlap]]
    results = []
    for mode in modes:
        command = [
            sys.executable,
            "-m",
            "deeplab_mobile.bench.tiling",
            *argv,
            "--out",
            str(out),
            "--mode",
            mode,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            results.append({"mode": mode, "failed": done.stderr.strip().splitlines()[-1:]})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(results[-1])
    whole = out / "labels_whole.npy"
    for r in results:
        mine = out / f"labels_{r['mode'].replace(':', '_')}.npy"
        if r["mode"].startswith("tiled") and whole.is_file() and mine.is_file():
            r["agreement_with_whole"] = float((np.load(mine) == np.load(whole)).mean())
    record = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "weights": args.weights,
        "image": args.image or f"generated mosaic {args.size[0]}x{args.size[1]}",
        "tile": args.tile,
        "blend": args.blend,
        "mf": args.mf,
        "results": results,
    }
    write_json(out / "tiling.json", record)
    rows = [
        "| mode | seconds (first, then warm) | peak RSS (GiB) | mIoU | agreement with whole |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        cell = r.get("refused") and "refused" or r.get("failed") and "failed"
        times = ", ".join(f"{t:.1f}" for t in r.get("seconds") or []) or "-"
        rows.append(
            f"| {r['mode']} | {cell or times} | {r.get('peak_rss_gib', 0):.2f}"
            f" | {r.get('miou', float('nan')):.4f} | {r.get('agreement_with_whole', float('nan')):.4f} |"
        )
    write_text(out / "tiling.md", "\n".join(rows) + "\n")
    print(f"-> {out / 'tiling.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
