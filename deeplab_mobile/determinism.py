"""Deterministic mode (``trainer.deterministic=true``): the same weights, bit for bit, on any x86-64 CPU with AVX2,
whatever thread count or instruction-set cap the user's environment sets, whichever vendor made the CPU.

On one machine a CPU training is already repeatable; what moves its digits elsewhere is what the libraries choose
by the machine, and one instruction that is not the same on every CPU (results/reproducibility.md):

- ATen's vector kernels (BatchNorm, activations, the loss, the optimizer) are compiled for several vector widths
  and dispatch by the CPU: ``ATEN_CPU_CAPABILITY`` fixes the width.
- oneDNN's convolutions are generated for the best instruction set the CPU has (AVX-512 on Zen 4 and Xeon, AMX on
  newer Xeons): ``ONEDNN_MAX_CPU_ISA`` caps it.
- MKL's BLAS takes a vendor-dependent code path: ``MKL_CBWR`` fixes it.
- Every parallel kernel splits its work by the thread count, and sums in that order: the count is fixed.
- ``torch.sqrt`` on float32 CPU tensors runs MKL's vector math (VML), which starts from RSQRTPS, an instruction
  whose result the x86 architecture leaves approximate (relative error up to 1.5 * 2^-12) and which Intel's and
  AMD's CPUs compute differently; one refinement step later the last bit still depends on it, for about one result
  in twelve. No setting of MKL avoids it (every ``MKL_CBWR`` branch rounds so), so deterministic mode replaces the
  CPU kernel of ``aten::sqrt`` with a correctly rounded square root made of ATen's own IEEE operations
  (``exact_sqrt``): Adam's and AdamW's denominators are where training meets it.

Each is read once, when the library first runs, so they must be in the environment before torch starts: the
training app starts the run in a child process with them set (``relaunch``), and ``apply`` refuses a process
that does not have them. On CUDA, ``torch.use_deterministic_algorithms`` with cuBLAS's fixed workspace; an op
without a deterministic CUDA kernel (bilinear upsampling's backward) is named in the log and the run's
environment record, instead of ending the run.

Plain Python and torch.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from .errors import InvalidValue, ProjectError, is_number

log = logging.getLogger(__name__)

# The instruction-set pins: AVX2 is the widest that every x86-64 machine this project runs on has
ISA_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE"}
CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's deterministic workspace (CUDA's reproducibility notes)
RELAUNCHED = "DEEPLAB_MOBILE_DETERMINISTIC"  # set in the child a relaunch starts


class DeterminismError(ProjectError, RuntimeError):
    """Deterministic mode cannot hold in this process; the message says what to set."""


def pinned_environment(threads: int) -> dict[str, str]:
    """The variables deterministic mode sets before torch starts."""
    if not is_number(threads, integer=True) or threads < 1:
        raise InvalidValue(f"deterministic threads must be a positive integer, got {threads!r}")
    return {
        **ISA_PINS,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE,
        RELAUNCHED: "1",
    }


# Variables of these libraries other than the pins change their kernels too (ONEDNN_DEFAULT_FPMATH_MODE=BF16,
# DNNL_MAX_CPU_ISA, KMP_DETERMINISTIC_REDUCTION ...): deterministic mode runs without them
FOREIGN = ("OMP_", "KMP_", "GOMP_", "MKL_", "ONEDNN_", "DNNL_", "ATEN_", "OPENBLAS_")


def unpinned(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, tuple[str | None, str | None]]:
    """What ``environ`` sets otherwise than deterministic mode: name -> (its value, the pinned one; ``None`` for a
    variable that must not be set)."""
    environ = os.environ if environ is None else environ
    pins = pinned_environment(threads)
    wrong: dict[str, tuple[str | None, str | None]] = {
        k: (environ.get(k), v) for k, v in pins.items() if environ.get(k) != v
    }
    wrong.update({k: (v, None) for k, v in environ.items() if k.startswith(FOREIGN) and k not in pins})
    return wrong


def child_environment(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` with the pins set and the other variables of ``FOREIGN`` left out."""
    environ = os.environ if environ is None else environ
    kept = {k: v for k, v in environ.items() if not k.startswith(FOREIGN)}
    return {**kept, **pinned_environment(threads)}


def nondeterministic_ops(model: nn.Module, device: torch.device, size: int = 33) -> list[str]:
    """The ops of one training step of (a copy of) ``model`` on ``device`` that have no deterministic kernel,
    as ``torch.use_deterministic_algorithms(True, warn_only=True)`` names them. The random streams are left as
    they were."""
    probe = copy.deepcopy(model).to(device).train()
    x = torch.zeros(2, 3, size, size, device=device)
    with (
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        probe(x).float().mean().backward()
    found = set()
    for w in caught:
        match = re.match(r"(\S+) does not have a deterministic implementation", str(w.message))
        if match:
            found.add(match.group(1))
    return sorted(found)


def apply(threads: int, device: torch.device) -> dict:
    """Set what deterministic mode sets inside the process (threads, deterministic algorithms); refuse a process
    started without the pinned environment. Returns the record kept in ``environment.json``."""
    wrong = unpinned(threads)
    capability = torch.backends.cpu.get_cpu_capability()
    if wrong or capability != ISA_PINS["ATEN_CPU_CAPABILITY"].upper():
        given = ", ".join(
            f"{k}={v!r} (needs {'it unset' if pin is None else repr(pin)})" for k, (v, pin) in wrong.items()
        )
        exports = " ".join(f"{k}={v}" for k, v in pinned_environment(threads).items())
        raise DeterminismError(
            f"trainer.deterministic=true needs its variables set before torch starts: {given or f'ATen {capability}'}."
            f" Train through scripts/train.py (it starts the run with them), or run with: env {exports} ..."
        )
    torch.set_num_threads(threads)
    use_exact_sqrt()
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return {
        "threads": threads,
        "pinned_env": {k: v for k, v in pinned_environment(threads).items() if k != RELAUNCHED},
        "aten_capability": capability,
        "use_deterministic_algorithms": True,
        "exact_sqrt": True,
        "nondeterministic_ops": [],
    }


def exact_sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of a float32 tensor, from operations whose results IEEE 754 fixes (so the
    same on every CPU, at every vector width): ``x * rsqrt(x)`` in float64 (ATen's ``rsqrt`` is a true square root
    and a division, not an estimate) is within one unit in the last place of the float32 result; one exact
    correction then moves it to the nearest float. The midpoints between neighbouring floats have at most 25
    significant bits, so their squares are exact in float64 and ``x`` is compared with them exactly; a float32 square
    root never lies on a midpoint, so there is no tie to break. Other dtypes keep ATen's own kernel (MKL's VML is
    used for float32 only)."""
    if x.dtype != torch.float32:
        return torch.pow(x, 0.5)  # ATen's sqrt kernel for these dtypes, reached without aten::sqrt
    xd = x.double()
    c = (xd * torch.rsqrt(xd)).float()
    up, down = torch.nextafter(c, c.new_tensor(math.inf)), torch.nextafter(c, c.new_tensor(0.0))
    cd = c.double()
    above, below = (cd + up.double()) * 0.5, (cd + down.double()) * 0.5
    c = torch.where(xd > above * above, up, torch.where(xd < below * below, down, c))
    # x * rsqrt(x) is NaN at 0 and +inf, whose square roots are themselves (negatives and NaN stay NaN)
    return torch.where((x == 0) | (x == math.inf), x, c)


_EXACT_SQRT: torch.library.Library | None = None


def use_exact_sqrt() -> None:
    """Make every float32 ``aten::sqrt`` on CPU in this process ``exact_sqrt`` (the functional, in-place and out
    forms), whoever calls it: the optimizer, a loss, a library. Deterministic mode's child process calls it once;
    the kernels stay for the process's life."""
    global _EXACT_SQRT
    if _EXACT_SQRT is not None:
        return

    def sqrt_(x: torch.Tensor) -> torch.Tensor:
        return x.copy_(exact_sqrt(x))

    def sqrt_out(x: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
        result = exact_sqrt(x)
        out.resize_(result.shape)
        return out.copy_(result)

    library = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():  # "Overriding a previously registered kernel": that is the point
        warnings.simplefilter("ignore")
        library.impl("sqrt", exact_sqrt, "CPU")
        library.impl("sqrt_", sqrt_, "CPU")
        library.impl("sqrt.out", sqrt_out, "CPU")
    _EXACT_SQRT = library


def report_cuda_ops(model: nn.Module, device: torch.device) -> list[str]:
    """``nondeterministic_ops``, each named in a warning: the run goes on with them."""
    ops = nondeterministic_ops(model, device)
    if ops:
        log.warning(
            "trainer.deterministic=true on CUDA: %s %s no deterministic CUDA kernel; the run goes on, and its "
            "weights may differ from run to run in the last bits (environment.json lists them)",
            ", ".join(ops),
            "has" if len(ops) == 1 else "have",
        )
    return ops
