"""DeepLab's published MobileNetV2 checkpoints by name (tensorflow/models, research/deeplab, g3doc/model_zoo.md).

``fetch("deeplabv3_mnv2_pascal_trainaug")`` downloads the model zoo's archive once, with a progress bar, into a
cache (``$TORCH_HOME/deeplab_mobile``, else ``$XDG_CACHE_HOME/torch/deeplab_mobile``, ``~/.cache/...``), converts it
once into a model file (``convert.convert_checkpoint``), and returns that file; every name a model is asked for by
(``--weights``, ``weights=``, ``Segmenter.from_pretrained``, ``build_model(weights=...)``) goes through
``resolve``. The archives come without published checksums, so what is checked is what can be: a download is whole
(its announced length), the archive holds a MobileNetV2 checkpoint of the entry's width whose variables and shapes
the converter accepts, and the converted file's SHA-256, recorded when it was written, is checked every time it is
used; a cache entry that fails is converted again from its archive, or downloaded again, never used. Offline, a
name fails within a bounded time with the URL and how to pass a local file. ``list_weights()`` is the table
docs/model_zoo.md shows (``markdown_table``; ``deeplab-mobile weights``).

Variables: ``DEEPLAB_MOBILE_ZOO_MIRROR`` (a base URL that serves the same archive names), ``DEEPLAB_MOBILE_OFFLINE=1``
(never download), ``DEEPLAB_MOBILE_DOWNLOAD_TIMEOUT`` (seconds a connection or a read may wait, default 20).

Plain Python and torch.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .data.manifest import file_sha256
from .files import atomic_path, write_json
from .models.weights import WeightsError

TIMEOUT_S = 20.0
CHUNK = 1 << 20
RECORD_VERSION = 1
SOURCE = "tensorflow/models, research/deeplab/g3doc/model_zoo.md"


class ZooError(WeightsError):
    """A name that is not in the zoo, a download that failed or was cut short, an archive that is not the entry's,
    a cache that cannot be written; the message names it and what to do."""


@dataclass(frozen=True)
class Published:
    """An mIoU the model zoo publishes for the weights, with its protocol."""

    split: str
    protocol: str
    miou: float


@dataclass(frozen=True)
class ZooWeights:
    """One published checkpoint: where it is, what its archive holds, the network it is and what it scored."""

    name: str
    url: str
    holds: str  # the archive's folder, and what it holds
    dataset: str
    width: float
    trained: str
    published: tuple[Published, ...]
    params: int  # counted as Table 7 counts them (``complexity``; a test recounts them from the built network)
    madds: int  # at 513 x 513, ``output_stride``
    classes: str = "voc"  # "voc" (21) or "cityscapes" (19)
    output_stride: int = 16  # the stride the model file runs at unless asked for another
    sha256: str | None = None  # none published by the model zoo

    @property
    def archive(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def class_names(self) -> tuple[str, ...]:
        if self.classes == "cityscapes":
            from .data.cityscapes import CLASSES

            return tuple(CLASSES)
        from .data.voc import CLASSES

        return tuple(CLASSES)

    def config(self) -> dict:
        """The model file's network: DeepLab's MobileNetV2 (second-to-last feature, no ASPP) with its conventions."""
        return {
            "encoder": "mobilenet_v2",
            "head": "no_aspp",
            "output_stride": self.output_stride,
            "width": self.width,
            "tap": "second_last",
            "num_classes": len(self.class_names()),
            "bn": "deeplab",
            "geometry": "deeplab",
        }


BASE = "http://download.tensorflow.org/models"
ZOO = {
    w.name: w
    for w in (
        ZooWeights(
            "deeplabv3_mnv2_pascal_trainaug",
            f"{BASE}/deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
            "deeplabv3_mnv2_pascal_train_aug/: model.ckpt-30000, frozen_inference_graph.pb",
            "PASCAL VOC 2012",
            1.0,
            "COCO, then VOC 2012 trainaug",
            (
                Published("val", "OS16, single scale", 75.32),
                Published("val", "OS8, MF [0.5:0.25:1.75] + flip", 77.33),
            ),
            2_113_557,
            2_742_445_696,
        ),
        ZooWeights(
            "deeplabv3_mnv2_dm05_pascal_trainaug",
            f"{BASE}/deeplabv3_mnv2_dm05_pascal_trainaug_2018_10_01.tar.gz",
            "deeplabv3_mnv2_dm05_pascal_trainaug/: model.ckpt-30000, frozen_inference_graph.pb",
            "PASCAL VOC 2012",
            0.5,
            "COCO, then VOC 2012 trainaug",
            (Published("val", "OS16, single scale", 70.19),),
            700_245,
            911_237_808,
        ),
        ZooWeights(
            "deeplabv3_mnv2_pascal_trainval",
            f"{BASE}/deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz",
            "deeplabv3_mnv2_pascal_trainval/: model.ckpt-30000, frozen_inference_graph.pb",
            "PASCAL VOC 2012",
            1.0,
            "COCO, then VOC 2012 trainaug + val",
            (Published("test", "OS8, MF + flip", 80.25),),
            2_113_557,
            2_742_445_696,
        ),
        ZooWeights(
            "deeplabv3_mnv2_cityscapes_train",
            f"{BASE}/deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
            "deeplabv3_mnv2_cityscapes_train/: model.ckpt, frozen_inference_graph.pb",
            "Cityscapes",
            1.0,
            "Cityscapes train (fine)",
            (
                Published("val", "OS16, single scale", 70.71),
                Published("val", "OS8, MF [0.75:0.25:1.25]", 73.57),
            ),
            2_113_043,
            2_741_888_128,
            classes="cityscapes",
        ),
    )
}


def cache_dir() -> Path:
    """Where archives and converted files are kept: ``$TORCH_HOME/deeplab_mobile`` (PyTorch's own cache root),
    else ``$XDG_CACHE_HOME/torch/deeplab_mobile`` (``~/.cache/torch/deeplab_mobile``)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        return Path(torch_home) / "deeplab_mobile"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch" / "deeplab_mobile"


def is_name(value: str | Path) -> bool:
    return isinstance(value, str | Path) and str(value) in ZOO


def entry(name: str) -> ZooWeights:
    if name not in ZOO:
        raise ZooError(f"{name!r} is not a published weights name; the names: {', '.join(ZOO)}")
    return ZOO[name]


def resolve(value: str | Path) -> Path:
    """A model file's path: ``value`` itself when it names a file that exists (or is not a zoo name), else the
    cached, checked model file of the zoo name it is (downloaded and converted on first use)."""
    path = Path(value)
    if path.exists() or not is_name(value):
        return path
    return fetch(str(value))


def url_of(weights: ZooWeights) -> str:
    mirror = os.environ.get("DEEPLAB_MOBILE_ZOO_MIRROR")
    return f"{mirror.rstrip('/')}/{weights.archive}" if mirror else weights.url


def fetch(name: str, *, progress: bool = True) -> Path:
    """The checked model file of ``name``, downloading and converting what the cache lacks."""
    weights = entry(name)
    folder = cache_dir()
    model_file, record_file = folder / f"{name}.pt", folder / f"{name}.json"
    record = _read_record(record_file)
    if model_file.is_file() and record.get("model_sha256") == file_sha256(model_file):
        return model_file
    from .runfolder import check_writable

    check_writable(folder, f"the weights cache (TORCH_HOME) for {name}")
    archive = folder / weights.archive
    if model_file.exists() or record:  # a converted file that does not match its record is not used
        model_file.unlink(missing_ok=True)
        record_file.unlink(missing_ok=True)
    if not archive.is_file():
        _download(weights, archive, progress)
    try:
        _convert(weights, archive, model_file, record_file)
    except ZooError:
        archive.unlink(missing_ok=True)  # an archive that is not the entry's is never kept
        raise
    return model_file


def _read_record(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) and value.get("version") == RECORD_VERSION else {}


def _download(weights: ZooWeights, archive: Path, progress: bool) -> None:
    """``url_of(weights)`` into ``archive``, whole or not at all."""
    url = url_of(weights)
    how = (
        f"download {weights.url} where you can, and either put it at {archive} (this name then finds it) or convert "
        f"it (deeplab-mobile convert-weights {weights.archive} --out model.pt) and pass that file"
    )
    if os.environ.get("DEEPLAB_MOBILE_OFFLINE") == "1":
        raise ZooError(f"{weights.name}: DEEPLAB_MOBILE_OFFLINE=1, so {url} is not downloaded; {how}")
    timeout = float(os.environ.get("DEEPLAB_MOBILE_DOWNLOAD_TIMEOUT", TIMEOUT_S))
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(archive, ".part") as part:
            total = int(response.headers.get("Content-Length") or 0) or None
            got = 0
            with (
                open(part, "wb") as out,
                tqdm(total=total, unit="B", unit_scale=True, desc=weights.archive, disable=not progress) as bar,
            ):
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            if total is not None and got != total:
                raise ZooError(f"{weights.name}: the download of {url} was cut short ({got} of {total} bytes); {how}")
            if weights.sha256 and file_sha256(part) != weights.sha256:
                raise ZooError(f"{weights.name}: {url} is not the published file (its SHA-256 differs); {how}")
    except ZooError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - start
        raise ZooError(f"{weights.name}: cannot download {url} ({reason}; {seconds:.0f} s); {how}") from None


def _convert(weights: ZooWeights, archive: Path, model_file: Path, record_file: Path) -> None:
    """The archive into the model file, through the converter's checks (a MobileNetV2 checkpoint of the entry's
    width, every variable there with its shape); the file's hash recorded. The converter runs as its own command
    (``convert-weights``, a process): it builds networks, and the builder takes these names, so calling it here
    would close an import cycle (tests/test_layers.py)."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getnames()
    except (OSError, tarfile.TarError) as exc:
        raise ZooError(f"{weights.name}: {archive} is not a readable archive ({exc}); it is removed") from None
    if not any(Path(m).name.startswith("model.ckpt") or Path(m).name.endswith(".pb") for m in members):
        raise ZooError(
            f"{weights.name}: {archive} holds no TensorFlow checkpoint or frozen graph ({len(members)} files: "
            f"{', '.join(members[:3])}...); it is removed"
        )
    with tempfile.TemporaryDirectory() as tmp, atomic_path(model_file) as out:
        classes = Path(tmp) / "classes.txt"
        classes.write_text("\n".join(weights.class_names()) + "\n")
        command = [sys.executable, "-m", "deeplab_mobile", "convert-weights", str(archive), "--out", str(out)]
        command += ["--width", f"{weights.width:g}", "--os", str(weights.output_stride), "--classes", str(classes)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            said = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
            why = said[-1].removeprefix("error: ") if said else done.stderr.strip()[-500:]
            raise ZooError(f"{weights.name}: {why}; the archive is removed")
    write_json(
        record_file,
        {
            "version": RECORD_VERSION,
            "name": weights.name,
            "url": weights.url,
            "archive_sha256": file_sha256(archive),
            "model_sha256": file_sha256(model_file),
            "converted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def list_weights(names: Sequence[str] | None = None) -> list[dict]:
    """One row per entry: the name, the archive, the network, the data, the published mIoU with its protocol, the
    Params and MAdds, and whether the converted file is in the cache."""
    rows = []
    for name in names or ZOO:
        w = entry(name)
        rows.append(
            {
                "name": w.name,
                "archive": w.url,
                "holds": w.holds,
                "network": f"MobileNetV2 x{w.width:g}, no ASPP, OS{w.output_stride}",
                "data": f"{w.dataset} ({len(w.class_names())} classes)",
                "trained": w.trained,
                "published_miou": [f"{p.split} {p.miou:.2f} ({p.protocol})" for p in w.published],
                "params": w.params,
                "madds": w.madds,
                "cached": (cache_dir() / f"{name}.pt").is_file(),
            }
        )
    return rows


def markdown_table() -> str:
    """docs/model_zoo.md's table of the published weights (a test keeps the page and this equal)."""
    lines = [
        "| name | network | data | trained on | mIoU published (protocol) | Params | MAdds (513, OS16) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in list_weights():
        lines.append(
            f"| `{row['name']}` | {row['network']} | {row['data']} | {row['trained']} | "
            f"{'; '.join(row['published_miou'])} | {row['params'] / 1e6:.2f}M | {row['madds'] / 1e9:.2f}B |"
        )
    return "\n".join(lines)


def clear(name: str) -> None:
    """Remove an entry's cached archive, model file and record."""
    w = entry(name)
    for path in (cache_dir() / f"{name}.pt", cache_dir() / f"{name}.json", cache_dir() / w.archive):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
