"""Post-training INT8: a run folder's model, a model file or an ONNX export -> model.int8.onnx and quant.json
(float and INT8 mIoU by the same evaluator, argmax agreement, sizes, latency).

    python scripts/quantize.py run_dir=outputs/train/<run>
    python scripts/quantize.py run_dir=outputs/train/<run> method=percentile eval.mf=true
    python scripts/quantize.py weights=mnv2_voc.pt

See docs/quantize.md.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from deeplab_mobile.apps import quantize


def _quant_dir(run_dir, weights, onnx, out_dir) -> str:
    if out_dir:
        return str(out_dir)
    if run_dir:
        return f"{run_dir}/quant"
    return f"outputs/quantize/{Path(str(weights)).stem if weights else Path(str(onnx)).parent.name}"


OmegaConf.register_new_resolver("quant_dir", _quant_dir, replace=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="quantize")
def main(cfg: DictConfig) -> None:
    quantize.main(cfg)


if __name__ == "__main__":
    main()
