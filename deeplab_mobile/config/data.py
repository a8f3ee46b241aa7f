"""The data a config describes: the generated dataset written once, and a split opened, with every error in the
config's keys (``data.root``, ``data.format``) and, for a dataset that is not where the config says, the path tried
and the key that sets it."""

from __future__ import annotations

import os
from collections.abc import Callable

from omegaconf import DictConfig
from torch.utils.data import Dataset

from ..data.base import DatasetError
from ..data.datasets import check_split, data_format, open_split
from ..data.synthetic import write_synthetic_voc
from ..engine.distributed import Dist, barrier
from ..errors import ArgumentError


def prepare_data(data: DictConfig, env: Dist | None = None, progress: bool = True) -> None:
    """Write the generated dataset (``data.generate``), once: by the first process under torchrun (the others wait
    at a barrier); a finished tree with the same settings is left as it is."""
    if not data.get("generate"):
        return
    if env is None or env.main:
        write_synthetic_voc(**data.generate, progress=progress)
    if env is not None:
        barrier(env)


def translate(exc: Exception, data: DictConfig, source: str | None = None) -> DatasetError:
    """A data error in the config's keys. ``source``: where ``data`` was read (a run folder's config file), said
    with the working directory a relative root is read from, and how to point elsewhere."""
    name = data.get("name") or data.get("format") or "voc"
    if isinstance(exc, ArgumentError):
        hint = f": data={name} needs data.root=<dataset folder>" if exc.argument == "root" else ""
        return DatasetError(exc.with_key(f"data.{exc.argument}", hint))
    if isinstance(exc, DatasetError) and exc.argument == "root":
        where = f"data.root in {source}" if source else "data.root"
        relative = "" if os.path.isabs(str(data.root)) else f", relative to the working directory {os.getcwd()}"
        fix = "pass data_root=<folder> to use a copy elsewhere" if source else "set data.root=<dataset folder>"
        return DatasetError(f"{exc} ({where} = {data.root}{relative}); {fix}", argument="root")
    return exc


def open_data_split(
    data: DictConfig,
    split: str,
    transform: Callable | None = None,
    num_classes: int | None = None,
    source: str | None = None,
) -> Dataset:
    """``data.open_split`` of a config's ``data`` node; errors name the config keys (``translate``)."""
    try:
        return open_split(data, split, transform, num_classes=num_classes)
    except (DatasetError, ArgumentError) as exc:
        raise translate(exc, data, source) from None


def check_data_split(data: DictConfig, split: str, num_classes: int | None = None, progress: bool = False):
    """``data.check_split`` with a bad ``data.format``/``data.root`` reported in the config's keys."""
    try:
        data_format(data)
    except ArgumentError as exc:
        return 0, [str(translate(exc, data))]
    n, problems = check_split(data, split, num_classes, progress)
    return n, problems
