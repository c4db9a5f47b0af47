"""Reading PlayCanvas "compressed" PLY files (``.compressed.ply``).

A binary PLY with three elements, in header order:

``chunk`` (one per 256 Gaussians), float32 bounds: ``min_x min_y min_z max_x max_y max_z``,
``min_scale_x .. min_scale_z max_scale_x .. max_scale_z`` (log-scales) and, optionally,
``min_r min_g min_b max_r max_g max_b`` (colours, 0.5 + SH_C0 * f_dc).

``vertex``, uint32 words, per Gaussian ``i`` (bounds of chunk ``i // 256``):

- ``packed_position``: x in bits 21..31 (11 bits), y in 11..20 (10), z in 0..10 (11), each a
  fraction ``v / (2^bits - 1)`` between the chunk's min and max;
- ``packed_rotation``: the index of the largest component of the (w, x, y, z) quaternion in
  bits 30..31 and the three others, ascending, in bits 20..29, 10..19, 0..9, each
  ``(v / 1023 - 0.5) * sqrt(2)``; the largest is ``sqrt(1 - a² - b² - c²)``;
- ``packed_scale``: log-scales, 11-10-11 bits like the position, between the chunk's scale bounds;
- ``packed_color``: r, g, b, alpha in bits 24..31, 16..23, 8..15, 0..7 as ``v / 255``; the
  colour is a fraction between the chunk's colour bounds when they are present, the colour
  itself otherwise; opacity logit = ``-log(1 / alpha - 1)``, with alpha 0 and 1 read as -30 and
  +30 like an infinite logit in an INRIA PLY.

``sh`` (optional, one per Gaussian), uint8 ``f_rest_0 .. f_rest_{9,24,45 - 1}`` in the INRIA
channel-major order, each ``(t - 0.5) * 8`` with ``t = 0`` for 0, ``1`` for 255 and
``(v + 0.5) / 256`` otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .common import SH_C0, ArrayDict, check_count, file_size, finish, smallest_three
from .errors import FormatError, PlyError, unreadable
from .ply import OPACITY_LOGIT_LIMIT, _Element, _parse_header

CHUNK_SIZE = 256
PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
           "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z")
_COLOUR_BOUNDS = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
_REST_COUNTS = {0: 0, 9: 1, 24: 2, 45: 3}


def is_compressed_header(elements: list[_Element]) -> bool:
    """Whether a parsed PLY header is the PlayCanvas compressed layout (its vertices have a
    ``packed_position`` property)."""
    return any(el.name == "vertex" and any(p[0] == "packed_position" for p in el.props)
               for el in elements)


def _props(el: _Element, names: tuple[str, ...], kind: str, where: str) -> None:
    have = dict(el.props)
    for name in names:
        if name not in have:
            raise FormatError(f"{where}: compressed PLY element {el.name!r} lacks {name!r}")
        if have[name] not in kind.split("|"):
            raise FormatError(
                f"{where}: compressed PLY property {el.name}.{name} has the wrong type"
            )


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((v >> shift) & ((1 << bits) - 1)).astype(np.float64) / ((1 << bits) - 1)


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    return lo * (1.0 - t) + hi * t


def read_compressed_ply_arrays(path: str | os.PathLike[str]) -> ArrayDict:
    """Read a PlayCanvas compressed PLY into the array dict of
    :func:`formats.ply.read_ply_arrays`; raises FormatError."""
    p = Path(path)
    where = str(p)
    size = file_size(p, "a PLY file")
    try:
        f = open(p, "rb")
    except OSError as e:
        raise unreadable(where, e, FormatError, "a PLY file") from None
    with f:
        try:
            fmt, elements, header_size = _parse_header(f, where)
        except PlyError as e:
            raise FormatError(str(e)) from None
        has_colour, n, degree = _layout(fmt, elements, where)
        order = "<" if fmt == "binary_little_endian" else ">"
        data = _read_elements(f, elements, order, header_size, size, where)
    return _unpack(data, n, degree, has_colour, where)


def _layout(fmt: str, elements: list[_Element], where: str) -> tuple[bool, int, int]:
    """Whether the chunks carry colour bounds, the Gaussian count and the SH degree of a
    compressed PLY's header (FormatError where it is not one gscodec reads)."""
    if fmt == "ascii":
        raise FormatError(f"{where}: an ASCII compressed PLY is not supported")
    by_name = {el.name: el for el in elements}
    if "chunk" not in by_name or "vertex" not in by_name:
        raise FormatError(f"{where}: compressed PLY without a 'chunk' and a 'vertex' element")
    chunk_el, vertex_el, sh_el = by_name["chunk"], by_name["vertex"], by_name.get("sh")
    _props(chunk_el, _BOUNDS, "f4", where)
    has_colour = any(name == "min_r" for name, _ in chunk_el.props)
    if has_colour:
        _props(chunk_el, _COLOUR_BOUNDS, "f4", where)
    _props(vertex_el, PACKED, "u4|i4", where)
    n = vertex_el.count
    check_count(where, n)
    degree = 0
    if sh_el is not None:
        names = [name for name, _ in sh_el.props]
        if len(names) not in _REST_COUNTS or set(names) != {
                f"f_rest_{i}" for i in range(len(names))}:
            raise FormatError(
                f"{where}: compressed PLY 'sh' element needs f_rest_0.. with 9, 24 or 45 "
                f"properties, it has {len(names)}"
            )
        _props(sh_el, tuple(names), "u1", where)
        degree = _REST_COUNTS[len(names)]
        if sh_el.count != n:
            raise FormatError(
                f"{where}: compressed PLY has {n} vertices but {sh_el.count} 'sh' rows"
            )
    need_chunks = -(-n // CHUNK_SIZE)
    if chunk_el.count < need_chunks:
        raise FormatError(
            f"{where}: compressed PLY has {chunk_el.count} chunks, {n} Gaussians need "
            f"{need_chunks}"
        )
    return has_colour, n, degree


def _read_elements(f: BinaryIO, elements: list[_Element], order: str, header_size: int, size: int,
                   where: str) -> dict[str, np.ndarray]:
    """The chunk, vertex and sh elements' records."""
    data: dict[str, np.ndarray] = {}
    offset = header_size
    for el in elements:
        if el.has_list:
            raise FormatError(f"{where}: compressed PLY element {el.name!r} has list "
                              "properties")
        dtype = np.dtype([(name, order + t) for name, t in el.props])
        need = el.count * dtype.itemsize
        if size - offset < need:
            raise FormatError(
                f"{where}: truncated compressed PLY: element {el.name!r} needs {need} "
                f"bytes, {max(size - offset, 0)} are left"
            )
        if el.name in ("chunk", "vertex", "sh"):
            f.seek(offset)
            data[el.name] = np.fromfile(f, dtype=dtype, count=el.count)
            if data[el.name].shape[0] != el.count:
                raise FormatError(f"{where}: truncated compressed PLY")
        offset += need
    return data


def _unpack(data: dict[str, np.ndarray], n: int, degree: int, has_colour: bool, where: str
            ) -> ArrayDict:
    """The Gaussians of the chunk, vertex and sh records."""
    chunks = data["chunk"]
    for name in chunks.dtype.names or ():
        if name in _BOUNDS + _COLOUR_BOUNDS and not np.isfinite(chunks[name]).all():
            raise FormatError(f"{where}: compressed PLY chunk bound {name!r} is not finite")
    v = data["vertex"]
    ci = np.arange(n) // CHUNK_SIZE
    b = {name: chunks[name][ci].astype(np.float64) for name in chunks.dtype.names or ()}

    def unpack3(word: np.ndarray, prefix: str, names: tuple[str, str, str]) -> np.ndarray:
        t = (_unorm(word, 21, 11), _unorm(word, 11, 10), _unorm(word, 0, 11))
        return np.stack([_lerp(b[f"min_{prefix}{a}"], b[f"max_{prefix}{a}"], ti)
                         for a, ti in zip(names, t, strict=True)], axis=1)

    pp = v["packed_position"].astype(np.uint32)
    means = unpack3(pp, "", ("x", "y", "z"))
    log_scales = unpack3(v["packed_scale"].astype(np.uint32), "scale_", ("x", "y", "z"))
    pr = v["packed_rotation"].astype(np.uint32)
    abc = np.stack([(_unorm(pr, s, 10) - 0.5) * np.sqrt(2.0) for s in (20, 10, 0)], axis=1)
    quats = smallest_three((pr >> 30).astype(np.intp), abc)
    pc = v["packed_color"].astype(np.uint32)
    rgb = np.stack([_unorm(pc, s, 8) for s in (24, 16, 8)], axis=1)
    if has_colour:
        rgb = np.stack([_lerp(b[f"min_{c}"], b[f"max_{c}"], rgb[:, i])
                        for i, c in enumerate("rgb")], axis=1)
    alpha = _unorm(pc, 0, 8)
    with np.errstate(divide="ignore"):
        opacity = -np.log(1.0 / alpha - 1.0)
    opacity = np.clip(opacity, -OPACITY_LOGIT_LIMIT, OPACITY_LOGIT_LIMIT)
    k = (degree + 1) ** 2
    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0, :] = (rgb - 0.5) / SH_C0
    if degree:
        rest = data["sh"]
        for c in range(3):
            for j in range(k - 1):
                byte = rest[f"f_rest_{c * (k - 1) + j}"].astype(np.float64)
                t = np.where(byte == 0, 0.0, np.where(byte == 255, 1.0, (byte + 0.5) / 256.0))
                sh[:, 1 + j, c] = (t - 0.5) * 8.0
    return finish(where, means, quats, log_scales, opacity, sh)
