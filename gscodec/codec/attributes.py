"""The base attribute codec: one registry entry per Gaussian attribute.

Each entry quantizes one attribute to integers and codes them with the channel coder
(:mod:`.channels`); to learn how an attribute is coded, read its line in :data:`REGISTRY`, then
its class. Every codec is a pair of pure functions::

    encode(values, params, features) -> Encoded(payload, meta, features)
    decode(payload, meta, n, features) -> Decoded(values, features)

``values`` are the attribute's float32 array with the Gaussians already in Morton order,
``params`` the quality preset, ``meta`` a small JSON-able dict stored in the file's metadata, and
``features`` the side features (integer arrays, one value per Gaussian) that earlier codecs
published and later ones may use as coding contexts. Decoding is exact with respect to the
quantized integers and deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .. import memory
from ..formats.errors import ContainerError
from ..gaussians import SH_C0
from . import morton, shtransform
from .adaptive import MAX_CLASSES, MAX_MULT
from .canonical import canonicalize
from .channels import GroupSpec, decode_group, encode_group
from .entropy import (
    AnsEncoder,
    alphabet_limit,
    bit_length,
    join,
    raw_bits_of,
    split,
    table_from_counts,
    write_table,
)
from .meta import get_float, get_float_list, get_int, get_int_list, get_str
from .payload import Unpacked, pack, table_bytes
from .quality import QualityParams, robust_diagonal

Features = dict[str, np.ndarray]
Adapt = tuple[float, list[int]]
"""Per-class steps of an attribute (codec.adaptive): the preset's step times ``factor`` is the
unit, class c takes ``unit * mults[c]``."""
INT_LIMIT = 1 << 30  # quantized values are clamped to +-2**30 so that they fit int32


@dataclass
class Encoded:
    payload: bytes
    meta: dict[str, Any]
    features: Features = field(default_factory=dict)
    codec: int = 1  # the stream's codec number (GSZ.md 3): 1, the channel coder, but where said


@dataclass
class Decoded:
    values: np.ndarray
    features: Features = field(default_factory=dict)


_BLOCK_ROWS = 1 << 16


class RowView:
    """The rows of ``array`` in the order ``order``, without copying them all at once:
    ``view[a:b]`` is ``array[order[a:b]]``. Codecs that quantize in blocks accept it in place
    of an array (the pipeline uses it for the large SH arrays to bound memory)."""

    def __init__(self, array: np.ndarray, order: np.ndarray) -> None:
        self.array = array
        self.order = order
        self.shape = (order.shape[0], *array.shape[1:])

    def __getitem__(self, key: slice) -> np.ndarray:
        return self.array[self.order[key]]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.array[self.order]
        return out if dtype is None else out.astype(dtype)


def _quantize(values: np.ndarray | RowView, step: float | np.ndarray,
              offset: float | np.ndarray = 0.0) -> np.ndarray:
    """Channel-major ``[C, N]`` of ``rint((values + offset) / step)`` for ``values [N, C]`` (or
    [N, ...] flattened per row; step and offset scalars or per channel), clamped to +-2**30, in
    blocks of rows. The result is int16 when every value fits (the usual case, half the memory),
    else int32."""
    n = values.shape[0]
    c = int(np.prod(values.shape[1:]))
    steps = np.broadcast_to(np.asarray(step, dtype=np.float64), (c,))[:, None]
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64), (c,))[:, None]
    out = np.empty((c, n), np.int16)
    for a in range(0, n, _BLOCK_ROWS):
        block = np.asarray(values[a : a + _BLOCK_ROWS], dtype=np.float64).reshape(-1, c).T
        q = np.clip(np.rint((block + offset) / steps), -INT_LIMIT, INT_LIMIT)
        if out.dtype == np.int16 and q.size and (q.min() < -(1 << 15) or q.max() >= 1 << 15):
            out = out.astype(np.int32)
        out[:, a : a + _BLOCK_ROWS] = q
    return out


def _dequantize(X: np.ndarray, step: float | np.ndarray, offset: float | np.ndarray = 0.0,
                scale: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
    """``[N, C]`` float32 of ``(X * step - offset) / scale`` for channel-major ``X [C, N]`` (step
    and offset scalars or per channel), in blocks of rows; into ``out`` where given."""
    c, n = X.shape
    steps = np.broadcast_to(np.asarray(step, dtype=np.float64), (c,))[None, :]
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64), (c,))[None, :]
    if out is None:
        out = np.empty((n, c), np.float32)
    for a in range(0, n, _BLOCK_ROWS):
        block = X[:, a : a + _BLOCK_ROWS].T.astype(np.float64)
        with np.errstate(over="ignore"):  # out-of-range values are caught as non-finite
            out[a : a + _BLOCK_ROWS] = (block * steps - offset) / scale
    return out


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ContainerError(f"corrupt stream: decoded {what} are not finite")
    return values


# ---------------------------------------------------------------------------------------------
# matrices of integers: direct channel coding, or a palette of distinct rows plus indices


_PALETTE_PROBE_ROWS = 16384


def _repeats_often(X: np.ndarray) -> bool:
    """Whether a sample of the columns of ``X [C, N]`` has many repeated vectors, i.e. whether a
    palette could pay off (columns that went through a codebook, or mostly zero vectors)."""
    n = X.shape[1]
    cols = np.linspace(0, n - 1, min(n, _PALETTE_PROBE_ROWS)).astype(np.int64)
    sample = np.ascontiguousarray(X[:, cols].T)
    rows = sample.view(np.dtype((np.void, sample.dtype.itemsize * sample.shape[1]))).ravel()
    return np.unique(rows).size <= 0.9 * cols.size


def encode_matrix(
    X: np.ndarray, spec: GroupSpec, features: Features, *, allow_palette: bool = False
) -> tuple[bytes, dict[str, Any]]:
    """Code a channel-major int32 matrix [C, N]; with ``allow_palette`` also try a palette of its
    distinct column vectors (sorted by frequency) plus one index per Gaussian, and keep the
    smaller."""
    enc, tables = AnsEncoder(), bytearray()
    plans = encode_group(X, spec, features, enc, tables)
    best = (pack(tables, enc), {"mode": "direct", "plans": plans})
    n = X.shape[1]
    if allow_palette and n >= 1024 and _repeats_often(X):
        XT = np.ascontiguousarray(X.T)
        rows = XT.view(np.dtype((np.void, XT.dtype.itemsize * XT.shape[1]))).ravel()
        uniq, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
        del XT, rows
        by_freq = np.argsort(-counts, kind="stable")
        rank = np.empty_like(by_freq)
        rank[by_freq] = np.arange(by_freq.size)
        palette = np.ascontiguousarray(uniq[by_freq].view(X.dtype).reshape(-1, X.shape[0]).T)
        index = rank[inverse.ravel()].astype(np.int32)[None, :]
        enc, tables = AnsEncoder(), bytearray()
        pal_spec = GroupSpec(spec.refs, spec.ctx_refs, True, (), spec.use_act)
        pal_plans = encode_group(palette, pal_spec, {}, enc, tables)
        idx_spec = GroupSpec(((),), ((),), True, spec.features)
        idx_plans = encode_group(index, idx_spec, features, enc, tables)
        payload = pack(tables, enc)
        if len(payload) < len(best[0]):
            meta = {"mode": "palette", "k": int(palette.shape[1]), "palette": pal_plans,
                    "index": idx_plans}
            best = (payload, meta)
    return best


def decode_matrix(
    payload: bytes, meta: dict[str, Any], n: int, n_channels: int, spec: GroupSpec,
    features: Features, sink: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray | None:
    """The int32 matrix ``[n_channels, n]``; with ``sink``, its rows one by one through
    ``sink(channel, row)`` instead (:func:`channels.decode_group`), returning None."""
    if not isinstance(meta, dict):
        raise ContainerError("bad metadata: a matrix description must be an object")
    mode = get_str(meta, "mode", ("direct", "palette"))
    unpacked = Unpacked(payload)
    if mode == "direct":
        X = decode_group(n, meta.get("plans"), n_channels, spec, features, unpacked.ans,
                         unpacked.tables, sink)
        unpacked.finish()
        return X
    else:
        k = get_int(meta, "k", 1, max(1, n))
        pal_spec = GroupSpec(spec.refs, spec.ctx_refs, True, (), spec.use_act)
        palette = decode_group(k, meta.get("palette"), n_channels, pal_spec, {}, unpacked.ans,
                               unpacked.tables)
        idx_spec = GroupSpec(((),), ((),), True, spec.features)
        index = decode_group(n, meta.get("index"), 1, idx_spec, features, unpacked.ans,
                             unpacked.tables)[0]
        if n and (index.min() < 0 or index.max() >= k):
            raise ContainerError("corrupt stream: palette index out of range")
        X = palette[:, index]
    unpacked.finish()
    if sink is None:
        return X
    for c in range(n_channels):
        sink(c, X[c])
    return None


# ---------------------------------------------------------------------------------------------
# importance classes (codec.adaptive): one coded part per class, steps unit * mult[class]


def _class_rows(cls: np.ndarray, k: int) -> list[np.ndarray]:
    """The rows of each class 0..k-1, in increasing (Morton) order."""
    order = np.argsort(cls, kind="stable")
    counts = np.bincount(cls, minlength=k)
    return np.split(order, np.cumsum(counts)[:-1])


def _rows_of(features: Features, rows: np.ndarray) -> Features:
    return {name: np.asarray(v)[rows] for name, v in features.items()}


def encode_classes(
    quantize: Callable[[np.ndarray, int], np.ndarray], mults: list[int], spec: GroupSpec,
    features: Features, *, allow_palette: bool = False,
) -> tuple[bytes, dict[str, Any], list[np.ndarray], list[np.ndarray]]:
    """Code each importance class as its own matrix ``quantize(rows, mults[c])`` (the class's
    Gaussians in Morton order, the features restricted to them). Returns the payload (the parts
    one after the other), the metadata, and each class's rows and integer matrix."""
    rows = _class_rows(np.asarray(features["imp"], np.int64), len(mults))
    payloads, parts, matrices = [], [], []
    for r, m in zip(rows, mults, strict=True):
        X = quantize(r, m)
        payload, meta = encode_matrix(X, spec, _rows_of(features, r), allow_palette=allow_palette)
        payloads.append(payload)
        parts.append(meta)
        matrices.append(X)
    meta = {"mult": [int(m) for m in mults], "sizes": [len(p) for p in payloads], "parts": parts}
    return b"".join(payloads), meta, rows, matrices


def _class_quantizer(values: np.ndarray | RowView, unit: float | np.ndarray,
                     offset: float | np.ndarray = 0.0) -> Callable[[np.ndarray, int], np.ndarray]:
    """``quantize(rows, mult)`` for :func:`encode_classes`: those rows of ``values`` with step
    ``unit * mult``."""

    def quantize(rows: np.ndarray, mult: int) -> np.ndarray:
        sub = (RowView(values.array, values.order[rows]) if isinstance(values, RowView)
               else values[rows])
        return _quantize(sub, np.asarray(unit, np.float64) * mult, offset)

    return quantize


def _in_units(rows: list[np.ndarray], mults: list[int], matrices: list[np.ndarray],
              n: int) -> np.ndarray:
    """Every row's integers in units of the finest step (int64 [C, n])."""
    out = np.zeros((matrices[0].shape[0] if matrices else 0, n), np.int64)
    for r, m, X in zip(rows, mults, matrices, strict=True):
        out[:, r] = X.astype(np.int64) * m
    return out


def decode_classes(
    payload: bytes, meta: dict[str, Any], n: int, n_channels: int, spec: GroupSpec,
    features: Features,
) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """Inverse of :func:`encode_classes`: ``(rows, mults, X)`` with one channel-major integer
    matrix per class (in that class's step)."""
    if "imp" not in features:
        raise ContainerError("bad metadata: per-class steps without an IMPC stream")
    mults = get_int_list(meta, "mult", MAX_CLASSES, 1, MAX_MULT)
    k = len(mults)
    cls = np.asarray(features["imp"], np.int64)
    if k == 0 or (n and int(cls.max()) >= k):
        raise ContainerError("bad metadata: fewer step multipliers than importance classes")
    sizes = get_int_list(meta, "sizes", k, 0, len(payload))
    parts = meta.get("parts")
    if len(sizes) != k or sum(sizes) != len(payload) or not isinstance(parts, list) \
            or len(parts) != k:
        raise ContainerError("corrupt stream: class parts do not match the payload")
    rows = _class_rows(cls, k)
    out, pos = [], 0
    for r, size, part in zip(rows, sizes, parts, strict=True):
        out.append(decode_matrix(payload[pos : pos + size], part, r.size, n_channels, spec,
                                 _rows_of(features, r)))
        pos += size
    return rows, mults, out


def _encode_values(
    values: np.ndarray | RowView, step: float | np.ndarray, offset: float | np.ndarray,
    mults: list[int] | None, spec: GroupSpec, features: Features, *,
    allow_palette: bool = False, units: bool = False,
) -> tuple[bytes, dict[str, Any], np.ndarray | None]:
    """Quantize ``values`` with ``step`` and ``offset`` (with ``mults``: ``step * mults[c]`` for
    the rows of class c) and code them. Returns the payload, the metadata and, with ``units``
    (or without classes, where it costs nothing), the integers in units of ``step``."""
    if mults is None:
        X = _quantize(values, step, offset)
        payload, meta = encode_matrix(X, spec, features, allow_palette=allow_palette)
        return payload, meta, X
    payload, meta, rows, parts = encode_classes(_class_quantizer(values, step, offset), mults,
                                                spec, features, allow_palette=allow_palette)
    return payload, meta, _in_units(rows, mults, parts, values.shape[0]) if units else None


def _decode_values(
    payload: bytes, meta: dict[str, Any], n: int, n_channels: int, spec: GroupSpec,
    features: Features, step: float | np.ndarray, offset: float | np.ndarray = 0.0,
    scale: float = 1.0, *, units: bool = False, out: np.ndarray | None = None,
    integers: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of :func:`_encode_values` (uniform or per-class steps, as the metadata says):
    ``[n, n_channels]`` float32 values (written into ``out`` where given) and, with ``units`` or
    without classes (and ``integers``), the integers in units of ``step``. Without classes and
    with ``integers`` false the channels are dequantized as they are decoded: the integer
    matrix never exists whole (memory: for the 45 SH-rest channels of 1M Gaussians, 180 MB)."""
    if "mult" not in meta:
        if integers:
            X = decode_matrix(payload, meta, n, n_channels, spec, features)
            assert X is not None
            return _dequantize(X, step, offset, scale, out), X
        values = np.empty((n, n_channels), np.float32) if out is None else out
        steps = np.broadcast_to(np.asarray(step, dtype=np.float64), (n_channels,))
        offsets = np.broadcast_to(np.asarray(offset, dtype=np.float64), (n_channels,))

        def put(c: int, row: np.ndarray) -> None:
            _dequantize(row[None, :], steps[c], offsets[c], scale, values[:, c : c + 1])
            if n >= memory.RELEASE_ROWS:
                memory.release()  # (each channel's temporaries: 1M-Gaussian SH-3 decode -44 MB)

        decode_matrix(payload, meta, n, n_channels, spec, features, sink=put)
        return values, None
    rows, mults, parts = decode_classes(payload, meta, n, n_channels, spec, features)
    values = np.empty((n, n_channels), np.float32) if out is None else out
    for r, m, Xc in zip(rows, mults, parts, strict=True):
        values[r] = _dequantize(Xc, np.asarray(step, np.float64) * m, offset, scale)
    return values, _in_units(rows, mults, parts, n) if units else None


class ImportanceCodec:
    """Importance classes (codec.adaptive): one integer 0..k-1 per Gaussian, coded after the
    positions; later attributes may use a quantizer step per class."""

    kind: ClassVar[str] = "IMPC"
    after: ClassVar[str] = "means"
    """Coded right after this attribute's stream (its contexts are the positions' features)."""

    def table_bytes(self, payload: bytes, meta: Any) -> int | None:
        """Bytes of the payload spent on probability tables (the bitrate report)."""
        return table_bytes(payload, meta)
    SPEC: ClassVar[GroupSpec] = GroupSpec(((),), ((),), True, ("dens",))

    def encode(self, cls: np.ndarray, k: int, features: Features) -> Encoded:
        X = np.asarray(cls, np.int32)[None, :]
        payload, meta = encode_matrix(X, self.SPEC, features)
        meta["k"] = int(k)
        return Encoded(payload, meta, {"imp": X[0].astype(np.int64)})

    def decode(self, payload: bytes, meta: dict[str, Any], n: int, features: Features) -> Decoded:
        k = get_int(meta, "k", 1, MAX_CLASSES)
        X = decode_matrix(payload, meta, n, 1, self.SPEC, features)
        if n and (int(X.min()) < 0 or int(X.max()) >= k):
            raise ContainerError("corrupt stream: importance class out of range")
        return Decoded(X[0], {"imp": X[0].astype(np.int64)})


# ---------------------------------------------------------------------------------------------
# positions


@dataclass(frozen=True)
class PositionGrid:
    origin: np.ndarray  # [3] float64
    step: float

    def quantize(self, means: np.ndarray) -> np.ndarray:
        q = np.rint((means.astype(np.float64) - self.origin) / self.step)
        return np.clip(q, 0, morton.AXIS_MAX).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # out-of-range values are caught as non-finite
            return (self.origin + q.astype(np.float64) * self.step).astype(np.float32)


def position_grid(means: np.ndarray, params: QualityParams) -> PositionGrid:
    """The grid of a scene: origin at the bounding-box minimum, step from the preset (or the
    preset's ``position_step`` where set), coarsened if the whole box would need more than
    2**21 cells per axis."""
    if means.shape[0] == 0:
        return PositionGrid(np.zeros(3), 1.0)
    lo = means.min(axis=0).astype(np.float64)
    extent = float((means.max(axis=0).astype(np.float64) - lo).max())
    step = (robust_diagonal(means.astype(np.float64)) * 2.0 ** -params.position_bits
            if params.position_step is None else params.position_step)
    step = max(step, extent / (morton.AXIS_MAX - 1), 1e-30)
    return PositionGrid(lo, step)


def morton_order(means: np.ndarray, params: QualityParams) -> np.ndarray:
    """The order in which gscodec stores Gaussians: by Morton code of the quantized position,
    ties by input index."""
    codes = morton.encode(position_grid(means, params).quantize(means))
    return np.argsort(codes, kind="stable")


def density_feature(codes: np.ndarray) -> np.ndarray:
    """Local sparsity: twice the mean bit length of the Morton gaps in a window of 9."""
    n = codes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    gaps = np.diff(codes, prepend=codes[:1])
    bl = bit_length(gaps).astype(np.int64)
    c = np.concatenate([[0], np.cumsum(bl)])
    lo = np.clip(np.arange(n) - 4, 0, n)
    hi = np.clip(np.arange(n) + 5, 0, n)
    return (2 * (c[hi] - c[lo]) + (hi - lo) // 2) // (hi - lo)


class AttributeCodec:
    """What every attribute codec says about itself, so that the pipelines treat them alike:
    the Gaussians field it codes (``field``, and for the SH codecs which coefficients), whether
    a scene has it (:meth:`present`), its values in the layout :meth:`encode` takes
    (:meth:`source`; ``lazy_rows``: gathered block by block from a :class:`RowView` rather
    than copied whole), whether it codes colours (decoded after the geometry), whether another
    codec codes it together with its own attribute (``coded_with``), and the quantization
    cell of each decoded value (:meth:`half`, :meth:`cell`), which refinement stays inside."""

    name: ClassVar[str]
    kind: ClassVar[str]
    field: ClassVar[str]
    codecs: ClassVar[tuple[int, ...]] = (1,)  # the stream codec numbers it writes and reads
    coeffs: ClassVar[slice | None] = None
    colour: ClassVar[bool] = False
    lazy_rows: ClassVar[bool] = False
    coded_with: ClassVar[str | None] = None

    def present(self, sh_degree: int) -> bool:
        return True

    def alternatives(self, arrays: dict[str, np.ndarray], params: QualityParams
                     ) -> list[dict[str, np.ndarray]]:
        """Other forms of the input (whole array dicts) that decode to the same scene, which
        the encoder may code instead where they cost fewer bytes (none by default)."""
        return []

    def source(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """This codec's values in the input arrays, in the layout :meth:`encode` takes."""
        return arrays[self.field]

    def decoded_view(self, field: np.ndarray) -> np.ndarray:
        """This codec's values in a decoded Gaussians field (the rows of :meth:`cell`)."""
        return field if self.coeffs is None else field[:, self.coeffs]

    def table_bytes(self, payload: bytes, meta: Any) -> int | None:
        """Bytes of this codec's payload spent on probability tables (the bitrate report)."""
        return table_bytes(payload, meta)

    def half(self, meta: dict[str, Any], classes: np.ndarray | None = None) -> np.ndarray:
        """Half-widths (float64) of the quantization cells of the decoded values, broadcastable
        to :meth:`decoded_view`'s shape; the leading axis is n only where the importance
        classes give rows different steps (else 1)."""
        raise NotImplementedError

    def cell(self, values: np.ndarray, meta: dict[str, Any], classes: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) float32 bounds of the cell each decoded value came from."""
        v = np.ascontiguousarray(values, np.float32)
        h = self.half(meta, classes).astype(np.float32)
        return v - h, v + h

    def _per_class(self, half: np.ndarray, meta: dict[str, Any], classes: np.ndarray | None,
                   ndim: int) -> np.ndarray:
        """``half`` times each row's class multiplier, where the stream has per-class steps."""
        if "mult" in meta and classes is not None:
            mult = np.asarray(meta["mult"], np.float64)[classes]
            return half * mult.reshape((-1,) + (1,) * (ndim - 1))
        return half


class PositionCodec(AttributeCodec):
    """Positions: a uniform grid, Morton codes in sorted order, and their gaps coded with one
    probability table (magnitude categories) plus raw low bits."""

    name: ClassVar[str] = "means"
    kind: ClassVar[str] = "POSN"
    field: ClassVar[str] = "means"
    MAX_BITS: ClassVar[int] = 63

    def half(self, meta: dict[str, Any], classes: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(meta["step"] / 2, np.float64)

    def encode(self, values: np.ndarray, params: QualityParams, features: Features) -> Encoded:
        grid = position_grid(values, params)
        codes = morton.encode(grid.quantize(values))
        if codes.size and (np.diff(codes.view(np.int64)) < 0).any():
            raise ValueError("positions must be in Morton order (use morton_order)")
        gaps = np.diff(codes, prepend=np.uint64(0))
        t, m = self._choose_tm(gaps)
        sym, nraw, raw = split(gaps, t, m)
        enc, tables = AnsEncoder(), bytearray()
        q = table_from_counts(np.bincount(sym)) if sym.size else np.zeros(0, np.int64)
        write_table(q, tables)
        enc.categorical(sym, q)
        for b in np.unique(nraw[nraw > 0]).tolist():
            enc.raw_bits(raw[nraw == b], b)
        meta = {"origin": [float(v) for v in grid.origin], "step": grid.step, "t": t, "m": m}
        return Encoded(pack(tables, enc), meta, {"dens": density_feature(codes)})

    @staticmethod
    def _choose_tm(gaps: np.ndarray) -> tuple[int, int]:
        if gaps.size == 0:
            return 0, 0
        sample = gaps[:: max(1, gaps.size // 200_000)]
        best = (np.inf, 0, 0)
        for t in range(0, 13):
            for m in range(0, min(t, 4) + 1):
                sym, nraw, _ = split(sample, t, m)
                counts = np.bincount(sym)
                p = counts[counts > 0] / sample.size
                bits = -(counts[counts > 0] * np.log2(p)).sum() + nraw.sum()
                bits = bits * gaps.size / sample.size + 6.0 * counts.size
                if bits < best[0]:
                    best = (bits, t, m)
        return best[1], best[2]

    def decode(self, payload: bytes, meta: dict[str, Any], n: int, features: Features) -> Decoded:
        origin = np.asarray(get_float_list(meta, "origin", 3), np.float64)
        step = get_float(meta, "step", 1e-30, 1e30)
        t = get_int(meta, "t", 0, 16)
        m = get_int(meta, "m", 0, min(t, 4))
        unpacked = Unpacked(payload)
        q = unpacked.tables.read_table(alphabet_limit(t, m, self.MAX_BITS))
        if (n > 0) != (q.size > 0):
            raise ContainerError("corrupt stream: position table does not match the count")
        sym = unpacked.ans.categorical(n, q)
        nraw = raw_bits_of(sym, t, m)
        raw = np.zeros(n, np.uint64)
        for b in np.unique(nraw[nraw > 0]).tolist():
            sel = nraw == b
            raw[sel] = unpacked.ans.raw_bits(int(sel.sum()), b)
        unpacked.finish()
        gaps = join(sym, raw, t, m)
        codes = np.cumsum(gaps, dtype=np.uint64)
        if n and (int(codes[-1]) >= 1 << 63 or (n > 1 and int(gaps[1:].max()) >= 1 << 63)):
            raise ContainerError("corrupt stream: position codes out of range")
        means = PositionGrid(origin, step).dequantize(morton.decode(codes))
        return Decoded(_finite(means, "positions"), {"dens": density_feature(codes)})


# ---------------------------------------------------------------------------------------------
# log-scales


class LogScaleCodec(AttributeCodec):
    """Natural-log scales: a uniform grid per axis through the axis' median value (so that scenes
    whose Gaussians share one size, like converted meshes, come back exactly); the three axes
    predict each other; local density is a candidate context."""

    name: ClassVar[str] = "log_scales"
    kind: ClassVar[str] = "SCAL"
    field: ClassVar[str] = "log_scales"
    SPEC: ClassVar[GroupSpec] = GroupSpec.simple(3, features=("dens",))

    def half(self, meta: dict[str, Any], classes: np.ndarray | None = None) -> np.ndarray:
        return self._per_class(np.asarray(meta["step"] / 2, np.float64), meta, classes, 2)

    def encode(self, values: np.ndarray, params: QualityParams, features: Features,
               adapt: Adapt | None = None) -> Encoded:
        step = params.log_scale_step
        origin = (np.quantile(values, 0.5, axis=0, method="lower").astype(np.float32)
                  if values.shape[0] else np.zeros(3, np.float32))
        if adapt is not None:
            step *= adapt[0]
        payload, meta, X = _encode_values(values, step, -origin.astype(np.float64),
                                          None if adapt is None else adapt[1], self.SPEC,
                                          features, units=True)
        assert X is not None
        meta["step"] = step
        meta["origin"] = [float(v) for v in origin]
        return Encoded(payload, meta, self._features(X, step, origin))

    @staticmethod
    def _features(X: np.ndarray, step: float, origin: np.ndarray) -> Features:
        x = X.astype(np.int64) + np.rint(np.asarray(origin, np.float64) / step).astype(np.int64)[
            :, None]
        return {"aniso": x.max(axis=0) - x.min(axis=0), "size": x.sum(axis=0)}

    def decode(self, payload: bytes, meta: dict[str, Any], n: int, features: Features) -> Decoded:
        step = get_float(meta, "step", 1e-9, 1e9)
        origin = np.asarray(get_float_list(meta, "origin", 3), np.float64)
        if np.abs(origin).max() > 1e6:
            raise ContainerError("bad metadata: SCAL origin out of range")
        values, X = _decode_values(payload, meta, n, 3, self.SPEC, features, step, -origin,
                                   units=True)
        assert X is not None
        return Decoded(_finite(values, "scales"), self._features(X, step, origin))


# ---------------------------------------------------------------------------------------------
# rotations

_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


class RotationCodec(AttributeCodec):
    """Rotations: normalised, sign made canonical (largest component positive), sent as the
    index of the largest component and the other three components on a uniform grid
    (smallest-three); the index is a candidate context for the components."""

    name: ClassVar[str] = "quats"
    kind: ClassVar[str] = "ROTN"
    field: ClassVar[str] = "quats"
    coded_with: ClassVar[str | None] = "log_scales"
    """The encoder codes rotations together with the scales: both in the input's form and,
    for presets with a canonical form, in that form (same covariances), and keeps the pair
    that costs fewer bytes (:func:`gscodec.codec.canonical.canonicalize`)."""
    SPEC: ClassVar[GroupSpec] = GroupSpec(
        refs=((), (), (1,), (1, 2)),
        ctx_refs=((), (0,), (0, 1), (0, 1, 2)),
        features=("dens", "aniso"),
    )

    def encode(self, values: np.ndarray, params: QualityParams, features: Features,
               adapt: Adapt | None = None) -> Encoded:
        q = values.astype(np.float64)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        idx = np.abs(q).argmax(axis=1) if q.shape[0] else np.zeros(0, np.int64)
        rows = np.arange(q.shape[0])
        q *= np.where(q[rows, idx] < 0, -1.0, 1.0)[:, None]
        rest = np.take_along_axis(q, _OTHERS[idx], axis=1)
        step = params.rotation_step
        if adapt is not None:
            step *= adapt[0]

            def quantize(r: np.ndarray, mult: int) -> np.ndarray:
                X = np.empty((4, r.size), np.int32)
                X[0] = idx[r]
                X[1:] = _quantize(rest[r], step * mult)
                return X

            payload, meta, _, _ = encode_classes(quantize, adapt[1], self.SPEC, features)
        else:
            X = np.empty((4, q.shape[0]), np.int32)
            X[0] = idx
            X[1:] = _quantize(rest, step)
            payload, meta = encode_matrix(X, self.SPEC, features)
        meta["step"] = step
        return Encoded(payload, meta)

    def alternatives(self, arrays: dict[str, np.ndarray], params: QualityParams
                     ) -> list[dict[str, np.ndarray]]:
        """For presets with a canonical form: rotations and scales in that form (same
        covariances; the decoder cannot tell them apart, and the features the scales publish
        do not depend on the axis order)."""
        if not params.canonical:
            return []
        canon = dict(arrays)
        canon["quats"], canon["log_scales"] = canonicalize(arrays["quats"], arrays["log_scales"])
        return [canon]

    def half(self, meta: dict[str, Any], classes: np.ndarray | None = None) -> np.ndarray:
        """A box of +-step/2 on every component (the smallest-three cell, loosely)."""
        return self._per_class(np.asarray(meta["step"] / 2, np.float64), meta, classes, 2)

    def decode(self, payload: bytes, meta: dict[str, Any], n: int, features: Features) -> Decoded:
        step = get_float(meta, "step", 1e-9, 1.0)
        if "mult" in meta:
            rows, mults, parts = decode_classes(payload, meta, n, 4, self.SPEC, features)
            X = np.empty((4, n), np.int64)
            steps = np.empty(n, np.float64)
            for r, m, Xc in zip(rows, mults, parts, strict=True):
                X[:, r] = Xc
                steps[r] = step * m
        else:
            X = decode_matrix(payload, meta, n, 4, self.SPEC, features)
            steps = np.full(n, step)
        idx = X[0].astype(np.int64)
        if n and (idx.min() < 0 or idx.max() > 3):
            raise ContainerError("corrupt stream: rotation index out of range")
        rest = X[1:].T.astype(np.float64) * steps[:, None]
        w = np.sqrt(np.maximum(0.0, 1.0 - (rest * rest).sum(axis=1)))
        quats = np.empty((n, 4), np.float64)
        rows = np.arange(n)
        quats[rows, idx] = w
        np.put_along_axis(quats, _OTHERS[idx], rest, axis=1)
        return Decoded(_finite(quats.astype(np.float32), "rotations"))


# ---------------------------------------------------------------------------------------------
# opacity

_ALPHA_EPS = 1e-6


class OpacityCodec(AttributeCodec):
    """Opacity: alpha = sigmoid(logit) on a uniform grid k / levels (255 levels reproduce the
    8-bit alpha of .splat, SPZ and SOG files exactly); contexts from density and scales."""

    name: ClassVar[str] = "opacity_logits"
    kind: ClassVar[str] = "OPAC"
    field: ClassVar[str] = "opacity_logits"

    def cell(self, values: np.ndarray, meta: dict[str, Any], classes: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """The alpha cell k/levels +- 1/(2 levels), as logits (clipped to (1e-6, 1 - 1e-6))."""
        levels = meta["levels"]
        alpha = 1 / (1 + np.exp(-np.asarray(values).astype(np.float64)))
        lo = np.clip(alpha - 0.5 / levels, 1e-6, 1 - 1e-6)
        hi = np.clip(alpha + 0.5 / levels, 1e-6, 1 - 1e-6)
        return (np.log(lo / (1 - lo)).astype(np.float32),
                np.log(hi / (1 - hi)).astype(np.float32))
    SPEC: ClassVar[GroupSpec] = GroupSpec(((),), ((),), True, ("dens", "aniso", "size"))

    def encode(self, values: np.ndarray, params: QualityParams, features: Features) -> Encoded:
        levels = params.opacity_levels
        alpha = 1.0 / (1.0 + np.exp(-values.astype(np.float64)))
        X = np.rint(alpha * levels).astype(np.int32)[None, :]
        payload, meta = encode_matrix(X, self.SPEC, features)
        meta["levels"] = levels
        return Encoded(payload, meta, {"opa": X[0].astype(np.int64)})

    def decode(self, payload: bytes, meta: dict[str, Any], n: int, features: Features) -> Decoded:
        levels = get_int(meta, "levels", 1, 1 << 20)
        X = decode_matrix(payload, meta, n, 1, self.SPEC, features)
        k = X[0].astype(np.int64)
        if n and (k.min() < 0 or k.max() > levels):
            raise ContainerError("corrupt stream: opacity out of range")
        alpha = np.clip(k / levels, _ALPHA_EPS, 1.0 - _ALPHA_EPS)
        logits = np.log(alpha / (1.0 - alpha)).astype(np.float32)
        return Decoded(logits, {"opa": k})


# ---------------------------------------------------------------------------------------------
# spherical harmonics


class ShDcCodec(AttributeCodec):
    """DC colour: rgb = 0.5 + SH_C0 * dc on a uniform grid in 1/255 units (step 1 reproduces
    8-bit colours exactly); channels predict each other, Morton neighbours are candidates."""

    name: ClassVar[str] = "sh_dc"
    kind: ClassVar[str] = "SHDC"
    field: ClassVar[str] = "sh"
    coeffs: ClassVar[slice | None] = slice(0, 1)
    colour: ClassVar[bool] = True

    def source(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return arrays["sh"][:, 0, :]

    def half(self, meta: dict[str, Any], classes: np.ndarray | None = None) -> np.ndarray:
        """``[1 or n, 1, 1]``: the step in 1/255 colour units, as a DC coefficient."""
        return self._per_class(np.full((1, 1, 1), meta["step"] / 255 / SH_C0 / 2), meta,
                               classes, 3)
    SPEC: ClassVar[GroupSpec] = GroupSpec.simple(3, features=("dens", "opa"))

    def encode(self, values: np.ndarray, params: QualityParams, features: Features,
               adapt: Adapt | None = None) -> Encoded:
        dc_step = params.dc_step * (1.0 if adapt is None else adapt[0])
        step = dc_step / 255.0 / SH_C0
        payload, meta, _ = _encode_values(values, step, 0.5 / SH_C0,
                                          None if adapt is None else adapt[1], self.SPEC,
                                          features)
        meta["step"] = dc_step
        return Encoded(payload, meta)

    def decode(self, payload: bytes, meta: dict[str, Any], n: int, features: Features,
               out: np.ndarray | None = None) -> Decoded:
        """``out``: a float32 ``[n, 1, 3]`` array (or view, e.g. the DC of a whole SH array)
        that also receives the values."""
        step = get_float(meta, "step", 1e-6, 1e6) / 255.0
        values, _ = _decode_values(payload, meta, n, 3, self.SPEC, features, step, 0.5, SH_C0,
                                   integers=False)
        values = _finite(values, "colours")
        if out is not None:
            out[:, 0, :] = values
        return Decoded(values)


def _band_of(coeff: int) -> int:
    """Band (1..3) of SH coefficient index ``coeff`` (1-based after DC)."""
    return 1 if coeff <= 3 else 2 if coeff <= 8 else 3


def _sh_rest_spec(n_coeffs: int) -> GroupSpec:
    # channel j*3 + c holds coefficient j+1, colour c; colours of one coefficient refer to the
    # colours before them
    refs = []
    for j in range(n_coeffs):
        for c in range(3):
            refs.append(tuple(j * 3 + p for p in range(c)))
    return GroupSpec(tuple(refs), tuple(refs), True, ("opa", "dens"), use_act=True)


def _transform_spec(n_channels: int) -> GroupSpec:
    # the transform's components are not correlated linearly: no predictor from earlier ones,
    # but the magnitude of the one before is a candidate context (and the energy of all before)
    return GroupSpec(tuple(() for _ in range(n_channels)),
                     tuple(((c - 1,) if c else ()) for c in range(n_channels)), True,
                     ("opa", "dens"), use_act=True)


TRANSFORM_MIN_ROWS = 1024
"""The SH codec tries its transform (codec 2) for streams of at least this many Gaussians."""
TRANSFORM_FACTORS = (3.0, 2.5, 2.0, 1.6, 1.3, 1.0, 0.8, 0.6)
"""The transform's component steps the SH codec tries, in units of the band-1 step: it takes
the coarsest whose squared error in every SH band is no larger than the per-band steps' (see
ShRestCodec)."""


def _row_multipliers(features: Features, mults: list[int] | None, n: int) -> np.ndarray:
    """Each row's step multiplier (1 without per-class steps), float64 ``[n]``."""
    if mults is None:
        return np.ones(n)
    return np.asarray(mults, np.float64)[np.asarray(features["imp"], np.int64)]


def _band_errors(values: np.ndarray | RowView, steps: np.ndarray, rows: np.ndarray,
                 basis: tuple[np.ndarray, np.ndarray], transform_steps: tuple[float, ...]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per SH band (1..3), the sums of squared errors of ``values`` (``[n, k, 3]``) quantized
    per value with step ``steps[c] * rows[i]`` (codec 1, ``[3]``), and for each of
    ``transform_steps`` with the components ``Y`` of ``basis`` (B, Y) quantized with step
    ``step * rows[i]`` and the values rebuilt through ``B`` (codec 2, ``[len, 3]``). One pass
    over the rows, in blocks."""
    n, k = values.shape[0], values.shape[1]
    band = np.repeat([_band_of(j + 1) - 1 for j in range(k)], 3)
    rebuild = basis[0].astype(np.float64).T / shtransform.BASIS_SCALE
    direct, transformed = np.zeros(3), np.zeros((len(transform_steps), 3))

    def by_band(e: np.ndarray) -> np.ndarray:
        return np.bincount(band, weights=(e * e).sum(axis=0), minlength=3)[:3]

    for a in range(0, n, _BLOCK_ROWS):
        v = np.asarray(values[a : a + _BLOCK_ROWS], np.float64).reshape(-1, 3 * k)
        r = rows[a : a + _BLOCK_ROWS, None]
        u = steps[None, :] * r
        direct += by_band(v - np.rint(v / u) * u)
        y = np.asarray(basis[1][a : a + _BLOCK_ROWS], np.float64)
        for i, step in enumerate(transform_steps):
            u = step * r
            transformed[i] += by_band(v - (np.rint(y / u) * u) @ rebuild)
    return direct, transformed


class ShRestCodec(AttributeCodec):
    """Higher SH bands, in the cheaper of two forms (GSZ.md 6.6):

    - codec 1: a uniform step per band; colours of a coefficient predict each other, the energy
      of the coefficients already sent is a candidate context; repeated coefficient vectors (as
      in files that went through a codebook) can be sent as a palette;
    - codec 2 (tried for streams of at least :data:`TRANSFORM_MIN_ROWS` Gaussians): the
      per-scene KLT of :mod:`.shtransform`, its components with one step: the coarsest of
      :data:`TRANSFORM_FACTORS` times the band-1 step whose squared error in each SH band (the
      values rebuilt through the basis) is no larger than codec 1's at the preset's band steps.
      The smaller stream is kept: at no larger error in any band, so the choice never trades
      fidelity (in squared SH error) for bytes. (With one total instead of one per band, the
      transform moved error into band 1, where the renders see it most: fruit preset 8 lost
      1.2 dB.) Where a scene's rest vectors are
      correlated (trained scenes), most components quantize to zero and the transform wins
      (``benchmarks/sh_coding.py``, ``benchmarks/results/sh-coding-tuning*.md``); where they
      are not (random values) or repeat (codebook files: the palette), codec 1 does."""

    name: ClassVar[str] = "sh_rest"
    kind: ClassVar[str] = "SHRS"
    field: ClassVar[str] = "sh"
    codecs: ClassVar[tuple[int, ...]] = (1, 2)
    coeffs: ClassVar[slice | None] = slice(1, None)
    colour: ClassVar[bool] = True
    lazy_rows: ClassVar[bool] = True

    def present(self, sh_degree: int) -> bool:
        return sh_degree > 0

    def source(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return arrays["sh"][:, 1:, :]

    def table_bytes(self, payload: bytes, meta: Any) -> int | None:
        """The probability tables, and for the transform its basis too."""
        if not (isinstance(meta, dict) and "transform" in meta):
            return table_bytes(payload, meta)
        head = shtransform.basis_bytes(payload)
        rest = None if head is None else table_bytes(payload[head:], meta)
        return None if rest is None else head + rest

    def half(self, meta: dict[str, Any], classes: np.ndarray | None = None) -> np.ndarray:
        """``[1 or n, coeffs, 1]``: each band's step; for the transform its component step
        (the cell is a rotated cube of that side: refinement keeps to the box of that side
        around each decoded value)."""
        if "transform" in meta:
            half = np.full(meta["coeffs"], meta["step"] / 2)
        else:
            bands = meta["steps"]
            half = np.array([bands[_band_of(j + 1) - 1] / 2 for j in range(meta["coeffs"])])
        return self._per_class(half[None, :, None], meta, classes, 3)

    def encode(
        self, values: np.ndarray | RowView, params: QualityParams, features: Features,
        adapt: Adapt | None = None,
    ) -> Encoded:
        k = values.shape[1]
        factor, mults = (1.0, None) if adapt is None else adapt
        bands = [b * factor for b in params.sh_rest_steps]
        steps = np.repeat([bands[_band_of(j + 1) - 1] for j in range(k)], 3)
        payload, meta, _ = _encode_values(values, steps, 0.0, mults, _sh_rest_spec(k), features,
                                          allow_palette=True)
        meta["steps"] = bands
        meta["coeffs"] = k
        best = Encoded(payload, meta)
        if values.shape[0] >= TRANSFORM_MIN_ROWS:
            rows = _row_multipliers(features, mults, values.shape[0])
            B = shtransform.basis(values)
            Y = shtransform.forward(values, B)
            candidates = tuple(f * bands[0] for f in TRANSFORM_FACTORS)
            target, errors = _band_errors(values, steps, rows, (B, Y), candidates)
            fits = [s for s, e in zip(candidates, errors, strict=True)
                    if np.all(e <= target * (1 + 1e-9))]
            if fits:  # (the coarsest: the candidates run from coarse to fine)
                other = self._transformed(values, fits[0], mults, features, (B, Y))
                if len(other.payload) < len(best.payload):
                    best = other
        return best

    @staticmethod
    def _transformed(values: np.ndarray | RowView, step: float, mults: list[int] | None,
                     features: Features, basis: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> Encoded:
        """Codec 2: the basis, then the components coded with ``step`` (per class ``mults``);
        ``basis``: the basis and components, where computed already."""
        k = values.shape[1]
        if basis is None:
            B = shtransform.basis(values)
            basis = (B, shtransform.forward(values, B))
        B, Y = basis
        rows = _row_multipliers(features, mults, values.shape[0])
        used = shtransform.components_used(Y, step, rows)
        payload, meta, _ = _encode_values(Y[:, :used], step, 0.0, mults, _transform_spec(used),
                                          features)
        meta.update(transform="klt", step=step, coeffs=k, components=used)
        return Encoded(shtransform.pack_basis(B[:, :used]) + payload, meta, codec=2)

    def decode(self, payload: bytes, meta: dict[str, Any], n: int, features: Features,
               out: np.ndarray | None = None, codec: int | None = None) -> Decoded:
        """``out``: a float32 ``[n, coeffs, 3]`` array (or view, e.g. the rest of a whole SH
        array) to decode into; its coefficient count must match the metadata's. ``codec``:
        the stream's codec number (1 or 2; a file's decoder passes its stream table's), by
        default the one the metadata was written for (2 where it has ``transform``)."""
        if codec is None:
            codec = 2 if "transform" in meta else 1
        n_coeffs = get_int(meta, "coeffs", 3, 15)
        flat_out = None
        if out is not None:
            if out.shape != (n, n_coeffs, 3):
                raise ContainerError("bad metadata: SH coefficient count does not match the "
                                     "degree")
            flat_out = out.reshape(n, n_coeffs * 3)  # a view where the layout allows
            if not np.shares_memory(flat_out, out):
                flat_out = None
        if codec == 2:
            flat = self._decode_transformed(payload, meta, n, n_coeffs, features, flat_out)
        else:
            bands = get_float_list(meta, "steps", 3)
            if min(bands) <= 0:
                raise ContainerError("bad metadata: SH steps must be positive")
            steps = np.repeat([bands[_band_of(j + 1) - 1] for j in range(n_coeffs)], 3)
            flat, _ = _decode_values(payload, meta, n, n_coeffs * 3, _sh_rest_spec(n_coeffs),
                                     features, steps, out=flat_out, integers=False)
        values = flat.reshape(n, n_coeffs, 3) if flat_out is None else out
        if flat_out is None and out is not None:
            out[...] = values
            values = out
        return Decoded(_finite(values, "SH coefficients"))

    @staticmethod
    def _decode_transformed(payload: bytes, meta: dict[str, Any], n: int, n_coeffs: int,
                            features: Features, out: np.ndarray | None) -> np.ndarray:
        """Codec 2 (GSZ.md 6.6a): ``[n, 3 coeffs]`` float32, into ``out`` where given."""
        get_str(meta, "transform", ("klt",))
        step = get_float(meta, "step")
        if not step > 0:
            raise ContainerError("bad metadata: the SH transform's step must be positive")
        c = 3 * n_coeffs
        used = get_int(meta, "components", 1, c)
        B, rest = shtransform.unpack_basis(payload, c, used)
        values = np.empty((n, c), np.float32) if out is None else out
        spec = _transform_spec(used)
        if "mult" not in meta:
            X = decode_matrix(rest, meta, n, used, spec, features)
            assert X is not None
            shtransform.inverse_rows(X, B, step / shtransform.BASIS_SCALE, values)
            return values
        rows, mults, parts = decode_classes(rest, meta, n, used, spec, features)
        for r, m, Xc in zip(rows, mults, parts, strict=True):
            part = np.empty((r.shape[0], c), np.float32)
            shtransform.inverse_rows(Xc, B, step * m / shtransform.BASIS_SCALE, part)
            values[r] = part
        return values


REGISTRY = {
    "means": PositionCodec(),
    "log_scales": LogScaleCodec(),
    "quats": RotationCodec(),
    "opacity_logits": OpacityCodec(),
    "sh_dc": ShDcCodec(),
    "sh_rest": ShRestCodec(),
}
"""Attribute -> codec, in coding order (later codecs may use the features of earlier ones)."""

# the features the colour streams (SHDC, SHRS) may read as coding contexts
COLOUR_FEATURES = frozenset(REGISTRY["sh_dc"].SPEC.features) | frozenset(
    _sh_rest_spec(1).features)
