"""Segment your own images: masks (palette PNG) and overlays, with a model file, a run folder or an ONNX export.

    python scripts/predict.py photos/ --weights mnv2_voc.pt                  # a converted official checkpoint
    python scripts/predict.py 'photos/*.jpg' --weights outputs/train/<run> --mf --out masks/
    python scripts/predict.py photo.jpg --weights outputs/train/<run>/export/model.onnx

See docs/predict.md.
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("predict")
