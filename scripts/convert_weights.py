"""Convert an official DeepLab MobileNetV2 checkpoint into a model file (weights=FILE loads it).

    python scripts/convert_weights.py deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz --out mnv2_voc.pt
    python scripts/convert_weights.py deeplabv3_mnv2_pascal_train_aug/model.ckpt-30000 --out mnv2_voc.pt
    python scripts/convert_weights.py deeplabv3_mnv2_pascal_train_aug/frozen_inference_graph.pb --out mnv2_voc.pt
    python scripts/convert_weights.py google/deeplabv3_mobilenet_v2_1.0_513 --out mnv2_voc.pt   # needs a connection

See docs/model_zoo.md.
"""

from deeplab_mobile.cli import script

if __name__ == "__main__":
    script("convert-weights")
