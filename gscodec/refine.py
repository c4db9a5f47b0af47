"""Refinement of decoded Gaussians against target images (the engine of decoder-side refinement).

Given Gaussians, a few cameras and one target image per camera, a few hundred Adam steps move
the Gaussians so that their renders match the targets, with loss ``(1 - w) * L1 + w * (1 - SSIM)``
plus a penalty that keeps every parameter near its starting (decoded) value, so that a handful of
views cannot pull the scene away from what the file says. Colours and opacities are optimized
first; scales, rotations and positions join later with small learning rates. One view per step
in a fixed order; the learning rates decay to 0 on a cosine (with a constant rate the last views
seen pulled the result their way: playbot, preset 1, 16 views, 100 steps, +0.48 dB over the
decoded scene on held-out views with a constant rate, +0.77 dB with the cosine; plant +1.58 /
+1.64 dB; tuning split, views before 2026-12-01, benchmarks/results/refine*.md). Deterministic
for a given input and device (no randomness).

The targets come from elsewhere: in the method of Shin, Park and Cho they are decoded renders
restored with the side information and the learned image prior (later issues); the tests use
renders of the original scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .cameras import Camera
from .gaussians import Gaussians
from .render import deterministic, render

PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh")


@dataclass
class RefineConfig:
    """Learning rates are per parameter group (positions in units of the scene extent)."""

    steps: int = 300
    ssim_weight: float = 0.2
    lr: dict[str, float] = field(default_factory=lambda: {
        "means": 1.6e-4, "quats": 1e-3, "log_scales": 5e-3, "opacity_logits": 2.5e-2,
        "sh_dc": 2.5e-3, "sh_rest": 1.25e-4,
    })
    # squared-distance penalty towards the starting values, per group
    anchor: dict[str, float] = field(default_factory=lambda: {
        "means": 1e2, "quats": 1.0, "log_scales": 1e-1, "opacity_logits": 1e-3,
        "sh_dc": 1e-3, "sh_rest": 1e-2,
    })
    geometry_after: float = 0.3  # fraction of the steps before positions, scales, rotations move
    # with quantization cells: Adam works on u where value = low + (high - low) * sigmoid(u),
    # so learning rates are in units of the cell, the same at every preset
    # The SH rest's rate is a fifth of the others': its cells are wide at low presets (every
    # coefficient of a full-precision scene quantized to 0 at preset 1) and 45 coefficients
    # per Gaussian fitted to a few views overfit them. 30 steps at 8 side-information views
    # (tuning split, 4 evaluation views of seed 1 at 512 px; gain over the unrefined file,
    # benchmarks/results/sh-rest-lr.md): cat-sh3 preset 1: -3.97 dB at 0.05, +0.18 at 0.02,
    # +1.10 at 0.01, +0.18 frozen; cat-sh3 preset 5: +0.93 / +1.21 / +0.83 at 0.05 / 0.02 /
    # 0.01; plant-sh3 preset 1: -2.68 / +0.34 / +1.00.
    cell_lr: dict[str, float] = field(default_factory=lambda: {
        "means": 0.05, "quats": 0.05, "log_scales": 0.05, "opacity_logits": 0.05,
        "sh_dc": 0.05, "sh_rest": 0.01,
    })
    pool: int = 1  # compare pool x pool block averages of render and target (1: pixels)
    # with pool > 1: weight of an added pixel-level loss (targets whose detail inside the
    # blocks is worth matching, e.g. the learned prior's restorations)
    pixel_weight: float = 0.0
    cell_anchor: float = 1e-4  # squared-u penalty: the cell centre (the decoded value) is likeliest
    # learning-rate schedule over the steps: "constant", or "cosine" (decays to 0, so that the
    # last views seen do not pull the result their way)
    schedule: str = "cosine"


@dataclass
class RefineResult:
    gaussians: Gaussians
    losses: list[float]


def _loss(image: torch.Tensor, target: torch.Tensor, ssim_weight: float,
          pool: int = 1) -> torch.Tensor:
    from pytorch_msssim import ssim

    if pool > 1:
        def blocks(x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.avg_pool2d(x.permute(2, 0, 1)[None], pool)
            return y[0].permute(1, 2, 0)

        image, target = blocks(image), blocks(target)

    l1 = (image - target).abs().mean()
    if ssim_weight <= 0:
        return l1
    x = image.clamp(0, 1).permute(2, 0, 1)[None]
    y = target.clamp(0, 1).permute(2, 0, 1)[None]
    d_ssim = 1.0 - ssim(x, y, data_range=1.0, size_average=True, win_size=7)
    return (1 - ssim_weight) * l1 + ssim_weight * d_ssim


def refine(
    gaussians: Gaussians,
    cameras: Sequence[Camera],
    targets: Sequence[torch.Tensor],
    config: RefineConfig | None = None,
    *,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
    cells: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> RefineResult:
    """Refine ``gaussians`` so that their renders at ``cameras`` match ``targets``
    (``[H, W, 3]`` images in [0, 1], one per camera). Returns new numpy-backed Gaussians and the
    loss of every step. ``progress(step, steps, loss)`` is called after each step.

    ``cells`` maps parameter groups (``means``, ``quats``, ``log_scales``, ``opacity_logits``,
    ``sh_dc``, ``sh_rest``) to (low, high) bounds broadcastable to them: after every step the
    parameters are clamped into them. With the quantization cells of the decoded values the
    refined scene stays consistent with the file: the original values lie in those cells."""
    cfg = config or RefineConfig()
    if len(cameras) != len(targets) or not cameras:
        raise ValueError("need one target image per camera, and at least one camera")
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r}")
    with deterministic():
        return _refine(gaussians, cameras, targets, cfg, backend, torch.device(device), progress,
                       cells or {})


def _refine(gaussians: Gaussians, cameras: Sequence[Camera], targets: Sequence[torch.Tensor],
            cfg: RefineConfig, backend: str, device: torch.device,
            progress: Callable[[int, int, float], None] | None,
            cells: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> RefineResult:
    start = gaussians.torch(device)
    extent = float((start.means.max(0).values - start.means.min(0).values).norm()) or 1.0
    origin = {
        "means": start.means, "quats": start.quats, "log_scales": start.log_scales,
        "opacity_logits": start.opacity_logits, "sh_dc": start.sh[:, :1],
        "sh_rest": start.sh[:, 1:],
    }
    bounds = {k: (lo.to(device).expand_as(origin[k]), hi.to(device).expand_as(origin[k]))
              for k, (lo, hi) in cells.items() if k in origin}
    # free parameters: the value itself, or u with value = low + (high - low) * sigmoid(u)
    free: dict[str, torch.Tensor] = {}
    for k, x0 in origin.items():
        if k in bounds:
            lo, hi = bounds[k]
            width = (hi - lo).clamp_min(1e-12)
            frac = ((x0 - lo) / width).clamp(1e-4, 1 - 1e-4)
            free[k] = torch.log(frac / (1 - frac)).detach().clone()
        else:
            free[k] = x0.detach().clone()
        free[k].requires_grad_(True)

    def value(k: str) -> torch.Tensor:
        if k in bounds:
            lo, hi = bounds[k]
            return lo + (hi - lo) * torch.sigmoid(free[k])
        return free[k]

    groups = [{"params": [free[k]], "name": k,
               "lr": cfg.cell_lr[k] if k in bounds else cfg.lr[k] * (extent if k == "means" else 1)}
              for k in free]
    opt = torch.optim.Adam(groups, eps=1e-15)
    schedule = (torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps)))
        if cfg.schedule == "cosine" else None)
    geometry = {"means", "quats", "log_scales"}
    targets = [t.to(device=device, dtype=torch.float32) for t in targets]
    losses: list[float] = []
    for step in range(cfg.steps):
        i = step % len(cameras)
        frozen = step < cfg.geometry_after * cfg.steps
        current = {k: value(k) for k in free}
        g = Gaussians(current["means"], current["quats"], current["log_scales"],
                      current["opacity_logits"], torch.cat([current["sh_dc"], current["sh_rest"]],
                                                           dim=1))
        image = render(g, cameras[i], backend=backend, device=device).image
        loss = _loss(image, targets[i], cfg.ssim_weight, cfg.pool)
        if cfg.pool > 1 and cfg.pixel_weight > 0:
            loss = loss + cfg.pixel_weight * _loss(image, targets[i], cfg.ssim_weight)
        reg = sum(cfg.cell_anchor * (free[k] ** 2).mean() if k in bounds
                  else cfg.anchor[k] * ((free[k] - origin[k]) ** 2).mean()
                  for k in free if free[k].numel())
        opt.zero_grad(set_to_none=True)
        (loss + reg).backward()
        if frozen:
            for k in geometry:
                free[k].grad = None
        opt.step()
        if schedule is not None:
            schedule.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, cfg.steps, losses[-1])
    with torch.no_grad():
        current = {k: value(k).detach() for k in free}
        out = Gaussians(current["means"], current["quats"], current["log_scales"],
                        current["opacity_logits"],
                        torch.cat([current["sh_dc"], current["sh_rest"]], dim=1))
    return RefineResult(out.numpy(), losses)
