"""Train a DeepLabv3 model; evaluate it single-scale and MF + flip at the end.

    python scripts/train.py head=no_aspp os=16                    # PASCAL VOC trainaug, the official recipe
    python scripts/train.py data=synthetic                        # the generated dataset, on CPU
    python scripts/train.py data=synthetic hydra.run.dir=outputs/train/<run> resume=true
    torchrun --nproc_per_node=4 scripts/train.py trainer.sync_bn=true
    python scripts/train.py os=16 trainer.final_os=8 trainer.final_os_iters=3000   # DeepLabv3: end at OS8
    python scripts/train.py -m experiment=head_os data=synthetic   # a sweep -> scripts/ablation_table.py

The run folder (hydra.run.dir) receives .hydra/config.yaml, train.log, checkpoints/last.pt, tb/ (TensorBoard),
metrics.json, per_class_iou.csv and status.json.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from run_folder import at_output_stride, final_lr, final_stage, final_stage_record, set_output_stride

from deeplab_mobile.complexity import model_complexity
from deeplab_mobile.data import DatasetError, EvalTransform, Normalize, TrainTransform, VOCSegmentation, class_names
from deeplab_mobile.data.loader import eval_loader
from deeplab_mobile.data.synthetic import write_synthetic_voc
from deeplab_mobile.data.transforms import mean_pixel
from deeplab_mobile.engine.board import Board
from deeplab_mobile.engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint
from deeplab_mobile.engine.distributed import (
    Dist,
    barrier,
    broadcast_buffers,
    cleanup,
    init_distributed,
    shard,
    wrap_model,
)
from deeplab_mobile.engine.evaluator import evaluate, evaluate_modes
from deeplab_mobile.engine.report import write_metrics
from deeplab_mobile.engine.schedule import two_stage_poly
from deeplab_mobile.engine.trainer import (
    NonFiniteLoss,
    Trainer,
    TrainSettings,
    autocast_dtype,
    memory_format,
    param_groups,
)
from deeplab_mobile.models import describe_model

log = logging.getLogger(__name__)

# Settings that define a run: a resume with any of them changed is refused.
IDENTITY = (
    "model", "os", "width", "tap", "num_classes", "encoder_weights", "data.name", "data.train_split",
    "data.crop_size", "data.scales", "data.batch_size", "optim", "sched", "trainer.iters", "trainer.seed",
    "trainer.amp", "trainer.freeze_bn", "trainer.sync_bn", "trainer.final_os", "trainer.final_os_iters",
    "trainer.final_lr",
)  # fmt: skip


class ConfigMismatch(ValueError):
    """``resume=true`` on a run folder whose checkpoint was trained with different settings."""


def identity(cfg: DictConfig) -> dict:
    """The resolved values of ``IDENTITY``, flattened to ``{"optim.lr": 0.007, ...}``."""
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            flat[prefix] = value

    for key in IDENTITY:
        value = OmegaConf.select(cfg, key, default=None)
        walk(key, OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
    return flat


def check_same_run(saved: dict, current: dict, path: Path) -> None:
    changed = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current))
               if saved.get(k) != current.get(k)]  # fmt: skip
    if changed:
        raise ConfigMismatch(f"{path} was trained with other settings; refusing to resume:\n  " + "\n  ".join(changed))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def datasets(cfg: DictConfig, mean, env: Dist) -> tuple[VOCSegmentation, VOCSegmentation]:
    data = cfg.data
    if data.generate:  # the generated dataset is written once (by the first process), then read by all
        if env.main:
            write_synthetic_voc(**data.generate)
        barrier(env)
    try:
        transform = TrainTransform(data.crop_size, mean=mean, scales=data.scales)
        train_set = VOCSegmentation(data.root, data.train_split, transform)
        val_set = VOCSegmentation(data.root, data.val_split, EvalTransform())
    except DatasetError as exc:
        raise DatasetError(f"{exc}\n\n{data.help}") from exc
    return train_set, val_set


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, stage: tuple[int, int] | None,
                    lr: float | None):  # fmt: skip
    """``sched`` over all iterations; with ``lr`` (``trainer.final_lr``), ``sched`` until the final stage ``stage``,
    then poly again from ``lr`` to zero over it (DeepLabv3's two trainings: ``sched.total_iters`` at the switch)."""
    if lr is None:
        return instantiate(cfg.sched)(optimizer)
    first_total, power = int(cfg.sched.total_iters), float(cfg.sched.power)
    return two_stage_poly(optimizer, stage[0], int(cfg.trainer.iters), power, lr, first_total)


def train(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Train (or resume) the run in ``out_dir``; returns the final ``metrics.json`` content."""
    out_dir = Path(out_dir)
    env = init_distributed(cfg.trainer.device)
    if not env.main:  # under torchrun every rank logs into the same train.log: the others report warnings only
        logging.getLogger().setLevel(logging.WARNING)
    seed_everything(cfg.trainer.seed)
    stage = final_stage(cfg)  # (iteration, stride) of trainer.final_os; refused here if it cannot be honoured
    stage_lr = final_lr(cfg)  # the same for trainer.final_lr
    model_cfg = cfg.model.copy()
    if cfg.resume and last_checkpoint(out_dir).is_file():
        model_cfg.encoder.weights = None  # every weight comes from the checkpoint: no download, no weights file
    model = instantiate(model_cfg)
    normalize = Normalize(model.encoder.mean, model.encoder.std)
    train_set, val_set = datasets(cfg, model.encoder.mean, env)
    fill = mean_pixel(model.encoder.mean)
    names = class_names(cfg.data.name, cfg.num_classes)

    model = model.to(env.device, memory_format=memory_format(cfg.trainer.channels_last))
    net = wrap_model(model, env, cfg.trainer.sync_bn)

    def evaluation_net() -> torch.nn.Module:  # at eval.os (null: the trained stride): a copy, refreshed before use
        other = at_output_stride(model_cfg, model, cfg.eval.os)
        return other.to(env.device, memory_format=memory_format(cfg.trainer.channels_last))

    eval_net = evaluation_net()

    def to_final_stride() -> None:  # trainer.final_os: the same parameters (the optimizer's) at another stride
        nonlocal eval_net
        set_output_stride(model_cfg, model, stage[1])
        eval_net = evaluation_net()
        log.info("iteration %d: training goes on at output stride %d (trainer.final_os)", stage[0], stage[1])

    optimizer = instantiate(cfg.optim)(param_groups(model, cfg.optim.weight_decay))
    scheduler = build_scheduler(cfg, optimizer, stage, stage_lr)
    settings = TrainSettings(
        batch_size=cfg.data.batch_size,
        workers=cfg.data.workers,
        **{k: v for k, v in cfg.trainer.items() if k in TrainSettings.__dataclass_fields__},
    )
    dtype = autocast_dtype(settings.amp, env.device)
    board = Board(out_dir / "tb", enabled=env.main)
    try:
        val_loader = eval_loader(shard(val_set, env), cfg.eval.batch_size, cfg.eval.workers)
        eval_kwargs = dict(pad_to=cfg.eval.pad_to, fill=fill, device=env.device, autocast_dtype=dtype, env=env)

        def model_to_evaluate() -> torch.nn.Module:  # the bare model: DDP's forward would be a collective
            broadcast_buffers(model, env)
            if eval_net is not model:
                eval_net.load_state_dict(model.state_dict())
            return eval_net

        def periodic_eval(iteration: int) -> None:
            keep = cfg.eval.examples
            s, _, examples = evaluate(model_to_evaluate(), normalize, val_loader, cfg.num_classes, keep=keep,
                                      **eval_kwargs)  # fmt: skip
            log.info("iteration %d: val mIoU %.4f (single scale, OS%d)", iteration, s["miou"], eval_net.output_stride)
            values = {"val/miou": s["miou"], "val/pixel_acc": s["pixel_acc"]}
            values.update({f"val_iou/{name}": v for name, v in zip(names, s["iou"], strict=True) if v == v})
            board.scalars(values, iteration)
            board.examples("val/image_truth_prediction", examples, iteration)

        def on_iteration(iteration: int) -> None:
            if stage and iteration == stage[0]:
                to_final_stride()

        trainer = Trainer(
            net, normalize, optimizer, scheduler, train_set, settings, out_dir, env,
            evaluate=periodic_eval, on_log=board.scalars, config=identity(cfg),
            on_iteration=on_iteration,
        )  # fmt: skip
        if cfg.resume and trainer.ckpt_path.is_file():
            state = load_checkpoint(trainer.ckpt_path, map_location=env.device)
            check_same_run(state.get("config", {}), identity(cfg), trainer.ckpt_path)
            log.info("resuming %s from iteration %d", trainer.ckpt_path, trainer.resume(state))
        elif cfg.resume:
            log.warning("resume=true but %s does not exist: starting at iteration 0", trainer.ckpt_path)
        elif trainer.ckpt_path.is_file():
            raise CheckpointError(
                f"{trainer.ckpt_path} exists: pass resume=true to continue that run, or choose another hydra.run.dir"
            )
        saved_config = out_dir / ".hydra" / "config.yaml"
        if env.main and not saved_config.is_file():  # Hydra writes it; a direct call of train() gets one as well
            saved_config.parent.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, saved_config)
        if stage and trainer.iteration >= stage[0]:  # resumed within the final stage
            to_final_stride()
        write_status(out_dir, "running", env, iteration=trainer.iteration)
        trainer.fit()

        # Final evaluation: single scale, and MF + flip
        # The bare model, not DDP: shards may differ by one batch, and DDP's forward is a collective.
        results = evaluate_modes(
            model_to_evaluate(), normalize, val_loader, cfg.num_classes,
            mf=cfg.eval.mf, mf_scales=cfg.eval.mf_scales, flip=cfg.eval.flip, progress=env.main, **eval_kwargs,
        )  # fmt: skip
        complexity = model_complexity(eval_net)  # the network evaluated: MAdds follow eval.os
        metrics = {
            **describe_model(model),  # its "os" is the stride it ended training at
            **complexity,
            "final_os": final_stage_record(cfg),
            "iteration": trainer.iteration,
            "checkpoint": str(trainer.ckpt_path),
            "eval": {
                "pad_to": cfg.eval.pad_to,
                "mf_scales": list(cfg.eval.mf_scales),
                "flip": cfg.eval.flip,
                "os": eval_net.output_stride,
            },  # fmt: skip
        }
        if env.main:
            write_metrics(out_dir, results, names, metrics)
            hparams = {**describe_model(model), "train_os": cfg.os, "eval_os": eval_net.output_stride,
                       "mf": cfg.eval.mf, "data": cfg.data.name}  # fmt: skip
            summary = {"hparams/miou": results["ss"]["miou"], "hparams/params_m": complexity["params"] / 1e6,
                       "hparams/madds_b": complexity["madds"] / 1e9}  # fmt: skip
            if "mf" in results:
                summary["hparams/miou_mf"] = results["mf"]["miou"]
            board.hparams(hparams, summary, trainer.iteration)
            log.info("val mIoU %s", ", ".join(f"{m} {r['miou']:.4f}" for m, r in results.items()))
    finally:  # also on a crash: the writer's thread must not outlive the run
        board.close()
    write_status(out_dir, "done", env, iteration=trainer.iteration)
    cleanup(env)
    return {**metrics, **results}


def write_status(out_dir: Path, state: str, env: Dist | None = None, **extra) -> None:
    """``status.json``: running / done / failed (with the reason), so a sweep report can tell runs apart."""
    if env is None or env.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "status.json").write_text(json.dumps({"state": state, **extra}, indent=2))


def share_machine(cfg: DictConfig, hydra_cfg) -> None:
    """Jobs that a launcher runs side by side on one machine (joblib) split its cores and its GPUs.

    Each job would otherwise start as many compute threads as the machine has cores, and n jobs would fight
    over them: measured on 2 cores, two concurrent trainings each ran 10-50x slower than one alone. With
    ``trainer.threads=auto`` a job takes cores / n_jobs threads; with ``trainer.device=auto`` and several GPUs,
    job k takes GPU k mod the GPU count. Sequential runs and torchrun processes keep torch's defaults.
    """
    launcher = str(OmegaConf.select(hydra_cfg, "launcher._target_", default="") or "")
    parallel = "joblib" in launcher.lower() and hydra_cfg.mode == RunMode.MULTIRUN
    n_jobs = int(OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=1) or 1) if parallel else 1
    cores = os.cpu_count() or 1
    n_jobs = cores if n_jobs < 0 else n_jobs  # joblib's -1 = as many jobs as cores
    threads = cfg.trainer.threads
    if threads == "auto":
        threads = max(1, cores // n_jobs) if n_jobs > 1 else None
    if threads:
        torch.set_num_threads(int(threads))
    gpus = torch.cuda.device_count()
    if n_jobs > 1 and cfg.trainer.device == "auto" and gpus > 1:
        cfg.trainer.device = f"cuda:{hydra_cfg.job.num % gpus}"
    if n_jobs > 1:
        log.info("job %d, %d at a time: %d CPU threads, device %s", hydra_cfg.job.num, n_jobs,
                 torch.get_num_threads(), cfg.trainer.device)  # fmt: skip


class Terminated(Exception):
    """SIGTERM arrived (``kill``, ``timeout``, a job manager); raised in the main thread so the run unwinds.
    ``Terminated.received`` stays set: code that wraps what it catches (``load_state_dict`` reports it as a
    ``RuntimeError``) must not turn the stop into a failure."""

    received = False


@contextmanager
def sigterm_unwinds():
    """Turn SIGTERM into ``Terminated`` while training.

    By default SIGTERM ends the process on the spot: no ``finally`` runs, status.json keeps saying "running", and
    the DataLoader workers -- children of the forkserver, not of this process -- are left behind (about 0.75 GB
    each; measured: every run stopped this way left its train worker and two eval workers running). Unwinding
    shuts the workers down and records the stop. A handler that is already installed (submitit's, which
    requeues a preempted Slurm job) is left alone.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        Terminated.received = True
        raise Terminated("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    # In a sweep a failed job raises (Hydra records it and goes on with the next job, then reports the failure);
    # a single run exits with status 1 and the message alone.
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        share_machine(cfg, hydra_cfg)
        with sigterm_unwinds():
            train(cfg, out_dir)
    except (NonFiniteLoss, DatasetError, CheckpointError, ConfigMismatch) as exc:
        write_status(out_dir, "failed", reason=str(exc))
        log.error("%s", exc)
        if multirun:
            raise
        sys.exit(1)
    except KeyboardInterrupt:
        write_status(out_dir, "interrupted", reason="stopped by the user; resume=true continues it")
        raise
    except Exception as exc:
        if isinstance(exc, Terminated) or Terminated.received:
            write_status(out_dir, "interrupted", reason="terminated by SIGTERM; resume=true continues it")
            log.error("terminated by SIGTERM at %s; resume=true continues from the last checkpoint", out_dir)
            sys.exit(128 + signal.SIGTERM)  # the shell's convention for "killed by SIGTERM"; ends a sweep too
        write_status(out_dir, "failed", reason=f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    main()
