"""Forward-pass latency of a model: batch 1, median over repeats after a warm-up, synchronised on CUDA."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def measure_latency(
    model: nn.Module, size: int = 513, device: str | torch.device = "cpu", warmup: int = 3, repeats: int = 10
) -> dict:
    """Time ``model`` on one ``size`` x ``size`` image (eval mode, no autograd) and return the numbers as a dict
    (``median_ms``, ``min_ms``, ``repeats``, ``size``, ``device``, ``torch``)."""
    device = torch.device(device)
    model = model.eval().to(device)
    x = torch.randn(1, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            sync()
            times.append(1000 * (time.perf_counter() - start))
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "repeats": repeats,
        "size": size,
        "device": device_name(device),
        "torch": torch.__version__,
    }
