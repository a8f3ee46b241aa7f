"""The module that gets exported, whatever the format (ONNX, ExecuTorch): eval mode, BatchNorm folded, the final
resize chosen, a label-map or a feature-resolution output."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidValue
from .fold import fold_batchnorm
from .resize import FixedSizeResize, MatmulUpsample

LABEL_DTYPES = {"int32": torch.int32, "uint8": torch.uint8}
# The final resize in a deployed graph: ``matmul``, two interpolation-matrix products (``deploy.resize``, the
# default: a fraction of the time of a runtime's Resize kernel); ``interpolate``, the model's own F.interpolate
RESIZES = ("matmul", "interpolate")


class LabelMap(nn.Module):
    """Logits -> class indices (N, H, W), so a device receives classes rather than 21 float maps."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.uint8) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).argmax(dim=1).to(self.dtype)


class FeatureLogits(nn.Module):
    """The segmentor's logits at the feature resolution (``model.logits``), without the upsampling to the input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


def prepare_for_export(
    model: nn.Module,
    labels: str | None = None,
    fold_bn: bool = True,
    upsample: bool = True,
    resize: str = "matmul",
    size: tuple[int, int] | None = None,
) -> nn.Module:
    """The module that gets exported: eval mode, BN folded (``fold_bn``), the final resize as ``resize`` says
    (``RESIZES``; for a static ``size`` the matmul resize's matrices are constants, ``FixedSizeResize``), wrapped
    in ``LabelMap`` if ``labels`` is ``"int32"`` or ``"uint8"``; ``upsample=False``: the logits at the feature
    resolution (``FeatureLogits``)."""
    if labels is not None and labels not in LABEL_DTYPES:
        raise InvalidValue(f"labels must be one of {sorted(LABEL_DTYPES)} or None, not {labels!r}")
    if resize not in RESIZES:
        raise InvalidValue(f"resize must be one of {list(RESIZES)}, not {resize!r}")
    if not upsample and labels:
        raise InvalidValue("labels need the logits at the input size: upsample=False exports logits only")
    segmentor = hasattr(model, "logits")  # any other module has no final resize to replace
    fixed = upsample and resize == "matmul" and segmentor and size is not None
    align_corners = bool(getattr(model, "align_corners", False))
    if not upsample or fixed:
        model = FeatureLogits(model)
    elif resize == "matmul" and segmentor:
        model = MatmulUpsample(model)
    model = fold_batchnorm(model) if fold_bn else model.eval()
    if fixed:
        model = FixedSizeResize(model, size, align_corners).eval()
    return LabelMap(model, LABEL_DTYPES[labels]).eval() if labels else model
