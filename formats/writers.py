"""Writing scenes in the formats viewers read: Niantic ``.spz`` (versions 3 and 4), antimatter15
``.splat``, PlayCanvas ``.compressed.ply`` and glTF ``.glb`` (:mod:`formats.glb`), besides the
INRIA ``.ply`` of :mod:`formats.ply`. Each writer is the inverse of this package's reader of its
format (the byte layouts are documented there, and summed up below): what it writes reads back
with :func:`formats.readers.read_scene_arrays` to the input within the format's step.

:func:`write_scene_arrays` picks the format by the output name's suffix and writes atomically
(:mod:`formats.atomic`): never a half-written file, an existing one only replaced with ``force``.
A scene the format cannot hold (too many Gaussians for a count or length field, positions beyond
the .spz fixed-point range, non-finite values) raises FormatError; values beyond the range of an
8-bit field (colours, alphas, .spz scales and SH) are clamped to its range, as the reference
tools do. No torch in here.

``.spz`` (``version`` 4, or 3), all little-endian::

    v4  32-byte header: magic "NGSP", version 4, numPoints (uint32), shDegree, fractionalBits,
        flags 0, numStreams (5, or 6 with SH) at 15, table-of-contents offset 32 (uint32) at 16,
        12 zero bytes; the table, one (compressed, uncompressed) uint64 pair per stream; then
        one zstd frame per attribute, in the order below (the SH stream only for degree > 0).
    v3  one gzip stream of a 16-byte header (the same first 15 bytes, then a zero byte) and the
        attributes, in the order below.

    positions  3 x int24, round(x * 2^f), f = fractionalBits: the largest f in 0..24 for which
               max |coordinate| * 2^f <= 2^23 - 1, so the scene's extent fits at the finest
               step it can (step 2^-f); a scene with max |coordinate| > 2^23 - 1 does not fit
    alphas     round(sigmoid(logit) * 255)
    colours    3 x round((0.5 + 0.15 * f_dc) * 255)
    scales     3 x round((log-scale + 10) * 16), so log-scales -10 .. 5.9375 in steps of 1/16
    rotations  "smallest three", a uint32: the index (x, y, z, w order) of the largest
               component of the unit quaternion, made positive, in bits 30..31, the three
               others in index order in bits 20..29, 10..19, 0..9, each a sign bit (bit 9) and
               round(|q| / sqrt(1/2) * 511)
    SH         round(x * 128 + 128) for the coefficients above DC, coefficient-major with the
               channels innermost, all 8 bits (Niantic's writer rounds them further, to 5 bits
               for degree 1 and 4 above, to compress better; gscodec keeps the 8)

``.splat``: no header, one 32-byte record per Gaussian: position 3 x float32, scale 3 x
float32 (``exp`` of the log-scale), colour 4 x uint8 (``round((0.5 + SH_C0 * f_dc) * 255)``,
alpha ``round(sigmoid * 255)``), rotation 4 x uint8 (w, x, y, z of the unit quaternion as
``round(q * 128 + 128)``, clamped to 255). The format holds SH degree 0 only: higher bands are
dropped. An empty scene is refused (a zero-byte file is no .splat a reader accepts).

``.compressed.ply``: the Gaussians are first put in Morton order (:func:`morton_order`; the
PlayCanvas writer sorts too), so that each chunk of 256 consecutive Gaussians is spatially
compact; each chunk stores float32 bounds of the positions, log-scales and colours
(``0.5 + SH_C0 * f_dc``) of its Gaussians, and each Gaussian four uint32 words: position and
log-scale as 11-10-11-bit fractions ``round(t * (2^bits - 1))`` between its chunk's bounds, the
(w, x, y, z) rotation as the index of the largest component (made positive) and the three
others as ``round((q * sqrt(1/2) + 0.5) * 1023)``, colour as 8-bit fractions between the chunk's
colour bounds and alpha as ``round(sigmoid * 255)``; SH above DC as uint8
``floor((x / 8 + 0.5) * 256)`` in the INRIA channel-major order.

Read back, each attribute is within half a step of the input, a step being 2^-f for .spz
positions, 1/16 for .spz log-scales, 1/255 for alphas and 8-bit colours (1/(255 * 0.15) and
1/(255 * SH_C0) in f_dc), 1/128 for .spz SH, 1/32 for compressed SH (inside +-(4 - 1/32)), and
the chunk's range over 2^bits - 1 for compressed positions, log-scales and colours; so are the
three smaller components of a "smallest three" rotation (half-steps of sqrt(1/2) / 511 and
sqrt(2) / 1023), and the largest, which the reader rebuilds, within three of them; a .splat
rotation, four 8-bit components normalised again, within 2 * sqrt(7) / 256. .splat positions
are stored exactly, its scales and everything in a .glb to float32 precision.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, check_output_path
from .common import SH_C0, ArrayDict
from .errors import FormatError
from .ply import write_ply_arrays
from .scene import check_scene, linear_scales, sigmoid, unit_quats
from .spz import _HEADER_V2, _HEADER_V4, COLOR_SCALE, MAGIC

SUFFIXES: tuple[tuple[str, str], ...] = (
    (".compressed.ply", "compressed-ply"),
    (".ply", "ply"),
    (".spz", "spz"),
    (".splat", "splat"),
    (".glb", "glb"),
)
SPZ_VERSIONS = (3, 4)
SPZ_MAX_GAUSSIANS = (1 << 32) - 1  # numPoints is a uint32
SPZ_MAX_FRACTIONAL_BITS = 24  # the most gscodec's reader (and Niantic's shift) accepts
FIXED24_MAX = (1 << 23) - 1
ZSTD_LEVEL = 9
CHUNK = 256
_ROWS = 1 << 16
_SQRT1_2 = 0.7071067811865476
# the indices of the three smaller components, ascending, for each index of the largest one
_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], dtype=np.intp)
_CHUNK_PROPS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z",
                "max_scale_x", "max_scale_y", "max_scale_z",
                "min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
_PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
_SPLAT_RECORD = np.dtype([("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)),
                          ("rot", "u1", (4,))])


def _u8(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer (halves up) and clamp to 0..255."""
    return np.clip(np.floor(np.asarray(x, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def _by_rows(n: int, encode: Callable[[slice], np.ndarray]) -> bytes:
    """The bytes of ``encode`` over rows 0..n in slices of 65536 (bounded float64 copies)."""
    return b"".join(encode(slice(start, min(n, start + _ROWS))).tobytes()
                    for start in range(0, n, _ROWS))


def _unorm(t: np.ndarray, bits: int) -> np.ndarray:
    """Fractions in [0, 1] (clamped) as ``bits``-bit integers."""
    top = (1 << bits) - 1
    return np.floor(np.clip(t, 0.0, 1.0) * top + 0.5).astype(np.uint32)


def _largest_first(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the largest |component|, the three others in index order) of unit quaternions,
    with the sign chosen so that the largest component is positive."""
    rows = np.arange(q.shape[0])
    largest = np.argmax(np.abs(q), axis=1)
    q = q * np.where(q[rows, largest] < 0, -1.0, 1.0)[:, None]
    return largest, q[rows[:, None], _OTHERS[largest]]


# --------------------------------------------------------------------------- .spz


def spz_fractional_bits(means: np.ndarray, where: str = "scene") -> int:
    """The .spz ``fractionalBits`` for these positions: the largest f in 0..24 for which
    ``max |coordinate| * 2^f <= 2^23 - 1``; FormatError when not even f = 0 fits."""
    m = np.asarray(means, dtype=np.float64)
    top = float(np.max(np.abs(m))) if m.size else 0.0
    if top > FIXED24_MAX:
        raise FormatError(
            f"{where}: a coordinate of magnitude {top:g} is beyond the range of .spz 24-bit "
            f"fixed point (at most {FIXED24_MAX} with 0 fractional bits)"
        )
    f = SPZ_MAX_FRACTIONAL_BITS
    while f > 0 and top * 2.0**f > FIXED24_MAX:
        f -= 1
    return f


def _spz_rotations(quats: np.ndarray) -> np.ndarray:
    q = unit_quats(quats)[:, [1, 2, 3, 0]]  # x, y, z, w: the order the index refers to
    largest, others = _largest_first(q)
    mag = np.minimum(np.floor(np.abs(others) / _SQRT1_2 * 511 + 0.5), 511).astype(np.uint32)
    fields = ((others < 0).astype(np.uint32) << 9) | mag
    word = (largest.astype(np.uint32) << 30) | (fields[:, 0] << 20) | (fields[:, 1] << 10)
    return (word | fields[:, 2]).astype("<u4")


def _spz_blocks(a: ArrayDict, frac: int) -> list[bytes]:
    """The attribute blocks: positions, alphas, colours, scales, rotations, SH."""
    fixed = np.rint(np.asarray(a["means"], dtype=np.float64) * 2.0**frac).astype(np.int64)
    fixed &= 0xFFFFFF  # two's complement, 24 bits
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, fixed >> 16], axis=-1).astype(np.uint8)
    sh = np.asarray(a["sh"])
    dc = sh[:, 0, :].astype(np.float64)
    return [
        pos.tobytes(),
        _u8(sigmoid(a["opacity_logits"]) * 255.0).tobytes(),
        _u8((0.5 + COLOR_SCALE * dc) * 255.0).tobytes(),
        _u8((np.asarray(a["log_scales"], dtype=np.float64) + 10.0) * 16.0).tobytes(),
        _spz_rotations(a["quats"]).tobytes(),
        _by_rows(sh.shape[0], lambda r: _u8(sh[r, 1:, :].astype(np.float64) * 128.0 + 128.0)),
    ]


def write_spz_bytes(arrays: ArrayDict, version: int = 4, *, where: str = "scene") -> bytes:
    """The bytes of an ``.spz`` file (version 4: zstd streams, or 3: gzip) holding the scene,
    with its SH degree (see the module docstring); raises FormatError."""
    if version not in SPZ_VERSIONS:
        raise ValueError(f"spz version must be one of {SPZ_VERSIONS}, got {version!r}")
    n, degree = check_scene(arrays, where, max_count=SPZ_MAX_GAUSSIANS, what="an .spz file")
    frac = spz_fractional_bits(arrays["means"], where)
    blocks = _spz_blocks(arrays, frac)
    if version == 3:
        payload = _HEADER_V2.pack(MAGIC, 3, n, degree, frac, 0, 0) + b"".join(blocks)
        return gzip.compress(payload, compresslevel=6, mtime=0)
    import zstandard

    if degree == 0:
        blocks = blocks[:5]
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    frames = [cctx.compress(b) for b in blocks]
    header = _HEADER_V4.pack(MAGIC, 4, n, degree, frac, 0, len(blocks), _HEADER_V4.size)
    toc = b"".join(struct.pack("<QQ", len(c), len(b)) for c, b in zip(frames, blocks, strict=True))
    return header + toc + b"".join(frames)


# --------------------------------------------------------------------------- .splat


def write_splat_bytes(arrays: ArrayDict, *, where: str = "scene") -> bytes:
    """The bytes of an antimatter15 ``.splat`` file holding the scene; SH bands above degree 0
    are dropped (the format has none). Raises FormatError (also for an empty scene)."""
    n, _ = check_scene(arrays, where)
    if n == 0:
        raise FormatError(f"{where}: a .splat file cannot hold an empty scene")
    rec = np.zeros(n, dtype=_SPLAT_RECORD)
    rec["pos"] = arrays["means"]
    rec["scale"] = linear_scales(arrays["log_scales"], where, "a .splat file")
    dc = np.asarray(arrays["sh"], dtype=np.float64)[:, 0, :]
    rec["rgba"][:, :3] = _u8((0.5 + SH_C0 * dc) * 255.0)
    rec["rgba"][:, 3] = _u8(sigmoid(arrays["opacity_logits"]) * 255.0)
    rec["rot"] = _u8(unit_quats(arrays["quats"]) * 128.0 + 128.0)
    return rec.tobytes()


# --------------------------------------------------------------------------- .compressed.ply


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """21-bit integers with two zero bits inserted after every bit (for Morton codes)."""
    x = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def morton_order(means: np.ndarray) -> np.ndarray:
    """The order in which :func:`write_compressed_ply_bytes` stores the Gaussians: by the
    Morton (Z-order) code of their positions quantised to 21 bits per axis over the scene's
    bounding box, ties in input order."""
    m = np.asarray(means, dtype=np.float64)
    if m.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    lo = m.min(axis=0)
    extent = m.max(axis=0) - lo
    extent[extent == 0] = 1.0
    q = np.clip(np.floor((m - lo) / extent * 2097151.0 + 0.5), 0, 2097151).astype(np.uint64)
    code = ((_spread_bits(q[:, 0]) << np.uint64(2)) | (_spread_bits(q[:, 1]) << np.uint64(1))
            | _spread_bits(q[:, 2]))
    return np.argsort(code, kind="stable")


def _pack_111011(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[C, 256, 3] values as 11-10-11-bit fractions between per-chunk bounds lo, hi [C, 3]."""
    span = (hi - lo)[:, None, :]
    t = np.divide(x - lo[:, None, :], span, out=np.zeros_like(x), where=span > 0)
    return (_unorm(t[..., 0], 11) << 21) | (_unorm(t[..., 1], 10) << 11) | _unorm(t[..., 2], 11)


def _compressed_rotations(quats: np.ndarray) -> np.ndarray:
    largest, others = _largest_first(unit_quats(quats))  # w, x, y, z: the order the index uses
    v = _unorm(others * _SQRT1_2 + 0.5, 10)
    return (largest.astype(np.uint32) << 30) | (v[:, 0] << 20) | (v[:, 1] << 10) | v[:, 2]


def _compressed_header(n: int, chunks: int, rest: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", "comment Generated by gscodec",
             f"element chunk {chunks}"]
    lines += [f"property float {p}" for p in _CHUNK_PROPS]
    lines.append(f"element vertex {n}")
    lines += [f"property uint {p}" for p in _PACKED]
    if rest:
        lines.append(f"element sh {n}")
        lines += [f"property uchar f_rest_{i}" for i in range(rest)]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_compressed_ply_bytes(arrays: ArrayDict, *, where: str = "scene") -> bytes:
    """The bytes of a PlayCanvas ``.compressed.ply`` holding the scene, its Gaussians in
    :func:`morton_order`, with its SH degree; raises FormatError."""
    n, degree = check_scene(arrays, where)
    k = (degree + 1) ** 2 - 1
    chunks = -(-n // CHUNK)
    header = _compressed_header(n, chunks, 3 * k)
    if n == 0:
        return header
    order = morton_order(arrays["means"])
    # pad the last chunk with copies of its last Gaussian: the bounds stay those of its own
    idx = np.concatenate([order, np.full(chunks * CHUNK - n, order[-1], dtype=order.dtype)])

    def chunked(key: str) -> np.ndarray:
        return np.asarray(arrays[key], dtype=np.float64)[idx].reshape(chunks, CHUNK, -1)

    sh = np.asarray(arrays["sh"])
    pos, scale = chunked("means"), chunked("log_scales")
    rgb = (0.5 + SH_C0 * sh[idx, 0, :].astype(np.float64)).reshape(chunks, CHUNK, 3)
    bounds = []
    for v in (pos, scale, rgb):
        # float32 bounds, as stored; the values are packed against exactly those
        bounds += [v.min(axis=1).astype(np.float32), v.max(axis=1).astype(np.float32)]
    words = np.empty((chunks, CHUNK, 4), dtype="<u4")
    words[..., 0] = _pack_111011(pos, bounds[0].astype(np.float64), bounds[1].astype(np.float64))
    words[..., 1] = _compressed_rotations(np.asarray(arrays["quats"])[idx]).reshape(chunks, CHUNK)
    words[..., 2] = _pack_111011(scale, bounds[2].astype(np.float64),
                                 bounds[3].astype(np.float64))
    lo, hi = bounds[4].astype(np.float64)[:, None, :], bounds[5].astype(np.float64)[:, None, :]
    span = hi - lo
    t = np.divide(rgb - lo, span, out=np.zeros_like(rgb), where=span > 0)
    alpha = _unorm(sigmoid(chunked("opacity_logits")[..., 0]), 8)
    words[..., 3] = ((_unorm(t[..., 0], 8) << 24) | (_unorm(t[..., 1], 8) << 16)
                     | (_unorm(t[..., 2], 8) << 8) | alpha)
    chunk_rows = np.concatenate(bounds, axis=1).astype("<f4")
    parts = [header, chunk_rows.tobytes(), words.reshape(-1, 4)[:n].tobytes()]
    if k:
        parts.append(_by_rows(n, lambda r: _compressed_sh(sh[order[r], 1:, :])))
    return b"".join(parts)


def _compressed_sh(rest: np.ndarray) -> np.ndarray:
    """[n, k, 3] SH above DC as the uint8 f_rest_* rows, channel-major."""
    x = rest.astype(np.float64).transpose(0, 2, 1).reshape(rest.shape[0], -1)
    return np.clip(np.floor((x / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- dispatch


def output_format(path: str | os.PathLike[str]) -> str:
    """The format :func:`write_scene_arrays` writes for this output name (by its suffix, any
    case): ``ply``, ``compressed-ply``, ``spz``, ``splat`` or ``glb``; FormatError otherwise."""
    name = Path(path).name.lower()
    for suffix, kind in SUFFIXES:
        if name.endswith(suffix):
            return kind
    raise FormatError(
        f"{path}: unknown output format {Path(path).suffix or '(no suffix)'!r}: gscodec writes "
        ".ply, .compressed.ply, .spz, .splat and .glb"
    )


def encode_scene(arrays: ArrayDict, kind: str, *, spz_version: int = 4,
                 where: str = "scene") -> bytes:
    """The bytes of the scene in one of the formats of :func:`output_format` but ``ply``."""
    if kind == "spz":
        return write_spz_bytes(arrays, spz_version, where=where)
    if kind == "splat":
        return write_splat_bytes(arrays, where=where)
    if kind == "compressed-ply":
        return write_compressed_ply_bytes(arrays, where=where)
    if kind == "glb":
        from .glb import write_glb_bytes

        return write_glb_bytes(arrays, where=where)
    raise ValueError(f"no byte encoder for format {kind!r}")


def write_scene_arrays(path: str | os.PathLike[str], arrays: ArrayDict, *, force: bool = False,
                       spz_version: int = 4) -> None:
    """Write the array dict of :func:`formats.ply.read_ply_arrays` to ``path`` in the format its
    suffix names (``.ply``: INRIA, ``.compressed.ply``, ``.spz`` of ``spz_version`` 3 or 4,
    ``.splat``, ``.glb``), atomically; an existing file is refused (OutputExistsError) unless
    ``force``. FormatError for an unknown suffix or a scene the format cannot hold."""
    kind = output_format(path)
    if spz_version not in SPZ_VERSIONS:
        raise ValueError(f"spz version must be one of {SPZ_VERSIONS}, got {spz_version!r}")
    out = check_output_path(path, force=force)  # before the work of encoding
    if kind == "ply":
        check_scene(arrays, str(out))
        write_ply_arrays(out, arrays, force=force)
        return
    data = encode_scene(arrays, kind, spz_version=spz_version, where=str(out))
    atomic_write_bytes(out, data, force=force)
