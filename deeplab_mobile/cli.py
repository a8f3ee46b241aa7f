"""Every command line of the project, and the one way they end (docs/cli.md).

``deeplab-mobile <command> ...`` (``python -m deeplab_mobile <command> ...``) and the files in ``scripts/`` run the
same functions here. Two kinds of command:

- configured commands (``train``, ``eval``, ``export``, ``quantize``, ``complexity``, ``check-data``): Hydra
  composes ``conf/<name>.yaml`` with ``key=value`` overrides, and the results go to the run's output folder;
- file commands (``predict``, ``compare-runs``, ``convert-weights``, ``ablation-table``, the benchmarks, ...):
  ``--option value`` flags, for tools that read and write files given by name.

Both end the same way (``reported``): a ``ProjectError`` (a missing file, a refused setting, bad data, an extra
that is not installed) prints its message and exits with status 1; Ctrl-C exits with 130; anything else is a bug
and keeps its traceback. A training run records how it ended in its ``status.json`` too (``engine.run``).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .config.paths import config_dir
from .errors import ProjectError

log = logging.getLogger("deeplab_mobile")


@contextmanager
def reported(sweep: bool = False, logged: bool = False) -> Iterator[None]:
    """A ``ProjectError`` ends the process with its message and status 1 (``error: ...`` on stderr, or with
    ``logged`` into Hydra's log, its console and ``<name>.log``); Ctrl-C with status 130. In a sweep (``sweep``:
    Hydra's multirun) a job's error is raised on: Hydra records the job as failed and runs the next."""
    try:
        yield
    except ProjectError as exc:
        if sweep:  # Hydra records the job as failed, goes on, and prints this message alone at the end
            from .config.sweeps import JobFailed

            raise JobFailed(str(exc)) from None
        if logged:
            log.error("%s", exc)
        else:
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


@dataclass(frozen=True)
class Command:
    """One command: ``target`` is ``module:function`` of the app; ``config`` the Hydra config of a configured
    command (its ``main(cfg, hydra_config)`` or ``main(cfg)``), ``None`` for a file command (``main(argv)``)."""

    target: str  # "<module of deeplab_mobile>:<function>"
    help: str
    config: str | None = None
    passes: str = ""  # what a configured command's main takes besides cfg: "hydra" or "out_dir"

    def function(self) -> Callable:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(f"deeplab_mobile.{module}"), name)

    def __call__(self, argv: list[str], prog: str) -> int:
        if self.config is None:
            with reported():
                return int(self.function()(argv) or 0)
        return run_configured(self, argv, prog)


COMMANDS = {
    "train": Command("apps.train:main", "train a model", "train", "hydra"),
    "eval": Command("apps.evaluate:main", "evaluate a run or model file", "eval"),
    "export": Command("apps.export:main", "export to ONNX or ExecuTorch", "export", "out_dir"),
    "quantize": Command("apps.quantize:main", "INT8 post-training / QAT", "quantize"),
    "complexity": Command("apps.complexity:main", "Params and MAdds", "complexity", "out_dir"),
    "check-data": Command("apps.check_data:main", "check a dataset", "check_data", "out_dir"),
    "predict": Command("apps.predict:main", "segment images and videos"),
    "compare-runs": Command("apps.compare_runs:main", "what two runs differ in"),
    "numerics-probe": Command("apps.numerics:main", "what moves a training's weights"),
    "replay": Command("apps.replay:main", "one iteration of a run, operator by operator"),
    "convert-weights": Command("apps.convert_weights:main", "official checkpoints -> model files"),
    "weights": Command("apps.weights:main", "published weights by name: the table, downloads"),
    "make-synthetic": Command("apps.make_synthetic:main", "write the generated dataset"),
    "prepare-voc": Command("apps.prepare_voc:main", "VOC + SBD trainaug"),
    "ablation-table": Command("ablation.report:main", "a sweep's ablation table"),
    "benchmark": Command("bench.models:main", "latency and memory against peers"),
    "benchmark-data": Command("bench.data:main", "input pipeline throughput"),
    "benchmark-int8": Command("bench.int8:main", "INT8 speed in ONNX Runtime"),
    "benchmark-runtimes": Command("bench.runtimes:main", "the candidate on every runtime, float and INT8"),
    "benchmark-stats": Command("bench.stats:main", "the bootstrap's cost"),
    "benchmark-tiling": Command("bench.tiling:main", "whole against tiled inference"),
    "benchmark-video": Command("bench.video:main", "frames per second on a video"),
}


OUTPUT_KEYS = {"eval": "out_dir", "export": "out_dir", "quantize": "out_dir"}  # else hydra.run.dir

HELP = {
    "train": """Train a network and evaluate it; everything is a key=value override of conf/train.yaml.

  deeplab-mobile train recipe=cpu_synthetic head=no_aspp width=0.5   # the generated data, about 8 minutes on a CPU
  deeplab-mobile train head=no_aspp os=16                            # VOC trainaug with DeepLab's recipe

Recipes (recipe=): deeplab_voc (default), cpu_synthetic. Groups: encoder=, head=, data=, optim=, sched=, loss=,
variant= (a Table 7 row), experiment= (a sweep, with -m). Keys: os, width, tap, trainer.iters, trainer.seed,
trainer.deterministic=true (the same weights on any x86-64 CPU), progress=false ...

Where the run goes: outputs/train/<date_time>/ (hydra.run.dir=<folder> to choose): its config, train.log,
status.json, checkpoints/last.pt, metrics.json; docs/training.md#the-run-folder.
Resume: the same command with hydra.run.dir=<run> resume=true continues from the last checkpoint; resume=auto
starts a folder without one. A sweep (-m) finishes in place with hydra.sweep.dir=<sweep> resume=auto.

The whole composed config: deeplab-mobile train <overrides> --cfg job. Hydra's own options: --hydra-help.""",
}


def configured_help(command: Command, name: str) -> str:
    """What a configured command does, before the configuration (Hydra's ``--help`` prints the config alone)."""
    if name in HELP:
        return HELP[name]
    module = importlib.import_module(f"deeplab_mobile.{command.target.split(':')[0]}")
    about = (module.__doc__ or command.help).strip().split("\n\n")[0]
    return (
        f"{about}\n\nArguments are key=value overrides of conf/{command.config}.yaml; the whole composed config: "
        f"deeplab-mobile {name} <overrides> --cfg job. docs/cli.md lists every command."
    )


def output_folder(command: Command, argv: list[str]) -> tuple[str, Path] | None:
    """The folder Hydra will create for a configured command and these overrides (the run's, or a sweep's), or
    ``None`` where it cannot be told before Hydra runs (Hydra's own flags, sweep syntax it expands itself)."""
    from hydra import compose, initialize_config_dir

    sweep = any(a in ("-m", "--multirun") for a in argv)
    overrides = [a for a in argv if a not in ("-m", "--multirun")]
    if any(a.startswith("-") for a in overrides):
        return None
    if sweep:  # the sweep folder does not depend on the values swept
        overrides = [o for o in overrides if "," not in o.split("=", 1)[-1] and "(" not in o.split("=", 1)[-1]]
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            cfg = compose(command.config, overrides=overrides, return_hydra_config=True)
        key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
        from omegaconf import OmegaConf

        return key, Path(str(OmegaConf.select(cfg, key)))
    except Exception:  # noqa: BLE001 - Hydra reports a bad override itself, with its own message
        return None


def run_configured(command: Command, argv: list[str], prog: str) -> int:
    """A configured command under Hydra: ``conf/<config>.yaml`` with the ``key=value`` overrides in ``argv``. Its
    output folder is checked before Hydra creates it (a read-only place is one line, not a traceback)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .config import paths, schema

    name = prog.split()[-1].removesuffix(".py").replace("_", "-").split("/")[-1]
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {prog} [key=value ...] [-m]\n\n{configured_help(command, name)}")
        return 0
    paths.register()  # the output-folder rules the configs name (config/paths.py)
    schema.register()  # the configs' types and defaults, and the groups' options (config/schema.py)
    folder = output_folder(command, argv)
    if folder is not None:
        from .runfolder import check_writable

        key = "hydra.sweep.dir" if folder[0] == "hydra.sweep.dir" else OUTPUT_KEYS.get(name, folder[0])
        with reported():
            check_writable(folder[1], f"the output folder (set by {key}=)")
    app = command.function()

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name=command.config)
    def task(cfg) -> None:
        with reported(sweep=HydraConfig.get().mode == RunMode.MULTIRUN, logged=True):
            schema.conform(cfg, schema.APPS[f"{command.config}_schema"])  # a +key past the schema
            if command.passes == "hydra":
                app(cfg, HydraConfig.get())
            elif command.passes == "out_dir":
                app(cfg, Path(HydraConfig.get().runtime.output_dir))
            else:
                app(cfg)

    if command.config == "train":
        from .config.sweeps import require_launcher

        with reported():
            require_launcher(argv)
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        task()
    finally:
        sys.argv = saved
    return 0


def script(name: str) -> None:
    """A ``scripts/<name>.py`` file: the command of that name with the script's own arguments."""
    sys.exit(COMMANDS[name](sys.argv[1:], sys.argv[0]))


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {c.help}" for name, c in COMMANDS.items()]
    return (
        "usage: deeplab-mobile <command> [arguments]   (deeplab-mobile --version; <command> --help)\n\ncommands:\n"
        + "\n".join(lines)
    )


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        own = installed("deeplab-mobile")
    except PackageNotFoundError:
        own = "(not installed)"
    return f"deeplab-mobile {own} ({Path(__file__).resolve().parent})"


def main(argv: list[str] | None = None) -> int:
    """``deeplab-mobile <command> ...``: the command's own arguments follow its name (``--help`` for each)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-V", "--version"):
        print(version())
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n{usage()}", file=sys.stderr)
        return 2
    return COMMANDS[name](rest, f"deeplab-mobile {name}")


if __name__ == "__main__":
    sys.exit(main())
