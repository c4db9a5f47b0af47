"""Colour fit: decoder-side refinement by one linear solve instead of gradient descent.

With the geometry and opacities of the decoded Gaussians fixed, a render is linear in their
colours: pixel ``p`` of view ``v`` is ``sum_i w_vpi c_i(d_vi)`` with the compositing weights
``w = alpha * transmittance`` and ``c_i(d) = sum_k sh_ik Y_k(d) + 0.5``. The side information
says, at each of its views, by how much the decoded renders are off (the coarse residuals,
upsampled as :func:`gscodec.sideinfo.targets` does). One render of each view collects, for
every Gaussian, ``den_vi = sum_p w_vpi`` and ``num_vi = sum_p w_vpi r_vp``: ``num_vi / den_vi``
is the colour change that view asks of Gaussian i (a weighted mean of the residuals under its
footprint, the update of SART in tomography: for opaque pixels, whose weights sum to 1, it
removes the residual without overshooting). Per Gaussian the views' requests are then fitted
together, weighted by ``den_vi``, on the SH bands up to ``bands`` (0: the DC term only; 1: also
the linear band, with a ridge ``ridge * sum_v den_vi`` that keeps a band a few views do not pin
down near its decoded value), and the result is clamped into the quantization cells, so that
the refined scene stays consistent with the file.

Cost: one forward render per side-information view and O(N) memory (no autograd graph, no
optimizer state); the gradient refinement of :mod:`gscodec.refine` renders forward and backward
at every one of its steps. What it cannot do: move, resize or re-shape Gaussians, or change
opacities. Deterministic (the renderer's order; float32 sums, float64 solves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .cameras import Camera
from .gaussians import Gaussians
from .render import render
from .render.cpu import NO_GRAD_MAX_PAIRS
from .render.sh import C0, sh_basis

# the ridge on the linear band, relative to a Gaussian's total weight: playbot (tuning split,
# SH 2, preset 7, 16 views, 4 evaluation views of seed 1 at 512 px): base 48.59 dB, DC only
# 48.69, linear band with ridge 1.0 / 0.3 / 0.1: 48.71 / 48.74 / 48.78 (the smallest tried)
DEFAULT_RIDGE = 0.1
# (pixel, Gaussian) pairs the renderer holds at once (the memory budget counts it:
# gscodec.budget.COLOUR_MAX_PAIRS)
MAX_PAIRS = NO_GRAD_MAX_PAIRS
SOLVE_CHUNK = 1 << 16  # Gaussians solved at once


def fit_colours(
    gaussians: Gaussians,
    cameras: Sequence[Camera],
    residuals: Sequence[np.ndarray],
    *,
    bands: int = 0,
    ridge: float = DEFAULT_RIDGE,
    relaxation: float = 1.0,
    cells: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    max_change: dict[str, np.ndarray] | None = None,
    inplace: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Gaussians:
    """New (numpy-backed) Gaussians whose colours remove ``residuals`` (``[h, w, 3]`` per
    camera, any block size that divides the camera's; image units) as well as one linear
    solve can; see the module docstring. ``cells``: (low, high) bounds for ``sh_dc`` and
    ``sh_rest`` (as :func:`gscodec.refinement.quantization_cells` gives). ``max_change``: bounds as
    half-widths around the decoded values (:func:`colour_changes`). ``progress(view, views)``
    after each view. ``inplace``: write the fitted coefficients into the SH array of
    ``gaussians`` (numpy float32; no copy of the scene) and return them."""
    if inplace and not (isinstance(gaussians.sh, np.ndarray) and gaussians.sh.dtype == np.float32
                        and gaussians.sh.flags.c_contiguous and gaussians.sh.flags.writeable):
        raise ValueError("inplace needs a writeable, contiguous float32 numpy SH array")
    g = gaussians.numpy()
    bands = max(0, min(bands, g.sh_degree))
    k = (bands + 1) ** 2
    changes = colour_changes(g, cameras, residuals, bands=bands, ridge=ridge,
                             relaxation=relaxation, max_change=max_change, progress=progress)
    if changes is None:
        return g
    sh = torch.from_numpy(g.sh if inplace else np.array(g.sh, np.float32))
    sh[:, :k] += changes
    del changes
    if cells:
        if "sh_dc" in cells:
            lo, hi = cells["sh_dc"]
            sh[:, :1] = torch.maximum(torch.minimum(sh[:, :1], hi.expand_as(sh[:, :1])),
                                      lo.expand_as(sh[:, :1]))
        if k > 1 and "sh_rest" in cells:
            # the bounds of the coefficients fitted (1..k-1), or of all the higher ones
            lo, hi = cells["sh_rest"]
            lo, hi = lo[:, : k - 1].expand_as(sh[:, 1:k]), hi[:, : k - 1].expand_as(sh[:, 1:k])
            sh[:, 1:k] = torch.maximum(torch.minimum(sh[:, 1:k], hi), lo)
    if inplace:
        return gaussians
    return Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh.numpy())


def colour_changes(
    geometry: Gaussians,
    cameras: Sequence[Camera],
    residuals: Sequence[np.ndarray],
    *,
    bands: int = 0,
    ridge: float = DEFAULT_RIDGE,
    relaxation: float = 1.0,
    max_change: dict[str, np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor | None:
    """The fit of :func:`fit_colours` as changes ``[n, (bands+1)^2, 3]`` (float32) to add to
    the first SH coefficients, or None without Gaussians or cameras. Only the geometry and
    opacities of ``geometry`` are used (compositing weights do not depend on colours), so the
    decoder runs it before it decodes any colour (its SH may be a placeholder of any degree;
    ``bands`` is the file's). ``max_change``: the largest change of each coefficient
    (half-widths of the quantization cells around the decoded values: ``sh_dc`` broadcastable
    to ``[n, 1, 3]``, ``sh_rest`` to ``[n, K, 3]``, leading axis n or 1;
    :func:`gscodec.refinement.quantization_halves`)."""
    if len(cameras) != len(residuals):
        raise ValueError("need one residual image per camera")
    g = geometry.numpy()
    n = g.n
    k = (bands + 1) ** 2
    if n == 0 or not cameras:
        return None
    means = torch.from_numpy(np.ascontiguousarray(g.means, np.float32))
    # per Gaussian: the normal equations of the k coefficients (shared by the 3 channels), the
    # symmetric matrix as its upper triangle (float32: 88 bytes a Gaussian with the linear
    # band; the solve is 4x4 and well posed)
    tri = torch.triu_indices(k, k)
    A = torch.zeros(n, tri.shape[1], dtype=torch.float32)
    b = torch.zeros(n, k, 3, dtype=torch.float32)
    # one view's sums (reused; float32 as A and b: a Gaussian's pairs in one view are few)
    num = torch.zeros(n, 3, dtype=torch.float32)
    den = torch.zeros(n, dtype=torch.float32)
    # (no gscodec.render.deterministic here: a forward render's CPU index_add is already
    # deterministic, and torch.use_deterministic_algorithms imports some 800 modules, 68 MB)
    with torch.no_grad():
        for v, (cam, res) in enumerate(zip(cameras, residuals, strict=True)):
            _accumulate_view(g, means, cam, res, bands, tri, A, b, num, den)
            if progress:
                progress(v + 1, len(cameras))
    del num, den
    return _solve(A, b, tri, k, ridge=ridge, relaxation=relaxation, max_change=max_change)


def _accumulate_view(g: Gaussians, means: torch.Tensor, cam: Camera, res: np.ndarray,
                     bands: int, tri: torch.Tensor, A: torch.Tensor, b: torch.Tensor,
                     num: torch.Tensor, den: torch.Tensor) -> None:
    """Adds one view's normal equations to ``A`` and ``b`` (``num``, ``den``: that view's
    weighted residual sums and weights per Gaussian, reused between views)."""
    r = torch.from_numpy(np.ascontiguousarray(res, np.float32)).permute(2, 0, 1)[None]
    up = torch.nn.functional.interpolate(r, size=(cam.height, cam.width),
                                         mode="bilinear", align_corners=False)
    up = up[0].permute(1, 2, 0).reshape(-1, 3).contiguous()
    num.zero_()
    den.zero_()

    def sink(ids: torch.Tensor, pix: torch.Tensor, w: torch.Tensor) -> None:
        num.index_add_(0, ids, w[:, None] * up[pix])
        den.index_add_(0, ids, w)

    # the weights do not depend on the colours: the DC term is enough to render
    render(g, cam, sh_degree=0, backend="cpu", pair_sink=sink, max_pairs=MAX_PAIRS)
    seen_all = torch.nonzero(den > 0).squeeze(1)
    centre = torch.from_numpy(-cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3])
    # in chunks of Gaussians: the outer products are 128 bytes a Gaussian in float64
    for a in range(0, seen_all.numel(), SOLVE_CHUNK):
        seen = seen_all[a : a + SOLVE_CHUNK]
        if bands:
            d = means[seen].double() - centre
            d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
            basis = sh_basis(bands, d)  # [m, k]
        else:
            basis = torch.full((seen.numel(), 1), C0, dtype=torch.float64)
        ds = den[seen].double()
        outer = ds[:, None, None] * basis[:, :, None] * basis[:, None, :]
        A[seen] += outer[:, tri[0], tri[1]].float()
        b[seen] += (basis[:, :, None] * num[seen].double()[:, None, :]).float()


def _solve(A: torch.Tensor, b: torch.Tensor, tri: torch.Tensor, k: int, *, ridge: float,
           relaxation: float, max_change: dict[str, np.ndarray] | None) -> torch.Tensor:
    """Each Gaussian's coefficient changes from its accumulated normal equations."""
    n = A.shape[0]
    seen = torch.nonzero(A[:, 0] > 0).squeeze(1)  # (entry 0 of the triangle: (0, 0))
    changes = torch.zeros(n, k, 3, dtype=torch.float32)
    diag = torch.full((k,), ridge, dtype=torch.float64)
    diag[0] = 1e-9
    for a in range(0, seen.numel(), SOLVE_CHUNK):
        idx = seen[a : a + SOLVE_CHUNK]
        As = torch.zeros(idx.numel(), k, k, dtype=torch.float64)
        As[:, tri[0], tri[1]] = A[idx].double()
        As[:, tri[1], tri[0]] = A[idx].double()
        bs = b[idx].double()
        # the ridge keeps coefficients the views do not pin down near their decoded values;
        # the DC term gets a tiny one (numerical safety only)
        scale = As[:, 0, 0] / C0**2  # the Gaussian's total weight over the views
        As = As + scale[:, None, None] * torch.diag(diag)[None]
        delta = relaxation * torch.linalg.solve(As, bs)  # [m, k, 3]
        if max_change:
            delta = _bounded(delta, max_change, idx, k)
        changes[idx] = delta.float()
    return changes


def _bounded(delta: torch.Tensor, max_change: dict[str, np.ndarray], idx: torch.Tensor,
             k: int) -> torch.Tensor:
    """``delta [m, k, 3]`` of Gaussians ``idx`` clamped to the half-widths ``max_change``."""
    parts = []
    for name, cols in (("sh_dc", slice(0, 1)), ("sh_rest", slice(0, k - 1))):
        if name == "sh_rest" and k == 1:
            break
        half = max_change.get(name)
        if half is None:
            parts.append(torch.full((1, cols.stop - cols.start, 1), float("inf"),
                                    dtype=torch.float64))
            continue
        # (the chunk's rows and columns before the float64 copy: the whole [n, K, 1] array
        # as float64, each chunk, was 120 MB of a 1M SH-3 decode's peak)
        h = np.asarray(half)
        h = h[idx.numpy()] if h.shape[0] != 1 else h
        h = torch.from_numpy(np.asarray(h[:, cols], np.float64))
        parts.append(h.expand(-1, cols.stop - cols.start, 3))
    m = delta.shape[0]
    lim = torch.cat([p.expand(m, -1, 3) for p in parts], dim=1)
    return torch.maximum(torch.minimum(delta, lim), -lim)
