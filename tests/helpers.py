"""Shared helpers for the tests: the repository's paths, config composition, small data in real formats."""

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from deeplab_mobile.config import schema

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def composed(name, overrides=(), **kwargs):
    """The config ``conf/<name>.yaml`` composes to with ``overrides``, as the command line would give them."""
    schema.register()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(name, overrides=list(overrides), **kwargs)


ITERS, LR = 6, 0.001


def small_run(voc, *extra):
    """Overrides for a small model on 65-pixel crops of the generated data (seconds an iteration on a CPU)."""
    return [
        "recipe=cpu_synthetic",
        f"data.root={voc}",
        "data.generate=null",
        "width=0.35",
        "head=no_aspp",
        "data.crop_size=65",
        "data.batch_size=4",
        "progress=false",
        "trainer.final_stage=null",
        *extra,
    ]


def tiny(voc, *extra):
    """A few iterations of a small model on 65-pixel crops (seconds on a CPU)."""
    return composed(
        "train",
        small_run(
            voc,
            "data.workers=0",
            f"trainer.iters={ITERS}",
            "trainer.ckpt_every=2",
            "trainer.eval_every=3",
            "trainer.log_every=1",
            f"optim.lr={LR}",
            "eval.mf_scales=[0.75,1.0]",
            "eval.workers=0",
            "eval.batch_size=2",
            *extra,
        ),
    )


def folder_train(folder, *extra):
    """A few iterations of a small model on a folder dataset (``write_folder_dataset``)."""
    return composed(
        "train",
        [
            "recipe=cpu_synthetic",
            "data=folder",
            f"data.root={folder}",
            "width=0.35",
            "head=no_aspp",
            "data.crop_size=65",
            "data.batch_size=4",
            "data.workers=0",
            "progress=false",
            "trainer.final_stage=null",
            "trainer.iters=3",
            "trainer.eval_every=3",
            "trainer.ckpt_every=3",
            "eval.workers=0",
            "eval.batch_size=2",
            "eval.mf_scales=[1.0]",
            *extra,
        ],
    )


def blocks_mask(h, w, rng, block=8, num_classes=21):
    """A mask of constant blocks (so a mask derived from the image stays derivable after linear resizing)."""
    small = rng.integers(0, num_classes, (-(-h // block), -(-w // block)))
    return np.kron(small, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)


def geometry(model):
    """(stride, dilation, padding) of every conv, in module order."""
    import torch

    return [(c.stride, c.dilation, c.padding) for c in model.modules() if isinstance(c, torch.nn.Conv2d)]


FOLDER_CLASSES = ("background", "road", "car", "tree", "sky")
FOLDER_COLORS = ((0, 0, 0), (128, 64, 128), (0, 0, 142), (107, 142, 35), (70, 130, 180))


def write_png(path, array, mode):
    """A PNG as a user's tool would write it: palette (``P``), grey-level (``L``) or colour (``RGB``)."""
    from PIL import Image

    from deeplab_mobile.data.voc import PALETTE

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array.astype(np.uint8), mode=mode)
    if mode == "P":
        im.putpalette(PALETTE.tobytes())
    im.save(path)


def write_folder_dataset(root, n_train=12, n_val=6, size=(72, 80), mask_mode="P", seed=0):
    """A 5-class folder dataset (images/<split>/, masks/<split>/, classes.txt with colours): each image's colour
    follows its mask (learnable), with a band of ignored pixels (255)."""
    import cv2

    rng = np.random.default_rng(seed)
    lines = [f"{n} {r} {g} {b}" for n, (r, g, b) in zip(FOLDER_CLASSES, FOLDER_COLORS, strict=True)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("# name R G B\n" + "\n".join(lines) + "\n")
    colors = np.array(FOLDER_COLORS, np.uint8)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            mask = blocks_mask(*size, rng, block=16, num_classes=len(FOLDER_CLASSES))
            image = colors[mask] // 2 + rng.integers(0, 60, (*size, 3), dtype=np.uint8)
            mask[:, :2] = 255
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / split / f"{split}{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            write_png(root / "masks" / split / f"{split}{i:03d}.png", mask, mask_mode)
    return root


CITYSCAPES_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}


def write_cityscapes(root, size=(64, 128), seed=0):
    """Cityscapes' official layout: leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png and
    gtFine/<split>/<city>/..._gtFine_labelIds.png (label ids 0-33, as cityscapesScripts writes them), two images a
    city."""
    import cv2

    rng = np.random.default_rng(seed)
    for split, cities in CITYSCAPES_CITIES.items():
        for city in cities:
            for k in range(2):
                stem = f"{city}_{k:06d}_{19 + k:06d}"
                ids = blocks_mask(*size, rng, block=16, num_classes=34)
                image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                image_dir = root / "leftImg8bit" / split / city
                image_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(image_dir / f"{stem}_leftImg8bit.png"), image)
                write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids, "L")
    return root
