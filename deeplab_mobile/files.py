"""Writing files so that no reader ever sees half of one: each write goes to a temporary file beside the target,
which then replaces it (``os.replace``: atomic on one file system). A crash or Ctrl-C mid-write leaves the old file
or none, never a torn one; the temporary file is removed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to (``suffix`` for writers that go by the extension); it replaces
    ``path`` when the block ends without an error and is removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's file is private to its owner; the files written here are not
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, value, indent: int = 2) -> Path:
    return write_text(path, json.dumps(value, indent=indent) + "\n")
