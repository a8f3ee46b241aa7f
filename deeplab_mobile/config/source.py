"""The one model-source resolver: a training run folder, one of its checkpoints, an evaluation record, a model
file, an ONNX export, an ExecuTorch program, or a config, into one ``source.ModelSource``.

- ``resolve(path)``: what ``path`` is decides (the command lines that take any of them: predict, video, the
  benchmarks; ``load_segmenter`` wraps it in a ``Segmenter``);
- ``from_config(cfg)``: the Hydra apps' ``run_dir=`` / ``weights=`` / ``onnx=`` keys (one of them) with
  ``checkpoint=``, or the composed ``model`` where the app builds one from a config (export).

A run's network is built from its ``.hydra/config.yaml`` with the checkpoint's weights, at the stride the
checkpoint ended training at (a final stage switches it); a file opens as ``source.open_file`` opens it.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data.voc import default_classes
from ..engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint, model_state
from ..engine.run import SettingError
from ..predict import Segmenter
from ..runfolder import CONFIG, METRICS, read_metrics, run_folder_of
from ..source import ModelSource, open_file
from .model import build_model, class_names, load_run_config
from .run import final_stage

KEYS = ("run_dir", "weights", "onnx")  # the apps' keys that name a model source


def resolve(
    path: str | Path,
    *,
    output_stride: int | None = None,
    threads: int | None = None,
) -> ModelSource:
    """The model ``path`` names: a run folder (its last checkpoint), a checkpoint inside one, an evaluation
    record (``<run>/eval/<name>/``: the run and checkpoint it scored; a model file's record: that file), a model
    file or an export. ``output_stride``: the network at that stride (an export must have it)."""
    path = Path(path)
    if path.is_dir() and (path / METRICS).is_file() and not (path / CONFIG).is_file():
        return resolve_record(path, output_stride, threads)
    run_dir = run_folder_of(path)
    if run_dir is not None:
        return open_run(run_dir, path if path.suffix == ".pt" else None, output_stride)
    return open_file(path, output_stride, threads)


def resolve_record(record: Path, output_stride: int | None, threads: int | None) -> ModelSource:
    """An evaluation record: the run checkpoint or the model file it scored."""
    scored = read_metrics(record).source
    if scored.get("checkpoint") and run_folder_of(record.parent.parent):
        return open_run(record.parent.parent, scored["checkpoint"], output_stride)
    if scored.get("weights"):
        return open_file(scored["weights"], output_stride, threads)
    raise SettingError(f"{record}: an evaluation record that names neither a checkpoint nor a model file")


def open_run(
    run_dir: str | Path, checkpoint: str | Path | None = None, output_stride: int | None = None
) -> ModelSource:
    """A training run folder's network with a checkpoint's weights (default: the last), at the stride that
    checkpoint ended at (or ``output_stride``)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    model = build_model(cfg.model, weights=False)  # the checkpoint holds every weight
    path = Path(checkpoint) if checkpoint else last_checkpoint(run_dir)
    state = load_checkpoint(path, map_location="cpu")
    try:
        model.load_state_dict(model_state(state, path))
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: does not fit the run's model ({exc})") from exc
    iteration = state.get("iteration")
    stage = final_stage(cfg)
    if stage is not None:
        model.set_output_stride(stage.stride_at(int(iteration or 0), model.output_stride))
    if output_stride is not None:
        model.set_output_stride(output_stride)
    return ModelSource.of_model(
        "run",
        run_dir,
        model,
        class_names(cfg),
        pad_to=int(cfg.data.crop_size),
        origin={"run_dir": str(run_dir), "checkpoint": str(path), "iteration": iteration},
        run=cfg,
        checkpoint=path,
        iteration=iteration,
    )


def from_config(
    cfg: DictConfig,
    keys: tuple[str, ...] = KEYS,
    build: bool = False,
    output_stride: int | None = None,
) -> ModelSource:
    """The source an app's config names: exactly one of ``keys`` (``run_dir=`` with ``checkpoint=``, ``weights=``
    a model file, ``onnx=`` an export), or with ``build`` and none of them, the composed ``model`` (its
    ``encoder_weights``; classes VOC's for 21). ``output_stride``: a model file's network at that stride."""
    given = [k for k in keys if cfg.get(k)]
    if len(given) > 1 or (not given and not build):
        names = " or ".join(f"{k}=" for k in keys)
        raise SettingError(f"give one of {names} (got {', '.join(given) if given else 'none'})")
    if not given:
        model = build_model(cfg.model)
        return ModelSource.of_model(
            "config",
            None,
            model,
            default_classes(model.head.num_classes),
            origin={
                "config": OmegaConf.to_container(cfg.model.encoder, resolve=True),
                "weights": cfg.encoder_weights,
            },
        )
    key = given[0]
    value = Path(str(cfg[key]))
    if key == "run_dir":
        return open_run(value, cfg.checkpoint or None)
    return open_file(value, output_stride if key == "weights" else None)


def load_segmenter(
    path: str | Path, *, device: str = "cpu", output_stride: int | None = None, threads: int | None = None
) -> Segmenter:
    """A ``Segmenter`` for anything ``resolve`` reads (``threads``: an export's runtime threads)."""
    return Segmenter.from_source(resolve(path, output_stride=output_stride, threads=threads), device)
