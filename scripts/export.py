"""Export a model to ONNX for devices (BatchNorm folded; logits or a class map), and check it with ONNX Runtime.

    python scripts/export.py run_dir=outputs/train/<run>                      # -> outputs/train/<run>/export/
    python scripts/export.py weights=mnv2_voc.pt                              # a model file -> outputs/export/mnv2_voc/
    python scripts/export.py head=no_aspp os=16 dynamic=true labels=uint8     # a configuration, random weights

See docs/export.md.
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from deeplab_mobile.apps import export
from deeplab_mobile.config import paths

paths.register()  # the output-folder rules the config names (deeplab_mobile/config/paths.py)


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    export.main(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
