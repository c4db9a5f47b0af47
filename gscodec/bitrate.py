"""The bitrate report (``gscodec bitrate report``, :func:`inspect`): where the bytes of a .gsz
file go, stream by stream, with the part spent on probability tables."""

from __future__ import annotations

import os
from typing import Any

from .decoder import base_bytes, checked_header, load_data
from .formats.chunks import FLAG_CHUNKED, PARTS_KIND, TABLE_KIND, parse_table, part_bytes
from .formats.errors import ContainerError
from .formats.gsz import DEFAULT_LIMITS, ENTRY_SIZE, HEADER_SIZE, Limits
from .streams import ATTRIBUTE_OF_KIND, CODEC_OF_KIND, OTHER_STREAMS


def inspect(
    data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Where the bytes of a .gsz file go: per stream (and the attribute it holds) its bytes,
    bits per Gaussian and the part spent on probability tables; container overhead; totals.
    Also the decoder's estimated memory for the base layer (``decode_memory_bytes``, GSZ.md
    4.1), which inspect reports without refusing the file over it (it decodes nothing)."""
    data = load_data(data_or_path)
    container, meta, n, degree = checked_header(data, limits, memory=False)
    per_g = (lambda b: 8.0 * b / n) if n else (lambda b: 0.0)
    stream_meta = meta.get("streams") if isinstance(meta.get("streams"), dict) else {}
    overhead = HEADER_SIZE + ENTRY_SIZE * len(container.streams)
    chunked = None
    if container.flags & FLAG_CHUNKED:
        files, chunked = _parts(container, n, limits)
        overhead += sum(HEADER_SIZE + ENTRY_SIZE * len(c.streams) for c, _ in files)
        files.insert(0, (container, stream_meta))
    else:
        files = [(container, stream_meta)]
    rows: dict[str, dict[str, Any]] = {}
    transformed: list[int] = []  # the component count of each transformed SHRS stream
    for c, sub_meta in files:
        for s in c.streams:
            if s.kind == "SHRS" and s.codec == 2 and isinstance(sub_meta.get(s.kind), dict):
                transformed.append(sub_meta[s.kind].get("components"))
            codec = CODEC_OF_KIND.get(s.kind)
            tables = None if codec is None else codec.table_bytes(s.payload, sub_meta.get(s.kind))
            if s.kind == PARTS_KIND:
                continue  # (its bytes are the parts' streams, counted one by one)
            row = rows.setdefault(s.kind, {
                "stream": s.kind,
                "attribute": ATTRIBUTE_OF_KIND.get(s.kind, OTHER_STREAMS.get(s.kind)),
                "required": s.required, "bytes": 0, "table_bytes": None})
            row["bytes"] += len(s.payload)
            if tables is not None:
                row["table_bytes"] = (row["table_bytes"] or 0) + tables
    for row in rows.values():
        row["bits_per_gaussian"] = per_g(row["bytes"])
    side_meta = stream_meta.get("SIDE")
    return {
        "file_bytes": len(data),
        "gaussians": n,
        # how many Gaussians of the encoder's input it dropped (importance pruning), as stored
        "pruned": _pruned(meta),
        # the SH rest's transform (GSZ.md 6.6a): how many of the file's SHRS streams (one per
        # part of a chunked file) use it and their component counts, or None where none does
        "sh_transform": ({"streams": len(transformed), "of": len(files) - (chunked is not None),
                          "components": transformed, "values": 3 * ((degree + 1) ** 2 - 1)}
                         if transformed else None),
        "sh_degree": degree,
        "quality": meta.get("quality"),
        "encoder": meta.get("encoder"),
        "version": f"{container.version[0]}.{container.version[1]}",
        "container_overhead_bytes": overhead,
        "streams": list(rows.values()),
        # a chunked file's chunks and layers (GSZ.md 11), or None for a plain file
        "chunks": chunked,
        "bits_per_gaussian": per_g(len(data)),
        # the encoder's gains for the learned prior (SIDE metadata), as stored, or None
        "side_prior": side_meta.get("prior") if isinstance(side_meta, dict) else None,
        "side_views": (len(side_meta["views"]) if isinstance(side_meta, dict)
                       and isinstance(side_meta.get("views"), list) else 0),
        # the decoder's estimated peak memory for the base layer (GSZ.md 4.1; the side
        # information and refinement add to it), which decode checks against limits.max_memory
        "decode_memory_bytes": base_bytes(container, n, degree, limits),
    }


def _pruned(meta: dict[str, Any]) -> int:
    value = meta.get("pruned", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _parts(container: Any, n: int, limits: Limits
           ) -> tuple[list[tuple[Any, dict[str, Any]]], dict[str, Any]]:
    """The parts of a chunked file (each checked as the decoder checks it: container and
    metadata) with their stream metadata, and the chunk count, layer count and Gaussians per
    layer."""
    table, parts = container.get(TABLE_KIND), container.get(PARTS_KIND)
    if table is None or parts is None:
        raise ContainerError("corrupt .gsz file: a chunked file needs CTAB and CHNK streams")
    chunks = parse_table(table.payload, len(parts.payload), n, limits.max_chunks)
    files = []
    for c in chunks:
        for p in c.parts:
            part, part_meta, _, _ = checked_header(part_bytes(parts.payload, p), limits,
                                                   memory=False)
            sub = part_meta.get("streams")
            files.append((part, sub if isinstance(sub, dict) else {}))
    layers = len(chunks[0].parts)
    return files, {"count": len(chunks), "layers": layers,
                   "layer_gaussians": [sum(c.parts[k].count for c in chunks)
                                       for k in range(layers)]}
