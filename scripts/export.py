"""Export a model to ONNX for devices (BatchNorm folded; logits or a class map), and check it with ONNX Runtime.

    python scripts/export.py run_dir=outputs/train/<run>                      # -> outputs/train/<run>/export/
    python scripts/export.py weights=mnv2_voc.pt                              # a model file -> outputs/export/mnv2_voc/
    python scripts/export.py head=no_aspp os=16 dynamic=true labels=uint8     # a configuration, random weights

See docs/export.md.
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("export")
