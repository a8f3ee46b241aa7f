"""The evaluation app: a training run folder's checkpoint on a split of its data, single scale and MF + flip, each
at its own output stride (``scripts/eval.py`` is its command line; docs/evaluation.md).

The network and data come from the run's own config, and so do the evaluation's settings unless given (``eval.os``,
``eval.mf_os``, ``eval.mf_scales``). Every evaluation is its own record, ``<run>/eval/<name>/metrics.json`` and
``per_class_iou.csv``, named from its settings (strides, scales, flip, and the split, checkpoint and data when not
the run's own), so the training's ``metrics.json`` and earlier evaluations are never overwritten.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data import DatasetError, EvalTransform, Normalize, VOCSegmentation, mean_pixel
from ..data.loader import eval_loader
from ..engine.checkpoint import CheckpointError
from ..engine.distributed import cleanup, init_distributed, shard
from ..engine.evaluator import run_protocol
from ..engine.report import write_metrics
from ..engine.trainer import autocast_dtype, memory_format
from ..models import describe_model
from .common import check_protocol, class_names, final_stage, load_run, protocol

log = logging.getLogger(__name__)


def settings(cfg: DictConfig, run: DictConfig) -> DictConfig:
    """The evaluation settings: each ``eval`` key given on the command line, else the run's own."""
    merged = OmegaConf.create({})
    for key in ("os", "mf_os", "mf_scales", "flip", "mf"):
        given = OmegaConf.select(cfg, f"eval.{key}", default=None)
        merged[key] = given if given is not None else OmegaConf.select(run, f"eval.{key}", default=None)
    return merged


def record_name(cfg: DictConfig, base: str, split: str, run: DictConfig, iteration) -> str:
    """``base`` (the protocol's name) and what else is not the run's own: the split, the checkpoint, the data."""
    parts = [base]
    if split != run.data.val_split:
        parts.append(f"split-{split}")
    if cfg.checkpoint:
        parts.append(f"ckpt-{Path(cfg.checkpoint).stem}-it{iteration}")
    if cfg.data_root:
        parts.append(f"data-{hashlib.sha1(str(Path(cfg.data_root).resolve()).encode()).hexdigest()[:8]}")
    return cfg.name or "_".join(parts)


def evaluate_run(cfg: DictConfig) -> dict:
    """Load the run's model and checkpoint, evaluate, write the record; returns its content (and its path)."""
    run_dir = Path(cfg.run_dir)
    env = init_distributed(cfg.device)
    loaded = load_run(run_dir, cfg.checkpoint)
    run, model = loaded.config, loaded.model
    ev = settings(cfg, run)
    if ev.mf and ev.mf_scales is None:
        raise ValueError(f"{run_dir}: the run's config has no eval.mf_scales; pass eval.mf_scales=[...]")
    proto = check_protocol(protocol(ev), model, cfg.eval)
    model.to(env.device, memory_format=memory_format(run.trainer.channels_last))

    root = cfg.data_root or run.data.root
    split = cfg.split or run.data.val_split
    name = record_name(cfg, proto.name(model), split, run, loaded.state.get("iteration"))
    dataset = VOCSegmentation(root, split, EvalTransform(), num_classes=run.num_classes)
    pad_to = cfg.eval.pad_to if cfg.eval.pad_to is not None else run.data.crop_size
    loader = eval_loader(shard(dataset, env), cfg.eval.batch_size, cfg.eval.workers, mean_pixel(model.encoder.mean),
                         pad_to)  # fmt: skip
    stage = final_stage(run)
    normalize = Normalize(model.encoder.mean, model.encoder.std).to(env.device)
    results, record = run_protocol(
        model, normalize, loader, run.num_classes, proto, device=env.device,
        autocast_dtype=autocast_dtype(cfg.amp, env.device), env=env, progress=env.main and cfg.progress,
    )  # fmt: skip
    record["eval"]["pad_to"] = pad_to
    metrics = {
        **describe_model(model),  # its "os" is the stride the checkpoint ended training at
        **record,
        "final_os": stage.record() if stage else None,
        "name": name,
        "iteration": loaded.state.get("iteration"),
        "checkpoint": str(loaded.checkpoint),
        "data_root": str(root),
        "split": split,
    }
    out_dir = run_dir / "eval" / name
    if env.main:
        path = write_metrics(out_dir, results, class_names(run), metrics)
        strides = {"ss": record["eval"]["os"], "mf": record["eval"].get("mf_os")}
        for mode, r in results.items():
            print(f"{split} {mode} (OS{strides[mode]}): mIoU {r['miou']:.4f}  pixel acc {r['pixel_acc']:.4f}")
        print(f"Params {metrics['params'] / 1e6:.3f}M  MAdds {metrics['madds'] / 1e9:.2f}B  -> {path}")
    cleanup(env)
    return {**metrics, **results, "record": str(out_dir)}


def main(cfg: DictConfig) -> None:
    """``scripts/eval.py``: a problem with the folder, checkpoint, data or a setting ends with its message."""
    try:
        evaluate_run(cfg)
    except (FileNotFoundError, DatasetError, CheckpointError, ValueError) as exc:
        log.error("%s", exc)
        sys.exit(1)
