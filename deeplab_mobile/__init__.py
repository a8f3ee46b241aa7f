"""deeplab-mobile: DeepLabv3 heads on a dilated MobileNetV2 encoder (MobileNetV2 paper, Table 7)."""

__version__ = "0.1.0"
