"""The compare app: what two run folders or evaluation records differ in, where their trainings part, and their
metric difference with its paired interval (``scripts/compare_runs.py``; docs/reproducibility.md).

Exit status 0 whatever the runs differ in; 1 with a message for a folder that cannot be compared.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..compare import CompareError, compare_runs, comparison_record, format_comparison
from ..files import write_json


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="a training run folder or an evaluation record (<run>/eval/<name>)")
    parser.add_argument("b", type=Path, help="the other one")
    parser.add_argument("--json", type=Path, help="also write the comparison to this file (outside both folders)")
    args = parser.parse_args(argv)
    try:
        if args.json and any(inside(args.json, f) for f in (args.a, args.b)):
            raise CompareError(f"--json {args.json}: inside a compared folder; compare_runs never writes there")
        comparison = compare_runs(args.a, args.b)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_comparison(comparison))
    if args.json:
        write_json(args.json, comparison_record(comparison))
        print(f"\n-> {args.json}")
    return 0
