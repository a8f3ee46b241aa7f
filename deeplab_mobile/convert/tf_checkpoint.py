"""TensorFlow's checkpoint format (a "tensor bundle"), read without TensorFlow.

A checkpoint ``model.ckpt-N`` is two kinds of file (tensorflow/core/util/tensor_bundle/tensor_bundle.h):

- ``model.ckpt-N.index``: a sorted string table (the LevelDB table format, tensorflow/core/lib/io/format.h): data
  blocks of prefix-compressed ``key -> value`` entries, an index block pointing at them, and a 48-byte footer
  ending in a magic number. The entry with the empty key is a ``BundleHeaderProto`` (shard count, byte order);
  every other key is a tensor's name and its value a ``BundleEntryProto`` (dtype, shape, shard, offset, size).
- ``model.ckpt-N.data-SSSSS-of-NNNNN``: each tensor's raw bytes, little-endian, at its offset in its shard.

Both protos are decoded here from the protobuf wire format (a handful of varint and length-delimited fields).
Written by hand: TensorFlow is the only library that reads the format, and installing it beside the training code
costs about 600 MB and brings a runtime that crashes a training process it is loaded into. The model zoo's
checkpoints are uncompressed, unpartitioned float tensors in one shard; anything else is refused with a message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidValue

MAGIC = 0xDB4775248B80FB57  # kTableMagicNumber
FOOTER = 48  # two block handles padded to 40 bytes, then the magic number
TRAILER = 5  # after every block: compression type (1 byte) and a masked CRC32C (4)
# TensorFlow's DataType enum (tensorflow/core/framework/types.proto) -> numpy, for the numeric types
DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}


class TFCheckpointError(InvalidValue):
    """A file that is not a readable TensorFlow checkpoint; the message names it."""


@dataclass(frozen=True)
class Entry:
    """Where one tensor of a checkpoint lies: dtype (TensorFlow's enum), shape, shard, byte offset and size."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    sliced: bool = False  # a partitioned variable (its slices live under other keys)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise InvalidValue("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """A protobuf message's (field number, value): ints for varint and fixed fields, bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise InvalidValue(f"protobuf wire type {wire}")
        yield number, value


def _signed(value: int) -> int:
    """An int32/int64 field's varint as a signed number (negative values are ten-byte two's complements)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _shape(buf: bytes) -> tuple[int, ...]:
    """A ``TensorShapeProto``: its ``dim`` (field 2) sizes (field 1 of each)."""
    dims = []
    for number, value in _fields(buf):
        if number == 2:
            size = next((_signed(v) for n, v in _fields(value) if n == 1), 0)
            dims.append(size)
    return tuple(dims)


def _entry(buf: bytes) -> Entry:
    values = {"dtype": 0, "shape": (), "shard": 0, "offset": 0, "size": 0, "sliced": False}
    for number, value in _fields(buf):
        if number == 1:
            values["dtype"] = value
        elif number == 2:
            values["shape"] = _shape(value)
        elif number == 3:
            values["shard"] = _signed(value)
        elif number == 4:
            values["offset"] = _signed(value)
        elif number == 5:
            values["size"] = _signed(value)
        elif number == 7:
            values["sliced"] = True
    return Entry(**values)


def _block(data: bytes, offset: int, size: int) -> bytes:
    """A table block's contents, after checking that it is inside the file and stored uncompressed."""
    if offset + size + TRAILER > len(data):
        raise InvalidValue(f"a block at {offset} (+{size}) runs past the end of the file")
    if data[offset + size] != 0:
        raise InvalidValue(f"a block compressed with codec {data[offset + size]} (only uncompressed tables are read)")
    return data[offset : offset + size]


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """A block's ``(key, value)``s: each key shares a prefix with the one before it; restart points follow."""
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def read_index(index: Path) -> tuple[int, dict[str, Entry]]:
    """The shard count and every tensor's ``Entry`` of a ``.index`` file."""
    data = index.read_bytes()
    if len(data) < FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != MAGIC:
        raise InvalidValue("no table footer (not an index file, or a truncated one)")
    footer = data[len(data) - FOOTER :]
    _, _, pos = _handle(footer)  # the metaindex: nothing in it is needed
    index_offset, index_size, _ = _handle(footer, pos)
    shards, entries = 1, {}
    for _, handle in _entries(_block(data, index_offset, index_size)):
        offset, size, _ = _handle(handle)
        for key, value in _entries(_block(data, offset, size)):
            if key == b"":
                header = dict(_fields(value))
                shards = _signed(header.get(1, 1))
                if header.get(2, 0) != 0:
                    raise InvalidValue("a big-endian checkpoint")
            else:
                entries[key.decode()] = _entry(value)
    return shards, entries


class CheckpointReader:
    """A TensorFlow checkpoint's tensors by name, read from its files.

    Args:
        prefix: the checkpoint's path without extension (``.../model.ckpt-30000``).

    Raises:
        TFCheckpointError: the index is missing, truncated or not a tensor bundle.
    """

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        index = Path(f"{self.prefix}.index")
        if not index.is_file():
            raise TFCheckpointError(f"{index}: not found")
        try:
            self.shards, self.entries = read_index(index)
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            raise TFCheckpointError(f"{index}: not a readable TensorFlow checkpoint index ({exc})") from exc
        self._data: dict[int, bytes] = {}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's name and shape (TensorFlow's ``get_variable_to_shape_map``)."""
        return {name: entry.shape for name, entry in self.entries.items()}

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.shards:05d}")

    def tensor(self, name: str) -> np.ndarray:
        """One tensor as a numpy array (a copy)."""
        entry = self.entries[name]
        dtype = DTYPES.get(entry.dtype)
        where = f"{self.prefix}: {name}"
        if entry.sliced:
            raise TFCheckpointError(f"{where} is a partitioned variable; only whole tensors are read")
        if dtype is None:
            raise TFCheckpointError(f"{where} has TensorFlow dtype {entry.dtype}, not a numeric type read here")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.size != count * np.dtype(dtype).itemsize:
            raise TFCheckpointError(f"{where}: {entry.size} bytes for shape {entry.shape} of {np.dtype(dtype)}")
        if entry.shard not in self._data:
            path = self.shard_path(entry.shard)
            if not path.is_file():
                raise TFCheckpointError(f"{path}: not found (the data of {name})")
            self._data[entry.shard] = path.read_bytes()
        data = self._data[entry.shard]
        if entry.offset + entry.size > len(data):
            raise TFCheckpointError(f"{self.shard_path(entry.shard)}: truncated ({name} runs past its end)")
        array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=entry.offset)
        return array.reshape(entry.shape).astype(dtype, copy=True)
