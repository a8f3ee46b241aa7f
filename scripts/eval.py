"""Evaluate a training run folder on its validation split: single scale, and MF (scales x left-right flip).

    python scripts/eval.py run_dir=outputs/train/<run>
    python scripts/eval.py run_dir=outputs/train/<run> eval.mf=false
    python scripts/eval.py run_dir=outputs/train/<run> eval.os=8          # the same weights at output stride 8
    python scripts/eval.py run_dir=outputs/train/<run> checkpoint=/path/to/last.pt data_root=/data/VOC2012
    python scripts/eval.py weights=mnv2_voc.pt eval.mf_os=8       # a model file (converted checkpoint) on VOC val

See docs/evaluation.md.
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("eval")
