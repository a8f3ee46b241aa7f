"""Trained models shared as Hugging Face Hub folders: ``save_pretrained`` writes one (``model.safetensors``,
``config.json``, a model card), ``load_pretrained`` reads one back from a folder or a Hub id, through
huggingface_hub's ``PyTorchModelHubMixin`` (``HubSegmenter``), so ``push_to_hub`` works as for any mixin model.

``config.json`` holds ``build_model``'s arguments of the network (read from the model itself and checked by
rebuilding it), its normalisation, its class names, and what the card says (the scores with their intervals, the
data, the recipe, the environment); ``format`` marks the folder as this library's, so a folder of another library
is named as such instead of failing somewhere inside. ``deeplab-mobile export format=hub`` writes one from a run or
a model file (docs/export.md#sharing-a-model).

Plain Python and torch.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn

from .models import HEADS, DeepLabV3, build_model
from .models.weights import WeightsError

FORMAT = "deeplab-mobile"
VERSION = 1
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
FILES = ("config.json", "model.safetensors")


class HubError(WeightsError):
    """A folder or Hub id that is not a model of this library, or a network that a Hub folder cannot describe."""


def network_args(model: DeepLabV3) -> dict:
    """``build_model``'s arguments of a built network, read from it; refused where the rebuilt network differs
    (another head setting, a layer built otherwise), since a Hub folder rebuilds from these."""
    encoder, head = model.encoder, model.head
    first_bn = next(m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    args = {
        "encoder": encoder.name,
        "head": head.name,
        "output_stride": int(model.output_stride),
        "width": float(encoder.width),
        "tap": encoder.tap,
        "num_classes": int(head.num_classes),
        "bn": "torch" if first_bn.eps == 1e-5 else "deeplab",
        "geometry": model.geometry,
    }
    if args["head"] not in HEADS:
        raise HubError(f"a {args['head']} head has no name build_model knows; a Hub folder cannot rebuild it")
    with torch.device("meta"):
        again = build_model(**args, mean=encoder.mean, std=encoder.std)

    def layout(m: nn.Module) -> list:
        return [
            (name, type(mod).__name__, getattr(mod, "eps", None), getattr(mod, "momentum", None))
            for name, mod in m.named_modules()
        ] + [(k, tuple(v.shape)) for k, v in m.state_dict().items()]

    if layout(again) != layout(model):
        raise HubError(
            f"this network ({args['encoder']}, {args['head']}) has settings build_model's arguments do not name "
            "(a head's channels or dropout, say): a Hub folder cannot rebuild it"
        )
    return args


class HubSegmenter(
    nn.Module,
    PyTorchModelHubMixin,
    library_name=FORMAT,
    pipeline_tag="image-segmentation",
    tags=["semantic-segmentation", "deeplabv3", "mobilenetv2"],
    paper_url="https://arxiv.org/abs/1801.04381",
):
    """A segmentation network as huggingface_hub's mixin saves and loads it; ``model`` is the ``DeepLabV3``."""

    def __init__(
        self,
        network: dict,
        mean: list[float],
        std: list[float],
        classes: list[str],
        card: dict | None = None,
        format: str = FORMAT,
        version: int = VERSION,
    ) -> None:
        super().__init__()
        if format != FORMAT or version != VERSION:
            raise HubError(f"a Hub folder of format {format!r} version {version}; this code reads {FORMAT} {VERSION}")
        self.model = build_model(**network, mean=mean, std=std)
        self.network, self.classes, self.card = dict(network), list(classes), dict(card or {})
        if len(self.classes) != network["num_classes"]:
            raise HubError(f"{len(self.classes)} class names for a network of {network['num_classes']} classes")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        return ModelCard(model_card(self.network, self.model, self.classes, self.card))


def model_card(network: dict, model: DeepLabV3, classes: list[str], card: dict) -> str:
    """The card: what the network is, what it scored (with its intervals), on what data, with which recipe and
    environment, and how to load it."""
    scores = card.get("scores") or {}
    lines = [
        "---",
        f"library_name: {FORMAT}",
        "pipeline_tag: image-segmentation",
        "tags: [semantic-segmentation, deeplabv3, mobilenetv2, model_hub_mixin]",
        "---",
        "",
        f"# {card.get('title') or 'DeepLabv3 on MobileNetV2'}",
        "",
        f"{network['encoder']} x{network['width']:g} ({network['tap'] or 'default tap'}), head {network['head']}, "
        f"output stride {network['output_stride']}, {network['num_classes']} classes; BatchNorm and geometry "
        f"{network['bn']} / {network['geometry']}. Input: RGB scaled to 0-1, normalised by mean "
        f"{tuple(round(v, 4) for v in model.encoder.mean)}, std {tuple(round(v, 4) for v in model.encoder.std)}.",
        "",
        f"Classes: {', '.join(classes)}.",
        "",
    ]
    if scores:
        lines += ["## Scores", "", "| split | mode | mIoU | 95% interval over the images |", "|---|---|---|---|"]
        for row in scores:
            ci = row.get("ci95")
            interval = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "-"
            lines.append(f"| {row['split']} | {row['mode']} | {row['miou']:.4f} | {interval} |")
        lines.append("")
    for title, key in (("Data", "data"), ("Recipe", "recipe"), ("Environment", "environment"), ("Source", "source")):
        if card.get(key):
            value = card[key]
            text = value if isinstance(value, str) else "```\n" + json.dumps(value, indent=2) + "\n```"
            lines += [f"## {title}", "", text, ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from deeplab_mobile.predict import Segmenter",
        "",
        'segmenter = Segmenter.from_pretrained("<this folder or Hub id>")',
        "labels = segmenter.predict(image)  # an RGB uint8 array (H, W, 3) -> class indices (H, W)",
        "```",
        "",
        "Written by deeplab-mobile (`deeplab-mobile export format=hub`).",
    ]
    return "\n".join(lines) + "\n"


def save_pretrained(model: DeepLabV3, out_dir: str | Path, classes: list[str], card: dict | None = None) -> Path:
    """``model`` (its weights as they are) as a Hub folder ``out_dir``: written into a temporary folder beside it and
    moved into place, so a folder is whole or absent; an existing folder that holds files is refused."""
    from .runfolder import check_writable

    out_dir = Path(out_dir)
    taken = [f for f in (*FILES, "README.md") if (out_dir / f).exists()]
    if taken:
        raise HubError(f"{out_dir} already holds {', '.join(taken)}: choose another folder (nothing was written)")
    check_writable(out_dir, "the Hub folder")
    args = network_args(model)
    hub = HubSegmenter(args, list(model.encoder.mean), list(model.encoder.std), list(classes), card)
    hub.model.load_state_dict(model.state_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".hub-", dir=out_dir) as tmp:
        hub.save_pretrained(tmp)
        for name in os.listdir(tmp):
            os.chmod(Path(tmp) / name, 0o644)
            os.replace(Path(tmp) / name, out_dir / name)
    return out_dir


def looks_like_id(path: str | Path) -> bool:
    """``user/name`` with no file suffix and nothing of that name here."""
    return not Path(path).exists() and Path(path).suffix == "" and bool(HUB_ID.match(str(path)))


def is_hub_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def _check_config(config_file: Path, where: str) -> None:
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise HubError(f"{where}: config.json is unreadable ({exc})") from None
    if config.get("format") != FORMAT:
        said = [f"{k} {config[k]}" for k in ("library_name", "model_type", "architectures") if config.get(k)]
        hint = (
            "; a Hugging Face port of DeepLab's MobileNetV2 converts with deeplab-mobile convert-weights"
            if "mobilenet" in json.dumps(config).lower()
            else ""
        )
        what = f" ({', '.join(map(str, said))})" if said else ""
        raise HubError(f"{where}: a Hub folder of another library{what}, not of {FORMAT}{hint}")


def load_pretrained(path: str | Path) -> HubSegmenter:
    """A Hub folder, or a Hub id (``user/name``; downloaded into huggingface_hub's cache, within its timeouts)."""
    local = Path(path)
    if local.is_dir():
        _check_config(local / "config.json", str(local))
        return HubSegmenter.from_pretrained(local).eval()
    if not looks_like_id(path):
        raise HubError(f"{path}: neither a Hub folder here nor a Hub id (user/name)")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        config = Path(hf_hub_download(str(path), "config.json"))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise HubError(
            f"{path}: not a folder here, and the Hub id could not be fetched ({type(exc).__name__}); offline, "
            "download the folder where you can (huggingface-cli download) and pass it"
        ) from None
    _check_config(config, str(path))
    return HubSegmenter.from_pretrained(str(path)).eval()
