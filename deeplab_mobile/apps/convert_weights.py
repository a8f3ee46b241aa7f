"""The conversion app: an official DeepLab MobileNetV2 checkpoint -> a model file (``scripts/convert_weights.py``;
docs/model_zoo.md)."""

from __future__ import annotations

import argparse
import sys

from ..convert import KINDS, convert_checkpoint
from ..errors import ProjectError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="convert_weights.py",
        description="Convert DeepLab's official MobileNetV2 checkpoint (TensorFlow model.ckpt-N, "
        "frozen_inference_graph.pb, a model-zoo .tar.gz or folder, or Hugging Face's model.safetensors / hub id) "
        "into a model file that weights=FILE loads.",
    )
    parser.add_argument("src", help=f"the checkpoint ({', '.join(KINDS)}), its folder or tarball, or a hub id")
    parser.add_argument("--out", required=True, help="the model file to write (.pt)")
    parser.add_argument("--width", type=float, default=None, help="refuse a checkpoint of another width")
    parser.add_argument("--os", type=int, default=16, choices=(8, 16, 32), help="the file's default output stride")
    parser.add_argument("--classes", default=None, help="a text file with one class name per line (default: VOC's)")
    args = parser.parse_args(argv)
    try:
        classes = None
        if args.classes:
            with open(args.classes) as f:
                classes = [line.strip() for line in f if line.strip()]
        info = convert_checkpoint(args.src, args.out, width=args.width, output_stride=args.os, classes=classes)
    except (ProjectError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    c = info.config
    print(
        f"{args.out}: MobileNetV2 x{c['width']:g}, {c['head']} head, {c['num_classes']} classes, "
        f"OS{c['output_stride']} by default, from {info.source}"
    )
    return 0
