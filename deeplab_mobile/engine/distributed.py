"""Process-group set-up for ``torchrun`` (DistributedDataParallel); a single process runs the same code path."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from ..errors import InvalidValue


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is refused, not replaced by CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidValue(f"device {name!r} requested but CUDA is not available")
    return device


def export_submitit_env() -> None:
    """A Slurm job that the submitit launcher started with several tasks (``tasks_per_node > 1``) has Slurm's
    variables, not torchrun's: export ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT`` from them
    with submitit's own helper. Each task keeps every GPU visible and drives GPU ``LOCAL_RANK``."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment()
    if env.world_size > 1:
        env.export(set_cuda_visible_devices=False)


def init_distributed(device: str = "auto") -> Dist:
    """Read torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); join the process group when there
    is more than one process (NCCL on CUDA, Gloo on CPU). Each process drives GPU ``LOCAL_RANK``."""
    export_submitit_env()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Dist(rank, world_size, local_rank, dev)


def wrap_model(model: nn.Module, env: Dist, sync_bn: bool = False) -> nn.Module:
    """DDP (optionally with SyncBatchNorm) when distributed; the model itself otherwise."""
    if not env.enabled:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def shard(dataset: Dataset, env: Dist) -> Dataset:
    """This process's share of an evaluation set: every sample exactly once over all processes (unlike
    ``DistributedSampler``, which repeats samples to even out the shards and would count them twice)."""
    return Subset(dataset, range(env.rank, len(dataset), env.world_size)) if env.enabled else dataset


def all_reduce_sum(tensor: torch.Tensor, env: Dist) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(model: nn.Module, env: Dist) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics). Without SyncBatchNorm each process
    updates them from its own share of the batch, so before evaluation they differ from the checkpoint's."""
    if env.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(env: Dist) -> None:
    if env.enabled:
        dist.barrier()


def cleanup(env: Dist) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()
