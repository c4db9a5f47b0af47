"""Reading Niantic ``.spz`` files, versions 2, 3 and 4.

Versions 2 and 3 are one gzip stream (also accepted uncompressed) holding a 16-byte header::

    0   magic            uint32  0x5053474e ("NGSP")
    4   version          uint32  2 or 3
    8   numPoints        uint32
    12  shDegree         uint8   0..3
    13  fractionalBits   uint8
    14  flags            uint8   0x1 antialiased, 0x2 extensions follow the header
    15  reserved         uint8

then, attribute by attribute for all Gaussians: positions (3 x 24-bit signed fixed point with
``fractionalBits``), alphas (uint8, sigmoid * 255), colours (3 x uint8, 0.5 + 0.15 * f_dc,
times 255), scales (3 x uint8, (log-scale + 10) * 16), rotations (v2: 3 bytes x, y, z as
(q + 1) * 127.5 with w >= 0 derived; v3: 4 bytes "smallest three", a little-endian uint32 with
the index of the largest component (x, y, z, w order) in the top 2 bits and the three others as
10-bit sign + 9-bit magnitude of at most 1/sqrt(2), the highest index in the lowest bits), then
the SH coefficients above DC as uint8 (x * 128 + 128), coefficient-major with the three
channels innermost.

Version 4 has a plain 32-byte header (the same first 15 bytes, then ``numStreams`` at 15 and the
table-of-contents offset as uint32 at 16), a table of (compressed, uncompressed) uint64 sizes, and
one zstd stream per attribute, in the order above; rotations as in version 3.

Coordinates are taken as stored, with no axis flips: Niantic's own tools store RUB axes
(OpenGL) and flip y and z when converting from an INRIA PLY, other tools (PlayCanvas
splat-transform) store the PLY axes unchanged, and the file does not say which. The antialiased
flag is ignored (gscodec renders every scene the classic way). Files that use spz extensions
(flag 0x2) are refused: an extension can change how SH bytes decode.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .common import (
    ArrayDict,
    check_count,
    coeffs_for_degree,
    finish,
    logit_from_byte,
    read_bytes,
    smallest_three,
)
from .errors import FormatError

MAGIC = 0x5053474E
GZIP_MAGIC = b"\x1f\x8b"
COLOR_SCALE = 0.15
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
MAX_FILE_BYTES = 1 << 34
# A declared size beyond what the compressed bytes could expand to is refused before anything is
# allocated: deflate expands at most 1032:1, zstd (RLE blocks of 128 KiB) about 32768:1.
_GZIP_RATIO = 1100
_ZSTD_RATIO = 1 << 16
_HEADER_V2 = struct.Struct("<IIIBBBB")
_HEADER_V4 = struct.Struct("<IIIBBBBI12x")
_SQRT1_2 = 0.7071067811865476


def _sizes(n: int, version: int, degree: int) -> list[int]:
    """Byte sizes of the attribute blocks: positions, alphas, colours, scales, rotations, SH."""
    rest = 3 * (coeffs_for_degree(degree) - 1)
    return [9 * n, n, 3 * n, 3 * n, (3 if version == 2 else 4) * n, rest * n]


def _check_header(where: str, version: int, n: int, degree: int, frac: int, flags: int) -> None:
    if version not in (2, 3, 4):
        raise FormatError(f"{where}: unsupported .spz version {version} (gscodec reads 2, 3 and 4)")
    if degree > 3:
        raise FormatError(f"{where}: .spz SH degree {degree} is not supported (at most 3)")
    if frac > 24:
        raise FormatError(f"{where}: .spz fractional bits {frac} out of range (at most 24)")
    if flags & FLAG_EXTENSIONS:
        raise FormatError(f"{where}: the .spz file uses extensions (flag 0x2), not supported")
    check_count(where, n)


def _gunzip(raw: bytes, where: str) -> bytes:
    """The spz payload (header + attributes) of a gzip-compressed v2/v3 file, decompressed no
    further than the header says it should be."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(raw, _HEADER_V2.size)
        if len(head) < _HEADER_V2.size:
            raise FormatError(f"{where}: .spz data too short for its 16-byte header")
        magic, version, n, degree, frac, flags, _ = _HEADER_V2.unpack(head)
        if magic != MAGIC:
            raise FormatError(f"{where}: not an .spz file (bad magic after gzip)")
        if version == 4:
            raise FormatError(f"{where}: .spz version 4 must not be gzip-compressed")
        _check_header(where, version, n, degree, frac, flags)
        need = sum(_sizes(n, version, degree))
        if need > _GZIP_RATIO * len(raw) + 1024:
            raise FormatError(
                f"{where}: .spz header declares {n} Gaussians ({need} bytes), more than its "
                f"{len(raw)} compressed bytes can hold"
            )
        parts = [head]
        got = 0
        while got < need:
            chunk = d.decompress(d.unconsumed_tail, need - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        if got < need:
            raise FormatError(
                f"{where}: truncated .spz: {n} Gaussians need {need} bytes of data, the gzip "
                f"stream holds {got}"
            )
        if d.decompress(d.unconsumed_tail, 1):
            raise FormatError(f"{where}: .spz has data after its {n} Gaussians")
        if not d.eof:
            raise FormatError(f"{where}: truncated gzip stream (no end marker)")
        if d.unused_data:
            raise FormatError(f"{where}: {len(d.unused_data)} bytes after the gzip stream")
    except zlib.error as e:
        raise FormatError(f"{where}: corrupt gzip data in .spz ({e})") from None
    return b"".join(parts)


def _unzstd(blob: bytes, size: int, where: str, what: str) -> bytes:
    import zstandard

    if size > _ZSTD_RATIO * len(blob) + 1024:
        raise FormatError(
            f"{where}: .spz {what} stream declares {size} bytes, more than its {len(blob)} "
            "compressed bytes can hold"
        )
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob),
                                                             read_across_frames=True)
        parts = []
        got = 0
        while got < size:
            chunk = reader.read(size - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        extra = reader.read(1)
    except zstandard.ZstdError as e:
        raise FormatError(f"{where}: corrupt zstd data in the .spz {what} stream ({e})") from None
    if got != size or extra:
        raise FormatError(
            f"{where}: .spz {what} stream decompresses to {'more' if extra else got} bytes, "
            f"expected {size}"
        )
    return b"".join(parts)


_NAMES = ("positions", "alphas", "colours", "scales", "rotations", "SH")


def _v4_blocks(raw: bytes, where: str) -> tuple[int, int, int, int, int, list[bytes]]:
    if len(raw) < _HEADER_V4.size:
        raise FormatError(f"{where}: .spz file too short for its 32-byte header")
    magic, version, n, degree, frac, flags, streams, toc = _HEADER_V4.unpack_from(raw)
    _check_header(where, version, n, degree, frac, flags)
    sizes = _sizes(n, version, degree)
    if degree == 0:
        sizes = sizes[:5]
    if streams != len(sizes):
        raise FormatError(
            f"{where}: .spz v4 has {streams} streams, expected {len(sizes)} for SH degree {degree}"
        )
    if toc < _HEADER_V4.size or toc + 16 * streams > len(raw):
        raise FormatError(f"{where}: .spz v4 table of contents at {toc} is outside the file")
    offset = toc + 16 * streams
    blocks = []
    for i, expected in enumerate(sizes):
        csize, usize = struct.unpack_from("<QQ", raw, toc + 16 * i)
        if usize != expected:
            raise FormatError(
                f"{where}: .spz v4 {_NAMES[i]} stream holds {usize} bytes, {n} Gaussians need "
                f"{expected}"
            )
        if csize > len(raw) - offset:
            raise FormatError(
                f"{where}: truncated .spz: the {_NAMES[i]} stream needs {csize} bytes, "
                f"{len(raw) - offset} are left"
            )
        blocks.append(_unzstd(raw[offset : offset + csize], usize, where, _NAMES[i]))
        offset += csize
    if offset != len(raw):
        raise FormatError(f"{where}: {len(raw) - offset} bytes after the last .spz stream")
    if degree == 0:
        blocks.append(b"")
    return version, n, degree, frac, flags, blocks


def _v2_blocks(payload: bytes, where: str) -> tuple[int, int, int, int, int, list[bytes]]:
    if len(payload) < _HEADER_V2.size:
        raise FormatError(f"{where}: .spz file too short for its 16-byte header")
    magic, version, n, degree, frac, flags, _ = _HEADER_V2.unpack_from(payload)
    _check_header(where, version, n, degree, frac, flags)
    sizes = _sizes(n, version, degree)
    need = _HEADER_V2.size + sum(sizes)
    if len(payload) != need:
        raise FormatError(
            f"{where}: .spz with {n} Gaussians needs {need} bytes of data, it holds "
            f"{len(payload)}"
        )
    blocks = []
    offset = _HEADER_V2.size
    for size in sizes:
        blocks.append(payload[offset : offset + size])
        offset += size
    return version, n, degree, frac, flags, blocks


def header_counts(raw: bytes, where: str = "input") -> tuple[int, int, int]:
    """``(n, sh_degree, fractional_bits)`` from the first 16 bytes of an ``.spz`` file
    (decompressed from the gzip stream for versions 2-3; the same layout in version 4), without
    decoding the rest; raises FormatError."""
    head = raw[:_HEADER_V2.size]
    if raw[:2] == GZIP_MAGIC:
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, _HEADER_V2.size)
        except zlib.error as e:
            raise FormatError(f"{where}: corrupt gzip data in .spz ({e})") from None
    if len(head) < _HEADER_V2.size or struct.unpack_from("<I", head)[0] != MAGIC:
        raise FormatError(f"{where}: not an .spz file")
    _, _, n, degree, frac, _, _ = _HEADER_V2.unpack(head)
    return n, degree, frac


def decode_spz_bytes(raw: bytes, where: str = "input") -> ArrayDict:
    """The Gaussians of an ``.spz`` file's bytes; raises FormatError."""
    if raw[:2] == GZIP_MAGIC:
        version, n, degree, frac, _, blocks = _v2_blocks(_gunzip(raw, where), where)
    else:
        if len(raw) < 8 or struct.unpack_from("<I", raw)[0] != MAGIC:
            raise FormatError(f"{where}: not an .spz file (neither gzip nor the NGSP magic)")
        version = struct.unpack_from("<I", raw, 4)[0]
        reader = _v4_blocks if version >= 4 else _v2_blocks
        version, n, degree, frac, _, blocks = reader(raw, where)
    pos_b, alpha_b, colour_b, scale_b, rot_b, sh_b = (np.frombuffer(b, dtype=np.uint8)
                                                       for b in blocks)
    p = pos_b.reshape(n * 3, 3).astype(np.int32)
    fixed = p[:, 0] | (p[:, 1] << 8) | (p[:, 2] << 16)
    fixed = (fixed ^ 0x800000) - 0x800000  # sign-extend 24 bits
    means = (fixed.astype(np.float64) / float(1 << frac)).reshape(n, 3)
    log_scales = scale_b.reshape(n, 3).astype(np.float64) / 16.0 - 10.0
    opacity = logit_from_byte(alpha_b)
    dc = (colour_b.reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE
    if version == 2:
        xyz = rot_b.reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - np.einsum("ij,ij->i", xyz, xyz)))
        quats = np.concatenate([w[:, None], xyz], axis=1)
    else:
        comp = rot_b.reshape(n, 4).copy().view("<u4")[:, 0].astype(np.int64)
        largest = (comp >> 30).astype(np.intp)
        fields = np.stack([(comp >> 20) & 0x3FF, (comp >> 10) & 0x3FF, comp & 0x3FF], axis=1)
        values = _SQRT1_2 * (fields & 0x1FF) / 511.0
        values = np.where((fields >> 9) & 1, -values, values)
        xyzw = smallest_three(largest, values)
        quats = xyzw[:, [3, 0, 1, 2]]
    k = coeffs_for_degree(degree)
    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0, :] = dc
    if k > 1:
        sh[:, 1:, :] = (sh_b.reshape(n, k - 1, 3).astype(np.float32) - 128.0) / 128.0
    return finish(where, means, quats, log_scales, opacity, sh)


def read_spz_arrays(path: str | os.PathLike[str]) -> ArrayDict:
    """Read an ``.spz`` file into the array dict of :func:`formats.ply.read_ply_arrays`;
    raises FormatError."""
    p = Path(path)
    raw = read_bytes(p, "an .spz file", MAX_FILE_BYTES)
    if not raw:
        raise FormatError(f"{p}: empty .spz file")
    return decode_spz_bytes(raw, str(p))
