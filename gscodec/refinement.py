"""The refinement policy: whether and how a decoded file is refined (the colour fit or
gradient steps, with or without the learned prior, on which device), the defaults that chose
it (side-information views, steps), the quantization cells refinement stays inside, and the
refinement of a decoded scene itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec.meta import get_dict
from .codec.quality import DEFAULT_QUALITY
from .formats.errors import ContainerError
from .formats.gsz import DEFAULT_LIMITS, Limits
from .gaussians import Gaussians
from .progress import Progress


def resolve_device(device: str) -> str:
    """``"cuda"`` or ``"cpu"`` for a refinement device option ("auto": CUDA when available)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def renders_pairs(device: str, backend: str) -> bool:
    """Whether refinement on ``device`` with ``backend`` renders with the PyTorch rasterizer,
    whose (pixel, Gaussian) pairs the budget counts, rather than gsplat (as refine_decoded
    chooses)."""
    if resolve_device(device) != "cuda":
        return True
    from .render import resolve_backend

    return resolve_backend(backend) != "gsplat"


def refinement_plan(has_side: bool, prior: str, extra_views: int,
                    side_meta: Any = None, colour: bool = False) -> tuple[bool, bool]:
    """Whether decode refines a file (with or without side information) and whether it uses the
    learned prior, for the ``prior`` and ``extra_views`` options of :func:`decode`: "auto" uses
    it when the side information carries the encoder's gains for the shipped weights
    (``side_meta``: the SIDE stream's metadata), unless the refinement would be the colour fit
    (``colour``: a CPU above :data:`CPU_ADAM_GAUSSIANS`, or asked for), which has no use for
    the prior's targets (they need gradient steps, minutes on a CPU for such a scene; "on"
    still uses them)."""
    use_prior = prior == "on" or (prior == "auto" and not colour
                                  and _gains_for_shipped_prior(side_meta))
    return has_side or (use_prior and extra_views > 0), use_prior


def _gains_for_shipped_prior(side_meta: Any) -> bool:
    """Whether SIDE metadata carries gains, not all 0, for the shipped restoration weights
    (which must be there). All-zero gains make the prior's targets part 1's: not worth running.
    A malformed entry gives False here; decoding the SIDE stream reports it."""
    if not isinstance(side_meta, dict) or "prior" not in side_meta:
        return False  # (before importing torch, which files without SIDE never need)
    from .restore.pretrained import WEIGHTS_FILE, WEIGHTS_SHA256
    from .sideinfo import PRIOR_ID_LENGTH, parse_prior

    try:
        p = parse_prior(side_meta)
    except ContainerError:
        return False
    return (p is not None and p["weights"] == WEIGHTS_SHA256[:PRIOR_ID_LENGTH]
            and any(g > 0 for g in p["gain"]) and WEIGHTS_FILE.is_file())


CPU_FULL_STEPS_GAUSSIANS = 300_000


METHODS = ("auto", "adam", "colour")


CPU_ADAM_GAUSSIANS = 150_000  # above, "auto" refines with the colour fit on a CPU
FOREIGN_CPU_STEPS = 100
"""Gradient steps a CPU gives a file whose base layer is an .spz file (GSZ.md 6.9) where none
are asked for, up to :data:`CPU_ADAM_GAUSSIANS` (above: the colour fit, as for any file).
Such bases are near-lossless (53-59 dB on the captures) and 30 steps leave most of their side
information unused: on the tuning split (plant, angel, massa; 8 evaluation views of seed 1 at
512 px; ``benchmarks/results/foreign-base-steps-tuning*.md``) 100 steps gain +0.54 / +1.71 /
+1.66 dB over the plain SPZ file against +0.44 / +0.71 / +0.78 with 30, in 124-136 s of decode
against 39-46 s (2 cores, two benchmarks side by side)."""


def refinement_method(method: str, device: str, steps: int | None, prior: bool,
                      n: int = 0) -> str:
    """How a file with side information is refined: ``"adam"`` (gradient steps,
    :mod:`gscodec.refine`) or ``"colour"`` (one linear colour solve, :mod:`gscodec.colourfit`).
    ``method`` "auto" (the default): gradient steps on a GPU, with the learned prior (whose
    targets are whole images, not residuals), where ``steps`` asks for them, and on the CPU for
    scenes of up to :data:`CPU_ADAM_GAUSSIANS` Gaussians (``n``); the colour fit on the CPU
    above. Measured on massa (tuning split, 58k Gaussians, 4 evaluation views of seed 1 at
    512 px, ``benchmarks/results/refine-methods-tuning.md``): at equal total bytes 30 Adam steps
    gain +0.53 / +0.60 / +0.54 / +0.05 dB at presets 1 / 3 / 5 / 7, the colour fit -0.91 /
    -0.50 / -0.27 / -0.02 (its side information costs more than it restores), so on a CPU the
    colour fit is the default only where gradient steps would take too long (1M Gaussians at
    SH 3 on 2 idle cores: the decode with 30 steps took 388 s, with the colour fit 35 s;
    ``benchmarks/results/default_path-before.md``, ``default_path.md``). ``device``: "cpu" or
    "cuda"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    if prior:
        return "adam"
    if method != "auto":
        return method
    if device == "cuda" or steps is not None:
        return "adam"
    return "adam" if n <= CPU_ADAM_GAUSSIANS else "colour"


DEFAULT_VIEWS = 8
VIEW_GAUSSIANS = 8_000_000  # side-information views x Gaussians the default allows


MIN_DEFAULT_VIEWS = 4


def default_views(g: Gaussians, quality: int = DEFAULT_QUALITY) -> int:
    """Side-information views the CLI asks for by default: 8, for every SH degree. Measured on
    the tuning split (4 evaluation views of seed 1, 512 px, gain at equal total bytes, with the
    refinement a default decoder runs): 8 views against 16 on cat-sh3 and plant-sh3 (SH 3,
    30 Adam steps) +0.87 / +1.02 / +0.85 / +0.71 against +0.64 / +0.99 / +0.88 / +0.65 dB and
    +0.53 / +0.95 / +0.92 / +0.81 against +0.03 / +0.79 / +0.85 / +0.67 at presets
    1 / 3 / 5 / 7, on playbot (SH 2, the colour fit of the DC and linear band) +0.18 / +0.19
    against +0.06 / +0.20 at presets 1 / 5 (``benchmarks/results/refine-default-views-*.md``):
    16 views' extra side information costs more than it restores, and 8 halve the renders.
    (Before the SH-rest learning rate fix, 16 views had won on playbot with older presets and
    views.) Each view costs the encoder two renders and the decoder one, so for scenes of
    more than :data:`VIEW_GAUSSIANS` / 8 Gaussians the count falls with the Gaussians (views x
    Gaussians at most :data:`VIEW_GAUSSIANS`, at least :data:`MIN_DEFAULT_VIEWS` views): 8
    views for 1M Gaussians. ``quality`` is not used yet.

    Side information is sent at every preset because, refined the way a default decoder
    refines it, it paid (or cost at most 0.03 dB) at equal total bytes at every preset measured
    on the tuning split (4 evaluation views of seed
    1, 512 px): with gradient steps (a GPU, or a CPU up to :data:`CPU_ADAM_GAUSSIANS`) +0.53 /
    +0.60 / +0.54 / +0.05 dB on massa and +0.54 / +0.35 / +0.18 / +0.04 on plant at presets
    1 / 3 / 5 / 7 (``benchmarks/results/refine-methods-tuning.md``,
    ``refine-methods-plant.md``); with the colour fit a CPU decoder uses above that size, +0.07
    / -0.03 / +0.20 / +0.10 dB on playbot (250k Gaussians, SH 2, DC and linear band,
    ``refine-methods-playbot-colour1.md``) and -0.01 / +0.28 / +0.31 / +0.03 on plant
    (``refine-methods-plant.md``). (The colour fit forced on a small scene, which no default
    decoder does, lost up to 0.91 dB on massa: ``refine-methods-tuning.md``.) The encoder does
    not know which decoder will read the file, so it does not switch side information off
    where only one of them would gain."""
    full = DEFAULT_VIEWS
    if g.n <= 0:
        return full
    return max(MIN_DEFAULT_VIEWS, min(full, VIEW_GAUSSIANS // g.n))


def default_steps(device: str, n: int = 0) -> int:
    """Gradient refinement steps when none are asked for: 300 on a GPU; on the CPU 30 for up to
    300,000 Gaussians, fewer (down to 10) for larger scenes so that the time stays bounded.
    Measured on massa (tuning split, 4 evaluation views of seed 1 at 512 px): 30 steps gain
    +0.53 / +0.60 / +0.54 / +0.05 dB at equal bytes at presets 1 / 3 / 5 / 7
    (``benchmarks/results/refine-methods-tuning.md``); at preset 7, 100 steps gain +0.52 dB
    (``refine-methods-massa-q7.md``; 448 s against 293 s for 30, both under load). A file
    whose base layer is an .spz file gets :data:`FOREIGN_CPU_STEPS` on a CPU instead."""
    if device == "cuda":
        return 300
    if n <= CPU_FULL_STEPS_GAUSSIANS:
        return 30
    return max(10, round(30 * CPU_FULL_STEPS_GAUSSIANS / n))


def side_info(payload: bytes, stream_meta: dict[str, Any], limits: Limits) -> Any:
    """The decoded ``SIDE`` stream, or None where it has no views."""
    from . import sideinfo

    si = sideinfo.decode(payload, get_dict(stream_meta, "SIDE", "streams."), limits)
    return si if si.cameras else None


def colour_changes_from_geometry(values: dict[str, np.ndarray], n: int, degree: int, si: Any,
                    stream_meta: dict[str, Any], classes: np.ndarray | None,
                    colour_bands: int | None, report: Progress,
                    cells: CellSource | None = None) -> Any:
    """The colour fit of :func:`decode` from the decoded geometry (``values`` of the means,
    rotations, scales and opacities) and the side information: the changes of the first SH
    coefficients (:func:`gscodec.colourfit.colour_changes`), bounded by their quantization
    cells, with the SH bands up to ``colour_bands`` (default 1 where the scene has higher
    bands, else 0)."""
    from .colourfit import colour_changes

    bands = (1 if degree else 0) if colour_bands is None else max(0, min(colour_bands, degree))
    geometry = Gaussians(values["means"], values["quats"], values["log_scales"],
                         values["opacity_logits"], np.zeros((n, 1, 3), np.float32))
    source = cells or CellSource.single(n, stream_meta, classes)
    return colour_changes(geometry, si.cameras, si.residuals, bands=bands,
                          max_change=source.halves(degree),
                          progress=lambda i, total: report(i, total, "fitting colours"))


def refine_decoded(g: Gaussians, payload: bytes | None, stream_meta: dict[str, Any],
                    steps: int | None, device: str, backend: str, report: Progress,
                    limits: Limits = DEFAULT_LIMITS, *, prior: bool = False,
                    extra_views: int = 0, quality: int = 0,
                    classes: np.ndarray | None = None, method: str = "auto",
                    cells: CellSource | None = None, foreign: bool = False) -> Gaussians:
    """The refinement of :func:`decode`. With ``prior`` (``--prior on``, or ``auto`` on a file
    with non-zero gains) the network's correction is scaled by the gains the file carries for
    the shipped weights, as is the pixel-level loss (so a file whose gains are 0 refines as part
    1 does, but for extra views, whose targets are then the decoded renders); only files without
    gains for these weights get the network's own calibrated gains and a pixel-level weight of
    1."""

    from . import sideinfo
    from .refine import RefineConfig, refine
    from .render import resolve_backend

    si = side_info(payload, stream_meta, limits) if payload is not None else None
    if si is None and extra_views <= 0:
        return g
    device = resolve_device(device)
    backend = resolve_backend(backend) if device == "cuda" else "cpu"
    # (the colour fit runs inside decode, before the colours are decoded)
    assert refinement_method(method, device, steps, prior, g.n) != "colour" or si is None
    n_steps = steps if steps is not None else FOREIGN_CPU_STEPS if foreign and device == "cpu" \
        else default_steps(device, g.n)
    if n_steps <= 0:
        return g
    pool = si.scale if si is not None else 1
    pixel_weight = 0.0
    if prior:
        from .restore import file_gains, restore_targets, shipped_model

        report(0, n_steps, "restoring renders with the learned prior")
        cams, targets = restore_targets(g, si, quality, extra_views, backend=backend,
                                        device=device)
        # the restorations' detail inside the residual's blocks is worth matching, as much as
        # the encoder found the network's correction worth for this scene (cat, preset 1, gain
        # 1: +0.45 dB on the evaluation views over block averages alone; plant, preset 1, with
        # a network whose gain there was 0.06: pixels alone lost 0.3 dB against block averages)
        gains = file_gains(si, shipped_model(device))
        pixel_weight = gains[1] if gains is not None else 1.0
    else:
        assert si is not None
        cams, targets = si.cameras, sideinfo.targets(g, si, backend=backend, device=device)
    config = RefineConfig(steps=n_steps, pool=pool, pixel_weight=pixel_weight)
    result = refine(g, cams, targets, config, backend=backend,
                    device=device,
                    cells=(cells or CellSource.single(g.n, stream_meta, classes)).bounds(g),
                    progress=lambda i, total, loss: report(i, total, f"refining, loss {loss:.4f}"))
    return result.gaussians


def quantization_halves(sh_degree: int, stream_meta: dict[str, Any],
                        classes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The half-widths (float32) of the colours' quantization cells of decoded Gaussians, as
    their codecs give them (:meth:`AttributeCodec.half`): ``sh_dc`` broadcastable to
    ``[n, 1, 3]`` and, for SH scenes, ``sh_rest`` to ``[n, K, 3]``; the leading axis is n only
    where the importance classes give rows different steps (else 1: no memory per Gaussian)."""
    from .codec.attributes import REGISTRY

    return {name: codec.half(stream_meta[codec.kind], classes).astype(np.float32)
            for name, codec in REGISTRY.items() if codec.colour and codec.present(sh_degree)}


def quantization_cells(g: Gaussians, stream_meta: dict[str, Any],
                       classes: np.ndarray | None = None,
                       groups: tuple[str, ...] | None = None) -> dict[str, Any]:
    """For each parameter group of decoded Gaussians, the (low, high) bounds of the quantization
    cell each value came from (torch tensors), as its codec gives them
    (:meth:`AttributeCodec.cell`): refinement may move values within them only. ``classes``
    (the decoded importance classes) widens the cells of streams with per-class steps by each
    row's multiplier. ``groups``: only these (default: all; each costs two copies of its
    values)."""
    import torch

    from .codec.attributes import REGISTRY

    cells = {}
    for name, codec in REGISTRY.items():
        if (groups is None or name in groups) and codec.present(g.sh_degree):
            values = codec.decoded_view(getattr(g, codec.field))
            lo, hi = codec.cell(values, stream_meta[codec.kind], classes)
            cells[name] = (torch.from_numpy(lo), torch.from_numpy(hi))
    return cells


@dataclass(frozen=True)
class CellSource:
    """Where the quantization cells of decoded Gaussians come from: runs of rows, each with the
    stream metadata and importance classes of the file it was decoded from (one run for a plain
    file; one per part, in order, for a chunked file, whose parts have steps of their own)."""

    runs: tuple[tuple[int, dict[str, Any], np.ndarray | None], ...]

    @classmethod
    def single(cls, n: int, stream_meta: dict[str, Any],
               classes: np.ndarray | None = None) -> CellSource:
        return cls(((n, stream_meta, classes),))

    def halves(self, sh_degree: int) -> dict[str, np.ndarray]:
        """:func:`quantization_halves` of every run, row by row where runs differ."""
        per = [quantization_halves(sh_degree, m, c) for _, m, c in self.runs]
        if len(per) == 1 or all(h[k].shape[0] == 1 and np.array_equal(h[k], per[0][k])
                                for h in per for k in h):
            return per[0]  # (the parts' steps agree: no row of its own for each Gaussian)
        return {k: np.concatenate([np.broadcast_to(h[k], (count, *h[k].shape[1:]))
                                   for (count, _, _), h in zip(self.runs, per, strict=True)])
                for k in per[0]}

    def bounds(self, g: Gaussians, groups: tuple[str, ...] | None = None) -> dict[str, Any]:
        """:func:`quantization_cells` of every run, concatenated."""
        if len(self.runs) == 1:
            _, meta, classes = self.runs[0]
            return quantization_cells(g, meta, classes, groups)
        import torch

        parts, start = [], 0
        for count, meta, classes in self.runs:
            parts.append(quantization_cells(g.take(slice(start, start + count)), meta, classes,
                                            groups))
            start += count
        return {k: (torch.cat([p[k][0] for p in parts]), torch.cat([p[k][1] for p in parts]))
                for k in parts[0]}
