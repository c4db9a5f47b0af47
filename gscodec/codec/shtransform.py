"""The SH rest's per-scene transform (GSZ.md 6.6a: the ``SHRS`` stream's codec 2).

A trained scene's higher SH bands are strongly correlated, between the three colours of a
coefficient and between coefficients: a Gaussian's 3k rest values (k = 3, 8 or 15 coefficients)
sit near a low-dimensional subspace. The encoder computes the KLT of the scene's rest vectors
(the eigenvectors of their second-moment matrix, strongest first), sends it as a fixed-point
integer matrix ``B`` (``BASIS_BITS`` fractional bits, int16), and codes each Gaussian's
components ``y = B^-1 x`` with one uniform step: most components of most Gaussians quantize to
zero, and the remaining ones are not correlated linearly. Decoding is exact integer arithmetic
(``S = B X`` holds integers below 2**53, so float64 computes it exactly in any summation order),
then one float64 product per value, rounded to float32: every decoder gets the same bits.

The second-moment matrix (not the covariance) keeps a zero rest zero: a Gaussian without view
dependence costs nothing in any component.
"""

from __future__ import annotations

import struct

import numpy as np
import zstandard

from ..formats.errors import ContainerError
from ..formats.gsz import bounded_decompress

BASIS_BITS = 14
BASIS_SCALE = 1 << BASIS_BITS
_BLOCK = 1 << 15
_ZSTD_LEVEL = 19


def basis(values: np.ndarray | object) -> np.ndarray:
    """int16 ``[C, C]``: the fixed-point KLT basis of ``values`` (``[n, ...]`` rows of ``C``
    values, an array or a RowView), column ``t`` the ``t``-th strongest direction with its
    largest entry positive (so the sign is the same on every machine up to ties)."""
    n = values.shape[0]  # type: ignore[attr-defined]
    c = int(np.prod(values.shape[1:]))  # type: ignore[attr-defined]
    moment = np.zeros((c, c))
    for a in range(0, n, _BLOCK):
        block = np.asarray(values[a : a + _BLOCK], np.float64).reshape(-1, c)  # type: ignore[index]
        moment += block.T @ block
    w, vectors = np.linalg.eigh(moment / max(1, n))
    vectors = vectors[:, np.argsort(-w, kind="stable")]
    largest = np.abs(vectors).argmax(axis=0)
    vectors *= np.where(vectors[largest, np.arange(c)] < 0, -1.0, 1.0)[None, :]
    return np.clip(np.rint(vectors * BASIS_SCALE), -32767, 32767).astype(np.int16)


def forward(values: np.ndarray | object, B: np.ndarray) -> np.ndarray:
    """float32 ``[n, C]``: the components ``B^-1 x`` of each row (the inverse of the
    fixed-point basis itself, so that decoding undoes exactly what was quantized)."""
    n = values.shape[0]  # type: ignore[attr-defined]
    c = B.shape[0]
    inv_t = np.linalg.inv(B.astype(np.float64) / BASIS_SCALE).T
    out = np.empty((n, c), np.float32)
    for a in range(0, n, _BLOCK):
        block = np.asarray(values[a : a + _BLOCK], np.float64).reshape(-1, c)  # type: ignore[index]
        out[a : a + _BLOCK] = block @ inv_t
    return out


def components_used(Y: np.ndarray, step: float, rows: np.ndarray) -> int:
    """How many leading components of ``Y [n, C]`` are sent: up to the last one that has a
    non-zero integer with step ``step * rows[i]`` (at least 1). Components come strongest
    first, so the weak ones that quantize to zero everywhere (most of them at low rates) cost
    neither a channel nor their basis columns."""
    c = Y.shape[1]
    peak = np.zeros(c)
    for a in range(0, Y.shape[0], _BLOCK):
        block = np.abs(Y[a : a + _BLOCK].astype(np.float64)) / (step * rows[a : a + _BLOCK, None])
        peak = np.maximum(peak, block.max(axis=0, initial=0.0))
    nonzero = np.flatnonzero(np.rint(peak) != 0)
    return int(nonzero[-1]) + 1 if nonzero.size else 1


def pack_basis(B: np.ndarray) -> bytes:
    """``u32 L`` + a zstd frame (with its content size) of ``B`` (``[C, K]``: the columns of
    the components sent) as little-endian int16, row-major: the prefix of a codec-2 ``SHRS``
    payload."""
    blob = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(
        np.ascontiguousarray(B, "<i2").tobytes())
    return struct.pack("<I", len(blob)) + blob


def basis_bytes(payload: bytes) -> int | None:
    """The length of a codec-2 payload's basis prefix (its ``u32`` and blob), None where the
    payload is too short to say."""
    return None if len(payload) < 4 else 4 + struct.unpack_from("<I", payload, 0)[0]


def unpack_basis(payload: bytes, c: int, k: int) -> tuple[np.ndarray, bytes]:
    """The basis ``[c, k]`` (int64) and the rest of the payload; ContainerError where the
    prefix is damaged or does not hold exactly ``c * k`` int16 values."""
    head = basis_bytes(payload)
    if head is None:
        raise ContainerError("corrupt stream: SHRS payload shorter than its basis header")
    if head > len(payload):
        raise ContainerError("corrupt stream: the SH basis runs past the end of the stream")
    raw = bounded_decompress(payload[4:head], 2 * c * k, "SH basis")
    if len(raw) != 2 * c * k:
        raise ContainerError(f"corrupt stream: the SH basis holds {len(raw)} bytes, not "
                             f"{2 * c * k}")
    B = np.frombuffer(raw, "<i2").astype(np.int64).reshape(c, k)
    return B, payload[head:]


def inverse_rows(X: np.ndarray, B: np.ndarray, unit: float | np.ndarray, out: np.ndarray
                 ) -> None:
    """``out[i][r] = float32(S[r][i] * unit_i)`` with ``S = B X`` (B ``[C, K]``, X: integer
    ``[K, m]``, ``unit``: ``step * M / BASIS_SCALE`` as one float64 or one per row), in blocks
    of rows."""
    Bf = B.astype(np.float64)
    m = X.shape[1]
    units = np.broadcast_to(np.asarray(unit, np.float64), (m,))
    for a in range(0, m, _BLOCK):
        S = X[:, a : a + _BLOCK].T.astype(np.float64) @ Bf.T  # exact: integers below 2**53
        out[a : a + _BLOCK] = S * units[a : a + _BLOCK, None]
