"""OpenVINO export for Intel CPUs (and GPUs/NPUs): IR files (``model.xml`` and its weights, ``model.bin``), float and
INT8, and their runner on OpenVINO's CPU plugin.

The IR is converted from the ONNX file the ONNX export writes (``onnx.export_onnx``: the same module, BatchNorm
folded, the final resize as two matrix products), or from an INT8 ONNX file (QDQ) that the quantize app made:
OpenVINO reads the quantize/dequantize pairs as INT8 (its low-precision transformations), so INT8 has one
quantization stack, ONNX Runtime's, and its calibration. Weights are kept in float32 (no fp16 compression), so the
float IR is the float model.

Precision: on CPUs with bf16 arithmetic (AVX-512 BF16, AMX) OpenVINO runs float models in bf16 unless told
otherwise; the runner asks for ``f32`` by default, and ``precision="bf16"`` asks for bf16 (a separate, labelled
result). ``executed_precisions`` says what each layer type ran in.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InvalidValue, MissingFile
from ..extras import require
from .exported import ExportedSegmentor, convert_error
from .onnx import export_onnx

XML_SUFFIX = ".xml"
FORMAT = "OpenVINO (IR)"
PRECISIONS = ("f32", "bf16")


_SS_DISABLE = 2  # Linux's flag; only it is carried over when the saved stack is put back


class _SignalStack(ctypes.Structure):  # POSIX stack_t
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextmanager
def kept_signal_stack():
    """Run an OpenVINO call with the thread's alternate signal stack restored afterwards. OpenVINO 2026.4's CPU
    plugin installs an alternate signal stack on the thread that calls it and frees it while it stays installed;
    the next signal handled on that thread (a SIGTERM, a Ctrl-C) is then delivered onto freed memory and the
    process dies of a segmentation fault instead of stopping cleanly (seen after its INT8 and bf16 runs; the
    project's SIGTERM tests found it). Written here because no library offers ``sigaltstack``; a no-op where libc
    has none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sigaltstack = libc.sigaltstack
    except (OSError, AttributeError):
        yield
        return
    saved = _SignalStack()
    if sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        saved.ss_flags &= _SS_DISABLE  # a stack that was in use is not reinstalled "on stack"
        sigaltstack(ctypes.byref(saved), None)


def onnx_to_openvino(onnx_path: str | Path, path: str | Path) -> Path:
    """Convert an ONNX file (float, or INT8 QDQ) to IR at ``path`` (``.xml``, with its ``.bin``), both written
    atomically: each to a temporary name, the weights moved into place first, the ``.xml`` that names the model
    last."""
    require("OpenVINO export", "openvino")
    import openvino as ov

    path = Path(path)
    if path.suffix != XML_SUFFIX:
        raise InvalidValue(f"{path}: an OpenVINO IR file ends in {XML_SUFFIX}")
    try:
        with kept_signal_stack():
            model = ov.convert_model(str(onnx_path))
    except (RuntimeError, ValueError, TypeError) as exc:  # OpenVINO's OpConversionFailure is a RuntimeError
        raise convert_error(exc, FORMAT) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=XML_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        with kept_signal_stack():
            ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
    return path


def export_openvino(model: nn.Module, path: str | Path, *args, **kwargs) -> Path:
    """Write ``model`` as OpenVINO IR: the ONNX export's graph (``export_onnx`` with the same arguments after
    ``path``: size, dynamic, labels, fold_bn, opset, upsample, resize), written to a temporary file, converted by
    ``onnx_to_openvino``."""
    require("OpenVINO export", "openvino")  # before the ONNX export
    with tempfile.TemporaryDirectory(prefix="openvino-") as scratch:
        onnx_path = Path(scratch) / "model.onnx"
        export_onnx(model, onnx_path, *args, **kwargs)
        return onnx_to_openvino(onnx_path, path)


class OpenVinoSegmentor(ExportedSegmentor):
    """An IR model run by OpenVINO's CPU plugin (latency mode), callable like the PyTorch model on a normalised NCHW
    tensor, so the evaluator scores it on the same code path as the model and its other exports.

    Args:
        path: the ``.xml`` file (its ``.bin`` beside it).
        geometry: the exported model's; ``deeplab`` resizes with ``align_corners=True``.
        threads: inference threads (``None``: the plugin's default).
        output_stride: the stride of a feature-resolution model; ``None`` for one that outputs input-size logits.
        precision: ``f32`` (the default: float models run as exported) or ``bf16`` (the plugin's default on CPUs
            with bf16 arithmetic).
    """

    def __init__(
        self,
        path: str | Path,
        geometry: str = "torch",
        threads: int | None = None,
        output_stride: int | None = None,
        precision: str = "f32",
    ) -> None:
        require("Running an OpenVINO model", "openvino")
        import openvino as ov

        path = Path(path)
        if precision not in PRECISIONS:
            raise InvalidValue(f"precision={precision!r}: choose one of {list(PRECISIONS)}")
        if not path.is_file():
            raise MissingFile(f"{path}: OpenVINO IR not found")
        if not path.with_suffix(".bin").is_file():
            raise MissingFile(f"{path.with_suffix('.bin')}: the IR's weights are not beside {path.name}")
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            with kept_signal_stack():
                compiled = ov.Core().compile_model(str(path), "CPU", config)
        except RuntimeError as exc:
            raise InvalidValue(f"{path}: not an IR this runtime can load ({str(exc).splitlines()[0]})") from None
        dims = compiled.input(0).get_partial_shape()
        sides = list(dims)[2:]
        static = tuple(d.get_length() for d in sides) if all(d.is_static for d in sides) else None
        labels = compiled.output(0).get_element_type().is_integral()
        super().__init__(path, geometry, output_stride, static, labels, other_sizes="export it at that size")
        self.compiled, self.precision = compiled, precision
        with kept_signal_stack():
            self.request = compiled.create_infer_request()

    def infer(self, x: np.ndarray) -> np.ndarray:
        """One inference on a float32 NCHW array: the model's first output."""
        with kept_signal_stack():
            out = self.request.infer({0: x})
        return out[self.compiled.output(0)]

    def _execute(self, x: torch.Tensor) -> torch.Tensor:
        out = self.infer(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        return torch.from_numpy(np.array(out))

    def executed_precisions(self) -> dict[str, dict[str, int]]:
        return executed_precisions(self.compiled)


def executed_precisions(compiled) -> dict[str, dict[str, int]]:
    """What the compiled model runs each layer type in: ``{layer type: {precision: count}}`` from the plugin's
    runtime graph (constants, inputs and outputs left out)."""
    counts: dict[str, Counter] = {}
    with kept_signal_stack():
        ops = compiled.get_runtime_model().get_ordered_ops()
    for op in ops:
        info = op.get_rt_info()
        layer, precision = str(info["layerType"].astype(str)), str(info["runtimePrecision"].astype(str))
        if layer not in ("Const", "Input", "Output"):
            counts.setdefault(layer, Counter())[precision] += 1
    return {layer: dict(c) for layer, c in sorted(counts.items())}
