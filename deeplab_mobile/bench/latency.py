"""Latency measurement: batch-1 forward passes timed after a warm-up (median, p90), synchronised on CUDA; the
machine's fp32 matmul rate, the floor a model's FLOPs cannot beat; ONNX Runtime sessions, ExecuTorch programs,
LiteRT models and OpenVINO IR timed the same way."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import InvalidValue
from ..extras import require
from ..stats import summarize


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def timings(fn: Callable[[], object], warmup: int = 3, repeats: int = 20, sync: Callable[[], None] | None = None):
    """Call ``fn`` ``warmup`` times, then time ``repeats`` calls; milliseconds (median, p90, min)."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(1000 * (time.perf_counter() - start))
    return summarize(times)


def measure_rounds(
    rows: list[dict],
    rounds: int,
    warmup: int = 3,
    repeats: int = 20,
    runner: Callable[[dict], Callable[[], object]] | None = None,
) -> None:
    """Time every row ``rounds`` times, the rows taken in turn within each round (so that a slow spell of the
    machine falls on all of them, not on one): ``ms_rounds``, each round's median, and ``ms``, their median. A row
    is run by ``row["runner"]`` (dropped from the row afterwards), or by ``runner(row)``, made afresh each round."""
    for row in rows:
        row["ms_rounds"] = []
    for _ in tqdm(range(rounds), desc="rounds"):
        for row in rows:
            run = runner(row) if runner is not None else row["runner"]
            row["ms_rounds"].append(timings(run, warmup, repeats)["median_ms"])
    for row in rows:
        row["ms"] = statistics.median(row["ms_rounds"])
        row.pop("runner", None)


def measure_latency(
    model: nn.Module,
    size: int | tuple[int, int] = 513,
    device: str | torch.device = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """Time ``model`` (eval mode, no autograd) on one image of ``size``; returns ``timings`` plus ``size``,
    ``device`` and ``torch``."""
    device = torch.device(device)
    h, w = (size, size) if isinstance(size, int) else size
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(device, memory_format=fmt)
    x = torch.randn(1, 3, h, w, device=device).contiguous(memory_format=fmt)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def run():
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            model(x)

    with torch.inference_mode():
        result = timings(run, warmup, repeats, sync)
    return {**result, "size": size, "device": device_name(device), "torch": torch.__version__}


def matmul_gflops(n: int = 1024, repeats: int = 10, device: str | torch.device = "cpu") -> float:
    """fp32 GFLOP/s of an n x n matmul (2 n^3 FLOPs) at the current thread setting: the rate no model beats."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    t = timings(lambda: torch.mm(a, b), warmup=3, repeats=repeats, sync=sync)
    return 2 * n**3 / (t["min_ms"] / 1000) / 1e9


def gemm_gflops(n: int = 1024, threads: int = 1, repeats: int = 5) -> float:
    """fp32 GFLOP/s of an n x n x n matrix product in ONNX Runtime (its MLAS kernels: on AMD's AVX-512 cores they
    come within a few percent of the FMA units' peak, where PyTorch's and NumPy's BLAS take AVX2 paths), best of
    ``repeats``: the rate one core (``threads=1``) demonstrably reaches."""
    require("the GEMM rate", "onnx", "onnxruntime")
    import onnxruntime as ort
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in ("a", "b")]
    output = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal((n, n), dtype=np.float32) for name in ("a", "b")}
    t = timings(lambda: session.run(None, feed), warmup=1, repeats=repeats)
    return 2 * n**3 / (t["min_ms"] / 1000) / 1e9


def _ort_session(onnx_path, threads: int, profile: bool = False, session: dict | None = None):
    """A CPU session with all graph optimisations and ``threads`` intra-op threads; ``session`` changes it: a key
    with a dot is a session config entry (``session.intra_op.allow_spinning``), any other a ``SessionOptions``
    attribute (``enable_mem_pattern``; ``graph_optimization_level`` by the level's name)."""
    require("ONNX Runtime latency", "onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in (session or {}).items():
        if "." in key:
            options.add_session_config_entry(key, str(value))
        elif key == "graph_optimization_level":
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, value)
        else:
            setattr(options, key, value)
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="ort-profile-")) / "profile")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def ort_latency(
    onnx_path,
    size: tuple[int, int],
    threads: int,
    warmup: int = 3,
    repeats: int = 20,
    session: dict | None = None,
    channels: int = 3,
) -> dict:
    """ONNX Runtime (CPU, all graph optimisations, ``threads`` intra-op threads, changed by ``session``: see
    ``_ort_session``) on one random (1, ``channels``, H, W) input."""
    return timings(ort_runner(onnx_path, size, threads, session, channels), warmup, repeats)


def ort_runner(
    onnx_path, size: tuple[int, int], threads: int, session: dict | None = None, channels: int = 3
) -> Callable[[], list]:
    """One run of the model on a fixed random input (the same input for every file and setting)."""
    sess = _ort_session(onnx_path, threads, session=session)
    x = np.random.default_rng(0).standard_normal((1, channels, *size), dtype=np.float32)
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})


def ort_profile(onnx_path, size: tuple[int, int], threads: int, warmup: int = 2, repeats: int = 5) -> dict:
    """Where ONNX Runtime's time goes: ``{"ops": {op type: ms per run}, "total_ms": ms per run, "nodes": {node
    name: [op type, ms per run]}}`` from its profiler (kernel times of the optimised graph, after ``warmup`` runs),
    as in ``ort_latency``'s session."""
    session = _ort_session(onnx_path, threads, profile=True)
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    name = session.get_inputs()[0].name
    for _ in range(warmup):
        session.run(None, {name: x})
    start = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {name: x})
    wall = (time.perf_counter() - start) / repeats * 1000
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    shutil.rmtree(trace.parent, ignore_errors=True)
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    kernels = kernels[-len(kernels) // (warmup + repeats) * repeats :] if kernels else []  # the timed runs only
    ops: dict[str, float] = {}
    nodes: dict[str, list] = {}
    for e in kernels:
        op, ms = e["args"]["op_name"], e["dur"] / 1000 / repeats
        ops[op] = ops.get(op, 0.0) + ms
        node = nodes.setdefault(e["name"].removesuffix("_kernel_time"), [op, 0.0])
        node[1] += ms
    return {"ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])), "total_ms": wall, "nodes": nodes}


def pte_runner(pte_path, size: tuple[int, int], threads: int) -> Callable[[], list]:
    """One run of an ExecuTorch program (``deploy.executorch``; XNNPACK with ``threads`` threads) on a fixed random
    input."""
    require("ExecuTorch latency", "executorch")
    from ..deploy.executorch import execute, load_method

    method = load_method(Path(pte_path), threads)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32))
    return lambda: execute(method, x, threads)


def pte_latency(pte_path, size: tuple[int, int], threads: int, warmup: int = 3, repeats: int = 20) -> dict:
    """An ExecuTorch program (``deploy.executorch``; XNNPACK with ``threads`` threads) on one random image."""
    return timings(pte_runner(pte_path, size, threads), warmup, repeats)


def tflite_runner(path, size: tuple[int, int], threads: int) -> Callable[[], object]:
    """One invoke of a LiteRT model (XNNPACK delegate, ``threads`` threads) on a fixed random input; a model of
    another input size is refused with its size."""
    from ..deploy.litert import load_interpreter

    interpreter = load_interpreter(Path(path), threads)
    inp = interpreter.get_input_details()[0]
    if tuple(int(d) for d in inp["shape"][2:]) != tuple(size):
        raise InvalidValue(f"{path}: a LiteRT model for {tuple(inp['shape'][2:])} inputs, timed at {tuple(size)}")
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)

    def run():
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()

    return run


def tflite_latency(path, size: tuple[int, int], threads: int, warmup: int = 3, repeats: int = 20) -> dict:
    """A LiteRT model (``deploy.litert``; XNNPACK with ``threads`` threads) on one random image."""
    return timings(tflite_runner(path, size, threads), warmup, repeats)


def openvino_runner(path, size: tuple[int, int], threads: int, precision: str = "f32") -> Callable[[], object]:
    """One inference of an OpenVINO IR (CPU plugin, latency mode, ``threads`` threads, ``precision``) on a fixed
    random input."""
    from ..deploy.openvino import OpenVinoSegmentor

    runner = OpenVinoSegmentor(path, threads=threads, precision=precision)
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    return lambda: runner.infer(x)


def openvino_latency(
    path, size: tuple[int, int], threads: int, warmup: int = 3, repeats: int = 20, precision: str = "f32"
) -> dict:
    """An OpenVINO IR (``deploy.openvino``) on one random image."""
    return timings(openvino_runner(path, size, threads, precision), warmup, repeats)
