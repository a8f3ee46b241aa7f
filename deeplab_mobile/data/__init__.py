"""Data: VOC/SBD readers, trainaug preparation, the generated dataset, and the OpenCV transforms."""

from .base import IGNORE_INDEX, DatasetError
from .transforms import EvalTransform, Normalize, TrainTransform, mean_pixel, pad_collate
from .voc import CLASSES, NUM_CLASSES, PALETTE, VOCSegmentation, check_dataset

__all__ = [
    "CLASSES",
    "IGNORE_INDEX",
    "NUM_CLASSES",
    "PALETTE",
    "DatasetError",
    "EvalTransform",
    "Normalize",
    "TrainTransform",
    "VOCSegmentation",
    "check_dataset",
    "mean_pixel",
    "pad_collate",
]
