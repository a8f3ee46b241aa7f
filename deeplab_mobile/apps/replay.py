"""The replay app: one iteration of a recorded training, operator by operator (``scripts/replay.py``;
docs/reproducibility.md).

Trains the run again from its own ``.hydra/config.yaml`` (in deterministic mode's environment when the run was
deterministic) in a temporary folder, up to the iteration asked for, checks every loss on the way against the run's
``train_loss.csv``, and records that iteration op by op (``engine.oprecord``): a file both machines can write.
``scripts/compare_runs.py A.json B.json`` then names the first operator whose outputs part. Nothing is written
into the run folder.

    python scripts/compare_runs.py outputs/train/<mine> results/reference/quickstart-deterministic
    python scripts/replay.py results/reference/quickstart-deterministic --iteration 3 --out ours.json
    python scripts/replay.py outputs/train/<mine> --iteration 3 --out mine.json     # on the other machine
    python scripts/compare_runs.py ours.json mine.json
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from omegaconf import OmegaConf

from .. import determinism
from ..config.model import load_run_config
from ..config.plan import deterministic_threads
from ..engine.oprecord import OpRecord, record_iteration, write_record
from ..engine.trace import LOSS_LOG, read_losses
from ..environment import environment_record
from ..errors import InvalidValue
from .compare_runs import inside
from .train import TrainingRun

log = logging.getLogger(__name__)


def replay(run_dir: Path, iteration: int, out: Path) -> dict:
    """Train ``run_dir``'s run again up to ``iteration`` and write that iteration's operator record to ``out``;
    returns what the replay found (its losses against the run's)."""
    cfg = load_run_config(run_dir)
    iters = int(cfg.trainer.iters)
    if not 1 <= iteration <= iters:
        raise InvalidValue(f"--iteration {iteration}: {run_dir} trained iterations 1..{iters}")
    recorded = read_losses(run_dir / LOSS_LOG) if (run_dir / LOSS_LOG).is_file() else {}
    cfg.resume, cfg.progress = False, False
    records: list[OpRecord] = []
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        run = TrainingRun(cfg, tmp)
        trainer = run.trainer

        @contextlib.contextmanager
        def observe(i, images, masks) -> Iterator[None]:
            if i != iteration:
                yield
                return
            with record_iteration(i, trainer.bare_model, trainer.optimizer, images, masks) as record:
                yield
            records.append(record)

        trainer.observe = observe
        run.start()
        trainer.fit(until=iteration)
        run.board.close()
        losses = dict(enumerate(trainer.trace.losses, trainer.trace.first))
    record = records[0]
    record.summary["loss"] = repr(losses[iteration])
    parted = next((i for i in sorted(losses) if i in recorded and losses[i] != recorded[i]), None)
    record.summary["against_the_run"] = {
        "run": str(run_dir),
        "losses_compared": sum(1 for i in losses if i in recorded),
        "first_differing_loss": parted,
    }
    config = OmegaConf.to_container(cfg, resolve=True)
    write_record(out, record, environment_record(config=config, determinism=run.determinism).to_dict())
    return record.summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deeplab-mobile replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a training run folder (or a reference record) with .hydra/config.yaml")
    parser.add_argument("--iteration", type=int, required=True, help="the iteration to record, from 1")
    parser.add_argument("--out", type=Path, required=True, help="the operator record to write (a .json file)")
    args = parser.parse_args(argv)
    if args.out.suffix != ".json":
        raise InvalidValue(f"--out {args.out}: an operator record is a .json file")
    if inside(args.out, args.run):
        raise InvalidValue(f"--out {args.out}: inside the run folder; a replay never writes there")
    cfg = load_run_config(args.run)
    threads = deterministic_threads(cfg)
    if threads is not None and determinism.unpinned(threads):  # the run's environment, from torch's start
        command = [sys.executable, "-m", "deeplab_mobile", "replay", *(argv if argv is not None else sys.argv[1:])]
        return subprocess.run(command, env=determinism.child_environment(threads), check=False).returncode
    summary = replay(args.run, args.iteration, args.out)
    found = summary["against_the_run"]
    if found["first_differing_loss"] is None:
        print(f"replay: iterations 1..{args.iteration} gave the run's own losses ({found['losses_compared']} compared)")
    else:
        print(
            f"replay: this machine's loss parts from the run's at iteration {found['first_differing_loss']} "
            f"(of {found['losses_compared']} compared)"
        )
    print(f"iteration {args.iteration}: loss {summary['loss']}, weights after {summary['weights_after'][:16]}")
    print(f"-> {args.out}")
    return 0
