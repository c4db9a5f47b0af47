"""The pure-PyTorch rasterizer: the reference on machines without a GPU.

Every (pixel, Gaussian) pair inside a Gaussian's screen-space box is enumerated, the pairs are
grouped by pixel with the Gaussians in front-to-back order, and the colours are alpha-composited
with the conventions of gsplat's classic mode: ``alpha = min(0.999, opacity * exp(-power))``,
pairs with ``power < 0`` or ``alpha < 1/255`` skipped, and a pixel stops at the Gaussian that
would bring its transmittance to 1e-4 or below (that one excluded). The transmittance of each
pixel is a product, computed as a sum of ``log(1 - alpha)`` in float64 within each pixel's run.

Gaussians are processed in depth-ordered chunks of at most ``max_pairs`` pairs, carrying each
pixel's transmittance from one chunk to the next, so memory stays bounded whatever the scene.
Everything is differentiable with autograd (the boxes and the ordering are not, as in gsplat).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .project import ALPHA_THRESHOLD

PairSink = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]

MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
DEFAULT_MAX_PAIRS = 1 << 22
# without autograd nothing is kept between chunks: smaller chunks bound the memory (about 150
# bytes a pair) and are no slower (1M Gaussians at 256 px, 1 thread: 5.5-6.3 s a render with
# 2^19 or 2^20 pairs a chunk, 8.5-10.4 s with 2^22, which also peaked 1 GB higher; later, with
# the rows of on-screen Gaussians only: 2.5-2.8 s and +300 MB with 2^19, 2.3-3.1 s and +200 MB
# with 2^18, 2.2-2.3 s and +184 MB with 2^17, one other job running)
NO_GRAD_MAX_PAIRS = 1 << 17


def rasterize(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    *,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    pair_sink: PairSink | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite projected Gaussians; returns (colour [H, W, 3], alpha [H, W, 1]) on black.
    ``pair_sink(gaussian, pixel, weight)``, where given, receives every composited pair (chunk
    by chunk: Gaussian indices, flat pixel indices ``y * width + x``, and the pair's weight
    ``alpha * transmittance``, detached)."""
    return rasterize_table(pair_table(means2d, conics, opacities, colors), depths, radii,
                           width, height, max_pairs=max_pairs, pair_sink=pair_sink)


def pair_table(means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor,
               colors: torch.Tensor) -> torch.Tensor:
    """Every per-Gaussian quantity a pair needs, one row a Gaussian: mean (2), conic (3),
    opacity (1), colour (C); gathered once a chunk (one scatter in the backward)."""
    return torch.cat([means2d, conics, opacities[:, None], colors], dim=1)


def rasterize_table(
    table: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    *,
    max_pairs: int = DEFAULT_MAX_PAIRS,
    pair_sink: PairSink | None = None,
    ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rasterize` of the rows of a :func:`pair_table`; ``ids``: the Gaussian index of
    each row that ``pair_sink`` receives (default: the row)."""
    on = (radii > 0).any(dim=-1)
    if bool(on.all()):  # (the no-grad path of render passes on-screen rows only)
        order = depth_order(depths.detach())
    else:
        visible = torch.nonzero(on).squeeze(1)
        order = visible.index_select(0, depth_order(depths.detach().index_select(0, visible)))
        del visible
    del on
    boxes = screen_boxes(table, radii, order, width, height)
    return composite(table, order, boxes, width, height, max_pairs=max_pairs,
                     pair_sink=pair_sink, ids=ids)


def depth_order(depths: torch.Tensor) -> torch.Tensor:
    """The rows front to back (:func:`_depth_order`), int32 where there are fewer than 2^31
    (half the memory of the int64 indices, kept through the whole render)."""
    order = _depth_order(depths)
    return order.to(torch.int32) if order.numel() < (1 << 31) else order


def screen_boxes(table: torch.Tensor, radii: torch.Tensor, order: torch.Tensor | None,
                 width: int, height: int) -> tuple[torch.Tensor, ...]:
    """``(x0, bw, y0, bh)`` of the rows ``order`` (None: all) of a :func:`pair_table` with
    screen radii ``radii``: pixel columns j with centre j + 0.5 within the radius,
    ceil(mx - rx - 0.5) .. floor(mx + rx - 0.5), clamped to the image, as first pixel and
    extent, int16 where the image allows (1M Gaussians' boxes: 8 MB), computed one axis at a
    time."""
    with torch.no_grad():
        small = torch.int16 if max(width, height) < (1 << 15) else torch.int32
        boxes = []
        for axis, size in ((0, width), (1, height)):
            m = table.detach()[:, axis]
            r = radii[:, axis]
            if order is not None:
                m, r = m.index_select(0, order), r.index_select(0, order)
            r = r.to(m.dtype)
            lo = torch.ceil(m - r - 0.5).clamp(0, size - 1)
            hi = torch.floor(m + r - 0.5).clamp(0, size - 1)
            del m, r
            boxes += [lo.to(small), (hi - lo + 1).clamp(min=0).to(small)]
            del lo, hi
    return tuple(boxes)


class Canvas:
    """The running sums of an image composited in pieces, front to back: colour ``[P, C]``,
    alpha ``[P]``, log transmittance ``[P]`` (float64) and whether each pixel has finished."""

    def __init__(self, n_pix: int, channels: int, dtype: torch.dtype, device: torch.device):
        self.color = torch.zeros(n_pix, channels, dtype=dtype, device=device)
        self.alpha = torch.zeros(n_pix, dtype=dtype, device=device)
        self.log_t = torch.zeros(n_pix, dtype=torch.float64, device=device)
        self.done = torch.zeros(n_pix, dtype=torch.bool, device=device)
        self.fresh = True  # nothing composited yet (no pixel finished)

    def finished(self) -> bool:
        """Whether every pixel has stopped: Gaussians behind add nothing."""
        return bool(self.done.all())

    def images(self, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(colour [H, W, C], alpha [H, W, 1])."""
        return self.color.reshape(height, width, -1), self.alpha.reshape(height, width, 1)


def composite(table: torch.Tensor, order: torch.Tensor, boxes: tuple[torch.Tensor, ...],
              width: int, height: int, *, max_pairs: int = DEFAULT_MAX_PAIRS,
              pair_sink: PairSink | None = None, ids: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The image of the rows ``order`` (front to back) of a :func:`pair_table` with their
    :func:`screen_boxes`, composited in chunks of at most ``max_pairs`` pairs."""
    canvas = Canvas(width * height, table.shape[1] - 6, table.dtype, table.device)
    composite_into(canvas, table, order, boxes, width, max_pairs=max_pairs,
                   pair_sink=pair_sink, ids=ids)
    return canvas.images(width, height)


def composite_into(canvas: Canvas, table: torch.Tensor, order: torch.Tensor | None,
                   boxes: tuple[torch.Tensor, ...], width: int, *,
                   max_pairs: int = DEFAULT_MAX_PAIRS, pair_sink: PairSink | None = None,
                   ids: torch.Tensor | None = None) -> None:
    """:func:`composite` of the rows ``order`` (default: all, in the table's order) onto
    ``canvas``, behind what it holds: a render composited in pieces, each piece the next
    Gaussians in depth order, is the render composited at once (chunk boundaries aside)."""
    height = canvas.done.numel() // width
    x0, bw, y0, bh = boxes
    with torch.no_grad():
        # (int32 areas of int16 boxes, summed in int64: no int64 copies of the boxes)
        kind = torch.int32 if bw.dtype == torch.int16 else torch.int64
        ends = torch.cumsum(bw.to(kind) * bh.to(kind), 0, dtype=torch.int64)
    start = 0
    n = x0.numel()
    while start < n:
        # the largest chunk of Gaussians (at least one) with at most max_pairs pairs
        base = ends[start - 1] if start else 0
        stop = int(torch.searchsorted(ends, base + max_pairs, right=True))
        stop = max(stop, start + 1)
        sel = slice(start, stop)
        cnt = torch.diff(ends[sel], prepend=ends[start - 1 : start] if start
                         else ends.new_zeros(1))
        rows = order[sel] if order is not None else torch.arange(
            start, stop, device=table.device, dtype=torch.int32)
        cx0, cy0, cbw = x0[sel], y0[sel], bw[sel]
        if not canvas.fresh:
            # Gaussians whose whole box lies on finished pixels add nothing: drop them before
            # their pairs are enumerated (a summed-area table of the finished pixels)
            with torch.no_grad():
                cx1 = cx0.long() + cbw.long() - 1  # (below x0 for empty boxes, then unused)
                cy1 = cy0.long() + bh[sel].long() - 1
                live = _live_boxes(canvas.done.reshape(height, width), cx0.long(),
                                   cy0.long(), cx1, cy1, cnt)
                if not bool(live.all()):
                    rows, cx0, cy0, cbw, cnt = (rows[live], cx0[live], cy0[live], cbw[live],
                                                cnt[live])
        if rows.numel():
            canvas.color, canvas.alpha, canvas.log_t, canvas.done = _composite_chunk(
                rows, cx0, cy0, cbw, cnt, table, width, canvas.color, canvas.alpha,
                canvas.log_t, canvas.done, pair_sink, ids)
            canvas.fresh = False
        start = stop


def _depth_order(depths: torch.Tensor) -> torch.Tensor:
    """The stable ascending order of ``depths``: where all are positive float32 (in front of
    the camera, as every on-screen Gaussian is), the order of their bit patterns as int32,
    which is the same order and sorts about 5x faster on a CPU."""
    if depths.dtype == torch.float32 and bool((depths > 0).all()):
        return torch.argsort(depths.view(torch.int32), stable=True)
    return torch.argsort(depths, stable=True)


def _live_boxes(done: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor,
                y1: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """For each box (inclusive pixel ranges, ``counts`` pixels; empty where 0), whether any of
    its pixels is not finished."""
    h, w = done.shape
    # (int32 counts where the image allows: half the memory traffic of int64)
    kind = torch.int32 if (h + 1) * (w + 1) < (1 << 31) else torch.int64
    sat = torch.zeros(h + 1, w + 1, dtype=kind, device=done.device)
    sat[1:, 1:] = done.to(kind).cumsum(0, dtype=kind).cumsum(1, dtype=kind)
    flat, row = sat.reshape(-1), w + 1
    top, bottom = y0 * row, (y1 + 1) * row
    finished = (flat.index_select(0, bottom + x1 + 1) - flat.index_select(0, top + x1 + 1)
                - flat.index_select(0, bottom + x0) + flat.index_select(0, top + x0))
    return (counts > 0) & (finished < counts)


def _pairs(ids, x0, y0, bw, counts, width, done):
    """The (flat pixel, row) pairs of a chunk's boxes on pixels not yet finished, in the
    chunk's order (int32 pixels); None where there are none. (Gathers are index_select and the
    per-pair integers int32: 2-4x faster on a CPU than advanced indexing and int64, the same
    values; a chunk has at most 2^31 pairs.)"""
    device = ids.device
    total = int(counts.sum())
    if total == 0:
        return None
    counts32 = counts.to(torch.int32)
    local = torch.repeat_interleave(
        torch.arange(ids.numel(), device=device, dtype=torch.int32), counts32)
    first = torch.cumsum(counts32, 0, dtype=torch.int32) - counts32
    # per Gaussian: its first pair, its box's width and its box's top-left pixel
    per = torch.stack([first, bw.to(torch.int32),
                       y0.to(torch.int32) * width + x0.to(torch.int32)], 1)
    first, w, corner = per.index_select(0, local).unbind(1)
    del per
    k = torch.arange(total, device=device, dtype=torch.int32) - first
    row = torch.div(k, w, rounding_mode="floor")
    pix = corner + row * width + (k - row * w)
    del first, w, corner, k, row
    keep_pix = ~done.index_select(0, pix)  # pixels that are finished take no more pairs
    if not bool(keep_pix.all()):
        pix, local = pix[keep_pix], local[keep_pix]
    if pix.numel() == 0:
        return None
    return pix, ids.index_select(0, local)


def _composite_chunk(ids, x0, y0, bw, counts, table, width,
                     color_acc, alpha_acc, log_t, done, pair_sink=None, gaussian_ids=None):
    device = table.device
    with torch.no_grad():
        pairs = _pairs(ids, x0, y0, bw, counts, width, done)
        if pairs is None:
            return color_acc, alpha_acc, log_t, done
        pix, g = pairs
        del pairs
        px = (pix % width).to(table.dtype) + 0.5
        py = torch.div(pix, width, rounding_mode="floor").to(table.dtype) + 0.5

    # (unbind, not six column selects: each select's backward fills a zero tensor of the
    # whole gather, which was a quarter of a backward pass)
    mx, my, ca, cb, cc, opacity = table[:, :6].index_select(0, g).unbind(1)
    dx = px - mx
    dy = py - my
    power = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    alpha = torch.clamp(opacity * torch.exp(-power), max=MAX_ALPHA)
    # skipped pairs composite nothing: dropped before the pairs are sorted (a pair of alpha
    # 0 adds exactly 0 to every sum below and cannot stop a pixel, so the image is the same)
    with torch.no_grad():
        take = ~((power.detach() < 0) | (alpha.detach() < ALPHA_THRESHOLD))
        all_taken = bool(take.all())
        if not all_taken:
            take = torch.nonzero(take).squeeze(1)
            pix, g = pix.index_select(0, take), g.index_select(0, take)
    if not all_taken:
        alpha = alpha.index_select(0, take)
    # (temporaries go as soon as they are used: autograd keeps what its backward needs)
    del dx, dy, power, px, py, mx, my, ca, cb, cc, opacity, take
    if pix.numel() == 0:
        return color_acc, alpha_acc, log_t, done
    with torch.no_grad():
        # group by pixel, keeping the depth order of the Gaussians within each pixel
        pix, perm = torch.sort(pix, stable=True)
        g = g.index_select(0, perm)
        uniq, run_len = torch.unique_consecutive(pix, return_counts=True)
        run_start = torch.cumsum(run_len, 0) - run_len
        run_of = torch.repeat_interleave(
            torch.arange(uniq.numel(), device=device, dtype=torch.int32), run_len)
        del uniq
    alpha = alpha.index_select(0, perm)
    colors = table[:, 6:].index_select(0, g)
    del perm

    log1m = torch.log1p(-alpha.to(torch.float64))
    csum = torch.cumsum(log1m, 0)
    # exclusive prefix sum within each pixel's run
    before = (csum - log1m) - (csum.index_select(0, run_start)
                               - log1m.index_select(0, run_start)).index_select(0, run_of)
    log_excl = log_t.index_select(0, pix) + before
    del csum, before, run_start, run_of
    with torch.no_grad():
        next_t = torch.exp(log_excl.detach() + log1m.detach())
        keep = next_t > MIN_TRANSMITTANCE  # monotone along each run: a prefix is kept
        del next_t
    trans = torch.exp(log_excl).to(alpha.dtype)
    del log_excl
    weight = torch.where(keep, alpha * trans, torch.zeros_like(alpha))
    pix = pix.long()  # (index_add is slow with int32 indices)
    if pair_sink is not None:
        with torch.no_grad():
            live = weight.detach() > 0
            rows = g[live]
            rows = rows if gaussian_ids is None else gaussian_ids.index_select(0, rows)
            pair_sink(rows.long(), pix[live], weight.detach()[live])
    color_acc = color_acc.index_add(0, pix, weight[:, None] * colors)
    alpha_acc = alpha_acc.index_add(0, pix, weight)
    kept = torch.where(keep, log1m, torch.zeros_like(log1m))
    log_t = log_t.index_add(0, pix, kept)
    with torch.no_grad():
        stopped = torch.zeros_like(done)
        stopped[pix[~keep]] = True
        done = done | stopped
    return color_acc, alpha_acc, log_t, done
