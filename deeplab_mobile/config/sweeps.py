"""Sweeps: the launcher a command line chooses, checked for its extra before Hydra starts; and what Hydra's basic
sweeper does with a sweep (the jobs it expands the overrides into, the folder name each job gets), which the
ablation report uses to list the jobs of a ``multirun.yaml`` that never started.

This is the one module that reaches into Hydra's private code (``hydra._internal``): Hydra has no public entry
point for either rule, and a copy of them would drift from the Hydra that ran the sweep. No other module imports
from ``hydra._internal``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException

from ..extras import require


class JobFailed(CompactHydraException):
    """A sweep's job that ended with a project error: Hydra records the job as failed, runs the others, and prints
    this message alone (no traceback) when the sweep ends."""


def expand(arguments: Sequence[str]) -> list[list[str]]:
    """Each job's overrides, as the basic sweeper expands ``arguments`` (``key=a,b`` sweeps)."""
    overrides = OverridesParser.create().parse_overrides(list(arguments))
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def job_dirname(job: Sequence[str], exclude_keys: Sequence[str], item_sep: str = ",", kv_sep: str = "=") -> str:
    """The folder name ``hydra.job.override_dirname`` gives a job with these overrides."""
    parsed = OverridesParser.create().parse_overrides(list(job))
    return get_overrides_dirname(parsed, list(exclude_keys), item_sep, kv_sep)


# conf/hydra/launcher/<name>.yaml -> the plugin modules it needs (the ``sweep`` extra)
LAUNCHERS = {
    "parallel": ("hydra_plugins.hydra_joblib_launcher",),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "submitit"),
}


def require_launcher(argv: Sequence[str]) -> None:
    """``MissingExtra`` when the command line picks a launcher (``hydra/launcher=parallel``) whose plugin is not
    installed; Hydra itself would fail later with a long trace that names neither the plugin nor the extra."""
    for arg in argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+") == "hydra/launcher" and name in LAUNCHERS:
            require(f"hydra/launcher={name}", *LAUNCHERS[name])
