"""Params and MAdds of a configuration, counted as the MobileNetV2 paper's Table 7 counts them.

    python scripts/complexity.py encoder=mobilenet_v2 head=no_aspp os=16
    python scripts/complexity.py encoder=resnet101 os=8 mf=true
    python scripts/complexity.py table7=true      # all 8 rows beside the paper, plus the 1280-channel tap

Results are printed and written (JSON / Markdown / CSV) into the run's Hydra output folder.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from deeplab_mobile.complexity import count_madds, count_madds_mf, count_params
from deeplab_mobile.table7 import LAST_TAP_ROW, TABLE7, recount, to_markdown

log = logging.getLogger(__name__)


def count_one(cfg: DictConfig) -> dict:
    model_cfg = cfg.model.copy()
    model_cfg.encoder.weights = None  # counting needs shapes only: no download, no file
    with torch.device("meta"):
        model = instantiate(model_cfg)
    result = {
        "encoder": type(model.encoder).__name__,
        "head": "aspp" if cfg.model.head.aspp else "no_aspp",
        "os": cfg.os,
        "width": cfg.width,
        "tap": getattr(model.encoder, "tap", None),
        "input_size": cfg.input_size,
        "params": count_params(model),
        "madds": count_madds(model, cfg.input_size),
    }
    if cfg.mf:
        result["madds_mf"] = count_madds_mf(model)
    return result


def write_table7(out: Path) -> None:
    results = [recount(row) for row in (*TABLE7, LAST_TAP_ROW)]
    table = to_markdown(results)
    print(table)
    (out / "table7.md").write_text(table)
    (out / "table7.json").write_text(json.dumps(results, indent=2))
    with open(out / "table7.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    log.info("wrote table7.md/.json/.csv to %s", out)


@hydra.main(version_base="1.3", config_path="../conf", config_name="complexity")
def main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    if cfg.table7:
        write_table7(out)
        return
    result = count_one(cfg)
    line = f"{result['encoder']} {result['head']} OS{result['os']} width {result['width']} tap {result['tap']}"
    line += f" @ {cfg.input_size}x{cfg.input_size}: Params {result['params'] / 1e6:.3f}M"
    line += f", MAdds {result['madds'] / 1e9:.3f}B"
    if cfg.mf:
        line += f", MAdds MF {result['madds_mf'] / 1e9:.1f}B"
    print(line)
    (out / "complexity.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
