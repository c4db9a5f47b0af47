"""Importance classes: coarser quantizer steps where the renders do not need fine ones.

The encoder sorts the Gaussians into ``K`` classes by how much they matter to the renders
(:func:`classes`, from the sensitivities of :mod:`gscodec.importance`) and sends the class of
each Gaussian (stream ``IMPC``). The attributes coded after it (log-scales, rotations, DC
colour, higher SH bands) then use a step per class: ``unit * mult[k]`` with a positive integer
``mult[k]``, so that values of every class are integers in one common unit.

Choice of the steps (:func:`class_steps`): with ``w_k`` the mean sensitivity of class ``k``, the
squared render error of class ``k`` grows like ``n_k w_k step_k^2``, and its bits fall like
``-3 n_k log2 step_k``; the sum of bits at a given total error is smallest when
``step_k^2 w_k`` is the same in every class, i.e. ``step_k ~ w_k^(-1/2)``. The ratio between the
coarsest and finest class is capped (``max_ratio``): sensitivities are measured at a few encoder
views and must not send a Gaussian that those views hardly see to zero precision. Multipliers
are rounded to half-units (``mult >= 2``), and ``unit`` is set so that the estimated total error
is a fixed fraction (:data:`DEFAULT_ERROR_RATIO`) of that of the preset's uniform step: the
preset keeps its fidelity, and the file gets smaller.
"""

from __future__ import annotations

import numpy as np

ADAPTED = ("log_scales", "quats", "sh_dc", "sh_rest")
"""The attributes the encoder codes with per-class steps (GSZ.md 5.7). The higher SH bands
joined on 2026-12-03 (tuning split, 6 or 4 evaluation views of seed 1 at 512 px,
``benchmarks/results/presets-sh-tuning.md``, ``presets-sh-tuning-playbot.md``): on the
full-precision fruit (SH 3) per-class SH steps gave presets 2-5 +3.9 to +5.8 dB at 9-15% fewer
bytes (the uniform band steps zero a view dependence that matters there), on the distilled
playbot-sh3 +0.9 / +2.2 dB at presets 2 / 3 for 1-4% more bytes, and on playbot (SOG, SH 2)
+1.5 / +1.1 dB at presets 2 / 3 for 3-4% more bytes (about 3-5% fewer bytes at equal PSNR).
Before, measured on playbot at the old views (which could coincide with the encoder's), they
had raised PSNR at 256 px renders and lowered it at 768 px at equal bytes (preset 5, 3,289,103
B: 51.24 / 48.47 dB; without them 2,987,522 B: 49.23 / 48.49 dB), and were left out."""
FAITHFUL = ("sh_rest",)
"""The attributes with per-class steps at the presets that keep every attribute within the
preset's bound (``QualityParams.faithful_classes``): there each class's step is at most the
uniform one (``class_steps(cap=1)``). See :data:`gscodec.codec.quality._TABLE` for what chose
it."""
FAITHFUL_ERROR_RATIO = 0.1
"""The estimated error the capped per-class steps of :data:`FAITHFUL` aim at (relative to the
uniform step's; the cap lowers it further). See :data:`gscodec.codec.quality._TABLE`."""
CLASS_QUANTILES = (0.6, 0.85, 0.95)
"""Class edges, as quantiles of the importance score: the less important 60%, then 25%, 10%
and the top 5% (finer classes at the top, where the steps differ most). Chosen with
:data:`DEFAULT_ERROR_RATIO`, see there."""
DEFAULT_CLASSES = len(CLASS_QUANTILES) + 1
MAX_CLASSES = 16
MAX_MULT = 64
DEFAULT_MAX_RATIO = 16.0
DEFAULT_ERROR_RATIO = 0.25
"""The estimated error the per-class steps aim at, relative to the preset's uniform steps (the
estimate comes from the encoder views; at other views the coarse classes cost more than it
predicts, so the aim is below 1). Chosen with the class edges and the ratio cap on the tuning
split: plant (113,648 Gaussians, SH 0) and plant-sh3 (24,000, distilled SH 3), presets 3 and
5, 6 evaluation views of seed 1 at 512 px, bytes against the uniform steps' curve at equal
PSNR (``benchmarks/results/classes-tuning.md``, ``classes-tuning-2.md``, command there):

- error ratio (edges 0.5 / 0.75 / 0.9, cap 16): 0.7: -6.8% / -6.5% (plant, presets 3 / 5),
  -3.4% / -4.3% (plant-sh3); 0.5: -8.2 / -8.7, -4.8 / -8.4; 0.35 (the value before
  2026-12-01): -8.4 / -8.0, -5.5 / -10.5; 0.25: -10.3 / -9.2, -5.5 / -15.1; 0.18: -11.8 /
  -11.0, -6.1 / (above the curve). Smaller ratios also raise each preset's PSNR above its
  uniform steps' (0.25: +0.42 / +0.48 dB on plant; 0.18: +1.26 / +1.48), where 0.35 now lost a
  dB on plant (-0.99 / -0.95): 0.25 keeps about the preset's fidelity with the larger saving.
- ratio cap 8 / 32 (0.35): -9.5 / -8.0 and -6.0 / -7.3 on plant, no better than 16.
- edges 0.25 / 0.5 / 0.75 (0.35): -6.7 / -7.1, -2.1 / -4.1; edges 0.6 / 0.85 / 0.95: -9.1 /
  -8.6, -6.0 / -13.2 with 0.35 and -11.2 / -10.2, -6.0 / -16.2 with 0.25 (+0.82 / +0.89 dB on
  plant, +0.43 / +0.19 on plant-sh3): the best measured, kept.

Before 2026-12-01 these were chosen on plant at preset 5 with the old views at 256 px
(``benchmarks/results/rd.md``, ``refine-importance.md``)."""
MIN_GAUSSIANS = 4096
"""Scenes with fewer Gaussians are coded without classes (per-class tables would cost more
than the steps save)."""


def classes(sens: dict[str, np.ndarray],
            quantiles: tuple[float, ...] = CLASS_QUANTILES) -> np.ndarray:
    """Class 0..len(quantiles) of each Gaussian (``uint8``; higher = more important), split at
    these quantiles of the mean, over attributes, of the log of each sensitivity relative to
    its mean."""
    n = next(iter(sens.values())).shape[0]
    if n == 0:
        return np.zeros(0, np.uint8)
    score = np.zeros(n)
    for j in sens.values():
        j = np.asarray(j, np.float64)
        score += np.log(j / max(float(j.mean()), 1e-300) + 1e-12)
    score /= len(sens)
    edges = np.quantile(score, quantiles)
    return np.searchsorted(edges, score, side="right").astype(np.uint8)


def adapted(canonical: bool) -> tuple[tuple[str, ...], dict[str, float]]:
    """The attributes that take per-class steps and the options of :func:`class_steps` for
    them: :data:`ADAPTED` at the render-tuned presets (canonical form), :data:`FAITHFUL`
    capped at the uniform step, aiming at :data:`FAITHFUL_ERROR_RATIO`, at the others."""
    if canonical:
        return ADAPTED, {}
    return FAITHFUL, {"cap": 1.0, "error_ratio": FAITHFUL_ERROR_RATIO}


def class_steps(sens: np.ndarray, cls: np.ndarray, k: int,
                max_ratio: float = DEFAULT_MAX_RATIO,
                error_ratio: float = DEFAULT_ERROR_RATIO,
                cap: float | None = None) -> tuple[float, list[int]]:
    """``(factor, mults)``: class ``c`` of this attribute takes step
    ``preset_step * factor * mults[c]``, with ``mults`` integers in 2..MAX_MULT, and ``factor``
    such that the estimated error is ``error_ratio`` times that of the uniform step. With
    ``cap``, no class's step exceeds ``cap`` times the uniform step (the classes that would be
    coarser take the coarsest multiple within it; the error is then below the aim)."""
    w = np.asarray(sens, np.float64)
    total = np.bincount(cls, w, minlength=k)
    count = np.bincount(cls, minlength=k)
    mean = total / np.maximum(count, 1)
    top = float(mean.max()) if count.any() else 0.0
    if not top > 0:
        return (0.5 if cap is None else min(0.5, cap / 2)), [2] * k
    ratio = np.sqrt(top / np.maximum(mean, top / max_ratio**2))
    mults = np.clip(np.rint(2 * ratio), 2, min(MAX_MULT, 2 * max_ratio)).astype(np.int64)
    # estimated error: sum_c total_c (factor * mult_c)^2 = error_ratio * sum_i w_i
    factor = float(np.sqrt(error_ratio * total.sum()
                           / max(float((total * mults.astype(np.float64) ** 2).sum()), 1e-300)))
    if cap is not None:
        factor = min(factor, cap / 2)
        mults = np.minimum(mults, max(2, int(np.floor(cap / factor + 1e-9))))
    return factor, [int(m) for m in mults]
