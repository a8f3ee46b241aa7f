"""Encoder weights: ``None`` or ``"random"`` (random init), ``"imagenet"`` (the library's download), or a local file.

The libraries' own downloaders retry and wait on an unreachable host; offline, a run should fail at once with
a message that says what to do instead, so ``"imagenet"`` first probes the download host with a short timeout.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ProjectError, load_failure

PROBE_TIMEOUT_S = 3.0
STRIP_PREFIXES = ("module.", "encoder.", "backbone.", "model.")


class WeightsError(ProjectError, RuntimeError):
    """Encoder weights could not be obtained or do not fit the encoder."""


def host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt``/``.bin`` (torch.load, weights only) or ``.safetensors`` file.

    Accepts the common wrappers: ``{"state_dict": ...}``, ``{"model": ...}``.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
        raise WeightsError(f"{path}: not a readable weights file ({load_failure(exc)})") from exc
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: does not hold a state dict of tensors")
    return dict(obj)


def fit_state_dict(
    module: nn.Module, state: Mapping[str, torch.Tensor], ignore: Iterable[str] = (), source: str = "weights"
) -> None:
    """Load ``state`` into ``module`` strictly, after removing wrapper prefixes and ignored heads.

    Args:
        module: the encoder.
        state: a torchvision / timm / SMP state dict of the same architecture.
        ignore: key prefixes the encoder does not build (a classifier, the 1280-channel conv of the 320 tap).
        source: named in error messages.
    """
    own = module.state_dict()
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in STRIP_PREFIXES:
            if key.startswith(prefix) and key not in own:
                key = key[len(prefix) :]
        if key not in own and any(key.startswith(p) for p in ignore):
            continue
        cleaned[key] = value
    missing = sorted(set(own) - set(cleaned))
    unexpected = sorted(set(cleaned) - set(own))
    shapes = [k for k in set(own) & set(cleaned) if own[k].shape != cleaned[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if shapes:
            k = sorted(shapes)[0]
            got, want = tuple(cleaned[k].shape), tuple(own[k].shape)
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: {got} in the file, {want} in the model)")
        raise WeightsError(f"{source}: does not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(cleaned, strict=True)


def load_encoder_weights(
    module: nn.Module,
    weights: str | Path | None,
    *,
    imagenet: Callable[[], Mapping[str, torch.Tensor]] | None,
    host: str,
    ignore: Iterable[str] = (),
    source: str = "",
) -> None:
    """Apply the ``weights`` choice to an encoder.

    Args:
        module: the encoder (its state dict keys are the library's own).
        weights: ``None`` or ``"random"``, ``"imagenet"`` or a path to a local state dict file.
        imagenet: returns the library's ImageNet state dict (downloads); ``None`` if the library has none
            for this configuration.
        host: the host ``imagenet`` downloads from, probed first.
        ignore: key prefixes of the file that the encoder does not build.
        source: what to download by hand when ``host`` cannot be reached (a URL or a hub id).
    """
    if weights is None or str(weights) == "random":
        return
    name = type(module).__name__
    if str(weights) == "imagenet":
        if imagenet is None:
            raise WeightsError(
                f"{name}: the library ships no ImageNet weights for this configuration; "
                "pass a local state dict file: encoder_weights=/path/to/weights.pth"
            )
        if not host_reachable(host):
            where = f" ({source})" if source else ""
            raise WeightsError(
                f"{name}: ImageNet weights must be downloaded from {host}, which cannot be reached (offline?). "
                f"Download them on a connected machine{where} and pass the file: "
                "encoder_weights=/path/to/weights.pth (a torchvision, timm or SMP state dict; .pth or .safetensors)"
            )
        fit_state_dict(module, imagenet(), ignore, source=f"ImageNet weights from {host}")
        return
    fit_state_dict(module, read_state_dict(weights), ignore, source=str(weights))


def load_torchvision_weights(
    module: nn.Module, weights: str | Path | None, imagenet: object, width: float, ignore: Iterable[str]
) -> None:
    """``load_encoder_weights`` for an encoder built on torchvision's modules: ``imagenet`` is a torchvision weights
    entry (``MobileNet_V2_Weights.IMAGENET1K_V1``), which exists for width 1.0 only."""
    load_encoder_weights(
        module,
        weights,
        imagenet=(lambda: imagenet.get_state_dict(progress=True)) if width == 1.0 else None,
        host="download.pytorch.org",
        ignore=ignore,
        source=imagenet.url,
    )


def load_timm_weights(
    module: nn.Module, weights: str | Path | None, model_name: str, hub_id: str, width: float, ignore: Iterable[str]
) -> None:
    """``load_encoder_weights`` for an encoder built on timm's modules: ImageNet weights are ``model_name``'s from
    the Hugging Face hub (``hub_id``), for width 1.0 only."""

    def imagenet() -> Mapping[str, torch.Tensor]:
        import timm

        return timm.create_model(model_name, pretrained=True).state_dict()

    load_encoder_weights(
        module,
        weights,
        imagenet=imagenet if width == 1.0 else None,
        host="huggingface.co",
        ignore=ignore,
        source=hub_id,
    )
