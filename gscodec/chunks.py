"""How a scene is cut into the chunks and layers of a chunked file (GSZ.md 11).

Chunks are the cells of a k-d tree over the positions, of at most ``chunk_size`` Gaussians each
(compact boxes that do not overlap, so that a box meets few of them). Inside a chunk the
Gaussians are ranked by how much of a render they can cover and cut into two layers, a quarter
of the chunk (the most covering) and the rest, so that a decoder that reads the first layer of
every chunk gets a coarse version of the whole scene."""

from __future__ import annotations

import numpy as np

from .formats.scene import sigmoid

DEFAULT_CHUNK_SIZE = 1 << 16
"""Gaussians per chunk: small enough that a box holding a tenth of a scene of millions meets
few chunks beyond it, large enough that a part's probability tables and header (about 1-2 KB)
stay a small share of its bytes."""

MIN_CHUNK_SIZE = 16
"""The smallest chunk size the encoder takes (each part costs about 1 KB of header, metadata and
tables: small chunks are for tests; the CLI takes 256 and up)."""

LAYERS = (1, 4)
"""Cumulative share of a chunk's Gaussians in its first 1, 2 layers, in quarters. A layer is a
sparser subset of the chunk: its positions cost about log2(1 / share) bits per Gaussian more
than in one run (two layers: about 0.8 bits per Gaussian in all; 1/8, 1/8, 1/4, 1/2: 1.75,
measured 2.6% of plant's file at preset 7)."""


def coverage(opacity_logits: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
    """How much of a render a Gaussian can cover: its opacity times the area of its largest
    cross-section (the product of its two largest scales), float64."""
    ls = np.sort(log_scales.astype(np.float64), axis=1)
    return sigmoid(opacity_logits.astype(np.float64).reshape(-1)) * np.exp(ls[:, 1] + ls[:, 2])


def chunk_count(n: int, chunk_size: int) -> int:
    return max(1, -(-n // chunk_size))


def split(means: np.ndarray, cover: np.ndarray, chunk_size: int) -> list[list[np.ndarray]]:
    """The chunks of a scene: ``chunk_count`` cells of a k-d tree over the positions (each
    cell split across its longest side into halves of as many chunks each, within one
    Gaussian), so that the chunks' boxes are compact and do not overlap; each cut into the
    layers of :data:`LAYERS` by ``cover`` (largest first, ties by index), each layer's indices
    in increasing order."""
    n = means.shape[0]
    cells: list[np.ndarray] = []
    _cells(means, np.arange(n), chunk_count(n, chunk_size), cells)
    out = []
    for run in cells:
        ranked = run[np.argsort(-cover[run], kind="stable")]
        m = run.shape[0]
        ends = [-(-m * k // LAYERS[-1]) for k in LAYERS]  # (rounded up: a share f of a
        # chunk's Gaussians, f a layer's cumulative share, is in its first layers, 11.4)
        starts = [0, *ends[:-1]]
        out.append([np.sort(ranked[a:b]) for a, b in zip(starts, ends, strict=True)])
    return out


def _cells(means: np.ndarray, idx: np.ndarray, leaves: int, out: list[np.ndarray]) -> None:
    """Append the ``leaves`` k-d cells of the Gaussians ``idx`` (sorted) to ``out``."""
    if leaves == 1:
        out.append(idx)
        return
    pts = means[idx].astype(np.float64)
    axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
    left = leaves // 2
    k = idx.shape[0] * left // leaves
    # (a stable sort, not a partition: ties split by index, the same on every machine)
    ranked = idx[np.argsort(pts[:, axis], kind="stable")]
    _cells(means, np.sort(ranked[:k]), left, out)
    _cells(means, np.sort(ranked[k:]), leaves - left, out)


def layers_for(counts: list[int], fraction: float) -> int:
    """How many leading layers of a chunk with these layer ``counts`` hold at least
    ``fraction`` of its Gaussians (at least 1)."""
    need = fraction * sum(counts)
    total = 0
    for k, c in enumerate(counts, 1):
        total += c
        if total >= need:
            return k
    return len(counts)
