"""Throughput of the training input pipeline (docs/benchmark.md).

python scripts/benchmark_data.py                       # a generated VOC-sized set (375-500 px images)
python scripts/benchmark_data.py --voc-root data/VOCdevkit/VOC2012 --split train_aug
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("benchmark-data")
