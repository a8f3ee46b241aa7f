"""One training iteration, operator by operator: a hash of every ATen operator's inputs and outputs, in the order
they ran, with where each ran (the batch, the model's forward and which module, the loss, the backward and which
autograd node, the optimizer step and which parameter), so that two machines' records of the same iteration say
which operator first computed something else from the same inputs (``scripts/replay.py`` writes one,
``scripts/compare_runs.py`` compares two; docs/reproducibility.md).

PyTorch has the pieces: ``TorchDispatchMode`` sees every ATen call, forward, backward and optimizer alike;
``ModuleTracker`` says which module is running, in the forward and in its backward; the autograd engine names the
node it is running. What it lacks is the record and its comparison, written here.

Plain Python and torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.module_tracker import ModuleTracker

from ..errors import InvalidValue
from ..files import write_json
from .checkpoint import weights_sha256

KIND = "deeplab-mobile operator record"
VERSION = 1


class OpRecordError(InvalidValue):
    """A file that is not an operator record, or two records that cannot be compared; the message names it."""


def tensor_hash(t: torch.Tensor) -> str:
    """64 bits of a SHA-256 of a tensor's dtype, shape and values in logical order (whatever its memory layout)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    digest = hashlib.sha256(f"{t.dtype}\0{tuple(t.shape)}\0".encode())
    if t.numel():
        digest.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _tensors(values) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(values)
    return [v for v in leaves if isinstance(v, torch.Tensor)]


class _Recorder(TorchDispatchMode):
    def __init__(self, record: OpRecord, tracker: ModuleTracker) -> None:
        super().__init__()
        self.record, self.tracker = record, tracker

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = _tensors((args, kwargs))
        in_hashes = [tensor_hash(t) for t in inputs]  # before the call: an in-place operator changes them
        if self.record.phase == "optimizer" and self.record.tracked is not None:
            self.record.name_tensors(*self.record.tracked)  # an optimizer makes its state in its first step
        out = func(*args, **kwargs)
        outputs = _tensors(out)
        names = sorted({self.record.names[p] for t in inputs + outputs if (p := t.untyped_storage().data_ptr())
                        in self.record.names})  # fmt: skip
        node = torch._C._current_autograd_node()
        parents = [p for p in self.tracker.parents if p != "Global"]
        self.record.ops.append(
            {
                "op": str(func),
                "phase": "backward" if node is not None else self.record.phase,
                "where": node.name() if node is not None else (max(parents, key=len) if parents else ""),
                "names": names,
                "in": in_hashes,
                "out": [tensor_hash(t) for t in outputs],
                "shapes": [list(t.shape) for t in outputs],
            }
        )
        return out


@dataclass
class OpRecord:
    """What one iteration did: ``ops`` in the order they ran, the weights before and after, the batch, the loss."""

    iteration: int
    ops: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    phase: str = "input"
    names: dict[int, str] = field(default_factory=dict, repr=False)  # storage address -> what it holds
    tracked: tuple[nn.Module, torch.optim.Optimizer] | None = field(default=None, repr=False)

    def name_tensors(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        """Parameters, their gradients and the optimizer's state, by name (for the operators that read them)."""
        for name, p in model.named_parameters():
            self.names[p.untyped_storage().data_ptr()] = name
            if p.grad is not None:
                self.names[p.grad.untyped_storage().data_ptr()] = f"{name}.grad"
            state = optimizer.state.get(p, {}) if optimizer is not None else {}
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.numel() > 1:
                    self.names[value.untyped_storage().data_ptr()] = f"{name}.{key}"

    def to_dict(self, environment: dict | None = None) -> dict:
        return {
            "kind": KIND,
            "version": VERSION,
            "iteration": self.iteration,
            **self.summary,
            "environment": environment or {},
            "ops": self.ops,
        }


@contextmanager
def record_iteration(
    iteration: int, model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, masks: torch.Tensor
) -> Iterator[OpRecord]:
    """Record the operators run inside the block (one training step of ``model`` and ``optimizer`` on ``images``,
    ``masks``): phases ``input`` (until the model's forward), ``forward``, ``loss``, ``backward``, ``optimizer`` and
    ``after`` (the schedule's step, a gradient scaler's update)."""
    record = OpRecord(iteration, tracked=(model, optimizer))
    record.name_tensors(model, optimizer)
    record.summary = {
        "weights_before": weights_sha256(model.state_dict()),
        "batch": {"images": tensor_hash(images), "masks": tensor_hash(masks)},
    }

    def phase(name: str):
        def hook(*_):
            record.phase = name

        return hook

    handles = [
        model.register_forward_pre_hook(phase("forward")),
        model.register_forward_hook(phase("loss")),
        optimizer.register_step_pre_hook(phase("optimizer")),
        optimizer.register_step_post_hook(phase("after")),
    ]
    tracker = ModuleTracker()
    try:
        with tracker, _Recorder(record, tracker):
            yield record
    finally:
        for h in handles:
            h.remove()
    record.summary["weights_after"] = weights_sha256(model.state_dict())


def write_record(path: str | Path, record: OpRecord, environment: dict | None = None) -> Path:
    return write_json(path, record.to_dict(environment), indent=None)


def read_record(path: str | Path) -> dict:
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise OpRecordError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(value, dict) or value.get("kind") != KIND:
        raise OpRecordError(f"{path}: not an operator record (scripts/replay.py writes them)")
    if value.get("version") != VERSION:
        raise OpRecordError(f"{path}: operator record version {value.get('version')}, this code reads {VERSION}")
    return value


def is_record(path: str | Path) -> bool:
    """Whether ``path`` is a file that claims to be an operator record (a JSON file, not a run folder)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".json":
        return False
    with open(path, "rb") as f:
        return KIND.encode() in f.read(256)


def _describe(op: dict) -> str:
    where = f" in {op['where']}" if op["where"] else ""
    names = f" [{', '.join(op['names'][:3])}{', ...' if len(op['names']) > 3 else ''}]" if op["names"] else ""
    return f"{op['op']} ({op['phase']}{where}){names}"


def compare_records(a: dict, b: dict) -> list[str]:
    """Where two records of the same iteration part: the batch, the weights they start from, the first operator
    whose outputs differ (and whether its inputs were the same: then that operator computes differently on the two
    machines), or the first operator that is not the same operator (the two ran different code)."""
    if a.get("iteration") != b.get("iteration"):
        raise OpRecordError(f"the two records are of different iterations ({a.get('iteration')}, {b.get('iteration')})")
    lines = [f"iteration {a['iteration']}: A ran {len(a['ops'])} operators, B {len(b['ops'])}"]
    if a.get("batch") != b.get("batch"):
        lines.append("batch: differs (the data path gave other images or masks)")
    if a.get("weights_before") != b.get("weights_before"):
        lines.append(
            "weights before the iteration: differ (they parted earlier: replay an earlier iteration, the one before "
            "the first differing loss)"
        )
    else:
        lines.append("weights before the iteration: identical")
    for i, (x, y) in enumerate(zip(a["ops"], b["ops"], strict=False)):
        if x["op"] != y["op"] or len(x["out"]) != len(y["out"]):
            lines.append(f"operator #{i}: A ran {_describe(x)}, B ran {_describe(y)}: the two ran different code")
            return lines
        if x["out"] != y["out"]:
            same_inputs = x["in"] == y["in"]
            lines.append(
                f"first differing operator: #{i} {_describe(x)}, "
                + (
                    "from identical inputs: this operator computes differently on the two machines"
                    if same_inputs
                    else "from differing inputs"
                )
            )
            differing = sum(1 for p, q in zip(a["ops"], b["ops"], strict=False) if p["out"] != q["out"])
            lines.append(f"operators with differing outputs: {differing} of {min(len(a['ops']), len(b['ops']))}")
            break
    else:
        if len(a["ops"]) != len(b["ops"]):
            lines.append("the shorter record is a prefix of the longer one")
        else:
            lines.append("every operator's outputs: identical")
    if a.get("weights_after") == b.get("weights_after"):
        lines.append("weights after the iteration: identical")
    else:
        lines.append("weights after the iteration: differ")
    if a.get("loss") != b.get("loss"):
        lines.append(f"loss: A {a.get('loss')!r}, B {b.get('loss')!r}")
    return lines
