"""The encoder pipeline: the Gaussians validated, put in Morton order, their importance
measured (presets 1-5), every attribute coded by its codec (REGISTRY order), the metadata, then
the side information (renders of the original and of the decoded base layer at the encoder's
views, and the learned prior's gains) and the check that a default decoder accepts the file."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from . import memory
from ._version import __version__
from .cameras import Camera, encoder_views, fitted, spread
from .codec import adaptive
from .codec.attributes import REGISTRY, RowView, morton_order
from .codec.quality import DEFAULT_QUALITY, QualityParams, preset
from .decoder import decode, decode_refusal
from .formats.errors import GscodecError, LimitWarning
from .formats.gsz import CODEC_ZSTD_JSON, DEFAULT_LIMITS, Stream, encode_meta, write_container
from .gaussians import Gaussians
from .progress import Progress, noop
from .scene import read_ply
from .streams import CODEC_CHANNELS_V1, FORMAT_NAME, IMPORTANCE

# the encoder decodes its own base layer (for the side information) whatever its size: it holds
# the scene already; its file is then checked against the decoder's DEFAULT_LIMITS
ENCODER_LIMITS = replace(DEFAULT_LIMITS, max_gaussians=1 << 62, max_memory=1 << 62)


MAX_COORDINATE = 1e32
"""Largest position coordinate the encoder accepts: a span of 2e32 over the coarsest grid (2^11
cells a side) keeps the POSN step under the 1e30 that GSZ.md 6.1 allows a decoder to accept."""


class InputError(GscodecError):
    """Gaussians handed to the API are not valid (non-finite values, zero quaternions)."""


def _validated_arrays(g: Gaussians) -> dict[str, np.ndarray]:
    arrays = g.as_arrays()
    for name, value in arrays.items():
        if not np.isfinite(value).all():
            raise InputError(f"Gaussians.{name} has non-finite values")
    far = float(np.abs(arrays["means"]).max(initial=0.0))
    if far > MAX_COORDINATE:
        raise InputError(f"a Gaussian's position has a coordinate of {far:.3g}: gscodec codes "
                         f"positions up to {MAX_COORDINATE:.0e} in magnitude (GSZ.md 6.1 bounds "
                         "the position grid step)")
    norms = np.einsum("ij,ij->i", arrays["quats"], arrays["quats"])
    if (norms <= 1e-24).any():
        raise InputError(f"{int((norms <= 1e-24).sum())} Gaussians have a zero-length quaternion")
    return arrays


def encode_with_order(
    gaussians: Gaussians,
    quality: int = DEFAULT_QUALITY,
    *,
    progress: Progress | None = None,
    params: QualityParams | None = None,
    views: int = 0,
    sideinfo_scale: int = 4,
    sideinfo_step: float = 1.0 / 255,
    sideinfo_size: int = 256,
    backend: str = "auto",
    importance: bool | None = None,
    prior_gains: bool | None = None,
    cameras: list[Camera] | None = None,
) -> tuple[bytes, np.ndarray]:
    """Encode and also return the storage order: decoded Gaussian i is input Gaussian
    ``order[i]`` (gscodec stores Gaussians in Morton order). ``params`` overrides the preset's
    quantizer steps (for experiments; ``quality`` is then only recorded).

    With ``views > 0`` the file also carries side information (:mod:`gscodec.sideinfo`): the
    coarse residuals between renders of the original and of the decoded base layer at that many
    encoder views of ``sideinfo_size`` pixels, averaged over ``sideinfo_scale`` blocks and
    quantized with ``sideinfo_step`` (image units); no stream when every residual quantizes to
    zero (nothing to refine towards).

    ``importance`` (default: on for the presets that send the canonical form, 1-5, when the
    scene has at least :data:`codec.adaptive.MIN_GAUSSIANS` Gaussians) measures how much each
    Gaussian matters to renders at the encoder views (:mod:`gscodec.importance`) and gives the
    less important ones coarser steps at the same estimated fidelity (:mod:`codec.adaptive`).

    ``cameras`` (training cameras, :func:`gscodec.cameras.read_cameras`): the side information
    and the importance estimate use ``views`` (and 16) of them spread over the set
    (:func:`training_views`) instead of synthesized encoder views, so that a walk-through scene
    is measured where it was captured; the SIDE stream stores them as it stores any view.

    ``prior_gains`` (default: on with side information, for the presets the shipped learned
    prior was trained for) stores in the side information how much of the prior's correction
    restores this scene's renders at the side-information views
    (:func:`gscodec.restore.fit_gains`), so that a decoder using the prior applies it only where
    it helps this scene.

    A file that a decoder with the default limits would refuse is still returned, with a
    :class:`~gscodec.LimitWarning` (:func:`_warn_if_refused`)."""
    report = progress or noop
    params = preset(quality) if params is None else params
    arrays = _validated_arrays(gaussians)
    n, degree = gaussians.n, gaussians.sh_degree
    total = len(_codecs(degree)) + 1
    report(0, total, "ordering")
    order = morton_order(arrays["means"], params)
    streams, stream_meta = _base_layer(arrays, order, params, degree, importance, backend,
                                       cameras, report)
    meta = {"format": FORMAT_NAME, "n": n, "sh_degree": degree, "quality": quality,
            "params": params.as_dict(), "order": "morton", "encoder": f"gscodec {__version__}",
            "streams": stream_meta}
    if views > 0:
        report(total, total + 1, "side information")
        from . import sideinfo

        cams = (sideinfo.cameras(arrays["means"], views, sideinfo_size, sideinfo_scale)
                if cameras is None else
                training_views(cameras, views, sideinfo_size, sideinfo_scale))
        # the original's renders first (the render does not depend on the storage order); then
        # this function holds no reference to the input, so that a caller that passed the only
        # one (the CLI does) does not hold two scenes while the decoded one is rendered
        memory.release()
        originals = sideinfo.render_views(Gaussians.from_arrays(arrays), cams, backend)
        del gaussians, arrays
        memory.release()
        side = _side_stream(_container(meta, streams), originals, cams, quality,
                            scale=sideinfo_scale, step=sideinfo_step, backend=backend,
                            prior_gains=prior_gains)
        del originals
        if side is not None:
            stream_meta[sideinfo.KIND] = side[1]
            streams.append(side[0])
    data = _container(meta, streams)
    _warn_if_refused(data)
    report(total, total, "done")
    return data, order


def _codecs(degree: int) -> list[tuple[str, Any]]:
    """The attribute codecs a scene of SH ``degree`` is coded with, in REGISTRY order."""
    return [(name, c) for name, c in REGISTRY.items() if c.present(degree)]


def _container(meta: dict[str, Any], streams: list[Stream]) -> bytes:
    return write_container([Stream("META", CODEC_ZSTD_JSON, True, encode_meta(meta))] + streams)


def _base_layer(arrays: dict[str, np.ndarray], order: np.ndarray, params: QualityParams,
                degree: int, importance: bool | None, backend: str,
                cameras: list[Camera] | None, report: Progress
                ) -> tuple[list[Stream], dict[str, Any]]:
    """The attribute streams (and the importance classes' stream) and their metadata. Each
    codec in REGISTRY order, except one that another codes together with its own attribute
    (``coded_with``): that pair is coded in every form the codecs offer (``alternatives``) and
    the cheaper kept."""
    n = arrays["means"].shape[0]
    codecs = _codecs(degree)
    total = len(codecs) + 1
    shapes = [arrays] + [alt for _, c in codecs for alt in c.alternatives(arrays, params)]
    if importance is None:
        importance = params.canonical and n >= adaptive.MIN_GAUSSIANS
    classes, adapts = None, {}
    if importance and n > 0:
        report(0, total, "measuring importance")
        classes, adapts = _importance(shapes[-1], order, backend, cameras)
    features: dict[str, np.ndarray] = {}
    streams: list[Stream] = []
    stream_meta: dict[str, Any] = {}
    for i, (name, codec) in enumerate(codecs):
        report(i + 1, total, f"coding {name}")
        if codec.coded_with is not None:
            continue  # coded together with its partner's attribute
        partners = [c for _, c in codecs if c.coded_with == name]
        if partners:
            pair = _cheapest_form(codec, partners, shapes, order, params, features, adapts)
        else:
            source = codec.source(arrays)
            # (rows gathered block by block inside the codec where it says so, not copied)
            values = RowView(source, order) if codec.lazy_rows else source[order]
            if name in adapts:
                pair = [(codec, codec.encode(values, params, features, adapts[name]))]
            else:
                pair = [(codec, codec.encode(values, params, features))]
        if name == IMPORTANCE.after and classes is not None:
            pair.append((IMPORTANCE, IMPORTANCE.encode(classes, adaptive.DEFAULT_CLASSES,
                                                       {**features, **pair[0][1].features})))
        for c, out in pair:
            features.update(out.features)
            streams.append(Stream(c.kind, CODEC_CHANNELS_V1, True, out.payload))
            stream_meta[c.kind] = out.meta
    return streams, stream_meta


def _cheapest_form(codec: Any, partners: list[Any], shapes: list[dict[str, np.ndarray]],
                   order: np.ndarray, params: QualityParams, features: dict[str, np.ndarray],
                   adapts: dict[str, Any]) -> list[tuple[Any, Any]]:
    """``codec``'s stream and those of the codecs coded with it, in the form of ``shapes``
    that costs the fewest bytes (each partner sees the features of the streams before it)."""
    best = None
    for shape in shapes:
        outs, seen = [], dict(features)
        for c in (codec, *partners):
            out = c.encode(c.source(shape)[order], params, seen, adapts.get(c.name))
            seen = {**seen, **out.features}
            outs.append((c, out))
        size = sum(len(out.payload) for _, out in outs)
        if best is None or size < best[0]:
            best = (size, outs)
    assert best is not None
    return best[1]


def _side_stream(base_file: bytes, originals: list[Any], cams: list[Camera], quality: int, *,
                 scale: int, step: float, backend: str, prior_gains: bool | None
                 ) -> tuple[Stream, dict[str, Any]] | None:
    """The SIDE stream and its metadata from the original's renders at ``cams`` and the base
    layer in ``base_file``; None where every residual quantizes to zero (nothing to refine
    towards)."""
    from . import sideinfo

    base = decode(base_file, refine=False, limits=ENCODER_LIMITS)
    # the gains are fitted on the renders the residuals come from: kept only for them
    renders: list[Any] | None = [] if prior_gains is not False else None
    si = sideinfo.from_renders(originals, base, cams, scale=scale, step=step, backend=backend,
                               renders=renders)
    if not any(r.any() for r in si.residuals):
        return None
    if prior_gains is not False:
        si.prior = _prior_gains(base, si, quality, backend, prior_gains is None, renders)
    payload, side_meta = sideinfo.encode(si)
    return Stream(sideinfo.KIND, sideinfo.CODEC, False, payload), side_meta


def _warn_if_refused(data: bytes) -> None:
    """The file checked against the decoder's default limits (:func:`decode_refusal`): where a
    decoder with them would refuse it (a scene beyond the default memory budget, GSZ.md 4.1),
    a LimitWarning names the limit and how to raise it. The file is still written (it decodes
    with larger limits): the budget is the decoding machine's business, not the file's."""
    refusal = decode_refusal(data)
    if refusal is not None:
        hint = "" if "--max-memory" in refusal else (
            "; decode it with larger limits (gscodec decode --max-gaussians N, "
            "gscodec.decode(..., limits=Limits(...))) or without refinement (--no-refine)")
        warnings.warn(LimitWarning(
            f"a decoder with the default limits refuses this file: {refusal}{hint}"),
            stacklevel=3)


IMPORTANCE_VIEWS = 16


IMPORTANCE_SIZE = 128


IMPORTANCE_PROBES = 1


def _prior_gains(base: Gaussians, si: Any, quality: int, backend: str,
                 optional: bool, renders: list[Any]) -> dict[str, Any] | None:
    """The SIDE ``prior`` entry for the shipped weights, fitted on ``renders`` (the original's
    and the base layer's at the side-information views); where the weights cannot be loaded,
    None if ``optional`` (the default encoder setting), else the WeightsError."""
    from .restore import fit_gains
    from .restore.pretrained import WeightsError

    try:
        return fit_gains(None, base, si, quality, backend=backend, renders=renders)
    except WeightsError:
        if optional:
            return None
        raise


def training_views(cameras: list[Camera], count: int, size: int, multiple: int = 1
                   ) -> list[Camera]:
    """The ``count`` training cameras the encoder uses (:func:`gscodec.cameras.spread`: spread
    over the set, deterministic), at longest side ``size`` and dimensions that are multiples of
    ``multiple`` (:func:`gscodec.cameras.fitted`)."""
    return [fitted(cameras[i], size, multiple) for i in spread(cameras, count)]


def _importance(arrays: dict[str, np.ndarray], order: np.ndarray, backend: str,
                cameras: list[Camera] | None = None
                ) -> tuple[np.ndarray, dict[str, tuple[float, list[int]]]]:
    """Importance class of each Gaussian (storage order) and the per-class steps of each
    attribute that uses them, measured at synthesized encoder views or at ``cameras``."""
    from .importance import sensitivities

    g = Gaussians.from_arrays({k: v[order] for k, v in arrays.items()})
    cams = (encoder_views(arrays["means"], IMPORTANCE_VIEWS, IMPORTANCE_SIZE) if cameras is None
            else training_views(cameras, IMPORTANCE_VIEWS, IMPORTANCE_SIZE))
    sens = sensitivities(g, cams, probes=IMPORTANCE_PROBES, backend=backend)
    k = adaptive.DEFAULT_CLASSES
    classes = adaptive.classes(sens)
    return classes, {name: adaptive.class_steps(sens[name], classes, k)
                     for name in adaptive.ADAPTED if name in sens}


def encode(
    gaussians_or_path: Gaussians | str | os.PathLike[str],
    quality: int = DEFAULT_QUALITY,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> bytes:
    """Compress Gaussians (or the PLY at a path) into .gsz bytes at preset ``quality`` (1..10).

    The decoded Gaussians come back in Morton order of their quantized positions, not in input
    order (:func:`encode_with_order` returns the permutation)."""
    if isinstance(gaussians_or_path, Gaussians):
        g = gaussians_or_path
    else:
        g = read_ply(gaussians_or_path)
    return encode_with_order(g, quality, progress=progress, **options)[0]
