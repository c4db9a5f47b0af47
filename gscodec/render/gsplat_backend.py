"""The gsplat backend (CUDA): one call to ``gsplat.rasterization`` in classic mode."""

from __future__ import annotations

import torch


def render_gsplat(means, quats, log_scales, opacities, sh, viewmat, K, width, height, degree,
                  eps2d, near_plane) -> tuple[torch.Tensor, torch.Tensor]:
    from gsplat import rasterization

    n_coeffs = (degree + 1) ** 2
    colors, alphas, _ = rasterization(
        means=means,
        quats=quats,
        scales=torch.exp(log_scales),
        opacities=opacities,
        colors=sh[:, :n_coeffs, :].contiguous(),
        viewmats=viewmat[None],
        Ks=K[None],
        width=width,
        height=height,
        sh_degree=degree,
        eps2d=eps2d,
        near_plane=near_plane,
        rasterize_mode="classic",
        packed=False,
    )
    return colors[0], alphas[0]
