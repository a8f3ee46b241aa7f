"""A training run folder's model, shared by scripts/eval.py and scripts/export.py: the composed config
(<run>/.hydra/config.yaml) and the weights of its checkpoint."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from deeplab_mobile.engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint, model_state


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
