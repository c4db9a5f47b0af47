"""The bitrate report (``gscodec bitrate report``, :func:`inspect`): where the bytes of a .gsz
file go, stream by stream, with the part spent on probability tables."""

from __future__ import annotations

import os
from typing import Any

from .decoder import base_bytes, checked_header, load_data
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
    rows = []
    stream_meta = meta.get("streams") if isinstance(meta.get("streams"), dict) else {}
    for s in container.streams:
        tables = None
        codec = CODEC_OF_KIND.get(s.kind)
        if codec is not None:
            tables = codec.table_bytes(s.payload, stream_meta.get(s.kind))
        rows.append({
            "stream": s.kind,
            "attribute": ATTRIBUTE_OF_KIND.get(s.kind, OTHER_STREAMS.get(s.kind)),
            "required": s.required,
            "bytes": len(s.payload),
            "bits_per_gaussian": per_g(len(s.payload)),
            "table_bytes": tables,
        })
    overhead = HEADER_SIZE + ENTRY_SIZE * len(container.streams)
    side_meta = stream_meta.get("SIDE")
    return {
        "file_bytes": len(data),
        "gaussians": n,
        "sh_degree": degree,
        "quality": meta.get("quality"),
        "encoder": meta.get("encoder"),
        "version": f"{container.version[0]}.{container.version[1]}",
        "container_overhead_bytes": overhead,
        "streams": rows,
        "bits_per_gaussian": per_g(len(data)),
        # the encoder's gains for the learned prior (SIDE metadata), as stored, or None
        "side_prior": side_meta.get("prior") if isinstance(side_meta, dict) else None,
        "side_views": (len(side_meta["views"]) if isinstance(side_meta, dict)
                       and isinstance(side_meta.get("views"), list) else 0),
        # the decoder's estimated peak memory for the base layer (GSZ.md 4.1; the side
        # information and refinement add to it), which decode checks against limits.max_memory
        "decode_memory_bytes": base_bytes(container, n, degree, limits),
    }
