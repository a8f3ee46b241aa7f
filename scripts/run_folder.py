"""A training run folder's model, shared by scripts/eval.py and scripts/export.py: the composed config
(<run>/.hydra/config.yaml) and the weights of its checkpoint; and the same network at another output stride
(scripts/train.py and scripts/eval.py: ``eval.os``, ``trainer.final_os``)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from deeplab_mobile.engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint, model_state
from deeplab_mobile.models.encoders._base import check_output_stride


def load_run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a training run folder (no .hydra/config.yaml)")
    return OmegaConf.load(path)


def load_run_model(run_dir: Path, checkpoint: str | Path | None = None) -> tuple[DictConfig, nn.Module, dict, Path]:
    """(run config, model with the checkpoint's weights, checkpoint dict, checkpoint path)."""
    run = load_run_config(run_dir)
    run.model.encoder.weights = None  # the checkpoint holds every weight: no ImageNet download or file needed
    model = instantiate(run.model)
    ckpt = Path(checkpoint) if checkpoint else last_checkpoint(Path(run_dir))
    state = load_checkpoint(ckpt, map_location="cpu")
    try:
        model.load_state_dict(model_state(state, ckpt))
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt}: does not fit the run's model ({exc})") from exc
    set_output_stride(run.model, model, stride_at(run, int(state.get("iteration") or 0)))  # trainer.final_os
    return run, model, state, ckpt


def final_stage(cfg: DictConfig) -> tuple[int, int] | None:
    """``(iteration, output stride)``: from that iteration on, the run trains at ``trainer.final_os``; ``None``
    when it trains at one stride throughout. Refuses a setting it cannot honour."""
    final_os = OmegaConf.select(cfg, "trainer.final_os", default=None)
    if final_os is None:
        return None
    final_os = check_output_stride(final_os)
    iters, last = int(cfg.trainer.iters), int(OmegaConf.select(cfg, "trainer.final_os_iters", default=0) or 0)
    if not 0 < last <= iters:
        raise ValueError(
            f"trainer.final_os={final_os} needs trainer.final_os_iters between 1 and trainer.iters ({iters}), "
            f"got {last}: set trainer.final_os_iters, or trainer.final_os=null to train at one stride"
        )
    return iters - last, final_os


def final_lr(cfg: DictConfig) -> float | None:
    """``trainer.final_lr``: the base LR of the final stage's own poly decay (DeepLabv3: 0.001 after 0.007), or
    ``None`` when one schedule runs over all iterations. Refuses a setting it cannot honour."""
    lr = OmegaConf.select(cfg, "trainer.final_lr", default=None)
    if lr is None:
        return None
    if final_stage(cfg) is None:
        raise ValueError(f"trainer.final_lr={lr} is the LR of the final stage: it needs trainer.final_os")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or lr <= 0:
        raise ValueError(f"trainer.final_lr must be a positive number, got {lr!r}")
    if not str(cfg.sched.get("_target_", "")).endswith("PolynomialLR"):
        raise ValueError(f"trainer.final_lr restarts the poly schedule; sched {cfg.sched.get('_target_')} is not poly")
    return float(lr)


def final_stage_record(cfg: DictConfig) -> dict | None:
    """``metrics.json``'s ``final_os``: the final stage's stride, the iteration it started at and its LR."""
    stage = final_stage(cfg)
    return {"os": stage[1], "from_iteration": stage[0], "lr": final_lr(cfg)} if stage else None


def stride_at(cfg: DictConfig, iteration: int) -> int:
    """The output stride the run's network has after ``iteration`` iterations."""
    stage = final_stage(cfg)
    return stage[1] if stage and iteration >= stage[0] else int(cfg.model.encoder.output_stride)


def _build_at(model_cfg: DictConfig, output_stride: int) -> nn.Module:
    cfg = model_cfg.copy()
    cfg.encoder.output_stride = check_output_stride(output_stride)  # a clear error, not Hydra's wrapped one
    cfg.encoder.weights = None  # every weight comes from the model it stands in for
    with torch.random.fork_rng(devices=[]):  # its random init must not move the run's random stream
        return instantiate(cfg)


def at_output_stride(model_cfg: DictConfig, model: nn.Module, output_stride: int | None) -> nn.Module:
    """``model`` itself, or the same network built at another output stride with a copy of its weights.

    DeepLab evaluates a network trained at OS16 at OS8 too: the model zoo's ``mobilenetv2_coco_voc_trainaug`` is
    one checkpoint, 75.32 mIoU at OS16 single scale and 77.33 at OS8 + MF (SPEC section 5). The output stride
    only sets strides and atrous rates (of the encoder's convs and of ASPP), so every weight fits both networks.
    The copy does not follow later training of ``model``: load its ``state_dict`` again before each use.

    Args:
        model_cfg: the config ``model`` was built from (``model.encoder.output_stride`` is replaced).
        output_stride: 8, 16 or 32; ``None`` or the model's own stride returns ``model``.
    """
    if output_stride is None or output_stride == model.output_stride:
        return model
    other = _build_at(model_cfg, output_stride)
    other.load_state_dict(model.state_dict())
    return other


def set_output_stride(model_cfg: DictConfig, model: nn.Module, output_stride: int) -> nn.Module:
    """Turn ``model`` in place into the network built at ``output_stride``; returns it.

    Its parameters stay the same objects (an optimizer, DDP and SyncBatchNorm keep working on them): only the
    strides, atrous rates and paddings change, copied from a network built at ``output_stride``. This is how
    DeepLabv3 ends its training, the last iterations at OS8 after the rest at OS16 (``trainer.final_os``).
    Copying every plain attribute that differs between the two builds, rather than naming the conv fields,
    covers the modules' own bookkeeping as well (the encoder's ``output_stride``, ASPP's ``rates``, the ResNet
    shortcut's subsampling ``stride``).
    """
    if output_stride == model.output_stride:
        return model
    reference = _build_at(model_cfg, output_stride)
    mine, theirs = dict(model.named_modules()), dict(reference.named_modules())
    if mine.keys() != theirs.keys():
        raise ValueError(f"the network built at output stride {output_stride} has other modules than the model's")
    for name, ref in theirs.items():
        for key, value in vars(ref).items():
            plain = isinstance(value, (bool, int, float, str, tuple, list)) and key != "training"
            if plain and (not key.startswith("_") or key == "_reversed_padding_repeated_twice"):
                if getattr(mine[name], key, None) != value:
                    setattr(mine[name], key, copy.copy(value))
    return model
