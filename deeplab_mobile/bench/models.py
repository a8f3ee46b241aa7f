"""The benchmark app (``scripts/benchmark.py``; docs/benchmark.md): latency and memory of the Table 7 networks
against their peers, at 513x513, batch 1, random weights.

    python scripts/benchmark.py                                   # every network, CPU, 1 and 2 threads
    python scripts/benchmark.py --models candidate smp_deeplabv3_mnv2 --threads 1 2
    python scripts/benchmark.py --size 129 --repeats 3            # a quick look
    python scripts/benchmark.py --models heads tv_lraspp_mnv3     # the heads side by side (DeepLabV3+, LR-ASPP)

For each network and thread count: eager PyTorch (contiguous and channels_last), ONNX Runtime (BN folded), its
INT8 twin for the Table 7 networks (static QDQ, per-channel int8 weights; --no-int8 skips it), and torch.compile
for the networks named in --compile; median and p90 over --repeats runs after --warmup. The
machine's fp32 matmul rate is measured at each thread count: FLOPs / rate is each network's floor. Peak
activation memory is counted per network (and with the memory-efficient inverted residual for MobileNetV2).
On CUDA, when present: fp32 and bf16 latency and training throughput (img/s, 513 crop, batch 16).
Results: benchmark.json, benchmark.csv and benchmark.md in --out (default outputs/benchmark/<time>).
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import io
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..complexity import count_madds, count_params
from ..deploy import ChunkedInvertedResidual, export_onnx, make_memory_efficient
from ..deploy.executorch import export_pte
from ..deploy.peak import peak_activation_bytes
from ..deploy.quantize import quantize_model
from ..errors import InvalidValue
from ..files import write_json, write_text
from ..models import HEADS, build_model, head_label
from ..table7 import CANDIDATE, build_row
from ..table7 import NETWORKS as TABLE7_NETWORKS
from .latency import matmul_gflops, measure_latency, ort_latency, ort_profile, pte_latency, timings

REFERENCES = {
    "smp_deeplabv3_mnv2": "SMP DeepLabV3 mobilenet_v2",
    "tv_lraspp_mnv3": "torchvision LR-ASPP MobileNetV3-L",
    "tv_deeplabv3_mnv3": "torchvision DeepLabV3 MobileNetV3-L",
}


class OutTensor(nn.Module):
    """torchvision's segmentation models return {"out": logits}; the benchmark and ONNX want the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


# The eight networks of Table 7 and the 1280-channel tap (deeplab_mobile/table7.py), by variant name
NETWORKS = list(TABLE7_NETWORKS)
# Every head on MobileNetV2 (its Table 7 tap, 320 channels) and MobileNetV3-Large (960 channels) at OS16, width 1,
# for choosing a head by its measured cost (the MobileNetV2 rows with Table 7's heads are Table 7's own)
HEAD_ENCODERS = {"mnv2": ("mobilenet_v2", "second_last"), "mnv3": ("mobilenet_v3", None)}
HEAD_NETWORKS = {
    f"{short}_os16_{head}": (encoder, tap, head)
    for short, (encoder, tap) in HEAD_ENCODERS.items()
    for head in HEADS
    if f"{short}_os16_{head}" not in TABLE7_NETWORKS
}
OURS = {*TABLE7_NETWORKS, *HEAD_NETWORKS}
OURS_BY_HEAD = [f"{short}_os16_{head}" for short in HEAD_ENCODERS for head in HEADS]  # --models heads


def build(name: str) -> nn.Module:
    if name in TABLE7_NETWORKS:
        return build_row(TABLE7_NETWORKS[name])
    if name in HEAD_NETWORKS:
        encoder, tap, head = HEAD_NETWORKS[name]
        return build_model(encoder, head, 16, tap=tap, num_classes=21)
    if name == "smp_deeplabv3_mnv2":
        import segmentation_models_pytorch as smp

        return smp.DeepLabV3(encoder_name="mobilenet_v2", encoder_weights=None, classes=21)
    from torchvision.models import segmentation

    if name == "tv_lraspp_mnv3":
        return OutTensor(segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21))
    if name == "tv_deeplabv3_mnv3":
        model = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
        return OutTensor(model)
    raise InvalidValue(f"unknown network {name!r}; choose from {sorted(OURS) + sorted(REFERENCES)}")


def label(name: str) -> str:
    if name in HEAD_NETWORKS:
        encoder, tap, head = HEAD_NETWORKS[name]
        return f"{'MNet V2*' if encoder == 'mobilenet_v2' else 'MNet V3'} OS16 {head_label(head)}"
    if name not in TABLE7_NETWORKS:
        return REFERENCES[name]
    row = TABLE7_NETWORKS[name]
    return f"{row.network} OS{row.os}{' ASPP' if row.aspp else ''}{' (candidate)' if name == CANDIDATE else ''}"


def input_size(name: str, size: int) -> int:
    """SMP refuses sizes that are not multiples of 8 (its decoder upsamples by a fixed 8): it gets the multiple
    just below, i.e. slightly less work than the others (512 for 513)."""
    return size // 8 * 8 if name == "smp_deeplabv3_mnv2" else size


def int8_model(path: Path, size: int) -> Path:
    """The INT8 twin of a float export (``deploy.quantize``: QDQ, per-channel int8 weights), calibrated on random
    normal inputs: latency and file size do not depend on the ranges found (accuracy does; scripts/quantize.py
    measures that on real images)."""
    out = path.with_suffix(".int8.onnx")
    if not out.is_file():
        rng = np.random.default_rng(0)
        quantize_model(path, out, (rng.standard_normal((1, 3, size, size), dtype=np.float32) for _ in range(4)))
    return out


def pte_models(name: str, model: nn.Module, size: int, out: Path, int8: bool) -> dict[str, Path]:
    """The network as static-size XNNPACK programs (``deploy.executorch``): float, and INT8 (PT2E, XNNPACK's
    quantizer) calibrated on random inputs as ``int8_model`` is; written once per benchmark folder."""
    paths = {"executorch": out / "pte" / f"{name}_{size}.pte"}
    if int8:
        paths["executorch_int8"] = out / "pte" / f"{name}_{size}.int8.pte"
    for kind, path in paths.items():
        if not path.is_file():
            gen = torch.Generator().manual_seed(0)
            calibration = [torch.randn(1, 3, size, size, generator=gen) for _ in range(4)] if "int8" in kind else None
            net = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # as timed channels_last before
            export_pte(net, path, (size, size), calibration=calibration)
    return paths


def cpu_rows(
    names,
    threads_list,
    size_arg,
    warmup,
    repeats,
    compile_names,
    out: Path,
    int8: bool = True,
    pte_names: frozenset = frozenset(),
) -> tuple[list[dict], dict]:
    """Latency rows (one per network x thread count) and the matmul rate per thread count; with ``int8``, the
    Table 7 networks' INT8 ONNX Runtime latency and file size too; the ``pte_names`` networks also as ExecuTorch
    programs (float, and INT8 with ``int8``)."""
    rates, rows = {}, []
    onnx_dir = out / "onnx"
    for threads in threads_list:
        torch.set_num_threads(threads)
        rates[threads] = matmul_gflops()
        for name in tqdm(names, desc=f"CPU, {threads} thread(s)"):
            torch.manual_seed(0)
            model = build(name).eval()
            size = input_size(name, size_arg)
            flops = 2 * count_madds(model, size, tf_atrous=False)
            row = {
                "network": name,
                "label": label(name),
                "threads": threads,
                "size": size,
                "gflop": flops / 1e9,
                "floor_ms": 1000 * flops / (rates[threads] * 1e9),
            }
            row["eager"] = measure_latency(model, size, "cpu", warmup, repeats)
            row["channels_last"] = measure_latency(model, size, "cpu", warmup, repeats, channels_last=True)
            path = onnx_dir / f"{name}_{size}.onnx"
            if not path.is_file():  # peers as they are (SMP's forward cannot be traced): ORT fuses conv + BN itself
                net = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
                export_onnx(net, path, (size, size), fold_bn=name in OURS)
            row["onnxruntime"] = ort_latency(path, (size, size), threads, warmup, repeats)
            row["onnx_mb"] = path.stat().st_size / 1e6
            if int8 and name in OURS:
                quantized = int8_model(path, size)
                row["onnxruntime_int8"] = ort_latency(quantized, (size, size), threads, warmup, repeats)
                row["int8_mb"] = quantized.stat().st_size / 1e6
            if name in pte_names:
                for kind, pte in pte_models(name, model, size, out, int8 and name in OURS).items():
                    row[kind] = pte_latency(pte, (size, size), threads, warmup, repeats)
                    row[f"{kind}_mb"] = pte.stat().st_size / 1e6
            if name in compile_names:
                compiled = torch.compile(copy.deepcopy(model).to(memory_format=torch.contiguous_format))
                row["compile"] = measure_latency(compiled, size, "cpu", warmup + 2, repeats)
            backends = [b for b in ("eager", "channels_last", "onnxruntime", "compile") if b in row]
            row["best"] = min(backends, key=lambda b: row[b]["median_ms"])
            row["best_ms"] = row[row["best"]]["median_ms"]
            row["floor_ratio"] = row["best_ms"] / row["floor_ms"]
            rows.append(row)
    return rows, rates


# ExecuTorch against ONNX Runtime in the goal lines: (label, ExecuTorch key, ONNX Runtime key)
ET_PAIRS = (("float", "executorch", "onnxruntime"), ("INT8", "executorch_int8", "onnxruntime_int8"))
# Kernels of the final resize in a profile: a Resize node (``resize=interpolate``; ONNX Runtime's profiler names
# its kernel Resize or Upsample; the head's image-pooling broadcast, 1x1 to the feature size, is one too and is
# counted with it in both variants: about 0.1 ms) or the two interpolation-matrix products (``resize=matmul``:
# float MatMul, or their int8 form when quantized)
RESIZE_OPS = ("Resize", "Upsample", "MatMul", "QLinearMatMul", "MatMulInteger")


def profile_rows(size: int, threads_list, out: Path, warmup: int, repeats: int) -> list[dict]:
    """Where the candidate's time goes in ONNX Runtime (its profiler, per op type), float and INT8, with the final
    resize as a Resize node and as two matrix products: the resize's share before and after."""
    rows = []
    torch.manual_seed(0)
    model = build(CANDIDATE).eval()
    for resize in ("interpolate", "matmul"):
        path = out / "profile" / f"{CANDIDATE}_{size}_{resize}.onnx"
        if not path.is_file():
            export_onnx(copy.deepcopy(model), path, (size, size), resize=resize)
        for kind, file in (("float", path), ("int8", int8_model(path, size))):
            for threads in threads_list:
                prof = ort_profile(file, (size, size), threads, warmup, repeats)
                kernels = sum(prof["ops"].values())
                resize_ms = sum(ms for op, ms in prof["ops"].items() if op in RESIZE_OPS)
                rows.append(
                    {
                        "resize": resize,
                        "model": kind,
                        "threads": threads,
                        "run_ms": prof["total_ms"],
                        "kernels_ms": kernels,
                        "resize_ms": resize_ms,
                        "resize_share": resize_ms / kernels,
                        "ops": prof["ops"],
                    }
                )
    return rows


def profile_markdown(rows: list[dict], size: int) -> str:
    out = [
        f"Where the candidate's time goes at {size}x{size} (ONNX Runtime's profiler; kernel times per run, the "
        "final resize's share of them):",
        "",
        "| final resize | model | threads | run ms | kernels ms | resize ms | resize share | largest op types (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top = ", ".join(f"{op} {ms:.1f}" for op, ms in list(r["ops"].items())[:4])
        out.append(
            f"| {r['resize']} | {r['model']} | {r['threads']} | {r['run_ms']:.1f} | {r['kernels_ms']:.1f} "
            f"| {r['resize_ms']:.2f} | {100 * r['resize_share']:.1f}% | {top} |"
        )
    return "\n".join(out) + "\n"


def memory_rows(names, size) -> list[dict]:
    rows = []
    for name in tqdm(names, desc="peak memory"):
        model = build(name).eval()
        x = torch.randn(1, 3, input_size(name, size), input_size(name, size))
        row = {
            "network": name,
            "label": label(name),
            "params": count_params(model),
            "peak_mb": peak_activation_bytes(model, x) / 2**20,
        }
        chunked = make_memory_efficient(model, chunks=4)
        if any(isinstance(m, ChunkedInvertedResidual) for m in chunked.modules()):  # inverted residual blocks
            row["peak_mb_chunked"] = peak_activation_bytes(chunked, x) / 2**20
        rows.append(row)
    return rows


def train_throughput(model: nn.Module, batch: int, size: int, bf16: bool, repeats: int) -> float:
    """Images per second of training steps (mixed-precision forward, backward, SGD step) on CUDA."""
    device = next(model.parameters()).device
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 21, (batch, size, size), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16):
            loss = nn.functional.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = timings(step, warmup=3, repeats=repeats, sync=torch.cuda.synchronize)
    return batch / (t["median_ms"] / 1000)


def cuda_rows(names, size, warmup, repeats, batch: int = 16) -> list[dict]:
    """fp32 / bf16 latency (batch 1) and training throughput (batch ``batch``, bf16 autocast, SGD step)."""
    rows = []
    device = torch.device("cuda")
    bf16 = torch.cuda.is_bf16_supported()
    for name in tqdm(names, desc="CUDA"):
        torch.manual_seed(0)
        model = build(name).to(device, memory_format=torch.channels_last)
        row = {"network": name, "label": label(name), "device": torch.cuda.get_device_name(device)}
        s = input_size(name, size)
        row["fp32"] = measure_latency(model, s, device, warmup, repeats, channels_last=True)
        if bf16:
            row["bf16"] = measure_latency(model, s, device, warmup, repeats, True, torch.bfloat16)
        row["train_img_s"] = train_throughput(model, batch, s, bf16, max(5, repeats // 2))
        rows.append(row)
        del model
        torch.cuda.empty_cache()
    return rows


def goals(cpu: list[dict], size: int) -> list[str]:
    """The project's CPU goals (docs/benchmark.md#goals), checked against this run's numbers."""
    lines = []
    for threads in sorted({r["threads"] for r in cpu}):
        by = {r["network"]: r for r in cpu if r["threads"] == threads}
        if CANDIDATE in by:
            c = by[CANDIDATE]
            met = "met" if c["floor_ratio"] <= 2.0 else "NOT met"
            lines.append(
                f"{threads} thread(s): candidate {c['best_ms']:.1f} ms ({c['best']}) = {c['floor_ratio']:.2f}x "
                f"its matmul floor ({c['gflop']:.2f} GFLOP at {size}x{size}): goal <= 2.0x {met}"
            )
        if CANDIDATE in by and "smp_deeplabv3_mnv2" in by:
            c, s = by[CANDIDATE], by["smp_deeplabv3_mnv2"]
            speedup, flop_ratio = s["best_ms"] / c["best_ms"], s["gflop"] / c["gflop"]
            met = "met" if speedup >= flop_ratio else "NOT met"
            lines.append(
                f"{threads} thread(s): {speedup:.2f}x faster than SMP DeepLabV3-mobilenet_v2 "
                f"(best backends), MAdds ratio {flop_ratio:.2f}x: goal speedup >= MAdds ratio {met}"
            )
        if CANDIDATE in by and "onnxruntime_int8" in by[CANDIDATE]:
            c = by[CANDIDATE]
            q, f = c["onnxruntime_int8"]["median_ms"], c["onnxruntime"]["median_ms"]
            lines.append(
                f"{threads} thread(s): candidate INT8 {q:.1f} ms, {f / q:.2f}x faster than its float ONNX Runtime "
                f"model ({f:.1f} ms): goal >= 2x {'met' if f / q >= 2 else 'NOT met'}; against its fp32 matmul "
                f"floor {c['floor_ms']:.1f} ms: goal faster {'met' if q < c['floor_ms'] else 'NOT met'}"
            )
            if "smp_deeplabv3_mnv2" in by:
                smp = by["smp_deeplabv3_mnv2"]
                speedup, ratio = smp["best_ms"] / q, smp["gflop"] / c["gflop"]
                lines.append(
                    f"{threads} thread(s): candidate INT8 {speedup:.2f}x faster than SMP DeepLabV3-mobilenet_v2 "
                    f"(its best backend), MAdds ratio {ratio:.2f}x: goal {'met' if speedup >= ratio else 'NOT met'}"
                )
        if CANDIDATE in by and "executorch" in by[CANDIDATE]:
            c = by[CANDIDATE]
            et = ", ".join(
                f"{kind} {c[key]['median_ms']:.1f} ms against ONNX Runtime's {c[ort]['median_ms']:.1f} ms"
                for kind, key, ort in ET_PAIRS
                if key in c and ort in c
            )
            lines.append(f"{threads} thread(s): candidate as an ExecuTorch program (XNNPACK): {et}")
    sizes = {r["network"]: r["int8_mb"] for r in cpu if "int8_mb" in r}
    if CANDIDATE in sizes:
        met = "met" if sizes[CANDIDATE] <= 2.5 else "NOT met"
        lines.append(f"candidate INT8 file {sizes[CANDIDATE]:.2f} MB: goal <= 2.5 MB at width 1.0 {met}")
    return lines


def markdown(cpu, rates, memory, cuda, size, goal_lines) -> str:
    def ms(t):
        return f"{t['median_ms']:.1f} / {t['p90_ms']:.1f}"

    out = [
        f"Latency at {size}x{size}, batch 1, median / p90 ms; floor = FLOPs at the measured fp32 matmul rate "
        f"({', '.join(f'{t} thread(s): {r:.1f} GFLOP/s' for t, r in rates.items())}).",
        "",
        "| network | threads | GFLOP | floor | eager | channels_last | ONNX Runtime | compile | best / floor "
        "| ORT INT8 | ExecuTorch | ExecuTorch INT8 | ONNX MB fp32 / INT8 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in cpu:
        compiled = ms(r["compile"]) if "compile" in r else ""
        name = r["label"] + (f" ({r['size']}x{r['size']})" if r["size"] != size else "")
        mb = f"{r['onnx_mb']:.2f}" + (f" / {r['int8_mb']:.2f}" if "int8_mb" in r else "")
        out.append(
            f"| {name} | {r['threads']} | {r['gflop']:.2f} | {r['floor_ms']:.1f} | {ms(r['eager'])} "
            f"| {ms(r['channels_last'])} | {ms(r['onnxruntime'])} | {compiled} | {r['floor_ratio']:.2f}x "
            f"| {ms(r['onnxruntime_int8']) if 'onnxruntime_int8' in r else ''} "
            f"| {ms(r['executorch']) if 'executorch' in r else ''} "
            f"| {ms(r['executorch_int8']) if 'executorch_int8' in r else ''} "
            f"| {mb} |"
        )
    out += ["", "| network | Params | peak activations (MB) | memory-efficient blocks (MB) |", "|---|---|---|---|"]
    for m in memory:
        chunked = f"{m['peak_mb_chunked']:.1f}" if "peak_mb_chunked" in m else ""
        out.append(f"| {m['label']} | {m['params'] / 1e6:.2f}M | {m['peak_mb']:.1f} | {chunked} |")
    if cuda:
        out += ["", "| network | device | fp32 ms | bf16 ms | train img/s (b16, bf16) |", "|---|---|---|---|---|"]
        for r in cuda:
            bf = ms(r["bf16"]) if "bf16" in r else ""
            out.append(f"| {r['label']} | {r['device']} | {ms(r['fp32'])} | {bf} | {r['train_img_s']:.1f} |")
    out += ["", *(f"- {g}" for g in goal_lines)]
    return "\n".join(out) + "\n"


CSV_FIELDS = (
    "network threads gflop floor_ms eager_ms channels_last_ms onnxruntime_ms compile_ms best best_ms floor_ratio "
    "onnxruntime_int8_ms executorch_ms executorch_int8_ms onnx_mb int8_mb executorch_mb executorch_int8_mb"
).split()


def csv_table(cpu: list[dict]) -> str:
    """benchmark.csv: one line per network and thread count."""
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in cpu:
        times = [r[k]["median_ms"] for k in ("eager", "channels_last", "onnxruntime")]
        extra = [r.get("compile", {}).get("median_ms", ""), r["best"], r["best_ms"], r["floor_ratio"]]
        int8 = [r.get(k, {}).get("median_ms", "") for k in ("onnxruntime_int8", "executorch", "executorch_int8")]
        sizes = [r["onnx_mb"], *(r.get(k, "") for k in ("int8_mb", "executorch_mb", "executorch_int8_mb"))]
        writer.writerow([r["network"], r["threads"], r["gflop"], r["floor_ms"], *times, *extra, *int8, *sizes])
    return table.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    choices = [*NETWORKS, *HEAD_NETWORKS, *REFERENCES]
    slow = {n for n, row in TABLE7_NETWORKS.items() if (row.params_m or 0) > 50}  # ResNet-101: ~10 min on 2 cores
    default = [n for n in choices if n not in slow]
    parser.add_argument(
        "--models",
        nargs="+",
        default=default,
        help=f"networks, or 'all' (default: all but ResNet-101, which alone takes ~10 min on 2 "
        f"cores); 'candidate' = {CANDIDATE}; 'heads' = every head on MobileNetV2 and V3 at "
        "OS16",
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", nargs="*", default=[CANDIDATE], help="networks also timed with torch.compile")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA measurements")
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 rows (ONNX Runtime and ExecuTorch)")
    parser.add_argument(
        "--executorch",
        nargs="*",
        default=[CANDIDATE],
        help="networks also timed as ExecuTorch programs, XNNPACK, float and INT8 (none: --executorch)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="ONNX Runtime's profile of the candidate: the final resize's share"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    groups = {"candidate": [CANDIDATE], "heads": OURS_BY_HEAD}
    names = choices if "all" in args.models else [n for m in args.models for n in groups.get(m, [m])]
    names = list(dict.fromkeys(names))
    unknown = sorted(set(names) - set(choices))
    if unknown:
        parser.error(f"unknown network(s) {unknown}; choose from {choices}")
    compile_names = {CANDIDATE if m == "candidate" else m for m in args.compile}
    out = args.out or Path("outputs/benchmark") / dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)

    pte_names = frozenset(CANDIDATE if m == "candidate" else m for m in args.executorch)
    cpu, rates = cpu_rows(
        names, args.threads, args.size, args.warmup, args.repeats, compile_names, out, not args.no_int8, pte_names
    )
    profile = profile_rows(args.size, args.threads, out, args.warmup, args.repeats) if args.profile else []
    memory = memory_rows(names, args.size)
    cuda = (
        [] if args.no_cuda or not torch.cuda.is_available() else cuda_rows(names, args.size, args.warmup, args.repeats)
    )
    goal_lines = goals(cpu, args.size)
    result = {
        "size": args.size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "matmul_gflops": rates,
        "cpu": cpu,
        "memory": memory,
        "cuda": cuda,
        "goals": goal_lines,
        "profile": profile,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__},
    }
    write_json(out / "benchmark.json", result)
    write_text(out / "benchmark.csv", csv_table(cpu))
    text = markdown(cpu, rates, memory, cuda, args.size, goal_lines)
    if profile:
        text += "\n" + profile_markdown(profile, args.size)
    write_text(out / "benchmark.md", text)
    print(text)
    print(f"wrote {out}/benchmark.json, benchmark.csv, benchmark.md")
    return 0
