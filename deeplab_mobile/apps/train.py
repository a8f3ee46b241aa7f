"""The training app: a composed config -> a trained run folder (``scripts/train.py`` is its command line).

The run folder receives .hydra/config.yaml, train.log, checkpoints/last.pt, tb/ (TensorBoard), metrics.json,
per_class_iou.csv and status.json (docs/training.md).
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from .. import determinism
from ..config.data import open_data_split, prepare_data
from ..config.evaluation import EvalData, check_protocol, evaluation_data, protocol
from ..config.loss import DEFAULT as LEGACY_LOSS
from ..config.loss import build_loss, counted_weights, loss_settings, weight_rules
from ..config.machine import share_machine
from ..config.model import adopt_data_classes, adopt_weights, build_model, class_names
from ..config.run import build_scheduler, final_stage, identity
from ..data import DatasetError, TrainTransform
from ..data.manifest import data_manifest
from ..engine.board import Board
from ..engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint
from ..engine.distributed import Dist, broadcast_buffers, cleanup, init_distributed, wrap_model
from ..engine.evaluator import evaluate, run_protocol
from ..engine.report import write_metrics
from ..engine.run import SettingError, check_same_run, run_guarded, write_status
from ..engine.trainer import Trainer, TrainSettings, autocast_dtype, memory_format, param_groups
from ..environment import write_environment
from ..errors import ProjectError
from ..files import write_json, write_text
from ..models import describe_model, output_stride
from ..models.pretrained import load_weights

log = logging.getLogger(__name__)

# Failures that say all there is to say in their message: no traceback, status "failed", exit status 1.
EXPECTED_ERRORS = (ProjectError,)
BN_MIN_BATCH = 12  # DeepLab fine-tunes BatchNorm only with at least this many images per statistics batch


def resuming(cfg: DictConfig, out_dir: Path) -> bool:
    """``resume``: ``false`` refuses a folder that has a checkpoint, ``true`` one that has none (a mistyped folder
    must not start a fresh run), ``auto`` resumes when there is one (a requeued Slurm job)."""
    ckpt = last_checkpoint(out_dir)
    mode = cfg.resume
    if mode not in (False, True, "auto"):
        raise SettingError(f"resume={mode!r} is not supported; choose false, true or auto")
    if mode is True and not ckpt.is_file():
        raise CheckpointError(
            f"resume=true but {ckpt} does not exist: check hydra.run.dir (resume=auto starts a fresh run there)"
        )
    if mode is False and ckpt.is_file():
        raise CheckpointError(f"{ckpt} exists: pass resume=true to continue that run, or choose another hydra.run.dir")
    return ckpt.is_file()


def check_batch(cfg: DictConfig, env: Dist) -> None:
    """BatchNorm and the batch: refuse a per-process batch of 1 (the image-pooling branch's BatchNorm normalises
    one value per channel and fails inside PyTorch), and warn, with the fix, when BatchNorm's statistics come
    from fewer than ``BN_MIN_BATCH`` images (a loss of 3-6 points in DeepLab's experience)."""
    t = cfg.trainer
    if t.freeze_bn:
        return
    batch = int(cfg.data.batch_size)
    local = batch // env.world_size
    if local < 2:
        raise SettingError(
            f"data.batch_size={batch} over {env.world_size} process(es) leaves {local} image per process; "
            "BatchNorm in training needs at least 2: raise data.batch_size or set trainer.freeze_bn=true"
        )
    statistics = batch if env.world_size == 1 or t.sync_bn else local
    if statistics < BN_MIN_BATCH:
        fix = (
            "trainer.sync_bn=true (statistics over all processes' images), or trainer.freeze_bn=true"
            if env.enabled and not t.sync_bn
            else "a larger data.batch_size, or trainer.freeze_bn=true"
        )
        log.warning(
            "BatchNorm statistics over %d images a step, below the %d DeepLab fine-tunes BatchNorm with; consider %s",
            statistics,
            BN_MIN_BATCH,
            fix,
        )


def check_seeds(cfg: DictConfig, sweep: bool) -> None:
    """``seeds=N`` sweeps ``trainer.seed`` over 0..N-1 (conf/train.yaml's ``hydra.sweeper.params``): refused for a
    single run, which it would not change, and beside a ``trainer.seed`` outside that range, which replaced it."""
    n = cfg.get("seeds", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SettingError(f"seeds must be a positive integer, got {n!r}")
    if n == 1:
        return
    if not sweep:
        raise SettingError(f"seeds={n} runs every setting with trainer.seed 0..{n - 1} in a sweep: add -m")
    if not 0 <= cfg.trainer.seed < n:
        raise SettingError(
            f"seeds={n} sweeps trainer.seed over 0..{n - 1}, but trainer.seed={cfg.trainer.seed} was given too: "
            "give one of them"
        )


def deterministic_threads(cfg: DictConfig) -> int | None:
    """``trainer.deterministic``'s fixed thread count (``trainer.deterministic_threads``), or ``None`` when off."""
    mode = OmegaConf.select(cfg, "trainer.deterministic", default=False)
    if mode not in (False, True):
        raise SettingError(f"trainer.deterministic={mode!r} is not supported; choose true or false")
    if not mode:
        return None
    threads = OmegaConf.select(cfg, "trainer.deterministic_threads", default=2)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SettingError(f"trainer.deterministic_threads must be a positive integer, got {threads!r}")
    return threads


def quoted(value: str) -> str:
    """A Hydra override value as a quoted string (a sweep's folder names hold ``=`` and ``,``)."""
    return f"'{value}'" if "'" not in value else f'"{value}"'


def relaunch_pinned(cfg: DictConfig, hydra_cfg: DictConfig, out_dir: Path, sweep: bool) -> bool:
    """Deterministic mode in a process started without its variables (``determinism.pinned_environment``): run
    this job again, in this run folder, in a child process that has them from its start, without the other
    numerics variables of the user's environment. Returns ``False`` when there is nothing to do (train here).
    A failed child has written its status and train.log: a single run exits with its status, a sweep's job
    raises (Hydra records it and goes on)."""
    try:
        threads = deterministic_threads(cfg)
    except SettingError:
        return False  # the run itself refuses the setting, with the message
    if threads is None or not determinism.unpinned(threads):
        return False
    environ = determinism.child_environment(threads)
    dropped = sorted(set(os.environ) - set(environ))
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith(("seeds=", "hydra.run.dir="))]
    command = [sys.executable, "-m", "deeplab_mobile", "train", *overrides, f"hydra.run.dir={quoted(str(out_dir))}"]
    log.info(
        "trainer.deterministic=true: starting the run with %s%s",
        " ".join(f"{k}={v}" for k, v in determinism.pinned_environment(threads).items()),
        f" (leaving out {', '.join(dropped)})" if dropped else "",
    )
    child = subprocess.Popen(command, env=environ)
    try:
        rc = child.wait()
    except BaseException:  # Ctrl-C, SIGTERM: the child stops too, and records it
        child.terminate()
        child.wait()
        raise
    if rc and sweep:
        raise RuntimeError(f"the deterministic run in {out_dir} ended with exit status {rc}: its train.log says why")
    if rc:
        sys.exit(rc)
    return True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingRun:
    """One run of ``train``: the model, data, optimizer and trainer built from ``cfg`` in ``out_dir``."""

    def __init__(self, cfg: DictConfig, out_dir: str | Path) -> None:
        self.cfg, self.out_dir = cfg, Path(out_dir)
        self.env = env = init_distributed(cfg.trainer.device)
        if not env.main:  # under torchrun every rank logs into the same train.log: the others report warnings only
            logging.getLogger().setLevel(logging.WARNING)
        threads = deterministic_threads(cfg)
        self.determinism = determinism.apply(threads, env.device) if threads else None
        seed_everything(cfg.trainer.seed)
        # Settings are checked before anything is built, downloaded or written
        self.resuming = resuming(cfg, self.out_dir)
        self.stage = final_stage(cfg)
        adopt_data_classes(cfg)  # a folder dataset: the class count and names are its classes file's
        self.names = class_names(cfg)
        check_batch(cfg, env)
        self.adopted = adopt_weights(cfg)  # weights=: that network, its weights below
        # a resume takes every weight from its checkpoint
        self.model = build_model(cfg.model, weights=not self.resuming)
        if self.adopted and not self.resuming:
            skipped = load_weights(self.model, self.adopted.state, cfg.weights, other_classes=True)
            if env.main and skipped:
                log.info(
                    "weights=%s: %s; %d classes -> %d: every weight but the classifier (%s), re-initialised",
                    cfg.weights,
                    self.adopted.description,
                    self.adopted.num_classes,
                    cfg.num_classes,
                    ", ".join(skipped),
                )
            elif env.main:
                log.info("weights=%s: %s, every weight from it", cfg.weights, self.adopted.description)
        weights = OmegaConf.select(cfg, "model.encoder.weights", default=None)
        note = OmegaConf.select(cfg, "data.random_init_cost", default=None)
        if note and not self.resuming and not self.adopted and weights in (None, "random") and env.main:
            log.warning("encoder_weights=%s: %s", weights, note)
        self.protocol = check_protocol(protocol(cfg.eval), self.model, cfg.eval)
        prepare_data(cfg.data, env, cfg.progress)
        self.train_set, val = self.open_data()
        self.normalize, self.val_loader = val.normalize, val.loader
        self.loss = self.build_loss()
        self.model.to(env.device, memory_format=memory_format(cfg.trainer.channels_last))
        if self.determinism and env.device.type == "cuda":
            self.determinism["nondeterministic_ops"] = determinism.report_cuda_ops(self.model, env.device)
        net = wrap_model(self.model, env, cfg.trainer.sync_bn)
        decay_depthwise = bool(OmegaConf.select(cfg, "trainer.decay_depthwise", default=True))
        # _convert_: plain lists (AdamW's betas), which the checkpoint keeps and torch.load(weights_only=True) reads
        optimizer = instantiate(cfg.optim, _convert_="all")(
            param_groups(self.model, cfg.optim.weight_decay, decay_depthwise)
        )
        scheduler = build_scheduler(cfg, optimizer, self.stage)
        self.dtype = autocast_dtype(cfg.trainer.amp, env.device)
        settings = TrainSettings(
            batch_size=cfg.data.batch_size,
            workers=cfg.data.workers,
            progress=cfg.progress,
            trace_steps=self.determinism is not None,
            **{k: v for k, v in cfg.trainer.items() if k in TrainSettings.__dataclass_fields__},
        )
        self.board = Board(self.out_dir / "tb", enabled=env.main)
        self.trainer = Trainer(
            net,
            self.normalize,
            optimizer,
            scheduler,
            self.train_set,
            settings,
            self.out_dir,
            env,
            evaluate=self.periodic_eval,
            on_log=self.board.scalars,
            config=identity(cfg),
            final_stage=self.stage,
            loss=self.loss,
        )

    def build_loss(self):
        """The ``loss`` node's module; class weights named by a rule are counted on the training split here, and the
        weights of every rule counted go to ``class_weights.json`` in the run folder."""
        cfg, node = self.cfg, loss_settings(self.cfg)
        counted = counted_weights(
            self.train_set,
            cfg.num_classes,
            list(self.names),
            weight_rules(node),
            cfg.data.name,
            self.env.main and cfg.progress,
        )
        loss = build_loss(node, cfg.num_classes, counted)
        if counted and self.env.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / "class_weights.json", counted)
        return loss

    def open_data(self) -> tuple[Dataset, EvalData]:
        """The training split, and the val split as evaluation reads it; a data problem ends with ``data.help``."""
        cfg, data, encoder = self.cfg, self.cfg.data, self.model.encoder
        try:
            transform = TrainTransform(data.crop_size, encoder.mean, scales=data.scales)
            train_set = open_data_split(data, data.train_split, transform, num_classes=cfg.num_classes)
            val = evaluation_data(
                data, data.val_split, cfg.num_classes, encoder.mean, encoder.std, cfg.eval, cfg.eval.pad_to, self.env
            )
        except DatasetError as exc:
            raise DatasetError(f"{exc}\n\n{data.help}") from exc
        return train_set, val

    def eval_kwargs(self, progress: bool = False) -> dict:
        """The bare model is evaluated (DDP's forward would be a collective, and shards may differ by one batch),
        with rank 0's BatchNorm statistics."""
        broadcast_buffers(self.model, self.env)
        return dict(device=self.env.device, autocast_dtype=self.dtype, env=self.env, progress=progress)

    def periodic_eval(self, iteration: int) -> None:
        kwargs = self.eval_kwargs()
        stride = self.protocol.strides(self.model)[0]  # the protocol's single-scale stride
        with output_stride(self.model, stride) as model:
            s, _, examples, *_ = evaluate(
                model,
                self.normalize,
                self.val_loader,
                self.cfg.num_classes,
                keep=self.cfg.eval.examples,
                tile=self.protocol.tile,
                **kwargs,
            )
        log.info("iteration %d: val mIoU %.4f (single scale, OS%d)", iteration, s["miou"], stride)
        values = {"val/miou": s["miou"], "val/pixel_acc": s["pixel_acc"]}
        values.update({f"val_iou/{name}": v for name, v in zip(self.names, s["iou"], strict=True) if v == v})
        self.board.scalars(values, iteration)
        self.board.examples("val/image_truth_prediction", examples, iteration)

    def start(self) -> None:
        """Resume from the folder's checkpoint when resuming; keep the run's config beside it."""
        trainer, cfg = self.trainer, self.cfg
        if self.resuming:
            state = load_checkpoint(trainer.ckpt_path, map_location=self.env.device)
            saved = dict(state.get("config", {}))
            if not any(k.startswith("loss.") for k in saved):  # written before conf/loss/: it trained with CE
                saved.update({f"loss.{k}": v for k, v in LEGACY_LOSS.items()})
            check_same_run(saved, identity(cfg), trainer.ckpt_path)
            log.info("resuming %s from iteration %d", trainer.ckpt_path, trainer.resume(state))
        saved_config = self.out_dir / ".hydra" / "config.yaml"
        # Hydra writes it; a direct call of train() gets one too; it records the network of weights= and the classes
        # of a folder dataset, which Hydra's copy does not have
        rewrite = self.adopted or OmegaConf.select(cfg, "data.format", default=None) == "folder"
        if self.env.main and (not saved_config.is_file() or rewrite):
            saved_config.parent.mkdir(parents=True, exist_ok=True)
            write_text(saved_config, OmegaConf.to_yaml(cfg))
        self.record_environment()

    def record_environment(self) -> None:
        """``environment.json``: the code, libraries, hardware, numerics variables, the config's hash and the data's
        manifest (written at the start and again at the end, when every library the run uses has been imported)."""
        if not self.env.main:
            return
        val = getattr(self.val_loader, "dataset", None)
        splits = {self.cfg.data.train_split: self.train_set}
        if val is not None:
            splits[self.cfg.data.val_split] = val
        if not hasattr(self, "manifest"):
            self.manifest = data_manifest(splits)
        config = OmegaConf.to_container(self.cfg, resolve=True)
        write_environment(self.out_dir, config=config, data=self.manifest, determinism=self.determinism)

    def finish(self) -> dict:
        """The final evaluation (the protocol's single scale, and MF + flip) and its files; returns the
        ``metrics.json`` content."""
        cfg = self.cfg
        kwargs = self.eval_kwargs(progress=self.env.main and cfg.progress)
        results, record, per_image = run_protocol(
            self.model, self.normalize, self.val_loader, cfg.num_classes, self.protocol, **kwargs
        )
        record["eval"]["pad_to"] = cfg.eval.pad_to
        metrics = {
            **describe_model(self.model),  # its "os" is the stride training ended at
            **record,  # Params, and the MAdds of each evaluation as it ran
            "final_os": self.stage.record() if self.stage else None,
            "iteration": self.trainer.iteration,
            "checkpoint": str(self.trainer.ckpt_path),
            "split": cfg.data.val_split,
        }
        if self.env.main:
            write_metrics(self.out_dir, results, self.names, metrics, per_image)
            self.record_environment()
            hparams = {
                **describe_model(self.model),
                "train_os": cfg.os,
                "eval_os": record["eval"]["os"],
                "mf": cfg.eval.mf,
                "data": cfg.data.name,
            }
            summary = {
                "hparams/miou": results["ss"]["miou"],
                "hparams/params_m": record["params"] / 1e6,
                "hparams/madds_b": record["madds"] / 1e9,
            }
            if "mf" in results:
                summary["hparams/miou_mf"] = results["mf"]["miou"]
            self.board.hparams(hparams, summary, self.trainer.iteration)
            log.info("val mIoU %s", ", ".join(f"{m} {r['miou']:.4f}" for m, r in results.items()))
        return {**metrics, **results}

    def run(self) -> dict:
        try:
            self.start()
            write_status(self.out_dir, "running", self.env.main, iteration=self.trainer.iteration)
            self.trainer.fit()
            result = self.finish()
        finally:  # also on a crash: the writer's thread must not outlive the run
            self.board.close()
        write_status(self.out_dir, "done", self.env.main, iteration=self.trainer.iteration)
        cleanup(self.env)
        return result


def train(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Train (or resume) the run in ``out_dir``; returns the final ``metrics.json`` content."""
    return TrainingRun(cfg, out_dir).run()


def main(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """``scripts/train.py``: share the machine with parallel sweep jobs, train, and record how the run ended. In a
    sweep a failed job raises (Hydra records it and goes on with the next job); a single run exits with status 1
    and the message alone."""
    out_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN

    def job() -> dict:
        check_seeds(cfg, sweep)
        share_machine(cfg, hydra_cfg)
        return train(cfg, out_dir)

    if relaunch_pinned(cfg, hydra_cfg, out_dir, sweep):
        return
    run_guarded(job, out_dir, EXPECTED_ERRORS, sweep=sweep)
