"""What moves the on-device candidate's INT8 speed in ONNX Runtime: each quantization setting and session option,
timed beside the float model, and the final resize's floor.

    python scripts/benchmark_int8.py                                   # 513x513, 1 and 2 threads
    python scripts/benchmark_int8.py --tries default all_int8 --threads 1 --repeats 5

The candidate (MobileNetV2 x1.0, no ASPP, OS16; random weights: only speed is measured, accuracy is the quantize
app's, on a trained model) is exported with the matmul resize and quantized once per setting (``TRIES``,
calibrated on generated images); the default INT8 file is then timed under each session option (``SESSIONS``)
and its outputs compared with the default session's. The resize rows time the final resize alone (21 maps from
the feature resolution to the input size): as a Resize node, as the two matrix products, and the floor of any
exact form that outputs float logits, writing the 21 maps once (an Expand). Results: int8_tries.json and .md in
--out (default outputs/benchmark_int8/<time>).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..deploy import export_onnx
from ..deploy.quantize import quantize_model
from ..deploy.resize import interpolation_matrix
from ..files import atomic_path, write_json, write_text
from ..latency import ort_latency, ort_runner
from ..table7 import CANDIDATE, NETWORKS, build_row
from .benchmark_video import calibration

# quantization settings: name -> (what it is, quantize_model's keyword arguments)
TRIES = {
    "default": ("first conv and classifier in float, int8 weights (u8s8)", {}),
    "classifier_int8": ("classifier and its resize in int8 (keep_float=[first])", {"keep_float": ("first",)}),
    "all_int8": ("every layer in int8 (keep_float=[])", {"keep_float": ()}),
    "u8u8": ("uint8 weights (u8u8 kernels)", {"weight_type": "uint8"}),
    "reduce_range": ("7-bit weights (reduce_range)", {"reduce_range": True}),
}
# session options tried on the default INT8 file: name -> (what it is, ``latency.ort_latency``'s ``session``)
SESSIONS = {
    "default": ("all graph optimisations", {}),
    "extended": (
        "extended optimisations only (no NCHWc layout transforms)",
        {"graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    ),
    "no_mem_pattern": ("no memory pattern, no arena", {"enable_mem_pattern": False, "enable_cpu_mem_arena": False}),
    "no_spinning": ("worker threads do not spin", {"session.intra_op.allow_spinning": "0"}),
    "denormals_zero": ("denormals as zero", {"session.set_denormal_as_zero": "1"}),
}
CLASSES = 21
STRIDE = 16


class ResizeOnly(nn.Module):
    """The final resize alone, (1, 21, h, w) -> (1, 21, H, W): ``form`` ``interpolate`` (a Resize node), ``matmul``
    (``A @ x @ B.T`` with the matrices as constants, as the deployed graphs have them), or ``write`` (one value per
    map broadcast to the output: only the writing of the 21 maps, which every exact form that outputs float logits
    does at least once)."""

    def __init__(self, h: int, w: int, size: tuple[int, int], form: str) -> None:
        super().__init__()
        self.size, self.form = size, form
        like = torch.zeros(())
        self.register_buffer("a", interpolation_matrix(h, size[0], False, like))
        self.register_buffer("b_t", interpolation_matrix(w, size[1], False, like).T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "interpolate":
            return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if self.form == "matmul":
            return self.a @ (x @ self.b_t)
        return x[:, :, :1, :1].expand(1, CLASSES, *self.size)


def resize_rows(out: Path, size: int, threads_list, warmup: int, repeats: int) -> list[dict]:
    side = (size - 1) // STRIDE + 1  # the candidate's logits at OS16
    rows = []
    for form in ("interpolate", "matmul", "write"):
        path = out / "resize" / f"{form}.onnx"
        if not path.is_file():  # a bare module with a 21-channel input: not a segmentor for export_onnx
            with torch.no_grad():
                program = torch.onnx.export(
                    ResizeOnly(side, side, (size, size), form),
                    (torch.randn(1, CLASSES, side, side),),
                    input_names=["logits"],
                    opset_version=18,
                    dynamo=True,
                    verbose=False,
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                program.save(str(tmp))
        for threads in threads_list:
            t = ort_latency(path, (side, side), threads, warmup, repeats, channels=CLASSES)
            rows.append({"form": form, "threads": threads, "ms": t["median_ms"], "p90_ms": t["p90_ms"]})
    return rows


def try_rows(out: Path, size: int, tries, threads_list, warmup, repeats) -> tuple[list[dict], dict]:
    torch.manual_seed(0)
    model = build_row(NETWORKS[CANDIDATE]).eval()
    float_path = export_onnx(model, out / "onnx" / "model.onnx", (size, size))
    files = {"float": float_path}
    for name in tries:
        path = out / "onnx" / f"{name}.int8.onnx"
        files[name] = quantize_model(float_path, path, calibration(size), **TRIES[name][1])
    rows = []
    for name, path in files.items():
        for threads in threads_list:
            t = ort_latency(path, (size, size), threads, warmup, repeats)
            rows.append(
                {
                    "try": name,
                    "what": "float ONNX Runtime" if name == "float" else TRIES[name][0],
                    "threads": threads,
                    "ms": t["median_ms"],
                    "p90_ms": t["p90_ms"],
                    "mb": path.stat().st_size / 1e6,
                }
            )
    return rows, files


def session_rows(path: Path, size: int, sessions, threads_list, warmup, repeats) -> list[dict]:
    reference = ort_runner(path, (size, size), 1)()[0]
    rows = []
    for name in sessions:
        what, options = SESSIONS[name]
        for threads in threads_list:
            t = ort_latency(path, (size, size), threads, warmup, repeats, session=options)
            output = ort_runner(path, (size, size), threads, session=options)()[0]
            rows.append(
                {
                    "session": name,
                    "what": what,
                    "threads": threads,
                    "ms": t["median_ms"],
                    "p90_ms": t["p90_ms"],
                    "max_abs_diff": float(np.abs(output - reference).max()),
                }
            )
    return rows


def markdown(record: dict) -> str:
    size, tries, sessions, resize = record["size"], record["tries"], record["sessions"], record["resize"]
    float_ms = {r["threads"]: r["ms"] for r in tries if r["try"] == "float"}
    int8_ms = {r["threads"]: r["ms"] for r in tries if r["try"] == "default"}
    lines = [
        f"The candidate at {size}x{size}, ONNX Runtime, median ms (speed-up over the float model):",
        "",
        "| try | what | threads | ms | speed-up | MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in tries:
        up = float_ms[r["threads"]] / r["ms"]
        lines.append(f"| {r['try']} | {r['what']} | {r['threads']} | {r['ms']:.1f} | {up:.2f}x | {r['mb']:.2f} |")
    if sessions:
        lines += [
            "",
            "Session options on the default INT8 file (outputs against the default session's, same input):",
            "",
            "| session | what | threads | ms | max abs output diff |",
            "|---|---|---|---|---|",
        ]
        for r in sessions:
            lines.append(f"| {r['session']} | {r['what']} | {r['threads']} | {r['ms']:.1f} | {r['max_abs_diff']:.2g} |")
    if resize:
        lines += [
            "",
            f"The final resize alone (21 maps to {size}x{size}), and its share of the default INT8 model's time:",
            "",
            "| form | threads | ms | share of INT8 |",
            "|---|---|---|---|",
        ]
        for r in resize:
            share = f"{r['ms'] / int8_ms[r['threads']]:.1%}" if r["threads"] in int8_ms else ""
            lines.append(f"| {r['form']} | {r['threads']} | {r['ms']:.2f} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tries", nargs="+", choices=list(TRIES), default=list(TRIES))
    parser.add_argument("--sessions", nargs="*", choices=list(SESSIONS), default=list(SESSIONS))
    parser.add_argument("--no-resize", action="store_true", help="skip the resize-alone rows")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if "default" not in args.tries:
        args.tries = ["default", *args.tries]  # the reference of the session and resize rows
    out = args.out or Path("outputs/benchmark_int8") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    tries, files = try_rows(out, args.size, args.tries, args.threads, args.warmup, args.repeats)
    sessions = session_rows(files["default"], args.size, args.sessions, args.threads, args.warmup, args.repeats)
    resize = [] if args.no_resize else resize_rows(out, args.size, args.threads, args.warmup, args.repeats)
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    record = {"size": args.size, "tries": tries, "sessions": sessions, "resize": resize, "machine": machine}
    write_json(out / "int8_tries.json", record)
    text = markdown(record)
    write_text(out / "int8_tries.md", text)
    print(text)
    print(f"wrote {out}/int8_tries.json and int8_tries.md")
    return 0
