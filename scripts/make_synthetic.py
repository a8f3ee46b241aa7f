"""Write the generated dataset in the PASCAL VOC layout (docs/data.md).

python scripts/make_synthetic.py --root data/synthetic            # 300 train + 100 val + 100 test, seed 0
python scripts/make_synthetic.py --root data/synth_big --n-train 2000 --n-val 300 --seed 1
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("make-synthetic")
