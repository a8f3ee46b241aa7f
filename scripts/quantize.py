"""Post-training INT8: a run folder's model, a model file or an ONNX export -> model.int8.onnx and quant.json
(float and INT8 mIoU by the same evaluator, argmax agreement, sizes, latency).

    python scripts/quantize.py run_dir=outputs/train/<run>
    python scripts/quantize.py run_dir=outputs/train/<run> method=percentile eval.mf=true
    python scripts/quantize.py weights=mnv2_voc.pt

See docs/quantize.md.
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("quantize")
