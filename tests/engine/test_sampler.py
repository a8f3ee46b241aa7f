"""The training stream depends only on (seed, position): restarts, workers and ranks do not change it."""

import pytest
import torch
from torch.utils.data import DataLoader

from deeplab_mobile.data import TrainTransform, VOCSegmentation
from deeplab_mobile.data.loader import worker_context
from deeplab_mobile.engine.sampler import PositionSeeded, TrainSampler
from deeplab_mobile.models.encoders import IMAGENET_MEAN


def test_each_epoch_is_a_permutation_and_epochs_differ():
    keys = list(TrainSampler(size=10, batch_size=5, iters=4, seed=0))
    assert [p for _, p in keys] == list(range(20))
    first, second = [i for i, _ in keys[:10]], [i for i, _ in keys[10:]]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second


def test_a_restart_continues_the_same_stream():
    full = list(TrainSampler(size=7, batch_size=3, iters=10, seed=5))
    tail = list(TrainSampler(size=7, batch_size=3, iters=10, seed=5, start_iter=4))
    assert tail == full[4 * 3 :]
    assert len(TrainSampler(size=7, batch_size=3, iters=10, seed=5, start_iter=4)) == 18


def test_ranks_split_each_global_batch():
    full = list(TrainSampler(size=9, batch_size=4, iters=5, seed=1))
    ranks = [list(TrainSampler(size=9, batch_size=4, iters=5, seed=1, rank=r, world_size=2)) for r in range(2)]
    for it in range(5):
        assert ranks[0][2 * it : 2 * it + 2] + ranks[1][2 * it : 2 * it + 2] == full[4 * it : 4 * it + 4]


def batches(dataset, workers, start_iter=0):
    sampler = TrainSampler(len(dataset), batch_size=4, iters=3, seed=7, start_iter=start_iter)
    loader = DataLoader(
        PositionSeeded(dataset, seed=7),
        batch_size=4,
        sampler=sampler,
        num_workers=workers,
        multiprocessing_context=worker_context(workers),
    )
    return list(loader)


@pytest.mark.slow
def test_augmentation_is_the_same_with_or_without_workers_and_after_a_restart(synthetic_voc):
    dataset = VOCSegmentation(synthetic_voc, "train", TrainTransform(crop_size=65, mean=IMAGENET_MEAN))
    main = batches(dataset, workers=0)
    with_workers = batches(dataset, workers=2)
    restarted = batches(dataset, workers=0, start_iter=1)
    for (a, ma), (b, mb) in zip(main, with_workers, strict=True):
        assert torch.equal(a, b) and torch.equal(ma, mb)
    for (a, ma), (b, mb) in zip(main[1:], restarted, strict=True):
        assert torch.equal(a, b) and torch.equal(ma, mb)
    # and the stream is random: two iterations' crops differ
    assert not torch.equal(main[0][0], main[1][0])
