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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .cameras import Camera
from .gaussians import Gaussians
from .render import deterministic, render, resolve_backend


def sensitivities(
    gaussians: Gaussians,
    cameras: Sequence[Camera],
    *,
    probes: int = 2,
    seed: int = 0,
    backend: str = "auto",
) -> dict[str, np.ndarray]:
    """``{attribute: J [N] float64}`` for the log-scales, rotations (the three components other
    than the largest, as the rotation codec sends them), DC colour and, for SH degree > 0, the
    higher SH bands. ``gaussians`` should be in the form the encoder codes (canonical or not)."""
    return _on_device(lambda device: _sensitivities(gaussians, cameras, probes, seed, device),
                      backend, "importance estimate")


def _on_device(run: Callable[[str], Any], backend: str, what: str) -> Any:
    """``run(device)`` with deterministic kernels and gradients on (even where the caller
    encodes under torch.no_grad()): on CUDA where ``backend`` resolves to gsplat, on the CPU
    after a warning where that fails (no deterministic kernel for an op, or out of GPU
    memory), else on the CPU. Deterministic kernels: the same result, and so the same file,
    on every run."""
    if resolve_backend(backend) == "gsplat":
        try:
            with deterministic(), torch.enable_grad():
                return run("cuda")
        except RuntimeError as e:
            import warnings

            warnings.warn(f"{what} on the CPU ({str(e).splitlines()[0][:200]})",
                          RuntimeWarning, stacklevel=3)
    with deterministic(), torch.enable_grad():
        return run("cpu")


def _sensitivities(gaussians: Gaussians, cameras: Sequence[Camera], probes: int, seed: int,
                   device: str) -> dict[str, np.ndarray]:
    n = gaussians.n
    degree = gaussians.sh_degree
    arrays = gaussians.as_arrays()
    params = {
        k: torch.tensor(np.asarray(arrays[k], np.float32), requires_grad=k != "opacity_logits")
        for k in ("means", "quats", "log_scales", "opacity_logits")
    }
    sh = torch.tensor(np.asarray(arrays["sh"], np.float32), requires_grad=True)
    acc = {k: torch.zeros(n, dtype=torch.float64) for k in ("log_scales", "quats")}
    acc_sh = torch.zeros(n, sh.shape[1], dtype=torch.float64)
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
            dq, ds, dsh = torch.autograd.grad((image * v).sum(),
                                              [params["quats"], params["log_scales"], sh])
            dq = dq.detach().cpu().double() ** 2
            acc["quats"] += (dq * others).sum(dim=1) / 3
            acc["log_scales"] += (ds.detach().cpu().double() ** 2).mean(dim=1)
            acc_sh += (dsh.detach().cpu().double() ** 2).mean(dim=2)
    scale = 1.0 / max(1, probes)
    out = {
        "log_scales": (acc["log_scales"] * scale).numpy(),
        "quats": (acc["quats"] * scale).numpy(),
        "sh_dc": (acc_sh[:, 0] * scale).numpy(),
    }
    if degree > 0:
        out["sh_rest"] = (acc_sh[:, 1:].mean(dim=1) * scale).numpy()
    return out


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
