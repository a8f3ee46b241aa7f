"""DataLoaders for training and evaluation (workers, pinned memory, persistent workers, per-worker seeds)."""

from __future__ import annotations

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .transforms import pad_collate


def seed_worker(worker_id: int) -> None:
    """Give each worker's transform its own stream: ``torch.initial_seed()`` differs per worker and follows the
    main process's seed, so runs stay reproducible while workers do not repeat each other's augmentations.
    Each worker is one core's worth of work: OpenCV's own thread pool would oversubscribe the cores."""
    cv2.setNumThreads(1)
    transform = getattr(get_worker_info().dataset, "transform", None)
    if hasattr(transform, "reseed"):
        transform.reseed(torch.initial_seed() % 2**32)


def train_loader(
    dataset: Dataset, batch_size: int, workers: int, generator: torch.Generator | None = None
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
        generator=generator,
    )


def eval_loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    """Full images of different sizes, padded per batch by ``pad_collate`` (image: mean pixel, mask: 255)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        collate_fn=pad_collate,
    )
