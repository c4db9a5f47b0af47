"""How much each Gaussian's attributes matter to the renders: the encoder's importance estimate.

For an attribute ``a`` of Gaussian ``i`` the sensitivity is the squared norm of the Jacobian of
the rendered images with respect to ``a_i``, summed over a set of encoder views and pixels and
averaged over the attribute's components:

    J_i = mean_c  sum_views sum_pixels (d image / d a_ic)^2

Small quantization noise of variance ``s^2/12`` on ``a_i`` raises the render's squared error by
about ``J_i s^2 / 12``, so Gaussians with small ``J`` (hidden, faint, tiny, or, for rotations,
nearly round) can take coarser steps at the same fidelity (:mod:`gscodec.codec.adaptive`).

The Jacobian norms are estimated without forming the Jacobian (Hutchinson's estimator): for a
random +-1 image ``v`` the gradient of ``<v, image>`` with respect to ``a_ic`` has expected
square ``sum_pixels (d image / d a_ic)^2``. ``probes`` such images per view, from a fixed seed,
so the estimate (and the file) is the same on every run on one machine. That is also why the
estimate never uses gsplat: its backward pass sums gradients with atomic additions, whose order
(and so the last bits, the importance classes and the file) changes from run to run. On a CUDA
machine the pure-PyTorch renderer runs on the GPU with torch's deterministic kernels; if an op
there has none (or the GPU runs out of memory), the estimate runs on the CPU.

For the SH coefficients the expected value of that estimate has a closed form that needs no
backward pass (:func:`sh_sensitivities`): the image's derivative with respect to coefficient
``k`` of channel ``c`` of Gaussian ``i`` at pixel ``p`` is ``w_i(p) Y_k(d_i)`` (its blending
weight times the basis function along its view direction) where the colour is not clamped at
0, and 0 where it is. Summed over the pixels, squared, that is ``Y_k(d_i)^2 W_i`` with
``W_i = sum_p w_i(p)^2``; and the 2l+1 real spherical harmonics of band ``l`` satisfy
``sum_m Y_lm(d)^2 = (2l+1) / (4 pi)`` for every direction (the addition theorem), so the mean
over the higher bands' coefficients is ``1 / (4 pi)`` whatever the degree and the direction, as
``C0^2`` is for the DC term. A forward render per view (without autograd, in bounded memory)
gives ``W``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from .cameras import Camera
from .gaussians import Gaussians
from .render import deterministic, render, resolve_backend, side_by_side_iter
from .render.sh import C0, sh_basis


def sensitivities(
    gaussians: Gaussians,
    cameras: Sequence[Camera],
    *,
    probes: int = 2,
    seed: int = 0,
    backend: str = "auto",
    colours: bool = True,
) -> dict[str, np.ndarray]:
    """``{attribute: J [N] float64}`` for the log-scales, rotations (the three components other
    than the largest, as the rotation codec sends them), DC colour and, for SH degree > 0, the
    higher SH bands. ``gaussians`` should be in the form the encoder codes (canonical or not).
    Without ``colours``, the scales and rotations only: the SH coefficients stay out of the
    backward pass (their closed form is :func:`sh_sensitivities`), which then holds about half
    the memory (``benchmarks/results/importance-geometry-only-1m.md``)."""
    return _on_device(lambda device: _sensitivities(gaussians, cameras, probes, seed, device,
                                                    colours), backend, "importance estimate")


def _on_device(run: Callable[[str], Any], backend: str, what: str,
               cpu_kernels: bool = True) -> Any:
    """``run(device)`` with deterministic kernels and gradients on (even where the caller
    encodes under torch.no_grad()): on CUDA where ``backend`` resolves to gsplat, on the CPU
    after a warning where that fails (no deterministic kernel for an op, or out of GPU
    memory), else on the CPU. Deterministic kernels: the same result, and so the same file,
    on every run. ``cpu_kernels=False``: not on the CPU, for a ``run`` that is deterministic
    there without them (its scatters each in one thread)."""
    if resolve_backend(backend) == "gsplat":
        try:
            with deterministic(), torch.enable_grad():
                return run("cuda")
        except RuntimeError as e:
            import warnings

            warnings.warn(f"{what} on the CPU ({str(e).splitlines()[0][:200]})",
                          RuntimeWarning, stacklevel=3)
    with deterministic() if cpu_kernels else nullcontext(), torch.enable_grad():
        return run("cpu")


def _sensitivities(gaussians: Gaussians, cameras: Sequence[Camera], probes: int, seed: int,
                   device: str, colours: bool = True) -> dict[str, np.ndarray]:
    n = gaussians.n
    degree = gaussians.sh_degree
    arrays = gaussians.as_arrays()
    params = {
        k: torch.tensor(np.asarray(arrays[k], np.float32), requires_grad=k != "opacity_logits")
        for k in ("means", "quats", "log_scales", "opacity_logits")
    }
    sh = torch.tensor(np.asarray(arrays["sh"], np.float32), requires_grad=colours)
    acc = {k: torch.zeros(n, dtype=torch.float64) for k in ("log_scales", "quats")}
    acc_sh = torch.zeros(n, sh.shape[1] if colours else 0, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    quats = np.asarray(arrays["quats"], np.float64)
    largest = np.abs(quats).argmax(axis=1) if n else np.zeros(0, np.int64)
    others = torch.from_numpy(np.ones((n, 4), bool))
    others[torch.arange(n), torch.from_numpy(largest)] = False
    for cam in cameras:
        for _ in range(probes):
            g = Gaussians(params["means"], params["quats"], params["log_scales"],
                          params["opacity_logits"], sh)
            image = render(g, cam, backend="cpu", device=device).image
            v = torch.randint(0, 2, tuple(image.shape), generator=gen).to(image) * 2 - 1
            wrt = [params["quats"], params["log_scales"]] + ([sh] if colours else [])
            dq, ds, *dsh = torch.autograd.grad((image * v).sum(), wrt)
            dq = dq.detach().cpu().double() ** 2
            acc["quats"] += (dq * others).sum(dim=1) / 3
            acc["log_scales"] += (ds.detach().cpu().double() ** 2).mean(dim=1)
            if colours:
                acc_sh += (dsh[0].detach().cpu().double() ** 2).mean(dim=2)
    scale = 1.0 / max(1, probes)
    out = {
        "log_scales": (acc["log_scales"] * scale).numpy(),
        "quats": (acc["quats"] * scale).numpy(),
    }
    if colours:
        out["sh_dc"] = (acc_sh[:, 0] * scale).numpy()
    if colours and degree > 0:
        out["sh_rest"] = (acc_sh[:, 1:].mean(dim=1) * scale).numpy()
    return out


def sh_sensitivities(
    gaussians: Gaussians,
    cameras: Sequence[Camera],
    *,
    backend: str = "auto",
) -> dict[str, np.ndarray]:
    """``{"sh_dc": J, "sh_rest": J}`` (the second for SH degree > 0), ``[N] float64``: exactly
    the expected value of :func:`sensitivities`' estimate for those attributes (the module
    docstring), from one render a view without autograd: the memory of a plain render (the
    rasterizer's chunks), not of a backward pass. Deterministic on one machine."""
    # (on the CPU each view renders in one thread, so its scatters add in order: the same
    # sums as the deterministic kernels, which cost a 1M-Gaussian estimate at 8 views 1 s
    # of 8 and 41 MB that they kept)
    j = _on_device(lambda device: _weight_energy(gaussians, cameras, device), backend,
                   "importance estimate", cpu_kernels=False)
    out = {"sh_dc": j * C0**2}
    if gaussians.sh_degree > 0:
        out["sh_rest"] = j / (4 * np.pi)
    return out


def _weight_energy(gaussians: Gaussians, cameras: Sequence[Camera], device: str) -> np.ndarray:
    """``sum_views sum_pixels w_i(p)^2``, each view's term times the share of the colour
    channels of Gaussian ``i`` that are not clamped there (their derivative is 0). The views
    render side by side (:func:`gscodec.render.side_by_side_iter`) and add up in their order."""
    means = _tensor(gaussians.means)
    sh = _tensor(gaussians.sh)

    def view(cam: Camera) -> torch.Tensor:
        energy = torch.zeros(gaussians.n, dtype=torch.float64, device=device)

        def sink(ids: torch.Tensor, pix: torch.Tensor, w: torch.Tensor) -> None:
            energy.index_add_(0, ids, w.double() ** 2)

        with torch.no_grad():
            # the weights do not depend on the colours: the DC term is enough to render
            render(gaussians, cam, sh_degree=0, backend="cpu", device=device, pair_sink=sink)
            return _times_unclamped(energy.cpu(), means, sh, cam)

    acc = torch.zeros(gaussians.n, dtype=torch.float64)
    for term in side_by_side_iter(view, list(cameras), "cpu", device):
        acc += term
    return acc.numpy()


def _times_unclamped(energy: torch.Tensor, means: torch.Tensor, sh: torch.Tensor, cam: Camera,
                     block: int = 1 << 16) -> torch.Tensor:
    """``energy [N] float64`` times, in place, the share of each Gaussian's three colour
    channels that the renderer does not clamp at 0 in this view (``sum_k sh_k Y_k(d) + 0.5
    >= 0``), a block of Gaussians at a time (no second [N] array a view in flight), for the
    Gaussians the view saw only (a zero stays zero: the others are left as they are)."""
    centre = torch.as_tensor(-cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3], dtype=torch.float32)
    degree = {1: 0, 4: 1, 9: 2, 16: 3}[sh.shape[1]]
    seen = torch.nonzero(energy > 0).squeeze(1)
    for a in range(0, seen.numel(), block):
        rows = seen[a : a + block]
        d = means.index_select(0, rows) - centre
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        rgb = torch.bmm(sh_basis(degree, d)[:, None, :], sh.index_select(0, rows))[:, 0, :]
        energy[rows] *= (rgb + 0.5 >= 0).double().mean(dim=1)
    return energy


def _tensor(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return x.detach().to("cpu", torch.float32)


def removal_costs(
    gaussians: Gaussians,
    cameras: Sequence[Camera],
    *,
    probes: int = 1,
    seed: int = 1,
    backend: str = "auto",
) -> np.ndarray:
    """``[N] float64``: how much the renders at ``cameras`` change if Gaussian ``i`` alone is
    removed, the sum over views and pixels of the squared change, to first order.

    Removing Gaussian ``i`` changes pixel ``p`` by ``w_i(p) (c_i - R_i(p))`` (its blending
    weight times the difference between its colour and what it hides), which is exactly
    ``d image(p) / d m_i`` at ``m = 1`` for a factor ``m_i`` on its opacity (up to the 0.999
    cap on alpha). Its squared norm over the pixels is estimated as :func:`sensitivities`
    estimates Jacobian norms (Hutchinson, ``probes`` random +-1 images a view, fixed seed), so
    a hidden Gaussian, a faint one and one the colour of what lies behind it all cost little.
    Deterministic on one machine (never gsplat, as :func:`sensitivities`)."""
    return _on_device(lambda device: _removal_costs(gaussians, cameras, probes, seed, device),
                      backend, "removal costs")


def _removal_costs(gaussians: Gaussians, cameras: Sequence[Camera], probes: int, seed: int,
                   device: str) -> np.ndarray:
    n = gaussians.n
    mask = torch.ones(n, dtype=torch.float32, requires_grad=True)
    acc = torch.zeros(n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    for cam in cameras:
        for _ in range(probes):
            image = render(gaussians, cam, backend="cpu", device=device,
                           opacity_scale=mask).image
            v = torch.randint(0, 2, tuple(image.shape), generator=gen).to(image) * 2 - 1
            (dm,) = torch.autograd.grad((image * v).sum(), [mask])
            acc += dm.detach().cpu().double() ** 2
    return (acc / max(1, probes)).numpy()
