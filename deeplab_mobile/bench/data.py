"""Throughput of the training input pipeline: augmented crops per second, per DataLoader worker and in all.

    python scripts/benchmark_data.py                       # a generated VOC-sized set (375-500 px images)
    python scripts/benchmark_data.py --voc-root data/VOCdevkit/VOC2012 --split train_aug

Measures decode + random scale + pad + crop + flip + tensor conversion of 513x513 crops (normalisation runs on
the device, see ``deeplab_mobile.data.transforms``). ``workers=0`` runs in the main process on one thread: that is the
per-worker (per-core) rate. Writes data_benchmark.json to outputs/benchmark_data/<time>/.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from ..data import TrainTransform, VOCSegmentation
from ..data.loader import train_loader
from ..data.synthetic import write_synthetic_voc
from ..files import write_json
from ..models.encoders import IMAGENET_MEAN


def measure(dataset: VOCSegmentation, workers: int, n: int, batch_size: int) -> float:
    if workers == 0:  # the per-core rate: no OpenCV or torch threads beside the main one
        cv2.setNumThreads(1)
        torch.set_num_threads(1)
    loader = train_loader(dataset, batch_size, workers)
    it = iter(loader)
    next(it)  # start-up (worker spawn, first decode) is not throughput
    done, start = 0, time.perf_counter()
    with tqdm(total=n, desc=f"workers={workers}", unit="crop") as bar:
        while done < n:
            try:
                images, _ = next(it)
            except StopIteration:
                it = iter(loader)
                continue
            done += images.shape[0]
            bar.update(images.shape[0])
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voc-root", help="a VOC2012 folder; default: a generated VOC-sized set")
    parser.add_argument("--split", default="train")
    parser.add_argument("--crop", type=int, default=513)
    parser.add_argument("--n", type=int, default=600, help="crops to time per setting")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, os.cpu_count() or 1])
    args = parser.parse_args(argv)

    root = args.voc_root or write_synthetic_voc("data/synthetic_voc_sized", 200, 0, seed=0, size=(375, 500))
    dataset = VOCSegmentation(root, args.split, transform=TrainTransform(args.crop, IMAGENET_MEAN, seed=0))
    results = {"root": str(root), "split": args.split, "crop": args.crop, "cores": os.cpu_count(), "rates": {}}
    for workers in args.workers:
        rate = measure(dataset, workers, args.n, args.batch_size)
        results["rates"][workers] = rate
        per = rate / max(workers, 1)
        print(f"workers={workers}: {rate:.1f} crops/s ({per:.1f} per worker)")
    out = Path("outputs/benchmark_data") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "data_benchmark.json", results)
    print(f"wrote {out / 'data_benchmark.json'}")
