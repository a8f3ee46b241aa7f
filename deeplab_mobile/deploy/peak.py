"""Peak activation memory of one forward pass, on any device: the most bytes that tensors created during the
pass held at one time (inputs and weights excluded).

CUDA has ``torch.cuda.max_memory_allocated``; the CPU allocator keeps no such statistic, and the process's
resident set mixes in the allocator's caching, so the count is kept here: a dispatch mode sees every op's
outputs, adds each new storage's bytes, and a weak-reference callback subtracts them when the tensor dies.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

# The one module that uses PyTorch's private modules: a dispatch mode is the only way to see every op's outputs
# (the public TorchFunctionMode sits above composite ops and misses what they allocate inside), and tree_leaves
# flattens whatever an op returns as the dispatcher does. Nothing else imports them.
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _LiveBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:  # a view or an in-place result allocates nothing new
                    self.live[key] = storage.nbytes()
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(t, self._release, key)
        return out


def peak_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of the tensors alive at once while ``model(x)`` runs (no autograd), the output included."""
    with torch.inference_mode(), _LiveBytes() as counter:
        out = model(x)
        peak = counter.peak
    del out
    return peak
