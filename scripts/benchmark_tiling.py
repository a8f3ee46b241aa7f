"""Whole-image against sliding-window inference on one large image: peak memory, time, agreement, mIoU
(docs/predict.md).

python scripts/benchmark_tiling.py --weights outputs/train/<run>                     # a generated 6000x4000 mosaic
python scripts/benchmark_tiling.py --weights mnv2_voc.pt --image big.jpg --overlap 0.25 0.5
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("benchmark-tiling")
