"""Shared helpers for the tests: the repository's paths, config composition, small data in real formats."""

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def composed(name, overrides=(), **kwargs):
    """The config ``conf/<name>.yaml`` composes to with ``overrides``, as the command line would give them."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(name, overrides=list(overrides), **kwargs)


ITERS, LR = 6, 0.001


def small_run(voc, *extra):
    """Overrides for a small model on 65-pixel crops of the generated data (seconds an iteration on a CPU)."""
    return [
        "recipe=cpu_synthetic", f"data.root={voc}", "data.generate=null", "width=0.35", "head=no_aspp",
        "data.crop_size=65", "data.batch_size=4", "progress=false", "trainer.final_stage=null", *extra,
    ]  # fmt: skip


def tiny(voc, *extra):
    """A few iterations of a small model on 65-pixel crops (seconds on a CPU)."""
    return composed(
        "train",
        small_run(
            voc, "data.workers=0", f"trainer.iters={ITERS}", "trainer.ckpt_every=2", "trainer.eval_every=3",
            "trainer.log_every=1", f"optim.lr={LR}", "eval.mf_scales=[0.75,1.0]", "eval.workers=0",
            "eval.batch_size=2", *extra,
        ),
    )  # fmt: skip


def blocks_mask(h, w, rng, block=8, num_classes=21):
    """A mask of constant blocks (so a mask derived from the image stays derivable after linear resizing)."""
    small = rng.integers(0, num_classes, (-(-h // block), -(-w // block)))
    return np.kron(small, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)


def geometry(model):
    """(stride, dilation, padding) of every conv, in module order."""
    import torch

    return [(c.stride, c.dilation, c.padding) for c in model.modules() if isinstance(c, torch.nn.Conv2d)]
