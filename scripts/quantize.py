"""Post-training INT8: a run folder's model, a model file or an ONNX export -> model.int8.onnx and quant.json
(float and INT8 mIoU by the same evaluator, argmax agreement, sizes, latency).

    python scripts/quantize.py run_dir=outputs/train/<run>
    python scripts/quantize.py run_dir=outputs/train/<run> method=percentile eval.mf=true
    python scripts/quantize.py weights=mnv2_voc.pt

See docs/quantize.md.
"""

import hydra
from omegaconf import DictConfig

from deeplab_mobile.apps import quantize
from deeplab_mobile.config import paths

paths.register()  # the output-folder rules the config names (deeplab_mobile/config/paths.py)


@hydra.main(version_base="1.3", config_path="../conf", config_name="quantize")
def main(cfg: DictConfig) -> None:
    quantize.main(cfg)


if __name__ == "__main__":
    main()
