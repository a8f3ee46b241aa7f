"""ExecuTorch export for devices: XNNPACK-delegated ``.pte`` programs, float and INT8, and their runner.

ExecuTorch is PyTorch's on-device runtime (Android, iOS, embedded Linux); its XNNPACK delegate runs the convolutions
with XNNPACK's float and int8 kernels. The program is captured with ``torch.export`` from the same module the ONNX
export writes (``onnx.prepare_for_export``: BatchNorm folded, the final resize as two matrix products), lowered with
``to_edge_transform_and_lower`` and XNNPACK's partitioner, and written atomically.

INT8 is PT2E with XNNPACK's quantizer (int8 weights per output channel, symmetric; int8 activations), the quantizer
QAT uses (``deploy.qat``): one quantization path for ONNX Runtime's QDQ file of a QAT model and for ExecuTorch.

Sizes: a program with the final resize has a static input size (ExecuTorch 1.5's edge verifier refuses the runtime
size asserts that the symbolic resize needs). Free sizes come with ``upsample=False``: the logits at the feature
resolution (input size / output stride), resized by the caller, as ``scripts/quantize.py`` scores its models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import fx, nn

from ..errors import InvalidValue, MissingFile
from ..extras import require
from ..files import atomic_path
from .exported import ExportedSegmentor, dynamic_shapes
from .prepare import prepare_for_export
from .pt2e import xnnpack_quantizer

PTE_SUFFIX = ".pte"
MAX_SIDE = 1025  # a free-size program's largest height and width (its memory is planned for them): 513 x 2 - 1


def quantize_pt2e(
    net: nn.Module,
    calibration: Iterable[np.ndarray | torch.Tensor],
    size: tuple[int, int],
    dynamic: bool,
    max_side: int = MAX_SIDE,
    keep_float: Sequence[str] = (),
    fold: bool = True,
) -> fx.GraphModule:
    """PTQ of ``net`` (eval mode, BN already folded) with XNNPACK's quantizer, the ``keep_float`` layers in float
    (``pt2e``): captured at ``size`` (free height and width up to ``max_side`` with ``dynamic``), observed on the
    ``calibration`` batches (normalised float32 NCHW), converted (``fold=False``: the weights' quantize ops left in
    the graph, as LiteRT's converter needs them)."""
    require("INT8 with XNNPACK's quantizer", "executorch", "torchao")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = torch.randn(1, 3, *size)
    shapes = dynamic_shapes(batch=False, max_side=max_side) if dynamic else None
    captured = torch.export.export(net, (example,), dynamic_shapes=shapes).module()
    prepared = prepare_pt2e(captured, xnnpack_quantizer(keep_float=keep_float))
    seen = 0
    with torch.no_grad():
        for batch in calibration:
            prepared(torch.as_tensor(batch, dtype=torch.float32))
            seen += 1
    if not seen:
        raise InvalidValue("INT8 (PT2E): no calibration images")
    return convert_pt2e(prepared, fold_quantize=fold)


def lower_to_pte(
    net: nn.Module, path: str | Path, size: tuple[int, int], dynamic: bool = False, max_side: int = MAX_SIDE
) -> Path:
    """Capture ``net`` (a module or a converted PT2E graph) at ``size`` and write it as an XNNPACK-delegated
    ExecuTorch program, atomically. ``dynamic``: batch 1, free height and width up to ``max_side``."""
    require("ExecuTorch export", "executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    example = torch.randn(1, 3, *size)
    shapes = dynamic_shapes(batch=False, max_side=max_side) if dynamic else None
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=shapes)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(lowered.buffer)
    return path


def export_pte(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] = (513, 513),
    dynamic: bool = False,
    labels: str | None = None,
    fold_bn: bool = True,
    upsample: bool = True,
    calibration: Iterable[np.ndarray] | None = None,
    resize: str = "matmul",
    max_side: int = MAX_SIDE,
    keep_float: Sequence[str] = (),
) -> Path:
    """Write ``model`` as an ExecuTorch ``.pte`` for XNNPACK: input (1, 3, H, W) float32, normalised; output logits
    (1, 21, H, W), labels (1, H, W) with ``labels``, or feature-resolution logits with ``upsample=False``. Float, or
    INT8 (PT2E, XNNPACK's quantizer; the ``keep_float`` layers in float) calibrated on ``calibration`` batches when
    they are given. ``dynamic`` (free
    height and width up to ``max_side``) needs ``upsample=False`` (see the module's note)."""
    if dynamic and upsample:
        raise InvalidValue(
            "an ExecuTorch program with the final resize has a static size: export dynamic=true with upsample=false "
            "(feature-resolution logits), or give the size"
        )
    net = prepare_for_export(model, labels, fold_bn, upsample, resize, None if dynamic else size)
    if calibration is not None:
        net = quantize_pt2e(net, calibration, size, dynamic, max_side, keep_float)
    return lower_to_pte(net, path, size, dynamic, max_side)


class PteSegmentor(ExportedSegmentor):
    """An ExecuTorch program run by ExecuTorch's Python runtime (XNNPACK delegate), callable like the PyTorch model
    on a normalised NCHW tensor, so the evaluator scores it on the same code path as the model and its ONNX twin
    (``OnnxSegmentor``).

    Args:
        path: the ``.pte`` file.
        geometry: the exported model's; ``deeplab`` resizes with ``align_corners=True``.
        threads: XNNPACK's threads (``None``: the runtime's default, every core). ExecuTorch's thread pool is one
            per process: the count is set again before each run when another runner changed it (``execute``).
        output_stride: the stride of a feature-resolution program; ``None`` for one that outputs input-size logits.
        size: the (H, W) of a static program, ``None`` for free sizes (``export.json``'s input shape).
        labels: the program outputs class labels rather than logits.
    """

    def __init__(
        self,
        path: str | Path,
        geometry: str = "torch",
        threads: int | None = None,
        output_stride: int | None = None,
        size: tuple[int, int] | None = None,
        labels: bool = False,
    ) -> None:
        require("Running an ExecuTorch program", "executorch")
        hint = "export it at that size, or scripts/quantize.py executorch=true for free sizes (feature resolution)"
        super().__init__(path, geometry, output_stride, static=size, labels=labels, other_sizes=hint)
        if not self.path.is_file():
            raise MissingFile(f"{self.path}: ExecuTorch program not found")
        self.threads = int(threads) if threads else None
        self.method = load_method(self.path, self.threads)
        self.largest = tuple(self.method.metadata.input_tensor_meta(0).sizes())[2:]  # what its memory is planned for

    def _execute(self, x: torch.Tensor) -> torch.Tensor:
        if any(got > most for got, most in zip(x.shape[-2:], self.largest, strict=True)):
            raise InvalidValue(
                f"{self.path}: takes inputs up to {self.largest[0]}x{self.largest[1]}, got {x.shape[-2]}x{x.shape[-1]}"
            )
        (out,) = execute(self.method, x.detach().float().contiguous().cpu(), self.threads)
        return out


# ExecuTorch 1.5.1's thread pool is one per process and resizing it is unsafe in two ways: resizing a pool that has
# never run hangs the next run, and a program loaded before a resize and first run after it crashes. So a program
# is run once right after it is loaded (its planned input size, zeros), and the pool is resized only when it has
# run, with the program loaded again after the resize; a program that has run keeps working across resizes.
_POOL_USED = False


def load_method(path: Path, threads: int | None = None):
    """The ``forward`` method of the program at ``path``, run once, with the pool at ``threads`` (the module's
    note); a file the runtime cannot load is a ``ValueError`` naming it."""
    from executorch.runtime import Runtime

    def load():
        try:
            method = Runtime.get().load_program(path).load_method("forward")
        except (RuntimeError, ValueError) as exc:
            raise InvalidValue(f"{path}: not an ExecuTorch program this runtime can load ({exc})") from None
        if method is None:
            raise InvalidValue(f"{path}: the ExecuTorch program has no forward method")
        return method

    def run_once(method):
        global _POOL_USED
        meta = method.metadata.input_tensor_meta(0)
        method.execute([torch.zeros(tuple(meta.sizes()))])
        _POOL_USED = True

    method = load()
    if threads and pool_threads() != threads:
        if not _POOL_USED:
            run_once(method)
        set_threads(threads)
        method = load()
    run_once(method)
    return method


def execute(method, x: torch.Tensor, threads: int | None = None) -> list:
    """``method.execute([x])`` (a ``load_method`` method) with the process's thread pool at ``threads`` threads
    (set again when another program changed it)."""
    if threads and pool_threads() != threads:
        set_threads(threads)
    return method.execute([x])


def pool_threads() -> int:
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count

    return _threadpool_get_thread_count()


def set_threads(threads: int) -> None:
    """ExecuTorch's process-wide thread pool to ``threads`` threads; only once it has run (the note above)."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    if not _POOL_USED:
        raise RuntimeError("ExecuTorch's thread pool is resized only after its first run (deploy.executorch)")
    _unsafe_reset_threadpool(threads)
