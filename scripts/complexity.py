"""Params and MAdds of a configuration, counted as the MobileNetV2 paper's Table 7 counts them.

    python scripts/complexity.py encoder=mobilenet_v2 head=no_aspp os=16
    python scripts/complexity.py encoder=resnet101 os=8 mf=true
    python scripts/complexity.py table7=true      # all 8 rows beside the paper, plus the 1280-channel tap

Results are printed and written (JSON / Markdown / CSV) into the run's Hydra output folder.
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("complexity")
