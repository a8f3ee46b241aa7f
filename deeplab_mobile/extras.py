"""Optional dependencies: the extra that installs each, and one line when a feature needs one that is missing.

``pip install deeplab-mobile`` carries what building, training and evaluating models and writing reports need. The
rest is in extras (pyproject.toml): ``deploy`` (ONNX export, ONNX Runtime, INT8, quantization-aware training,
ExecuTorch), ``litert`` (LiteRT export and its interpreter), ``openvino`` (OpenVINO IR and its runtime), ``sweep``
(the joblib and Slurm launchers) and ``dev`` (all of it, and the test tools).
"""

from __future__ import annotations

import importlib

from .errors import ProjectError

# module -> (the distribution pip installs, the extra that brings it)
EXTRAS = {
    "onnx": ("onnx", "deploy"),
    "onnxscript": ("onnxscript", "deploy"),
    "onnxruntime": ("onnxruntime", "deploy"),
    "torchao": ("torchao", "deploy"),
    "executorch": ("executorch", "deploy"),
    "litert_torch": ("litert-torch", "litert"),
    "ai_edge_litert": ("ai-edge-litert", "litert"),
    "openvino": ("openvino", "openvino"),
    "submitit": ("submitit", "sweep"),
    "hydra_plugins.hydra_joblib_launcher": ("hydra-joblib-launcher", "sweep"),
    "hydra_plugins.hydra_submitit_launcher": ("hydra-submitit-launcher", "sweep"),
}


class MissingExtra(ProjectError, ImportError):
    """A feature's optional dependency is not installed; the message names the extra that installs it."""


def require(feature: str, *modules: str) -> None:
    """Import ``modules`` (keys of ``EXTRAS``), or raise ``MissingExtra``: ``<feature> needs <package>: pip install
    'deeplab-mobile[<extra>]'``."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            package, extra = EXTRAS[module]
            message = f"{feature} needs {package}, which is not installed: pip install 'deeplab-mobile[{extra}]'"
            raise MissingExtra(message) from None
