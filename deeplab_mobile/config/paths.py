"""Where each app writes: the output-folder rules the configs name as resolvers (``hydra.run.dir:
${eval_dir:...}``), and the apps use themselves where they write outside Hydra's folder.

``register()`` makes them known to OmegaConf; every entry point calls it before Hydra composes its config.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def eval_dir(run_dir, weights, out_dir) -> str:
    """An evaluation's folder: ``out_dir`` (a run that cannot or should not be written, evaluated elsewhere), else
    the run folder (records go to ``<run>/eval/<name>/``), else ``outputs/eval/<model file name>``."""
    return str(out_dir or run_dir or Path("outputs/eval") / Path(str(weights)).stem)


# each file with its own export.json; a Hub folder of its own
SUBFOLDERS = {"pte": "executorch", "tflite": "litert", "openvino": "openvino", "hub": "hub"}


def export_dir(run_dir, weights, now, format="onnx", out_dir=None, onnx=None) -> str:
    """An export's folder: ``out_dir`` as given, else ``<run>/export``, ``outputs/export/<model file name>``, the
    folder of an ONNX file converted to another runtime (``onnx=``), or ``outputs/export/<time>`` for a
    configuration with random weights; the formats other than ONNX (``SUBFOLDERS``: ExecuTorch, LiteRT, OpenVINO,
    a Hub folder) in a subfolder of their own."""
    if out_dir:
        return str(out_dir)
    if onnx:
        base = Path(str(onnx)).parent
    elif run_dir:
        base = Path(run_dir) / "export"
    else:
        base = Path("outputs/export") / (Path(str(weights)).stem if weights else str(now))
    return str(base / SUBFOLDERS[format] if format in SUBFOLDERS else base)


def export_subdir(format) -> str | None:
    """Where Hydra keeps an export's config: ``.hydra`` beside the file, nowhere in a Hub folder (which is shared
    as it is)."""
    return None if format == "hub" else ".hydra"


def quant_dir(run_dir, weights, onnx, out_dir) -> str:
    """INT8's folder: ``out_dir``, else ``<run>/quant``, ``outputs/quantize/<model file name>`` or, for an ONNX file,
    ``outputs/quantize/<its folder's name>``."""
    if out_dir:
        return str(out_dir)
    if run_dir:
        return str(Path(run_dir) / "quant")
    return str(Path("outputs/quantize") / (Path(str(weights)).stem if weights else Path(str(onnx)).parent.name))


def config_dir() -> Path:
    """The folder of the configs: ``conf/`` beside the package in a source checkout (an editable install reads the
    checkout's, as edited), else the copy a wheel installs inside the package (``deeplab_mobile/conf``)."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "conf"
    return checkout if (checkout / "train.yaml").is_file() else package / "conf"


RESOLVERS = {"eval_dir": eval_dir, "export_dir": export_dir, "export_subdir": export_subdir, "quant_dir": quant_dir}


def register() -> None:
    for name, rule in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, rule, replace=True)
