"""``environment.json``: everything a run's numbers depend on besides its config and its data.

The same code, config and data give other weights on another CPU (oneDNN, MKL and ATen's vector kernels each pick
code by the CPU's instruction sets), with another thread count (work split differently, sums taken in another
order), another library version, or an environment variable that caps an instruction set. The record keeps each of
these, so that ``compare_runs`` can say which of them two runs differ in (docs/reproducibility.md).

Plain Python and torch; the apps add the config's hash and the data manifest (``data/manifest.py``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from . import runfolder
from .runfolder import Environment

RECORD = str(runfolder.ENVIRONMENT)

# Environment variables that change which kernels run or how work is split (the record keeps every one that is set)
NUMERICS_PREFIXES = (
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "ONEDNN_",
    "DNNL_",
    "OPENBLAS_",
    "GOTOBLAS_",
    "BLIS_",
    "ATEN_",
    "CUBLAS_",
    "CUBLASLT_",
    "CUDNN_",
    "NVIDIA_TF32_",
    "TORCH_",
    "PYTORCH_",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "PYTHONHASHSEED",
    "DEEPLAB_MOBILE_",
)
NUMERICS_SKIP = ("TORCH_HOME", "TORCH_EXTENSIONS_DIR")  # paths, not numerics

# CPU flags (as Linux names them) of the instruction sets whose kernels oneDNN, MKL or ATen may choose
ISA_FLAGS = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx512.*|avx_vnni.*|avx_ifma|avx_ne_convert|amx.*)$")


def numerics_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {k: v for k, v in sorted(environ.items()) if k.startswith(NUMERICS_PREFIXES) and k not in NUMERICS_SKIP}


def cpu_caches(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> dict[str, str]:
    """Core 0's caches (``L1d``, ``L2``, ... -> size), as Linux reports them: oneDNN sizes its blocks by them, and
    a virtual machine may report other sizes for the same CPU model."""
    caches = {}
    for index in sorted(root.glob("index*")):
        try:
            level, kind, size = ((index / n).read_text().strip() for n in ("level", "type", "size"))
        except OSError:
            continue
        caches[f"L{level}{ {'Data': 'd', 'Instruction': 'i'}.get(kind, '') }"] = size
    return caches


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """Vendor, model, microcode and numerics ISA flags (from ``/proc/cpuinfo`` on Linux), whether it runs under a
    hypervisor, its caches, cores, and the vector width ATen dispatches to."""
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "vendor": None,
        "model": platform.processor() or None,
        "family_model_stepping": None,
        "microcode": None,
        "hypervisor": None,
        "isa": [],
        "caches": cpu_caches(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return info
    first = cpuinfo.split("\n\n")[0]
    fields = {}
    for line in first.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    info["vendor"] = fields.get("vendor_id") or fields.get("CPU implementer")
    info["model"] = fields.get("model name") or info["model"]
    if "cpu family" in fields:
        info["family_model_stepping"] = f"{fields['cpu family']}/{fields.get('model')}/{fields.get('stepping')}"
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    info["microcode"] = fields.get("microcode")
    info["hypervisor"] = "hypervisor" in flags if flags else None
    info["isa"] = sorted(f for f in flags if ISA_FLAGS.match(f))
    return info


def _version_line(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1).strip() if match else None


def torch_build() -> dict[str, Any]:
    """torch's build: oneDNN, MKL and OpenMP versions, the BLAS, CUDA/cuDNN (and the GPU, where there is one)."""
    shown = torch.__config__.show()
    build = {
        "torch": torch.__version__,
        "git": getattr(torch.version, "git_version", None),
        "onednn": _version_line(shown, r"MKL-DNN (v[\d.]+)"),
        "mkl": _version_line(shown, r"Math Kernel Library Version ([^\n]+?) for"),
        "openmp": _version_line(shown, r"OpenMP (\d+)"),
        "blas": _version_line(shown, r"BLAS_INFO=(\w+)"),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": [],
    }
    if torch.cuda.is_available():
        build["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        build["cuda_matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
        build["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        build["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        build["cudnn_deterministic"] = torch.backends.cudnn.deterministic
    return build


def imported_libraries(modules: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The installed distribution and version of every top-level module imported so far (core and extras alike)."""
    modules = sys.modules if modules is None else modules
    owners = importlib.metadata.packages_distributions()
    versions = {}
    for name in sorted({m.split(".")[0] for m in modules}):
        for dist in owners.get(name, ()):
            if dist in versions:
                continue
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return dict(sorted(versions.items(), key=lambda kv: kv[0].lower()))


def _git(args: list[str], cwd: Path) -> bytes | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def code_state(where: Path | None = None) -> dict[str, Any]:
    """The git commit of the package's checkout, whether its tree differs from it, and a hash of that difference
    (tracked changes and untracked files); ``commit: null`` for an installed copy outside git."""
    where = where or Path(__file__).resolve().parent
    from . import __version__

    top = _git(["rev-parse", "--show-toplevel"], where)
    state: dict[str, Any] = {"package_version": __version__, "commit": None, "dirty": None, "diff_sha256": None}
    if top is None:
        state["note"] = f"{where} is not in a git checkout"
        return state
    root = Path(top.decode().strip())
    commit = _git(["rev-parse", "HEAD"], root)
    state["commit"] = commit.decode().strip() if commit else None
    diff = _git(["diff", "HEAD", "--binary"], root) or b""
    untracked = (_git(["ls-files", "--others", "--exclude-standard", "-z"], root) or b"").split(b"\0")
    digest = hashlib.sha256(diff)
    for name in sorted(n for n in untracked if n):
        digest.update(b"\0untracked\0" + name)
        try:
            digest.update(hashlib.sha256((root / name.decode()).read_bytes()).digest())
        except OSError:
            pass
    state["dirty"] = bool(diff) or any(untracked)
    state["diff_sha256"] = digest.hexdigest() if state["dirty"] else None
    return state


def config_sha256(config: Mapping[str, Any]) -> str:
    """A hash of a (resolved, plain) config: the same for the same settings whatever the order of their keys."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def environment_record(
    config: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    determinism: Mapping[str, Any] | None = None,
) -> Environment:
    """The record ``environment.json`` holds (``runfolder.Environment``); ``config``: the run's resolved config (its
    hash is recorded), ``data``: ``data.manifest.data_manifest``'s record, ``determinism``: what deterministic mode
    set."""
    return Environment(
        code=code_state(),
        python=platform.python_version(),
        platform=platform.platform(),
        libraries=imported_libraries(),
        torch_build=torch_build(),
        cpu=cpu_info(),
        threads={"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        numerics_env=numerics_env(),
        deterministic=dict(determinism) if determinism else None,
        config_sha256=config_sha256(config) if config is not None else None,
        data=dict(data) if data is not None else None,
    )


def write_environment(folder: str | Path, **kwargs) -> Path:
    """Write ``folder/environment.json`` atomically (``environment_record``'s arguments)."""
    return runfolder.write_environment(folder, environment_record(**kwargs))
