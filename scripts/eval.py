"""Evaluate a training run folder on its validation split: single scale, and MF (scales x left-right flip).

    python scripts/eval.py run_dir=outputs/train/<run>
    python scripts/eval.py run_dir=outputs/train/<run> eval.mf=false
    python scripts/eval.py run_dir=outputs/train/<run> eval.os=8          # the same weights at output stride 8
    python scripts/eval.py run_dir=outputs/train/<run> checkpoint=/path/to/last.pt data_root=/data/VOC2012
    python scripts/eval.py weights=mnv2_voc.pt eval.mf_os=8       # a model file (converted checkpoint) on VOC val

See docs/evaluation.md.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from deeplab_mobile.apps import evaluate

# Hydra's run folder: the run folder, or for a model file out_dir (default outputs/eval/<file name>)
OmegaConf.register_new_resolver(
    "eval_dir",
    lambda run_dir, weights, out_dir: run_dir or out_dir or f"outputs/eval/{Path(str(weights)).stem}",
    replace=True,
)


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate.main(cfg)


if __name__ == "__main__":
    main()
