"""The data check app: every image and mask of the chosen splits, read as training reads them; every problem listed
with its file, and ``check.json`` in the run folder (``scripts/check_data.py``; docs/data.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..config.data import check_data_split
from ..files import write_json


def check(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Check each split; returns (and writes to ``<out_dir>/check.json``) the counts and problems per split."""
    data = cfg.data
    splits = list(cfg.splits) if cfg.splits else list(dict.fromkeys([data.train_split, data.val_split]))
    n_classes = OmegaConf.select(cfg, "num_classes", default=None)
    report = {"data": data.name, "root": str(data.root), "splits": {}}
    for split in splits:
        n, problems = check_data_split(data, split, n_classes, progress=cfg.progress)
        report["splits"][split] = {"samples": n, "problems": problems}
        print(f"{split}: {n} samples checked, {len(problems)} problems")
        for problem in problems:
            print(f"  {problem}")
    report["ok"] = not any(s["problems"] for s in report["splits"].values())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "check.json", report)
    return report


def main(cfg: DictConfig, out_dir: str | Path) -> None:
    if not check(cfg, out_dir)["ok"]:
        sys.exit(1)
