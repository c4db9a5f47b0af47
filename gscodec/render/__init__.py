"""Differentiable rendering of 3D Gaussians, with a gsplat (CUDA) and a pure-PyTorch (CPU)
backend behind one function, :func:`render`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from ..cameras import Camera
from ..gaussians import Gaussians
from ..parallel import threaded_iter
from . import cpu
from .project import ALPHA_THRESHOLD, MAX_EXTENT, project
from .sh import sh_to_rgb

BACKENDS = ("auto", "cpu", "gsplat")

T = TypeVar("T")
R = TypeVar("R")
PROJECT_CHUNK = 1 << 15  # Gaussians projected at once by the CPU backend without autograd (1M SH-3
# decode with the colour fit: peak 694,192 KiB at 2^17, 656,284 KiB in default_path.md at 2^15)


@dataclass
class RenderResult:
    """``image [H, W, 3]`` (linear RGB, not clamped, background composited) and
    ``alpha [H, W, 1]`` (accumulated opacity), torch tensors on the rendering device."""

    image: torch.Tensor
    alpha: torch.Tensor


@contextmanager
def deterministic(warn_only: bool = False) -> Iterator[None]:
    """Run the body with torch's deterministic kernels: the CPU rasterizer's backward scatters
    with ``index_add``, whose multithreaded sums otherwise vary between runs at the last bit.
    ``warn_only``: ops without a deterministic kernel (gsplat's CUDA ones) warn instead of
    raising. The previous setting is restored."""
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


_GSPLAT_STATE: dict[str, Any] = {}


def gsplat_available() -> bool:
    """True where CUDA is present and gsplat renders: gsplat compiles its CUDA kernels on first
    use (minutes, once per machine), so importing it is not enough. The first call on a CUDA
    machine renders one Gaussian with gsplat; if that fails (no compiler, a CUDA version gsplat
    does not build with), "auto" falls back to the pure-PyTorch renderer with a warning, once.
    The answer is remembered for the process."""
    if not torch.cuda.is_available():
        return False
    if "ok" not in _GSPLAT_STATE:
        _GSPLAT_STATE["ok"] = _probe_gsplat()
    return bool(_GSPLAT_STATE["ok"])


def _probe_gsplat() -> bool:
    try:
        from .gsplat_backend import render_gsplat

        def t(values: Any) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device="cuda")

        # one grey Gaussian 2 units in front of an 8x8 camera at the origin
        image, _ = render_gsplat(t([[0.0, 0.0, 2.0]]), t([[1.0, 0.0, 0.0, 0.0]]),
                                 t([[-2.0, -2.0, -2.0]]), t([1.0]), t([[[0.5, 0.5, 0.5]]]),
                                 torch.eye(4, device="cuda"),
                                 t([[8.0, 0.0, 4.0], [0.0, 8.0, 4.0], [0.0, 0.0, 1.0]]),
                                 8, 8, 0, 0.3, 0.01)
        torch.cuda.synchronize()
        if not bool(torch.isfinite(image).all()) or float(image.max()) <= 0.0:
            raise RuntimeError("a test Gaussian rendered empty or non-finite")
        return True
    except Exception as e:  # noqa: BLE001 - any failure means: do not use gsplat
        import warnings

        warnings.warn(f"gsplat does not render on this machine ({type(e).__name__}: {e}); "
                      "using the pure-PyTorch renderer", RuntimeWarning, stacklevel=3)
        return False


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}")
    if backend == "auto":
        return "gsplat" if gsplat_available() else "cpu"
    return backend


def side_by_side(fn: Callable[[T], R], items: list[T], backend: str = "auto",
                 device: str | torch.device | None = None) -> list[R]:
    """``fn`` over ``items``, each a render's worth of work with ``backend`` on ``device``,
    results in item order: side by side on the cores where that is the CPU renderer on the
    CPU (:func:`gscodec.parallel.threaded`, the same results), one at a time elsewhere."""
    return list(side_by_side_iter(fn, items, backend, device))


def side_by_side_iter(fn: Callable[[T], R], items: list[T], backend: str = "auto",
                      device: str | torch.device | None = None) -> Iterator[R]:
    """:func:`side_by_side` as results in item order as they come, a few in flight
    (:func:`gscodec.parallel.threaded_iter`): for callers that fold them."""
    on_cpu = resolve_backend(backend) == "cpu" and (device is None
                                                      or torch.device(device).type == "cpu")
    if on_cpu:
        return threaded_iter(fn, items)
    return (fn(item) for item in items)


def _tensor(x: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)
    return x.to(device=device, dtype=dtype)


def render(
    gaussians: Gaussians,
    camera: Camera,
    *,
    sh_degree: int | None = None,
    background: torch.Tensor | tuple[float, float, float] | None = None,
    backend: str = "auto",
    device: str | torch.device | None = None,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    max_pairs: int | None = None,
    pair_sink: cpu.PairSink | None = None,
    opacity_scale: torch.Tensor | None = None,
) -> RenderResult:
    """Render ``gaussians`` from ``camera``; differentiable with respect to every attribute.

    Args:
        gaussians: the Gaussians (numpy arrays or torch tensors; tensors keep their autograd
            graph). Quaternions need not be normalised; scales are log-scales; opacities are
            logits; SH coefficients ``[N, (d+1)^2, 3]`` are evaluated along the direction from
            the camera centre to each Gaussian, ``colour = max(sum + 0.5, 0)``.
        camera: pinhole camera (``viewmat`` world-to-camera, ``K``, ``width``, ``height``;
            x right, y down, z forward; pixel centres at half-integers).
        sh_degree: use the SH bands up to this degree (default: all the Gaussians have).
        background: RGB composited behind the Gaussians (default black).
        backend: ``"gsplat"`` (CUDA), ``"cpu"`` (pure PyTorch, any device) or ``"auto"``
            (gsplat where CUDA is available, else cpu).
        device: where to render (default: the device of the Gaussians' tensors, CUDA for
            gsplat, else CPU).
        eps2d: screen-space dilation added to the diagonal of each 2D covariance, in pixels^2.
        near_plane: Gaussians closer than this (camera z) are culled.
        max_pairs: CPU backend only: the most (pixel, Gaussian) pairs processed at once
            (default: ``cpu.DEFAULT_MAX_PAIRS`` with autograd, ``cpu.NO_GRAD_MAX_PAIRS``
            without).
        pair_sink: CPU backend only: receives every composited (Gaussian, pixel, weight) pair
            (:func:`gscodec.render.cpu.rasterize`); an error with gsplat.
        opacity_scale: ``[N]`` factors on the opacities (after the sigmoid): the gradient of
            an image with respect to them at 1 is each Gaussian's first-order removal effect
            (:func:`gscodec.importance.removal_costs`).

    Both backends follow gsplat's classic mode: EWA projection with ``eps2d``, a 3.33-sigma
    (opacity-aware) screen extent, ``alpha = min(0.999, opacity * exp(-power))`` skipped below
    1/255, front-to-back compositing that stops at transmittance 1e-4.
    """
    backend = resolve_backend(backend)
    if device is None:
        if backend == "gsplat":
            device = torch.device("cuda")
        elif isinstance(gaussians.means, torch.Tensor):
            device = gaussians.means.device
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    t = _Tensors(_tensor(gaussians.means, device), _tensor(gaussians.quats, device),
                 _tensor(gaussians.log_scales, device),
                 _opacities(gaussians, device, opacity_scale),
                 _tensor(gaussians.sh, device),
                 torch.as_tensor(camera.viewmat, dtype=torch.float32, device=device),
                 torch.as_tensor(camera.K, dtype=torch.float32, device=device))
    bg = torch.zeros(3, device=device) if background is None else \
        torch.as_tensor(background, dtype=torch.float32, device=device)
    full_degree = gaussians.sh_degree
    degree = full_degree if sh_degree is None else min(sh_degree, full_degree)

    if t.means.shape[0] == 0:  # (gsplat 1.5.3 dies with SIGFPE on zero Gaussians)
        image = torch.zeros(camera.height, camera.width, 3, device=device)
        alpha = torch.zeros(camera.height, camera.width, 1, device=device)
    elif backend == "gsplat":
        if pair_sink is not None:
            raise ValueError("pair_sink needs the cpu backend")
        from .gsplat_backend import render_gsplat

        image, alpha = render_gsplat(t.means, t.quats, t.log_scales, t.opacities, t.sh,
                                     t.viewmat, t.K, camera.width, camera.height, degree, eps2d,
                                     near_plane)
    else:
        image, alpha = _render_cpu(t, camera, degree, eps2d, near_plane, max_pairs, pair_sink)
    image = image + (1.0 - alpha) * bg
    return RenderResult(image, alpha)


def _opacities(gaussians: Gaussians, device: torch.device,
               scale: torch.Tensor | None) -> torch.Tensor:
    opacities = torch.sigmoid(_tensor(gaussians.opacity_logits, device))
    return opacities if scale is None else opacities * scale.to(device)


@dataclass
class _Tensors:
    """The attributes and camera of one render, as tensors on its device."""

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    viewmat: torch.Tensor
    K: torch.Tensor


def _render_cpu(t: _Tensors, camera: Camera, degree: int, eps2d: float, near_plane: float,
                max_pairs: int | None, pair_sink: cpu.PairSink | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The PyTorch rasterizer's image and alpha (:func:`render` with the cpu backend)."""
    cam_pos = -t.viewmat[:3, :3].T @ t.viewmat[:3, 3]
    # the coefficients of the bands used, a view (gathered rows: 3 of 48 floats a Gaussian
    # for an SH-3 scene rendered with the DC term alone, as the importance estimate and the
    # colour fit render)
    used = (degree + 1) ** 2
    used_sh = t.sh if used >= t.sh.shape[1] else t.sh[:, :used]

    def screen(rows: slice | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Projection, colours and opacities of the rows (a slice, or indices: gathered)."""
        def pick(x: torch.Tensor) -> torch.Tensor:
            if isinstance(rows, slice):
                return x[rows]
            # (rows gathered flat: a third faster than along the first of three dimensions;
            # the flat form of the used SH bands is a view, with rows strided)
            return x.reshape(x.shape[0], -1).index_select(0, rows).reshape(-1, *x.shape[1:])
        means, opacities = pick(t.means), pick(t.opacities)
        means2d, conics, depths, radii = project(
            means, pick(t.quats), pick(t.log_scales), opacities, t.viewmat, t.K,
            camera.width, camera.height, eps2d=eps2d, near=near_plane)
        dirs = means - cam_pos
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp(min=1e-12)
        return (means2d, conics, depths, radii, sh_to_rgb(pick(used_sh), dirs, degree),
                opacities)

    n = t.means.shape[0]
    if max_pairs is None:
        max_pairs = (cpu.DEFAULT_MAX_PAIRS if torch.is_grad_enabled()
                     else cpu.NO_GRAD_MAX_PAIRS)
    if torch.is_grad_enabled():
        means2d, conics, depths, radii, colors, _ = screen(slice(0, n))
        return cpu.rasterize(means2d, conics, colors, t.opacities, depths, radii,
                             camera.width, camera.height, max_pairs=max_pairs,
                             pair_sink=pair_sink)
    # without autograd: the Gaussians in front of the camera put in depth order first (their
    # depths alone), then projected and composited in that order a chunk at a time, so that
    # a render holds a few bytes a Gaussian (the order) and one chunk's rows, not every
    # Gaussian's projection (1M SH-3 Gaussians at 256 px: 76 -> 34 MB a render, 1.33 -> 1.45 s;
    # benchmarks/results/render-memory-2026-12-04.md)
    order = _front_to_back(t, near_plane)
    canvas = cpu.Canvas(camera.width * camera.height, t.sh.shape[-1], torch.float32,
                        t.means.device)
    for a in range(0, order.numel(), PROJECT_CHUNK):
        rows = order[a : a + PROJECT_CHUNK].long()
        if not canvas.fresh:
            rows = rows[_not_hidden(t, rows, canvas.done.reshape(camera.height, camera.width),
                                    camera, eps2d)]
            if rows.numel() == 0:
                continue
        m2d, con, _, rad, col, op = screen(rows)
        on = torch.nonzero((rad > 0).any(dim=-1)).squeeze(1)
        table = cpu.pair_table(m2d[on], con[on], op[on], col[on])
        boxes = cpu.screen_boxes(table, rad[on], None, camera.width, camera.height)
        del m2d, con, rad, col, op
        cpu.composite_into(canvas, table, None, boxes, camera.width, max_pairs=max_pairs,
                           pair_sink=pair_sink, ids=rows.index_select(0, on))
        if canvas.finished():  # (whatever lies behind adds nothing)
            break
    return canvas.images(camera.width, camera.height)


def _not_hidden(t: _Tensors, rows: torch.Tensor, done: torch.Tensor, camera: Camera,
                eps2d: float) -> torch.Tensor:
    """Whether each Gaussian of ``rows`` (all in front of the near plane) may reach a pixel
    that has not finished (``done [H, W]``), from :func:`_screen_bounds`, before it is
    projected: the rest go as the compositor would drop them (none of their pairs lands on an
    unfinished pixel), without their projection."""
    x0, x1, y0, y1 = _screen_bounds(t, rows, camera, eps2d)
    counts = (x1 - x0 + 1).clamp(min=0) * (y1 - y0 + 1).clamp(min=0)
    return cpu._live_boxes(done, x0, y0, x1, y1, counts)


def _screen_bounds(t: _Tensors, rows: torch.Tensor, camera: Camera, eps2d: float
                   ) -> tuple[torch.Tensor, ...]:
    """``(x0, x1, y0, y1)``, inclusive pixel ranges that hold the screen box
    (:func:`gscodec.render.cpu.screen_boxes`) each Gaussian of ``rows`` gets from the
    projection, from its centre's projection and its largest scale ``s`` alone: a row of
    ``W R S`` has norm at most ``s``, so the projection's ``|T_0| <= (f / z) s (1 + |t_x / z|)``
    with ``|t_x / z|`` at most its clamp, and the radius is at most
    ``MAX_EXTENT sqrt(|T_0|^2 + eps2d)`` rounded up (the same for y); a little slack for
    rounding, and the whole image where a value is not finite."""
    rot, trans = t.viewmat[:3, :3], t.viewmat[:3, 3]
    pc = t.means.index_select(0, rows) @ rot.T + trans
    x, y, z = pc.unbind(-1)
    scale = torch.exp(t.log_scales.index_select(0, rows).max(dim=1).values)
    out = []
    for c, size, f, centre in ((x, camera.width, t.K[0, 0], t.K[0, 2]),
                               (y, camera.height, t.K[1, 1], t.K[1, 2])):
        fa = abs(float(f))
        lim = max(abs(float(size - centre)), abs(float(centre))) / fa + 0.3 * 0.5 * size / fa
        m = f * c / z + centre
        r = MAX_EXTENT * torch.sqrt((fa / z * scale * (1 + lim)) ** 2 + eps2d) * 1.0001 + 1.01
        out += [torch.ceil(m - r - 0.5).clamp(0, size - 1).nan_to_num(0).long(),
                torch.floor(m + r - 0.5).clamp(0, size - 1).nan_to_num(size - 1).long()]
    return tuple(out)


def _front_to_back(t: _Tensors, near: float, far: float = 1e10) -> torch.Tensor:
    """The rows of the Gaussians that can be seen (camera depth within (near, far), opacity
    at least the alpha threshold) front to back, ties in row order, int32 where there are
    fewer than 2^31 (:func:`gscodec.render.cpu.depth_order`); the depth by the projection's
    expression, so that the order is the one the autograd path sorts."""
    rot, trans = t.viewmat[:3, :3], t.viewmat[:3, 3]
    n = t.means.shape[0]
    depths = torch.empty(n, dtype=torch.float32, device=t.means.device)
    ids = torch.empty(n, dtype=torch.int32 if n < (1 << 31) else torch.int64,
                      device=t.means.device)
    kept = 0
    for a in range(0, n, PROJECT_CHUNK):
        sel = slice(a, a + PROJECT_CHUNK)
        z = (t.means[sel] @ rot.T + trans)[:, 2]
        seen = torch.nonzero((z > near) & (z < far)
                             & (t.opacities[sel] >= ALPHA_THRESHOLD)).squeeze(1)
        depths[kept : kept + seen.numel()] = z.index_select(0, seen)
        ids[kept : kept + seen.numel()] = seen + a
        kept += seen.numel()
    order = cpu.depth_order(depths[:kept])
    del depths
    return ids[:kept].index_select(0, order)
