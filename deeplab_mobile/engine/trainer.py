"""The training loop: SGD with per-iteration poly decay, a loss ignoring 255 (``engine.losses``), mixed precision
on CUDA, atomic checkpoints with every random state, periodic evaluation, DeepLabv3's final stage at another
output stride, and a stop on a non-finite loss."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..data.loader import train_loader
from ..errors import InvalidValue, ProjectError
from .checkpoint import (
    last_checkpoint,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
    weights_sha256,
)
from .distributed import Dist
from .losses import CrossEntropy
from .run import FinalStage, same_run
from .sampler import PositionSeeded, TrainSampler
from .trace import Trace

log = logging.getLogger(__name__)


class NonFiniteLoss(ProjectError, RuntimeError):
    """The loss became NaN or infinite; the message names the iteration and the last good checkpoint."""


@dataclass
class FinalStageSettings:
    """``trainer.final_stage``: DeepLabv3's last stage, the last ``iters`` iterations at output stride ``os`` with
    the same weights, the LR decaying again from ``lr`` (``None``: on the one schedule); ``FinalStage.plan``
    checks it against the run."""

    os: int = 8
    iters: int | None = None  # required: FinalStage.plan names it when it is not given
    lr: float | None = None


@dataclass
class TrainSettings:
    """The ``trainer`` config group's schema (``config.schema`` registers it as ``trainer=default``) and the loop's
    settings. Fields marked ``same_run`` identify a run: a resume with one of them changed is refused."""

    iters: int = same_run(30000)
    seed: int = same_run(0)
    log_every: int = 20
    eval_every: int = 2000  # periodic single-scale val mIoU; 0: only at the end
    ckpt_every: int = 1000
    device: str = "auto"  # auto | cpu | cuda | cuda:1 (auto under the joblib launcher: one GPU per job in turn)
    threads: Any = "auto"  # CPU compute threads, or auto (torch's default; cores / n_jobs under joblib)
    amp: str = same_run("auto")  # auto (CUDA: bf16 where supported, else fp16 + scaler; CPU: off) | bf16 | fp16 | off
    channels_last: Any = "auto"  # auto (on, CUDA and CPU) | true | false (contiguous NCHW)
    freeze_bn: bool = same_run(False)  # keep BN statistics and affine fixed (batches below ~12)
    decay_depthwise: bool = same_run(True)  # weight decay on depthwise kernels (false: TF's MobileNet scopes)
    sync_bn: bool = same_run(False)  # SyncBatchNorm across torchrun processes
    # {os, iters, lr}, typed by FinalStageSettings where it is read (config.run.final_stage): OmegaConf 2.3 cannot
    # apply a command line's {os: 8, iters: N} to a null node of a dataclass type
    final_stage: Any = same_run(None)
    deterministic: bool = False  # bit-identical weights on any x86-64 CPU with AVX2 (docs/reproducibility.md)
    deterministic_threads: int = 2  # the fixed CPU thread count of deterministic mode


def param_groups(model: nn.Module, weight_decay: float, decay_depthwise: bool = True) -> list[dict]:
    """Weight decay on conv/linear weights only; BatchNorm parameters and biases are not decayed, as in DeepLab
    (its L2 regulariser is attached to conv weights). ``decay_depthwise=False`` leaves depthwise kernels undecayed
    too, as TensorFlow's MobileNet training scopes do (``regularize_depthwise=False``)."""
    depthwise = set()
    if not decay_depthwise:
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
                depthwise.add(id(m.weight))
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 and id(p) not in depthwise else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def freeze_batchnorm(model: nn.Module) -> None:
    """Use the stored BN statistics and keep BN's scale and shift fixed (for batches too small for BN statistics;
    DeepLab fine-tunes BN only at batch >= 12). Call again after every ``model.train()``."""
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on CUDA GPUs that support it, else fp16; no autocast on CPU."""
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise InvalidValue(f"amp {amp!r} is not supported; choose auto, bf16, fp16 or off")
    if amp == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]


def memory_format(channels_last: bool | str) -> torch.memory_format:
    """``trainer.channels_last``: ``auto`` is on for every device (faster on CUDA and on CPU alike; see
    results/cpu_recipe.md). Evaluating a run folder uses the run's own setting, so its scores match the training
    run's to the bit."""
    if channels_last not in ("auto", True, False):
        raise InvalidValue(f"channels_last {channels_last!r} is not supported; choose auto, true or false")
    return torch.channels_last if channels_last in ("auto", True) else torch.contiguous_format


class Trainer:
    """Runs iterations ``start .. settings.iters`` of one run folder.

    Args:
        model: the (possibly DDP-wrapped) model, already on ``env.device``.
        normalize: uint8 NHWC batch -> normalised float NCHW (``data.Normalize``).
        optimizer, scheduler: the scheduler steps once per iteration.
        train_set: a dataset whose ``transform`` has ``reseed`` (``TrainTransform``).
        out_dir: the run folder; checkpoints go to ``out_dir/checkpoints/last.pt``.
        evaluate: called as ``evaluate(iteration)`` every ``eval_every`` iterations (on every process).
        on_log: called as ``on_log({tag: value}, iteration)`` with training scalars (main process).
        config: stored in each checkpoint (the resolved run config) so a resume can check it matches.
        final_stage: DeepLabv3's last stage: from its first iteration on, the model runs at its output stride
            (``set_output_stride``: the same parameters, so the optimizer's state and the schedule run on).
        loss: ``loss(logits, masks, step)`` (``engine.losses``; default: cross-entropy over labelled pixels).
        observe: called as ``observe(iteration, images, masks)`` around each step; the context manager it returns
            sees the step run (``engine.oprecord.record_iteration``, for a replay).
        batch_size, workers: the global batch (split over processes) and the DataLoader workers per process.
        progress: the progress bar; trace_steps: the weights' hash after every iteration (``engine.trace``).
    """

    def __init__(
        self,
        model: nn.Module,
        normalize: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        train_set: Dataset,
        settings: TrainSettings,
        out_dir: str | Path,
        env: Dist | None = None,
        evaluate: Callable[[int], None] | None = None,
        on_log: Callable[[dict, int], None] | None = None,
        config: dict | None = None,
        final_stage: FinalStage | None = None,
        loss: nn.Module | None = None,
        observe: Callable[[int, torch.Tensor, torch.Tensor], contextlib.AbstractContextManager] | None = None,
        batch_size: int = 16,
        workers: int = 0,
        progress: bool = True,
        trace_steps: bool = False,
    ) -> None:
        env = env or Dist()
        self.model, self.normalize = model, normalize.to(env.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_set, self.s, self.env = train_set, settings, env
        self.out_dir = Path(out_dir)
        self.evaluate, self.on_log, self.config = evaluate, on_log, config or {}
        self.final_stage, self.observe = final_stage, observe
        self.batch_size, self.workers, self.progress, self.trace_steps = batch_size, workers, progress, trace_steps
        self.loss = (loss or CrossEntropy()).to(env.device)
        self.first_stride = self.bare_model.output_stride
        self.dtype = autocast_dtype(settings.amp, env.device)
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=self.dtype == torch.float16)
        self.iteration = 0
        self.trace = Trace()  # every iteration's loss and every checkpoint's weight hash (engine/trace.py)

    @property
    def ckpt_path(self) -> Path:
        return last_checkpoint(self.out_dir)

    @property
    def bare_model(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    # Checkpoints
    def state(self) -> dict:
        return {
            "iteration": self.iteration,
            "model": self.bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_states(),
            "config": self.config,
            "trace": self.trace.state(),
        }

    def save(self) -> None:
        if self.env.main:
            self.trace.checkpoint(self.iteration, weights_sha256(self.bare_model.state_dict()))
            save_checkpoint(self.ckpt_path, self.state())
            self.trace.write(self.out_dir)  # after the checkpoint: the trace never runs ahead of it

    def resume(self, state: dict | None = None) -> int:
        """Restore everything from a checkpoint (default: this run's ``last.pt``); returns the iteration to
        continue from."""
        state = state if state is not None else load_checkpoint(self.ckpt_path, map_location=self.env.device)
        self.bare_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_states(state["rng"])
        self.iteration = int(state["iteration"])
        self.trace.load(state.get("trace"), self.iteration)
        if self.env.main:  # the trace files as the checkpoint has them (a stop may fall between the two writes)
            self.trace.write(self.out_dir)
        self.set_stride()
        return self.iteration

    def set_stride(self) -> None:
        """Put the model at the output stride of the current iteration (the final stage's, once it has begun)."""
        if self.final_stage is None:
            return
        stride = self.final_stage.stride_at(self.iteration, self.first_stride)
        if stride != self.bare_model.output_stride:
            self.bare_model.set_output_stride(stride)
            log.info("iteration %d: training goes on at output stride %d (the final stage)", self.iteration, stride)

    # Loop
    def loader(self) -> DataLoader:
        s, env = self.s, self.env
        sampler = TrainSampler(
            len(self.train_set), self.batch_size, s.iters, s.seed, self.iteration, env.rank, env.world_size
        )
        # Its own generator: creating the iterator must not draw from the global RNG (bit-identical resume).
        generator = torch.Generator().manual_seed(s.seed)
        return train_loader(
            PositionSeeded(self.train_set, s.seed), sampler.local_batch, self.workers, generator, sampler
        )

    def train_mode(self) -> None:
        self.model.train()
        if self.s.freeze_bn:
            freeze_batchnorm(self.model)

    def step(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One optimisation step; returns the loss (a 0-d tensor, before the update)."""
        x = self.normalize(images.to(self.env.device, non_blocking=True))
        masks = masks.to(self.env.device, non_blocking=True)
        amp = torch.autocast(self.env.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        with amp:
            logits = self.model(x)
        loss = self.loss(logits, masks, self.iteration)
        finite = torch.isfinite(loss).float()
        if self.env.enabled:  # every process stops together
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not finite.item():
            last = f"the last good checkpoint is {self.ckpt_path}" if self.ckpt_path.is_file() else "no checkpoint yet"
            raise NonFiniteLoss(
                f"loss is {loss.item()} at iteration {self.iteration + 1}; stopping ({last}). "
                "Lower the learning rate, or use amp=off / amp=bf16 if fp16 overflows."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    def fit(self, until: int | None = None) -> None:
        """Train to ``settings.iters``, or stop after iteration ``until`` (a replay of the run's beginning)."""
        s, env = self.s, self.env
        self.set_stride()
        self.train_mode()
        bar = tqdm(total=s.iters, initial=self.iteration, desc="train", disable=not (self.progress and env.main))
        tick, since, seen_loss = time.perf_counter(), 0, 0.0
        for images, masks in self.loader():
            observed = self.observe(self.iteration + 1, images, masks) if self.observe else contextlib.nullcontext()
            with observed:
                loss = self.step(images, masks)
            self.iteration += 1
            since += 1
            value = float(loss)
            seen_loss += value
            self.trace.add(value, weights_sha256(self.bare_model.state_dict()) if self.trace_steps else None)
            bar.update(1)
            if until is not None and self.iteration >= until:
                break
            if self.iteration % s.log_every == 0 or self.iteration == s.iters:
                now = time.perf_counter()
                values = {
                    "train/loss": seen_loss / since,
                    "train/lr": self.optimizer.param_groups[0]["lr"],
                    "train/img_per_s": since * self.batch_size / (now - tick),
                }
                bar.set_postfix(
                    loss=f"{values['train/loss']:.4f}",
                    lr=f"{values['train/lr']:.2e}",
                    img_s=f"{values['train/img_per_s']:.1f}",
                )
                if self.on_log and env.main:
                    self.on_log(values, self.iteration)
                tick, since, seen_loss = now, 0, 0.0
            if self.evaluate and s.eval_every and self.iteration % s.eval_every == 0 and self.iteration < s.iters:
                self.evaluate(self.iteration)
                self.train_mode()
            if self.iteration % s.ckpt_every == 0 or self.iteration == s.iters:
                self.save()
            self.set_stride()
        bar.close()
