"""What the per-image matrices and the bootstrap cost: seconds and bytes on one evaluation of VOC val's size, and
the report's time on a sweep of many runs (docs/sweeps.md).

    python scripts/benchmark_stats.py                    # 1,449 generated images of VOC's size, 21 classes, 24 runs
    python scripts/benchmark_stats.py --images 200 --runs 6     # a quick look

One evaluation of a small network (the network's time does not change what is added) runs with and without
per-image matrices; the added accumulation is timed call by call, the bootstrap and the npz file on their own. Then a
sweep of ``--runs`` run folders (8 variants x seeds, val and test records of that many images, matrices drawn from the
evaluation's) goes through ``scripts/ablation_table.py``. Writes stats_benchmark.json to
outputs/benchmark_stats/<time>/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ..config.paths import config_dir
from ..data import EvalTransform, Normalize, VOCSegmentation, mean_pixel
from ..data.loader import eval_loader
from ..data.synthetic import write_synthetic_voc
from ..engine import evaluator
from ..engine.report import write_per_image
from ..files import write_json, write_text
from ..metrics import scores
from ..models import build_model
from ..runfolder import RunFolder
from ..stats import SAMPLES, bootstrap_miou

HEADS = ("aspp", "no_aspp", "lraspp", "deeplabv3plus")


def timed_evaluation(model, normalize, loader, per_image: bool) -> tuple[float, float, evaluator.Evaluation]:
    """(wall seconds, seconds inside the per-image accumulation, the evaluation)."""
    spent = [0.0]
    original = evaluator.per_image_confusion

    def counted(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        spent[0] += time.perf_counter() - start
        return out

    evaluator.per_image_confusion = counted
    try:
        start = time.perf_counter()
        result = evaluator.evaluate(model, normalize, loader, 21, per_image=per_image, progress=True)
        return time.perf_counter() - start, spent[0], result
    finally:
        evaluator.per_image_confusion = original


def fake_sweep(root: Path, per_image: np.ndarray, names: list[str], runs: int, rng: np.random.Generator) -> None:
    """``runs`` run folders (variants x seeds) with val and test records whose matrices are the evaluation's,
    with a share of each image's pixels moved off the diagonal (a variant and seed of its own)."""
    seeds = max(1, runs // 8)
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        for i in range(runs):
            head, width, seed = HEADS[i // seeds % 4], (0.5, 1.0)[i // seeds // 4 % 2], i % seeds
            overrides = ["recipe=cpu_synthetic", f"head={head}", f"width={width}", f"trainer.seed={seed}"]
            folder = RunFolder(root / ",".join(overrides[1:]))
            config = OmegaConf.to_yaml(compose("train", overrides=overrides))
            folder.record_config(config, OmegaConf.to_yaml(OmegaConf.create(overrides)))
            folder.end("done")
            folder = folder.path
            for where, split in ((folder, "val"), (folder / "eval" / "os8_split-test", "test")):
                where.mkdir(parents=True, exist_ok=True)
                matrices = per_image.copy()
                moved = (np.diagonal(matrices, axis1=1, axis2=2) * rng.uniform(0, 0.2, (len(matrices), 1))).astype(
                    np.int64
                )
                idx = np.arange(matrices.shape[1])
                matrices[:, idx, idx] -= moved
                matrices[:, idx, 0] += moved
                s = scores(matrices.sum(0))
                record = {"params": 1, "madds": 1, "split": split, "eval": {"os": 8, "mf": False}, "ss": s}
                write_text(where / "metrics.json", json.dumps(record, default=lambda v: None))
                write_per_image(where / "per_image_confusion.npz", names, {"ss": matrices})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1449, help="images in the generated val split (VOC val: 1449)")
    parser.add_argument("--size", type=int, nargs=2, default=(375, 500), help="image height and width")
    parser.add_argument("--runs", type=int, default=24, help="run folders in the sweep the report reads")
    parser.add_argument("--data", type=Path, default=Path("data/synthetic_stats"), help="where to write the images")
    network = "a training run folder whose network scores the images (default: MobileNetV2 x0.35 with random weights)"
    parser.add_argument("--run", type=Path, help=network)
    args = parser.parse_args(argv)
    out = Path("outputs/benchmark_stats") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)

    voc = write_synthetic_voc(args.data, n_train=1, n_val=args.images, size=tuple(args.size), seed=0)
    if args.run:
        from ..config.source import resolve

        model = resolve(args.run).model.eval()
    else:
        torch.manual_seed(0)
        model = build_model("mobilenet_v2", head="no_aspp", output_stride=16, width=0.35).eval()
    normalize = Normalize(model.encoder.mean, model.encoder.std)
    loader = eval_loader(VOCSegmentation(voc, "val", EvalTransform()), 1, 0, mean_pixel(model.encoder.mean), 513)
    plain, _, _ = timed_evaluation(model, normalize, loader, per_image=False)
    kept, accumulate, result = timed_evaluation(model, normalize, loader, per_image=True)
    start = time.perf_counter()
    interval = bootstrap_miou(result.per_image)
    boot = time.perf_counter() - start
    start = time.perf_counter()
    npz = write_per_image(out / "per_image_confusion.npz", result.names, {"ss": result.per_image})
    write = time.perf_counter() - start

    sweep = out / "sweep"
    fake_sweep(sweep, result.per_image, result.names, args.runs, np.random.default_rng(0))
    command = [sys.executable, "-m", "deeplab_mobile", "ablation-table", str(sweep)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    report = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([*command, "--help"], check=True, capture_output=True)
    imports = time.perf_counter() - start

    results = {
        "images": args.images,
        "size": list(args.size),
        "classes": 21,
        "cores": os.cpu_count(),
        "network": str(args.run) if args.run else "MobileNetV2 x0.35, no ASPP, random weights",
        "evaluation_s": {"without_per_image": plain, "with_per_image": kept},
        "per_image_accumulation_s": accumulate,
        "bootstrap_s": boot,
        "bootstrap_samples": SAMPLES,
        "npz_write_s": write,
        "npz_bytes": npz.stat().st_size,
        "raw_bytes": result.per_image.nbytes,
        "miou": result.scores["miou"],
        "miou_ci95": list(interval),
        "report": {"runs": args.runs, "command_s": report, "startup_s": imports},
    }
    write_json(out / "stats_benchmark.json", results)
    print(json.dumps(results, indent=2))
    print(f"wrote {out / 'stats_benchmark.json'}")
    return 0
