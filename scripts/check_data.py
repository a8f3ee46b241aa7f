"""Check a dataset: read every image and mask of its splits as training would; list every problem (docs/data.md).

python scripts/check_data.py data=folder data.root=/path/to/data
python scripts/check_data.py data=cityscapes data.root=/path/to/cityscapes splits=[train,val]
python scripts/check_data.py data=voc splits=[train_aug,val]
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from deeplab_mobile.apps import check_data


@hydra.main(version_base="1.3", config_path="../conf", config_name="check_data")
def main(cfg: DictConfig) -> None:
    check_data.main(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
