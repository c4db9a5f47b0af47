"""Rate control: an encode that fits a size (``--target-size``) or reaches a PSNR
(``--target-psnr``), by a search over the continuous quality parameter of
:func:`gscodec.codec.quality.between` (the ten presets and every point between them).

Each step of the search is a whole encode (the importance classes, chunks and side
information included), so the file returned is exactly an encode at the quality found, and
its size is measured, not estimated. The search brackets the target between two qualities
and interpolates inside the bracket (in log bytes for a size, in dB for a PSNR), narrowing it
each step (2-10 encodes on the test captures of ``benchmarks/results/ratecontrol.md``).

- A size: the file is at most ``target_size`` bytes and, where some quality gives that, at
  least :data:`SIZE_TOLERANCE` below it (``3%``). The side information is searched with the
  base layer: the base layer alone is searched for the target less the side information's
  bytes (measured at the last quality tried), then the whole file is made.
- A PSNR: the base layer's PSNR against the original at the encoder's own views
  (:func:`psnr_cameras`: :data:`PSNR_VIEWS` views of the side-information family, or of the
  training cameras where the encode has them, :data:`PSNR_SIZE` px, black background; no
  refinement, which the decoder may add on top), at least ``target_psnr`` and at most
  :data:`PSNR_TOLERANCE` dB above it, at the smallest quality found that reaches it.

Where no quality reaches the target (a size below quality 1's file, a PSNR above quality
10's), a size raises :class:`TargetError` and a PSNR returns quality 10 with ``met`` false."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .codec.quality import MAX_QUALITY, MIN_QUALITY, between
from .formats.errors import GscodecError
from .gaussians import Gaussians
from .progress import Progress, noop

SIZE_TOLERANCE = 0.03
"""A size target is met by a file between ``(1 - SIZE_TOLERANCE) * target`` and the target."""

PSNR_TOLERANCE = 0.5
"""A PSNR target is met within this many dB above it."""

PSNR_VIEWS = 8

PSNR_SIZE = 256

MAX_ENCODES = 14
"""At most this many encodes in one search (the bracket is narrower than 0.001 by then)."""


class TargetError(GscodecError):
    """No quality meets the target (a size below the smallest file)."""


@dataclass
class Reached:
    """What a rate-controlled encode reached: the quality (continuous; the file records
    ``preset``, its integer part, and the steps themselves), the file's bytes, the base
    layer's PSNR at the encoder's views (PSNR targets only), how many encodes the search
    took and whether the target is met (a size above every quality's file, or a PSNR above
    quality 10's, is not)."""

    quality: float
    preset: int
    bytes: int
    psnr: float | None
    encodes: int
    met: bool
    target_size: int | None = None
    target_psnr: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_to(gaussians: Gaussians, *, target_size: int | None = None,
              target_psnr: float | None = None, progress: Progress | None = None,
              **options: Any) -> tuple[bytes, np.ndarray, Reached]:
    """Encode ``gaussians`` to a size or a PSNR (exactly one of them); ``options`` as
    :func:`gscodec.encode_with_order` takes them (``views``, ``chunk_size``, ``jobs``, ...;
    not ``quality`` or ``params``). Returns the file, its storage order and what it
    reached."""
    if (target_size is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_size and target_psnr")
    for key in ("quality", "params"):
        if key in options:
            raise ValueError(f"a rate-controlled encode chooses {key} itself")
    report = progress or noop
    if target_size is not None:
        if target_size <= 0:
            raise ValueError("target_size must be positive")
        return _to_size(gaussians, int(target_size), report, options)
    if not math.isfinite(target_psnr):  # type: ignore[arg-type]
        raise ValueError("target_psnr must be a finite number of dB")
    return _to_psnr(gaussians, float(target_psnr), report, options)  # type: ignore[arg-type]


class _Encodes:
    """``encodes(q, with_side)``: the file (and storage order) at quality ``q``, each made
    once; ``len(encodes)``: how many were made."""

    def __init__(self, gaussians: Gaussians, options: dict[str, Any]) -> None:
        self.gaussians, self.options = gaussians, options
        self.cache: dict[tuple[float, bool], tuple[bytes, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.cache)

    def __call__(self, q: float, side: bool) -> tuple[bytes, np.ndarray]:
        from .encoder import encode_with_order

        if (q, side) not in self.cache:
            opts = dict(self.options)
            if not side:
                opts["views"] = 0
            self.cache[q, side] = encode_with_order(self.gaussians, int(math.floor(q)),
                                                    params=between(q), **opts)
        return self.cache[q, side]


def _bracket(value: Callable[[float], float], above: Callable[[float], bool], goal: float,
             done: Callable[[float, float], bool], log: bool) -> tuple[float, float]:
    """The bracket ``(low, high)`` of qualities in 1..10 around a target: ``value``
    (non-decreasing in the quality) is not ``above`` the target at ``low`` and is at ``high``,
    narrowed until ``done(value(low), value(high))``, the bracket is narrower than 0.001 or
    :data:`MAX_ENCODES` values were measured. Each step interpolates towards ``goal`` (in log
    values with ``log``) and narrows the bracket by a tenth at least. Where quality 1 is
    already above, the bracket is ``(1, 1)``; where quality 10 is not, ``(10, 10)``."""
    f = math.log if log else float
    lo_q, hi_q = float(MIN_QUALITY), float(MAX_QUALITY)
    lo_v = value(lo_q)
    if above(lo_v):
        return lo_q, lo_q
    hi_v = value(hi_q)
    if not above(hi_v):
        return hi_q, hi_q
    evaluations = 2
    while evaluations < MAX_ENCODES and hi_q - lo_q > 1e-3 and not done(lo_v, hi_v):
        t = (f(goal) - f(lo_v)) / (f(hi_v) - f(lo_v)) if hi_v > lo_v else 0.5
        q = round(lo_q + min(0.9, max(0.1, t)) * (hi_q - lo_q), 4)
        if not lo_q < q < hi_q:
            break
        v = value(q)
        evaluations += 1
        if above(v):
            hi_q, hi_v = q, v
        else:
            lo_q, lo_v = q, v
    return lo_q, hi_q


def _to_size(gaussians: Gaussians, target: int, report: Progress, options: dict[str, Any]
             ) -> tuple[bytes, np.ndarray, Reached]:
    """:func:`encode_to` a size (the module's docstring says how)."""
    encode = _Encodes(gaussians, options)
    side = options.get("views", 0) > 0
    side_bytes, q = 0, float(MIN_QUALITY)
    floor = (1 - SIZE_TOLERANCE) * target
    def size(q: float) -> float:
        report(0, 1, f"rate control: quality {q:.3f}")
        return float(len(encode(q, False)[0]))

    for _ in range(3):  # (the side information's bytes, re-measured where they moved)
        budget = target - side_bytes
        if budget <= 0:
            break
        # the largest quality whose base layer fits the budget, within the tolerance of it
        q, _ = _bracket(size, lambda v, b=budget: v > b,
                        budget - 0.5 * SIZE_TOLERANCE * target,
                        lambda lo, hi, f=floor - side_bytes: lo >= f, True)
        if not side:
            break
        data = encode(q, True)[0]
        side_bytes = len(data) - len(encode(q, False)[0])
        if len(data) <= target:
            break
    data, order = encode(q, side)
    if len(data) > target:
        raise TargetError(f"no quality fits {target:,} bytes: quality {MIN_QUALITY} makes "
                          f"{len(data):,}")
    return data, order, Reached(q, int(math.floor(q)), len(data), None, len(encode),
                                len(data) >= floor, target_size=target)


def _to_psnr(gaussians: Gaussians, target: float, report: Progress, options: dict[str, Any]
             ) -> tuple[bytes, np.ndarray, Reached]:
    """:func:`encode_to` a PSNR (the module's docstring says how)."""
    from . import sideinfo
    from .decoder import decode
    from .metrics import psnr

    encode = _Encodes(gaussians, options)
    backend = options.get("backend", "auto")
    cams = psnr_cameras(gaussians, options.get("cameras"))
    originals = sideinfo.render_views(gaussians, cams, backend)
    measured: dict[float, float] = {}

    def fidelity(q: float) -> float:
        if q not in measured:
            report(0, 1, f"rate control: quality {q:.3f}")
            base = decode(encode(q, False)[0], refine=False)
            renders = sideinfo.render_views(base, cams, backend)
            measured[q] = float(np.mean([min(psnr(a, b), 100.0)
                                         for a, b in zip(originals, renders, strict=True)]))
        return measured[q]

    # the smallest quality found that reaches the target, within the tolerance of it
    _, q = _bracket(fidelity, lambda v: v >= target, target + 0.5 * PSNR_TOLERANCE,
                    lambda lo, hi: hi <= target + PSNR_TOLERANCE, False)
    data, order = encode(q, options.get("views", 0) > 0)
    reached = fidelity(q)
    return data, order, Reached(q, int(math.floor(q)), len(data), reached, len(encode),
                                target <= reached <= target + PSNR_TOLERANCE,
                                target_psnr=target)


def psnr_cameras(gaussians: Gaussians, cameras: list[Any] | None = None) -> list[Any]:
    """The views a PSNR target is measured at: :data:`PSNR_VIEWS` of the side-information
    family at :data:`PSNR_SIZE` px, or as many of the training ``cameras`` where the encode
    has them (spread over the set, as the side information picks them)."""
    from . import sideinfo
    from .encoder import training_views

    if cameras:
        return training_views(cameras, min(PSNR_VIEWS, len(cameras)), PSNR_SIZE)
    return sideinfo.cameras(gaussians.means, PSNR_VIEWS, PSNR_SIZE, 1)
