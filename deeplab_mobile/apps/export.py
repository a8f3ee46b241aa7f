"""The export app: a run folder's model, a model file's (``weights=FILE``) or a configuration's (random weights) to
ONNX (``format=onnx``), an ExecuTorch program for XNNPACK (``format=pte``), a LiteRT model (``format=tflite``) or
OpenVINO IR (``format=openvino``; also from an ONNX file, ``onnx=``, such as the quantize app's INT8 one) for
devices, checked against PyTorch with the format's runtime, or to a Hugging Face Hub folder (``format=hub``:
safetensors, config.json and a model card with the run's scores, data, recipe and environment; ``hub.py``) to share
(``scripts/export.py`` is its command line; docs/export.md).

The input is the normalised image (N, 3, H, W) float32 (the encoder's mean/std, as in training). Written: the
exported file and export.json (settings, input/output, file size, and the parity of the runtime against PyTorch:
max |logit difference| and argmax agreement on random inputs).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..config.source import from_config
from ..data.voc import CLASSES as VOC_CLASSES
from ..deploy import export_onnx
from ..deploy.executorch import PteSegmentor, export_pte
from ..deploy.litert import TfliteSegmentor, export_tflite
from ..deploy.meta import FREE, ExportMeta, OutputSpec, read_export_meta, write_export_meta
from ..deploy.open import check_content, export_bytes
from ..deploy.openvino import OpenVinoSegmentor, export_openvino, onnx_to_openvino
from ..errors import InvalidValue, MissingFile
from ..extras import require
from ..hub import save_pretrained
from ..runfolder import ENVIRONMENT, RunFolder, check_writable, read_environment, read_metrics

log = logging.getLogger(__name__)

# ONNX Runtime | ExecuTorch (XNNPACK) | LiteRT (XNNPACK) | OpenVINO | a Hub folder
FORMATS = {"onnx": ".onnx", "pte": ".pte", "tflite": ".tflite", "openvino": ".xml", "hub": ""}
# what each format needs installed, asked before any work: (the feature, its modules)
NEEDS = {
    "onnx": ("ONNX export", ("onnx", "onnxscript", "onnxruntime")),
    "pte": ("ExecuTorch export", ("executorch",)),
    "tflite": ("LiteRT export", ("litert_torch", "ai_edge_litert")),
    "openvino": ("OpenVINO export", ("openvino", "onnx", "onnxscript")),  # converted from the ONNX export
}
STATIC = {"pte": "ExecuTorch program with the final resize", "tflite": "LiteRT model"}  # formats of one input size


def parity(model: torch.nn.Module, run, sizes, labels: str | None, seed: int = 0) -> list[dict]:
    """The exported file run by its runtime (``run``: normalised NCHW tensor -> output tensor) against the same
    module in PyTorch (unfolded, so the folding is checked too), or another runner of it, on random inputs of each
    size."""
    reference = model.eval()
    gen = torch.Generator().manual_seed(seed)
    results = []
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=gen)
        with torch.no_grad():
            logits = reference(x)
        out = run(x).numpy()
        expected = (logits.argmax(1) if logits.is_floating_point() else logits).numpy()  # a runner of labels
        row = {"size": [h, w]}
        if labels:
            row["argmax_agreement"] = float(np.mean(out == expected))
        else:
            row["max_abs_diff"] = float(np.abs(out - logits.numpy()).max())
            row["argmax_agreement"] = float(np.mean(out.argmax(1) == expected))
        results.append(row)
    return results


def onnx_runner(path: Path):
    require("The ONNX parity check", "onnxruntime")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


def export(cfg: DictConfig, out_dir: Path) -> dict:
    if cfg.format not in FORMATS:
        raise InvalidValue(f"format={cfg.format!r}: choose one of {list(FORMATS)}")
    if cfg.format in STATIC and cfg.dynamic:
        raise InvalidValue(
            f"format={cfg.format}: a {STATIC[cfg.format]} has a static size (dynamic=false); free sizes come as "
            "feature-resolution logits from scripts/quantize.py (executorch=true, litert=true)"
        )
    if cfg.get("onnx") and cfg.format != "openvino":
        raise InvalidValue(f"onnx= is converted to OpenVINO IR (format=openvino), not format={cfg.format}")
    if cfg.format in NEEDS:
        feature, modules = NEEDS[cfg.format]
        require(feature, *modules)
    check_writable(out_dir, "the export's folder (out_dir=)")  # before any work
    if cfg.format == "hub":
        return export_hub(cfg, out_dir)
    if cfg.get("onnx"):
        return export_onnx_file(cfg, out_dir)
    source = from_config(cfg, keys=("run_dir", "weights"), build=True, output_stride=cfg.os)
    model = source.model.eval()
    size = tuple(cfg.size)
    sizes = [tuple(s) for s in cfg.parity.sizes] if cfg.dynamic else [size]
    path = out_dir / (cfg.name or f"model{FORMATS[cfg.format]}")
    if cfg.format == "onnx":
        export_onnx(model, path, size, cfg.dynamic, cfg.labels, cfg.fold_bn, cfg.opset, resize=cfg.resize)
        runtime, checks = "ONNX Runtime", parity(model, onnx_runner(path), sizes, cfg.labels, cfg.parity.seed)
        extra = {"onnx": str(path), "opset": cfg.opset}
    elif cfg.format == "pte":
        export_pte(model, path, size, False, cfg.labels, cfg.fold_bn, resize=cfg.resize)
        runner = PteSegmentor(path, size=size, labels=bool(cfg.labels))
        runtime, checks = "ExecuTorch", parity(model, runner.raw, sizes, cfg.labels, cfg.parity.seed)
        extra = {"pte": str(path), "delegate": "XNNPACK"}
    elif cfg.format == "tflite":
        export_tflite(model, path, size, cfg.labels, cfg.fold_bn, resize=cfg.resize)
        runner = TfliteSegmentor(path)
        runtime, checks = "LiteRT", parity(model, runner.raw, sizes, cfg.labels, cfg.parity.seed)
        extra = {"tflite": str(path), "delegate": "XNNPACK", "delegation": runner.delegation()}
    else:
        export_openvino(model, path, size, cfg.dynamic, cfg.labels, cfg.fold_bn, cfg.opset, resize=cfg.resize)
        runtime, checks, extra = "OpenVINO", *openvino_parity(path, model, sizes, cfg.labels, cfg.parity.seed)
    shape = FREE if cfg.dynamic else [1, 3, *size]
    output = OutputSpec("labels", cfg.labels) if cfg.labels else OutputSpec()
    meta = ExportMeta.of(model, source.classes if source.kind != "config" else config_classes(model), shape, output)
    meta.extra = {
        **source.origin,
        "format": cfg.format,
        **extra,
        "bytes": export_bytes(path),
        "fold_bn": cfg.fold_bn,
        "resize": cfg.resize,
        "parity": checks,
    }
    write_export_meta(path, meta)
    log_parity(runtime, "PyTorch", checks)
    log.info("wrote %s (%.2f MB) and export.json", path, meta.extra["bytes"] / 1e6)
    return meta.to_dict()


def log_parity(runtime: str, reference: str, checks: list[dict]) -> None:
    for c in checks:
        diff = f"max |diff| {c['max_abs_diff']:.2e}, " if "max_abs_diff" in c else ""
        what = f"{runtime} ({c['precision']})" if "precision" in c else runtime
        log.info("%s vs %s at %dx%d: %sargmax agreement %.5f", what, reference, *c["size"], diff, c["argmax_agreement"])


def openvino_parity(path: Path, reference, sizes, labels, seed: int) -> tuple[list[dict], dict]:
    """The IR run in f32 against ``reference`` (a module, or a runner of the same network), and in bf16 as its
    own, labelled rows (``precision``); what each layer type ran in, per precision."""
    checks, precisions = [], {}
    for precision in ("f32", "bf16"):
        runner = OpenVinoSegmentor(path, precision=precision)
        rows = parity(reference, runner.raw, sizes, labels, seed)
        checks += [{**row, "precision": precision} for row in rows]
        precisions[precision] = runner.executed_precisions()
    return checks, {"openvino": str(path), "bin": str(path.with_suffix(".bin")), "executed": precisions}


def export_onnx_file(cfg: DictConfig, out_dir: Path) -> dict:
    """``onnx=FILE`` (float, or the quantize app's INT8 QDQ file) as OpenVINO IR: its ``export.json`` carried
    over, the IR checked against ONNX Runtime running the same file."""
    source = Path(str(cfg.onnx))
    if not source.is_file():
        raise MissingFile(f"onnx={source}: file not found")
    check_content(source)
    meta = read_export_meta(source)  # before any work: an ONNX file without its description is named now
    path = out_dir / (cfg.name or f"{source.stem}.xml")
    onnx_to_openvino(source, path)
    static = meta.static
    sizes = [static] if static else [tuple(s) for s in cfg.parity.sizes]
    checks, extra = openvino_parity(path, OnnxRunner(source), sizes, meta.labels and "labels", cfg.parity.seed)
    meta.extra = {
        "onnx_source": str(source),
        **{k: v for k, v in meta.extra.items() if k not in ("onnx", "bytes", "parity", "format")},
        "format": "openvino",
        **extra,
        "bytes": export_bytes(path),
        "parity": checks,
        "parity_reference": "ONNX Runtime on the ONNX file",
    }
    write_export_meta(path, meta)
    log_parity("OpenVINO", "ONNX Runtime", checks)
    log.info("wrote %s (%.2f MB) and export.json", path, meta.extra["bytes"] / 1e6)
    return meta.to_dict()


class OnnxRunner(torch.nn.Module):
    """An ONNX file's output (ONNX Runtime) as a module: the reference of the parity of a file converted from it."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.run = onnx_runner(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


def export_hub(cfg: DictConfig, out_dir: Path) -> dict:
    """The run's (or model file's) network and weights as a Hub folder in ``out_dir``, with a card of what it is."""
    source = from_config(cfg, keys=("run_dir", "weights"), build=True, output_stride=cfg.os)
    if source.kind == "config":
        raise InvalidValue("format=hub shares trained weights: give run_dir= or weights=")
    card = hub_card(source)
    save_pretrained(source.model.eval(), out_dir, list(source.classes), card)
    log.info("wrote the Hub folder %s (model.safetensors, config.json, README.md)", out_dir)
    return {"hub": str(out_dir), **card}


RECIPE_KEYS = {
    "lr": "optim.lr",
    "iterations": "trainer.iters",
    "batch_size": "data.batch_size",
    "crop_size": "data.crop_size",
    "seed": "trainer.seed",
}


def hub_card(source) -> dict:
    """What a Hub folder's card says of a run: its scores with their intervals (its own evaluation and later
    ones), the data it trained on, its recipe (the command line's overrides), the environment; of a model file,
    where it came from."""
    card: dict = {"title": f"DeepLabv3 on MobileNetV2: {Path(str(source.path)).name}", "source": source.origin}
    if source.run is None:
        return card
    folder = RunFolder(source.path)
    records = [folder.metrics, *sorted(folder.eval.glob("*/metrics.json"))]
    scores = []
    for record in (r for r in records if r.is_file()):
        metrics = read_metrics(record)
        for mode, s in metrics.scores.items():
            if "miou" in s:
                scores.append(
                    {"split": metrics.split or "val", "mode": mode, "miou": s["miou"], "ci95": s.get("miou_ci95")}
                )
    card["scores"] = scores
    data = source.run.data
    card["data"] = {"name": str(data.name), "train_split": str(data.train_split), "val_split": str(data.val_split)}
    environment = folder.path / ENVIRONMENT
    if environment.is_file():
        env = read_environment(environment)
        card["data"]["manifest_sha256"] = (env.data or {}).get("sha256")
        card["environment"] = {
            "torch": (env.torch_build or {}).get("torch"),
            "cpu": (env.cpu or {}).get("model"),
            "deterministic": bool(env.deterministic),
            "code": (env.code or {}).get("commit"),
        }
    run = source.run
    card["recipe"] = {
        "command": "python scripts/train.py " + " ".join(OmegaConf.load(folder.overrides))
        if folder.overrides.is_file()
        else None,
        "optimizer": str(run.optim._target_).rsplit(".", 1)[-1],
        **{name: OmegaConf.select(run, key) for name, key in RECIPE_KEYS.items()},  # None where a run lacks one
    }
    return card


def config_classes(model) -> list[str] | None:
    """A network built from a config names VOC's classes when it has 21, none otherwise (as before)."""
    return list(VOC_CLASSES) if model.head.num_classes == len(VOC_CLASSES) else None


def main(cfg: DictConfig, out_dir: Path) -> None:
    export(cfg, out_dir)
