"""Conversion of DeepLab's official MobileNetV2 checkpoints into model files (``models/pretrained.py``).

Sources (``convert_checkpoint(src, out)``; ``src`` may be any of them, or a folder or ``.tar.gz`` holding one):

- the model zoo's TensorFlow checkpoint, ``model.ckpt-30000`` (``.index`` + ``.data-00000-of-00001``), read by
  ``tf_checkpoint`` (no TensorFlow needed);
- the model zoo's ``frozen_inference_graph.pb``, read with the protobuf classes that the tensorboard package ships
  (no TensorFlow needed);
- Hugging Face's port (``model.safetensors`` / ``pytorch_model.bin``, e.g. ``google/deeplabv3_mobilenet_v2_1.0_513``)
  from a local file, or by hub id when huggingface.co can be reached.

The model file runs the weights as they were trained: TensorFlow DeepLab's BatchNorm epsilons (1e-3 in the
backbone, 1e-5 in the head), ``geometry="deeplab"`` (``align_corners=True`` resizes, "SAME" padding) and the input
``(x - 127.5) / 127.5``. Everything is checked before anything is written; the file is written atomically.
"""

from __future__ import annotations

import contextlib
import json
import re
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidValue
from ..models.build import build_model
from ..models.encoders import MobileNetV2Encoder
from ..models.encoders.mobilenet_v2 import WIDTHS
from ..models.pretrained import ModelFile, save_model_file
from ..models.weights import WeightsError, host_reachable, read_state_dict
from . import layout
from .tf_checkpoint import CheckpointReader, TFCheckpointError

DEEPLAB_MEAN = DEEPLAB_STD = (0.5, 0.5, 0.5)  # (x / 255 - 0.5) / 0.5 = (x - 127.5) / 127.5
HUB_HOST = "huggingface.co"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
KINDS = ("tf-checkpoint", "frozen-graph", "huggingface")
FILE_SUFFIXES = (".pb", ".safetensors", ".bin", ".pth", ".pt", ".index", ".gz", ".tgz", ".tar")
# Variables of heads this converter does not build: the model zoo's MobileNetV2 VOC models have neither.
FOREIGN_HEADS = {"aspp1": "ASPP atrous branches", "decoder": "a DeepLabv3+ decoder"}


class ConversionError(WeightsError):
    """A source that cannot be converted; the message names the file and what is wrong."""


@dataclass
class Source:
    kind: str
    path: Path
    hf_config: dict | None = None


def _ckpt_prefix(path: Path) -> Path | None:
    """The checkpoint prefix of ``model.ckpt-30000``, its ``.index`` or its ``.data-*`` file."""
    text = str(path)
    if text.endswith(".index"):
        return Path(text[: -len(".index")])
    match = re.match(r"(.*)\.data-\d+-of-\d+$", text)
    if match:
        return Path(match.group(1))
    if Path(text + ".index").is_file():
        return path
    return None


def _in_folder(folder: Path) -> Source:
    """The best source in a folder (an extracted model-zoo tarball or a Hugging Face snapshot)."""
    indexes = sorted(folder.rglob("*.ckpt*.index"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)])
    if indexes:
        return Source("tf-checkpoint", Path(str(indexes[-1])[: -len(".index")]))
    graphs = sorted(folder.rglob("frozen_inference_graph.pb")) or sorted(folder.rglob("*.pb"))
    if graphs:
        return Source("frozen-graph", graphs[0])
    for name in HUB_FILES:
        found = sorted(folder.rglob(name))
        if found:
            return _hf_source(found[0])
    raise ConversionError(
        f"{folder}: holds no TensorFlow checkpoint (model.ckpt-*.index), frozen graph (*.pb) or Hugging Face "
        f"weights ({', '.join(HUB_FILES)})"
    )


def _hf_source(path: Path) -> Source:
    config_path = path.with_name("config.json")
    config = None
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConversionError(f"{config_path}: not readable JSON ({exc})") from exc
    return Source("huggingface", path, config)


def _download(hub_id: str, folder: Path) -> Source:
    if not host_reachable(HUB_HOST):
        raise ConversionError(
            f"{hub_id}: looks like a Hugging Face hub id, but {HUB_HOST} cannot be reached (offline?). Download "
            f"model.safetensors and config.json from https://{HUB_HOST}/{hub_id} on a connected machine and pass "
            "the file (or its folder)"
        )
    from huggingface_hub import hf_hub_download

    try:
        weights = hf_hub_download(hub_id, HUB_FILES[0], local_dir=folder)
        hf_hub_download(hub_id, "config.json", local_dir=folder)
    except Exception as exc:  # noqa: BLE001 - the hub's errors vary; the message says which id failed
        raise ConversionError(f"{hub_id}: download from {HUB_HOST} failed ({type(exc).__name__}: {exc})") from exc
    return _hf_source(Path(weights))


@contextlib.contextmanager
def locate(src: str | Path) -> Iterator[Source]:
    """The source ``src`` names; a tarball is extracted (and a hub id downloaded) into a temporary folder that
    lives as long as the context."""
    path = Path(src)
    with tempfile.TemporaryDirectory(prefix="deeplab-mobile-convert-") as tmp:
        if path.is_dir():
            yield _in_folder(path)
        elif path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ConversionError(f"{path}: not a readable tar archive ({exc})") from exc
            yield _in_folder(Path(tmp))
        elif _ckpt_prefix(path) is not None and Path(str(_ckpt_prefix(path)) + ".index").is_file():
            yield Source("tf-checkpoint", _ckpt_prefix(path))
        elif path.is_file() and path.suffix == ".pb":
            yield Source("frozen-graph", path)
        elif path.is_file() and path.suffix in (".safetensors", ".bin", ".pth", ".pt"):
            yield _hf_source(path)
        elif not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(src)) and path.suffix not in FILE_SUFFIXES:
            yield _download(str(src), Path(tmp))
        elif not path.exists():
            raise ConversionError(f"{path}: not found")
        else:
            raise ConversionError(
                f"{path}: not a checkpoint this converter reads (model.ckpt-N[.index], frozen_inference_graph.pb, "
                ".safetensors/.bin, a folder or a .tar.gz of them)"
            )


def read_tf_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """The checkpoint's variables that the model needs (and their moving-average twins), read without TensorFlow
    (``tf_checkpoint``); every other name maps to None, for the architecture checks."""
    try:
        reader = CheckpointReader(prefix)
        shapes = reader.shapes()
        wanted = set(layout.required_tf_names())
        wanted |= {f"{n}/ExponentialMovingAverage" for n in wanted}
        variables = {name: None for name in shapes}
        for name in wanted & set(shapes):
            variables[name] = reader.tensor(name)
    except TFCheckpointError as exc:
        raise ConversionError(str(exc)) from exc
    return variables


def read_frozen_graph(path: Path) -> dict[str, np.ndarray]:
    """The float constants of a frozen ``GraphDef`` by node name (frozen variables keep their names)."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import graph_pb2
    from tensorboard.compat.proto.types_pb2 import DT_FLOAT
    from tensorboard.util.tensor_util import make_ndarray

    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except (DecodeError, OSError) as exc:
        raise ConversionError(f"{path}: not a readable TensorFlow GraphDef ({type(exc).__name__}: {exc})") from exc
    constants = {}
    for node in graph.node:
        if node.op == "Const" and node.attr["value"].tensor.dtype == DT_FLOAT:
            constants[node.name] = make_ndarray(node.attr["value"].tensor)
    if not graph.node:
        raise ConversionError(f"{path}: an empty or truncated GraphDef (no nodes)")
    return constants


def _check_names(path: Path, present: Sequence[str], required: Sequence[str], prefix: str) -> None:
    names = set(present)
    for marker, what in FOREIGN_HEADS.items():
        if any(n.startswith(marker) or f"/{marker}" in n for n in names):
            raise ConversionError(
                f"{path}: holds {what} ({marker}...); the model zoo's MobileNetV2 checkpoints have the image-pooling "
                "+ 1x1 head only, which is what this converter builds"
            )
    if not any(n.startswith(prefix) for n in names):
        sample = sorted(names)[:3]
        raise ConversionError(f"{path}: not DeepLab's MobileNetV2 (no {prefix}... variables; it holds e.g. {sample})")
    missing = [n for n in required if n not in names]
    if missing:
        raise ConversionError(
            f"{path}: {len(missing)} variables of DeepLab's MobileNetV2 are missing (e.g. {missing[:3]})"
        )


def infer_width(state: dict[str, torch.Tensor]) -> float:
    """The width multiplier from the last bottleneck's output channels (320 x width, made divisible by 8)."""
    channels = state["encoder.features.17.conv.2.weight"].shape[0]
    with torch.device("meta"):
        widths = {MobileNetV2Encoder(width=w).out_channels: w for w in WIDTHS}
    if channels not in widths:
        raise InvalidValue(f"its last bottleneck has {channels} channels, which no width in {WIDTHS} gives")
    return widths[channels]


def convert_checkpoint(
    src: str | Path,
    out: str | Path,
    *,
    width: float | None = None,
    output_stride: int = 16,
    classes: Sequence[str] | None = None,
) -> ModelFile:
    """Convert ``src`` into the model file ``out``; ``width``: refuse a checkpoint of another width."""
    from ..data.voc import CLASSES as VOC_CLASSES

    with locate(src) as source:
        path = source.path
        if source.kind == "huggingface":
            hf = read_state_dict(path)
            _check_names(path, list(hf), layout.required_hf_names(), "mobilenet_v2.")
            state = layout.from_hf(hf)
        else:
            variables = read_tf_checkpoint(path) if source.kind == "tf-checkpoint" else read_frozen_graph(path)
            _check_names(path, list(variables), layout.required_tf_names(), "MobilenetV2/")
            try:
                state = layout.from_tf(variables)
            except ValueError as exc:
                raise ConversionError(f"{path}: {exc}") from None
        try:
            found = infer_width(state)
        except ValueError as exc:
            raise ConversionError(f"{path}: {exc}") from None
        if width is not None and float(width) != found:
            raise ConversionError(f"{path}: holds a width-{found:g} MobileNetV2, not the width {width:g} asked for")
        num_classes = state["head.classifier.bias"].shape[0]
        names = _class_names(path, classes, num_classes, source.hf_config, VOC_CLASSES)
        info = ModelFile(
            config={
                "encoder": "mobilenet_v2",
                "head": "no_aspp",
                "output_stride": int(output_stride),
                "width": found,
                "tap": "second_last",
                "num_classes": int(num_classes),
                "bn": "deeplab",
                "geometry": "deeplab",
            },
            mean=DEEPLAB_MEAN,
            std=DEEPLAB_STD,
            classes=names,
            source=f"{source.kind}: {Path(src).name}",
        )
        model = build_model(**info.build_args())
        own = model.state_dict()
        bad = [k for k in own if k in state and own[k].shape != state[k].shape]
        if bad:
            k = bad[0]
            raise ConversionError(
                f"{path}: {len(bad)} tensors do not fit a width-{found:g} MobileNetV2 (e.g. {k}: "
                f"{tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model)"
            )
        model.load_state_dict(state, strict=True)
        save_model_file(out, model, info)
    return info


def _class_names(path, classes, n, hf_config, voc) -> tuple[str, ...]:
    if classes is not None:
        if len(classes) != n:
            raise ConversionError(f"{path}: has {n} classes, but {len(classes)} class names were given")
        return tuple(classes)
    labels = (hf_config or {}).get("id2label") or {}
    if len(labels) == n and not all(str(v).startswith("LABEL_") for v in labels.values()):
        return tuple(str(labels[k]) for k in sorted(labels, key=int))
    return tuple(voc) if n == len(voc) else tuple(map(str, range(n)))
