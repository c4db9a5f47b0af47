"""The byte layout of one attribute stream's payload.

    offset  size  field
    0       4     u32 LE: length L of the table blob
    4       L     table blob: a zstd frame (with its content size) holding the probability
                  tables in coding order (each a LEB128 length, then one code byte per symbol)
    4 + L   rest  ANS data: little-endian u32 words, as constriction's AnsCoder writes them

The decoder refuses a blob whose decompressed size exceeds ``MAX_TABLE_BYTES``, data that is not
a whole number of words, tables left unread and ANS state left over.
"""

from __future__ import annotations

import struct
from typing import Any

import zstandard

from ..formats.errors import ContainerError
from ..formats.gsz import bounded_decompress
from .entropy import AnsDecoder, AnsEncoder, VarintReader

MAX_TABLE_BYTES = 64 << 20
_ZSTD_LEVEL = 19


def pack(tables: bytearray, enc: AnsEncoder) -> bytes:
    blob = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(bytes(tables))
    return struct.pack("<I", len(blob)) + blob + enc.to_bytes()


class Unpacked:
    """The table reader and ANS decoder of a payload; call :meth:`finish` after decoding."""

    def __init__(self, payload: bytes) -> None:
        if len(payload) < 4:
            raise ContainerError("corrupt stream: payload shorter than its header")
        (blob_len,) = struct.unpack_from("<I", payload, 0)
        if 4 + blob_len > len(payload):
            raise ContainerError("corrupt stream: table blob runs past the end of the stream")
        raw = bounded_decompress(payload[4 : 4 + blob_len], MAX_TABLE_BYTES, "stream tables")
        self.tables = VarintReader(raw)
        self.ans = AnsDecoder(payload[4 + blob_len :])

    def finish(self) -> None:
        if not self.tables.at_end():
            raise ContainerError("corrupt stream: unread probability tables")
        self.ans.finish()


def table_bytes(payload: bytes, meta: Any) -> int | None:
    """Bytes of a channel-coded payload spent on probability tables (each part's, for a stream
    with per-class steps); None where the payload does not parse that far."""
    sizes = meta.get("sizes") if isinstance(meta, dict) and "mult" in meta else [len(payload)]
    if not isinstance(sizes, list) or not all(isinstance(v, int) and v >= 0 for v in sizes):
        return None
    total, pos = 0, 0
    for size in sizes:
        if size < 4 or pos + size > len(payload):
            return None
        total += 4 + struct.unpack_from("<I", payload, pos)[0]
        pos += size
    return total
