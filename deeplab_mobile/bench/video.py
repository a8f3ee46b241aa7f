"""Frames per second of the on-device candidate on a video, as ``scripts/predict.py`` runs one, in each deployed
form: ONNX Runtime float and INT8, ExecuTorch (XNNPACK) float and INT8, at each thread count.

    python scripts/benchmark_video.py                                   # the generated clip, 1 and 2 threads
    python scripts/benchmark_video.py --clip my_clip.mp4 --frames 120 --threads 2

The candidate (MobileNetV2 x1.0, no ASPP, OS16; random weights: only speed is measured) is exported at the
padded size every frame is run at (``--pad-to``, 513 as VOC is evaluated) with the matmul resize; the INT8 forms
are calibrated on a few generated images (ranges do not change the speed). Each file is run through
``video.segment_video`` with ``--frames`` frames: the model's rate (normalisation, network, resize, argmax) and the
whole loop's (decode, overlay, encode). Results: video_benchmark.json and .md in --out (default
outputs/benchmark_video/<time>).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic import generate_sample
from ..deploy import export_onnx
from ..deploy.executorch import export_pte
from ..deploy.meta import ExportMeta, OutputSpec, write_export_meta
from ..deploy.quantize import quantize_model
from ..files import write_json, write_text
from ..models.encoders import IMAGENET_MEAN, IMAGENET_STD
from ..predict import Segmenter
from ..table7 import CANDIDATE, NETWORKS, build_row
from ..video import segment_video, write_clip

FORMS = ("ONNX Runtime float", "ONNX Runtime INT8", "ExecuTorch float", "ExecuTorch INT8")


def calibration(side: int, n: int = 4) -> list[np.ndarray]:
    """Generated images padded to ``side``, normalised with ImageNet's statistics."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        image, _ = generate_sample(rng, size=(side // 2, side))
        padded = np.zeros((side, side, 3), np.float32)
        padded[: image.shape[0], : image.shape[1]] = image / 255.0
        x = (padded - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        out.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    return out


def deployed(out: Path, side: int) -> dict[str, Path]:
    """The candidate's four deployed files at ``side`` x ``side`` (each in its own folder with its export.json)."""
    torch.manual_seed(0)
    model = build_row(NETWORKS[CANDIDATE]).eval()
    meta = ExportMeta.of(model, None, [1, 3, side, side], OutputSpec())
    files = {}
    onnx = export_onnx(model, out / "onnx" / "model.onnx", (side, side))
    files[FORMS[0]] = onnx
    files[FORMS[1]] = quantize_model(onnx, out / "onnx" / "model.int8.onnx", calibration(side))
    files[FORMS[2]] = export_pte(model, out / "pte" / "model.pte", (side, side))
    files[FORMS[3]] = export_pte(model, out / "pte" / "model.int8.pte", (side, side), calibration=calibration(side))
    for folder in ("onnx", "pte"):
        write_export_meta(out / folder / "model", meta)
    return files


def markdown(rows: list[dict], clip: str) -> str:
    lines = [
        f"The candidate on `{clip}` (frames of {rows[0]['frame_size'][1]}x{rows[0]['frame_size'][0]}, padded to "
        f"{rows[0]['pad_to']}x{rows[0]['pad_to']}), frames per second:",
        "",
        "| form | threads | frames | model fps | model ms median / p90 | fps with decode, overlay, encode |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["model_ms"]
        lines.append(
            f"| {r['form']} | {r['threads']} | {r['frames']} | {r['fps_model']:.1f} "
            f"| {m['median_ms']:.1f} / {m['p90_ms']:.1f} | {r['fps_total']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default=None, help="a video (default: the generated clip, written into --out)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pad-to", type=int, default=513)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or Path("outputs/benchmark_video") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    clip = args.clip or str(write_clip(out / "clip.mp4", frames=args.frames))
    files = deployed(out, args.pad_to)
    rows = []
    for form, path in files.items():
        for threads in args.threads:
            torch.set_num_threads(threads)
            segmenter = Segmenter.from_pretrained(path, threads=threads)
            videos = out / "videos" / f"{path.stem}_{threads}"
            record = segment_video(segmenter, clip, videos, args.frames, True, threads, pad_to=args.pad_to)
            rows.append({"form": form, "file": str(path), "pad_to": args.pad_to, **record})
    machine = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__}
    write_json(out / "video_benchmark.json", {"clip": clip, "rows": rows, "machine": machine})
    text = markdown(rows, clip)
    write_text(out / "video_benchmark.md", text)
    print(text)
    print(f"wrote {out}/video_benchmark.json and video_benchmark.md")
    return 0
