"""Sweep reports: a Hydra multirun folder's runs -> the paper's ablation table (Markdown, CSV, LaTeX) and plot."""

from .plot import plot_tradeoff
from .runs import Run, SweepError, find_runs
from .table import Row, build_rows, to_csv, to_latex, to_markdown

__all__ = ["Row", "Run", "SweepError", "build_rows", "find_runs", "plot_tradeoff", "to_csv", "to_latex", "to_markdown"]
