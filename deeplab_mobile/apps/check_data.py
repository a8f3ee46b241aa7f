"""The data check app: every image and mask of the chosen splits, read as training reads them; every problem listed
with its file, and ``check.json`` in the run folder (``scripts/check_data.py``; docs/data.md). With
``class_weights=<rule>``, also each class's pixel frequency on the training split and its weight by the rule, to
``class_weights.json`` (the file ``loss.class_weights`` reads; ``data.class_weights``)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from ..config.data import check_data_split, open_data_split
from ..data.class_weights import RULES, pixel_counts, weights_record, write_class_weights
from ..engine.run import SettingError
from ..files import write_json


def check(cfg: DictConfig, out_dir: str | Path) -> dict:
    """Check each split; returns (and writes to ``<out_dir>/check.json``) the counts and problems per split."""
    data = cfg.data
    splits = list(cfg.splits) if cfg.splits else list(dict.fromkeys([data.train_split, data.val_split]))
    n_classes = cfg.num_classes
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


def class_frequencies(cfg: DictConfig, out_dir: str | Path) -> Path:
    """Count each class's pixels on ``class_weights_split`` (default the training split) and write the weights of
    rule ``cfg.class_weights`` to ``class_weights_file`` (default ``<out_dir>/class_weights.json``)."""
    data, rule = cfg.data, cfg.class_weights
    if rule not in RULES:
        raise SettingError(f"class_weights={rule!r} is not a rule; choose one of {', '.join(RULES)}")
    split = cfg.get("class_weights_split") or data.train_split
    dataset = open_data_split(data, split, num_classes=cfg.num_classes)
    n = int(dataset.num_classes)
    where = data.classes
    classes = getattr(dataset, "classes", None)  # a folder dataset's classes file
    names = list(classes.names) if hasattr(classes, "names") else []
    if not names and where is not None:
        names = list(where) if OmegaConf.is_list(where) else list(get_object(str(where)))
    names = names if len(names) == n else [str(i) for i in range(n)]
    pixels, image_pixels = pixel_counts(dataset, n, cfg.progress)
    record = weights_record(pixels, image_pixels, rule, names, split, str(data.name))
    path = write_class_weights(cfg.get("class_weights_file") or Path(out_dir) / "class_weights.json", record)
    print(f"{split}: class pixel frequencies and {rule} weights in {path}")
    width = max(len(name) for name in names)
    for name, share, weight in zip(names, record["frequency"], record["weights"], strict=True):
        print(f"  {name:<{width}}  {100 * share:7.3f}%  weight {weight:.4f}")
    print(f"train with them: scripts/train.py loss=weighted_ce loss.class_weights={path}")
    return path


def main(cfg: DictConfig, out_dir: str | Path) -> None:
    report = check(cfg, out_dir)
    if report["ok"] and cfg.get("class_weights"):
        class_frequencies(cfg, out_dir)
    if not report["ok"]:
        sys.exit(1)
