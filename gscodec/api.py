"""The public Python API: encode, decode and inspect .gsz data."""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from . import __version__, budget, memory
from .cameras import Camera, encoder_views, fitted, spread
from .codec import adaptive
from .codec.attributes import COLOUR_FEATURES, REGISTRY, ImportanceCodec, RowView, morton_order
from .codec.canonical import canonicalize
from .codec.meta import get_dict, get_int
from .codec.quality import DEFAULT_QUALITY, QualityParams, preset
from .formats.errors import ContainerError, GscodecError, LimitError, LimitWarning, unreadable
from .formats.gsz import (
    CODEC_ZSTD_JSON,
    DEFAULT_LIMITS,
    ENTRY_SIZE,
    HEADER_SIZE,
    MAGIC,
    ZSTD_UNKNOWN_SIZE,
    Limits,
    Stream,
    decode_meta,
    encode_meta,
    read_container,
    write_container,
)
from .formats.ply import read_ply_arrays, write_ply_arrays
from .gaussians import Gaussians

Progress = Callable[[int, int, str], None]
"""Called as ``progress(step, total_steps, description)`` before each step of long work."""

CODEC_CHANNELS_V1 = 1
ATTRIBUTE_OF_KIND = {codec.kind: name for name, codec in REGISTRY.items()}
OTHER_STREAMS = {"META": "metadata", "SIDE": "side information", "IMPC": "importance classes"}
IMPORTANCE = ImportanceCodec()
FORMAT_NAME = "gsz"
# the encoder decodes its own base layer (for the side information) whatever its size: it holds
# the scene already; its file is then checked against the decoder's DEFAULT_LIMITS
ENCODER_LIMITS = replace(DEFAULT_LIMITS, max_gaussians=1 << 62, max_memory=1 << 62)


MAX_COORDINATE = 1e32
"""Largest position coordinate the encoder accepts: a span of 2e32 over the coarsest grid (2^11
cells a side) keeps the POSN step under the 1e30 that GSZ.md 6.1 allows a decoder to accept."""


class InputError(GscodecError):
    """Gaussians handed to the API are not valid (non-finite values, zero quaternions)."""


def read_ply(path: str | os.PathLike[str]) -> Gaussians:
    """Read a 3DGS PLY (INRIA layout, any property order) into numpy-backed Gaussians."""
    return Gaussians.from_arrays(read_ply_arrays(path))


def write_ply(path: str | os.PathLike[str], gaussians: Gaussians, *, force: bool = False) -> None:
    """Write Gaussians as an INRIA-layout PLY, atomically; refuses an existing file unless
    ``force``."""
    write_ply_arrays(path, gaussians.as_arrays(), force=force)


def load_scene(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
               refine: bool = True) -> Gaussians:
    """Gaussians from a .gsz file or a scene in another format: INRIA PLY, PlayCanvas
    compressed PLY, .splat, .spz, SOG (.sog, meta.json or its folder); told apart by the file's
    first bytes (by the name for .splat). A .gsz file is decoded with the default settings of
    :func:`decode`, which refines files with side information (:func:`refinement_method`: on a
    CPU the colour fit, one render per side-information view; on a GPU :func:`default_steps`
    Adam steps) unless ``refine`` is false."""
    from .formats.readers import read_scene_arrays

    p = Path(path)
    if p.is_dir():
        return Gaussians.from_arrays(read_scene_arrays(p))
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise unreadable(p, e, GscodecError, "a scene file") from None
    if head == MAGIC:
        try:
            return decode(p, limits=limits, refine=refine)
        except ContainerError as e:
            raise type(e)(f"{p}: {e}") from None
    return Gaussians.from_arrays(read_scene_arrays(p))


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


def _attribute(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name == "sh_dc":
        return arrays["sh"][:, 0, :]
    if name == "sh_rest":
        return arrays["sh"][:, 1:, :]
    return arrays[name]


def _noop(step: int, total: int, what: str) -> None:
    pass


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

    The file is checked against the decoder's default limits (:func:`decode_refusal`): where a
    decoder with them would refuse it (a scene beyond the default memory budget, GSZ.md 4.1),
    it is still returned, with a :class:`~gscodec.LimitWarning` that names the limit and how to
    raise it; the budget is the decoding machine's business, not the file's."""
    report = progress or _noop
    params = preset(quality) if params is None else params
    arrays = _validated_arrays(gaussians)
    n = gaussians.n
    degree = gaussians.sh_degree
    codecs = [(name, c) for name, c in REGISTRY.items() if not (name == "sh_rest" and degree == 0)]
    total = len(codecs) + 1
    report(0, total, "ordering")
    order = morton_order(arrays["means"], params)
    # Rotations and scales may go in the canonical form of codec.canonical (same covariances);
    # both forms are coded and the smaller kept (the decoder cannot tell them apart, and the
    # features the scales publish do not depend on the axis order).
    shapes = [arrays]
    if params.canonical:
        canon = dict(arrays)
        canon["quats"], canon["log_scales"] = canonicalize(arrays["quats"], arrays["log_scales"])
        shapes.append(canon)
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
        if name == "quats":
            continue  # coded together with the scales, below
        if name == "log_scales":
            best = None
            for shape in shapes:
                scal = codec.encode(shape["log_scales"][order], params, features,
                                    adapts.get("log_scales"))
                rotn = REGISTRY["quats"].encode(shape["quats"][order], params,
                                                {**features, **scal.features},
                                                adapts.get("quats"))
                size = len(scal.payload) + len(rotn.payload)
                if best is None or size < best[0]:
                    best = (size, scal, rotn)
            assert best is not None
            pair = [(codec, best[1]), (REGISTRY["quats"], best[2])]
        else:
            source = _attribute(arrays, name)
            # the SH rows are gathered block by block inside the codec, not copied whole
            values = RowView(source, order) if name == "sh_rest" else source[order]
            if name in adapts:
                pair = [(codec, codec.encode(values, params, features, adapts[name]))]
            else:
                pair = [(codec, codec.encode(values, params, features))]
        if name == "means" and classes is not None:
            pair.append((IMPORTANCE, IMPORTANCE.encode(classes, adaptive.DEFAULT_CLASSES,
                                                       {**features, **pair[0][1].features})))
        for c, out in pair:
            features.update(out.features)
            streams.append(Stream(c.kind, CODEC_CHANNELS_V1, True, out.payload))
            stream_meta[c.kind] = out.meta
    meta = {
        "format": FORMAT_NAME,
        "n": n,
        "sh_degree": degree,
        "quality": quality,
        "params": params.as_dict(),
        "order": "morton",
        "encoder": f"gscodec {__version__}",
        "streams": stream_meta,
    }
    def container() -> bytes:
        return write_container([Stream("META", CODEC_ZSTD_JSON, True, encode_meta(meta))]
                               + streams)

    if views <= 0:
        data = container()
    else:
        report(total, total + 1, "side information")
        from . import sideinfo

        cams = (sideinfo.cameras(arrays["means"], views, sideinfo_size, sideinfo_scale)
                if cameras is None else
                training_views(cameras, views, sideinfo_size, sideinfo_scale))
        # the original's renders first (the render does not depend on the storage order); then
        # this function holds no reference to the input, so that a caller that passed the only
        # one (the CLI does) does not hold two scenes while the decoded one is rendered
        del features, source, values, shapes, shape, classes, adapts
        if params.canonical:
            del canon
        memory.release()
        originals = sideinfo.render_views(Gaussians.from_arrays(arrays), cams, backend)
        del gaussians, arrays
        memory.release()
        base = decode(container(), refine=False, limits=ENCODER_LIMITS)
        # the gains are fitted on the renders the residuals come from: kept only for them
        renders: list[Any] | None = [] if prior_gains is not False else None
        si = sideinfo.from_renders(originals, base, cams, scale=sideinfo_scale,
                                   step=sideinfo_step, backend=backend, renders=renders)
        del originals
        # residuals that all quantize to zero carry nothing to refine towards: no stream
        if any(r.any() for r in si.residuals):
            if prior_gains is not False:
                si.prior = _prior_gains(base, si, quality, backend, prior_gains is None,
                                        renders)
            payload, side_meta = sideinfo.encode(si)
            stream_meta[sideinfo.KIND] = side_meta
            streams.append(Stream(sideinfo.KIND, sideinfo.CODEC, False, payload))
        data = container()
    # the decoder's limits are about the decoder's machine: a scene beyond its default budget is
    # written (it decodes with larger limits), but never silently (GSZ.md 4.1)
    refusal = decode_refusal(data)
    if refusal is not None:
        hint = "" if "--max-memory" in refusal else (
            "; decode it with larger limits (gscodec decode --max-gaussians N, "
            "gscodec.decode(..., limits=Limits(...))) or without refinement (--no-refine)")
        warnings.warn(LimitWarning(
            f"a decoder with the default limits refuses this file: {refusal}{hint}"),
            stacklevel=2)
    report(total, total, "done")
    return data, order


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


def _load(data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str]) -> bytes:
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        return bytes(data_or_path)
    p = Path(data_or_path)
    try:
        return p.read_bytes()
    except OSError as e:
        raise unreadable(p, e, ContainerError, "a .gsz file") from None


def _header(data: bytes, limits: Limits, memory: bool = True
            ) -> tuple[Any, dict[str, Any], int, int]:
    """The container, metadata, Gaussian count and SH degree, checked against ``limits``; with
    ``memory``, also the base layer's estimated memory (GSZ.md 4.1)."""
    container = read_container(data, limits)
    meta, n, degree = checked_meta(container.streams[0].payload, limits)
    if memory:  # the base layer's memory against the budget (4.1), before anything is decoded
        budget.check(budget.Estimate(_base_bytes(container, n, degree, limits)), limits,
                     _declares(n, degree))
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


def _declares(n: int, degree: int) -> str:
    return f"file declares {n} Gaussians (SH {degree})"


def _base_bytes(container: Any, n: int, degree: int, limits: Limits) -> int:
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


def resolve_device(device: str) -> str:
    """``"cuda"`` or ``"cpu"`` for a refinement device option ("auto": CUDA when available)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _renders_pairs(device: str, backend: str) -> bool:
    """Whether refinement on ``device`` with ``backend`` renders with the PyTorch rasterizer,
    whose (pixel, Gaussian) pairs the budget counts, rather than gsplat (as _refine_decoded
    chooses)."""
    if resolve_device(device) != "cuda":
        return True
    from .render import resolve_backend

    return resolve_backend(backend) != "gsplat"


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
                                           prior=use_prior, pairs=_renders_pairs(device, backend))
    budget.check(budget.Estimate(_base_bytes(container, n, degree, limits), side_bytes,
                                 refine_bytes), limits, _declares(n, degree))
    return has_side, refines, use_prior


def decode_refusal(data: bytes, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """Why :func:`decode` with its default options (refinement on a machine without a GPU, the
    largest estimate) and ``limits`` refuses ``data`` on its sizes before decoding it (the
    LimitError's message), or None where it does not. The encoder checks its own files so."""
    try:
        container, meta, n, degree = _header(data, limits)
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
    report = progress or _noop
    data = _load(data_or_path)
    container, meta, n, degree = _header(data, limits)
    del data  # (the container holds the payloads)
    stream_meta = get_dict(meta, "streams")
    for s in container.streams[1:]:
        known = (s.kind in ATTRIBUTE_OF_KIND or s.kind == IMPORTANCE.kind
                 or (s.kind == "SIDE" and s.codec == 1))
        if s.required and not known:
            raise ContainerError(f"unsupported .gsz file: unknown required stream {s.kind!r}")
    has_side, refines, use_prior = _decode_plan(
        container, stream_meta, n, degree, limits, refine=refine, steps=steps, device=device,
        backend=backend, prior=prior, extra_views=extra_views, method=method)
    codecs = [(name, c) for name, c in REGISTRY.items() if not (name == "sh_rest" and degree == 0)]
    features: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    side = container.get("SIDE")
    # the colour fit needs the geometry only: it runs before the colours are decoded, so that
    # its working memory and the SH array are never held together
    colour_fit = refines and has_side and refinement_method(
        method, resolve_device(device), steps, use_prior, n) == "colour"
    si = _side_info(side.payload, stream_meta, limits) if colour_fit else None
    colour_fit = si is not None
    changes = None
    sh: np.ndarray | None = None
    for i, (name, codec) in enumerate(codecs):
        if name == "sh_dc":
            # the geometry's features that no colour stream reads go
            features = {k: v for k, v in features.items()
                        if k in COLOUR_FEATURES or k == "imp"}
            if colour_fit:
                assert si is not None
                memory.release()
                changes = _colour_changes(values, n, degree, si, stream_meta,
                                          features.get("imp"), colour_bands, report)
                memory.release()
            # the colours are decoded straight into the SH array (no second copy)
            sh = np.empty((n, (degree + 1) ** 2, 3), np.float32)
        report(i, len(codecs), f"decoding {name}")
        s = container.get(codec.kind)
        if s is None:
            raise ContainerError(f"corrupt .gsz file: missing stream {codec.kind!r}")
        if s.codec != CODEC_CHANNELS_V1:
            raise ContainerError(f"unsupported .gsz file: stream {s.kind!r} uses codec {s.codec}")
        sub = get_dict(stream_meta, codec.kind, "streams.")
        if name == "sh_rest":
            assert sh is not None
            out = codec.decode(s.payload, sub, n, features, out=sh[:, 1:, :])
        else:
            out = codec.decode(s.payload, sub, n, features)
        features.update(out.features)
        if name == "sh_dc":
            assert sh is not None
            sh[:, 0, :] = out.values
            if changes is not None:
                _add_changes(sh, changes[:, :1])
                changes = changes[:, 1:].clone() if changes.shape[1] > 1 else None
        elif name != "sh_rest":
            values[name] = out.values
        imp = container.get(IMPORTANCE.kind) if name == "means" else None
        if imp is not None:
            if imp.codec != CODEC_CHANNELS_V1:
                raise ContainerError(f"unsupported .gsz file: stream 'IMPC' uses codec {imp.codec}")
            out = IMPORTANCE.decode(imp.payload, get_dict(stream_meta, IMPORTANCE.kind,
                                                          "streams."), n, features)
            features.update(out.features)
    report(len(codecs), len(codecs), "done")
    assert sh is not None
    g = Gaussians(values["means"], values["quats"], values["log_scales"],
                  values["opacity_logits"], sh)
    del values, out
    if changes is not None:
        _add_changes(sh[:, 1:], changes)
        del changes
    memory.release()
    if refines and not colour_fit:
        quality = meta.get("quality")
        g = _refine_decoded(g, side.payload if has_side else None, stream_meta, steps, device,
                            backend, report, limits,
                            prior=use_prior, extra_views=extra_views if use_prior else 0,
                            quality=quality if isinstance(quality, int) else 0,
                            classes=features.get("imp"), method=method)
    return g


def _add_changes(sh: np.ndarray, changes: Any) -> None:
    """``sh[:, :k] += changes`` (float32 ``[n, k, 3]`` tensor) in blocks of rows."""
    k = changes.shape[1]
    for a in range(0, sh.shape[0], 1 << 16):
        sh[a : a + (1 << 16), :k] += changes[a : a + (1 << 16)].numpy()


def _side_info(payload: bytes, stream_meta: dict[str, Any], limits: Limits) -> Any:
    """The decoded ``SIDE`` stream, or None where it has no views."""
    from . import sideinfo

    si = sideinfo.decode(payload, get_dict(stream_meta, "SIDE", "streams."), limits)
    return si if si.cameras else None


def _colour_changes(values: dict[str, np.ndarray], n: int, degree: int, si: Any,
                    stream_meta: dict[str, Any], classes: np.ndarray | None,
                    colour_bands: int | None, report: Progress) -> Any:
    """The colour fit of :func:`decode` from the decoded geometry (``values`` of the means,
    rotations, scales and opacities) and the side information: the changes of the first SH
    coefficients (:func:`gscodec.colourfit.colour_changes`), bounded by their quantization
    cells, with the SH bands up to ``colour_bands`` (default 1 where the scene has higher
    bands, else 0)."""
    from .colourfit import colour_changes

    bands = (1 if degree else 0) if colour_bands is None else max(0, min(colour_bands, degree))
    geometry = Gaussians(values["means"], values["quats"], values["log_scales"],
                         values["opacity_logits"], np.zeros((n, 1, 3), np.float32))
    return colour_changes(geometry, si.cameras, si.residuals, bands=bands,
                          max_change=quantization_halves(degree, stream_meta, classes),
                          progress=lambda i, total: report(i, total, "fitting colours"))


def refinement_plan(has_side: bool, prior: str, extra_views: int,
                    side_meta: Any = None) -> tuple[bool, bool]:
    """Whether decode refines a file (with or without side information) and whether it uses the
    learned prior, for the ``prior`` and ``extra_views`` options of :func:`decode`: "auto" uses
    it when the side information carries the encoder's gains for the shipped weights
    (``side_meta``: the SIDE stream's metadata)."""
    use_prior = prior == "on" or (prior == "auto" and _gains_for_shipped_prior(side_meta))
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


VIEW_GAUSSIANS = 8_000_000  # side-information views x Gaussians the default allows
MIN_DEFAULT_VIEWS = 4


def default_views(g: Gaussians, quality: int = DEFAULT_QUALITY) -> int:
    """Side-information views the CLI asks for by default: 8, or 16 for scenes with higher SH
    bands, whose view-dependent colour needs more directions to be pinned down (measured on
    playbot, SH 2, preset 1, with the presets before 2026-11-27: +0.34 dB at equal bytes with 8
    views, +0.70 dB with 16; with today's presets 16 views give +0.52 dB, and 24 views at 4x4
    or 16-32 views at 8x8 blocks did worse on the held-out views; tuning split, the views
    before 2026-12-01). Each view costs the encoder two renders and the decoder one, so for
    scenes of more than :data:`VIEW_GAUSSIANS` / 16 Gaussians the count falls with the
    Gaussians (views x Gaussians at most :data:`VIEW_GAUSSIANS`, at least
    :data:`MIN_DEFAULT_VIEWS` views): 8 views for 1M Gaussians. ``quality`` is not used yet.

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
    full = 16 if g.sh_degree > 0 else 8
    if g.n <= 0:
        return full
    return max(MIN_DEFAULT_VIEWS, min(full, VIEW_GAUSSIANS // g.n))


def default_steps(device: str, n: int = 0) -> int:
    """Gradient refinement steps when none are asked for: 300 on a GPU; on the CPU 30 for up to
    300,000 Gaussians, fewer (down to 10) for larger scenes so that the time stays bounded.
    Measured on massa (tuning split, 4 evaluation views of seed 1 at 512 px): 30 steps gain
    +0.53 / +0.60 / +0.54 / +0.05 dB at equal bytes at presets 1 / 3 / 5 / 7
    (``benchmarks/results/refine-methods-tuning.md``); at preset 7, 100 steps gain +0.52 dB
    (``refine-methods-massa-q7.md``; 448 s against 293 s for 30, both under load)."""
    if device == "cuda":
        return 300
    if n <= CPU_FULL_STEPS_GAUSSIANS:
        return 30
    return max(10, round(30 * CPU_FULL_STEPS_GAUSSIANS / n))


def _refine_decoded(g: Gaussians, payload: bytes | None, stream_meta: dict[str, Any],
                    steps: int | None, device: str, backend: str, report: Progress,
                    limits: Limits = DEFAULT_LIMITS, *, prior: bool = False,
                    extra_views: int = 0, quality: int = 0,
                    classes: np.ndarray | None = None, method: str = "auto") -> Gaussians:
    """The refinement of :func:`decode`. With ``prior`` (``--prior on``, or ``auto`` on a file
    with non-zero gains) the network's correction is scaled by the gains the file carries for
    the shipped weights, as is the pixel-level loss (so a file whose gains are 0 refines as part
    1 does, but for extra views, whose targets are then the decoded renders); only files without
    gains for these weights get the network's own calibrated gains and a pixel-level weight of
    1."""

    from . import sideinfo
    from .refine import RefineConfig, refine
    from .render import resolve_backend

    si = _side_info(payload, stream_meta, limits) if payload is not None else None
    if si is None and extra_views <= 0:
        return g
    device = resolve_device(device)
    backend = resolve_backend(backend) if device == "cuda" else "cpu"
    # (the colour fit runs inside decode, before the colours are decoded)
    assert refinement_method(method, device, steps, prior, g.n) != "colour" or si is None
    n_steps = default_steps(device, g.n) if steps is None else steps
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
                    device=device, cells=quantization_cells(g, stream_meta, classes),
                    progress=lambda i, total, loss: report(i, total, f"refining, loss {loss:.4f}"))
    return result.gaussians


def quantization_halves(sh_degree: int, stream_meta: dict[str, Any],
                        classes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The half-widths of the colours' quantization cells of decoded Gaussians (the cells of
    :func:`quantization_cells` are the decoded values plus or minus them): ``sh_dc``
    broadcastable to ``[n, 1, 3]`` and, for SH scenes, ``sh_rest`` to ``[n, K, 3]``; the leading
    axis is n only where the importance classes give rows different steps (else 1: no memory
    per Gaussian)."""
    from .codec.attributes import _band_of
    from .gaussians import SH_C0

    def rows(half: np.ndarray, kind: str) -> np.ndarray:
        if "mult" in stream_meta[kind] and classes is not None:
            mult = np.asarray(stream_meta[kind]["mult"], np.float64)[classes]
            return (half * mult[:, None, None]).astype(np.float32)
        return half.astype(np.float32)

    out = {"sh_dc": rows(np.full((1, 1, 1), stream_meta["SHDC"]["step"] / 255 / SH_C0 / 2),
                         "SHDC")}
    if sh_degree:
        bands = stream_meta["SHRS"]["steps"]
        half = np.array([bands[_band_of(j + 1) - 1] / 2 for j in range((sh_degree + 1) ** 2 - 1)])
        out["sh_rest"] = rows(half[None, :, None], "SHRS")
    return out


def quantization_cells(g: Gaussians, stream_meta: dict[str, Any],
                       classes: np.ndarray | None = None,
                       groups: tuple[str, ...] | None = None) -> dict[str, Any]:
    """For each parameter group of decoded Gaussians, the (low, high) bounds of the quantization
    cell each value came from (torch tensors): refinement may move values within them only.
    Rotations get a box of +-step/2 on every component (the smallest-three cell, loosely).
    ``classes`` (the decoded importance classes) widens the cells of streams with per-class
    steps by each row's multiplier. ``groups``: only these (default: all; each costs two
    copies of its values)."""
    import torch


    def box(values: np.ndarray, half: Any, kind: str | None = None) -> tuple[Any, Any]:
        half = np.asarray(half, np.float64)
        if kind is not None and "mult" in stream_meta[kind] and classes is not None:
            mult = np.asarray(stream_meta[kind]["mult"], np.float64)[classes]
            half = half * mult.reshape((-1,) + (1,) * (values.ndim - 1))
        t = torch.from_numpy(np.ascontiguousarray(values, np.float32))
        h = torch.as_tensor(half.astype(np.float32))
        return t - h, t + h

    want = set(groups) if groups is not None else {"means", "log_scales", "quats", "sh_dc",
                                                    "opacity_logits", "sh_rest"}
    cells = {}
    if "means" in want:
        cells["means"] = box(g.means, stream_meta["POSN"]["step"] / 2)
    if "log_scales" in want:
        cells["log_scales"] = box(g.log_scales, stream_meta["SCAL"]["step"] / 2, "SCAL")
    if "quats" in want:
        cells["quats"] = box(g.quats, stream_meta["ROTN"]["step"] / 2, "ROTN")
    halves = quantization_halves(g.sh_degree, stream_meta, classes)
    if "sh_dc" in want:
        cells["sh_dc"] = box(g.sh[:, :1], halves["sh_dc"])
    if "opacity_logits" in want:
        levels = stream_meta["OPAC"]["levels"]
        alpha = 1 / (1 + np.exp(-g.opacity_logits.astype(np.float64)))
        lo = np.clip(alpha - 0.5 / levels, 1e-6, 1 - 1e-6)
        hi = np.clip(alpha + 0.5 / levels, 1e-6, 1 - 1e-6)
        cells["opacity_logits"] = (torch.from_numpy(np.log(lo / (1 - lo)).astype(np.float32)),
                                   torch.from_numpy(np.log(hi / (1 - hi)).astype(np.float32)))
    if g.sh_degree and "sh_rest" in want:
        cells["sh_rest"] = box(g.sh[:, 1:], halves["sh_rest"])
    return cells


def _table_bytes(payload: bytes, meta: Any) -> int | None:
    """Bytes of a channel-coded payload spent on probability tables (each part's, for a stream
    with per-class steps); None where the payload does not parse that far."""
    sizes = meta.get("sizes") if isinstance(meta, dict) and "mult" in meta else [len(payload)]
    if not isinstance(sizes, list) or not all(isinstance(v, int) and v >= 0 for v in sizes):
        return None
    total, pos = 0, 0
    for size in sizes:
        if size < 4 or pos + size > len(payload):
            return None
        total += 4 + struct.unpack_from("<I", payload, pos)[0]
        pos += size
    return total


def inspect(
    data_or_path: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Where the bytes of a .gsz file go: per stream (and the attribute it holds) its bytes,
    bits per Gaussian and the part spent on probability tables; container overhead; totals.
    Also the decoder's estimated memory for the base layer (``decode_memory_bytes``, GSZ.md
    4.1), which inspect reports without refusing the file over it (it decodes nothing)."""
    data = _load(data_or_path)
    container, meta, n, degree = _header(data, limits, memory=False)
    per_g = (lambda b: 8.0 * b / n) if n else (lambda b: 0.0)
    rows = []
    stream_meta = meta.get("streams") if isinstance(meta.get("streams"), dict) else {}
    for s in container.streams:
        tables = None
        if s.kind in ATTRIBUTE_OF_KIND or s.kind == IMPORTANCE.kind:
            tables = _table_bytes(s.payload, stream_meta.get(s.kind))
        rows.append({
            "stream": s.kind,
            "attribute": ATTRIBUTE_OF_KIND.get(s.kind, OTHER_STREAMS.get(s.kind)),
            "required": s.required,
            "bytes": len(s.payload),
            "bits_per_gaussian": per_g(len(s.payload)),
            "table_bytes": tables,
        })
    overhead = HEADER_SIZE + ENTRY_SIZE * len(container.streams)
    side_meta = stream_meta.get("SIDE")
    return {
        "file_bytes": len(data),
        "gaussians": n,
        "sh_degree": degree,
        "quality": meta.get("quality"),
        "encoder": meta.get("encoder"),
        "version": f"{container.version[0]}.{container.version[1]}",
        "container_overhead_bytes": overhead,
        "streams": rows,
        "bits_per_gaussian": per_g(len(data)),
        # the encoder's gains for the learned prior (SIDE metadata), as stored, or None
        "side_prior": side_meta.get("prior") if isinstance(side_meta, dict) else None,
        "side_views": (len(side_meta["views"]) if isinstance(side_meta, dict)
                       and isinstance(side_meta.get("views"), list) else 0),
        # the decoder's estimated peak memory for the base layer (GSZ.md 4.1; the side
        # information and refinement add to it), which decode checks against limits.max_memory
        "decode_memory_bytes": _base_bytes(container, n, degree, limits),
    }
