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

from .errors import ProjectError

log = logging.getLogger("deeplab_mobile")
CONF = Path(__file__).resolve().parents[1] / "conf"  # the configs beside the package (a source checkout)


@contextmanager
def reported(sweep: bool = False, logged: bool = False) -> Iterator[None]:
    """A ``ProjectError`` ends the process with its message and status 1 (``error: ...`` on stderr, or with
    ``logged`` into Hydra's log, its console and ``<name>.log``); Ctrl-C with status 130. In a sweep (``sweep``:
    Hydra's multirun) a job's error is raised on: Hydra records the job as failed and runs the next."""
    try:
        yield
    except ProjectError as exc:
        if sweep:
            raise
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
    "make-synthetic": Command("apps.make_synthetic:main", "write the generated dataset"),
    "prepare-voc": Command("apps.prepare_voc:main", "VOC + SBD trainaug"),
    "ablation-table": Command("ablation.report:main", "a sweep's ablation table"),
    "benchmark": Command("bench.models:main", "latency and memory against peers"),
    "benchmark-data": Command("bench.data:main", "input pipeline throughput"),
    "benchmark-int8": Command("bench.int8:main", "INT8 speed in ONNX Runtime"),
    "benchmark-stats": Command("bench.stats:main", "the bootstrap's cost"),
    "benchmark-tiling": Command("bench.tiling:main", "whole against tiled inference"),
    "benchmark-video": Command("bench.video:main", "frames per second on a video"),
}


def run_configured(command: Command, argv: list[str], prog: str) -> int:
    """A configured command under Hydra: ``conf/<config>.yaml`` with the ``key=value`` overrides in ``argv``."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .config import paths

    paths.register()  # the output-folder rules the configs name (config/paths.py)
    app = command.function()

    @hydra.main(version_base="1.3", config_path=str(CONF), config_name=command.config)
    def task(cfg) -> None:
        with reported(sweep=HydraConfig.get().mode == RunMode.MULTIRUN, logged=True):
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
    return "usage: deeplab-mobile <command> [arguments]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``deeplab-mobile <command> ...``: the command's own arguments follow its name (``--help`` for each)."""
    argv = list(sys.argv[1:] if argv is None else argv)
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
