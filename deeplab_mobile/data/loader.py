"""DataLoaders for training and evaluation (workers, pinned memory, persistent workers, per-worker seeds)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from functools import partial

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from .transforms import pad_collate


def seed_worker(worker_id: int) -> None:
    """Give each worker's transform its own stream: ``torch.initial_seed()`` differs per worker and follows the
    main process's seed, so runs stay reproducible while workers do not repeat each other's augmentations.
    Each worker is one core's worth of work: OpenCV's own thread pool would oversubscribe the cores."""
    cv2.setNumThreads(1)
    transform = getattr(get_worker_info().dataset, "transform", None)
    if hasattr(transform, "reseed"):
        transform.reseed(torch.initial_seed() % 2**32)


def worker_context(workers: int) -> str | None:
    """Start DataLoader workers from a fresh server process ("forkserver"), not by forking this one.

    A worker forked from a process whose OpenCV thread pool is running (any cv2 resize on a large enough image,
    e.g. evaluation or ``workers=0`` training earlier in the same process) inherits the pool's locks without its
    threads and hangs in its first cv2 call (``cv2.setNumThreads`` included). Start-up costs about a second per
    worker, once per loader (training makes one iterator per run; evaluation workers are persistent).
    """
    if workers == 0:
        return None
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        # Inside a joblib (loky) worker -- a sweep under the parallel launcher -- the process-wide start method is
        # "loky", and a new worker, told to use it, dies with "cannot find context for 'loky'". Back to the default.
        multiprocessing.set_start_method(None, force=True)
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None


def train_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    generator: torch.Generator | None = None,
    sampler: Sampler | None = None,
) -> DataLoader:
    """Shuffled full batches, or the order of ``sampler`` when given (the trainer's resumable stream)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
        generator=generator,
        multiprocessing_context=worker_context(workers),
    )


def eval_loader(
    dataset: Dataset, batch_size: int, workers: int, fill: Sequence[int], pad_to: int | None = None
) -> DataLoader:
    """Full images of different sizes, padded per batch by ``pad_collate`` (image: ``fill``, the encoder's mean
    pixel; mask: 255) to the largest and to at least ``pad_to`` x ``pad_to``."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        collate_fn=partial(pad_collate, fill=tuple(fill), min_size=pad_to),
        multiprocessing_context=worker_context(workers),
    )
