"""Picking the reader for a scene file, by its content where the content can tell.

=====================  ===============================================================
``.gsz``               the .gsz magic (decoded by ``gscodec.load_scene``, not here)
INRIA ``.ply``         starts with ``ply``; vertices have ``x y z ...`` properties
compressed ``.ply``    starts with ``ply``; vertices have ``packed_position``
``.spz``               the gzip magic (versions 2, 3) or ``NGSP`` (uncompressed / version 4)
``.sog``               the zip magic
SOG folder             a folder holding ``meta.json``, or a ``.json`` file
``.splat``             the ``.splat`` extension (the format has no header)
=====================  ===============================================================

Where the first bytes match none of these, the name's extension picks the reader (so a broken
``.spz`` is reported by the .spz reader).
"""

from __future__ import annotations

import os
from pathlib import Path

from .common import ArrayDict
from .errors import FormatError, PlyError, unreadable
from .gsz import MAGIC as GSZ_MAGIC

FORMATS = ("ply", "compressed-ply", "splat", "spz", "sog", "gsz")


def detect_format(path: str | os.PathLike[str]) -> str:
    """One of :data:`FORMATS` for the scene at ``path``; FormatError when none fits."""
    p = Path(path)
    if p.is_dir():
        if (p / "meta.json").is_file():
            return "sog"
        raise FormatError(f"{p}: is a folder without a SOG meta.json")
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise unreadable(p, e, FormatError, "a scene file") from None
    if head.startswith(GSZ_MAGIC):
        return "gsz"
    if head.startswith((b"ply\n", b"ply\r\n")):
        return _ply_kind(p)
    if head.startswith(b"\x1f\x8b") or head.startswith(b"NGSP"):
        return "spz"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "sog"
    # the content cannot tell: go by the name, so the reader explains what is wrong
    name = p.name.lower()
    for suffix, kind in ((".splat", "splat"), (".ply", "ply"), (".spz", "spz"), (".sog", "sog"),
                         (".json", "sog")):
        if name.endswith(suffix):
            return kind
    if head.lstrip()[:1] == b"{":
        return "sog"
    if not head:
        raise FormatError(f"{p}: empty file")
    raise FormatError(
        f"{p}: unrecognised scene format (gscodec reads .ply, compressed .ply, .splat, .spz, "
        ".sog, a SOG meta.json and .gsz)"
    )


def _ply_kind(p: Path) -> str:
    from .compressed_ply import is_compressed_header
    from .ply import _parse_header

    try:
        with open(p, "rb") as f:
            _, elements, _ = _parse_header(f, str(p))
    except OSError as e:
        raise unreadable(p, e, PlyError, "a PLY file") from None
    return "compressed-ply" if is_compressed_header(elements) else "ply"


def read_scene_arrays(path: str | os.PathLike[str]) -> ArrayDict:
    """Read a scene in any format but .gsz into the array dict of
    :func:`formats.ply.read_ply_arrays`. Raises a GscodecError subclass (PlyError for an INRIA
    PLY, FormatError for the others and for .gsz files, which need the codec)."""
    kind = detect_format(path)
    if kind == "ply":
        from .ply import read_ply_arrays

        return read_ply_arrays(path)
    if kind == "compressed-ply":
        from .compressed_ply import read_compressed_ply_arrays

        return read_compressed_ply_arrays(path)
    if kind == "splat":
        from .splat import read_splat_arrays

        return read_splat_arrays(path)
    if kind == "spz":
        from .spz import read_spz_arrays

        return read_spz_arrays(path)
    if kind == "sog":
        from .sog import read_sog_arrays

        return read_sog_arrays(path)
    raise FormatError(f"{path}: a .gsz file; decode it with gscodec.load_scene")
