"""Morton (Z-order) codes of 3D integer grid coordinates, 21 bits per axis."""

from __future__ import annotations

import numpy as np

AXIS_BITS = 21
AXIS_MAX = (1 << AXIS_BITS) - 1

_MASKS = (
    (32, 0x1F00000000FFFF),
    (16, 0x1F0000FF0000FF),
    (8, 0x100F00F00F00F00F),
    (4, 0x10C30C30C30C30C3),
    (2, 0x1249249249249249),
)


def _spread(v: np.ndarray) -> np.ndarray:
    """Put bit i of each 21-bit value at bit 3i."""
    v = np.asarray(v, dtype=np.uint64) & np.uint64(AXIS_MAX)
    for shift, mask in _MASKS:
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def _compact(v: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_spread`: gather bits 0, 3, 6, ... into a 21-bit value."""
    v = np.asarray(v, dtype=np.uint64) & np.uint64(_MASKS[-1][1])
    masks = [mask for _, mask in reversed(_MASKS[:-1])] + [AXIS_MAX]
    for (shift, _), mask in zip(reversed(_MASKS), masks, strict=True):
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v


def encode(q: np.ndarray) -> np.ndarray:
    """[N, 3] integer coordinates in 0..2**21-1 -> [N] uint64 codes (x in bit 0, y in 1, z in 2)."""
    q = np.asarray(q)
    x, y, z = _spread(q[:, 0]), _spread(q[:, 1]), _spread(q[:, 2])
    return x | (y << np.uint64(1)) | (z << np.uint64(2))


def decode(codes: np.ndarray) -> np.ndarray:
    """[N] uint64 codes -> [N, 3] int64 coordinates."""
    codes = np.asarray(codes, dtype=np.uint64)
    out = np.empty((codes.shape[0], 3), np.int64)
    for axis in range(3):
        out[:, axis] = _compact(codes >> np.uint64(axis)).astype(np.int64)
    return out
