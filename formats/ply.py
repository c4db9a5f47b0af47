"""Reading and writing 3D Gaussian Splatting scenes as PLY files (the INRIA layout).

A 3DGS PLY has one ``vertex`` element whose properties are, per Gaussian::

    x y z                  position, world units
    nx ny nz               normals (optional, unused, written as zeros)
    f_dc_0 f_dc_1 f_dc_2   SH degree-0 coefficients (R, G, B)
    f_rest_0 ... f_rest_K  higher SH bands, channel-major: all R coefficients, then G, then B
    opacity                opacity logit (sigmoid gives the alpha)
    scale_0 scale_1 scale_2  log of the standard deviations
    rot_0 rot_1 rot_2 rot_3  rotation quaternion w, x, y, z (not necessarily normalised)

Properties are looked up by name, so files that order them differently (the PlayCanvas tool
writes ``rot_*`` before ``scale_*``) and files without normals read the same. Binary (either
endianness) is read straight into numpy after the header has been checked against the file
size; ASCII files go through plyfile.

Values must be finite, except the opacity logit, where -inf and +inf (alpha 0 and 1, which some
tools write) are read as -30 and +30.

This module works on plain numpy arrays and imports no torch: :func:`read_ply_arrays` returns a
dict with the keys ``means [N,3]``, ``quats [N,4]`` (wxyz), ``log_scales [N,3]``,
``opacity_logits [N]`` and ``sh [N,(d+1)^2,3]`` (DC first), all float32.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic import atomic_write
from .errors import PlyError, unreadable

_PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_MAX_HEADER_BYTES = 1 << 20
_SH_REST_COUNTS = {0: 0, 9: 1, 24: 2, 45: 3}
_WRITE_ROWS = 1 << 16
_READ_ROWS = 1 << 16

ArrayDict = dict[str, np.ndarray]


class _Element:
    def __init__(self, name: str, count: int) -> None:
        self.name = name
        self.count = count
        self.props: list[tuple[str, str]] = []  # (name, numpy type code)
        self.has_list = False


def _parse_header(f: BinaryIO, where: str) -> tuple[str, list[_Element], int]:
    """Returns (format, elements, header length in bytes)."""
    first = f.readline(16)
    if first.rstrip(b"\r\n") != b"ply":
        raise PlyError(f"{where}: not a PLY file (it does not start with 'ply')")
    size = len(first)
    fmt: str | None = None
    elements: list[_Element] = []
    while True:
        raw = f.readline(4096)
        size += len(raw)
        if not raw:
            raise PlyError(f"{where}: PLY header ends before 'end_header'")
        if size > _MAX_HEADER_BYTES:
            raise PlyError(f"{where}: PLY header longer than {_MAX_HEADER_BYTES} bytes")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise PlyError(f"{where}: PLY header contains non-ASCII bytes") from None
        if not line or line.startswith(("comment", "obj_info")):
            continue
        words = line.split()
        if words[0] == "end_header":
            break
        if words[0] == "format":
            if len(words) != 3 or words[2] != "1.0" or words[1] not in (
                "ascii", "binary_little_endian", "binary_big_endian"
            ):
                raise PlyError(f"{where}: unsupported PLY format line {line!r}")
            if fmt is not None:
                raise PlyError(f"{where}: PLY header has two format lines")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not re.fullmatch(r"[0-9]+", words[2]):
                raise PlyError(f"{where}: bad element line {line!r}")
            if len(elements) >= 64:
                raise PlyError(f"{where}: too many elements in PLY header")
            if any(el.name == words[1] for el in elements):
                raise PlyError(f"{where}: element {words[1]!r} appears twice in the PLY header")
            elements.append(_Element(words[1], int(words[2])))
        elif words[0] == "property":
            if not elements:
                raise PlyError(f"{where}: property before any element in PLY header")
            el = elements[-1]
            if len(el.props) >= 4096:
                raise PlyError(f"{where}: too many properties in element {el.name!r}")
            if len(words) == 5 and words[1] == "list":
                el.has_list = True
                el.props.append((words[4], "list"))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                if any(p[0] == words[2] for p in el.props):
                    raise PlyError(f"{where}: property {words[2]!r} appears twice")
                el.props.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise PlyError(f"{where}: bad property line {line!r}")
        else:
            raise PlyError(f"{where}: unknown PLY header keyword {words[0]!r}")
    if fmt is None:
        raise PlyError(f"{where}: PLY header has no format line")
    return fmt, elements, size


def _read_vertex_binary(
    f: BinaryIO, fmt: str, elements: list[_Element], header_size: int, file_size: int, where: str
) -> ArrayDict:
    """The Gaussian arrays of a binary PLY's vertex element, read and converted block by block
    (:data:`_READ_ROWS` rows at a time): the file's rows are never held whole, only the
    float32 arrays they become."""
    order = "<" if fmt == "binary_little_endian" else ">"
    offset = header_size
    for el in elements:
        dtype = np.dtype([(n, order + t) for n, t in el.props]) if not el.has_list else None
        if el.name == "vertex":
            if dtype is None:
                raise PlyError(f"{where}: the vertex element has list properties")
            need = el.count * dtype.itemsize
            have = file_size - offset
            if have < need:
                raise PlyError(
                    f"{where}: truncated PLY: {el.count} vertices need {need} bytes of data, "
                    f"the file has {max(have, 0)}"
                )
            f.seek(offset)
            return _blocks(f, dtype, el.count, where)
        if dtype is None:
            raise _NeedsPlyfile()
        offset += el.count * dtype.itemsize
    raise PlyError(f"{where}: the PLY has no 'vertex' element")


def _blocks(f: BinaryIO, dtype: np.dtype, count: int, where: str) -> ArrayDict:
    out: ArrayDict | None = None
    for start in range(0, count, _READ_ROWS):
        rows = min(_READ_ROWS, count - start)
        block = np.fromfile(f, dtype=dtype, count=rows)
        if block.shape[0] != rows:
            raise PlyError(f"{where}: truncated PLY vertex data")
        a = arrays_from_vertex(block, where, first=start)
        if out is None:
            out = {k: np.empty((count, *v.shape[1:]), v.dtype) for k, v in a.items()}
        for k, v in a.items():
            out[k][start : start + rows] = v
    return out if out is not None else arrays_from_vertex(np.zeros(0, dtype), where)


def _check_min_size(fmt: str, elements: list[_Element], header_size: int, file_size: int,
                    where: str) -> None:
    """Before plyfile allocates arrays for the declared counts: every row needs at least one
    byte per list property and its scalar properties' sizes (binary), or a character and a
    separator per property (ASCII); refuse counts the file cannot hold."""
    need = 0
    for el in elements:
        if fmt == "ascii":
            row = 2 * len(el.props)
        else:
            row = sum(1 if t == "list" else np.dtype(t).itemsize for _, t in el.props)
        need += el.count * row
    have = file_size - header_size
    if need - 1 > have:
        raise PlyError(
            f"{where}: truncated PLY: the header declares rows that need at least {need - 1} "
            f"bytes of data, the file has {max(have, 0)}"
        )


class _NeedsPlyfile(Exception):
    """The binary layout cannot be sized without parsing (a list element before the vertices)."""


def _read_vertex_plyfile(path: Path, where: str) -> np.ndarray:
    import plyfile

    try:
        ply = plyfile.PlyData.read(str(path))
        return np.asarray(ply["vertex"].data)
    except KeyError:
        raise PlyError(f"{where}: the PLY has no 'vertex' element") from None
    except Exception as e:  # plyfile raises several unrelated types on malformed input
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PlyError(f"{where}: cannot parse PLY data: {msg}") from None


OPACITY_LOGIT_LIMIT = 30.0


def _column(v: np.ndarray, name: str, where: str, infinite_logits: bool = False) -> np.ndarray:
    if name not in v.dtype.names:
        raise PlyError(f"{where}: missing property {name!r}")
    col = v[name]
    if col.dtype.kind != "f":
        raise PlyError(
            f"{where}: property {name!r} has type {col.dtype.name}; expected float or double"
        )
    out = np.ascontiguousarray(col, dtype=np.float32)
    if infinite_logits:
        # an opacity logit of -inf / +inf is alpha 0 / 1 (some tools write them): keep it finite
        out = np.where(np.isinf(out), np.copysign(OPACITY_LOGIT_LIMIT, out), out).astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        raise PlyError(
            f"{where}: property {name!r} has {int(bad.sum())} non-finite values (NaN or Inf), "
            f"first at vertex {int(np.argmax(bad))}"
        )
    return out


def _stack(v: np.ndarray, names: list[str], where: str) -> np.ndarray:
    out = np.empty((v.shape[0], len(names)), dtype=np.float32)
    for i, name in enumerate(names):
        out[:, i] = _column(v, name, where)
    return out


def arrays_from_vertex(v: np.ndarray, where: str = "input", first: int = 0) -> ArrayDict:
    """Map a structured vertex array (PLY property names) to the Gaussian arrays, validated
    (``first``: the index of ``v``'s first row in the file, for messages)."""
    names = v.dtype.names or ()
    rest = [n for n in names if n.startswith("f_rest_")]
    if len(rest) not in _SH_REST_COUNTS:
        raise PlyError(
            f"{where}: {len(rest)} f_rest_* properties; a 3DGS PLY has 0, 9, 24 or 45 "
            "(SH degree 0 to 3)"
        )
    expected = {f"f_rest_{i}" for i in range(len(rest))}
    if set(rest) != expected:
        raise PlyError(f"{where}: f_rest_* properties are not numbered 0..{len(rest) - 1}")
    degree = _SH_REST_COUNTS[len(rest)]
    n_coeffs = (degree + 1) ** 2
    n = v.shape[0]
    means = _stack(v, ["x", "y", "z"], where)
    log_scales = _stack(v, ["scale_0", "scale_1", "scale_2"], where)
    quats = _stack(v, ["rot_0", "rot_1", "rot_2", "rot_3"], where)
    opacity = _column(v, "opacity", where, infinite_logits=True)
    sh = np.empty((n, n_coeffs, 3), dtype=np.float32)
    sh[:, 0, :] = _stack(v, ["f_dc_0", "f_dc_1", "f_dc_2"], where)
    k = n_coeffs - 1
    for c in range(3):
        for j in range(k):
            sh[:, 1 + j, c] = _column(v, f"f_rest_{c * k + j}", where)
    norms = np.einsum("ij,ij->i", quats.astype(np.float64), quats.astype(np.float64))
    zero = norms <= 1e-24
    if zero.any():
        raise PlyError(
            f"{where}: {int(zero.sum())} Gaussians have a zero-length rotation quaternion, "
            f"first at vertex {first + int(np.argmax(zero))}"
        )
    return {
        "means": means,
        "quats": quats,
        "log_scales": log_scales,
        "opacity_logits": opacity,
        "sh": sh,
    }


def read_ply_arrays(path: str | os.PathLike[str]) -> ArrayDict:
    """Read a 3DGS PLY into float32 numpy arrays (see the module docstring); raises PlyError."""
    p = Path(path)
    where = str(p)
    try:
        size = p.stat().st_size
        f = open(p, "rb")
    except OSError as e:
        raise unreadable(where, e, PlyError, "a PLY file") from None
    with f:
        fmt, elements, header_size = _parse_header(f, where)
        if not any(el.name == "vertex" for el in elements):
            raise PlyError(f"{where}: the PLY has no 'vertex' element")
        vertex = next(el for el in elements if el.name == "vertex")
        if vertex.has_list:
            raise PlyError(f"{where}: the vertex element has list properties")
        if fmt != "ascii":
            try:
                return _read_vertex_binary(f, fmt, elements, header_size, size, where)
            except _NeedsPlyfile:
                pass
        _check_min_size(fmt, elements, header_size, size, where)
        v = _read_vertex_plyfile(p, where)
    return arrays_from_vertex(v, where)


def ply_property_names(sh_degree: int) -> list[str]:
    """The INRIA property order that :func:`write_ply_arrays` writes."""
    k = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _check_arrays(a: ArrayDict) -> tuple[int, int]:
    n = int(np.shape(a["means"])[0])
    sh = np.shape(a["sh"])
    degree = {1: 0, 4: 1, 9: 2, 16: 3}.get(sh[1] if len(sh) == 3 else -1)
    if degree is None or sh[0] != n or sh[2] != 3:
        raise ValueError(f"sh must be [N, (d+1)^2, 3] with d in 0..3, got {sh}")
    for key, shape in (("means", (n, 3)), ("quats", (n, 4)), ("log_scales", (n, 3)),
                       ("opacity_logits", (n,))):
        if tuple(np.shape(a[key])) != shape:
            raise ValueError(f"{key} must have shape {shape}, got {tuple(np.shape(a[key]))}")
    return n, degree


def write_ply_file(f: BinaryIO, a: ArrayDict) -> None:
    """Write the Gaussian arrays to an open binary file as an INRIA-layout little-endian PLY."""
    n, degree = _check_arrays(a)
    write_ply_header(f, n, degree)
    write_ply_rows(f, a)


def write_ply_header(f: BinaryIO, n: int, sh_degree: int) -> None:
    """The header of an INRIA-layout PLY of ``n`` Gaussians (:func:`write_ply_rows` writes
    them, in as many calls as wanted)."""
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in ply_property_names(sh_degree)]
    header.append("end_header")
    f.write(("\n".join(header) + "\n").encode("ascii"))


def write_ply_rows(f: BinaryIO, a: ArrayDict) -> None:
    """The rows of the Gaussian arrays ``a`` in the layout of :func:`write_ply_header`."""
    n, degree = _check_arrays(a)
    names = ply_property_names(degree)
    k = (degree + 1) ** 2 - 1
    for start in range(0, n, _WRITE_ROWS):
        stop = min(n, start + _WRITE_ROWS)
        rows = np.zeros((stop - start, len(names)), dtype="<f4")
        rows[:, 0:3] = a["means"][start:stop]
        sh = np.asarray(a["sh"][start:stop], dtype=np.float32)
        rows[:, 6:9] = sh[:, 0, :]
        if k:
            # channel-major: f_rest_{c*k + j} = sh[:, 1 + j, c]
            rows[:, 9 : 9 + 3 * k] = sh[:, 1:, :].transpose(0, 2, 1).reshape(-1, 3 * k)
        o = 9 + 3 * k
        rows[:, o] = a["opacity_logits"][start:stop]
        rows[:, o + 1 : o + 4] = a["log_scales"][start:stop]
        rows[:, o + 4 : o + 8] = a["quats"][start:stop]
        f.write(rows.tobytes())


def write_ply_arrays(path: str | os.PathLike[str], a: ArrayDict, *, force: bool = False) -> None:
    """Atomically write the Gaussian arrays to ``path`` (refuses an existing file unless force)."""
    _check_arrays(a)
    atomic_write(path, lambda f: write_ply_file(f, a), force=force)
