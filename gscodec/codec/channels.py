"""Context-modelled coding of a group of integer channels (the engine behind every attribute).

An attribute is quantized to an integer matrix ``X [C, N]`` (channel-major: one contiguous row
per channel) whose columns are Gaussians in Morton order. Channels are coded one after the
other; for channel ``c`` the encoder picks a *plan*:

* a predictor, giving the residual ``e = x - prediction - off``:
    - ``none``: prediction 0;
    - ``chan`` (ref j < c): the same Gaussian's channel j;
    - ``prev``: the previous Gaussian's value of this channel (0 for the first), i.e. delta
      coding along the Morton curve; the decoder undoes it with a cumulative sum;
    - ``prevchan`` (ref j): the previous Gaussian's difference ``x_c - x_j`` plus this
      Gaussian's ``x_j``;
* a context, which splits the Gaussians into up to 16 buckets, each with its own probability
  table; the context variable is known to the decoder before the channel is decoded:
    - ``none``: one bucket;
    - ``val`` (ref j < c): the value of channel j;
    - ``mag`` (ref j < c): the magnitude ``|e_j|`` of channel j's residual, saturated at 65535;
    - ``act``: the sum of ``|e_j|`` over all earlier channels of the group;
    - ``feat`` (name): a side feature computed from already-decoded attributes (for example
      the local point density from the positions);
  the bucket of a value v is the number of bucket edges smaller than v;
* binarization parameters ``t`` and ``m`` (see :mod:`.entropy`).

The encoder chooses each plan greedily by estimated cost on a sample of rows: first the
predictor, then the context and its number of buckets, then ``t``. Decoding is exact and
vectorised: each bucket's symbols are decoded in one call.

Coding order within a channel: for each bucket 0..K-1, the bucket's symbols in row order (table
first, see below); then the raw bits of all rows, grouped by their bit count in increasing order,
each group in row order. Tables are not in the ANS data but in a separate table blob, one table
per bucket in the same order.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..formats.errors import ContainerError
from .entropy import (
    AnsDecoder,
    AnsEncoder,
    VarintReader,
    alphabet_limit,
    bit_length,
    join,
    raw_bits_of,
    split,
    table_from_counts,
    unzigzag,
    write_table,
    zigzag,
)
from .meta import get_int, get_int_list, get_str

PREDICTORS = ("none", "chan", "prev", "prevchan")
CONTEXTS = ("none", "val", "mag", "act", "feat")
MAX_BUCKETS = 16
MAX_T = 14  # keeps every alphabet below entropy.MAX_ALPHABET
MAX_M = 4
VALUE_LIMIT = (1 << 31) - 1  # channel values are int32
MAX_BITS = 34  # zigzagged residuals of int32 values stay below 2**34
_SAMPLE_BLOCK = 8192
_SAMPLE_BLOCKS = 4
_TABLE_ENTRY_BITS = 4.5  # estimated cost of one stored table entry after zstd
_BUCKET_CHOICES = (4, 8, 16)
_REFIT_STRIDE = 4  # a refit (_refit_plan) looks at every 4th row of the plan search's sample


@dataclass(frozen=True)
class GroupSpec:
    """What the encoder may try for each channel of a group.

    Attributes:
        refs: per channel, earlier channels usable as predictors.
        ctx_refs: per channel, earlier channels usable as ``val``/``mag`` contexts.
        allow_prev: whether Morton-neighbour prediction (``prev``, ``prevchan``) may be tried.
        features: names of side features usable as ``feat`` contexts.
        use_act: whether the ``act`` context may be tried.
    """

    refs: tuple[tuple[int, ...], ...]
    ctx_refs: tuple[tuple[int, ...], ...]
    allow_prev: bool = True
    features: tuple[str, ...] = ()
    use_act: bool = False

    @staticmethod
    def simple(n_channels: int, **kw: Any) -> GroupSpec:
        """Every earlier channel is a candidate reference and context."""
        earlier = tuple(tuple(range(c)) for c in range(n_channels))
        return GroupSpec(refs=earlier, ctx_refs=earlier, **kw)


@dataclass(frozen=True)
class ChannelPlan:
    pred: str = "none"
    ref: int = -1
    ctx: str = "none"
    cref: int = -1
    feat: str = ""
    edges: tuple[int, ...] = ()
    off: int = 0
    t: int = 0
    m: int = 0

    @property
    def buckets(self) -> int:
        return len(self.edges) + 1

    def to_meta(self) -> dict[str, Any]:
        d: dict[str, Any] = {"p": self.pred, "c": self.ctx, "o": self.off, "t": self.t, "m": self.m}
        if self.pred in ("chan", "prevchan"):
            d["r"] = self.ref
        if self.ctx in ("val", "mag"):
            d["cr"] = self.cref
        if self.ctx == "feat":
            d["f"] = self.feat
        if self.ctx != "none":
            d["e"] = list(self.edges)
        return d

    @staticmethod
    def from_meta(d: Any, c: int, features: tuple[str, ...]) -> ChannelPlan:
        where = f"channel {c}: "
        if not isinstance(d, dict):
            raise ContainerError(f"bad metadata: {where}plan must be an object")
        pred = get_str(d, "p", PREDICTORS, where)
        ctx = get_str(d, "c", CONTEXTS, where)
        ref = get_int(d, "r", 0, c - 1, where) if pred in ("chan", "prevchan") else -1
        cref = get_int(d, "cr", 0, c - 1, where) if ctx in ("val", "mag") else -1
        feat = get_str(d, "f", features, where) if ctx == "feat" else ""
        if ctx == "act" and c == 0:
            raise ContainerError(f"bad metadata: {where}act context on the first channel")
        edges: tuple[int, ...] = ()
        if ctx != "none":
            lim = 1 << 62
            edges = tuple(get_int_list(d, "e", MAX_BUCKETS - 1, -lim, lim, where))
            if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ContainerError(f"bad metadata: {where}bucket edges must increase")
        t = get_int(d, "t", 0, MAX_T, where)
        m = get_int(d, "m", 0, min(t, MAX_M), where)
        off = get_int(d, "o", -VALUE_LIMIT, VALUE_LIMIT, where)
        return ChannelPlan(pred, ref, ctx, cref, feat, edges, off, t, m)


# ---------------------------------------------------------------------------------------------
# shared pieces


def _sample_rows(n: int) -> np.ndarray:
    if n <= _SAMPLE_BLOCK * _SAMPLE_BLOCKS:
        return np.arange(n)
    starts = np.linspace(0, n - _SAMPLE_BLOCK, _SAMPLE_BLOCKS).astype(np.int64)
    return (starts[:, None] + np.arange(_SAMPLE_BLOCK)[None, :]).ravel()


def _shift_down(v: np.ndarray) -> np.ndarray:
    """v[i-1] with 0 for i = 0."""
    out = np.empty_like(v)
    if v.size:
        out[0] = 0
        out[1:] = v[:-1]
    return out


_LUT_RANGE = 1 << 22


def _bucket(v: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    """Bucket index of each value: the number of edges smaller than it (uint8)."""
    if not edges or v.size == 0:
        return np.zeros(v.shape[0], np.uint8)
    e = np.asarray(edges, dtype=np.int64)
    lo, hi = int(v.min()), int(v.max())
    if hi - lo < _LUT_RANGE:
        lut = np.searchsorted(e, np.arange(lo, hi + 1), side="left").astype(np.uint8)
        return lut[v - lo]
    return np.searchsorted(e, v, side="left").astype(np.uint8)


def _context_variable(
    plan: ChannelPlan,
    X: np.ndarray,
    abs_e: dict[int, np.ndarray],
    act: np.ndarray | None,
    features: dict[str, np.ndarray],
    rows: np.ndarray | None = None,
) -> np.ndarray | None:
    sel = slice(None) if rows is None else rows
    if plan.ctx == "none":
        return None
    if plan.ctx == "val":
        return X[plan.cref][sel].astype(np.int64)
    if plan.ctx == "mag":
        return abs_e[plan.cref][sel].astype(np.int64)
    if plan.ctx == "act":
        assert act is not None
        return act[sel]
    return np.asarray(features[plan.feat], dtype=np.int64)[sel]


MAG_LIMIT = 0xFFFF


def _magnitude(e: np.ndarray) -> np.ndarray:
    """``|e|`` saturated at 65535, as uint16 (what the ``mag`` context sees)."""
    return np.minimum(np.abs(e), MAG_LIMIT).astype(np.uint16)


def _edges_for(sorted_v: np.ndarray, buckets: int) -> tuple[int, ...]:
    """Bucket edges at the quantiles of a sorted context variable (duplicates merged)."""
    n = sorted_v.size
    if n == 0:
        return ()
    idx = (np.arange(1, buckets) * n) // buckets
    edges = np.unique(sorted_v[idx])
    return tuple(int(e) for e in edges[edges < sorted_v[-1]])


def _symbol_cost(
    sym: np.ndarray, raw_bits: float, ctx: np.ndarray | None, nctx: int, scale: float
) -> float:
    """Estimated bits for coding ``sym`` with per-bucket tables: the empirical conditional
    entropy plus raw bits, scaled from the sample to all rows, plus the table cost."""
    a = int(sym.max()) + 1 if sym.size else 1
    if ctx is None:
        counts = np.bincount(sym, minlength=a)[None, :]
    else:
        counts = np.bincount(ctx.astype(np.int64) * a + sym, minlength=nctx * a).reshape(nctx, a)
    tot = counts.sum(axis=1, keepdims=True)
    nz = counts > 0
    c = counts[nz]
    bits = float(-(c * np.log2(c / np.broadcast_to(tot, counts.shape)[nz])).sum())
    used_len = np.where(nz.any(axis=1), a - np.argmax(nz[:, ::-1], axis=1), 0)
    table = float((8.0 + _TABLE_ENTRY_BITS * used_len[used_len > 0]).sum())
    return (bits + raw_bits) * scale + table


def _pick_t(z: np.ndarray) -> int:
    """Smallest t with at most 3% of the values at or above 2**t."""
    if z.size == 0:
        return 0
    hist = np.bincount(bit_length(z), minlength=MAX_T + 2)
    above = z.size - np.cumsum(hist)  # above[t] = count with bit length > t
    ok = np.flatnonzero(above[: MAX_T + 1] <= 0.03 * z.size)
    return int(ok[0]) if ok.size else MAX_T


def _residual(pred: str, ref: int, X: np.ndarray, c: int,
              rows: np.ndarray | None = None) -> np.ndarray:
    """``x - prediction`` of channel ``c`` (offset not removed) at ``rows``, or at every row."""

    def cur(j: int) -> np.ndarray:
        return (X[j] if rows is None else X[j][rows]).astype(np.int64)

    def prev(j: int) -> np.ndarray:
        if rows is None:
            return _shift_down(X[j].astype(np.int64))
        p = X[j][np.maximum(rows - 1, 0)].astype(np.int64)
        p[rows == 0] = 0
        return p

    if pred == "none":
        return cur(c)
    if pred == "chan":
        return cur(c) - cur(ref)
    if pred == "prev":
        return cur(c) - prev(c)
    return (cur(c) - cur(ref)) - (prev(c) - prev(ref))


def _reconstruct(plan: ChannelPlan, e: np.ndarray, X: np.ndarray) -> np.ndarray:
    r = e + plan.off
    if plan.pred == "none":
        return r
    if plan.pred == "chan":
        return r + X[plan.ref]
    if plan.pred == "prev":
        return np.cumsum(r)
    return np.cumsum(r) + X[plan.ref]


# ---------------------------------------------------------------------------------------------
# plan selection (encoder only)


def _choose_plan(
    c: int,
    X: np.ndarray,
    abs_e: dict[int, np.ndarray],
    act: np.ndarray | None,
    features: dict[str, np.ndarray],
    spec: GroupSpec,
    rows: np.ndarray,
) -> ChannelPlan:
    n = X.shape[1]
    scale = n / max(1, rows.size)
    preds: list[tuple[str, int]] = [("none", -1)]
    if spec.allow_prev:
        preds.append(("prev", -1))
    for j in spec.refs[c]:
        preds.append(("chan", j))
        if spec.allow_prev:
            preds.append(("prevchan", j))
    best: tuple[float, str, int, int] | None = None
    for pred, ref in preds:
        r = _residual(pred, ref, X, c, rows)
        off = int(np.median(r)) if r.size else 0
        z = zigzag(r - off)
        t = _pick_t(z)
        sym, nraw, _ = split(z, t, min(2, t))
        cost = _symbol_cost(sym, float(nraw.sum()), None, 1, scale)
        if best is None or cost < best[0]:
            best = (cost, pred, ref, off)
    assert best is not None
    best_cost, pred, ref, off = best
    z = zigzag(_residual(pred, ref, X, c, rows) - off)
    t = _pick_t(z)
    sym, nraw, _ = split(z, t, min(2, t))
    raw_bits = float(nraw.sum())

    ctx_cands: list[ChannelPlan] = [
        ChannelPlan(ctx="feat", feat=f) for f in spec.features if f in features
    ]
    for j in spec.ctx_refs[c]:
        ctx_cands.append(ChannelPlan(ctx="val", cref=j))
        if j in abs_e:
            ctx_cands.append(ChannelPlan(ctx="mag", cref=j))
    if spec.use_act and c > 0:
        ctx_cands.append(ChannelPlan(ctx="act"))
    chosen = ChannelPlan(pred=pred, ref=ref, off=off)
    best_ctx: np.ndarray | None = None
    for cand in ctx_cands:
        v = _context_variable(cand, X, abs_e, act, features, rows)
        assert v is not None
        sorted_v = np.sort(v)
        for nb in _BUCKET_CHOICES:
            if rows.size < nb * 256:
                continue
            edges = _edges_for(sorted_v, nb)
            if not edges:
                continue
            ctx = _bucket(v, edges)
            cost = _symbol_cost(sym, raw_bits, ctx, len(edges) + 1, scale)
            if cost < best_cost:
                best_cost, best_ctx = cost, ctx
                chosen = ChannelPlan(pred, ref, cand.ctx, cand.cref, cand.feat, edges, off)
    best_tm = (best_cost, t, min(2, t))
    for t2 in range(max(0, t - 4), min(MAX_T, t + 1) + 1):
        for m2 in range(0, min(t2, MAX_M) + 1):
            if (t2, m2) == (t, min(2, t)):
                continue
            sym2, nraw2, _ = split(z, t2, m2)
            cost = _symbol_cost(sym2, float(nraw2.sum()), best_ctx, chosen.buckets, scale)
            if cost < best_tm[0]:
                best_tm = (cost, t2, m2)
    _, t, m = best_tm
    return ChannelPlan(pred, ref, chosen.ctx, chosen.cref, chosen.feat, chosen.edges, off, t, m)


def _refit_plan(kept: ChannelPlan, c: int, X: np.ndarray, abs_e: dict[int, np.ndarray],
                act: np.ndarray | None, features: dict[str, np.ndarray],
                rows: np.ndarray) -> ChannelPlan:
    """``kept``'s predictor and context (chosen on another file, :class:`PlanMemo`) with this
    channel's own offset, bucket edges (as many buckets) and binarization: the parts of the
    search that follow the data's distribution, not its structure."""
    n = X.shape[1]
    rows = rows[::_REFIT_STRIDE]
    scale = n / max(1, rows.size)
    r = _residual(kept.pred, kept.ref, X, c, rows)
    off = int(np.median(r)) if r.size else 0
    z = zigzag(r - off)
    t = _pick_t(z)
    ctx, edges = None, ()
    if kept.ctx != "none":
        v = _context_variable(kept, X, abs_e, act, features, rows)
        assert v is not None
        buckets = min((b for b in _BUCKET_CHOICES if b >= kept.buckets), default=kept.buckets)
        edges = _edges_for(np.sort(v), buckets) if rows.size >= buckets * 256 else ()
        ctx = _bucket(v, edges) if edges else None
    best = None  # (the kept binarization's neighbourhood: t within one of this data's)
    for t2 in range(max(0, t - 1), min(MAX_T, t + 1) + 1):
        for m2 in sorted({0, min(t2, 2), min(t2, kept.m)}):
            sym, nraw, _ = split(z, t2, m2)
            cost = _symbol_cost(sym, float(nraw.sum()), ctx, len(edges) + 1, scale)
            if best is None or cost < best[0]:
                best = (cost, t2, m2)
    assert best is not None
    if not edges:
        return ChannelPlan(kept.pred, kept.ref, off=off, t=best[1], m=best[2])
    return ChannelPlan(kept.pred, kept.ref, kept.ctx, kept.cref, kept.feat, edges, off, best[1],
                       best[2])


# ---------------------------------------------------------------------------------------------
# group coding


@dataclass
class PlanMemo:
    """Channel plans chosen once and reused (:func:`reusing_plans`): the parts of a chunked
    file are alike, and choosing each channel's plan (about three quarters of a part's encode
    time) once for all of them keeps a chunked encode near a plain one's. ``record``: choose
    and keep each group's plans; else reuse the kept ones' predictors and contexts, refitting
    offsets, bucket edges and binarization to the file (:func:`_refit_plan`), and choose
    where none was kept (a group the first file did not have). Groups are told apart by their
    spec, channel count and how many such groups came before in the file, so the same file
    structure finds its plans."""

    record: bool = True
    plans: dict[tuple[Any, ...], list[ChannelPlan]] = field(default_factory=dict)
    seen: Counter[tuple[Any, ...]] = field(default_factory=Counter)


_MEMO: contextvars.ContextVar[PlanMemo | None] = contextvars.ContextVar("plans", default=None)


@contextlib.contextmanager
def reusing_plans(memo: PlanMemo) -> Iterator[PlanMemo]:
    """Within the block, :func:`encode_group` records plans into (or takes them from) ``memo``
    (its group count starts afresh: one block per file)."""
    memo.seen.clear()
    token = _MEMO.set(memo)
    try:
        yield memo
    finally:
        _MEMO.reset(token)


def _memo_plans(spec: GroupSpec, n_channels: int, n: int
                ) -> tuple[tuple[Any, ...] | None, list[ChannelPlan] | None]:
    """The memo key of this group and, when replaying, the plans kept for it."""
    memo = _MEMO.get()
    if memo is None:
        return None, None
    what = (spec, n_channels)
    key = (*what, memo.seen[what])
    memo.seen[what] += 1
    if n == 0:
        return None, None  # (an empty group's plans say nothing)
    return key, (None if memo.record else memo.plans.get(key))


def _needs_abs(spec: GroupSpec, n_channels: int) -> set[int]:
    return {j for c in range(n_channels) for j in spec.ctx_refs[c]}


def encode_group(
    X: np.ndarray,
    spec: GroupSpec,
    features: dict[str, np.ndarray],
    enc: AnsEncoder,
    tables: bytearray,
    plans: list[ChannelPlan] | None = None,
) -> list[dict[str, Any]]:
    """Code the channel-major int32 matrix ``X [C, N]`` into ``enc``/``tables``; returns the
    per-channel plans (JSON-able) that :func:`decode_group` needs.

    ``plans`` overrides the encoder's choice (for tests of every predictor and context)."""
    n_channels, n = X.shape
    if n and (int(X.min(initial=0)) < -VALUE_LIMIT or int(X.max(initial=0)) > VALUE_LIMIT):
        raise ValueError("channel values must fit in int32")
    key, kept = _memo_plans(spec, n_channels, n) if plans is None else (None, None)
    if kept is not None and not all(p.ctx != "feat" or p.feat in features for p in kept):
        kept = None
    rows = _sample_rows(n)
    keep_abs = _needs_abs(spec, n_channels)
    use_act = spec.use_act
    for given in (plans, kept):
        if given is not None:
            keep_abs |= {p.cref for p in given if p.ctx == "mag"}
            use_act = use_act or any(p.ctx == "act" for p in given)
    abs_e: dict[int, np.ndarray] = {}
    act = np.zeros(n, np.int64) if use_act else None
    chosen, used = [], []
    for c in range(n_channels):
        if plans is not None:
            plan = plans[c]
        elif kept is not None:
            plan = _refit_plan(kept[c], c, X, abs_e, act, features, rows)
        elif n:
            plan = _choose_plan(c, X, abs_e, act, features, spec, rows)
        else:
            plan = ChannelPlan()
        used.append(plan)
        e = _residual(plan.pred, plan.ref, X, c) - plan.off
        v = _context_variable(plan, X, abs_e, act, features)
        ctx = None if v is None else _bucket(v, plan.edges)
        _encode_symbols(e, ctx, plan, enc, tables)
        if c in keep_abs:
            abs_e[c] = _magnitude(e)
        if act is not None:
            act += np.abs(e)
        chosen.append(plan.to_meta())
    memo = _MEMO.get()
    if key is not None and memo is not None and memo.record:
        memo.plans[key] = used
    return chosen


def _encode_symbols(
    e: np.ndarray, ctx: np.ndarray | None, plan: ChannelPlan, enc: AnsEncoder, tables: bytearray
) -> None:
    sym, nraw, raw = split(zigzag(e), plan.t, plan.m)
    if ctx is None:
        groups = [sym]
    else:
        order = np.argsort(ctx, kind="stable")
        counts = np.bincount(ctx, minlength=plan.buckets)
        groups = np.split(sym[order], np.cumsum(counts)[:-1])
    for s in groups:
        q = table_from_counts(np.bincount(s)) if s.size else np.zeros(0, np.int64)
        write_table(q, tables)
        enc.categorical(s, q)
    if nraw.size and nraw.max() > 0:
        for b in np.unique(nraw[nraw > 0]).tolist():
            enc.raw_bits(raw[nraw == b], b)


def decode_group(
    n: int,
    plans_meta: Any,
    n_channels: int,
    spec: GroupSpec,
    features: dict[str, np.ndarray],
    dec: AnsDecoder,
    tables: VarintReader,
    sink: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray | None:
    """Inverse of :func:`encode_group`: the channel-major int32 matrix ``[n_channels, n]``.

    With ``sink``, each channel's int32 row is handed to ``sink(channel, row)`` as soon as it is
    decoded instead, and a row is kept only until the last channel that predicts from it or
    takes its context from it (the plans say which): the whole matrix never exists (returns
    None). Same values either way."""
    if not isinstance(plans_meta, list) or len(plans_meta) != n_channels:
        raise ContainerError(f"bad metadata: expected {n_channels} channel plans")
    plans = [ChannelPlan.from_meta(d, c, spec.features) for c, d in enumerate(plans_meta)]
    for f in {p.feat for p in plans if p.ctx == "feat"}:
        if f not in features:
            raise ContainerError(f"bad metadata: feature {f!r} is not available here")
    # the channel whose row each later one reads (prediction or value context): its last reader
    last_read: dict[int, int] = {}
    for c, p in enumerate(plans):
        if p.pred in ("chan", "prevchan"):
            last_read[p.ref] = c
        if p.ctx == "val":
            last_read[p.cref] = c
    X: Any = np.zeros((n_channels, n), np.int32) if sink is None else {}
    keep_abs = {p.cref for p in plans if p.ctx == "mag"}
    abs_e: dict[int, np.ndarray] = {}
    act = np.zeros(n, np.int64) if any(p.ctx == "act" for p in plans) else None
    for c, plan in enumerate(plans):
        v = _context_variable(plan, X, abs_e, act, features)
        ctx = None if v is None else _bucket(v, plan.edges)
        del v
        e = _decode_symbols(n, ctx, plan, dec, tables)
        del ctx
        x = _reconstruct(plan, e, X)
        if n and (int(x.min()) < -VALUE_LIMIT or int(x.max()) > VALUE_LIMIT):
            raise ContainerError("corrupt stream: decoded value out of range")
        if sink is None:
            X[c] = x
        else:
            row = x.astype(np.int32)
            for r in [r for r, last in last_read.items() if last == c and r in X]:
                del X[r]
            if last_read.get(c, -1) > c:
                X[c] = row
            sink(c, row)
        if c in keep_abs:
            abs_e[c] = _magnitude(e)
        if act is not None:
            act += np.abs(e)
    return X if sink is None else None


def _decode_symbols(
    n: int, ctx: np.ndarray | None, plan: ChannelPlan, dec: AnsDecoder, tables: VarintReader
) -> np.ndarray:
    limit = alphabet_limit(plan.t, plan.m, MAX_BITS)
    if ctx is None:
        counts = np.asarray([n])
        order = None
    else:
        counts = np.bincount(ctx, minlength=plan.buckets)
        order = np.argsort(ctx, kind="stable")
    parts = []
    for k in range(plan.buckets):
        q = tables.read_table(limit)
        if (counts[k] > 0) != (q.size > 0):
            raise ContainerError("corrupt stream: probability table does not match the data")
        parts.append(dec.categorical(int(counts[k]), q))
    sorted_sym = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    del parts
    if order is None:
        sym = sorted_sym
    else:
        sym = np.empty(n, np.int64)
        sym[order] = sorted_sym
        del order
    del sorted_sym  # (each temporary is let go as soon as it is used: 8 bytes a row each)
    nraw = raw_bits_of(sym, plan.t, plan.m)
    raw = np.zeros(n, np.uint64)
    if nraw.size and nraw.max() > 0:
        for b in np.unique(nraw[nraw > 0]).tolist():
            sel = nraw == b
            raw[sel] = dec.raw_bits(int(sel.sum()), b)
    del nraw
    return unzigzag(join(sym, raw, plan.t, plan.m))
