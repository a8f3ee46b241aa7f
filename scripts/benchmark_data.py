"""Throughput of the training input pipeline (docs/benchmark.md).

python scripts/benchmark_data.py                       # a generated VOC-sized set (375-500 px images)
python scripts/benchmark_data.py --voc-root data/VOCdevkit/VOC2012 --split train_aug
"""

import sys

from deeplab_mobile.apps.benchmark_data import main

if __name__ == "__main__":
    sys.exit(main())
