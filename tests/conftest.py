"""Shared fixtures: small trees in the real on-disk formats."""

import numpy as np
import pytest

from deeplab_mobile.data.synthetic import write_synthetic_voc


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory):
    """A small generated dataset in the VOC layout (read-only for tests)."""
    return write_synthetic_voc(tmp_path_factory.mktemp("synthetic"), n_train=60, n_val=30, seed=0, progress=False)


def blocks_mask(h, w, rng, block=8, num_classes=21):
    """A mask of constant blocks (so a mask derived from the image stays derivable after linear resizing)."""
    small = rng.integers(0, num_classes, (-(-h // block), -(-w // block)))
    return np.kron(small, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)
