"""The on-device candidate on every runtime it ships to, side by side in one run: ONNX Runtime, ExecuTorch
(XNNPACK), LiteRT (XNNPACK) and OpenVINO, float and INT8, at each thread count (docs/benchmark.md).

    python scripts/benchmark_runtimes.py                       # 513x513, 1 and 2 threads
    python scripts/benchmark_runtimes.py --size 129 --rounds 1 --repeats 2 --runtimes onnxruntime litert

The candidate (MobileNetV2 x1.0, no ASPP, OS16; random weights, BatchNorm randomised: only speed is measured here,
accuracy is the quantize app's on a trained model) is exported once per runtime and form: ``full`` (logits at the
input size, the final resize as two matrix products) and ``features`` (the logits at OS16, no final resize), the
difference being the final resize's share. INT8 is each runtime's own path: ONNX Runtime's QDQ file
(``deploy.quantize``), PT2E with XNNPACK's quantizer for ExecuTorch and LiteRT (``deploy.pt2e``), and OpenVINO
reading ONNX Runtime's INT8 file; all calibrated on the same generated images, the first conv and the classifier
in float. OpenVINO's float model also runs in bf16 (its own row). Every row is timed in ``--rounds`` interleaved
rounds (the median of the rounds' medians), so a slow spell of the machine falls on all rows alike.

Beside the times: file sizes; what ran (LiteRT's ops taken by XNNPACK; OpenVINO's precision per layer type); the
machine's ISA and each float runtime's MAdds per second against the fp32 GEMM rate measured on the same threads
(``latency.gemm_gflops``) and against one core's nominal peak (FMA lanes x 2 FMA units x the clock /proc/cpuinfo
reports: two FMA units assumed, stated in the record; a core that boosts above that clock exceeds it). Results:
runtimes.json and runtimes.md in --out (default outputs/benchmark_runtimes/<time>).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import platform
from pathlib import Path

import torch

from ..complexity import count_madds
from ..deploy import export_onnx, randomize_batchnorm
from ..deploy.executorch import export_pte
from ..deploy.litert import delegation as litert_delegation
from ..deploy.litert import export_tflite, load_interpreter
from ..deploy.open import export_bytes
from ..deploy.openvino import OpenVinoSegmentor, onnx_to_openvino
from ..deploy.quantize import quantize_model
from ..files import write_json, write_text
from ..table7 import CANDIDATE, NETWORKS, build_row
from .latency import gemm_gflops, measure_rounds, openvino_runner, ort_runner, pte_runner, tflite_runner
from .video import calibration

RUNTIMES = ("onnxruntime", "executorch", "litert", "openvino")
LABELS = {"onnxruntime": "ONNX Runtime", "executorch": "ExecuTorch", "litert": "LiteRT", "openvino": "OpenVINO"}
KEEP_FLOAT = ("first", "logits")  # every runtime's INT8: the first conv and the classifier in float
# the runtimes whose INT8 is PT2E with XNNPACK's quantizer: runtime -> (its exporter, its file suffix)
PT2E_EXPORTS = {"executorch": (export_pte, ".pte"), "litert": (export_tflite, ".tflite")}
FORMS = ("full", "features")
# ISA extensions worth naming, as /proc/cpuinfo spells them
ISA = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_info() -> dict:
    """The CPU's model, clock (MHz, as the kernel reports it), ISA extensions, and one core's fp32 peak: FMA lanes
    (16 with AVX-512, 8 with AVX2) x 2 FMA units (assumed) x 2 FLOPs x the clock."""
    info = {"model": platform.processor() or platform.machine(), "mhz": None, "isa": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info["model"] = value
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
        elif key == "flags" and not flags:
            flags = set(value.split())
    info["isa"] = [f for f in ISA if f in flags]
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    if info["mhz"]:
        info["peak_gflops_per_core"] = lanes * 2 * 2 * info["mhz"] / 1000
        info["peak_assumes"] = f"{lanes} fp32 lanes x 2 FMA units x 2 FLOPs x {info['mhz']:.0f} MHz"
    return info


def candidate() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_row(NETWORKS[CANDIDATE]).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    return model


def export_all(model, out: Path, size: int, runtimes) -> list[dict]:
    """Every (runtime, precision, form) file, written once per output folder; a row each."""
    side = (size, size)
    images = calibration(size)
    rows = []
    for form in FORMS:
        upsample = form == "full"
        folder = out / form
        onnx_float = folder / "model.onnx"
        if not onnx_float.is_file():
            export_onnx(copy.deepcopy(model), onnx_float, side, upsample=upsample)
        onnx_int8 = folder / "model.int8.onnx"
        if not onnx_int8.is_file():
            quantize_model(onnx_float, onnx_int8, iter(images), keep_float=KEEP_FLOAT)
        files = {"onnxruntime": {"float": onnx_float, "int8": onnx_int8}}
        for runtime, (export, suffix) in PT2E_EXPORTS.items():
            if runtime not in runtimes:
                continue
            files[runtime] = {}
            for precision, calib in (("float", None), ("int8", images)):
                path = folder / f"model{'.int8' if calib else ''}{suffix}"
                if not path.is_file():
                    net = copy.deepcopy(model)
                    export(net, path, side, upsample=upsample, calibration=calib, keep_float=KEEP_FLOAT)
                files[runtime][precision] = path
        if "openvino" in runtimes:
            files["openvino"] = {}
            for precision, source in (("float", onnx_float), ("int8", onnx_int8)):
                path = folder / "openvino" / f"{source.stem}.xml"
                if not path.is_file():
                    onnx_to_openvino(source, path)
                files["openvino"][precision] = path
            files["openvino"]["bf16"] = files["openvino"]["float"]
        for runtime in runtimes:
            for precision, path in files.get(runtime, {}).items():
                rows.append({"runtime": runtime, "precision": precision, "form": form, "path": path})
    return rows


def what_ran(runtime: str, precision: str, path: Path) -> dict:
    """LiteRT: its ops and how many XNNPACK took; OpenVINO: the precision each layer type ran in."""
    if runtime == "litert":
        return litert_delegation(load_interpreter(path, 1))
    if runtime == "openvino":
        return OpenVinoSegmentor(path, precision="bf16" if precision == "bf16" else "f32").executed_precisions()
    return {}


def runner(row: dict, size: int, threads: int):
    runtime, path = row["runtime"], row["path"]
    if runtime == "onnxruntime":
        return ort_runner(path, (size, size), threads)
    if runtime == "executorch":
        return pte_runner(path, (size, size), threads)
    if runtime == "litert":
        return tflite_runner(path, (size, size), threads)
    return openvino_runner(path, (size, size), threads, "bf16" if row["precision"] == "bf16" else "f32")


def summarize(rows: list[dict], madds: int, cpu: dict, gemm: dict[int, float]) -> list[dict]:
    """One line per runtime, precision and thread count: the full model's time, the speed-up over float ONNX
    Runtime, the final resize's share (1 - features/full), the file size; a float model's MAdds per second against
    one core's nominal fp32 peak and against the fp32 GEMM rate measured at that thread count (``gemm``,
    GFLOP/s)."""
    by = {(r["runtime"], r["precision"], r["form"], r["threads"]): r for r in rows}
    table = []
    for (runtime, precision, form, threads), row in by.items():
        if form != "full":
            continue
        features = by.get((runtime, precision, "features", threads))
        reference = by[("onnxruntime", "float", "full", threads)]["ms"]
        line = {
            "runtime": runtime,
            "precision": precision,
            "threads": threads,
            "ms": row["ms"],
            "ms_range": [min(row["ms_rounds"]), max(row["ms_rounds"])],
            "speedup_vs_float_ort": reference / row["ms"],
            "resize_share": 1 - features["ms"] / row["ms"] if features else None,
            "mb": row["mb"],
            "ran": row["ran"],
        }
        if precision != "int8":
            line["gmadds_per_s"] = madds / (row["ms"] / 1000) / 1e9
            if cpu.get("peak_gflops_per_core"):  # one FMA is one multiply-add: the peak in MAdds is half the FLOPs
                line["peak_share_per_core"] = line["gmadds_per_s"] / threads / (cpu["peak_gflops_per_core"] / 2)
            if threads in gemm:
                line["gemm_share"] = line["gmadds_per_s"] / (gemm[threads] / 2)
        table.append(line)
    return table


def goals(table: list[dict]) -> list[str]:
    lines = []
    one = [r for r in table if r["threads"] == 1]
    int8 = [r for r in one if r["precision"] == "int8"]
    if int8:
        best = min(int8, key=lambda r: r["ms"])
        met = "met" if best["speedup_vs_float_ort"] >= 2.5 else "NOT met"
        lines.append(
            f"fastest INT8 at 1 thread: {LABELS[best['runtime']]} {best['ms']:.1f} ms, "
            f"{best['speedup_vs_float_ort']:.2f}x float ONNX Runtime: goal >= 2.5x {met}"
        )
    for r in (r for r in one if r["runtime"] == "litert" and r["precision"] == "int8"):
        lines.append(f"INT8 .tflite {r['mb']:.2f} MB: goal <= 2.5 MB {'met' if r['mb'] <= 2.5 else 'NOT met'}")
    for r in (r for r in one if "peak_share_per_core" in r):
        gemm = f"{r['gemm_share']:.0%} of the measured fp32 GEMM rate, " if "gemm_share" in r else ""
        lines.append(
            f"{LABELS[r['runtime']]} {r['precision']} at 1 thread: {r['gmadds_per_s']:.1f} GMAdds/s, {gemm}"
            f"{r['peak_share_per_core']:.0%} of the nominal peak at the reported clock"
        )
    return lines


def describe_ran(ran: dict, runtime: str) -> str:
    if runtime == "litert" and ran:
        return f"XNNPACK {ran['xnnpack_delegated']}/{ran['ops_total']} ops"
    if runtime == "openvino" and ran:
        keep = ("Convolution", "FullyConnected", "MatMul")
        return "; ".join(
            f"{layer} " + ", ".join(f"{p} {n}" for p, n in ran[layer].items()) for layer in keep if layer in ran
        )
    return {"executorch": "XNNPACK delegate", "onnxruntime": "CPU EP"}.get(runtime, "")


def markdown(record: dict) -> str:
    cpu = record["machine"]["cpu"]
    lines = [
        f"The candidate (MobileNetV2 x1.0, no ASPP, OS16) at {record['size']}x{record['size']}, batch 1; "
        f"{record['madds'] / 1e9:.2f} GMAdds. CPU: {cpu['model']}, ISA {', '.join(cpu['isa'])}; one core's fp32 "
        f"nominal peak {cpu.get('peak_gflops_per_core', float('nan')):.0f} GFLOP/s "
        f"({cpu.get('peak_assumes', 'unknown')}); measured fp32 GEMM (ONNX Runtime, 1024^3) "
        f"{', '.join(f'{t} thread(s) {g:.0f}' for t, g in record['gemm_gflops'].items())} GFLOP/s. "
        f"ms: the median of {record['rounds']} interleaved rounds' medians of {record['repeats']} runs (their range).",
        "",
        "| runtime | precision | threads | ms | vs float ORT | final resize share | MB | what ran |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in record["table"]:
        share = f"{r['resize_share']:.0%}" if r["resize_share"] is not None else ""
        lo, hi = r["ms_range"]
        lines.append(
            f"| {LABELS[r['runtime']]} | {r['precision']} | {r['threads']} | {r['ms']:.1f} ({lo:.1f}-{hi:.1f}) "
            f"| {r['speedup_vs_float_ort']:.2f}x | {share} | {r['mb']:.2f} | {describe_ran(r['ran'], r['runtime'])} |"
        )
    lines += ["", *(f"- {g}" for g in record["goals"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timings of every row; the median is kept")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runtimes = list(dict.fromkeys(["onnxruntime", *args.runtimes]))  # float ONNX Runtime: every row's reference
    out = args.out or Path("outputs/benchmark_runtimes") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    model = candidate()
    madds = count_madds(model, args.size, tf_atrous=False)
    files = export_all(model, out, args.size, runtimes)
    rows = []
    for f in files:
        ran = what_ran(f["runtime"], f["precision"], f["path"]) if f["form"] == "full" else {}
        for threads in args.threads:
            rows.append({**f, "threads": threads, "mb": export_bytes(f["path"]) / 1e6, "ran": ran})
    # a fresh session each round: no runtime's state carries over from one round to the next
    measure_rounds(rows, args.rounds, args.warmup, args.repeats, lambda row: runner(row, args.size, row["threads"]))
    cpu = cpu_info()
    gemm = {threads: gemm_gflops(threads=threads) for threads in args.threads}
    table = summarize(rows, madds, cpu, gemm)
    record = {
        "size": args.size,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "madds": madds,
        "gemm_gflops": gemm,
        "table": table,
        "goals": goals(table),
        "rows": [{k: (str(v) if k == "path" else v) for k, v in r.items()} for r in rows],
        "machine": {"platform": platform.platform(), "cpu": cpu, "torch": torch.__version__},
    }
    write_json(out / "runtimes.json", record)
    text = markdown(record)
    write_text(out / "runtimes.md", text)
    print(text)
    print(f"wrote {out}/runtimes.json and runtimes.md")
    return 0
