"""Data: VOC/SBD readers, trainaug preparation, the generated dataset, and the OpenCV transforms."""

from .transforms import EvalTransform, Normalize, TrainTransform, mean_pixel, pad_collate
from .voc import CLASSES, IGNORE_INDEX, NUM_CLASSES, PALETTE, DatasetError, VOCSegmentation, check_dataset

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
