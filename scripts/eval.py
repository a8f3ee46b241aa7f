"""Evaluate a training run folder on its validation split: single scale, and MF (scales x left-right flip).

    python scripts/eval.py run_dir=outputs/train/<run>
    python scripts/eval.py run_dir=outputs/train/<run> eval.mf=false
    python scripts/eval.py run_dir=outputs/train/<run> eval.os=8          # the same weights at output stride 8
    python scripts/eval.py run_dir=outputs/train/<run> checkpoint=/path/to/last.pt data_root=/data/VOC2012

The model and data come from the run's own config (<run>/.hydra/config.yaml), and so do the MF scales and the
output stride to evaluate at unless given (eval.mf_scales, eval.os). metrics.json (mIoU, per-class
IoU, pixel accuracy, Params, MAdds) and per_class_iou.csv are written into the run folder.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from run_folder import at_output_stride, final_stage_record, load_run_model

from deeplab_mobile.complexity import MF_SCALES, model_complexity
from deeplab_mobile.data import DatasetError, EvalTransform, Normalize, VOCSegmentation, class_names
from deeplab_mobile.data.loader import eval_loader
from deeplab_mobile.data.transforms import mean_pixel
from deeplab_mobile.engine.checkpoint import CheckpointError
from deeplab_mobile.engine.distributed import cleanup, init_distributed, shard
from deeplab_mobile.engine.evaluator import evaluate_modes
from deeplab_mobile.engine.report import write_metrics
from deeplab_mobile.engine.trainer import autocast_dtype, memory_format
from deeplab_mobile.models import describe_model

log = logging.getLogger(__name__)


def evaluate_run(cfg: DictConfig) -> dict:
    """Load the run's model and checkpoint, evaluate, write the files; returns the ``metrics.json`` content."""
    run_dir = Path(cfg.run_dir)
    env = init_distributed(cfg.device)
    run, trained, state, ckpt = load_run_model(run_dir, cfg.checkpoint)
    eval_os = cfg.eval.os if cfg.eval.os is not None else OmegaConf.select(run, "eval.os", default=None)
    mf_scales = cfg.eval.mf_scales if cfg.eval.mf_scales is not None else OmegaConf.select(run, "eval.mf_scales")
    mf_scales = list(mf_scales if mf_scales is not None else MF_SCALES)
    model = at_output_stride(run.model, trained, eval_os)
    model.to(env.device, memory_format=memory_format(run.trainer.channels_last))

    root = cfg.data_root or run.data.root
    dataset = VOCSegmentation(root, run.data.val_split, EvalTransform(), num_classes=run.num_classes)
    loader = eval_loader(shard(dataset, env), cfg.eval.batch_size, cfg.eval.workers)
    pad_to = cfg.eval.pad_to if cfg.eval.pad_to is not None else run.data.crop_size
    results = evaluate_modes(
        model, Normalize(model.encoder.mean, model.encoder.std).to(env.device), loader, run.num_classes,
        mf=cfg.eval.mf, mf_scales=mf_scales, flip=cfg.eval.flip, pad_to=pad_to,
        fill=mean_pixel(model.encoder.mean), device=env.device, autocast_dtype=autocast_dtype(cfg.amp, env.device),
        env=env, progress=env.main,
    )  # fmt: skip
    metrics = {
        **describe_model(trained),
        **model_complexity(model),  # the network evaluated: MAdds follow eval.os
        "final_os": final_stage_record(run),
        "iteration": state.get("iteration"),
        "checkpoint": str(ckpt),
        "data_root": str(root),
        "eval": {"pad_to": pad_to, "mf_scales": mf_scales, "flip": cfg.eval.flip, "os": model.output_stride},
    }
    if env.main:
        path = write_metrics(run_dir, results, class_names(run.data.name, run.num_classes), metrics)
        for mode, r in results.items():
            print(f"{mode} (OS{model.output_stride}): mIoU {r['miou']:.4f}  pixel acc {r['pixel_acc']:.4f}")
        print(f"Params {metrics['params'] / 1e6:.3f}M  MAdds {metrics['madds'] / 1e9:.2f}B  -> {path}")
    cleanup(env)
    return {**metrics, **results}


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate_run(cfg)
    except (FileNotFoundError, DatasetError, CheckpointError) as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
