"""Reading antimatter15 ``.splat`` files.

No header; 32 bytes per Gaussian, little-endian::

    0   position   3 x float32
    12  scale      3 x float32, linear (exp of the log-scale)
    24  colour     4 x uint8: r, g, b = clamp((0.5 + SH_C0 * f_dc) * 255),
                              a = sigmoid(opacity) * 255
    28  rotation   4 x uint8: quaternion w, x, y, z as (q / |q|) * 128 + 128

SH degree 0 only. Decoding: rotation (byte - 128) / 128, normalised (all four at 128, which
encodes no rotation, reads as the identity); log of the scale; DC = (byte / 255 - 0.5) / SH_C0;
opacity logit = logit(byte / 255) with the alpha clamped to [1e-6, 1 - 1e-6].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .common import (
    ArrayDict,
    check_count,
    dc_from_colour_byte,
    file_size,
    finish,
    logit_from_byte,
)
from .errors import FormatError, unreadable

RECORD_BYTES = 32
_RECORD = np.dtype([("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)),
                    ("rot", "u1", (4,))])


def decode_splat_records(data: np.ndarray, where: str) -> ArrayDict:
    """The Gaussians of an array of ``.splat`` records (dtype as the file layout)."""
    n = data.shape[0]
    scale = data["scale"].astype(np.float64)
    bad = ~(np.isfinite(scale) & (scale > 0)).all(axis=1)
    if bad.any():
        raise FormatError(
            f"{where}: {int(bad.sum())} Gaussians have a scale that is not a positive finite "
            f"number, first at index {int(np.argmax(bad))}"
        )
    q = (data["rot"].astype(np.float64) - 128.0) / 128.0
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))
    zero = norm == 0
    q[zero] = (1.0, 0.0, 0.0, 0.0)
    norm[zero] = 1.0
    q /= norm[:, None]
    rgba = data["rgba"]
    sh = dc_from_colour_byte(rgba[:, :3]).reshape(n, 1, 3)
    return finish(where, data["pos"], q, np.log(scale), logit_from_byte(rgba[:, 3]), sh)


def read_splat_arrays(path: str | os.PathLike[str]) -> ArrayDict:
    """Read a ``.splat`` file into the array dict of :func:`formats.ply.read_ply_arrays`;
    raises FormatError."""
    p = Path(path)
    where = str(p)
    size = file_size(p, "a .splat file")
    if size == 0:
        raise FormatError(f"{where}: empty .splat file")
    if size % RECORD_BYTES:
        raise FormatError(
            f"{where}: not a .splat file: its size ({size} bytes) is not a multiple of "
            f"{RECORD_BYTES}"
        )
    n = size // RECORD_BYTES
    check_count(where, n)
    try:
        with open(p, "rb") as f:
            data = np.fromfile(f, dtype=_RECORD, count=n)
    except OSError as e:
        raise unreadable(where, e, FormatError, "a .splat file") from None
    if data.shape[0] != n:
        raise FormatError(f"{where}: truncated .splat file (it shrank while being read)")
    return decode_splat_records(data, where)
