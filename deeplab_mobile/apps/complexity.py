"""The complexity app: Params and MAdds of a configuration, or of every Table 7 row beside the paper's values
(``scripts/complexity.py`` is its command line). Counting runs on meta tensors: instant, no weights loaded."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..complexity import count_madds, count_madds_mf, count_params
from ..config.model import build_model
from ..files import write_json, write_text
from ..models import describe_model
from ..table7 import LAST_TAP_ROW, TABLE7, recount, to_markdown

log = logging.getLogger(__name__)


def count_one(cfg: DictConfig) -> dict:
    with torch.device("meta"):
        model = build_model(cfg.model, weights=False)  # counting needs shapes only: no download, no file
    result = {
        **describe_model(model),
        "input_size": cfg.input_size,
        "params": count_params(model),
        "madds": count_madds(model, cfg.input_size),
    }
    if cfg.mf:
        result.update(mf_scales=list(cfg.eval.mf_scales), flip=cfg.eval.flip)
        result["madds_mf"] = count_madds_mf(model, cfg.eval.mf_scales, cfg.eval.flip)
    return result


def write_table7(out: Path) -> None:
    results = [recount(row) for row in (*TABLE7, LAST_TAP_ROW)]
    table = to_markdown(results)
    print(table)
    write_text(out / "table7.md", table)
    write_json(out / "table7.json", results)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(results[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    write_text(out / "table7.csv", table.getvalue())
    log.info("wrote table7.md/.json/.csv to %s", out)


def main(cfg: DictConfig, out: Path) -> None:
    if cfg.table7:
        write_table7(out)
        return
    r = count_one(cfg)
    line = f"{r['network']} {r['head']} OS{r['os']} tap {r['tap']} @ {cfg.input_size}x{cfg.input_size}: "
    line += f"Params {r['params'] / 1e6:.3f}M, MAdds {r['madds'] / 1e9:.3f}B"
    if cfg.mf:
        line += f", MAdds MF {r['madds_mf'] / 1e9:.1f}B"
    print(line)
    write_json(out / "complexity.json", r)
