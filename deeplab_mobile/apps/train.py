"""The training app: a composed config -> a trained run folder (``scripts/train.py`` is its command line).

The run folder's layout and state are ``runfolder``'s (docs/training.md#the-run-folder). Every check that can
refuse a start runs before anything is written into the folder; the config, the log and the status are written
once the attempt begins.
"""

from __future__ import annotations

import logging
import logging.handlers
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
from torch import nn
from torch.utils.data import Dataset

from .. import determinism
from ..config.data import open_data_split, prepare_data
from ..config.evaluation import EvalData, check_protocol, evaluation_data, protocol
from ..config.loss import build_loss, counted_weights, loss_settings, weight_rules
from ..config.model import build_model
from ..config.plan import deterministic_threads, plan_run, resume_mode, resuming
from ..config.run import build_scheduler, saved_identity
from ..data import DatasetError, TrainTransform
from ..data.manifest import check_splits, data_manifest
from ..engine.board import Board
from ..engine.checkpoint import load_checkpoint
from ..engine.distributed import Dist, broadcast_buffers, cleanup, init_distributed, wrap_model
from ..engine.evaluator import evaluate, run_protocol
from ..engine.report import metrics_record, write_metrics
from ..engine.run import SettingError, check_same_run, run_guarded
from ..engine.trainer import Trainer, autocast_dtype, memory_format, param_groups
from ..environment import write_environment
from ..errors import ProjectError
from ..files import write_json
from ..models import describe_model, output_stride
from ..models.pretrained import load_weights
from ..runfolder import BOARD, Attempt, RunFolder, read_metrics

log = logging.getLogger(__name__)

# Failures that say all there is to say in their message: no traceback, status "failed", exit status 1.
EXPECTED_ERRORS = (ProjectError,)
BN_MIN_BATCH = 12  # DeepLab fine-tunes BatchNorm only with at least this many images per statistics batch


def finished(cfg: DictConfig, out_dir: Path) -> bool:
    """A resume (``true`` or ``auto``) of a run that is done: nothing to train or write, once its checkpoint is
    known to be of these settings (another setting is refused, as for any resume). Asked before anything is built
    (``train``, ``main``)."""
    folder = RunFolder(out_dir)
    if resume_mode(cfg) not in (True, "auto") or folder.state() != "done" or not folder.last_checkpoint.is_file():
        return False
    planned = plan_run(cfg, out_dir).identity  # the network of weights=, a folder dataset's classes resolved
    check_same_run(saved_identity(load_checkpoint(folder.last_checkpoint)), planned, folder.last_checkpoint)
    log.info("%s: done (status.json); nothing to do", out_dir)
    return True


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
    n = cfg.seeds
    if n < 1:
        raise SettingError(f"seeds must be at least 1, got {n}")
    if n == 1:
        return
    if not sweep:
        raise SettingError(f"seeds={n} runs every setting with trainer.seed 0..{n - 1} in a sweep: add -m")
    if not 0 <= cfg.trainer.seed < n:
        raise SettingError(
            f"seeds={n} sweeps trainer.seed over 0..{n - 1}, but trainer.seed={cfg.trainer.seed} was given too: "
            "give one of them"
        )


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
        raise ChildFailed(f"the deterministic run in {out_dir} ended with exit status {rc}: its train.log says why")
    if rc:
        sys.exit(rc)
    return True


class JobError(ProjectError, RuntimeError):
    """A sweep's job that failed, with the command that finishes the sweep."""


class ChildFailed(ProjectError, RuntimeError):
    """A deterministic run's child process ended with an error it has reported itself."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_help(data: DictConfig) -> str:
    """What to do about a dataset that cannot be read: the data config's ``help``; for a generated dataset whose
    generation is off (``data.generate=null``), that ``data.root`` must hold one already."""
    if "data.generate" in str(data.help) and data.get("generate") is None:  # a generated dataset's help, off
        return (
            f"data.generate is null, so data.root={data.root} must hold a dataset in the VOC layout already "
            "(scripts/make_synthetic.py writes the generated one)"
        )
    return str(data.help)


class TrainingRun:
    """One run of ``train``: planned from ``cfg`` (``config.plan``), then the model, data, optimizer and trainer built
    from the plan's read-only config in ``out_dir``."""

    def __init__(
        self,
        cfg: DictConfig,
        out_dir: str | Path,
        hydra: DictConfig | None = None,
        attempt: Attempt | None = None,
        held_log: logging.handlers.MemoryHandler | None = None,
    ) -> None:
        # Settings are checked, and the config resolved, before anything is built, downloaded or written
        self.plan = plan = plan_run(cfg, out_dir, hydra)
        cfg = plan.config
        self.cfg, self.out_dir, self.hydra = cfg, plan.out_dir, hydra
        self.folder = RunFolder(self.out_dir)
        self.attempt = attempt or Attempt(self.folder)
        self.board, self.log_file = None, None
        self.held_log = held_log
        self.env = env = init_distributed(cfg.trainer.device)
        if not env.main:  # under torchrun every rank logs into the same train.log: the others report warnings only
            logging.getLogger().setLevel(logging.WARNING)
        self.determinism = determinism.apply(plan.threads, env.device) if plan.threads else None
        seed_everything(cfg.trainer.seed)
        self.resuming, self.stage, self.names = plan.resuming, plan.stage, plan.names
        check_batch(cfg, env)
        self.model = self.build_model()
        self.protocol = check_protocol(protocol(cfg.eval), self.model, cfg.eval)
        prepare_data(cfg.data, env, cfg.progress)
        self.train_set, val = self.open_data()
        self.normalize, self.val_loader = val.normalize, val.loader
        self.check_data()
        self.loss = self.build_loss()
        self.model.to(env.device, memory_format=memory_format(cfg.trainer.channels_last))
        if self.determinism and env.device.type == "cuda":
            self.determinism["nondeterministic_ops"] = determinism.report_cuda_ops(self.model, env.device)
        net = wrap_model(self.model, env, cfg.trainer.sync_bn)
        # _convert_: plain lists (AdamW's betas), which the checkpoint keeps and torch.load(weights_only=True) reads
        optimizer = instantiate(cfg.optim, _convert_="all")(
            param_groups(self.model, cfg.optim.weight_decay, cfg.trainer.decay_depthwise)
        )
        scheduler = build_scheduler(cfg, optimizer, self.stage)
        self.dtype = autocast_dtype(cfg.trainer.amp, env.device)
        self.trainer = Trainer(
            net,
            self.normalize,
            optimizer,
            scheduler,
            self.train_set,
            OmegaConf.to_object(cfg.trainer),
            self.out_dir,
            env,
            evaluate=self.periodic_eval,
            on_log=lambda values, iteration: self.board.scalars(values, iteration),
            config=plan.identity,
            final_stage=self.stage,
            loss=self.loss,
            batch_size=cfg.data.batch_size,
            workers=cfg.data.workers,
            progress=cfg.progress,
            trace_steps=self.determinism is not None,
        )

    def build_model(self) -> nn.Module:
        """The plan's network; its weights from ``weights=`` or the encoder's (a resume takes every weight from its
        checkpoint)."""
        cfg, plan, main = self.cfg, self.plan, self.env.main
        model = build_model(cfg.model, weights=not plan.resuming)
        adopted = plan.adopted
        if adopted and not plan.resuming:
            skipped = load_weights(model, adopted.state, cfg.weights, other_classes=True)
            if main and skipped:
                log.info(
                    "weights=%s: %s; %d classes -> %d: every weight but the classifier (%s), re-initialised",
                    cfg.weights,
                    adopted.description,
                    adopted.num_classes,
                    cfg.num_classes,
                    ", ".join(skipped),
                )
            elif main:
                log.info("weights=%s: %s, every weight from it", cfg.weights, adopted.description)
        note, weights = cfg.data.random_init_cost, cfg.encoder_weights
        if note and not plan.resuming and not adopted and weights in (None, "random") and main:
            log.warning("encoder_weights=%s: %s", weights, note)
        return model

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
            raise DatasetError(f"{exc}\n\n{data_help(data)}") from exc
        return train_set, val

    def check_data(self) -> None:
        """Every split the run reads (train, val), read whole with check_data's rules before training starts, so a
        bad mask anywhere ends the run now, not at its final evaluation; a split found clean is not read again on
        the next run (``data.manifest.check_splits``). The splits' manifest is the run's record too."""
        splits = {self.cfg.data.train_split: self.train_set}
        val = getattr(self.val_loader, "dataset", None)
        if val is not None:
            splits[self.cfg.data.val_split] = val
        self.manifest = data_manifest(splits)
        problems = check_splits(splits, self.manifest, self.cfg.num_classes, self.env.main and self.cfg.progress)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise DatasetError(
                f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in the data, found before training: "
                f"{shown} (scripts/check_data.py lists them all)"
            )

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
        """Resume from the folder's checkpoint when resuming; then the attempt begins: status, log, TensorBoard, the
        run's config beside it."""
        trainer, cfg = self.trainer, self.cfg
        if self.resuming:
            state = load_checkpoint(trainer.ckpt_path, map_location=self.env.device)
            check_same_run(saved_identity(state), self.plan.identity, trainer.ckpt_path)
            log.info("resuming %s from iteration %d", trainer.ckpt_path, trainer.resume(state))
        if self.env.main:
            self.attempt.begin(trainer.iteration)
            self.log_file = self.folder.open_log(self.held_log)
            if self.determinism:
                log.info(
                    "trainer.deterministic=true: %s",
                    " ".join(f"{k}={v}" for k, v in self.determinism["pinned_env"].items()),
                )
        self.board = Board(self.folder.path / BOARD, enabled=self.env.main)
        # Hydra leaves the run folder to this app (conf/train.yaml: hydra.output_subdir null); a folder dataset's
        # classes and the network of weights= are in the config written here, not in the command line's
        if self.env.main:
            record_config(self.folder, cfg, self.hydra)
        self.record_environment()

    def record_environment(self) -> None:
        """``environment.json``: the code, libraries, hardware, numerics variables, the config's hash and the data's
        manifest (written at the start and again at the end, when every library the run uses has been imported)."""
        if not self.env.main:
            return
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
        metrics = metrics_record(
            results,
            self.names,
            describe_model(self.model),  # its "os" is the stride training ended at
            record,  # Params, and the MAdds of each evaluation as it ran
            cfg.data.val_split,
            final_os=self.stage.record() if self.stage else None,
            iteration=self.trainer.iteration,
            checkpoint=str(self.trainer.ckpt_path),
        )
        if self.env.main:
            write_metrics(self.out_dir, metrics, per_image)
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
        return {**metrics.to_dict(), **results}

    def run(self) -> dict:
        try:
            self.start()
            self.trainer.fit()
            result = self.finish()
        except BaseException as exc:
            if self.log_file is not None:  # how the attempt ended, in its own log (the console hears it from the app)
                self.log_file.emit(log.makeRecord(log.name, logging.ERROR, __file__, 0, f"{exc}", None, None))
            raise
        finally:  # also on a crash: the writer's thread must not outlive the run
            self.attempt.iteration = self.trainer.iteration
            if self.board is not None:
                self.board.close()
            if self.log_file is not None:
                self.folder.close_log(self.log_file)
        self.attempt.end("done")
        cleanup(self.env)
        return result


def record_config(folder: RunFolder, cfg: DictConfig, hydra: DictConfig | None) -> None:
    """The config a run is trained with, the command line's overrides and Hydra's own settings (what Hydra would
    write itself: conf/train.yaml leaves .hydra/ to this app)."""
    folder.record_config(
        OmegaConf.to_yaml(cfg),
        OmegaConf.to_yaml(OmegaConf.create(list(hydra.overrides.task))) if hydra else None,
        OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra})) if hydra else None,
    )


def train(cfg: DictConfig, out_dir: str | Path, hydra: DictConfig | None = None) -> dict:
    """Train (or resume) the run in ``out_dir``; returns the final ``metrics.json`` content (a run that is done,
    resumed, is not built again: ``finished``)."""
    if finished(cfg, Path(out_dir)):
        metrics = RunFolder(out_dir).metrics
        return read_metrics(metrics).to_dict() if metrics.is_file() else {}
    return TrainingRun(cfg, out_dir, hydra).run()


def continue_command(cfg: DictConfig, hydra_cfg: DictConfig, out_dir: Path, sweep: bool) -> str:
    """What to type to carry on: the same command in place, resuming what has a checkpoint; a sweep finishes in
    its own folder, each job resumed, started or left alone as it stands (docs/sweeps.md#finishing-a-sweep)."""
    if sweep:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        given = multirun_overrides(sweep_dir) or list(hydra_cfg.overrides.task)
        keep = [o for o in given if not o.startswith(("hydra.sweep.dir=", "resume="))]
        return "finish the sweep with: python scripts/train.py -m " + " ".join(
            [*keep, f"hydra.sweep.dir={quoted(str(sweep_dir))}", "resume=auto"]
        )
    keep = [o for o in hydra_cfg.overrides.task if not o.startswith(("hydra.run.dir=", "resume="))]
    has = RunFolder(out_dir).last_checkpoint.is_file()
    what = "continue it from the last checkpoint" if has else "no checkpoint was written yet: start it again"
    resume = "resume=true" if has else "resume=auto"
    return f"{what} with: python scripts/train.py " + " ".join([*keep, f"hydra.run.dir={quoted(str(out_dir))}", resume])


def multirun_overrides(sweep_dir: Path) -> list[str] | None:
    """The command line's overrides of the sweep in ``sweep_dir`` (Hydra's ``multirun.yaml``)."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    return list(OmegaConf.load(path).hydra.overrides.task)


def main(cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """``scripts/train.py``: share the machine with parallel sweep jobs, train, and record how the run ended. A start
    that cannot be honoured is refused before anything is written; a run that is done and asked to resume has
    nothing to do. In a sweep a failed job raises (Hydra records it and goes on with the next job); a single run
    exits with status 1 and the message alone."""
    out_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    hint = lambda: continue_command(cfg, hydra_cfg, out_dir, sweep)  # noqa: E731
    try:
        resuming(cfg, out_dir, hint() if sweep else None)
        if finished(cfg, out_dir):
            return
        attempt = Attempt(RunFolder(out_dir), lambda: record_config(RunFolder(out_dir), cfg, hydra_cfg))

        def job() -> dict:
            held = RunFolder.hold_log()  # the lines before the attempt begins reach train.log only if it does
            try:
                check_seeds(cfg, sweep)
                return TrainingRun(cfg, out_dir, hydra_cfg, attempt, held).run()
            finally:
                RunFolder.drop_log(held)

        if relaunch_pinned(cfg, hydra_cfg, out_dir, sweep):
            return
        run_guarded(job, attempt, EXPECTED_ERRORS, sweep=sweep, hint=hint)
    except ProjectError as exc:
        if not sweep or "finish the sweep with" in str(exc):
            raise
        raise JobError(f"{out_dir}: {exc}; once that is fixed, {hint()}") from None
