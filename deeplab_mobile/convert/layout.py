"""Where each weight of DeepLab's MobileNetV2 model lives in TensorFlow's checkpoints, in Hugging Face's port, and
in this project's ``DeepLabV3`` (MobileNetV2 encoder, tap ``second_last``, ``no_aspp`` head).

TensorFlow (docs/protocol.md, section 6): ``MobilenetV2/Conv``, ``MobilenetV2/expanded_conv/{depthwise,project}``,
``MobilenetV2/expanded_conv_{1..16}/{expand,depthwise,project}``, each with ``weights`` (``depthwise_weights``) and
``BatchNorm/{gamma,beta,moving_mean,moving_variance}``; the head's ``image_pooling``, ``aspp0`` and
``concat_projection`` likewise; ``logits/semantic/{weights,biases}``. Kernels are HWIO, depthwise ones
(H, W, C, multiplier).

Hugging Face (``MobileNetV2ForSemanticSegmentation``): the same layers, PyTorch layouts, as
``mobilenet_v2.conv_stem.{first_conv,conv_3x3,reduce_1x1}``, ``mobilenet_v2.layer.{0..15}.{expand_1x1,conv_3x3,
reduce_1x1}`` and ``segmentation_head.{conv_pool,conv_aspp,conv_projection,classifier}``.

DeepLab concatenates [image pooling, 1x1 branch] before the projection; this project's head concatenates
[1x1 branch, image pooling], so the projection's input channels are reordered (the function stays the same).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InvalidValue

N_BOTTLENECKS = 17
BN_TF = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
BN_HF = {"weight": "weight", "bias": "bias", "running_mean": "running_mean", "running_var": "running_var"}


@dataclass(frozen=True)
class Layer:
    """One conv (with its BatchNorm unless ``kind == "logits"``) under its three names."""

    conv: str  # our conv module
    bn: str | None  # our BatchNorm module
    tf: str  # TensorFlow scope
    hf: str  # Hugging Face module prefix (its conv is ``<hf>.convolution``, its BN ``<hf>.normalization``)
    kind: str  # "conv" | "depthwise" | "logits"


def layers() -> list[Layer]:
    out = [
        Layer(
            "encoder.features.0.0",
            "encoder.features.0.1",
            "MobilenetV2/Conv",
            "mobilenet_v2.conv_stem.first_conv",
            "conv",
        )
    ]
    first = "encoder.features.1.conv"
    out += [
        Layer(
            f"{first}.0.0",
            f"{first}.0.1",
            "MobilenetV2/expanded_conv/depthwise",
            "mobilenet_v2.conv_stem.conv_3x3",
            "depthwise",
        ),
        Layer(
            f"{first}.1", f"{first}.2", "MobilenetV2/expanded_conv/project", "mobilenet_v2.conv_stem.reduce_1x1", "conv"
        ),
    ]
    for i in range(2, N_BOTTLENECKS + 1):
        ours, tf, hf = f"encoder.features.{i}.conv", f"MobilenetV2/expanded_conv_{i - 1}", f"mobilenet_v2.layer.{i - 2}"
        out += [
            Layer(f"{ours}.0.0", f"{ours}.0.1", f"{tf}/expand", f"{hf}.expand_1x1", "conv"),
            Layer(f"{ours}.1.0", f"{ours}.1.1", f"{tf}/depthwise", f"{hf}.conv_3x3", "depthwise"),
            Layer(f"{ours}.2", f"{ours}.3", f"{tf}/project", f"{hf}.reduce_1x1", "conv"),
        ]
    out += [
        Layer("head.branches.0.0", "head.branches.0.1", "aspp0", "segmentation_head.conv_aspp", "conv"),
        Layer("head.branches.1.1", "head.branches.1.2", "image_pooling", "segmentation_head.conv_pool", "conv"),
        Layer("head.project.0", "head.project.1", "concat_projection", "segmentation_head.conv_projection", "conv"),
        Layer("head.classifier", None, "logits/semantic", "segmentation_head.classifier", "logits"),
    ]
    return out


def foreign_names(layer: Layer, weight: str, bias: str, bn_prefix: str, bn_names: dict) -> dict[str, str]:
    """Our state-dict keys of ``layer`` -> another layout's: its conv weight, the logits' bias, or its BatchNorm's
    variables (``bn_prefix`` + ``bn_names``)."""
    names = {f"{layer.conv}.weight": weight}
    if layer.kind == "logits":
        names[f"{layer.conv}.bias"] = bias
    else:
        names.update({f"{layer.bn}.{ours}": f"{bn_prefix}{theirs}" for ours, theirs in bn_names.items()})
    return names


def tf_names(layer: Layer) -> dict[str, str]:
    """Our state-dict key -> the TensorFlow variable that holds it."""
    kernel = "depthwise_weights" if layer.kind == "depthwise" else "weights"
    return foreign_names(layer, f"{layer.tf}/{kernel}", f"{layer.tf}/biases", f"{layer.tf}/BatchNorm/", BN_TF)


def hf_names(layer: Layer) -> dict[str, str]:
    """Our state-dict key -> the Hugging Face key that holds it."""
    conv = f"{layer.hf}.convolution"
    return foreign_names(layer, f"{conv}.weight", f"{conv}.bias", f"{layer.hf}.normalization.", BN_HF)


def tf_to_torch(array: np.ndarray, kind: str, is_kernel: bool) -> torch.Tensor:
    """TensorFlow's layout -> PyTorch's: HWIO -> OIHW; depthwise (H, W, C, M) -> (C*M, 1, H, W)."""
    array = np.asarray(array, dtype=np.float32)
    if is_kernel:
        if array.ndim != 4:
            raise InvalidValue(f"a kernel of shape {array.shape}, expected 4 dimensions")
        if kind == "depthwise":
            h, w, c, m = array.shape
            array = array.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w)
        else:
            array = array.transpose(3, 2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def pooling_first_to_last(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """The projection's kernel for inputs [image pooling (``channels``), 1x1 branch] -> [1x1 branch, pooling]."""
    return torch.cat([weight[:, channels:], weight[:, :channels]], dim=1)


def state_from(get: Callable[[str], torch.Tensor], names: Callable[[Layer], dict[str, str]]) -> dict:
    """Our state dict from a source, ``get(name)`` returning each named tensor in PyTorch layout."""
    state = {}
    for layer in layers():
        for ours, theirs in names(layer).items():
            state[ours] = get(theirs, layer)
        if layer.bn is not None:
            state[f"{layer.bn}.num_batches_tracked"] = torch.tensor(0)
    proj = "head.project.0.weight"
    state[proj] = pooling_first_to_last(state[proj], state["head.branches.0.0.weight"].shape[0])
    return state


def required_tf_names() -> list[str]:
    return [name for layer in layers() for name in tf_names(layer).values()]


def required_hf_names() -> list[str]:
    return [name for layer in layers() for name in hf_names(layer).values()]


def from_tf(variables: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our state dict from TensorFlow variables (an ``ExponentialMovingAverage`` twin preferred where present)."""

    def get(name: str, layer: Layer) -> torch.Tensor:
        value = variables.get(f"{name}/ExponentialMovingAverage", variables.get(name))
        is_kernel = name.endswith("weights")
        try:
            return tf_to_torch(value, layer.kind, is_kernel)
        except ValueError as exc:
            raise InvalidValue(f"{name}: {exc}") from None

    return state_from(get, tf_names)


def from_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict from a ``MobileNetV2ForSemanticSegmentation`` state dict."""
    return state_from(lambda name, _layer: state[name].detach().float().clone(), hf_names)
