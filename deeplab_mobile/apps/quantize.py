"""The quantize app: post-training INT8 of a run folder's model, a model file's or an exported ONNX file, with its
accuracy cost measured by the evaluator (``scripts/quantize.py`` is its command line; docs/quantize.md).

1. The float model as this framework exports it (``model.onnx``: BatchNorm folded, logits, free sizes), with an
   ``export.json`` beside it (normalisation, geometry, classes), or the given ONNX file and its ``export.json``.
2. ``calibration.images`` training images (seeded choice) through the evaluation's geometry: each padded
   bottom/right to ``eval.pad_to`` with the mean pixel, normalised, the padding set to the exact mean.
3. ONNX Runtime's static quantization (``deploy.quantize``) -> ``model.int8.onnx``; with ``executorch=true`` and
   ``litert=true`` the same network as XNNPACK programs and LiteRT models, float and INT8 (PT2E, from the same
   calibration images); with ``openvino=true`` both ONNX files as OpenVINO IR (INT8 from the INT8 ONNX file).
4. The float and INT8 ONNX models scored by ``engine.evaluator.evaluate`` on the val split (single scale, and MF +
   flip with ``eval.mf=true``), the same code that scores PyTorch models; the argmax agreement of the two on the
   labelled pixels; file sizes; ONNX Runtime latency at 1 and 2 threads.
5. ``quant.json`` with all of it, in ``<run>/quant/`` (a model file's or ONNX file's: ``outputs/quantize/<name>/``,
   or ``out_dir``).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict
from PIL import Image
from tqdm import tqdm

from ..bench.latency import openvino_latency, ort_latency, pte_latency, tflite_latency
from ..config.data import open_data_split, prepare_data
from ..config.evaluation import evaluation_data
from ..config.paths import quant_dir
from ..config.source import from_config
from ..data import EvalTransform, Normalize, TrainTransform, mean_pixel
from ..data.loader import train_loader
from ..data.transforms import pad_collate
from ..deploy import export_onnx
from ..deploy.executorch import MAX_SIDE, PTE_SUFFIX, export_pte, lower_to_pte
from ..deploy.litert import TFLITE_SUFFIX, export_tflite
from ..deploy.meta import FREE, ExportMeta, OutputSpec, read_export_meta, write_export_meta
from ..deploy.open import export_bytes, open_exported
from ..deploy.openvino import XML_SUFFIX, onnx_to_openvino
from ..deploy.qat import SCHEDULES, convert, export_qdq_onnx, finetune, prepare_qat
from ..deploy.quantize import METHODS, WEIGHT_TYPES, QuantizationError, check_float_model, quantize_model
from ..engine.evaluator import evaluate, mean_padded, predict_probs
from ..files import write_json
from ..runfolder import RunFolder, check_writable
from ..stats import paired_difference
from ..table7 import MF_SCALES

log = logging.getLogger(__name__)


@dataclass
class FloatModel:
    """The float ONNX model to quantize, and what it takes to feed and score it."""

    onnx: Path
    meta: ExportMeta  # its export.json
    data: DictConfig  # root, train_split, val_split, name
    pad_to: int
    out_dir: Path
    mf_scales: tuple[float, ...] = MF_SCALES  # the MF scales unless eval.mf_scales: a run's own, else VOC's six
    model: torch.nn.Module | None = None  # the PyTorch model (QAT starts from it); None for an ONNX file
    crop_size: int | None = None  # a run's training crop (QAT's default)
    config: str | None = None  # where ``data`` was read: a run folder's config file


def float_model(cfg: DictConfig) -> FloatModel:
    """Export the run's or the model file's network (dynamic sizes, BN folded), or take the given ONNX file."""
    if cfg.get("onnx"):
        check_float_model(Path(cfg.onnx))  # a damaged or unsupported file is named before its export.json
    out_dir = Path(quant_dir(cfg.run_dir or None, cfg.weights or None, cfg.onnx or None, cfg.out_dir))
    check_writable(out_dir, "INT8's folder (out_dir=)")  # before any work
    source = from_config(cfg)
    pad_to = int(cfg.eval.pad_to or source.pad_to)
    data = cfg.data.copy()
    if not source.pytorch:
        static = source.export.static
        if static and (static[0] != static[1] or static[0] != pad_to):
            raise QuantizationError(f"{source.path}: exported for {static} inputs; eval.pad_to={pad_to} cannot feed it")
        return FloatModel(source.path, source.export, data, pad_to, out_dir)
    run, where, scales, crop = source.run, None, MF_SCALES, None
    if run is not None:
        data = run.data.copy()
        if cfg.get("data_root"):
            with open_dict(data):
                data.root = cfg.data_root
        else:
            where = str(RunFolder(cfg.run_dir).config)
        scales, crop = tuple(run.eval.mf_scales or MF_SCALES), run.data.crop_size
    if cfg.litert:  # before the first file is written
        check_one_size(cfg, data, pad_to, len(source.classes), where)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = source.model.eval()
    path = export_onnx(model, out_dir / "model.onnx", (pad_to, pad_to), dynamic=True, upsample=False)
    meta = ExportMeta.of(model, source.classes, FREE, OutputSpec(stride=model.logits_stride))  # feature resolution
    write_export_meta(path, meta)
    return FloatModel(path, meta, data, pad_to, out_dir, scales, model, crop, where)


def calibration_batches(source: FloatModel, n: int, split: str, seed: int, progress: bool):
    """``n`` training images (a seeded choice), each padded bottom/right with the mean pixel to ``pad_to`` (or to
    the largest of them, so that every batch has one size, as ONNX Runtime's histogram calibrators need) and
    normalised as evaluation feeds them. The split is opened here, not when the batches are first drawn: a dataset
    that is not there is named now, not reported later as no calibration images."""
    mean, std = source.meta.input.mean, source.meta.input.std
    dataset = open_data_split(source.data, split, EvalTransform(), len(source.meta.class_names()), source.config)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()

    def batches():
        samples = [dataset[i] for i in tqdm(order, desc="calibration images", leave=False, disable=not progress)]
        side = max([source.pad_to, *(max(mask.shape) for _, mask in samples)])
        normalize, fill = Normalize(mean, std), mean_pixel(mean)
        for sample in samples:
            images, _, sizes = pad_collate([sample], fill=fill, min_size=side)
            yield mean_padded(normalize(images), sizes).contiguous().numpy()

    return batches()


@torch.no_grad()
def agreement(a: torch.nn.Module, b: torch.nn.Module, normalize, loader) -> float:
    """The fraction of labelled pixels (not 255, not padding) where the two models' single-scale argmax agree."""
    same = total = 0
    for images, masks, sizes in loader:
        x = mean_padded(normalize(images), sizes)
        pa, pb = predict_probs(a, x).argmax(1), predict_probs(b, x).argmax(1)
        keep = masks != 255
        same += int(((pa == pb) & keep).sum())
        total += int(keep.sum())
    return same / max(total, 1)


def check_settings(cfg: DictConfig) -> None:
    """Refuse a bad setting before any file is read or written."""
    method = str(cfg.method)
    if method not in METHODS:
        raise QuantizationError(f"method={method!r} is not supported; choose one of {METHODS}")
    if int(cfg.qat.steps) < 0 or (int(cfg.qat.steps) > 0 and cfg.onnx):
        raise QuantizationError("qat.steps must be >= 0, and QAT needs run_dir= or weights= (the PyTorch model)")
    if str(cfg.weight_type) not in WEIGHT_TYPES:
        raise QuantizationError(f"weight_type={cfg.weight_type!r} is not supported; choose one of {WEIGHT_TYPES}")
    if str(cfg.qat.schedule) not in SCHEDULES:
        raise QuantizationError(f"qat.schedule={cfg.qat.schedule!r} is not supported; choose one of {SCHEDULES}")
    for key in ("freeze_bn_after", "freeze_observers_after"):
        value = cfg.qat.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise QuantizationError(f"qat.{key} must be a number of steps (>= 0) or null, got {value!r}")
    if int(cfg.calibration.images) < 1:
        raise QuantizationError(f"calibration.images must be at least 1, got {cfg.calibration.images}")
    for key in ("executorch", "litert"):
        if cfg[key] and cfg.onnx:
            raise QuantizationError(f"{key}=true needs the PyTorch model: give run_dir= or weights=, not onnx=")
    if cfg.litert and cfg.eval.mf:
        raise QuantizationError("litert=true: LiteRT models have one input size, which MF cannot feed (eval.mf=false)")


def calibration_split(cfg: DictConfig, source: FloatModel) -> str:
    return cfg.calibration.split or source.data.train_split


def calibration(cfg: DictConfig, source: FloatModel, progress: bool):
    return calibration_batches(
        source, int(cfg.calibration.images), calibration_split(cfg, source), int(cfg.calibration.seed), progress
    )


def quantize_onnx(cfg: DictConfig, source: FloatModel) -> Path:
    """ONNX Runtime's static quantization of the float model -> ``model.int8.onnx``."""
    int8_path = source.out_dir / "model.int8.onnx"
    quantize_model(
        source.onnx,
        int8_path,
        calibration(cfg, source, cfg.progress),
        str(cfg.method),
        bool(cfg.per_channel),
        float(cfg.percentile),
        tuple(cfg.keep_float or ()),
        str(cfg.weight_type),
        bool(cfg.reduce_range),
    )
    log.info("wrote %s", int8_path)
    return int8_path


def executorch_programs(cfg: DictConfig, source: FloatModel) -> dict[str, Path]:
    """The same network as XNNPACK programs: float, and INT8 from the same calibration images."""
    side, most = (source.pad_to, source.pad_to), pte_max_side(cfg, source)
    files = {
        "float_pte": export_pte(source.model, source.out_dir / "model.pte", side, True, upsample=False, max_side=most)
    }
    files["int8_pte"] = export_pte(
        source.model,
        source.out_dir / "model.int8.pte",
        side,
        True,
        upsample=False,
        calibration=calibration(cfg, source, False),
        max_side=most,
        keep_float=tuple(cfg.keep_float or ()),
    )
    log.info("wrote %s and %s", files["float_pte"], files["int8_pte"])
    return files


def check_one_size(cfg: DictConfig, data: DictConfig, pad_to: int, num_classes: int, where: str | None) -> None:
    """LiteRT's models take one input size, ``pad_to`` square (its converter keeps no free dimension): every image
    of the evaluation split must fit in it, so that each is padded to exactly that size. Read from the images'
    headers, before any file is written."""
    split = cfg.split or data.val_split
    dataset = open_data_split(data, split, EvalTransform(), num_classes, where)
    largest = 0
    for i in range(len(dataset)):
        with Image.open(dataset.paths(i)[0]) as image:
            largest = max(largest, *image.size)
    if largest > pad_to:
        raise QuantizationError(
            f"litert=true: LiteRT models take one input size, {pad_to}x{pad_to} (eval.pad_to), and "
            f"the {split} split has images up to {largest} pixels a side: give eval.pad_to={largest} or more"
        )


def litert_models(cfg: DictConfig, source: FloatModel) -> dict[str, Path]:
    """The same network as LiteRT models at ``pad_to`` (static): float, and INT8 from the same calibration images
    and the same PT2E quantization as the ExecuTorch INT8 program."""
    side = (source.pad_to, source.pad_to)
    files = {"float_tflite": export_tflite(source.model, source.out_dir / "model.tflite", side, upsample=False)}
    files["int8_tflite"] = export_tflite(
        source.model,
        source.out_dir / "model.int8.tflite",
        side,
        upsample=False,
        calibration=calibration(cfg, source, False),
        keep_float=tuple(cfg.keep_float or ()),
    )
    log.info("wrote %s and %s", files["float_tflite"], files["int8_tflite"])
    return files


def openvino_models(files: dict[str, Path], out_dir: Path) -> dict[str, Path]:
    """Both ONNX files as OpenVINO IR (``openvino/model.xml`` and ``openvino/model.int8.xml``), their description
    beside them; the float IR also run in bf16 (``float_openvino_bf16``, the same file)."""
    out = {}
    for name in ("float", "int8"):
        onnx_path = files[name]
        out[f"{name}_openvino"] = onnx_to_openvino(onnx_path, out_dir / "openvino" / f"{onnx_path.stem}.xml")
    write_export_meta(out["float_openvino"], read_export_meta(files["float"]))
    out["float_openvino_bf16"] = out["float_openvino"]
    log.info("wrote %s and %s", out["float_openvino"], out["int8_openvino"])
    return out


# runs of a file other than its default (OpenVINO's f32): the file's name in ``files`` -> OpenVINO precision
PRECISION = {"float_openvino_bf16": "bf16"}


def precision(name: str) -> str:
    return PRECISION.get(name, "f32")


def reference_of(name: str) -> str | None:
    """The float file an INT8 (or bf16) file is compared with: ``int8``/``qat`` -> ``float``, ``int8_<runtime>``
    -> ``float_<runtime>``, the bf16 run -> the f32 run of the same IR; ``None`` for a float file."""
    if name in PRECISION:
        return name.removesuffix("_bf16")
    kind, _, runtime = name.partition("_")
    if kind == "float":
        return None
    return f"float_{runtime}" if runtime else "float"


@dataclass
class Scored:
    """Every file scored by the same evaluator: mIoU per mode, the INT8 drops with their intervals, the argmax
    agreement with the float model, each float runtime file's parity with PyTorch, the latencies."""

    modes: dict
    scores: dict
    drops: dict
    agree: dict
    parity: dict
    latency: dict
    size: tuple[int, int]
    ran: dict  # what each LiteRT or OpenVINO file ran: XNNPACK's delegated ops, OpenVINO's precision per layer type


def score_files(cfg: DictConfig, source: FloatModel, files: dict[str, Path]) -> Scored:
    classes = source.meta.class_names()
    data = source.data
    mean, std = source.meta.input.mean, source.meta.input.std
    val = evaluation_data(
        data, cfg.split or data.val_split, len(classes), mean, std, cfg.eval, source.pad_to, source=source.config
    )
    normalize, loader = val.normalize, val.loader
    modes = {"ss": {}}
    if cfg.eval.mf:
        modes["mf"] = {"scales": list(cfg.eval.mf_scales or source.mf_scales), "flip": bool(cfg.eval.flip)}

    def score(net):
        return {
            mode: evaluate(net, normalize, loader, len(classes), progress=cfg.progress, per_image=True, **kw)
            for mode, kw in modes.items()
        }

    nets = {name: open_exported(path, source.meta, precision=precision(name)) for name, path in files.items()}
    evaluations = {name: score(net) for name, net in nets.items()}
    scores = {name: {mode: e.scores for mode, e in by_mode.items()} for name, by_mode in evaluations.items()}
    # each INT8 model's drop from its float model, with a paired bootstrap over the same images (stats.py)
    reference = {name: reference_of(name) for name in files if reference_of(name)}
    drops = {
        name: {
            mode: paired_difference({0: evaluations[ref][mode].per_image}, {0: evaluations[name][mode].per_image})
            for mode in modes
        }
        for name, ref in reference.items()
    }
    agree = {name: agreement(nets["float"], net, normalize, loader) for name, net in nets.items() if name != "float"}
    # before the latency runs: they resize ExecuTorch's thread pool, and a program loaded before that must not run again
    parity = {
        name: logit_parity(source.model, nets[name], source.pad_to)
        for name in files
        if source.model is not None and name != "float" and (name.startswith("float_") or name in PRECISION)
    }
    size = tuple(cfg.latency.size or (source.pad_to, source.pad_to))
    repeats = int(cfg.latency.repeats)
    latency = {
        name: {str(t): file_latency(path, size, int(t), repeats, precision(name)) for t in cfg.latency.threads}
        for name, path in files.items()
    }
    reports = {name: runtime_report(net) for name, net in nets.items()}
    ran = {name: report for name, report in reports.items() if report is not None}
    return Scored(modes, scores, drops, agree, parity, latency, size, ran)


def runtime_report(net) -> dict | None:
    """What a runner ran, where its runtime says: a LiteRT model's delegation, an OpenVINO model's precisions."""
    if hasattr(net, "delegation"):
        return net.delegation()
    if hasattr(net, "executed_precisions"):
        return net.executed_precisions()
    return None


def quant_record(cfg: DictConfig, source: FloatModel, files: dict[str, Path], s: Scored) -> dict:
    """``quant.json``."""
    modes, scores, agree = s.modes, s.scores, s.agree
    keep_float = list(cfg.keep_float or ())
    return {
        "source": {k: str(cfg[k]) for k in ("run_dir", "weights", "onnx") if cfg.get(k)},
        "network": source.meta.network,
        "os": source.meta.os,
        "geometry": source.meta.geometry,
        "method": str(cfg.method),
        "per_channel": bool(cfg.per_channel),
        "weight_type": str(cfg.weight_type),
        "reduce_range": bool(cfg.reduce_range),
        "keep_float": keep_float,
        "calibration": {
            "images": int(cfg.calibration.images),
            "split": calibration_split(cfg, source),
            "seed": int(cfg.calibration.seed),
        },
        "eval": {
            "split": cfg.split or source.data.val_split,
            "pad_to": source.pad_to,
            **({"mf": modes["mf"]} if "mf" in modes else {}),
        },
        "miou": {name: {mode: v["miou"] for mode, v in by_mode.items()} for name, by_mode in scores.items()},
        "miou_drop": {mode: scores["float"][mode]["miou"] - scores["int8"][mode]["miou"] for mode in modes},
        "miou_drop_ci95": {
            name: {mode: [d.low, d.high] for mode, d in by_mode.items()} for name, by_mode in s.drops.items()
        },
        "argmax_agreement": agree["int8"],
        "bytes": {name: export_bytes(path) for name, path in files.items()},
        "latency_ms": {name: {t: v["median_ms"] for t, v in by_t.items()} for name, by_t in s.latency.items()},
        "latency_size": list(s.size),
        "pixel_acc": {name: {mode: v["pixel_acc"] for mode, v in by_mode.items()} for name, by_mode in scores.items()},
        "files": {name: str(path) for name, path in files.items()},
    }


PT2E_QUANTIZER = "XNNPACKQuantizer (PT2E): int8 per-channel symmetric weights, int8 activations, ReLU6 fused"


def runtime_record(files: dict[str, Path], s: Scored, runtime: str) -> dict:
    """One runtime's part of ``quant.json``: its float file's max |logit difference| from PyTorch, the INT8 drop
    from its own float file per mode, each of its files' argmax agreement with the float ONNX model."""
    return {
        "float_max_abs_diff": s.parity.get(f"float_{runtime}"),
        "miou_drop": {
            m: s.scores[f"float_{runtime}"][m]["miou"] - s.scores[f"int8_{runtime}"][m]["miou"] for m in s.modes
        },
        "argmax_agreement": {name: s.agree[name] for name in files if name.partition("_")[2].startswith(runtime)},
    }


def executorch_record(cfg: DictConfig, files: dict[str, Path], s: Scored) -> dict:
    return {
        "delegate": "XNNPACK",
        "quantizer": PT2E_QUANTIZER,
        "keep_float": list(cfg.keep_float or ()),
        **runtime_record(files, s, "pte"),
    }


def litert_record(cfg: DictConfig, files: dict[str, Path], s: Scored) -> dict:
    return {
        "delegate": "XNNPACK",
        "quantizer": PT2E_QUANTIZER,
        "keep_float": list(cfg.keep_float or ()),
        **runtime_record(files, s, "tflite"),
        "delegation": {name: s.ran[name] for name in ("float_tflite", "int8_tflite")},
    }


def openvino_record(files: dict[str, Path], s: Scored) -> dict:
    return {
        "from": "model.onnx and model.int8.onnx (ONNX Runtime's QDQ file)",
        **runtime_record(files, s, "openvino"),
        "bf16_max_abs_diff": s.parity.get("float_openvino_bf16"),
        "bf16_miou_drop": {
            m: s.scores["float_openvino"][m]["miou"] - s.scores["float_openvino_bf16"][m]["miou"] for m in s.modes
        },
        "executed": {name: s.ran[name] for name in ("float_openvino", "float_openvino_bf16", "int8_openvino")},
    }


def qat_record(cfg: DictConfig, source: FloatModel, losses: list[float], s: Scored) -> dict:
    return {
        "steps": int(cfg.qat.steps),
        "lr": float(cfg.qat.lr),
        "schedule": str(cfg.qat.schedule),
        "freeze_bn_after": cfg.qat.freeze_bn_after,
        "freeze_observers_after": cfg.qat.freeze_observers_after,
        "seed": int(cfg.qat.seed),
        "batch_size": int(cfg.qat.batch_size),
        "crop_size": qat_crop(cfg, source),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "miou_drop": {mode: s.scores["float"][mode]["miou"] - s.scores["qat"][mode]["miou"] for mode in s.modes},
        "argmax_agreement": s.agree["qat"],
    }


def log_summary(record: dict, s: Scored) -> None:
    for mode in s.modes:
        float_miou, int8_miou = s.scores["float"][mode]["miou"], s.scores["int8"][mode]["miou"]
        log.info("%s mIoU float %.4f, int8 %.4f (drop %.4f)", mode, float_miou, int8_miou, record["miou_drop"][mode])
        if "qat" in record:
            qat = s.scores["qat"][mode]["miou"]
            log.info("%s mIoU QAT int8 %.4f (drop %.4f)", mode, qat, record["qat"]["miou_drop"][mode])
    log.info(
        "argmax agreement %.4f; %.2f MB -> %.2f MB; latency %s",
        record["argmax_agreement"],
        record["bytes"]["float"] / 1e6,
        record["bytes"]["int8"] / 1e6,
        record["latency_ms"],
    )


def quantize(cfg: DictConfig) -> dict:
    """The float model, its INT8 forms (ONNX Runtime; with ``executorch`` XNNPACK programs; with ``qat.steps``
    QAT), all scored by the same evaluator -> ``quant.json``."""
    check_settings(cfg)
    source = float_model(cfg)
    if not cfg.run_dir:  # a run's data is where its config says: it is not written again elsewhere
        prepare_data(source.data, progress=cfg.progress)
    files = {"float": source.onnx, "int8": quantize_onnx(cfg, source)}
    if cfg.openvino:
        files.update(openvino_models(files, source.out_dir))
    if cfg.executorch:
        files.update(executorch_programs(cfg, source))
    if cfg.litert:
        files.update(litert_models(cfg, source))
    qat_losses = None
    if int(cfg.qat.steps) > 0:
        qat_files, qat_losses = quantization_aware(cfg, source)
        files.update(qat_files)
        log.info("wrote %s", ", ".join(str(p) for p in qat_files.values()))
    scored = score_files(cfg, source, files)
    record = quant_record(cfg, source, files, scored)
    if "float_pte" in files:
        record["executorch"] = executorch_record(cfg, files, scored)
    if "float_tflite" in files:
        record["litert"] = litert_record(cfg, files, scored)
    if "float_openvino" in files:
        record["openvino"] = openvino_record(files, scored)
    if "qat" in files:
        record["qat"] = qat_record(cfg, source, qat_losses, scored)
    write_json(source.out_dir / "quant.json", record)
    log_summary(record, scored)
    return record


def qat_crop(cfg: DictConfig, source: FloatModel) -> int:
    return int(cfg.qat.crop_size or source.crop_size or source.pad_to)


def quantization_aware(cfg: DictConfig, source: FloatModel) -> tuple[dict[str, Path], list[float]]:
    """PT2E fine-tuning of the PyTorch model on the train split (``qat.*``), exported to ``model.qat.int8.onnx``."""
    if source.model is None:
        raise QuantizationError("qat.steps > 0 needs the PyTorch model: give run_dir= or weights=, not onnx=")
    crop = qat_crop(cfg, source)
    mean, std = source.meta.input.mean, source.meta.input.std
    data = source.data
    scales = tuple(data.scales or (1.0,))
    transform = TrainTransform(crop, mean, scales=scales, seed=int(cfg.qat.seed))
    split = cfg.calibration.split or data.train_split
    train_set = open_data_split(data, split, transform, len(source.meta.class_names()), source.config)
    if len(train_set) < int(cfg.qat.batch_size):
        raise QuantizationError(f"qat.batch_size={cfg.qat.batch_size} is more than the {len(train_set)} train images")
    generator = torch.Generator().manual_seed(int(cfg.qat.seed))

    def batches():
        while True:
            yield from train_loader(train_set, int(cfg.qat.batch_size), 0, generator=generator)

    torch.manual_seed(int(cfg.qat.seed))
    keep_float = tuple(cfg.keep_float or ())
    prepared = prepare_qat(copy.deepcopy(source.model).cpu(), crop, keep_float)
    align = source.meta.geometry == "deeplab"
    losses = finetune(
        prepared,
        batches(),
        Normalize(mean, std),
        int(cfg.qat.steps),
        float(cfg.qat.lr),
        float(cfg.qat.momentum),
        align,
        progress=cfg.progress,
        schedule=str(cfg.qat.schedule),
        freeze_bn_after=cfg.qat.freeze_bn_after,
        freeze_observers_after=cfg.qat.freeze_observers_after,
    )
    converted = convert(prepared)
    files = {"qat": export_qdq_onnx(converted, source.out_dir / "model.qat.int8.onnx")}
    if cfg.executorch:
        side = (source.pad_to, source.pad_to)
        path = source.out_dir / "model.qat.int8.pte"
        files["qat_pte"] = lower_to_pte(converted, path, side, dynamic=True, max_side=pte_max_side(cfg, source))
    return files, losses


def pte_max_side(cfg: DictConfig, source: FloatModel) -> int:
    """The largest side an ExecuTorch program of this run takes: the MF scales' largest input, at least 1025."""
    scales = list(cfg.eval.mf_scales or source.mf_scales) if cfg.eval.mf else [1.0]
    return max(MAX_SIDE, math.ceil(source.pad_to * max(1.0, *scales)) + 1)


def file_latency(path: Path, size: tuple[int, int], threads: int, repeats: int, precision: str = "f32") -> dict:
    if path.suffix == XML_SUFFIX:
        return openvino_latency(path, size, threads, repeats=repeats, precision=precision)
    timer = {PTE_SUFFIX: pte_latency, TFLITE_SUFFIX: tflite_latency}.get(path.suffix, ort_latency)
    return timer(path, size, threads, repeats=repeats)


@torch.no_grad()
def logit_parity(model: torch.nn.Module, program: torch.nn.Module, side: int, seed: int = 0) -> float:
    """Max |logit difference| of a float exported file (its runner) against the PyTorch model on one random
    input."""
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(seed))
    return float((program.raw(x) - model.eval().logits(x)).abs().max())


def main(cfg: DictConfig) -> None:
    """``deeplab-mobile quantize``: a problem with the input, the data or a setting ends with its message
    (``cli.reported``)."""
    quantize(cfg)
