"""Check a dataset: read every image and mask of its splits as training would; list every problem (docs/data.md).

python scripts/check_data.py data=folder data.root=/path/to/data
python scripts/check_data.py data=cityscapes data.root=/path/to/cityscapes splits=[train,val]
python scripts/check_data.py data=voc splits=[train_aug,val]
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("check-data")
