"""A training sample stream that depends only on (seed, position), so a run can restart at any iteration.

PyTorch's ``RandomSampler`` draws each epoch's order from a generator that advances as the run goes, and a
transform's random state lives in whichever worker process happened to load the sample: neither can be
restored at an arbitrary iteration. Here sample position ``p`` of the run (counting across epochs) maps to
``(index, p)``: the epoch ``p // N`` fixes a permutation seeded by ``seed + epoch``, and the transform is reseeded
from ``(seed, p)`` before the sample is drawn. The stream is therefore the same for any number of DataLoader
workers, any restart point, and splits across distributed ranks by position.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from ..errors import InvalidValue


class TrainSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, position)`` for iterations ``start_iter .. iters - 1`` of one rank.

    Args:
        size: the dataset length N.
        batch_size: the global batch (all ranks together).
        iters: total training iterations.
        seed: the run's seed.
        start_iter: the first iteration to yield (the checkpoint's iteration on resume).
        rank, world_size: this process's share: ``batch_size / world_size`` consecutive positions per iteration.
    """

    def __init__(
        self, size: int, batch_size: int, iters: int, seed: int, start_iter: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size % world_size:
            raise InvalidValue(f"batch size {batch_size} does not split evenly over {world_size} processes")
        self.size, self.batch_size, self.iters, self.seed = size, batch_size, iters, seed
        self.start_iter, self.rank, self.world_size = start_iter, rank, world_size
        self.local_batch = batch_size // world_size
        self._epoch, self._perm = -1, None

    def __len__(self) -> int:
        return max(self.iters - self.start_iter, 0) * self.local_batch

    def _index(self, position: int) -> int:
        epoch = position // self.size
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.size, generator=generator).tolist()
        return self._perm[position % self.size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for it in range(self.start_iter, self.iters):
            first = it * self.batch_size + self.rank * self.local_batch
            for position in range(first, first + self.local_batch):
                yield self._index(position), position


class PositionSeeded(Dataset):
    """Wraps a dataset whose ``transform`` has ``reseed(seed)``; item ``(index, position)`` reseeds the transform
    from ``(seed, position)`` and returns ``dataset[index]``."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, position = key
        self.dataset.transform.reseed([self.seed, position])
        return self.dataset[index]
