"""The ablation table of a sweep (``scripts/ablation_table.py`` is its command line; docs/sweeps.md): every run's
config, metrics.json and complexity -> Markdown, CSV, LaTeX and a mIoU-vs-MAdds plot, in Table 7's format and
order, with the paper's values beside matching rows.

Runs that failed, were interrupted or never finished are listed with their reason; jobs that multirun.yaml lists
but that never started are listed as "not started". Exit status 2 for a folder without training runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import get_overrides_dirname  # how Hydra names a sweep job's folder
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the expansion Hydra itself runs
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from tqdm import tqdm

from ..apps.common import build_model
from ..latency import measure_latency
from .plot import plot_tradeoff
from .runs import TRAIN, Run, SweepError, architecture, find_runs
from .table import build_rows, to_csv, to_latex, to_markdown


def expected_jobs(record) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper expands the sweep recorded in ``multirun.yaml`` (the
    command line's overrides plus ``hydra.sweeper.params``); [] for another sweeper."""
    if "BasicSweeper" not in str(OmegaConf.select(record, "hydra.sweeper._target_", default="")):
        return []
    params = OmegaConf.select(record, "hydra.sweeper.params", default=None) or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(OmegaConf.select(record, "hydra.overrides.task") or [])
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def not_started(sweep: Path, runs: list[Run]) -> list[Run]:
    """The jobs of ``multirun.yaml`` without a run folder, named as Hydra would have named their folders and
    described from the config they compose to."""
    if not (sweep / "multirun.yaml").is_file():
        return []
    record = OmegaConf.load(sweep / "multirun.yaml")
    seen = [sorted(r.overrides) for r in runs]
    missing = [job for job in expected_jobs(record) if sorted(job) not in seen]
    if not missing:
        return []
    hydra_cfg = record.hydra
    naming = hydra_cfg.job.config.override_dirname
    sources = [s.path for s in hydra_cfg.runtime.config_sources if s.provider == "main" and s.schema == "file"]
    result = []
    for job in missing:
        parsed = OverridesParser.create().parse_overrides(job)
        name = get_overrides_dirname(parsed, list(naming.exclude_keys), naming.item_sep, naming.kv_sep)
        run = Run(sweep / name, name, "not started", "listed in multirun.yaml; no run folder (the sweep stopped first)")
        run.overrides = job
        if sources and Path(sources[0]).is_dir():
            try:  # the variant it would have been, for the table's Network/OS/ASPP cells
                with initialize_config_dir(version_base="1.3", config_dir=sources[0]):
                    cfg = compose(hydra_cfg.job.config_name, overrides=job)
                run.arch, run.data = architecture(cfg), OmegaConf.select(cfg, "data.name", default=None)
            except Exception as exc:  # the conf folder changed since the sweep: list the job without it
                run.reason += f"; its config no longer composes ({type(exc).__name__})"
        result.append(run)
    return result


def measure(runs: list[Run], device: str, size: int) -> None:
    """Time each finished run's network (its architecture: the weights do not change the time) and write
    ``latency.json`` into its folder."""
    for run in tqdm([r for r in runs if r.state == "done"], desc=f"latency on {device}"):
        model_cfg = OmegaConf.load(run.path / ".hydra" / "config.yaml").model
        torch.manual_seed(0)
        model = build_model(model_cfg, weights=False).set_output_stride(run.arch["os"])  # the stride evaluated at
        run.latency = measure_latency(model, size=size, device=device)
        (run.path / "latency.json").write_text(json.dumps(run.latency, indent=2))


def other_evaluations(runs: list[Run], shown: list[str]) -> list[str]:
    """A note per run listing its evaluation records that are not in the table."""
    if "all" in shown:
        return []
    lines = []
    for run in runs:
        hidden = [name for name in run.evaluations if name not in shown]
        if hidden:
            lines.append(
                f"{run.name}: other evaluations {', '.join(hidden)} (--eval NAME ... or --eval all shows them)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a sweep folder (outputs/multirun/<date>) or a run folder")
    parser.add_argument("--out", type=Path, help="where to write the report (default: <sweep>/report)")
    parser.add_argument("--latency", choices=["cpu", "cuda"], help="measure each model's latency first")
    parser.add_argument("--latency-size", type=int, default=513, help="input size for --latency (default 513)")
    parser.add_argument("--eval", nargs="+", default=[TRAIN], metavar="NAME",
                        help=f"the evaluation records that fill the table: {TRAIN} (the training's own, default), "
                             "names of <run>/eval/<name>/ records, or all")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.sweep)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs += not_started(args.sweep, runs)
    if args.latency:
        measure(runs, args.latency, args.latency_size)
    rows = build_rows(runs, tuple(args.eval))
    out = args.out or args.sweep / "report"
    out.mkdir(parents=True, exist_ok=True)
    others = other_evaluations(runs, args.eval)
    markdown = to_markdown(rows, others)
    (out / "table.md").write_text(markdown)
    (out / "table.csv").write_text(to_csv(rows))
    (out / "table.tex").write_text(to_latex(rows, others))
    plot = plot_tradeoff(rows, out / "miou_vs_madds.png", title=str(args.sweep))
    print(markdown)
    done = sum(r.state == "done" for r in runs)
    print(f"{done} of {len(runs)} runs finished; wrote {out}/table.md, table.csv, table.tex", end="")
    print(", miou_vs_madds.png" if plot else " (no plot: no finished run)")
    return 0
