"""Shared fixtures: small trees in the real on-disk formats."""

import pytest

from deeplab_mobile.data.synthetic import write_synthetic_voc


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory):
    """A small generated dataset in the VOC layout (read-only for tests)."""
    return write_synthetic_voc(tmp_path_factory.mktemp("synthetic"), n_train=60, n_val=30, seed=0, progress=False)
