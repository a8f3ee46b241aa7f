"""Data: VOC/SBD readers, trainaug preparation, the generated dataset, and the OpenCV transforms."""

from .transforms import EvalTransform, Normalize, TrainTransform, pad_collate
from .voc import CLASSES, IGNORE_INDEX, NUM_CLASSES, PALETTE, DatasetError, VOCSegmentation, check_dataset


def class_names(dataset: str, num_classes: int) -> tuple[str, ...]:
    """Names for reports: VOC's 21 classes, or the generated dataset's (shape, texture) classes."""
    from .synthetic import CLASS_NAMES

    names = {"synthetic": CLASS_NAMES}.get(dataset, CLASSES)
    return tuple(names[:num_classes]) if len(names) >= num_classes else tuple(map(str, range(num_classes)))


__all__ = [
    "class_names",
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
    "pad_collate",
]
