"""What moves the on-device candidate's INT8 speed in ONNX Runtime: each quantization setting and session option,
timed beside the float model, and the final resize's floor.

    python scripts/benchmark_int8.py                                   # 513x513, 1 and 2 threads
    python scripts/benchmark_int8.py --tries default all_int8 --threads 1 --repeats 5

The candidate (MobileNetV2 x1.0, no ASPP, OS16; random weights: only speed is measured, accuracy is the quantize
app's, on a trained model) is exported with the matmul resize and quantized once per setting (``TRIES``,
calibrated on generated images); the default INT8 file is then timed under each session option (``SESSIONS``)
and its outputs compared with the default session's. The resize rows time the final resize alone (21 maps from
the feature resolution to the input size): as a Resize node, as the two matrix products, as a banded product, and
the floor of any exact form that outputs float logits, writing the 21 maps once (an Expand). Every row is timed in
``--rounds`` interleaved rounds and keeps the median: a slow spell of the machine falls on all rows alike.
Results: int8_tries.json and .md in --out (default outputs/benchmark_int8/<time>).
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

from ..deploy import export_onnx
from ..deploy.quantize import quantize_model
from ..deploy.resize import MatrixResize
from ..files import atomic_path, write_json, write_text
from ..table7 import CANDIDATE, NETWORKS, build_row
from .latency import measure_rounds, ort_runner
from .video import calibration

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


class ResizeOnly(MatrixResize):
    """The final resize alone, (1, 21, h, w) -> (1, 21, H, W): ``form`` ``interpolate`` (a Resize node), ``matmul``
    (``MatrixResize``, as the static deployed graphs have it), ``banded`` (the width product,
    then the height product by blocks of output rows, each block reading only the few input rows its weights touch:
    a batched product with about 1/8 of the dense multiply-adds at 513), or ``write`` (one value per map broadcast to
    the output: only the writing of the 21 maps, which every exact form that outputs float logits does at least
    once)."""

    def __init__(self, h: int, w: int, size: tuple[int, int], form: str) -> None:
        super().__init__(h, w, size, align_corners=False)
        self.form = form
        a = self.a
        if form == "banded":  # blocks of m output rows (m the largest divisor of H up to 32: no slicing after)
            m = max(d for d in range(1, 33) if size[0] % d == 0)
            rows = [a[i : i + m] for i in range(0, size[0], m)]
            touched = [r.ne(0).any(0).nonzero().flatten() for r in rows]
            k = max(int(t.max() - t.min()) + 1 for t in touched)
            starts = [min(int(t.min()), h - k) for t in touched]
            self.register_buffer("rows", torch.tensor([[s + j for j in range(k)] for s in starts]))
            self.register_buffer("blocks", torch.stack([r[:, s : s + k] for r, s in zip(rows, starts, strict=True)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "interpolate":
            return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        if self.form == "matmul":
            return super().forward(x)
        if self.form == "banded":
            return (self.blocks @ (x @ self.b_transposed)[:, :, self.rows]).reshape(1, CLASSES, *self.size)
        return x[:, :, :1, :1].expand(1, CLASSES, *self.size)


RESIZE_FORMS = ("interpolate", "matmul", "banded", "write")


def resize_rows(out: Path, size: int, threads_list) -> list[dict]:
    side = (size - 1) // STRIDE + 1  # the candidate's logits at OS16
    rows = []
    for form in RESIZE_FORMS:
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
            runner = ort_runner(path, (side, side), threads, channels=CLASSES)
            rows.append({"form": form, "threads": threads, "runner": runner})
    return rows


def try_rows(out: Path, size: int, tries, threads_list) -> tuple[list[dict], dict]:
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
            rows.append(
                {
                    "try": name,
                    "what": "float ONNX Runtime" if name == "float" else TRIES[name][0],
                    "threads": threads,
                    "mb": path.stat().st_size / 1e6,
                    "runner": ort_runner(path, (size, size), threads),
                }
            )
    return rows, files


def session_rows(path: Path, size: int, sessions, threads_list) -> list[dict]:
    reference = ort_runner(path, (size, size), 1)()[0]
    rows = []
    for name in sessions:
        what, options = SESSIONS[name]
        for threads in threads_list:
            runner = ort_runner(path, (size, size), threads, session=options)
            diff = float(np.abs(runner()[0] - reference).max())
            rows.append({"session": name, "what": what, "threads": threads, "max_abs_diff": diff, "runner": runner})
    return rows


def markdown(record: dict) -> str:
    size, tries, sessions, resize = record["size"], record["tries"], record["sessions"], record["resize"]
    float_ms = {r["threads"]: r["ms"] for r in tries if r["try"] == "float"}
    int8_ms = {r["threads"]: r["ms"] for r in tries if r["try"] == "default"}

    def ms(r, digits=1):
        return f"{r['ms']:.{digits}f} ({min(r['ms_rounds']):.{digits}f}-{max(r['ms_rounds']):.{digits}f})"

    lines = [
        f"The candidate at {size}x{size}, ONNX Runtime; ms: the median of {record['rounds']} interleaved rounds' "
        f"medians of {record['repeats']} runs (the rounds' range); speed-up over the float model:",
        "",
        "| try | what | threads | ms | speed-up | MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in tries:
        up = float_ms[r["threads"]] / r["ms"]
        lines.append(f"| {r['try']} | {r['what']} | {r['threads']} | {ms(r)} | {up:.2f}x | {r['mb']:.2f} |")
    if sessions:
        lines += [
            "",
            "Session options on the default INT8 file (outputs against the default session's, same input):",
            "",
            "| session | what | threads | ms | max abs output diff |",
            "|---|---|---|---|---|",
        ]
        for r in sessions:
            lines.append(f"| {r['session']} | {r['what']} | {r['threads']} | {ms(r)} | {r['max_abs_diff']:.2g} |")
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
            lines.append(f"| {r['form']} | {r['threads']} | {ms(r, 2)} | {share} |")
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
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timings of every row; the median is kept")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if "default" not in args.tries:
        args.tries = ["default", *args.tries]  # the reference of the session and resize rows
    out = args.out or Path("outputs/benchmark_int8") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    tries, files = try_rows(out, args.size, args.tries, args.threads)
    sessions = session_rows(files["default"], args.size, args.sessions, args.threads)
    resize = [] if args.no_resize else resize_rows(out, args.size, args.threads)
    measure_rounds(tries + sessions + resize, args.rounds, args.warmup, args.repeats)
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    record = {
        "size": args.size,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "tries": tries,
        "sessions": sessions,
        "resize": resize,
        "machine": machine,
    }
    write_json(out / "int8_tries.json", record)
    text = markdown(record)
    write_text(out / "int8_tries.md", text)
    print(text)
    print(f"wrote {out}/int8_tries.json and int8_tries.md")
    return 0
