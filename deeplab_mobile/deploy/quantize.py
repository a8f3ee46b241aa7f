"""Post-training INT8 quantization of an exported model with ONNX Runtime's static quantizer (``quantize_static``).

The float model is this framework's export (``export_onnx``: BatchNorm already folded into the convolutions,
input ``image``, output ``logits``). ONNX Runtime inserts QuantizeLinear/DequantizeLinear pairs (the QDQ format,
which its CPU provider fuses into integer kernels): weights int8 per output channel (each depthwise filter its own
scale: MobileNet's depthwise filters differ in range by orders of magnitude, and one scale per tensor is what makes
naive PTQ of MobileNetV2 lose ~10 mIoU points), activations uint8 per tensor with ranges from calibration images
(MinMax, a percentile of the histogram, or the entropy criterion). ReLU6 folds into the quantized range of its
conv's output (a [0, 6] clip that uint8 represents exactly from 0).

Written with the library's quantizer rather than our own: ``quantize_static`` owns the calibration, the QDQ
placement rules and the kernels they map to; this module supplies the images, checks the input model and writes
the result atomically.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import InvalidValue
from ..extras import require
from ..files import atomic_path

METHODS = ("minmax", "percentile", "entropy")
KEEP_FLOAT = ("first", "logits")
WEIGHT_TYPES = ("int8", "uint8")  # with uint8 activations: ONNX Runtime's u8s8 and u8u8 kernels


class QuantizationError(InvalidValue):
    """A model or setting the quantizer cannot work with; the message names the file or the key."""


def check_float_model(path: str | Path) -> dict:
    """``{"input": name, "output": name, "static": (H, W) | None}`` of one of this framework's float logits exports;
    anything else is refused with the reason."""
    require("Reading an ONNX export", "onnx")
    import onnx

    path = Path(path)
    if not path.is_file():
        raise QuantizationError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others for a damaged file
        raise QuantizationError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != ["image"] or outputs != ["logits"]:
        raise QuantizationError(
            f"{path}: not a deeplab-mobile logits export (inputs {inputs}, outputs {outputs}; expected ['image'] -> "
            "['logits']): export it with scripts/export.py (labels=null)"
        )
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise QuantizationError(f"{path}: already quantized")
    dims = model.graph.input[0].type.tensor_type.shape.dim[2:]
    static = tuple(d.dim_value for d in dims) if all(d.HasField("dim_value") for d in dims) else None
    return {"input": "image", "output": "logits", "static": static}


def float_nodes(path: str | Path, groups: Sequence[str]) -> list[str]:
    """The nodes of the ``groups`` of ``KEEP_FLOAT``: ``first``, the conv that reads the graph input; ``logits``,
    the nodes from the graph output back to (and including) the last conv, the classifier: the resize, through
    every computed input (a matmul resize reads its interpolation matrices as its first inputs), but not into
    what a ``Shape`` node reads (only its size)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = []
    if "first" in groups:
        names += [n.name for n in graph.node if n.op_type == "Conv" and n.input[0] == graph.input[0].name]
    if "logits" in groups:
        producer = {o: n for n in graph.node for o in n.output}
        frontier = [graph.output[0].name]
        while frontier:
            node = producer.get(frontier.pop())
            if node is None or node.name in names:
                continue
            names.append(node.name)
            if node.op_type not in ("Conv", "Shape"):
                frontier += [i for i in node.input if i in producer]
    return names


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over float32 NCHW batches."""

    def __init__(self, batches: Iterable[np.ndarray], name: str) -> None:
        self._it: Iterator[np.ndarray] = iter(batches)
        self.name = name
        self.count = 0

    def get_next(self) -> dict | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        self.count += 1
        return {self.name: np.ascontiguousarray(batch, dtype=np.float32)}


def quantize_model(
    float_path: str | Path,
    out_path: str | Path,
    calibration: Iterable[np.ndarray],
    method: str = "minmax",
    per_channel: bool = True,
    percentile: float = 99.999,
    keep_float: Sequence[str] = KEEP_FLOAT,
    weight_type: str = "int8",
    reduce_range: bool = False,
) -> Path:
    """Quantize ``float_path`` to ``out_path`` (QDQ, int8 weights per channel, uint8 activations) with the
    activation ranges of the ``calibration`` batches (normalised float32 NCHW, as the model takes them).
    ``keep_float`` names the layers left in float: ``first``, the first conv (its input, the image, would be
    rounded to 8 bits a second time), and ``logits``, the classifier conv and the resize to the input size (21
    logits per pixel in 8 bits round near-ties the other way); both are a small share of the MAdds.
    ``weight_type``: int8 weights (ONNX Runtime's u8s8 kernels) or uint8 (u8u8; zero point 128: per-channel weights
    are symmetric either way). ``reduce_range``: 7-bit
    weights, for x86 CPUs without VNNI, whose u8s8 multiply-adds (``vpmaddubsw``) can saturate with 8 bits.

    Written atomically: the file appears complete or not at all.
    """
    require("INT8 quantization", "onnx", "onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise QuantizationError(f"method={method!r} is not supported; choose one of {METHODS}")
    if weight_type not in WEIGHT_TYPES:
        raise QuantizationError(f"weight_type={weight_type!r} is not supported; choose one of {WEIGHT_TYPES}")
    info = check_float_model(float_path)
    out_path = Path(out_path)
    reader = _Reader(calibration, info["input"])
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    extra = {"CalibPercentile": percentile} if method == "percentile" else {}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out_path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)  # graph optimisations, shapes
        unknown = sorted(set(keep_float) - set(KEEP_FLOAT))
        if unknown:
            raise QuantizationError(f"keep_float: unknown layer group(s) {unknown}; choose from {KEEP_FLOAT}")
        exclude = float_nodes(pre, keep_float)
        result = Path(tmp) / "int8.onnx"
        try:
            quantize_static(
                str(pre),
                str(result),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8 if weight_type == "int8" else QuantType.QUInt8,
                reduce_range=reduce_range,
                calibrate_method=calibrate,
                extra_options={**extra, "ActivationSymmetric": False, "WeightSymmetric": True},
                nodes_to_exclude=exclude,
            )
        except (IndexError, ValueError, KeyError) as exc:  # calibration without data, among others
            if reader.count == 0:
                raise QuantizationError(f"{float_path}: no calibration images") from None
            raise QuantizationError(f"{float_path}: quantization failed ({type(exc).__name__}: {exc})") from exc
        if reader.count == 0:
            raise QuantizationError(f"{float_path}: no calibration images")
        with atomic_path(out_path) as tmp_out:
            shutil.move(result, tmp_out)
    return out_path
