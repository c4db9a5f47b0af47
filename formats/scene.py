"""Checks and conversions every scene writer shares (formats/writers.py, formats/glb.py): which
array dicts a writer can store, unit quaternions, the logistic function and linear scales.

No torch in here.
"""

from __future__ import annotations

import numpy as np

from .common import ArrayDict
from .errors import FormatError
from .ply import _check_arrays


def check_scene(arrays: ArrayDict, where: str = "scene", *, max_count: int | None = None,
                what: str = "the format") -> tuple[int, int]:
    """(Gaussian count, SH degree) of an array dict that a writer can store.

    ValueError for wrong shapes (as :func:`formats.ply.write_ply_arrays`); FormatError for more
    than ``max_count`` Gaussians (checked before any value is looked at), non-finite values or
    zero-length quaternions."""
    n, degree = _check_arrays(arrays)
    if max_count is not None and n > max_count:
        raise FormatError(f"{where}: {n} Gaussians are more than {what} can hold ({max_count})")
    if n == 0:
        return n, degree
    for key in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        value = np.asarray(arrays[key])
        bad = ~np.isfinite(value.reshape(n, -1)).all(axis=1)
        if bad.any():
            raise FormatError(
                f"{where}: {int(bad.sum())} Gaussians have non-finite {key} (NaN or Inf), first "
                f"at index {int(np.argmax(bad))}"
            )
    q = np.asarray(arrays["quats"], dtype=np.float64)
    zero = np.einsum("ij,ij->i", q, q) <= 1e-24
    if zero.any():
        raise FormatError(
            f"{where}: {int(zero.sum())} Gaussians have a zero-length rotation quaternion, first "
            f"at index {int(np.argmax(zero))}"
        )
    return n, degree


def unit_quats(quats: np.ndarray) -> np.ndarray:
    """The quaternions normalised, as float64 (same component order)."""
    q = np.asarray(quats, dtype=np.float64)
    return q / np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in float64, without overflow for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def linear_scales(log_scales: np.ndarray, where: str, fmt: str) -> np.ndarray:
    """``exp`` of the log-scales as float32; FormatError where that is not a positive finite
    float32 (log-scales above about 88.7 or below about -103)."""
    with np.errstate(over="ignore", under="ignore"):
        s = np.exp(np.asarray(log_scales, dtype=np.float64)).astype(np.float32)
    bad = ~((s > 0) & np.isfinite(s)).all(axis=1)
    if bad.any():
        raise FormatError(
            f"{where}: {int(bad.sum())} Gaussians have log-scales whose exp is not a positive "
            f"finite float32, which {fmt} stores, first at index {int(np.argmax(bad))}"
        )
    return s
