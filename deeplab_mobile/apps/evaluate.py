"""The evaluation app: a training run folder's checkpoint on its validation split, single scale and MF + flip
(``scripts/eval.py`` is its command line; docs/evaluation.md).

The model and data come from the run's own config, and so do the MF scales and the output stride to evaluate at
unless given (``eval.mf_scales``, ``eval.os``). metrics.json and per_class_iou.csv are written into the run folder,
or for another split than the run's val split (``split=test``) into ``<run>/eval/<split>/``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..complexity import model_complexity
from ..data import DatasetError, EvalTransform, Normalize, VOCSegmentation, mean_pixel
from ..data.loader import eval_loader
from ..engine.checkpoint import CheckpointError
from ..engine.distributed import cleanup, init_distributed, shard
from ..engine.evaluator import evaluate_modes
from ..engine.report import write_metrics
from ..engine.trainer import autocast_dtype, memory_format
from ..models import describe_model, output_stride
from .common import class_names, final_stage, load_run

log = logging.getLogger(__name__)


def setting(cfg: DictConfig, run: DictConfig, key: str):
    """``eval.<key>`` from the command line, else the run's own."""
    given = OmegaConf.select(cfg, f"eval.{key}", default=None)
    return given if given is not None else OmegaConf.select(run, f"eval.{key}", default=None)


def evaluate_run(cfg: DictConfig) -> dict:
    """Load the run's model and checkpoint, evaluate, write the files; returns the ``metrics.json`` content."""
    run_dir = Path(cfg.run_dir)
    env = init_distributed(cfg.device)
    loaded = load_run(run_dir, cfg.checkpoint)
    run, model = loaded.config, loaded.model
    mf_scales = setting(cfg, run, "mf_scales")
    if mf_scales is None:
        raise ValueError(f"{run_dir}: the run's config has no eval.mf_scales; pass eval.mf_scales=[...]")
    mf_scales = list(mf_scales)
    model.to(env.device, memory_format=memory_format(run.trainer.channels_last))

    root = cfg.data_root or run.data.root
    split = cfg.split or run.data.val_split
    out_dir = run_dir if split == run.data.val_split else run_dir / "eval" / split
    dataset = VOCSegmentation(root, split, EvalTransform(), num_classes=run.num_classes)
    pad_to = cfg.eval.pad_to if cfg.eval.pad_to is not None else run.data.crop_size
    loader = eval_loader(shard(dataset, env), cfg.eval.batch_size, cfg.eval.workers, mean_pixel(model.encoder.mean),
                         pad_to)  # fmt: skip
    stage = final_stage(run)
    metrics = {**describe_model(model), "final_os": stage.record() if stage else None}
    with output_stride(model, setting(cfg, run, "os")) as evaluated:
        results = evaluate_modes(
            evaluated, Normalize(model.encoder.mean, model.encoder.std).to(env.device), loader, run.num_classes,
            mf=cfg.eval.mf, mf_scales=mf_scales, flip=cfg.eval.flip, device=env.device,
            autocast_dtype=autocast_dtype(cfg.amp, env.device), env=env, progress=env.main and cfg.progress,
        )  # fmt: skip
        metrics.update(model_complexity(evaluated, mf_scales=mf_scales if cfg.eval.mf else None, flip=cfg.eval.flip))
        eval_os = evaluated.output_stride
    metrics.update({
        "iteration": loaded.state.get("iteration"),
        "checkpoint": str(loaded.checkpoint),
        "data_root": str(root),
        "split": split,
        "eval": {"pad_to": pad_to, "mf_scales": mf_scales, "flip": cfg.eval.flip, "os": eval_os},
    })  # fmt: skip
    if env.main:
        path = write_metrics(out_dir, results, class_names(run), metrics)
        for mode, r in results.items():
            print(f"{split} {mode} (OS{eval_os}): mIoU {r['miou']:.4f}  pixel acc {r['pixel_acc']:.4f}")
        print(f"Params {metrics['params'] / 1e6:.3f}M  MAdds {metrics['madds'] / 1e9:.2f}B  -> {path}")
    cleanup(env)
    return {**metrics, **results}


def main(cfg: DictConfig) -> None:
    """``scripts/eval.py``: a problem with the folder, checkpoint, data or a setting ends with its message."""
    try:
        evaluate_run(cfg)
    except (FileNotFoundError, DatasetError, CheckpointError, ValueError) as exc:
        log.error("%s", exc)
        sys.exit(1)
