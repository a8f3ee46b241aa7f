"""Evaluate a training run folder on its validation split: single scale, and MF (scales x left-right flip).

    python scripts/eval.py run_dir=outputs/train/<run>
    python scripts/eval.py run_dir=outputs/train/<run> eval.mf=false
    python scripts/eval.py run_dir=outputs/train/<run> eval.os=8          # the same weights at output stride 8
    python scripts/eval.py run_dir=outputs/train/<run> checkpoint=/path/to/last.pt data_root=/data/VOC2012
    python scripts/eval.py weights=mnv2_voc.pt eval.mf_os=8       # a model file (converted checkpoint) on VOC val

See docs/evaluation.md.
"""

import hydra
from omegaconf import DictConfig

from deeplab_mobile.apps import evaluate
from deeplab_mobile.config import paths

paths.register()  # the output-folder rules the config names (deeplab_mobile/config/paths.py)


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate.main(cfg)


if __name__ == "__main__":
    main()
