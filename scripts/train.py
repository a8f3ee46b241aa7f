"""Train a DeepLabv3 model; evaluate it single-scale and MF + flip at the end (docs/training.md).

python scripts/train.py head=no_aspp os=16                               # PASCAL VOC trainaug, DeepLab's recipe
python scripts/train.py recipe=cpu_synthetic head=no_aspp width=0.5      # the generated dataset, on a CPU
python scripts/train.py recipe=cpu_synthetic hydra.run.dir=outputs/train/<run> resume=true
torchrun --nproc_per_node=4 scripts/train.py trainer.sync_bn=true
python scripts/train.py -m experiment=head_os recipe=cpu_synthetic      # a sweep -> scripts/ablation_table.py
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from deeplab_mobile.apps import train
from deeplab_mobile.config.sweeps import require_launcher
from deeplab_mobile.extras import MissingExtra


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train.main(cfg, HydraConfig.get())


if __name__ == "__main__":
    try:
        require_launcher(sys.argv[1:])
    except MissingExtra as exc:
        sys.exit(f"error: {exc}")
    main()
