"""Training losses: ``loss(logits, masks, step)`` -> a 0-d tensor, every one ignoring pixels labelled 255.

- ``CrossEntropy``: the pixel mean over labelled pixels, optionally with a weight per class; with weights the sum is
  still divided by the number of labelled pixels (DeepLab's ``train_utils`` and mmseg's ``avg_non_ignore`` do the
  same), where ``F.cross_entropy(weight=...)`` would divide by the sum of the weights.
- ``HardPixelCE``: DeepLab's hard-pixel mining (``top_k_percent_pixels``, ``hard_example_mining_step`` in its
  ``train_utils.add_softmax_cross_entropy_loss_for_each_scale``): only the ``top_k`` largest pixel losses of the
  batch count, the fraction falling linearly from 1 to ``top_k`` over the first ``ramp_steps`` steps.
- ``SMPLoss``: segmentation_models_pytorch's Dice, Lovasz and Focal losses (multiclass mode), used as they are;
  ``DiceLoss``, ``FocalLoss``, ``LovaszLoss`` name each with its own arguments (the ``_target_`` of a loss config).
- ``WeightedSum``: ``sum(w_i * loss_i)``, e.g. CE + Dice.

``step`` is the number of optimisation steps done before this one (TensorFlow's ``global_step``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import IGNORE_INDEX
from ..errors import InvalidValue


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Pixel-mean cross-entropy over labelled pixels (0 rather than NaN for a crop with none).

    Channels-last logits (the trainer's default layout) are scored as an (N*H*W, C) matrix, which is a view of
    their memory: ``cross_entropy`` over dim 1 of the 4-D tensor would first copy it to NCHW and hand the
    upsampling's backward a gradient in the other layout (slower on CPU; see results/cpu_recipe.md). The value and
    the gradient are the same up to rounding.
    """
    logits, masks = _flat(logits, masks)
    total = F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="sum")
    return total / (masks != ignore_index).sum().clamp(min=1)


def _flat(logits: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits, as an (N*H*W, C) view when they are channels-last (``segmentation_loss``), else as given."""
    logits = logits.float()
    if logits.dim() == 4 and logits.is_contiguous(memory_format=torch.channels_last):
        return logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]), masks.reshape(-1)
    return logits, masks


def pixel_losses(
    logits: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor | None, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's cross-entropy times its class's weight (0 where the label is ``ignore_index``), flattened, and
    the number of labelled pixels."""
    logits, masks = _flat(logits, masks)
    losses = F.cross_entropy(logits, masks, ignore_index=ignore_index, reduction="none").reshape(-1)
    labelled = masks.reshape(-1) != ignore_index
    if weights is not None:
        w = weights.to(losses.device, losses.dtype)
        losses = losses * torch.where(labelled, w[masks.reshape(-1).clamp(max=len(w) - 1)], 0.0)
    return losses, labelled.sum()


class CrossEntropy(nn.Module):
    """Cross-entropy over labelled pixels; ``class_weights`` (one per class) scale each pixel's loss by its label's
    weight, and the sum is divided by the labelled pixels' count. Without weights this is ``segmentation_loss``,
    bit for bit."""

    def __init__(self, class_weights: Sequence[float] | None = None, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("class_weights", _weights(class_weights), persistent=False)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor, step: int = 0) -> torch.Tensor:
        if self.class_weights is None:
            return segmentation_loss(logits, masks, self.ignore_index)
        losses, labelled = pixel_losses(logits, masks, self.class_weights, self.ignore_index)
        return losses.sum() / labelled.clamp(min=1)


class HardPixelCE(nn.Module):
    """DeepLab's hard-pixel mining: at step ``t`` the ``k = int(f_t * P)`` largest (weighted) pixel losses of the
    batch are kept, ``P`` counting every pixel of the batch, ignored ones included (their loss is 0), with
    ``f_t = r * top_k + (1 - r)``, ``r = min(1, t / ramp_steps)`` (``f_t = top_k`` throughout when ``ramp_steps``
    is 0); the kept sum is divided by the number of kept losses that are not 0 (0 when there are none)."""

    def __init__(
        self,
        top_k: float = 0.25,
        ramp_steps: int = 0,
        class_weights: Sequence[float] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        if not 0 < top_k <= 1:
            raise InvalidValue(f"top_k must be in (0, 1], got {top_k}")
        if ramp_steps < 0:
            raise InvalidValue(f"ramp_steps must be >= 0, got {ramp_steps}")
        self.top_k, self.ramp_steps, self.ignore_index = float(top_k), int(ramp_steps), ignore_index
        self.register_buffer("class_weights", _weights(class_weights), persistent=False)

    def fraction(self, step: int) -> float:
        if self.ramp_steps == 0:
            return self.top_k
        ratio = min(1.0, step / self.ramp_steps)
        return ratio * self.top_k + (1.0 - ratio)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor, step: int = 0) -> torch.Tensor:
        losses, _ = pixel_losses(logits, masks, self.class_weights, self.ignore_index)
        # TensorFlow's int32 cast of the float product truncates, as int() does
        k = int(torch.tensor(self.fraction(step), dtype=torch.float32) * float(losses.numel()))
        if k <= 0:
            return losses.sum() * 0.0
        kept = losses.topk(k, sorted=False).values if k < losses.numel() else losses
        return kept.sum() / (kept != 0).sum().clamp(min=1)


SMP_LOSSES = ("dice", "lovasz", "focal")


class SMPLoss(nn.Module):
    """One of segmentation_models_pytorch's losses in multiclass mode, with ``ignore_index``: ``dice``
    (``DiceLoss``: 1 - soft Dice per class over the batch, classes absent from the batch's labels counting 0, the
    mean over all classes), ``lovasz`` (``LovaszLoss``: the Lovasz-softmax over the classes present) or ``focal``
    (``FocalLoss``: a one-vs-rest sigmoid focal loss per class, the mean over classes). ``options`` go to the SMP
    class (``gamma``, ``smooth``, ``per_image``...).

    Written around SMP rather than calling it bare for one case: on a batch with no labelled pixel SMP's Focal loss
    is NaN (the mean of nothing) and its Lovasz loss an empty tensor; here it is 0, with a zero gradient."""

    def __init__(self, name: str, ignore_index: int = IGNORE_INDEX, **options) -> None:
        super().__init__()
        from segmentation_models_pytorch import losses

        classes = {"dice": losses.DiceLoss, "lovasz": losses.LovaszLoss, "focal": losses.FocalLoss}
        if name not in classes:
            raise InvalidValue(f"SMP loss {name!r} is not supported; choose one of {', '.join(SMP_LOSSES)}")
        self.name, self.ignore_index = name, ignore_index
        self.loss = classes[name](mode=losses.MULTICLASS_MODE, ignore_index=ignore_index, **options)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor, step: int = 0) -> torch.Tensor:
        logits = logits.float()
        if not (masks != self.ignore_index).any():
            return logits.sum() * 0.0
        return self.loss(logits, masks)


class DiceLoss(SMPLoss):
    """SMP's ``DiceLoss`` (multiclass): 1 - soft Dice per class over the batch, averaged."""

    def __init__(
        self, class_weights: Sequence[float] | None = None, smooth: float = 0.0, log_loss: bool = False
    ) -> None:
        super().__init__("dice", smooth=smooth, log_loss=log_loss, **_smp_weights(class_weights))


class FocalLoss(SMPLoss):
    """SMP's ``FocalLoss`` (multiclass): a one-vs-rest sigmoid focal loss per class, averaged."""

    def __init__(
        self, class_weights: Sequence[float] | None = None, gamma: float = 2.0, alpha: float | None = None
    ) -> None:
        super().__init__("focal", gamma=gamma, alpha=alpha, **_smp_weights(class_weights))


class LovaszLoss(SMPLoss):
    """SMP's ``LovaszLoss`` (multiclass): a surrogate of the IoU of the classes present; it takes no class
    weights."""

    def __init__(self, per_image: bool = False) -> None:
        super().__init__("lovasz", per_image=per_image)


def _smp_weights(class_weights: Sequence[float] | None) -> dict:
    return {} if class_weights is None else {"class_weights": list(class_weights)}


class WeightedSum(nn.Module):
    """``sum(weight * loss(logits, masks, step))`` over ``terms``, each with its weight in ``weights`` (1 each when
    not given)."""

    def __init__(self, terms: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not terms:
            raise InvalidValue("a weighted sum needs at least one term")
        weights = [1.0] * len(terms) if weights is None else [float(w) for w in weights]
        if len(weights) != len(terms):
            raise InvalidValue(f"a weighted sum of {len(terms)} terms needs {len(terms)} weights, got {len(weights)}")
        self.weights = weights
        self.terms = nn.ModuleList(terms)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor, step: int = 0) -> torch.Tensor:
        total = None
        for weight, loss in zip(self.weights, self.terms, strict=True):
            value = weight * loss(logits, masks, step)
            total = value if total is None else total + value
        return total


def _weights(values: Sequence[float] | None) -> torch.Tensor | None:
    if values is None:
        return None
    weights = torch.as_tensor(list(values), dtype=torch.float32)
    if weights.dim() != 1 or not torch.isfinite(weights).all() or (weights < 0).any():
        raise InvalidValue(f"class weights must be finite numbers >= 0, got {list(values)}")
    return weights
