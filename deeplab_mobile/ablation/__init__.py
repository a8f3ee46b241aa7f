"""Sweep reports: a Hydra multirun folder's runs -> the paper's ablation table (Markdown, CSV, LaTeX), with seeds and
intervals, and its plot."""

from .plot import plot_tradeoff
from .rows import Row, build_rows
from .runs import Run, SweepError, find_runs
from .table import to_csv, to_latex, to_markdown

__all__ = ["Row", "Run", "SweepError", "build_rows", "find_runs", "plot_tradeoff", "to_csv", "to_latex", "to_markdown"]
