"""LiteRT (TensorFlow Lite's successor) export for Android and embedded devices: ``.tflite`` models, float and INT8,
and their runner on LiteRT's interpreter with its default XNNPACK delegate.

The model is the module every export writes (``prepare.prepare_for_export``: BatchNorm folded, the final resize as
two matrix products, constants for a static size), converted by ``litert-torch`` through ``torch.export``. LiteRT's
input and output keep PyTorch's NCHW layout (the converter puts a transpose at each end; inside, the graph is NHWC).

INT8 is the ExecuTorch INT8 path's PT2E quantization (``executorch.quantize_pt2e``: XNNPACK's quantizer, int8
weights per output channel, int8 activations, each ReLU6 quantized with its conv, the ``keep_float`` layers in
float), from the same calibration images. LiteRT needs the converted graph unfolded (``fold_quantize=False``: the
weights stay float with a quantize/dequantize pair, which the converter turns into int8 tensors) and the
converter's static QDQ mode, which its config sets from any static PT2E quantizer.

Sizes are static: the converter writes a fixed input shape (a file for another size is another export).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InvalidValue, MissingFile
from ..extras import require
from ..files import atomic_path
from .exported import ExportedSegmentor, convert_error
from .prepare import prepare_for_export

TFLITE_SUFFIX = ".tflite"
FORMAT = "LiteRT (.tflite)"


def convert_tflite(net: nn.Module, path: str | Path, size: tuple[int, int], quantized: bool = False) -> Path:
    """Convert ``net`` (a module, or a PT2E graph converted with ``fold_quantize=False`` when ``quantized``) at
    ``size`` (batch 1) and write it to ``path`` atomically."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its per-pass progress lines: the app logs its own
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the converter's C++ info lines
    require("LiteRT export", "litert_torch")
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig

    example = torch.randn(1, 3, *size)
    config = None
    if quantized:  # any static PT2E quantizer: the converter reads only its mode (static QDQ) from the config
        static = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        config = QuantConfig(pt2e_quantizer=pt2e_quantizer.PT2EQuantizer().set_global(static))
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the converter logs each op it lowers on the root logger, at INFO
    try:
        with torch.no_grad():
            converted = litert_torch.convert(net, (example,), quant_config=config)
    except (NotImplementedError, RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise convert_error(exc, FORMAT) from None
    finally:
        root.setLevel(level)
    path = Path(path)
    with atomic_path(path, suffix=TFLITE_SUFFIX) as tmp:
        converted.export(str(tmp))
    return path


def export_tflite(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] = (513, 513),
    labels: str | None = None,
    fold_bn: bool = True,
    upsample: bool = True,
    calibration: Iterable[np.ndarray] | None = None,
    resize: str = "matmul",
    keep_float: Sequence[str] = (),
) -> Path:
    """Write ``model`` as a LiteRT ``.tflite``: input (1, 3, H, W) float32, normalised; output logits (1, C, H, W),
    labels (1, H, W) with ``labels``, or feature-resolution logits with ``upsample=False``. Float, or INT8 (the
    ExecuTorch INT8 path's PT2E quantization, the ``keep_float`` layers in float) calibrated on ``calibration``
    batches when they are given."""
    from .executorch import quantize_pt2e  # INT8: the same quantization as the ExecuTorch programs

    net = prepare_for_export(model, labels, fold_bn, upsample, resize, size)
    if calibration is not None:
        from torchao.quantization.pt2e import move_exported_model_to_eval

        net = quantize_pt2e(net, calibration, size, False, keep_float=keep_float, fold=False)
        net = move_exported_model_to_eval(net)  # the graph's ops in their eval form (here: none change)
        net.training = False  # the flag .eval() would set, which an exported graph refuses; the converter reads it
    return convert_tflite(net, path, size, quantized=calibration is not None)


def load_interpreter(path: Path, threads: int | None = None):
    """LiteRT's interpreter for ``path`` with its default XNNPACK delegate (``threads`` threads; ``None``: the
    interpreter's default), tensors allocated; a file it cannot read is named."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # its C++ info lines, before the library loads
    require("Running a LiteRT model", "ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path), num_threads=int(threads) if threads else None)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise InvalidValue(f"{path}: not a LiteRT model this runtime can load ({str(exc).splitlines()[0]})") from None
    return interpreter


def delegation(interpreter) -> dict:
    """What the interpreter runs where: the model's op types and counts, and how many of its ops the XNNPACK
    delegate took. The delegate's nodes come after the model's in the node list; the model's nodes that still
    run are those reached from the outputs back through producers that are not a delegate's (a delegate
    produces its partition's outputs)."""
    ops = interpreter._get_ops_details()  # the interpreter's only listing of its nodes (private API)
    model_ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer: dict[int, dict] = {}
    for op in ops:  # delegate nodes last: they override the nodes they replaced
        for t in op["outputs"]:
            producer[int(t)] = op
    pending = [int(o["index"]) for o in interpreter.get_output_details()]
    seen, kept = set(), set()
    while pending:
        tensor = pending.pop()
        op = producer.get(tensor)
        if op is None or tensor in seen:
            continue
        seen.add(tensor)
        if op["op_name"] != "DELEGATE":
            kept.add(op["index"])
        pending += [int(t) for t in op["inputs"] if t >= 0]
    return {
        "ops": dict(Counter(op["op_name"] for op in model_ops)),
        "ops_total": len(model_ops),
        "xnnpack_delegated": len(model_ops) - len(kept),
        "not_delegated": dict(Counter(op["op_name"] for op in model_ops if op["index"] in kept)),
    }


class TfliteSegmentor(ExportedSegmentor):
    """A ``.tflite`` model run by LiteRT's interpreter (XNNPACK delegate), callable like the PyTorch model on a
    normalised NCHW tensor, so the evaluator scores it on the same code path as the model and its other exports.

    Args:
        path: the ``.tflite`` file.
        geometry: the exported model's; ``deeplab`` resizes with ``align_corners=True``.
        threads: the interpreter's threads (``None``: its default).
        output_stride: the stride of a feature-resolution model; ``None`` for one that outputs input-size logits.
    """

    def __init__(
        self, path: str | Path, geometry: str = "torch", threads: int | None = None, output_stride: int | None = None
    ) -> None:
        require("Running a LiteRT model", "ai_edge_litert")
        path = Path(path)
        if not path.is_file():
            raise MissingFile(f"{path}: LiteRT model not found")
        interpreter = load_interpreter(path, threads)
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        static = tuple(int(d) for d in inp["shape"][2:])
        labels = np.issubdtype(out["dtype"], np.integer)
        super().__init__(path, geometry, output_stride, static, labels, other_sizes="export it at that size")
        self.interpreter, self.input, self.output = interpreter, inp["index"], out["index"]

    def _execute(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for image in x.detach().float().cpu().numpy():  # batch 1 per invoke, as the file was written
            self.interpreter.set_tensor(self.input, np.ascontiguousarray(image[None]))
            self.interpreter.invoke()
            outs.append(self.interpreter.get_tensor(self.output).copy())
        return torch.from_numpy(np.concatenate(outs))

    def delegation(self) -> dict:
        return delegation(self.interpreter)
