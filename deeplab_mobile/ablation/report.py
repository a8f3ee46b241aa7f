"""The ablation table of a sweep (``scripts/ablation_table.py`` is its command line; docs/sweeps.md): every run's
config, metrics.json and complexity -> Markdown, CSV, LaTeX and a mIoU-vs-MAdds plot, in Table 7's format and
order, with the paper's values beside matching rows.

Runs that failed, were interrupted or never finished are listed with their reason; jobs that multirun.yaml lists
but that never started are listed as "not started". Exit status 2 for a folder without training runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tqdm import tqdm

from .. import stats
from ..bench.latency import measure_latency
from ..config.model import build_model, load_run_config
from ..config.sweeps import expand, job_dirname
from ..files import write_json, write_text
from .plot import plot_tradeoff
from .rows import build_rows
from .runs import TRAIN, Run, SweepError, architecture, find_runs, identify
from .table import per_class_csv, per_class_markdown, to_csv, to_latex, to_markdown


def expected_jobs(record) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper expands the sweep recorded in ``multirun.yaml`` (the
    command line's overrides plus ``hydra.sweeper.params``); [] for another sweeper."""
    sweeper = record.hydra.get("sweeper") or {}
    if "BasicSweeper" not in str(sweeper.get("_target_") or ""):
        return []
    params = sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(record.hydra.overrides.task or [])
    return expand(arguments)


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
        name = job_dirname(job, naming.exclude_keys, naming.item_sep, naming.kv_sep)
        run = Run(sweep / name, name, "not started", "listed in multirun.yaml; no run folder (the sweep stopped first)")
        run.overrides = job
        if sources and Path(sources[0]).is_dir():
            try:  # the variant it would have been, for the table's Network/OS/ASPP cells
                with initialize_config_dir(version_base="1.3", config_dir=sources[0]):
                    cfg = compose(hydra_cfg.job.config_name, overrides=job)
                run.arch, run.data = architecture(cfg), cfg.data.name
                identify(run, cfg)
            except Exception as exc:  # noqa: BLE001 - the conf folder changed since the sweep: list the job without it
                run.reason += f"; its config no longer composes ({type(exc).__name__})"
        result.append(run)
    return result


# --latency: measured here in PyTorch (cpu, cuda), or read from each run's quant/quant.json (scripts/quantize.py
# timed its exported files): the runtime's label in the table and that file's key in quant.json's latency_ms
QUANT_RUNTIMES = {
    "ort": ("ORT float", "float"),
    "ort_int8": ("ORT INT8", "int8"),
    "executorch": ("ExecuTorch float", "float_pte"),
    "executorch_int8": ("ExecuTorch INT8", "int8_pte"),
}
LATENCY_CHOICES = ["cpu", "cuda", *QUANT_RUNTIMES]


def measure(runs: list[Run], device: str, size: int) -> None:
    """Time each finished run's network in PyTorch (its architecture: the weights do not change the time) and write
    ``latency.json`` into its folder."""
    for run in tqdm([r for r in runs if r.state == "done"], desc=f"latency on {device}"):
        model_cfg = load_run_config(run.path).model
        torch.manual_seed(0)
        model = build_model(model_cfg, weights=False).set_output_stride(run.arch["os"])  # the stride evaluated at
        run.latency = {**measure_latency(model, size=size, device=device), "runtime": "torch"}
        write_json(run.path / "latency.json", run.latency)


def latency_from_quant(runs: list[Run], runtime: str, threads: int) -> None:
    """Each run's latency as ``scripts/quantize.py`` measured it for ``runtime`` (``QUANT_RUNTIMES``) at
    ``threads``; a run without that measurement gets none (an empty cell)."""
    label, key = QUANT_RUNTIMES[runtime]
    for run in runs:
        quant = run.quant or {}
        ms = (quant.get("latency_ms") or {}).get(key, {}).get(str(threads))
        size = "x".join(str(v) for v in quant.get("latency_size") or [])
        run.latency = None
        if ms is not None:
            device = f"CPU, {threads} thread{'s' if threads > 1 else ''}" + (f", {size}" if size else "")
            run.latency = {"median_ms": ms, "device": device, "runtime": label}


def other_evaluations(runs: list[Run], rows: list) -> list[str]:
    """A note per run listing its evaluation records that no row of the table shows."""
    used = {record for row in rows for split in row.splits.values() for record in split.records}
    lines = []
    for run in runs:
        hidden = [name for name in run.evaluations if f"{run.name}/{name}" not in used]
        if hidden:
            lines.append(
                f"{run.name}: other evaluations {', '.join(hidden)} (--eval NAME ... or --eval all shows them)"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a sweep folder (outputs/multirun/<date>) or a run folder")
    parser.add_argument("--out", type=Path, help="where to write the report (default: <sweep>/report)")
    parser.add_argument(
        "--latency",
        choices=LATENCY_CHOICES,
        help="a latency column: cpu or cuda measures each model in PyTorch first; ort, ort_int8, executorch, "
        "executorch_int8 read what scripts/quantize.py measured for each run (quant/quant.json)",
    )
    parser.add_argument("--latency-size", type=int, default=513, help="input size for --latency cpu|cuda (513)")
    parser.add_argument("--latency-threads", type=int, default=1, help="threads read for a runtime's latency (1)")
    evaluations = (
        f"the evaluations that make rows: {TRAIN} (the training's own, default), names of <run>/eval/<name>/ "
        "records, or all; each row shows its protocol on every split it was evaluated on"
    )
    parser.add_argument("--eval", nargs="+", default=[TRAIN], metavar="NAME", help=evaluations)
    reference = (
        "the row differences are taken from: its number or label (default: the best single-scale row for "
        "single-scale rows and the best MF row for MF rows, on the val split)"
    )
    parser.add_argument("--reference", metavar="ROW", help=reference)
    parser.add_argument("--samples", type=int, default=stats.SAMPLES, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=stats.SEED, help="the bootstrap's random seed (default 0)")
    args = parser.parse_args(argv)
    if args.samples < 1000:
        print(f"error: --samples {args.samples}: at least 1000 resamples", file=sys.stderr)
        return 2
    try:
        runs = find_runs(args.sweep)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs += not_started(args.sweep, runs)
    if args.latency in QUANT_RUNTIMES:
        latency_from_quant(runs, args.latency, args.latency_threads)
    elif args.latency:
        measure(runs, args.latency, args.latency_size)
    try:
        rows = build_rows(runs, tuple(args.eval), args.reference, args.samples, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.sweep / "report"
    out.mkdir(parents=True, exist_ok=True)
    others = other_evaluations(runs, rows)
    markdown = to_markdown(rows, others, args.samples)
    files = {
        "table.md": markdown,
        "table.csv": to_csv(rows),
        "table.tex": to_latex(rows, others, args.samples),
        "per_class_iou.md": per_class_markdown(rows),
        "per_class_iou.csv": per_class_csv(rows),
    }
    for name, text in files.items():
        write_text(out / name, text)
    plot = plot_tradeoff(rows, out / "miou_vs_madds.png", title=str(args.sweep))
    print(markdown)
    done = sum(r.state == "done" for r in runs)
    print(f"{done} of {len(runs)} runs finished; wrote {out}/{', '.join(files)}", end="")
    print(", miou_vs_madds.png" if plot else " (no plot: no finished run)")
    return 0
