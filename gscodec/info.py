"""What a .gsz file holds, from its header and metadata only (``gscodec info``).

:func:`info` reads the container's header, its stream table and the metadata stream (GSZ.md
sections 3 and 5), and for a chunked file its chunk table (11.2: a few bytes a chunk, for the
memory estimate), and nothing else: no attribute payload is read, decompressed or verified, so
it answers in the same time for a file of any size. (``gscodec bitrate report``,
:func:`gscodec.inspect`, reads every stream to count its probability tables.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

from . import budget
from .cameras import Camera
from .decoder import checked_meta, header_memory, largest_part
from .formats.chunks import FLAG_CHUNKED, MAX_LAYERS, PARTS_KIND, TABLE_KIND, table_size
from .formats.errors import ContainerError, unreadable
from .formats.gsz import DEFAULT_LIMITS, Header, Limits, read_header, read_payload
from .sidemeta import parse_views
from .streams import ATTRIBUTE_OF_KIND, IMPORTANCE, OTHER_STREAMS


def _read(path: str | os.PathLike[str], limits: Limits, table: bool = False
          ) -> tuple[Header, dict[str, Any], int, int, dict[str, Any], bytes | None]:
    """Header, metadata, Gaussian count, SH degree and the per-stream metadata of a file, and
    with ``table`` a chunked file's chunk table (:func:`_chunk_table`; None for a plain file
    or without ``table``)."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            header = read_header(f, limits)
            payload = _chunk_table(f, header, limits) if table else None
    except OSError as e:
        raise unreadable(p, e, ContainerError, "a .gsz file") from None
    meta, n, degree = checked_meta(header.meta_payload, limits)
    streams = meta.get("streams") if isinstance(meta.get("streams"), dict) else {}
    return header, meta, n, degree, streams, payload


def _chunk_table(f: BinaryIO, header: Header, limits: Limits) -> bytes | None:
    """A chunked file's chunk table payload (checksum verified), None for a plain file
    (ContainerError where the table is missing or longer than ``limits`` allow)."""
    if not header.flags & FLAG_CHUNKED:
        return None
    table = next((e for e in header.entries if e.kind == TABLE_KIND), None)
    if table is None:
        raise ContainerError("corrupt .gsz file: a chunked file without its chunk table")
    if table.length > table_size(limits.max_chunks, MAX_LAYERS):
        raise ContainerError(f"corrupt .gsz file: a chunk table of {table.length} bytes")
    return read_payload(f, table)


def info(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Gaussians, SH degree, preset, encoder, streams (kind, attribute, bytes, bits per
    Gaussian), side information (views, their sizes, block scale, the prior's gains), the
    estimated memory of a base-layer decode (GSZ.md 4.1) and the file's size. ContainerError
    (LimitError for limits) where the header or metadata is bad; the attribute streams are not
    checked (``gscodec decode`` and ``bitrate report`` do that)."""
    header, meta, n, degree, stream_meta, table = _read(path, limits, table=True)
    per_g = (lambda b: 8.0 * b / n) if n else (lambda b: 0.0)
    streams = [{"stream": e.kind,
                "attribute": ATTRIBUTE_OF_KIND.get(e.kind, OTHER_STREAMS.get(e.kind)),
                "codec": e.codec, "required": e.required, "bytes": e.length,
                "bits_per_gaussian": per_g(e.length)} for e in header.entries]
    kinds = {e.kind for e in header.entries}
    chunked = bool(header.flags & FLAG_CHUNKED)
    classes = IMPORTANCE.kind in kinds
    side = _side(stream_meta.get("SIDE")) if "SIDE" in kinds else None
    return {"file_bytes": header.file_size, "version": "{}.{}".format(*header.version),
            "gaussians": n, "sh_degree": degree, "quality": meta.get("quality"),
            "encoder": meta.get("encoder"), "bits_per_gaussian": per_g(header.file_size),
            "importance_classes": None if chunked else classes, "streams": streams,
            "side_information": side,
            "chunk_size": meta.get("chunk_size") if chunked else None,
            "base": meta.get("base") if "BASE" in kinds else None,
            "decode_memory_bytes": header_memory(header.meta_payload, n, degree,
                                                 header.file_size, header.entries,
                                                 header.flags, limits,
                                                 _largest_part(header, table, n, limits))}


def _largest_part(header: Header, table: bytes | None, n: int, limits: Limits) -> int | None:
    """A chunked file's largest part, from its chunk ``table`` (checked); None for a plain
    file."""
    if table is None:
        return None
    parts = next((e for e in header.entries if e.kind == PARTS_KIND), None)
    if parts is None:
        raise ContainerError("corrupt .gsz file: a chunked file without its parts")
    return largest_part(table, parts.length, n, limits)


def side_cameras(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS
                 ) -> list[Camera]:
    """The cameras of a .gsz file's side information (empty without any), from its header and
    metadata only: the views the encoder measured, which a held-out evaluation leaves out."""
    header, _, _, _, streams, _ = _read(path, limits)
    if "SIDE" not in {e.kind for e in header.entries}:
        return []
    side = streams.get("SIDE")
    if not isinstance(side, dict):
        raise ContainerError("bad metadata: the SIDE stream has no metadata")
    return parse_views(side)[2]


def _side(side_meta: Any) -> dict[str, Any] | None:
    """Views, sizes, scale, step and prior gains of a SIDE stream's metadata (None where it
    is malformed: the decoder reports that)."""
    views = budget.side_views(side_meta)
    if views is None:
        return None
    scale, sizes = views
    prior = side_meta.get("prior")
    step = side_meta.get("step")
    return {"views": len(sizes), "sizes": [list(s) for s in sizes], "scale": scale,
            "step": step if isinstance(step, (int, float)) else None,
            "prior": prior if isinstance(prior, dict) else None}
