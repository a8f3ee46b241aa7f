"""Shared fixtures: small trees in the real on-disk formats. Under pytest-xdist (``-n 2``, the README's test
command) each worker process computes on one thread, its subprocesses too, so that the workers share the cores
instead of oversubscribing them."""

import os

import pytest
import torch

from deeplab_mobile.data.synthetic import write_synthetic_voc

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory):
    """A small generated dataset in the VOC layout (read-only for tests)."""
    return write_synthetic_voc(tmp_path_factory.mktemp("synthetic"), n_train=60, n_val=30, seed=0, progress=False)
