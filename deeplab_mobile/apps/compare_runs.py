"""The compare app: what two run folders or evaluation records differ in, where their trainings part, and their
metric difference with its paired interval; given two operator records of one iteration (``scripts/replay.py``),
the first operator whose outputs part (``scripts/compare_runs.py``; docs/reproducibility.md).

Exit status 0 whatever the runs differ in; 1 with a message for a folder that cannot be compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ..compare import CompareError, compare_runs, comparison_record, format_comparison
from ..config.schema import read_run_config
from ..engine.oprecord import OpRecordError, compare_records, is_record, read_record
from ..errors import ProjectError
from ..files import write_json


def settings_of(path: Path) -> dict | None:
    """A run's config as the schema reads it (``schema.read_run_config``: a setting its version did not write has
    its default, a loss of the earlier form reads as today's); ``None`` for a config that is not a training run's
    (compared as written)."""
    try:
        return OmegaConf.to_container(read_run_config(path), resolve=False)
    except ProjectError:
        return None


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "a", type=Path, help="a training run folder, an evaluation record (<run>/eval/<name>) or an operator record"
    )
    parser.add_argument("b", type=Path, help="the other one")
    parser.add_argument("--json", type=Path, help="also write the comparison to this file (outside both folders)")
    args = parser.parse_args(argv)
    records = [is_record(p) for p in (args.a, args.b)]
    if any(records):
        return compare_operator_records(args.a, args.b, records)
    try:
        if args.json and any(inside(args.json, f) for f in (args.a, args.b)):
            raise CompareError(f"--json {args.json}: inside a compared folder; compare_runs never writes there")
        comparison = compare_runs(args.a, args.b, settings_of)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_comparison(comparison))
    if args.json:
        write_json(args.json, comparison_record(comparison))
        print(f"\n-> {args.json}")
    return 0


def compare_operator_records(a: Path, b: Path, records: list[bool]) -> int:
    """Two operator records of one iteration (``scripts/replay.py``): where they part."""
    try:
        if not all(records):
            other = b if records[0] else a
            raise OpRecordError(f"{other}: not an operator record; compare a record with another record")
        lines = compare_records(read_record(a), read_record(b))
    except OpRecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"A: {a}\nB: {b}\n")
    print("\n".join(lines))
    return 0
