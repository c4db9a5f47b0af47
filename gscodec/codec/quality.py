"""Quality presets: ``--quality 1..10`` -> quantizer steps for every attribute.

Higher presets use finer steps for every attribute (never coarser), so fidelity and size grow
with the preset. The table is documented in ``formats/GSZ.md`` (section "Quality presets").

Units:
    position_bits: the position step is ``robust_diagonal * 2**-position_bits``, where the robust
        diagonal is that of the box between the 0.5th and 99.5th percentiles of each coordinate
        (so a few far-away floaters do not coarsen the grid);
    log_scale_step: step of the natural-log scales;
    rotation_step: step of the three smallest quaternion components (unit quaternion);
    opacity_levels: alpha = sigmoid(logit) is quantized to k / opacity_levels;
    dc_step: step of the DC colour 0.5 + SH_C0 * f_dc, in units of 1/255;
    sh_rest_steps: steps of the SH coefficients of bands 1, 2 and 3;
    canonical: send each Gaussian's rotation and scales in the canonical form of
        :mod:`.canonical` (same covariance, fewer bits, different attribute values);
    position_step: where set, the position step itself (instead of the one ``position_bits``
        gives): the parts of a chunked file (GSZ.md 11) share the whole scene's step.
    prune: the largest fraction of the Gaussians the encoder drops before coding, those whose
        removal changes the renders at its views least (:func:`gscodec.importance.removal_costs`),
        as long as what they add to the error stays within a share of the base layer's
        (``gscodec.encoder._pruned_base``).
    faithful_classes: at a preset without the canonical form, the attributes of
        :data:`.adaptive.FAITHFUL` (the higher SH bands) take per-class steps none of which is
        coarser than the preset's own (:func:`.adaptive.class_steps` with ``cap``): the
        important Gaussians finer, no attribute outside the preset's bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class QualityParams:
    position_bits: float
    log_scale_step: float
    rotation_step: float
    opacity_levels: int
    dc_step: float
    sh_rest_steps: tuple[float, float, float]
    canonical: bool = False
    position_step: float | None = None
    prune: float = 0.0
    faithful_classes: bool = False

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["sh_rest_steps"] = list(self.sh_rest_steps)
        if self.position_step is None:  # (the files of a whole scene record the bits only)
            del d["position_step"]
        if self.prune == 0:  # (the files of presets that prune nothing stay as they were)
            del d["prune"]
        if not self.faithful_classes:  # (nor those of the presets without them)
            del d["faithful_classes"]
        return d


#            pos bits  log-scale   rotation  opacity  dc(/255)  sh rest (band 1, 2, 3)
_TABLE = {
    1: QualityParams(10.75, 1 / 5, 0.03, 85, 6.5, (0.30, 0.40, 0.50), True, prune=0.5),
    2: QualityParams(11.5, 1 / 6.5, 0.025, 85, 5.3, (0.20, 0.26, 0.32), True),
    3: QualityParams(12.25, 1 / 8, 0.022, 85, 5.3, (0.13, 0.17, 0.21), True),
    4: QualityParams(12.75, 1 / 10.5, 0.018, 255, 4.3, (0.10, 0.13, 0.16), True),
    5: QualityParams(13.25, 1 / 13, 0.016, 255, 2.6, (0.08, 0.10, 0.13), True),
    6: QualityParams(13.25, 1 / 16.5, 0.00135, 255, 1.7, (0.08, 0.10, 0.13), faithful_classes=True),
    7: QualityParams(13.75, 1 / 18, 0.0012, 255, 1.45, (0.07, 0.09, 0.12), faithful_classes=True),
    8: QualityParams(15.0, 1 / 24, 0.0009, 255, 1.0, (0.06, 0.08, 0.10), faithful_classes=True),
    9: QualityParams(16.0, 1 / 32, 0.0006, 510, 0.5, (0.035, 0.045, 0.055), faithful_classes=True),
    10: QualityParams(18.0, 1 / 64, 0.0003, 1020, 0.25, (0.015, 0.02, 0.025),
                      faithful_classes=True),
}
"""Preset -> steps. Presets 1-5 spend bits where renders need them. They were re-balanced on
2026-11-27 from per-attribute rate/distortion sweeps on plant (SH 0) and playbot (SH 2) at 256 px
renders (each attribute's stream bytes against the render error it alone causes; steps picked
where the cost of a dB is about equal across attributes): positions and SH bands need finer steps
than before, rotations, log-scales and opacity coarser ones. Rotations, log-scales and opacity
were kept no coarser than 0.03, 1/5 and 85 levels although the 256 px sweeps allowed more: at
768 px the same coarse rotations cost 7 dB more (measured on playbot), so the tables do not bet
on small renders. Presets 6-10 keep every attribute within the errors of 8-bit formats such as
SPZ (6 for scenes about 1 unit across, 7 for larger ones), then finer; no step grows from one
preset to the next. Non-integer colour steps avoid aliasing with 8-bit source colours; opacity
levels are 85 (a divisor of 255) or multiples of 255, so 8-bit alphas stay on the grid.
Provenance: tuning split (benchmarks/README.md), plant and playbot, at the view construction
before 2026-12-01; results: benchmarks/results/sweep-plant.md, sweep-playbot.md, rd.md.

Re-checked on 2026-12-01 at the new views (tuning split, 6 evaluation views of seed 1 at 512
px): the per-attribute sweeps (``sweep-plant-512.md``, ``sweep-plant-sh3-512.md``) and their
allocation (the steps of equal marginal cost at each preset's predicted error), measured as
whole tables (``presets-tuning.md``): plant's allocation differs from these steps by at most one
grid step and codes within noise of them (-0.4% bytes at equal PSNR on plant, +0.8% on
plant-sh3), so presets 1-5 stay. plant-sh3's allocation (coarser positions and rotations, SH
steps of 0.03-0.12) saves 7.5% on plant-sh3 but costs 4.3% on plant (its positions lose 2.9 dB
at preset 3 there); its lesson is the SH steps: every step above about 0.05 sends the SH
rest of a full-precision scene to zero (``sweep-plant-sh3-512.md``), which caps presets 1-8 on
the distilled scenes. That is left to the rate-distortion issue (SH coding for trained data),
which must check it on an SH scene of 8-bit origin (playbot) too.

Preset 1 prunes up to half the Gaussians, those whose removal costs least, while what they add
to the error stays within a quarter of the base layer's (``gscodec.encoder._pruned_base``,
``PRUNE_ERROR_RATIO``); the others prune nothing. Chosen on the tuning split (4 evaluation
views of seed 1 at 512 px, after the default CPU refinement, against preset 1 unpruned): at a
budget of half the base layer's error massa dropped 37% of its Gaussians (0.68x the bytes) and
gained 0.28 dB, angel 33% (0.69x) for -1.03 dB, plant 4% (0.97x) for -0.58 dB
(``benchmarks/results/prune-budget-tuning-0.5.md``); at a quarter angel 25% (0.77x) for
-0.33 dB and plant the same 4% (``prune-budget-tuning-0.25.md``). Dropping a fixed 30%
instead cost plant 8.7 dB (``prune-tuning.md``): its Gaussians matter at 512 px in a way the
256 px views of the removal costs miss, which the check views at 512 px see.

Presets 6-10 give the higher SH bands per-class steps none coarser than the table's
(``faithful_classes``, :data:`.adaptive.FAITHFUL`, aiming at :data:`.adaptive.FAITHFUL_ERROR_RATIO`
0.1), since 2026-12-03: with the uniform band steps, which send the SH rest of full-precision
scenes to zero, presets 6-8 had lower PSNR than preset 5 (whose classes keep the important
Gaussians' view dependence). Tuning split, 6 evaluation views of seed 1 at 512 px, presets
5-10 (``benchmarks/results/presets-faithful-tuning-fruit.md``, ``-b.md``, ``-playbot-sh3.md``,
``-playbot.md``; ``python3 benchmarks/presets.py SCENES --candidates FILE --qualities 5-10``
with the candidates recorded there): fruit preset 6 from 39.56 to 46.09 dB (+6.7% bytes),
plant-sh3 from 49.63 to 53.77 dB (+11.5%), playbot-sh3 from 46.42 to 53.08 dB (+18%), playbot
(SOG, SH 2, chunked: measured while chunked files had them by default, now as with
``importance=True``) from 48.16 to 52.04 dB (+15%); BD-rate against the uniform steps' curve -21.8%
(fruit), +4.6% (plant-sh3), -2.8% (playbot-sh3), +2.7% (playbot). Aims of 0.25 / 0.05: -11.2 /
-25.0%, +11.1 / +0.2%, +3.6 / (not run), +1.8 / +3.1%; 0.25 left playbot-sh3's preset 7 below
its preset 6, 0.05 widens the byte step from preset 5 to 6 further (plant-sh3 +31%). Finer
uniform SH steps instead (about half) cost +19.1% on fruit. Scenes of SH 0 or under
:data:`.adaptive.MIN_GAUSSIANS` Gaussians are coded as before.

Since the evening of 2026-12-03 these classes come from the SH rest's sensitivity alone, in
closed form (:func:`gscodec.importance.sh_sensitivities`: a forward render a view, in bounded
memory, so chunked files get them too), where they came from every attribute's gradient
estimate. The same tuning runs with it (``benchmarks/results/presets-exact-tuning.md``,
``presets-exact-tuning-playbot.md``; the command above with
``presets-exact-candidates.json``, and an empty candidates file for playbot): BD-rate against
the gradient estimate's curve +0.2% (fruit), -0.5% (plant-sh3), -0.1% (playbot-sh3), -1.9%
(playbot, chunked), and against the uniform steps' +0.7% on playbot (was +2.7%); aims of 0.05
/ 0.2 against 0.1: -3.8 / +6.3% (fruit), -1.5 / +3.0% (plant-sh3), -5.2 / +1.9% (playbot-sh3),
the same ordering as before, so 0.1 stays (for the byte step from preset 5 to 6).

At presets 1-5 the encoder by default replaces the uniform log-scale, rotation and DC colour
steps by steps per importance class (:mod:`.adaptive`), aiming at about the render fidelity of
the uniform steps listed here with fewer bytes.
Since 2026-12-04 their colours' sensitivities come from the same closed form and the
gradient estimate serves the scales and rotations only (about 39 s against 64.5 s at 1M SH-3,
``benchmarks/results/importance-cost-1m-geometry.md``); on the tuning split the presets code
as before (BD-rate +0.10% plant-sh3, +0.12% playbot-sh3, -0.15% fruit,
``presets-geometry-tuning.md`` against ``presets-geometry-tuning-before.md``)."""

MIN_QUALITY = 1
MAX_QUALITY = 10
DEFAULT_QUALITY = 7


def preset(quality: int) -> QualityParams:
    """The steps of preset ``quality`` (1..10)."""
    if quality not in _TABLE:
        raise ValueError(f"quality must be an integer in {MIN_QUALITY}..{MAX_QUALITY}")
    return _TABLE[quality]


def between(q: float) -> QualityParams:
    """The ladder as a continuous parameter ``q`` in 1..10 (for rate control): preset ``q``
    itself where ``q`` is an integer; between presets ``k = floor(q)`` and ``k + 1``, each
    step geometrically between theirs (``step_k ** (1 - t) * step_k+1 ** t``, ``t = q - k``),
    the position bits and pruned fraction linearly, and preset ``k``'s opacity levels,
    form (canonical or not) and classes, so that no step grows with ``q``."""
    if not MIN_QUALITY <= q <= MAX_QUALITY:
        raise ValueError(f"quality must be in {MIN_QUALITY}..{MAX_QUALITY}")
    k = int(np.floor(q))
    t = q - k
    if t == 0:
        return _TABLE[k]
    a, b = _TABLE[k], _TABLE[k + 1]

    def geo(x: float, y: float) -> float:
        return float(x ** (1 - t) * y**t)

    return QualityParams(
        position_bits=a.position_bits + t * (b.position_bits - a.position_bits),
        log_scale_step=geo(a.log_scale_step, b.log_scale_step),
        rotation_step=geo(a.rotation_step, b.rotation_step),
        opacity_levels=a.opacity_levels,
        dc_step=geo(a.dc_step, b.dc_step),
        sh_rest_steps=(geo(a.sh_rest_steps[0], b.sh_rest_steps[0]),
                       geo(a.sh_rest_steps[1], b.sh_rest_steps[1]),
                       geo(a.sh_rest_steps[2], b.sh_rest_steps[2])),
        canonical=a.canonical, prune=a.prune + t * (b.prune - a.prune),
        faithful_classes=a.faithful_classes)


def robust_diagonal(means: np.ndarray) -> float:
    """Diagonal of the box between the 0.5th and 99.5th percentile of each coordinate; falls back
    to the full box, then to 1, for degenerate inputs."""
    if means.shape[0] == 0:
        return 1.0
    lo = np.quantile(means, 0.005, axis=0)
    hi = np.quantile(means, 0.995, axis=0)
    d = float(np.linalg.norm(hi - lo))
    if not d > 0:
        d = float(np.linalg.norm(means.max(axis=0) - means.min(axis=0)))
    return d if d > 0 else 1.0
