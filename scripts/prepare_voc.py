"""Prepare PASCAL VOC 2012 + SBD "trainaug", or check a dataset (docs/data.md).

python scripts/prepare_voc.py --voc-root data/VOCdevkit/VOC2012 --sbd-root data/benchmark_RELEASE/dataset
python scripts/prepare_voc.py --check --voc-root data/VOCdevkit/VOC2012 --splits train_aug val
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("prepare-voc")
