"""The chunk table of a chunked .gsz file (GSZ.md 11): for each spatial chunk the box that holds
its decoded positions and its parts (layers, most important Gaussians first), each part a
complete .gsz file of its own inside the ``CHNK`` stream. Knows nothing about Gaussians."""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

from .errors import ContainerError, LimitError

TABLE_KIND = "CTAB"
PARTS_KIND = "CHNK"
CODEC_TABLE_V1 = 1
CODEC_PARTS_V1 = 1
FLAG_CHUNKED = 1 << 16
"""File flag (a required feature, GSZ.md 2 rule 6): the file is chunked (GSZ.md 11)."""
VERSION_MINOR_CHUNKED = 1
MAX_LAYERS = 16

_HEAD = struct.Struct("<II")
_BOX = struct.Struct("<6f")
_PART = struct.Struct("<QQII")


@dataclass(frozen=True)
class Part:
    """Where one part lies inside the CHNK payload, how many Gaussians it holds, its CRC-32."""

    offset: int
    length: int
    count: int
    crc: int


@dataclass(frozen=True)
class Chunk:
    """A chunk: the box ``(x0, y0, z0, x1, y1, z1)`` that holds every decoded position of its
    Gaussians, and its parts in layer order."""

    box: tuple[float, float, float, float, float, float]
    parts: tuple[Part, ...]

    @property
    def count(self) -> int:
        return sum(p.count for p in self.parts)

    def meets(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> bool:
        """Whether the closed box ``[lo, hi]`` and the chunk's box share a point."""
        return all(self.box[a] <= hi[a] and lo[a] <= self.box[a + 3] for a in range(3))


def table_size(chunks: int, layers: int) -> int:
    return _HEAD.size + chunks * (_BOX.size + layers * _PART.size)


def pack_table(chunks: list[Chunk]) -> bytes:
    """The CTAB payload of ``chunks`` (each with the same number of parts)."""
    layers = len(chunks[0].parts)
    out = bytearray(_HEAD.pack(len(chunks), layers))
    for c in chunks:
        if len(c.parts) != layers:
            raise ValueError("every chunk must have the same number of parts")
        out += _BOX.pack(*c.box)
        for p in c.parts:
            out += _PART.pack(p.offset, p.length, p.count, p.crc)
    return bytes(out)


def parse_table(payload: bytes, parts_length: int, n: int, max_chunks: int) -> list[Chunk]:
    """The chunks of a CTAB payload, checked as GSZ.md 11.2 says: sizes, finite boxes with
    ``min <= max``, parts one after the other from offset 0 and filling the CHNK payload of
    ``parts_length`` bytes exactly, counts summing to the metadata's ``n``. ``max_chunks``
    bounds the declared count before anything is allocated (LimitError)."""
    if len(payload) < _HEAD.size:
        raise ContainerError("corrupt .gsz file: the chunk table is shorter than its header")
    count, layers = _HEAD.unpack_from(payload, 0)
    if count == 0 or not 1 <= layers <= MAX_LAYERS:
        raise ContainerError(f"corrupt .gsz file: chunk table of {count} chunks x {layers} "
                             f"layers (1 or more chunks, 1 to {MAX_LAYERS} layers)")
    if count > max_chunks:
        raise LimitError(f"file declares {count} chunks (limit {max_chunks})")
    if len(payload) != table_size(count, layers):
        raise ContainerError(f"corrupt .gsz file: the chunk table is {len(payload)} bytes, "
                             f"{count} chunks x {layers} layers need {table_size(count, layers)}")
    chunks, at, end, total = [], _HEAD.size, 0, 0
    for i in range(count):
        box = _BOX.unpack_from(payload, at)
        at += _BOX.size
        if not all(math.isfinite(v) for v in box) or any(box[a] > box[a + 3] for a in range(3)):
            raise ContainerError(f"corrupt .gsz file: chunk {i} has an invalid box {box}")
        parts = []
        for _ in range(layers):
            p = Part(*_PART.unpack_from(payload, at))
            at += _PART.size
            if p.offset != end or p.length > parts_length - end:
                raise ContainerError(f"corrupt .gsz file: a part of chunk {i} does not follow "
                                     "the one before it inside the CHNK stream")
            end += p.length
            total += p.count
            parts.append(p)
        chunks.append(Chunk(box, tuple(parts)))
    if end != parts_length:
        raise ContainerError(f"corrupt .gsz file: the parts fill {end} of the CHNK stream's "
                             f"{parts_length} bytes")
    if total != n:
        raise ContainerError(f"corrupt .gsz file: the chunks hold {total} Gaussians, the "
                             f"metadata declares {n}")
    return chunks


def part_bytes(parts_payload: bytes | memoryview, part: Part) -> bytes:
    """One part's bytes out of the CHNK payload, its CRC-32 checked."""
    data = bytes(parts_payload[part.offset : part.offset + part.length])
    if zlib.crc32(data) != part.crc:
        raise ContainerError("corrupt .gsz file: checksum mismatch in a chunk's part")
    return data
