"""A training run folder's model, shared by scripts/eval.py and scripts/export.py: the composed config
(<run>/.hydra/config.yaml) and the weights of its checkpoint; and the same network at another output stride
(scripts/train.py and scripts/eval.py, ``eval.os``)."""

from __future__ import annotations

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
    return run, model, state, ckpt


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
    cfg = model_cfg.copy()
    cfg.encoder.output_stride = check_output_stride(output_stride)  # a clear error, not Hydra's wrapped one
    cfg.encoder.weights = None  # every weight comes from ``model``
    with torch.random.fork_rng(devices=[]):  # its random init must not move the run's random stream
        other = instantiate(cfg)
    other.load_state_dict(model.state_dict())
    return other
