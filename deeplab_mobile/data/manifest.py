"""The manifest of the data a run read: for each split, its list file and its masks by name, size and content hash,
and its images by name and size; one SHA-256 over all of it.

Two runs with the same manifest hash read the same split lists and the same labels. Images enter by name and size
only (hashing VOC's 17,000 JPEGs on every run would cost seconds; a re-encoded image almost always changes size).
Content hashes are cached by (path, size, modification time) in ``$XDG_CACHE_HOME/deeplab_mobile/manifest/``, so
a run re-hashes only the files that changed; a cache that cannot be read or written is skipped, never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from ..files import write_json
from .base import check_samples

CHUNK = 1 << 20
CHECK_RULES = 1  # the version of data.base.check_samples' rules: a change checks every split again


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deeplab_mobile" / "manifest"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """Content hashes of one folder's files, keyed by absolute path, size and modification time (ns)."""

    def __init__(self, root: Path) -> None:
        key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        self.path = cache_dir() / f"{key}.json"
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def sha256(self, path: Path, stat: os.stat_result) -> str:
        name = str(path.resolve())
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = self.entries.get(name)
        if isinstance(entry, list) and entry[:2] == stamp:
            return entry[2]
        value = file_sha256(path)
        self.entries[name] = [*stamp, value]
        self.changed = True
        return value

    def save(self) -> None:
        if not self.changed:
            return
        try:
            write_json(self.path, self.entries, indent=None)
        except OSError:
            pass  # a read-only home: the next run hashes again


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _add_entry(digest, path: Path, root: Path, cache: HashCache | None) -> int | None:
    """One file into ``digest``: its path under ``root`` and its size (with ``cache``, its content hash too); its
    size, or ``None`` when it is missing."""
    name = _relative(path, root)
    try:
        stat = path.stat()
        content = f"\0{cache.sha256(path, stat)}" if cache is not None else ""
    except OSError:
        digest.update(f"{name}\0missing\n".encode())
        return None
    digest.update(f"{name}\0{stat.st_size}{content}\n".encode())
    return stat.st_size


def split_manifest(dataset, cache: HashCache | None = None) -> dict:
    """One split (a dataset with ``pairs`` and ``root``; ``list_file`` where it has one) -> its counts and hashes.
    A file that is missing is recorded as missing (the dataset reports it when read)."""
    root = Path(getattr(dataset, "root", "."))
    cache = cache or HashCache(root)
    masks, images = hashlib.sha256(), hashlib.sha256()
    mask_bytes = image_bytes = missing = 0
    for image, mask in dataset.pairs:
        sizes = (_add_entry(images, image, root, None), _add_entry(masks, mask, root, cache))
        image_bytes += sizes[0] or 0
        mask_bytes += sizes[1] or 0
        missing += sizes.count(None)
    record = {
        "samples": len(dataset.pairs),
        "list_file": None,
        "masks_sha256": masks.hexdigest(),
        "mask_bytes": mask_bytes,
        "images_sha256": images.hexdigest(),
        "image_bytes": image_bytes,
        "missing_files": missing,
    }
    list_file = getattr(dataset, "list_file", None)
    if list_file is not None and Path(list_file).is_file():
        stat = Path(list_file).stat()
        record["list_file"] = {
            "path": _relative(Path(list_file), root),
            "size": stat.st_size,
            "sha256": cache.sha256(Path(list_file), stat),
        }
    return record


def data_manifest(splits: Mapping[str, object]) -> dict:
    """``{split name: dataset}`` -> ``{"sha256": ..., "root": ..., "splits": {name: split_manifest}}``; a dataset
    without file pairs (an in-memory one) is recorded by its length alone."""
    record: dict = {"splits": {}}
    caches: dict[Path, HashCache] = {}
    for name, dataset in splits.items():
        if not hasattr(dataset, "pairs"):
            record["splits"][name] = {"samples": len(dataset), "files": None}
            continue
        root = Path(getattr(dataset, "root", "."))
        cache = caches.setdefault(root, HashCache(root))
        record["splits"][name] = split_manifest(dataset, cache)
        record.setdefault("root", str(root))
    for cache in caches.values():
        cache.save()
    record["sha256"] = hashlib.sha256(json.dumps(record["splits"], sort_keys=True).encode()).hexdigest()
    return record


def check_splits(splits: Mapping[str, object], manifest: dict, num_classes: int, progress: bool = False) -> list[str]:
    """Every problem of every sample (``data.base.check_samples``: a missing or unreadable file, a label outside
    the classes, a size mismatch) of each split, each named with its split. A split found clean is remembered by
    its manifest entry and the class count (in the manifest's cache folder), so a later run on the same data
    does not read it again; images enter the manifest by name and size, so a changed image of the same size is
    not noticed then."""
    problems = []
    for name, dataset in splits.items():
        entry = manifest["splits"].get(name) or {}
        if not hasattr(dataset, "paths") or entry.get("files", True) is None:
            continue
        key = {"split": entry, "classes": num_classes, "rules": CHECK_RULES}
        mark = cache_dir() / "checked" / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()}.json"
        if mark.is_file():
            continue
        found = check_samples(dataset, progress)
        problems += [f"{name}: {problem}" for problem in found]
        if not found:
            try:
                write_json(mark, {"split": name, "root": manifest.get("root"), "samples": len(dataset)})
            except OSError:
                pass  # a read-only home: the next run checks again
    return problems
