"""The on-device path: BN folding, memory-efficient inverted residuals, ONNX export and its runner, INT8."""

from .fold import count_batchnorm, fold_batchnorm, randomize_batchnorm
from .memory import ChunkedInvertedResidual, make_memory_efficient
from .onnx import OnnxSegmentor, export_onnx
from .prepare import LabelMap, prepare_for_export

__all__ = [
    "ChunkedInvertedResidual",
    "LabelMap",
    "OnnxSegmentor",
    "count_batchnorm",
    "export_onnx",
    "fold_batchnorm",
    "make_memory_efficient",
    "prepare_for_export",
    "randomize_batchnorm",
]
