"""The evaluation app: a training run folder's checkpoint on a split of its data, or a model file (``weights=FILE``,
e.g. DeepLab's official checkpoint converted) on ``data``, single scale and MF + flip, each at its own output stride
(``scripts/eval.py`` is its command line; docs/evaluation.md, docs/model_zoo.md).

The network and data come from the run's own config, and so do the evaluation's settings unless given (``eval.os``,
``eval.mf_os``, ``eval.mf_scales``); a model file is evaluated at its own stride, padded to 513, MF at VOC's six
scales unless given. Every evaluation is its own record, ``<run>/eval/<name>/metrics.json`` and
``per_class_iou.csv`` (a model file's: ``outputs/eval/<file name>/<name>/`` or under ``out_dir``), named from its
settings (strides, scales, flip, and the split, checkpoint and data when not the run's own), so the training's
``metrics.json`` and earlier evaluations are never overwritten.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ..config.data import prepare_data
from ..config.evaluation import check_protocol, evaluation_data, protocol
from ..config.paths import eval_dir
from ..config.run import final_stage
from ..config.source import from_config
from ..data import DatasetError
from ..data.manifest import check_splits, data_manifest
from ..deploy.exported import as_network
from ..engine.distributed import Dist, cleanup, init_distributed
from ..engine.evaluator import run_protocol
from ..engine.report import metrics_record, write_metrics
from ..engine.run import SettingError
from ..engine.trainer import autocast_dtype, memory_format
from ..environment import write_environment
from ..errors import InvalidValue, ProjectError
from ..models import DeepLabV3, build_model, describe_model
from ..runfolder import RunFolder, check_writable, find_runs
from ..table7 import MF_SCALES

log = logging.getLogger(__name__)


def settings(cfg: DictConfig, defaults: DictConfig) -> DictConfig:
    """The evaluation settings: each ``eval`` key given on the command line, else the default (the run's own)."""
    merged = OmegaConf.create({})
    for key in ("os", "mf_os", "mf_scales", "flip", "mf", "tile"):
        given = cfg.eval.get(key)
        merged[key] = given if given is not None else defaults.get(key)
    return merged


def record_name(cfg: DictConfig, split: str, run: DictConfig, iteration) -> str:
    """What is not the run's own (the split, the checkpoint, the data), or ``name``."""
    parts = []
    if split != run.data.val_split:
        parts.append(f"split-{split}")
    if cfg.checkpoint:
        parts.append(f"ckpt-{Path(cfg.checkpoint).stem}-it{iteration}")
    if cfg.data_root:
        parts.append(f"data-{hashlib.sha1(str(Path(cfg.data_root).resolve()).encode()).hexdigest()[:8]}")
    return cfg.name or "_".join(parts)


@dataclass
class Subject:
    """What an evaluation scores: a model, its classes, the data it is scored on and where its records go."""

    model: DeepLabV3
    classes: tuple[str, ...]
    data: DictConfig  # root, val_split, name
    defaults: DictConfig  # the eval settings used where the command line gives none
    pad_to: int
    out_root: Path  # records go to <out_root>/<name>/
    name: str  # the record's name without the protocol's part
    info: dict  # recorded in metrics.json
    channels_last: bool = False
    mean: tuple[float, ...] | None = None  # the normalisation: an export's, else the model's encoder's
    std: tuple[float, ...] | None = None
    network: DeepLabV3 | None = None  # an export's network, built from its export.json: its Params and MAdds
    one_size: bool = False  # an export of one input size: single scale only (MF resizes the input)


def run_subject(cfg: DictConfig) -> Subject:
    """A training run folder's checkpoint, on the run's data unless told otherwise."""
    source = from_config(cfg, keys=("run_dir",))
    run = source.run
    split = cfg.split or run.data.val_split
    data = run.data.copy()
    with open_dict(data):
        data.root, data.val_split = cfg.data_root or run.data.root, split
    stage = final_stage(run)
    return Subject(
        model=source.model,
        classes=source.classes,
        data=data,
        defaults=run.get("eval") or OmegaConf.create({}),
        pad_to=cfg.eval.pad_to if cfg.eval.pad_to is not None else source.pad_to,
        out_root=Path(cfg.out_dir) if cfg.out_dir else RunFolder(source.path).eval,
        name=record_name(cfg, split, run, source.iteration),
        info={
            "final_os": stage.record() if stage else None,
            "iteration": source.iteration,
            "checkpoint": str(source.checkpoint),
        },
        channels_last=bool(run.trainer.channels_last),
    )


def file_subject(cfg: DictConfig, env: Dist | None = None) -> Subject:
    """A model file (``weights=FILE``) on the composed ``data``: at the file's output stride unless ``eval.os``,
    padded to DeepLab's 513 unless ``eval.pad_to``, MF at VOC's six scales unless ``eval.mf_scales``."""
    source = from_config(cfg, keys=("weights",))
    model, network, free = source.model, None, True
    if not source.pytorch:  # an export: its runner as the network it came from, counted on that network
        meta = source.export
        if meta.labels:
            raise SettingError(f"weights={cfg.weights}: a label-map export has no scores to average; export logits")
        free = meta.static is None
        model = as_network(source.model, meta.os)
        network = build_model(
            meta.encoder, meta.head, meta.os, meta.width, meta.tap, meta.num_classes, geometry=meta.geometry
        )
    data = cfg.data.copy()
    with open_dict(data):
        data.root = cfg.data_root or data.root
        data.val_split = cfg.split or data.val_split
    prepare_data(data, env, cfg.progress)
    out_root = Path(eval_dir(None, cfg.weights, cfg.out_dir))
    return Subject(
        model=model,
        classes=source.classes,
        data=data,
        defaults=OmegaConf.create({"mf": free, "mf_scales": MF_SCALES}),
        pad_to=cfg.eval.pad_to if cfg.eval.pad_to is not None else source.pad_to,
        out_root=out_root,
        name=cfg.name or f"{data.name}-{data.val_split}",
        info=source.origin,
        mean=source.mean,
        std=source.std,
        network=network,
        one_size=not free,
    )


def evaluate_run(cfg: DictConfig) -> dict:
    """Load the run's model and checkpoint (or the model file), evaluate, write the record; returns its content
    (and its path)."""
    if bool(cfg.get("run_dir")) == bool(cfg.get("weights")):
        raise SettingError("give one of run_dir=<training run folder> or weights=<model file>")
    env = init_distributed(cfg.device)
    subject = run_subject(cfg) if cfg.get("run_dir") else file_subject(cfg, env)
    check_writable(subject.out_root, "where the evaluation's records go (out_dir=)")
    model, data = subject.model, subject.data
    ev = settings(cfg, subject.defaults)
    if subject.one_size and ev.mf:
        log.info("%s: exported for one input size: single scale only (MF needs a free-size export)", cfg.weights)
        ev.mf = False
    if ev.mf and ev.mf_scales is None:
        raise InvalidValue(f"{cfg.run_dir}: the run's config has no eval.mf_scales; pass eval.mf_scales=[...]")
    proto = check_protocol(protocol(ev), model, cfg.eval)
    model.to(env.device, memory_format=memory_format(subject.channels_last))

    name = subject.name if cfg.name else "_".join(p for p in (proto.name(model), subject.name) if p)
    num_classes = len(subject.classes)
    source = None if cfg.data_root or not cfg.get("run_dir") else str(RunFolder(cfg.run_dir).config)
    mean = subject.mean or model.encoder.mean
    std = subject.std or model.encoder.std
    val = evaluation_data(data, data.val_split, num_classes, mean, std, cfg.eval, subject.pad_to, env, source)
    manifest = data_manifest({data.val_split: val.loader.dataset})
    problems = check_splits({data.val_split: val.loader.dataset}, manifest, num_classes, env.main and cfg.progress)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DatasetError(f"{len(problems)} problem(s) in the data, found before evaluating: {shown}")
    results, record, per_image = run_protocol(
        model,
        val.normalize,
        val.loader,
        num_classes,
        proto,
        device=env.device,
        autocast_dtype=autocast_dtype(cfg.amp, env.device),
        env=env,
        progress=env.main and cfg.progress,
        network=subject.network,
    )
    record["eval"]["pad_to"] = subject.pad_to
    metrics = metrics_record(
        results,
        subject.classes,
        describe_model(subject.network or model),  # "os": the stride the checkpoint ended at (a file's own)
        record,
        data.val_split,
        **subject.info,
        name=name,
        data_root=str(data.root),
    )
    out_dir = subject.out_root / name
    if env.main:
        path = write_metrics(out_dir, metrics, per_image)
        write_environment(out_dir, config=OmegaConf.to_container(cfg, resolve=True), data=manifest)
        strides = {"ss": record["eval"]["os"], "mf": record["eval"].get("mf_os")}
        for mode, r in results.items():
            print(f"{data.val_split} {mode} (OS{strides[mode]}): mIoU {r['miou']:.4f}  pixel acc {r['pixel_acc']:.4f}")
        print(f"Params {metrics.params / 1e6:.3f}M  MAdds {metrics.madds / 1e9:.2f}B  -> {path}")
    cleanup(env)
    return {**metrics.to_dict(), **results, "record": str(out_dir)}


EXPECTED = (ProjectError,)  # a sweep goes on past a run that fails with one of these


def sweep_runs(folder: Path) -> list[Path]:
    """The training runs of a sweep folder (``outputs/multirun/<date>``), in name order; [] when ``folder`` is itself
    a run or holds none (``runfolder.find_runs``)."""
    return [] if RunFolder(folder).is_run() else find_runs(folder)


def evaluate_sweep(cfg: DictConfig, runs: list[Path]) -> list[str]:
    """Evaluate every finished run of a sweep with the same settings (each into its own record); returns one line
    per run that was skipped or failed."""
    problems = []
    for i, run in enumerate(runs, 1):
        state = RunFolder(run).state()
        if state != "done":
            problems.append(f"{run}: skipped, its training is {state or 'without status.json'}")
            continue
        print(f"[{i}/{len(runs)}] {run}")
        one = cfg.copy()
        with open_dict(one):
            one.run_dir = str(run)
            if cfg.out_dir:  # each run's records in a folder of its own under out_dir
                one.out_dir = str(Path(cfg.out_dir) / run.relative_to(Path(cfg.run_dir)))
        try:
            evaluate_run(one)
        except EXPECTED as exc:
            problems.append(f"{run}: {exc}")
    return problems


def main(cfg: DictConfig) -> None:
    """``deeplab-mobile eval``: one run, model file or record; a sweep folder as ``run_dir`` evaluates each of its
    finished runs and lists those it could not (a problem with the folder, checkpoint, data or a setting ends with
    its message: ``cli.reported``)."""
    runs = sweep_runs(Path(cfg.run_dir)) if cfg.get("run_dir") and not cfg.get("weights") else []
    if runs:
        problems = evaluate_sweep(cfg, runs)
        for line in problems:
            log.error("%s", line)
        print(f"evaluated {len(runs) - len(problems)} of {len(runs)} runs of {cfg.run_dir}")
        if problems:
            sys.exit(1)
        return
    evaluate_run(cfg)
