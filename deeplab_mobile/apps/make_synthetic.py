"""Write the generated dataset in the PASCAL VOC layout.

    python scripts/make_synthetic.py --root data/synthetic            # 300 train + 100 val + 100 test, seed 0
    python scripts/make_synthetic.py --root data/synth_big --n-train 2000 --n-val 300 --seed 1
    python scripts/make_synthetic.py --clip data/clip.mp4             # a generated test clip (no dataset)

The VOC2012 folder to point the other commands at is <root>/VOCdevkit/VOC2012. A split's images do not depend on
the sizes of the others (each image has its own random stream), and a larger --n-train adds images to an
existing tree.
"""

from __future__ import annotations

import argparse
import time

from ..data.synthetic import write_synthetic_voc
from ..video import write_clip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/synthetic")
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-val", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=100, help="the held-out test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size", type=int, nargs=2, default=(128, 224), metavar=("MIN", "MAX"), help="image side range"
    )
    parser.add_argument("--clip", default=None, help="write a generated test clip (mp4) here instead of a dataset")
    parser.add_argument("--frames", type=int, default=48, help="the clip's frames (12 per second)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.clip:
        path = write_clip(args.clip, args.frames, seed=args.seed)
        print(f"{path}: {args.frames} frames of 320x240 in {time.perf_counter() - start:.1f}s")
        return
    voc = write_synthetic_voc(args.root, args.n_train, args.n_val, args.seed, tuple(args.size), n_test=args.n_test)
    counts = f"{args.n_train} train + {args.n_val} val + {args.n_test} test images"
    print(f"{voc}: {counts} in {time.perf_counter() - start:.1f}s")
