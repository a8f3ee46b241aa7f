"""DeepLab's published checkpoints by name: the table, downloads into the cache (docs/model_zoo.md).

python scripts/weights.py
python scripts/weights.py --fetch deeplabv3_mnv2_pascal_trainaug
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("weights")
