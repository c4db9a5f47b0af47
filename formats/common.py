"""Helpers shared by the readers of the other scene formats (.splat, .spz, compressed .ply,
SOG): bounded file reads, the byte-to-value conversions they share, and the final validation of
the array dict (same keys, shapes and dtypes as :func:`gscodec.formats.ply.read_ply_arrays`).

No torch in here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import FormatError, unreadable

ArrayDict = dict[str, np.ndarray]

SH_C0 = 0.28209479177387814
"""Y_0^0, which maps the DC coefficient to colour: rgb = 0.5 + SH_C0 * dc (the one definition)."""
MAX_GAUSSIANS = 1 << 28  # the same ceiling as the .gsz decoder's default limits
ALPHA_EPS = 1e-6  # 8-bit alphas of 0 and 255 become logits of about -13.8 and +13.8
_COEFFS_FOR_DEGREE = {0: 1, 1: 4, 2: 9, 3: 16}


def coeffs_for_degree(degree: int) -> int:
    """Number of SH coefficients per channel, DC included, for SH degree 0..3."""
    return _COEFFS_FOR_DEGREE[degree]


def file_size(path: Path, what: str) -> int:
    """Size of the regular file at ``path``; FormatError when it cannot be read."""
    try:
        st = path.stat()
    except OSError as e:
        raise unreadable(path, e, FormatError, what) from None
    if path.is_dir():
        raise FormatError(f"{path}: is a folder, not {what}")
    return st.st_size


def read_bytes(path: Path, what: str, max_bytes: int) -> bytes:
    """The whole file, refused (before reading) when it is larger than ``max_bytes``."""
    size = file_size(path, what)
    if size > max_bytes:
        raise FormatError(f"{path}: {size} bytes is more than the {max_bytes} this reader accepts")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise unreadable(path, e, FormatError, what) from None
    if len(data) > max_bytes:
        raise FormatError(f"{path}: grew while being read")
    return data


def check_count(where: str, n: int, what: str = "Gaussians", limit: int = MAX_GAUSSIANS) -> None:
    if n < 0 or n > limit:
        raise FormatError(f"{where}: {n} {what} is more than the {limit} this reader accepts")


def logit_from_byte(alpha: np.ndarray) -> np.ndarray:
    """Opacity logits from 8-bit alphas (alpha = byte / 255), clamped off 0 and 1."""
    a = np.clip(alpha.astype(np.float64) / 255.0, ALPHA_EPS, 1.0 - ALPHA_EPS)
    return np.log(a / (1.0 - a)).astype(np.float32)


def dc_from_colour_byte(c: np.ndarray) -> np.ndarray:
    """SH DC coefficients from 8-bit colours (rgb = 0.5 + SH_C0 * dc)."""
    return ((c.astype(np.float64) / 255.0 - 0.5) / SH_C0).astype(np.float32)


_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]], dtype=np.intp)


def smallest_three(largest: np.ndarray, abc: np.ndarray) -> np.ndarray:
    """Rebuild unit quaternions from the index of their largest component (0..3) and the other
    three components ``abc [N, 3]`` in ascending index order; the largest is taken as
    ``sqrt(1 - a² - b² - c²)`` (non-negative). Indices refer to the quaternion's own order: the
    caller maps them to w, x, y, z."""
    n = largest.shape[0]
    q = np.zeros((n, 4), dtype=np.float64)
    rows = np.arange(n)[:, None]
    q[rows, _OTHERS[largest]] = abc
    q[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - np.einsum("ij,ij->i", abc, abc)))
    return q


def finish(where: str, means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray,
           opacity_logits: np.ndarray, sh: np.ndarray) -> ArrayDict:
    """The array dict, as float32 and validated: finite values, non-zero quaternions."""
    out = {
        "means": np.ascontiguousarray(means, dtype=np.float32),
        "quats": np.ascontiguousarray(quats, dtype=np.float32),
        "log_scales": np.ascontiguousarray(log_scales, dtype=np.float32),
        "opacity_logits": np.ascontiguousarray(opacity_logits, dtype=np.float32),
        "sh": np.ascontiguousarray(sh, dtype=np.float32),
    }
    n = out["means"].shape[0]
    for name, value in out.items():
        flat = value.reshape(n, -1) if n else value
        bad = ~np.isfinite(flat)
        if bad.any():
            rows = bad.any(axis=1) if flat.ndim == 2 else bad
            raise FormatError(
                f"{where}: {int(rows.sum())} Gaussians have non-finite {name} (NaN or Inf), "
                f"first at index {int(np.argmax(rows))}"
            )
    norms = np.einsum("ij,ij->i", out["quats"].astype(np.float64), out["quats"].astype(np.float64))
    zero = norms <= 1e-24
    if zero.any():
        raise FormatError(
            f"{where}: {int(zero.sum())} Gaussians have a zero-length rotation quaternion, "
            f"first at index {int(np.argmax(zero))}"
        )
    return out
