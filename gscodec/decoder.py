"""The decoder pipeline: the header and metadata checked against the limits and the memory
budget before anything is allocated (GSZ.md 4, 4.1), the plan of what this decode will do,
the attribute streams decoded in their order (the colour fit of :mod:`gscodec.refinement`
between the geometry and the colours), then the refinement the plan chose."""

from __future__ import annotations

import io
import itertools
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from . import budget, chunks, foreign, memory, parallel
from .codec.attributes import COLOUR_FEATURES, REGISTRY
from .codec.meta import get_dict, get_int
from .formats.chunks import FLAG_CHUNKED, PARTS_KIND, TABLE_KIND, parse_table, part_bytes
from .formats.errors import ContainerError, LimitError, unreadable
from .formats.gsz import (
    DEFAULT_LIMITS,
    ZSTD_UNKNOWN_SIZE,
    Limits,
    decode_meta,
    read_container,
    read_header,
)
from .gaussians import Gaussians
from .parallel import pmap
from .progress import Progress, noop
from .refinement import (
    METHODS,
    CellSource,
    colour_changes_from_geometry,
    refine_decoded,
    refinement_method,
    refinement_plan,
    renders_pairs,
    resolve_device,
    side_info,
)
from .streams import ATTRIBUTE_OF_KIND, CODEC_CHANNELS_V1, FORMAT_NAME, IMPORTANCE


def load_data(data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str]) -> bytes:
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return bytes(data_or_path)
    p = Path(data_or_path)
    try:
        return p.read_bytes()
    except OSError as e:
        raise unreadable(p, e, ContainerError, "a .gsz file") from None


def checked_header(data: bytes, limits: Limits, memory: bool = True
            ) -> tuple[Any, dict[str, Any], int, int]:
    """The container, metadata, Gaussian count and SH degree, checked against ``limits``; with
    ``memory``, also the base layer's estimated memory (GSZ.md 4.1)."""
    container = read_container(data, limits)
    meta, n, degree = checked_meta(container.streams[0].payload, limits)
    if memory:  # the base layer's memory against the budget (4.1), before anything is decoded
        budget.check(budget.Estimate(base_bytes(container, n, degree, limits)), limits,
                     declares(n, degree))
    return container, meta, n, degree


def checked_meta(payload: bytes, limits: Limits) -> tuple[dict[str, Any], int, int]:
    """The metadata stream's dict, Gaussian count and SH degree, checked against ``limits``."""
    meta = decode_meta(payload, limits)
    if meta.get("format") != FORMAT_NAME:
        raise ContainerError("bad metadata: format must be 'gsz'")
    n = get_int(meta, "n", 0, 1 << 62)
    if n > limits.max_gaussians:
        raise LimitError(f"file declares {n} Gaussians (limit {limits.max_gaussians})")
    return meta, n, get_int(meta, "sh_degree", 0, 3)


def declares(n: int, degree: int) -> str:
    return f"file declares {n} Gaussians (SH {degree})"


def base_bytes(container: Any, n: int, degree: int, limits: Limits) -> int:
    """The budget's estimate for decoding the base layer (gscodec.budget.base_bytes; for a
    chunked file gscodec.budget.chunked_bytes, with its chunk table's largest part)."""
    largest = None
    if container.flags & FLAG_CHUNKED:
        table, parts = _stream(container, TABLE_KIND), _stream(container, PARTS_KIND)
        largest = largest_part(table.payload, len(parts.payload), n, limits)
    return header_memory(container.streams[0].payload, n, degree, container.file_size,
                         container.streams, container.flags, limits, largest)


def largest_part(table: bytes, parts_length: int, n: int, limits: Limits) -> int:
    """The most Gaussians a part of a chunked file holds, from its chunk table (checked)."""
    return max(p.count for c in parse_table(table, parts_length, n, limits.max_chunks)
               for p in c.parts)


def header_memory(meta_payload: bytes, n: int, degree: int, file_size: int, entries: Any,
                  flags: int, limits: Limits, largest: int | None = None) -> int:
    """:func:`base_memory` with what the stream table (``entries``: each with ``kind`` and
    ``codec``) and the file flags say: importance classes, a foreign base layer, a transformed
    SH rest. A chunked file's parts, not read here, are decoded one at a time: the largest,
    ``largest`` Gaussians (None: all ``n``), is counted as if it had classes and the
    transform, the rest for what is kept of them (:func:`chunked_memory`)."""
    if flags & FLAG_CHUNKED:
        return chunked_memory(meta_payload, n, degree, file_size,
                              n if largest is None else largest, limits)
    codecs = {e.kind: e.codec for e in entries}
    transform = codecs.get(REGISTRY["sh_rest"].kind, CODEC_CHANNELS_V1) != CODEC_CHANNELS_V1
    return base_memory(meta_payload, n, degree, file_size, IMPORTANCE.kind in codecs,
                       limits, foreign=foreign.KIND in codecs, transform=transform)


def _meta_bytes(meta_payload: bytes, limits: Limits) -> int:
    """The metadata stream's decompressed size (its zstd Frame_Content_Size; where the frame
    does not say, the limit it decompressed within)."""
    meta_bytes = zstandard.get_frame_parameters(meta_payload).content_size
    return limits.max_meta_bytes if meta_bytes == ZSTD_UNKNOWN_SIZE else meta_bytes


def chunked_memory(meta_payload: bytes, count: int, degree: int, file_size: int, largest: int,
                   limits: Limits) -> int:
    """:func:`gscodec.budget.chunked_bytes` from the header: ``count`` Gaussians decoded, the
    largest part decoded holding ``largest``."""
    return budget.chunked_bytes(count, degree, file_bytes=file_size,
                                meta_bytes=_meta_bytes(meta_payload, limits), largest=largest)


def base_memory(meta_payload: bytes, n: int, degree: int, file_size: int, classes: bool,
                limits: Limits, foreign: bool = False, transform: bool = False) -> int:
    """:func:`gscodec.budget.base_bytes` from the header: the metadata stream's payload (its
    decompressed size), the file's size, whether it has importance classes, whether its
    base layer is an .spz file (GSZ.md 6.9) and whether its SH rest is transformed (6.6a)."""
    return budget.base_bytes(n, degree, file_bytes=file_size,
                             meta_bytes=_meta_bytes(meta_payload, limits), classes=classes,
                             foreign=foreign, transform=transform)


def _decode_plan(container: Any, stream_meta: dict[str, Any], n: int, degree: int,
                 limits: Limits, *, refine: bool, steps: int | None, device: str, backend: str,
                 prior: str, extra_views: int, method: str = "auto") -> tuple[bool, bool, bool]:
    """What :func:`decode` does with these options, checked against the limits before anything
    is decoded: ``(has_side, refines, use_prior)``; ``refines``: it decodes the SIDE stream
    (where there is one) and refines (unless ``steps`` is 0). LimitError where the SIDE views
    or the estimated memory (GSZ.md 4.1, with SIDE and refinement) are above the limits."""
    side = container.get("SIDE")
    has_side = side is not None and side.codec == 1
    side_meta = stream_meta.get("SIDE") if has_side else None
    # (only where it matters: resolving the device imports torch)
    colour = refine and has_side and prior == "auto" and refinement_method(
        method, resolve_device(device), steps, False, n) == "colour"
    refines, use_prior = refinement_plan(has_side, prior, extra_views, side_meta, colour)
    refines = refine and n > 0 and refines
    if not refines:
        return has_side, refines, use_prior
    views = budget.side_views(side_meta) if has_side else None
    scale, sizes = views if views is not None else (1, [])
    budget.check_side_pixels(sum(w * h for w, h in sizes), limits)
    side_bytes = budget.side_bytes(budget.residual_rows(scale, sizes))
    refine_bytes = 0
    if has_side and refinement_method(method, resolve_device(device), steps, use_prior,
                                      n) == "colour":
        refine_bytes = budget.colour_bytes(n, degree, sizes)
    elif steps is None or steps > 0:
        extra = extra_views if use_prior else 0
        size = sizes[0][0] if sizes else budget.EXTRA_VIEW_SIZE  # (as restore_targets)
        refine_bytes = budget.refine_bytes(n, degree, sizes + [(size, size)] * extra,
                                           prior=use_prior, pairs=renders_pairs(device, backend))
    budget.check(budget.Estimate(base_bytes(container, n, degree, limits), side_bytes,
                                 refine_bytes), limits, declares(n, degree))
    return has_side, refines, use_prior


def decode_refusal(data: bytes, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """Why :func:`decode` with its default options (refinement on a machine without a GPU, the
    largest estimate) and ``limits`` refuses ``data`` on its sizes before decoding it (the
    LimitError's message), or None where it does not. The encoder checks its own files so."""
    try:
        container, meta, n, degree = checked_header(data, limits)
        stream_meta = meta.get("streams") if isinstance(meta.get("streams"), dict) else {}
        _decode_plan(container, stream_meta, n, degree, limits, refine=True, steps=None,
                     device="cpu", backend="cpu", prior="auto", extra_views=0)
    except LimitError as e:
        return str(e)
    return None


def decode(
    data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress | None = None,
    refine: bool = True,
    steps: int | None = None,
    device: str = "auto",
    backend: str = "auto",
    prior: str = "auto",
    extra_views: int = 0,
    method: str = "auto",
    colour_bands: int | None = None,
    region: tuple[Any, Any] | None = None,
    fraction: float | None = None,
    jobs: int | None = None,
) -> Gaussians:
    """Decompress .gsz bytes (or the file at a path) into numpy-backed Gaussians.

    If the file carries side information and ``refine`` is true, the decoded Gaussians are
    refined on ``device`` ("auto": CUDA when available) as ``method`` says
    (:func:`refinement_method`; "auto": on a CPU the colour fit of :mod:`gscodec.colourfit`,
    one render per side-information view, of the SH bands up to ``colour_bands``, default 1
    for scenes with higher bands, else 0; on a GPU, or
    where ``steps`` is given, :mod:`gscodec.refine`'s ``steps`` Adam steps, default
    :func:`default_steps`, more for a file whose base layer is an .spz file) against targets
    at the side-information views:
    with ``prior`` "on" the learned image prior's restorations of the decoded renders
    (:func:`gscodec.restore.restore_targets`), with "off" the decoded renders plus the
    upsampled coarse residuals; "auto" (the default) uses the prior where the side information
    carries the encoder's gains for the shipped weights (:func:`gscodec.restore.fit_gains`),
    with those gains, unless the refinement is the colour fit (which has no use for them).
    ``extra_views`` > 0 (with the prior) adds views without side information, restored by the
    network alone; then files without side information are refined too.

    ``region`` ``(lo, hi)``: only the Gaussians whose decoded centre lies in the closed box
    between the corners ``lo`` and ``hi``; ``fraction`` (0 < f <= 1): the leading layers of
    every chunk that hold at least that share of it (the most covering Gaussians, a coarse
    version of the scene). A chunked file (GSZ.md 11) decodes only the parts these need, in
    ``jobs`` processes (default 1; 0: every core; see :func:`gscodec.encode_with_order`); a
    plain file is one chunk of one layer. Both
    return the base layer, unrefined (the side information is the whole scene's). Raises
    ContainerError (or its subclass LimitError) for anything wrong with the data."""
    if prior not in ("auto", "on", "off"):
        raise ValueError("prior must be 'auto', 'on' or 'off'")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    box = _region(region)
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    report = progress or noop
    data = load_data(data_or_path)
    container, meta, n, degree = checked_header(data, limits, memory=False)
    del data  # (the container holds the payloads)
    _check_required_streams(container)
    whole = box is None and (fraction is None or fraction >= 1)
    options = dict(refine=refine, steps=steps, device=device, backend=backend, prior=prior,
                   extra_views=extra_views, method=method, colour_bands=colour_bands)
    if container.flags & FLAG_CHUNKED:
        return _decode_chunked(container, meta, n, degree, limits, report, box, fraction, jobs,
                               whole, options)
    budget.check(budget.Estimate(base_bytes(container, n, degree, limits)), limits,
                 declares(n, degree))
    if not whole:
        g, _ = _decode_streams(container, get_dict(meta, "streams"), n, degree, report)
        return g if box is None else g.take(_inside(g.means, box))
    return _decode_plain(container, meta, n, degree, limits, report, options)


def _decode_plain(container: Any, meta: dict[str, Any], n: int, degree: int, limits: Limits,
                  report: Progress, options: dict[str, Any]) -> Gaussians:
    """:func:`decode` of a whole plain file with the refinement ``options`` ask for."""
    o = options
    stream_meta = get_dict(meta, "streams")
    base = container.get(foreign.KIND)
    if base is not None:  # the .spz base layer's cells, for refinement (GSZ.md 6.9)
        stream_meta = {**stream_meta, **foreign.cell_meta(base)}
    # the colour fit needs the geometry only: it runs before the colours are decoded, so that
    # its working memory and the SH array are never held together
    has_side, refines, use_prior, _, si = _refinement_choice(container, stream_meta, n, degree,
                                                             limits, o)
    side = container.get("SIDE")
    fit = None
    if si is not None:
        def fit(values: dict[str, np.ndarray], classes: np.ndarray | None) -> Any:
            return colour_changes_from_geometry(values, n, degree, si, stream_meta, classes,
                                                o["colour_bands"], report)
    g, classes = _decode_streams(container, stream_meta, n, degree, report, fit)
    memory.release()
    if refines and si is None:
        quality = meta.get("quality")
        g = refine_decoded(g, side.payload if has_side else None, stream_meta, o["steps"],
                           o["device"], o["backend"], report, limits, prior=use_prior,
                           extra_views=o["extra_views"] if use_prior else 0,
                           quality=quality if isinstance(quality, int) else 0,
                           classes=classes, method=o["method"], foreign=base is not None)
    return g


def _refinement_choice(container: Any, stream_meta: dict[str, Any], n: int, degree: int,
                       limits: Limits, o: dict[str, Any]) -> tuple[bool, bool, bool, bool, Any]:
    """:func:`_decode_plan` for :func:`decode`'s options ``o`` (limits checked), whether the
    refinement is the colour fit, and the decoded side information it fits to (None unless)."""
    has_side, refines, use_prior = _decode_plan(
        container, stream_meta, n, degree, limits,
        **{k: v for k, v in o.items() if k != "colour_bands"})
    colour = refines and has_side and refinement_method(
        o["method"], resolve_device(o["device"]), o["steps"], use_prior, n) == "colour"
    side = container.get("SIDE")
    si = side_info(side.payload, stream_meta, limits) if colour else None
    return has_side, refines, use_prior, colour, si


def _check_required_streams(container: Any) -> None:
    chunked = bool(container.flags & FLAG_CHUNKED)
    for s in container.streams[1:]:
        known = ((s.kind in (TABLE_KIND, PARTS_KIND)) if chunked else
                 (s.kind in ATTRIBUTE_OF_KIND or s.kind == IMPORTANCE.kind))
        known = known or (s.kind == "SIDE" and s.codec == 1) or \
            (s.kind == foreign.KIND and not chunked)
        if s.required and not known:
            raise ContainerError(f"unsupported .gsz file: unknown required stream {s.kind!r}")
    if not chunked and container.get(foreign.KIND) is not None:
        beside = [s.kind for s in container.streams[1:]
                  if s.kind in ATTRIBUTE_OF_KIND or s.kind == IMPORTANCE.kind]
        if beside:
            raise ContainerError(f"corrupt .gsz file: a BASE stream beside {beside[0]!r} (a "
                                 "file with a foreign base layer has no attribute streams)")


def _stream(container: Any, kind: str, codecs: tuple[int, ...] = (CODEC_CHANNELS_V1,)) -> Any:
    """The stream ``kind`` (ContainerError where it is missing or uses a codec not in
    ``codecs``)."""
    s = container.get(kind)
    if s is None:
        raise ContainerError(f"corrupt .gsz file: missing stream {kind!r}")
    if s.codec not in codecs:
        raise ContainerError(f"unsupported .gsz file: stream {s.kind!r} uses codec {s.codec}")
    return s


def _decode_streams(container: Any, stream_meta: dict[str, Any], n: int, degree: int,
                    report: Progress, colour_fit: Any = None
                    ) -> tuple[Gaussians, np.ndarray | None]:
    """The base layer's Gaussians and importance classes (None without), each codec's stream
    in REGISTRY order (:func:`_decode_fields`); the changes ``colour_fit`` returns, where
    given, are added to the first SH coefficients."""
    fields, features, changes = _decode_fields(container, stream_meta, n, degree, report,
                                               colour_fit)
    g = Gaussians(**fields)
    del fields
    if changes is not None:
        _add_changes(g.sh, changes)
    return g, features.get("imp")


def _decode_fields(container: Any, stream_meta: dict[str, Any], n: int, degree: int,
                   report: Progress, colour_fit: Any = None, geometry_only: bool = False
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Any]:
    """The decoded fields, the features and the colour fit's changes (None without). Before
    the first colour codec the geometry's features that no colour stream reads are dropped and
    ``colour_fit``, where given, is called with the decoded geometry and classes;
    ``geometry_only`` stops there. Codecs of a part of a field (the SH codecs' coefficients)
    decode into that field."""
    base = container.get(foreign.KIND)
    if base is not None:
        return _foreign_fields(base, n, degree, report, colour_fit, geometry_only)
    codecs = [(name, c) for name, c in REGISTRY.items() if c.present(degree)]
    features: dict[str, np.ndarray] = {}
    fields: dict[str, np.ndarray] = {}
    changes = None
    colours_started = False
    for i, (name, codec) in enumerate(codecs):
        if codec.colour and not colours_started:
            colours_started = True
            features = {k: v for k, v in features.items()
                        if k in COLOUR_FEATURES or k == "imp"}
            if geometry_only:
                return fields, features, None
            if colour_fit is not None:
                memory.release()
                changes = colour_fit(fields, features.get("imp"))
                memory.release()
        report(i, len(codecs), f"decoding {name}")
        s = _stream(container, codec.kind, codec.codecs)
        sub = get_dict(stream_meta, codec.kind, "streams.")
        how = {"codec": s.codec} if len(codec.codecs) > 1 else {}
        if codec.coeffs is not None:
            if codec.field not in fields:  # decoded straight into the field (no second copy)
                fields[codec.field] = np.empty((n, (degree + 1) ** 2, 3), np.float32)
            out = codec.decode(s.payload, sub, n, features,
                               out=fields[codec.field][:, codec.coeffs], **how)
        else:
            out = codec.decode(s.payload, sub, n, features, **how)
            fields[codec.field] = out.values
        features.update(out.features)
        if name == IMPORTANCE.after and container.get(IMPORTANCE.kind) is not None:
            imp = _stream(container, IMPORTANCE.kind)
            features.update(IMPORTANCE.decode(imp.payload, get_dict(
                stream_meta, IMPORTANCE.kind, "streams."), n, features).features)
    report(len(codecs), len(codecs), "done")
    return fields, features, changes


def _foreign_fields(base: Any, n: int, degree: int, report: Progress, colour_fit: Any,
                    geometry_only: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                  Any]:
    """:func:`_decode_fields` of a file whose base layer is another codec's (GSZ.md 6.9):
    the ``BASE`` stream's scene, the colour fit called with its geometry."""
    report(0, 1, "decoding the .spz base layer")
    fields = foreign.decode_fields(base, n, degree)
    changes = None
    if geometry_only or colour_fit is not None:
        geometry = {k: v for k, v in fields.items() if k != "sh"}
        if geometry_only:
            return geometry, {}, None
        memory.release()
        changes = colour_fit(geometry, None)
    report(1, 1, "done")
    return fields, {}, changes


def _add_changes(sh: np.ndarray, changes: Any) -> None:
    """``sh[:, :k] += changes`` (float32 ``[n, k, 3]`` tensor) in blocks of rows."""
    k = changes.shape[1]
    for a in range(0, sh.shape[0], 1 << 16):
        sh[a : a + (1 << 16), :k] += changes[a : a + (1 << 16)].numpy()


def _region(region: tuple[Any, Any] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``region`` as two float64 corners (ValueError where it is not two finite 3-vectors with
    ``lo <= hi``)."""
    if region is None:
        return None
    lo, hi = (np.asarray(v, np.float64).reshape(-1) for v in region)
    if lo.shape != (3,) or hi.shape != (3,) or not (np.isfinite(lo).all()
                                                  and np.isfinite(hi).all()) or (lo > hi).any():
        raise ValueError("region must be two corners (x0, y0, z0), (x1, y1, z1) with x0 <= x1, "
                         "y0 <= y1, z0 <= z1")
    return lo, hi


def _inside(means: np.ndarray, box: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return ((means >= box[0]) & (means <= box[1])).all(axis=1)


def _decode_chunked(container: Any, meta: dict[str, Any], n: int, degree: int, limits: Limits,
                    report: Progress, box: tuple[np.ndarray, np.ndarray] | None,
                    fraction: float | None, jobs: int | None, whole: bool,
                    options: dict[str, Any]) -> Gaussians:
    """:func:`decode` of a chunked file (GSZ.md 11): the parts the region and fraction need,
    each a plain file decoded on its own (in ``jobs`` processes), put one after the other in
    table order; a whole file then refined as a plain one would be (:func:`_refined_parts`)."""
    payload, selected, processes = _selected_parts(container, n, degree, limits, box, fraction,
                                                   jobs)
    if whole:
        return _refined_parts(container, meta, payload, selected, degree, processes, limits,
                              report, options)
    fields, _ = _gather(payload, selected, degree, processes, limits, report)
    g = Gaussians(**fields)
    return g if box is None else g.take(_inside(g.means, box))


def decode_parts(
    data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    limits: Limits = DEFAULT_LIMITS,
    fraction: float | None = None,
    jobs: int | None = None,
) -> tuple[int, int, Iterator[dict[str, np.ndarray]]]:
    """The base layer of a file (the leading layers holding ``fraction`` of each chunk), part
    by part: ``(count, sh_degree, arrays)``, ``arrays`` yielding each part's Gaussian arrays
    in storage order (one item for a plain file), decoded in ``jobs`` processes. The header,
    chunk table and memory budget are checked before it returns; a writer that consumes the
    parts one by one holds one part at a time (``gscodec decode`` to a PLY without
    refinement), not the scene."""
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    container, meta, n, degree = checked_header(load_data(data_or_path), limits, memory=False)
    _check_required_streams(container)
    if not container.flags & FLAG_CHUNKED:
        budget.check(budget.Estimate(base_bytes(container, n, degree, limits)), limits,
                     declares(n, degree))
        stream_meta = get_dict(meta, "streams")
        return n, degree, iter([_decode_streams(container, stream_meta, n, degree,
                                                noop)[0].as_arrays()])
    payload, selected, processes = _selected_parts(container, n, degree, limits, None, fraction,
                                                   jobs)
    return (sum(p.count for p, _ in selected), degree,
            _streamed_parts(payload, selected, degree, processes, limits))


def _streamed_parts(payload: bytes, selected: list[tuple[Any, Any]], degree: int,
                    processes: int, limits: Limits) -> Iterator[dict[str, np.ndarray]]:
    """:func:`decode_parts`' parts one by one: with several processes each part is written
    into shared arrays of its own (:class:`gscodec.parallel.SharedArrays`, made as its task
    is sent, so only the parts in flight exist), not pickled back."""
    shapes = Gaussians.shapes(degree)
    pending: deque[Any] = deque()

    def tasks() -> Iterator[tuple[Any, ...]]:
        for p, box in selected:
            shared = (parallel.shared_arrays({k: (p.count, *v) for k, v in shapes.items()})
                      if processes > 1 else None)
            pending.append(shared)
            yield (part_bytes(payload, p), degree, p.count, box, limits, False,
                   None if shared is None else shared.spec(), 0)

    for values, _, _ in pmap(_decode_part, tasks(), processes, window=2):
        shared = pending.popleft()
        if shared is not None:
            shared.close()
            values = values or shared.arrays  # (rows sent back where they could not be shared)
        yield values


def _selected_parts(container: Any, n: int, degree: int, limits: Limits,
                    box: tuple[np.ndarray, np.ndarray] | None, fraction: float | None,
                    jobs: int | None) -> tuple[bytes, list[tuple[Any, Any]], int]:
    """The CHNK payload, the parts a region and a fraction need (``(part, chunk box)``, table
    order) and the processes to decode them in, the memory budget checked for them."""
    table, parts = _stream(container, TABLE_KIND), _stream(container, PARTS_KIND)
    selected = [(p, c.box)
                for c in parse_table(table.payload, len(parts.payload), n, limits.max_chunks)
                if box is None or c.meets(tuple(box[0]), tuple(box[1]))
                for p in c.parts[: chunks.layers_for([p.count for p in c.parts],
                                                     fraction or 1.0)]]
    count = sum(p.count for p, _ in selected)
    processes = parallel.resolve_jobs(jobs, count)
    _check_chunked_budget(container, parts.payload, [p for p, _ in selected], n, count, degree,
                          processes, limits)
    return parts.payload, selected, processes


def _check_chunked_budget(container: Any, payload: bytes, selected: list[Any], n: int,
                          count: int, degree: int, processes: int, limits: Limits) -> None:
    """The base layer's memory for ``count`` of the file's ``n`` Gaussians (GSZ.md 11.4), with
    each part decoder beyond the first holding the largest part's."""
    workers = 0
    if processes > 1 and selected:
        largest = max(selected, key=lambda p: p.count)
        head = read_header(io.BytesIO(part_bytes(payload, largest)), limits)
        workers = (processes - 1) * base_memory(head.meta_payload, largest.count, degree,
                                                largest.length, True, limits, transform=True)
    largest = max((p.count for p in selected), default=0)
    budget.check(budget.Estimate(chunked_memory(container.streams[0].payload, count, degree,
                                                container.file_size, largest, limits)
                                 + workers),
                 limits, declares(n, degree) if count == n else
                 f"the decode needs {count} of its Gaussians (SH {degree})")


def _gather(payload: bytes, selected: list[tuple[Any, Any]], degree: int, processes: int,
            limits: Limits, report: Progress, geometry_only: bool = False
            ) -> tuple[dict[str, np.ndarray], CellSource]:
    """The fields of the ``selected`` parts (``(part, chunk box)``), one after the other, and
    where their quantization cells come from; ``geometry_only``: no colours. With several
    processes they write their parts' rows straight into shared arrays
    (:class:`gscodec.parallel.SharedArrays`) where the system has them."""
    count = sum(p.count for p, _ in selected)
    shapes = {name: (count, *shape) for name, shape in Gaussians.shapes(degree).items()}
    if geometry_only:
        del shapes["sh"]
    shared = parallel.shared_arrays(shapes) if processes > 1 else None
    fields = shared.arrays if shared is not None else {
        name: np.empty(shape, np.float32) for name, shape in shapes.items()}
    spec = shared.spec() if shared is not None else None
    # (each part's rows start where the ones before end; accumulate gives one start more)
    starts = itertools.accumulate((p.count for p, _ in selected), initial=0)
    tasks = ((part_bytes(payload, p), degree, p.count, box, limits, geometry_only, spec, start)
             for (p, box), start in zip(selected, starts, strict=False))
    runs, start = [], 0
    try:
        # (one part per process in flight where the parts decoded ahead wait in this
        # process's memory; written into shared arrays, they wait as a few bytes, and more in
        # flight keep every process busy while a large part holds up the order)
        results = pmap(_decode_part, tasks, processes, window=1 if shared is None else 4)
        for i, (values, classes, part_meta) in enumerate(results):
            report(i, len(selected), f"decoding part {i + 1} of {len(selected)}"
                   + (" (geometry)" if geometry_only else ""))
            m = selected[i][0].count
            for name, v in values.items():
                fields[name][start : start + m] = v
            runs.append((m, part_meta, classes))
            start += m
    finally:
        if shared is not None:
            shared.close()
    report(len(selected), len(selected), "done")
    return fields, CellSource(tuple(runs))


def _refined_parts(container: Any, meta: dict[str, Any], payload: bytes,
                   selected: list[tuple[Any, Any]], degree: int, processes: int,
                   limits: Limits, report: Progress, options: dict[str, Any]) -> Gaussians:
    """A whole chunked file decoded and refined as :func:`decode`'s ``options`` say, each value
    inside the quantization cell of its part. The colour fit runs, as in a plain file, before
    any colour is decoded: on the geometry of every part (a first pass), then the parts are
    decoded whole and its changes added."""
    o = options
    stream_meta = get_dict(meta, "streams")
    n = sum(p.count for p, _ in selected)
    has_side, refines, use_prior, colour, si = _refinement_choice(container, stream_meta, n,
                                                                  degree, limits, o)
    side = container.get("SIDE")
    changes = None
    if si is not None:
        geometry, cells = _gather(payload, selected, degree, processes, limits, report, True)
        memory.release()
        changes = colour_changes_from_geometry(geometry, n, degree, si, stream_meta, None,
                                               o["colour_bands"], report, cells=cells)
        del geometry
        memory.release()
    fields, cells = _gather(payload, selected, degree, processes, limits, report)
    g = Gaussians(**fields)
    del fields
    if changes is not None:
        _add_changes(g.sh, changes)
    if not refines or colour:
        return g
    quality = meta.get("quality")
    return refine_decoded(g, side.payload if has_side else None, stream_meta, o["steps"],
                          o["device"], o["backend"], report, limits, prior=use_prior,
                          extra_views=o["extra_views"] if use_prior else 0,
                          quality=quality if isinstance(quality, int) else 0,
                          method=o["method"], cells=cells)


def _decode_part(task: tuple[Any, ...]) -> tuple[dict[str, np.ndarray], Any, dict[str, Any]]:
    """One part of a chunked file (GSZ.md 11.3): its Gaussians' fields, importance classes
    (None without) and stream metadata, checked against the chunk table. A task that ends
    with the spec of shared arrays and a first row gets its fields written there (no fields
    returned), where this process may open them."""
    data, degree, count, box, limits, geometry_only, *shared = task
    container, meta, n, d = checked_header(data, limits)
    if container.flags & FLAG_CHUNKED:
        raise ContainerError("corrupt .gsz file: a chunk's part is itself chunked")
    if n != count or d != degree:
        raise ContainerError(f"corrupt .gsz file: a part holds {n} Gaussians of SH {d}, the "
                             f"chunk table says {count} of SH {degree}")
    _check_required_streams(container)
    stream_meta = get_dict(meta, "streams")
    if geometry_only:
        values, classes = _decode_geometry(container, stream_meta, n, degree)
    else:
        g, classes = _decode_streams(container, stream_meta, n, degree, noop)
        values = g.as_arrays()
    lo, hi = np.asarray(box[:3], np.float32), np.asarray(box[3:], np.float32)
    if not ((values["means"] >= lo) & (values["means"] <= hi)).all():
        raise ContainerError("corrupt .gsz file: a part has a Gaussian outside its chunk's box")
    # (rows written where the caller reads them; sent back where this process may not)
    if shared and shared[0] is not None and parallel.write_rows(shared[0], shared[1], values):
        values = {}
    return values, classes, stream_meta


def _decode_geometry(container: Any, stream_meta: dict[str, Any], n: int, degree: int
                     ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The geometry's fields (no colours) and importance classes of a plain file: what
    :func:`_decode_streams` hands its colour fit; the streams after it are not decoded."""
    fields, features, _ = _decode_fields(container, stream_meta, n, degree, noop,
                                         geometry_only=True)
    return fields, features.get("imp")
