"""The decoder's memory budget (GSZ.md 4.1).

Before it allocates anything that grows with the declared sizes, the decoder estimates its peak
memory from the header alone: the Gaussian count ``n``, the SH degree, the streams present, the
file and metadata sizes and, where the file will be refined, the side-information views. A file
whose estimate exceeds ``Limits.max_memory`` is refused with a :class:`LimitError` that names the
estimate and the budget. The estimate is a sum of terms, each a measured peak times a margin:

* the base layer: a fixed part, the file and its parsed metadata, and per Gaussian the decoded
  arrays with the channel decoder's working memory (:func:`base_bytes`);
* the ``SIDE`` stream's residual rows, where it is decoded (:func:`side_bytes`);
* refinement, where it runs: per Gaussian the parameters, their quantization cells, gradients,
  Adam state and the renderer's per-Gaussian buffers; per pixel the targets and one render with
  its loss; with the learned prior the network's activations at the largest view; with the
  PyTorch rasterizer its (pixel, Gaussian) pairs (:func:`refine_bytes`).

How the constants were measured: peak resident set size in a fresh process, minus the size
before the call (2-core x86-64, numpy 2, torch 2 on the CPU, glibc with
``MALLOC_MMAP_THRESHOLD_=65536`` so that the resident set follows the live allocations); the
synthetic scenes of :mod:`gscodec.synthetic`, identical Gaussians, and the shared captured
scenes for the rasterizer's pairs. Each constant is about 1.5 times the largest value measured:

- base, per Gaussian (``GAUSSIAN_BYTES + SH_COEFF_BYTES * (d+1)^2``: 288, 384, 544, 768 bytes
  for SH 0-3): going from 1M to 3M Gaussians costs 192 bytes more per Gaussian at SH 0 and 511
  at SH 3 (presets 1, 7 and 10, importance classes, identical Gaussians and a forced palette of
  1M entries included; at 1M: 213, 252, 430 and 600 bytes per Gaussian with the fixed part);
- base, fixed (``FIXED_BYTES``): the channel decoder's context look-up table (up to 2^22
  entries, 72 MB with its temporaries), its blocks of 65536 rows in float64 (71 MB for the 45
  channels of SH 3) and one stream's table blob (at most 64 MiB);
- ``SIDE``, per residual row: 107-126 bytes (1M and 4M rows);
- refinement, per Gaussian (``REFINE_GAUSSIAN_BYTES + REFINE_SH_VALUE_BYTES * 3 (d+1)^2``):
  2050, 2460 and 4300 bytes at SH 0, 1 and 3 (300k Gaussians, two views, steps of Adam on the
  CPU), once the pairs are taken out;
- per (pixel, Gaussian) pair of the PyTorch rasterizer: 160 bytes (100k Gaussians, 1.5M to
  5.7M pairs); the shared captured scenes have 28-240 pairs per pixel at 256 and 512 pixels;
- per pixel: the targets 12 bytes for every view, one render with its loss and backward 65-73
  bytes at the largest view (1024 and 2048 pixels a side), the learned prior 381 more.

The estimate is then an upper bound of what gscodec allocates for the sizes a file declares,
with one exception: the PyTorch rasterizer's pairs depend on how many pixels each Gaussian
covers, which the header does not say. The estimate assumes at most :data:`PAIRS_PER_PIXEL`
pairs per pixel of the largest view and at least :data:`MIN_PAIRS_PER_GAUSSIAN` per Gaussian
(the smallest box the rasterizer gives a visible Gaussian); a crafted scene of huge Gaussians
can need more there. On a GPU the same terms are counted, without the pairs where gsplat
renders: GPU and host memory together, more than gsplat needs (not measured on a GPU).

This module imports no torch: the CLI and :func:`gscodec.inspect` use it on any file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codec.meta import get_int, get_list
from .formats.errors import ContainerError, LimitError
from .formats.gsz import Limits

# --- the base layer (any decode) --------------------------------------------------------------
FIXED_BYTES = 256 << 20
FILE_BYTE_FACTOR = 8  # the file, its payloads copied out of it, the ANS words (twice)
META_BYTE_FACTOR = 32  # parsed JSON: empty objects cost ~25x their text
GAUSSIAN_BYTES = 256
SH_COEFF_BYTES = 32  # per SH coefficient ((d+1)^2 of them, three colours each) and Gaussian
CLASS_BYTES = 64  # per Gaussian, with importance classes (class rows, features per class)
FOREIGN_GAUSSIAN_BYTES = 256  # per Gaussian, an .spz base layer (formats/spz.py's float64 arrays)
# per SH-rest value (3 ((d+1)^2 - 1) of them) and Gaussian, a transformed SHRS stream (GSZ.md
# 6.6a): its int32 component matrix is kept whole until the inverse transform (4 bytes), with
# per-class steps the parts' matrices (4) and each part's float32 result (4); times 1.5.
# Measured (300k SH-3 Gaussians, all 45 components sent, no classes): 686 bytes per Gaussian
# against 508 for the same scene per band, +4 per value
TRANSFORM_VALUE_BYTES = 18

# --- the side information -------------------------------------------------------------------
SIDE_ROW_BYTES = 192
MAX_VIEWS = 64  # GSZ.md 6.8: at most 64 views ...
MAX_SIDE = 4096  # ... of at most 4096 pixels a side

# --- refinement -----------------------------------------------------------------------------
REFINE_GAUSSIAN_BYTES = 3072
REFINE_SH_VALUE_BYTES = 80  # per SH float (3 (d+1)^2 of them) and Gaussian
TARGET_PIXEL_BYTES = 16  # per pixel of every view: its target image (float32 RGB)
RENDER_PIXEL_BYTES = 128  # per pixel of the largest view: one render, its loss and backward
PRIOR_PIXEL_BYTES = 576  # per pixel of the largest view: the restoration network
PAIR_BYTES = 240  # per (pixel, Gaussian) pair of the PyTorch rasterizer, kept for backward
PAIRS_PER_PIXEL = 256
MIN_PAIRS_PER_GAUSSIAN = 16

EXTRA_VIEW_SIZE = 256  # side of the prior's extra views without side information

# --- the colour fit (gscodec.colourfit, the CPU's default refinement) ------------------------
# per Gaussian: the normal equations of the linear band (triangle, 40 bytes) and their right
# sides (48), one view's sums (16), the changes (48), the renderer's per-Gaussian buffers
# (about 140): 292 measured at 1M Gaussians, times 1.5. The colours are not copied (the fit
# runs on the geometry before they are decoded; GSZ.md 4.1). (Since 2026-12-04 the renderer
# without autograd holds about 8 bytes a Gaussian, its depth order, and one chunk's rows:
# the constant is now an overestimate, kept until it is measured again.)
COLOUR_GAUSSIAN_BYTES = 448
COLOUR_PAIR_BYTES = 240  # per pair of one chunk (at most COLOUR_MAX_PAIRS pairs)
COLOUR_MAX_PAIRS = 1 << 17  # gscodec.colourfit.MAX_PAIRS


@dataclass(frozen=True)
class Estimate:
    """Estimated peak bytes of a decode, by part."""

    base: int
    side: int = 0
    refine: int = 0

    @property
    def total(self) -> int:
        return self.base + self.side + self.refine


def base_bytes(n: int, degree: int, *, file_bytes: int, meta_bytes: int = 0,
               classes: bool = False, foreign: bool = False, transform: bool = False) -> int:
    """Peak bytes of decoding the base layer: ``n`` Gaussians of SH degree ``degree`` from a
    file of ``file_bytes`` whose metadata decompresses to ``meta_bytes``; ``foreign``: the base
    layer is an .spz file (GSZ.md 6.9), decoded through float64 arrays; ``transform``: the SH
    rest is transformed (6.6a)."""
    per_gaussian = GAUSSIAN_BYTES + SH_COEFF_BYTES * (degree + 1) ** 2
    if classes:
        per_gaussian += CLASS_BYTES
    if foreign:
        per_gaussian += FOREIGN_GAUSSIAN_BYTES
    if transform:
        per_gaussian += TRANSFORM_VALUE_BYTES * 3 * ((degree + 1) ** 2 - 1)
    return (FIXED_BYTES + FILE_BYTE_FACTOR * file_bytes + META_BYTE_FACTOR * meta_bytes
            + n * per_gaussian)


KEPT_COPIES = 2  # a chunked decode's Gaussians: the decoded parts' fields, and a region's copy
KEPT_ROW_BYTES = 8  # per Gaussian of a chunked decode: what each part's rows keep beside
# (importance classes, the part a row came from)


def chunked_bytes(count: int, degree: int, *, file_bytes: int, meta_bytes: int, largest: int
                  ) -> int:
    """Peak bytes of decoding ``count`` Gaussians of a chunked file (GSZ.md 11) whose largest
    part decoded holds ``largest``: the parts are decoded one after the other, so what the
    decode of a part holds while it runs (:func:`base_bytes`' per-Gaussian terms, with
    importance classes and the transformed SH rest, as a part may have them) is counted for
    the largest part only, and for the ``count`` Gaussians only what is kept of them: their
    float32 fields (44 + 12 (d+1)^2 bytes) :data:`KEPT_COPIES` times, and
    :data:`KEPT_ROW_BYTES`. (Measured, 1M SH-3 Gaussians of 16 chunks at preset 7: a whole
    decode 326 MB above the interpreter's, one with a region that keeps every Gaussian 511
    MB; this estimate: 1.0 GB.)"""
    part = base_bytes(largest, degree, file_bytes=0, classes=True, transform=True) - FIXED_BYTES
    return (FIXED_BYTES + FILE_BYTE_FACTOR * file_bytes + META_BYTE_FACTOR * meta_bytes
            + count * kept_bytes(degree) + part)


def kept_bytes(degree: int) -> int:
    """Per Gaussian of a chunked decode, what is kept of it (:func:`chunked_bytes`)."""
    return KEPT_COPIES * 4 * (11 + 3 * (degree + 1) ** 2) + KEPT_ROW_BYTES


def side_bytes(rows: int) -> int:
    """Peak bytes of decoding ``rows`` residual pixels of a ``SIDE`` stream (they are kept)."""
    return rows * SIDE_ROW_BYTES


def refine_bytes(n: int, degree: int, views: list[tuple[int, int]], *, prior: bool = False,
                 pairs: bool = True) -> int:
    """Peak bytes that refinement adds: ``n`` Gaussians refined against one target per view
    ``(width, height)``; ``prior``: targets restored by the learned prior; ``pairs``: rendered
    with the PyTorch rasterizer (not gsplat). No views: nothing to refine."""
    if not views or n <= 0:
        return 0
    largest = max(w * h for w, h in views)
    total = n * (REFINE_GAUSSIAN_BYTES + REFINE_SH_VALUE_BYTES * 3 * (degree + 1) ** 2)
    total += TARGET_PIXEL_BYTES * sum(w * h for w, h in views) + RENDER_PIXEL_BYTES * largest
    if prior:
        total += PRIOR_PIXEL_BYTES * largest
    if pairs:
        count = max(MIN_PAIRS_PER_GAUSSIAN * n, PAIRS_PER_PIXEL * largest)
        total += PAIR_BYTES * min(count, n * largest)
    return total


def colour_bytes(n: int, degree: int, views: list[tuple[int, int]]) -> int:
    """Peak bytes that the colour fit adds: ``n`` Gaussians of SH degree ``degree`` fitted at
    ``views`` (``(width, height)``). No views: nothing to fit."""
    if not views or n <= 0:
        return 0
    largest = max(w * h for w, h in views)
    total = n * COLOUR_GAUSSIAN_BYTES + TARGET_PIXEL_BYTES * largest
    return total + COLOUR_PAIR_BYTES * min(COLOUR_MAX_PAIRS, max(n, 1) * largest)


def side_views(side_meta: Any) -> tuple[int, list[tuple[int, int]]] | None:
    """``(scale, [(width, height), ...])`` of a ``SIDE`` stream's metadata (GSZ.md 6.8), or None
    where they are malformed (decoding the stream reports that)."""
    try:
        if not isinstance(side_meta, dict):
            return None
        scale = get_int(side_meta, "scale", 1, 64)
        sizes = []
        for v in get_list(side_meta, "views", MAX_VIEWS):
            if not isinstance(v, dict):
                return None
            w = get_int(v, "width", scale, MAX_SIDE)
            h = get_int(v, "height", scale, MAX_SIDE)
            if w % scale or h % scale:
                return None
            sizes.append((w, h))
    except ContainerError:
        return None
    return scale, sizes


def residual_rows(scale: int, views: list[tuple[int, int]]) -> int:
    return sum((w // scale) * (h // scale) for w, h in views)


def check_side_pixels(pixels: int, limits: Limits) -> None:
    """The limit on the full-resolution pixels of all side-information views (GSZ.md 6.8)."""
    if pixels > limits.max_side_pixels:
        raise LimitError(f"SIDE views declare {pixels} pixels (limit {limits.max_side_pixels})")


def size_text(b: int) -> str:
    """Bytes for people: ``17.2 GB`` style, decimal units (as ``--max-memory`` reads them)."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if b >= scale:
            return f"{b / scale:.1f} {unit}"
    return f"{b} B"


def check(estimate: Estimate, limits: Limits, what: str) -> None:
    """Refuse (LimitError) when ``estimate`` exceeds ``limits.max_memory``; ``what`` says what
    is decoded, e.g. ``file declares 100 Gaussians (SH 3)``."""
    if estimate.total <= limits.max_memory:
        return
    parts = ""
    hint = "raise it with --max-memory or Limits(max_memory=...)"
    if estimate.side or estimate.refine:
        parts = (f", {size_text(estimate.side + estimate.refine)} of it for the side "
                 "information and refinement")
        hint += ", or decode without refinement (--no-refine)"
    raise LimitError(
        f"{what}: decoding needs an estimated {estimate.total:,} bytes of memory "
        f"({size_text(estimate.total)}{parts}), above the memory budget of "
        f"{limits.max_memory:,} bytes ({size_text(limits.max_memory)}; {hint})"
    )


_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kb": 10**3, "kib": 1 << 10,
    "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
    "g": 1 << 30, "gb": 10**9, "gib": 1 << 30,
    "t": 1 << 40, "tb": 10**12, "tib": 1 << 40,
}


def parse_size(text: str) -> int:
    """Bytes from ``8GB`` (decimal: 8 * 10**9), ``512MiB`` (binary), ``8G`` (a bare letter is
    binary, as in ``ulimit`` and GNU tools), ``1.5GiB`` or plain bytes ``1000000``; units are
    case-insensitive. ValueError for anything else, or for a size below 1 byte."""
    s = text.strip().replace("_", "")
    i = len(s)
    while i > 0 and s[i - 1].isalpha():
        i -= 1
    number, unit = s[:i].strip(), s[i:].lower()
    if unit not in _UNITS or not number:
        raise ValueError(f"not a size: {text!r} (examples: 8GB, 512MiB, 1000000)")
    try:
        value = float(number) if any(c in number for c in ".eE") else int(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (examples: 8GB, 512MiB, 1000000)") from None
    b = value * _UNITS[unit]
    if not b >= 1 or b != b or b == float("inf"):
        raise ValueError(f"not a size: {text!r} (it must be at least 1 byte)")
    return int(b)
