"""Prepare PASCAL VOC 2012 + SBD "trainaug", or check a dataset.

    python scripts/prepare_voc.py --voc-root data/VOCdevkit/VOC2012 --sbd-root data/benchmark_RELEASE/dataset
    python scripts/prepare_voc.py --check --voc-root data/VOCdevkit/VOC2012 --splits train_aug val

Preparation writes SegmentationClassAug/ and ImageSets/Segmentation/train_aug.txt and prints the counts
(10,582 trainaug and 1,449 val on the real data). ``--check`` reads every image and mask of the given splits
and lists every problem; the exit code is 1 if there was any.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ..data.base import DatasetError
from ..data.prepare import prepare_trainaug
from ..data.voc import check_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc-root", required=True, help="the VOCdevkit/VOC2012 folder")
    parser.add_argument("--sbd-root", help="SBD's benchmark_RELEASE/dataset folder (for preparation)")
    parser.add_argument("--check", action="store_true", help="scan the splits and report every problem")
    parser.add_argument("--splits", nargs="+", default=["train_aug", "val"], help="splits to --check")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    if args.check:
        failed = False
        for split in args.splits:
            n, problems = check_dataset(args.voc_root, split)
            print(f"{split}: {n} samples checked, {len(problems)} problems")
            for problem in problems:
                print(f"  {problem}")
            failed |= bool(problems)
        return 1 if failed else 0

    if not args.sbd_root:
        parser.error("--sbd-root is required to prepare trainaug (or pass --check)")
    try:
        report = prepare_trainaug(args.voc_root, args.sbd_root, progress=not args.no_progress)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(report), indent=2))
    print(f"train_aug: {report.train_aug} images, val: {report.val} images")
    return 0
