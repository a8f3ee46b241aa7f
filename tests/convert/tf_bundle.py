"""A TensorFlow checkpoint writer for the tests, without TensorFlow: the inverse of
``deeplab_mobile.convert.tf_checkpoint``, laid out as TensorFlow's ``BundleWriter`` lays it out (one shard, keys in
order, one data block, an index block with restart interval 1, an empty metaindex, the footer). The tests hold it to
TensorFlow's own bytes: ``fixtures/tf_checkpoint/`` was written by TensorFlow (``make_fixture.py``), and this
writer reproduces those files byte for byte."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from deeplab_mobile.convert.tf_checkpoint import DTYPES, MAGIC

TF_DTYPE = {np.dtype(v): k for k, v in DTYPES.items()}
RESTART_INTERVAL = 16  # TensorFlow's table::Options default for data blocks


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes, wire: int = 0) -> bytes:
    key = varint(number << 3 | wire)
    if wire == 0:
        return key + varint(value)
    if wire == 2:
        return key + varint(len(value)) + value
    return key + struct.pack("<I", value)  # wire 5


def entry_proto(array: np.ndarray, offset: int, data: bytes, checksum: bool) -> bytes:
    shape = b"".join(field(2, field(1, d) if d else b"", 2) for d in array.shape)
    out = field(1, TF_DTYPE[array.dtype]) + field(2, shape, 2)
    if offset:
        out += field(4, offset)
    out += field(5, len(data))
    return out + field(6, masked(crc32c(data)) if checksum else 0, 5)


def block(entries: list[tuple[bytes, bytes]], interval: int) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % interval:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        else:
            restarts.append(len(out))
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        last = key
    out += b"".join(struct.pack("<I", r) for r in restarts or [0]) + struct.pack("<I", len(restarts or [0]))
    return bytes(out)


def successor(key: bytes) -> bytes:
    """LevelDB's ``FindShortSuccessor``: the first byte that can be incremented, incremented, and the rest cut."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def write_checkpoint(variables: dict[str, np.ndarray], prefix: str | Path, checksum: bool = True) -> Path:
    """``prefix.index`` and ``prefix.data-00000-of-00001`` holding ``variables`` (``checksum=False`` writes zero
    CRCs: the pure-Python CRC takes seconds a megabyte, and the reader does not check them)."""
    prefix = Path(prefix)
    data, entries = bytearray(), []
    for name in sorted(variables):
        array = np.array(variables[name], order="C")  # (ascontiguousarray would make a scalar 1-d)
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append((name.encode(), entry_proto(array, len(data), raw, checksum)))
        data += raw
    header = field(1, 1) + field(3, field(1, 1), 2)  # one shard, little-endian, version {producer: 1}
    table = bytearray()

    def add_block(contents: bytes) -> bytes:
        handle = varint(len(table)) + varint(len(contents))
        table.extend(contents + b"\x00" + struct.pack("<I", masked(crc32c(contents + b"\x00"))))
        return handle

    data_handle = add_block(block([(b"", header), *entries], RESTART_INTERVAL))
    meta_handle = add_block(block([], 1))
    index_handle = add_block(block([(successor(entries[-1][0]), data_handle)], 1))
    footer = meta_handle + index_handle
    table += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", MAGIC)
    Path(f"{prefix}.index").write_bytes(bytes(table))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    return prefix
