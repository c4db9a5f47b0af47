"""Real spherical harmonics up to degree 3, in the order and normalisation 3DGS uses."""

from __future__ import annotations

import torch

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
      0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
      -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """Basis values ``[..., (degree+1)^2]`` for unit directions ``dirs [..., 3]``."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [C2[0] * x * y, C2[1] * y * z, C2[2] * (2 * zz - xx - yy), C2[3] * x * z,
                C2[4] * (xx - yy)]
    if degree >= 3:
        out += [C3[0] * y * (3 * xx - yy), C3[1] * x * y * z, C3[2] * y * (4 * zz - xx - yy),
                C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy),
                C3[5] * z * (xx - yy), C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)


def sh_to_rgb(sh: torch.Tensor, dirs: torch.Tensor, degree: int | None = None) -> torch.Tensor:
    """Colour ``[N, 3]`` seen along ``dirs [N, 3]`` (unit vectors from the camera to each
    Gaussian) from coefficients ``sh [N, K, 3]``: ``max(sum_k sh_k * Y_k(dir) + 0.5, 0)``, using
    the bands up to ``degree`` (default: all)."""
    k = sh.shape[1]
    full = {1: 0, 4: 1, 9: 2, 16: 3}[k]
    degree = full if degree is None else min(degree, full)
    n_used = (degree + 1) ** 2
    basis = sh_basis(degree, dirs)  # [N, n_used]
    # a batched product: no [N, K, 3] temporary (192 MB for 1M SH-3 Gaussians)
    rgb = torch.bmm(basis[:, None, :], sh[:, :n_used, :])[:, 0, :]
    return torch.clamp_min(rgb + 0.5, 0.0)
