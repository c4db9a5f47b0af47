"""The decoder pipeline: the header and metadata checked against the limits and the memory
budget before anything is allocated (GSZ.md 4, 4.1), the plan of what this decode will do,
the attribute streams decoded in their order (the colour fit of :mod:`gscodec.refinement`
between the geometry and the colours), then the refinement the plan chose."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from . import budget, memory
from .codec.attributes import COLOUR_FEATURES, REGISTRY
from .codec.meta import get_dict, get_int
from .formats.errors import ContainerError, LimitError, unreadable
from .formats.gsz import DEFAULT_LIMITS, ZSTD_UNKNOWN_SIZE, Limits, decode_meta, read_container
from .gaussians import Gaussians
from .progress import Progress, noop
from .refinement import (
    METHODS,
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
    """The budget's estimate for decoding the base layer (gscodec.budget.base_bytes)."""
    return base_memory(container.streams[0].payload, n, degree, container.file_size,
                       container.get(IMPORTANCE.kind) is not None, limits)


def base_memory(meta_payload: bytes, n: int, degree: int, file_size: int, classes: bool,
                limits: Limits) -> int:
    """:func:`gscodec.budget.base_bytes` from the header: the metadata stream's payload (its
    decompressed size), the file's size and whether it has importance classes."""
    meta_bytes = zstandard.get_frame_parameters(meta_payload).content_size
    if meta_bytes == ZSTD_UNKNOWN_SIZE:
        meta_bytes = limits.max_meta_bytes  # (it decompressed to at most that)
    return budget.base_bytes(n, degree, file_bytes=file_size, meta_bytes=meta_bytes,
                             classes=classes)


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
    refines, use_prior = refinement_plan(has_side, prior, extra_views, side_meta)
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
) -> Gaussians:
    """Decompress .gsz bytes (or the file at a path) into numpy-backed Gaussians.

    If the file carries side information and ``refine`` is true, the decoded Gaussians are
    refined on ``device`` ("auto": CUDA when available) as ``method`` says
    (:func:`refinement_method`; "auto": on a CPU the colour fit of :mod:`gscodec.colourfit`,
    one render per side-information view, of the SH bands up to ``colour_bands``, default 1
    for scenes with higher bands, else 0; on a GPU, or
    where ``steps`` is given, :mod:`gscodec.refine`'s ``steps`` Adam steps, default
    :func:`default_steps`) against targets at the side-information views:
    with ``prior`` "on" the learned image prior's restorations of the decoded renders
    (:func:`gscodec.restore.restore_targets`), with "off" the decoded renders plus the
    upsampled coarse residuals; "auto" (the default) uses the prior where the side information
    carries the encoder's gains for the shipped weights (:func:`gscodec.restore.fit_gains`),
    with those gains.
    ``extra_views`` > 0 (with the prior) adds views without side information, restored by the
    network alone; then files without side information are refined too. Raises ContainerError
    (or its subclass LimitError) for anything wrong with the data."""
    if prior not in ("auto", "on", "off"):
        raise ValueError("prior must be 'auto', 'on' or 'off'")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    report = progress or noop
    data = load_data(data_or_path)
    container, meta, n, degree = checked_header(data, limits)
    del data  # (the container holds the payloads)
    stream_meta = get_dict(meta, "streams")
    _check_required_streams(container)
    has_side, refines, use_prior = _decode_plan(
        container, stream_meta, n, degree, limits, refine=refine, steps=steps, device=device,
        backend=backend, prior=prior, extra_views=extra_views, method=method)
    side = container.get("SIDE")
    # the colour fit needs the geometry only: it runs before the colours are decoded, so that
    # its working memory and the SH array are never held together
    colour_fit = refines and has_side and refinement_method(
        method, resolve_device(device), steps, use_prior, n) == "colour"
    si = side_info(side.payload, stream_meta, limits) if colour_fit else None
    fit = None
    if si is not None:
        def fit(values: dict[str, np.ndarray], classes: np.ndarray | None) -> Any:
            return colour_changes_from_geometry(values, n, degree, si, stream_meta, classes,
                                                colour_bands, report)
    g, classes = _decode_streams(container, stream_meta, n, degree, report, fit)
    memory.release()
    if refines and si is None:
        quality = meta.get("quality")
        g = refine_decoded(g, side.payload if has_side else None, stream_meta, steps, device,
                           backend, report, limits,
                           prior=use_prior, extra_views=extra_views if use_prior else 0,
                           quality=quality if isinstance(quality, int) else 0,
                           classes=classes, method=method)
    return g


def _check_required_streams(container: Any) -> None:
    for s in container.streams[1:]:
        known = (s.kind in ATTRIBUTE_OF_KIND or s.kind == IMPORTANCE.kind
                 or (s.kind == "SIDE" and s.codec == 1))
        if s.required and not known:
            raise ContainerError(f"unsupported .gsz file: unknown required stream {s.kind!r}")


def _stream(container: Any, kind: str) -> Any:
    """The channel-coded stream ``kind`` (ContainerError where it is missing or uses another
    codec)."""
    s = container.get(kind)
    if s is None:
        raise ContainerError(f"corrupt .gsz file: missing stream {kind!r}")
    if s.codec != CODEC_CHANNELS_V1:
        raise ContainerError(f"unsupported .gsz file: stream {s.kind!r} uses codec {s.codec}")
    return s


def _decode_streams(container: Any, stream_meta: dict[str, Any], n: int, degree: int,
                    report: Progress, colour_fit: Any = None
                    ) -> tuple[Gaussians, np.ndarray | None]:
    """The base layer's Gaussians and importance classes (None without), each codec's stream
    in REGISTRY order. Before the first colour codec the geometry's features that no colour
    stream reads are dropped and ``colour_fit``, where given, is called with the decoded
    geometry and classes; the changes it returns are added to the first SH coefficients.
    Codecs of a part of a field (the SH codecs' coefficients) decode into that field."""
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
            if colour_fit is not None:
                memory.release()
                changes = colour_fit(fields, features.get("imp"))
                memory.release()
        report(i, len(codecs), f"decoding {name}")
        s = _stream(container, codec.kind)
        sub = get_dict(stream_meta, codec.kind, "streams.")
        if codec.coeffs is not None:
            if codec.field not in fields:  # decoded straight into the field (no second copy)
                fields[codec.field] = np.empty((n, (degree + 1) ** 2, 3), np.float32)
            out = codec.decode(s.payload, sub, n, features,
                               out=fields[codec.field][:, codec.coeffs])
        else:
            out = codec.decode(s.payload, sub, n, features)
            fields[codec.field] = out.values
        features.update(out.features)
        if name == IMPORTANCE.after and container.get(IMPORTANCE.kind) is not None:
            imp = _stream(container, IMPORTANCE.kind)
            features.update(IMPORTANCE.decode(imp.payload, get_dict(
                stream_meta, IMPORTANCE.kind, "streams."), n, features).features)
    report(len(codecs), len(codecs), "done")
    del out
    g = Gaussians(**fields)
    del fields
    if changes is not None:
        _add_changes(g.sh, changes)
    return g, features.get("imp")


def _add_changes(sh: np.ndarray, changes: Any) -> None:
    """``sh[:, :k] += changes`` (float32 ``[n, k, 3]`` tensor) in blocks of rows."""
    k = changes.shape[1]
    for a in range(0, sh.shape[0], 1 << 16):
        sh[a : a + (1 << 16), :k] += changes[a : a + (1 << 16)].numpy()
