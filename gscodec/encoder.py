"""The encoder pipeline: the Gaussians validated, put in Morton order, their importance
measured (presets 1-5), every attribute coded by its codec (REGISTRY order), the metadata, then
the side information (renders of the original and of the decoded base layer at the encoder's
views, and the learned prior's gains) and the check that a default decoder accepts the file."""

from __future__ import annotations

import itertools
import os
import warnings
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from . import chunks, foreign, memory, parallel
from ._version import __version__
from .cameras import Camera, encoder_views, fitted, spread
from .codec import adaptive
from .codec.attributes import REGISTRY, PositionGrid, RowView, morton_order, position_grid
from .codec.channels import PlanMemo, reusing_plans
from .codec.quality import DEFAULT_QUALITY, QualityParams, preset
from .decoder import decode, decode_refusal
from .formats import spz as spz_module
from .formats.chunks import (
    CODEC_PARTS_V1,
    CODEC_TABLE_V1,
    FLAG_CHUNKED,
    PARTS_KIND,
    TABLE_KIND,
    VERSION_MINOR_CHUNKED,
    Chunk,
    Part,
    pack_table,
)
from .formats.errors import GscodecError, LimitWarning
from .formats.gsz import (
    CODEC_ZSTD_JSON,
    DEFAULT_LIMITS,
    Stream,
    decode_meta,
    encode_meta,
    read_container,
    write_container,
)
from .gaussians import Gaussians
from .parallel import pmap
from .progress import Progress, noop
from .scene import read_ply
from .streams import CODEC_CHANNELS_V1, FORMAT_NAME, IMPORTANCE, VERSION_MINOR_TRANSFORM

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
    gaussians: Gaussians | list[Gaussians],
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
    chunk_size: int = chunks.DEFAULT_CHUNK_SIZE,
    jobs: int | None | parallel.RayCluster = None,
    base: str | bytes | None = None,
    prune: float | None = None,
) -> tuple[bytes, np.ndarray | None]:
    """Encode and also return the storage order: decoded Gaussian i is input Gaussian
    ``order[i]`` (gscodec stores Gaussians in Morton order). ``params`` overrides the preset's
    quantizer steps (for experiments; ``quality`` is then only recorded).

    With ``views > 0`` the file also carries side information (:mod:`gscodec.sideinfo`): the
    coarse residuals between renders of the original and of the decoded base layer at that many
    encoder views of ``sideinfo_size`` pixels, averaged over ``sideinfo_scale`` blocks and
    quantized with ``sideinfo_step`` (image units); no stream when every residual quantizes to
    zero (nothing to refine towards).

    ``importance`` (default: :func:`_with_classes`) measures how much each Gaussian matters to
    renders at the encoder views and gives the less important ones coarser steps at the same
    estimated fidelity (:func:`codec.adaptive.adapted`: without the canonical form, SH only).

    ``cameras`` (training cameras, :func:`gscodec.cameras.read_cameras`): the side information
    and the importance estimate use ``views`` (and 16) of them (:func:`training_views`) instead
    of synthesized views, so that a walk-through scene is measured where it was captured.

    ``prior_gains`` (default: on with side information at the presets the shipped learned prior
    serves) stores how much of its correction restores this scene's renders at the
    side-information views (:func:`gscodec.restore.fit_gains`): a decoder applies only that.

    Above ``chunk_size`` Gaussians the file is chunked (GSZ.md 11, :mod:`gscodec.chunks`),
    its parts coded in ``jobs`` processes (default 1; 0: all cores; a script asking for more
    guards its top level) or on a :class:`~gscodec.parallel.RayCluster`, the same bytes.

    ``base``: "spz" or an .spz file's bytes as the base layer instead of gscodec's (GSZ.md 6.9,
    :func:`_foreign_base`; no prior gains; the order: the identity, or None for given bytes).
    ``prune`` (default: the preset's ``prune``): the fraction of the Gaussians dropped before
    coding (:func:`_pruned_base`; ``order`` then holds only the kept rows). A file that a
    decoder with the default limits would refuse is still returned, with a
    :class:`~gscodec.LimitWarning` (:func:`_warn_if_refused`). ``gaussians`` may be a
    one-item list, which this empties (:func:`_taken`)."""
    gaussians = _taken(gaussians)
    report = progress or noop
    if chunk_size < chunks.MIN_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be at least {chunks.MIN_CHUNK_SIZE}")
    arrays = _validated_arrays(gaussians)
    total = len(_codecs(gaussians.sh_degree)) + 1
    params = preset(quality) if params is None else params
    meta, streams, order = _foreign_base(arrays, base, report) if base is not None else \
        _pruned_base(arrays, prune, quality, params, chunk_size, jobs, importance, backend,
                     cameras, report)
    if views > 0:
        report(total, total + 1, "side information")
        # the original's renders first (they do not depend on the storage order); then this
        # holds no reference to the input (one handed over in a list: let go here)
        memory.release()
        cams, originals = _originals(arrays, views, sideinfo_size, sideinfo_scale, cameras,
                                     backend)
        del gaussians, arrays
        memory.release()
        _add_side(meta, streams, originals, cams, quality, scale=sideinfo_scale,
                  step=sideinfo_step, backend=backend,
                  prior_gains=False if base is not None else prior_gains,
                  jobs=parallel.local_jobs(jobs))
        del originals
    data = _container(meta, streams)
    _warn_if_refused(data)
    report(total, total, "done")
    return data, order


def _taken(gaussians: Gaussians | list[Gaussians]) -> Gaussians:
    """The scene, taken out of a one-item list where it comes in one: a caller that hands over
    its only reference so holds none while the file is made, and the scene is let go once it
    is coded and rendered (the CLI: an argument passed in the call itself stays referenced by
    the caller until the call returns, which kept a 1M SH-3 scene, 236 MB, alive through the
    side information)."""
    if not isinstance(gaussians, list):
        return gaussians
    if len(gaussians) != 1 or not isinstance(gaussians[0], Gaussians):
        raise TypeError("gaussians must be Gaussians or a list holding one")
    return gaussians.pop()


def _with_classes(params: QualityParams, n: int, degree: int) -> bool:
    """Whether the encoder measures importance classes by default: for scenes of at least
    :data:`codec.adaptive.MIN_GAUSSIANS` Gaussians at the render-tuned presets (canonical
    form), and at those with ``faithful_classes`` where the scene has higher SH bands (the
    attributes they adapt, :data:`codec.adaptive.FAITHFUL`; their estimate is a forward
    render a view, in bounded memory, so chunked files get them too)."""
    if n < adaptive.MIN_GAUSSIANS:
        return False
    return params.canonical or (params.faithful_classes and degree > 0)


def _fraction(params: QualityParams, prune: float | None, n: int) -> float:
    """The fraction to prune: ``prune``, or the preset's for scenes of at least
    :data:`codec.adaptive.MIN_GAUSSIANS` (a smaller one saves little and would pay the
    pruning's renders: it gets no importance classes either)."""
    if prune is None:
        return params.prune if n >= adaptive.MIN_GAUSSIANS else 0.0
    if not 0 <= float(prune) < 1:
        raise ValueError("prune must be a fraction in [0, 1)")
    return float(prune)


def _originals(arrays: dict[str, np.ndarray], views: int, size: int, scale: int,
               cameras: list[Camera] | None, backend: str) -> tuple[list[Camera], list[Any]]:
    """The side information's views (:func:`_side_cameras`) and the input's renders there."""
    from . import sideinfo

    cams = _side_cameras(arrays["means"], views, size, scale, cameras)
    return cams, sideinfo.render_views(Gaussians.from_arrays(arrays), cams, backend)


def _pruned_base(arrays: dict[str, np.ndarray], prune: float | None, quality: int,
                 params: QualityParams, chunk_size: int, jobs: int | None | parallel.RayCluster,
                 importance: bool | None, backend: str, cameras: list[Camera] | None,
                 report: Progress) -> tuple[dict[str, Any], list[Stream], np.ndarray]:
    """:func:`_base` of ``arrays`` with at most the :func:`_fraction` of them pruned that
    ``prune`` or the preset asks for: first the base
    layer of them all, whose error at :data:`PRUNE_CHECK_VIEWS` check views (renders against
    the input's) sets the budget, :data:`PRUNE_ERROR_RATIO` times it; then :func:`_pruned`
    drops Gaussians while the pruned input's own error there stays within it, and the base
    layer of those kept is coded. The metadata then says how many were dropped and the order
    maps to the input's rows; where none could go, the unpruned base layer is returned."""
    n = arrays["means"].shape[0]
    fraction = _fraction(params, prune, n)
    meta, streams, order = _base(arrays, quality, params, chunk_size, jobs, importance, backend,
                                 cameras, report)
    if int(round(fraction * n)) == 0:
        return meta, streams, order
    from .sideinfo import render_views

    check = (encoder_views(arrays["means"], PRUNE_CHECK_VIEWS, PRUNE_CHECK_SIZE,
                           start=PRUNE_VIEWS) if cameras is None
             else training_views(cameras, PRUNE_CHECK_VIEWS, PRUNE_CHECK_SIZE))
    originals = render_views(Gaussians.from_arrays(arrays), check, backend)

    def error(g: Gaussians) -> float:
        return float(np.mean([((r - o) ** 2).mean().item() for r, o in
                              zip(render_views(g, check, backend), originals, strict=True)]))
    budget = PRUNE_ERROR_RATIO * error(decode(_container(meta, streams), refine=False,
                                              limits=ENCODER_LIMITS))
    kept, rows = _pruned(arrays, fraction, backend, cameras, report,
                         lambda r: error(Gaussians.from_arrays(
                             {k: v[r] for k, v in arrays.items()})) <= budget)
    if rows is None:
        return meta, streams, order
    del meta, streams, order
    meta, streams, order = _base(kept, quality, params, chunk_size, jobs, importance, backend,
                                 cameras, report)
    meta["pruned"] = n - rows.shape[0]
    return meta, streams, rows[order]


PRUNE_VIEWS = 16
"""Encoder views at which pruning measures removal costs (as many as the importance estimate)."""


PRUNE_SIZE = 256
"""Their longest side in pixels."""


PRUNE_ROUNDS = 3
"""Pruning drops its Gaussians in at most this many equal rounds, measuring the removal costs of
those left before each: a Gaussian that one redundant neighbour made cheap to remove becomes
dear once the neighbour is gone. Measured on massa (tuning split, preset 1, 30% pruned, 4
evaluation views of seed 1 at 512 px, the default CPU decode; ``benchmarks/results/
prune-rounds-tuning.md``): after refinement one round at 128 px views cost 1.02 dB against the
unpruned file, three 0.44 dB; at 256 px one round gained 0.50 dB, three 0.75 dB (the pruned
Gaussians carried more of the quantization error than of the scene)."""


PRUNE_CHECK_VIEWS = 8
"""Views (encoder directions after the :data:`PRUNE_VIEWS`, so not those the costs were
measured at) where pruning checks the error it adds, at :data:`PRUNE_CHECK_SIZE` pixels."""


PRUNE_CHECK_SIZE = 512


PRUNE_ERROR_RATIO = 0.25
"""Pruning stops where it alone would add this share of the unpruned base layer's squared error
at the check views (a finer base layer leaves pruning less room). Chosen on the tuning split:
see preset 1 in :mod:`gscodec.codec.quality`."""


PRUNE_BISECTIONS = 3
"""Where a round would cross the budget, the count it drops is bisected this many times."""


def _pruned(arrays: dict[str, np.ndarray], fraction: float, backend: str,
            cameras: list[Camera] | None, report: Progress,
            fits: Callable[[np.ndarray], bool] | None = None
            ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``arrays`` without up to ``round(fraction * N)`` Gaussians, those whose removal changes
    the renders at :data:`PRUNE_VIEWS` encoder views (or training ``cameras``) least
    (:func:`gscodec.importance.removal_costs`, in :data:`PRUNE_ROUNDS` rounds; ties by input
    row), in input order, and the input rows kept; ``(arrays, None)`` where that drops nothing.
    ``fits(rows)`` (where given) says whether keeping only those rows is still good enough:
    the first round where it is not drops as many as bisection finds still fitting, and is
    the last."""
    n = arrays["means"].shape[0]
    drop = int(round(fraction * n))
    from .importance import removal_costs

    cams = (encoder_views(arrays["means"], PRUNE_VIEWS, PRUNE_SIZE) if cameras is None
            else training_views(cameras, PRUNE_VIEWS, PRUNE_SIZE))
    rows = np.arange(n)
    for r in range(PRUNE_ROUNDS if drop > 0 else 0):
        report(r, PRUNE_ROUNDS, f"measuring removal costs (pruning up to {drop:,} of {n:,})")
        now = drop * (r + 1) // PRUNE_ROUNDS - (n - rows.shape[0])  # (this round's share)
        costs = removal_costs(Gaussians.from_arrays({k: v[rows] for k, v in arrays.items()}),
                              cams, backend=backend)
        ranked = np.argsort(costs, kind="stable")
        if fits is None or fits(rows[np.sort(ranked[now:])]):
            rows = rows[np.sort(ranked[now:])]
            continue
        lo, hi = 0, now  # (dropping lo more fits, hi does not)
        for _ in range(PRUNE_BISECTIONS):
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(rows[np.sort(ranked[mid:])]) else (lo, mid)
        rows = rows[np.sort(ranked[lo:])]
        break
    if rows.shape[0] == n:
        return arrays, None
    return {k: v[rows] for k, v in arrays.items()}, rows


def _side_cameras(means: np.ndarray, views: int, size: int, scale: int,
                  cameras: list[Camera] | None) -> list[Camera]:
    """The side information's views: synthesized around ``means``, or spread over ``cameras``."""
    from . import sideinfo

    if cameras is None:
        return sideinfo.cameras(means, views, size, scale)
    return training_views(cameras, views, size, scale)


def _base(arrays: dict[str, np.ndarray], quality: int, params: QualityParams, chunk_size: int,
          jobs: int | None | parallel.RayCluster, importance: bool | None, backend: str,
          cameras: list[Camera] | None, report: Progress
          ) -> tuple[dict[str, Any], list[Stream], np.ndarray]:
    """The metadata, streams and storage order of the base layer: a plain file's attribute
    streams, or a chunked file's CTAB and CHNK above ``chunk_size`` Gaussians."""
    n, degree = arrays["means"].shape[0], _degree(arrays)
    meta: dict[str, Any] = {"format": FORMAT_NAME, "n": n, "sh_degree": degree,
                            "quality": quality, "params": params.as_dict(),
                            "encoder": f"gscodec {__version__}", "streams": {}}
    if n > chunk_size:
        streams, order = _chunked_base(arrays, quality, params, chunk_size, jobs, importance,
                                       backend, cameras, report)
        meta.update(order="chunks", chunk_size=chunk_size,
                    layers=[k / chunks.LAYERS[-1] for k in chunks.LAYERS])
        return meta, streams, order
    report(0, len(_codecs(degree)) + 1, "ordering")
    order = morton_order(arrays["means"], params)
    streams, meta["streams"] = _base_layer(arrays, order, params, degree, importance, backend,
                                           cameras, report)
    meta["order"] = "morton"
    return meta, streams, order


def _foreign_base(arrays: dict[str, np.ndarray], base: str | bytes, report: Progress
                  ) -> tuple[dict[str, Any], list[Stream], np.ndarray | None]:
    """The metadata, ``BASE`` stream and order of a file whose base layer is an .spz file:
    ``base`` "spz" (written here from ``arrays``) or an .spz file's bytes (its positions
    checked against the scene's, :func:`gscodec.foreign.check_alignment`)."""
    report(0, 2, "writing the .spz base layer")
    if isinstance(base, str):
        if base not in foreign.FORMATS:
            raise ValueError(f"base must be one of {sorted(foreign.FORMATS)} or .spz bytes")
        spz, order = foreign.spz_of(arrays), np.arange(arrays["means"].shape[0])
    else:
        spz, order = bytes(base), None
        foreign.check_alignment(arrays["means"], spz_module.decode_spz_bytes(
            spz, "the base layer")["means"], "the base layer")
    n, degree, _ = foreign.spz_header(spz)
    meta: dict[str, Any] = {"format": FORMAT_NAME, "n": n, "sh_degree": degree, "base": "spz",
                            "encoder": f"gscodec {__version__}", "streams": {}}
    return meta, [foreign.base_stream(spz)], order


def _codecs(degree: int) -> list[tuple[str, Any]]:
    """The attribute codecs a scene of SH ``degree`` is coded with, in REGISTRY order."""
    return [(name, c) for name, c in REGISTRY.items() if c.present(degree)]


def _container(meta: dict[str, Any], streams: list[Stream]) -> bytes:
    """The file of ``meta`` and ``streams``: version 1.0, 1.1 with the CHUNKED flag where
    the streams are a chunk table and its parts (GSZ.md 11), 1.2 with a foreign base layer
    (6.9), 1.3 with the SH transform (6.6a)."""
    head = [Stream("META", CODEC_ZSTD_JSON, True, encode_meta(meta))]
    if any(s.kind == TABLE_KIND for s in streams):
        return write_container(head + streams, FLAG_CHUNKED, VERSION_MINOR_CHUNKED)
    if any(s.kind == foreign.KIND for s in streams):
        return write_container(head + streams, minor=foreign.VERSION_MINOR_FOREIGN)
    if any(s.codec != CODEC_CHANNELS_V1 for s in streams):
        return write_container(head + streams, minor=VERSION_MINOR_TRANSFORM)
    return write_container(head + streams)


def _chunked_base(arrays: dict[str, np.ndarray], quality: int, params: QualityParams,
                  chunk_size: int, jobs: int | None | parallel.RayCluster,
                  importance: bool | None, backend: str,
                  cameras: list[Camera] | None, report: Progress
                  ) -> tuple[list[Stream], np.ndarray]:
    """The CTAB and CHNK streams of a chunked file (GSZ.md 11) and the storage order: the scene
    cut by :func:`gscodec.chunks.split`, each part coded as a file of its own (in ``jobs``
    processes) at the scene's position step, with the importance classes and per-class steps
    measured once for the whole scene (as a plain file's: at its encoder views, or
    ``cameras``)."""
    means, n = arrays["means"], arrays["means"].shape[0]
    part_params = replace(params, position_step=position_grid(means, params).step)
    measured = None
    if _with_classes(params, n, _degree(arrays)) if importance is None \
            else importance:
        report(0, 1, "measuring importance")
        order = morton_order(means, params)
        shapes = [alt for _, c in _codecs(_degree(arrays)) for alt in
                  c.alternatives(arrays, params)]
        classes, adapts = _importance(shapes[-1] if shapes else arrays, order, backend, cameras,
                                      params.canonical)
        by_input = np.empty_like(classes)
        by_input[order] = classes
        del shapes, classes, order
        measured = (by_input, adapts)
    cover = chunks.coverage(arrays["opacity_logits"], arrays["log_scales"])
    plan = chunks.split(means, cover, chunk_size)
    memos = [PlanMemo() for _ in chunks.LAYERS]

    def task(idx: np.ndarray, layer: int) -> tuple[Any, ...]:
        return ({k: v[idx] for k, v in arrays.items()}, quality, part_params,
                None if measured is None else (measured[0][idx], measured[1]), backend,
                memos[layer])

    # the first chunk's parts choose the channel plans of their layer, here, before the
    # others reuse them in any process (so that the bytes do not depend on the job count)
    first = [parallel.single_threaded(_encode_part, task(idx, k))
             for k, idx in enumerate(plan[0])]
    for memo in memos:
        memo.record = False
    results = itertools.chain(first, pmap(_encode_part, (
        task(idx, k) for layers in plan[1:] for k, idx in enumerate(layers)),
        parallel.resolve_jobs(jobs, n)))
    table, blobs, orders, offset = [], [], [], 0
    for c, layers in enumerate(plan):
        report(c, len(plan), f"coding chunk {c + 1} of {len(plan)}")
        parts, lo, hi = [], np.full(3, np.inf, np.float32), np.full(3, -np.inf, np.float32)
        for idx in layers:
            data, part_order, box = next(results)
            parts.append(Part(offset, len(data), idx.shape[0], zlib.crc32(data)))
            offset += len(data)
            blobs.append(data)
            orders.append(idx[part_order])
            if box is not None:
                lo, hi = np.minimum(lo, box[0]), np.maximum(hi, box[1])
        table.append(Chunk(tuple(float(v) for v in (*lo, *hi)), tuple(parts)))
    return ([Stream(TABLE_KIND, CODEC_TABLE_V1, True, pack_table(table)),
             Stream(PARTS_KIND, CODEC_PARTS_V1, True, b"".join(blobs))],
            np.concatenate(orders))


def _degree(arrays: dict[str, np.ndarray]) -> int:
    return {1: 0, 4: 1, 9: 2, 16: 3}[arrays["sh"].shape[1]]


def _encode_part(task: tuple[Any, ...]) -> tuple[bytes, np.ndarray, Any]:
    """One part of a chunked file: its .gsz bytes, storage order and the box of its decoded
    positions (None where it is empty)."""
    arrays, quality, params, measured, backend, memo = task
    degree = _degree(arrays)
    order = morton_order(arrays["means"], params)
    with reusing_plans(memo):
        streams, stream_meta = _base_layer(arrays, order, params, degree, measured is not None,
                                           backend, None, noop, measured)
    data = _container({"format": FORMAT_NAME, "n": order.shape[0], "sh_degree": degree,
                       "quality": quality, "params": params.as_dict(), "order": "morton",
                       "encoder": f"gscodec {__version__}", "streams": stream_meta}, streams)
    if order.shape[0] == 0:
        return data, order, None
    posn = decode_meta(read_container(data, ENCODER_LIMITS).streams[0].payload)["streams"]["POSN"]
    grid = PositionGrid(np.asarray(posn["origin"], np.float64), float(posn["step"]))
    decoded = grid.dequantize(grid.quantize(arrays["means"]))
    return data, order, (decoded.min(axis=0), decoded.max(axis=0))


def _base_layer(arrays: dict[str, np.ndarray], order: np.ndarray, params: QualityParams,
                degree: int, importance: bool | None, backend: str,
                cameras: list[Camera] | None, report: Progress,
                measured: tuple[np.ndarray, dict[str, Any]] | None = None
                ) -> tuple[list[Stream], dict[str, Any]]:
    """The attribute streams (and the importance classes' stream) and their metadata. Each
    codec in REGISTRY order, except one that another codes together with its own attribute
    (``coded_with``): that pair is coded in every form the codecs offer (``alternatives``) and
    the cheaper kept. ``measured``: the importance classes (by input row) and per-class steps
    measured already (for the whole scene a chunked file's part belongs to)."""
    n = arrays["means"].shape[0]
    codecs = _codecs(degree)
    total = len(codecs) + 1
    shapes = [arrays] + [alt for _, c in codecs for alt in c.alternatives(arrays, params)]
    if importance is None:
        importance = _with_classes(params, n, degree)
    classes, adapts = None, {}
    if measured is not None:  # (a part of a chunked file: the classes by input row)
        classes, adapts = measured[0][order], measured[1]
    elif importance and n > 0:
        report(0, total, "measuring importance")
        classes, adapts = _importance(shapes[-1], order, backend, cameras, params.canonical)
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
            streams.append(Stream(c.kind, out.codec, True, out.payload))
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


def _add_side(meta: dict[str, Any], streams: list[Stream], originals: list[Any],
              cams: list[Camera], quality: int, *, scale: int, step: float, backend: str,
              prior_gains: bool | None, jobs: int | None = None) -> None:
    """The SIDE stream and its metadata, from the original's renders at ``cams`` and the base
    layer of ``meta`` and ``streams``, added to them; nothing where every residual quantizes to
    zero (nothing to refine towards)."""
    from . import sideinfo

    base = decode(_container(meta, streams), refine=False, limits=ENCODER_LIMITS, jobs=jobs)
    # the gains are fitted on the renders the residuals come from: kept only for them
    renders: list[Any] | None = [] if prior_gains is not False else None
    si = sideinfo.from_renders(originals, base, cams, scale=scale, step=step, backend=backend,
                               renders=renders)
    if not any(r.any() for r in si.residuals):
        return
    if prior_gains is not False:
        si.prior = _prior_gains(base, si, quality, backend, prior_gains is None, renders)
    payload, meta["streams"][sideinfo.KIND] = sideinfo.encode(si)
    streams.append(Stream(sideinfo.KIND, sideinfo.CODEC, False, payload))


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
                cameras: list[Camera] | None = None, canonical: bool = True
                ) -> tuple[np.ndarray, dict[str, tuple[float, list[int]]]]:
    """Importance class of each Gaussian (storage order) and the per-class steps of each
    attribute that uses them (:func:`codec.adaptive.adapted`: at a preset with the
    ``canonical`` form or not), measured at synthesized encoder views or at ``cameras``.

    Where only SH bands take classes (not ``canonical``), the classes are those of the SH
    rest's sensitivity alone, computed in closed form from one render a view without autograd
    (:func:`gscodec.importance.sh_sensitivities`: the memory of a plain render, in input
    order, no copy of the scene); otherwise from every adapted attribute's: the scales' and
    rotations' by Hutchinson's estimate through backward passes, the colours' in closed form."""
    from .importance import sensitivities, sh_sensitivities

    cams = (encoder_views(arrays["means"], IMPORTANCE_VIEWS, IMPORTANCE_SIZE) if cameras is None
            else training_views(cameras, IMPORTANCE_VIEWS, IMPORTANCE_SIZE))
    names, options = adaptive.adapted(canonical)
    if canonical:
        g = Gaussians.from_arrays({k: v[order] for k, v in arrays.items()})
        sens = sensitivities(g, cams, probes=IMPORTANCE_PROBES, backend=backend,
                             colours=False)
        sens.update(sh_sensitivities(g, cams, backend=backend))
    else:
        exact = sh_sensitivities(Gaussians.from_arrays(arrays), cams, backend=backend)
        # (an SH-0 scene has no SH rest: its classes, asked for, come from the DC term)
        sens = {name: j[order] for name, j in exact.items()
                if name in names or not set(names) & set(exact)}
    k = adaptive.DEFAULT_CLASSES
    classes = adaptive.classes(sens)
    return classes, {name: adaptive.class_steps(sens[name], classes, k, **options)
                     for name in names if name in sens}


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
        return encode_with_order(gaussians_or_path, quality, progress=progress, **options)[0]
    # the scene read here is handed over, so that it is let go once coded and rendered
    return encode_with_order([read_ply(gaussians_or_path)], quality, progress=progress,
                             **options)[0]
