"""EWA projection of 3D Gaussians into a pinhole camera (the conventions of gsplat's "classic"
rasterization mode), in plain differentiable PyTorch."""

from __future__ import annotations

import torch

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_EXTENT = 3.33  # in standard deviations


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[N, 3, 3]`` of quaternions ``[N, 4]`` (w, x, y, z; any norm)."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def project(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacities: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 1e10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project: returns (means2d [N,2], conics [N,3], depths [N], radii [N,2] int).

    The 2D covariance ``J W R S S R^T W^T J^T`` (``W`` the view rotation, ``J`` the Jacobian
    of the perspective) is computed as ``T T^T`` with ``T = J W R S`` (2 x 3 a Gaussian), one
    matrix product for ``W R`` of every Gaussian and elementwise arithmetic for the rest:
    batched products of 3 x 3 matrices are several times slower on a CPU."""
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    pc = means @ rot.T + trans
    n = means.shape[0]
    # columns of W R: the rotation's columns (rows of R^T) turned by W, one [3N, 3] product
    wr = (quat_to_rotmat(quats).transpose(1, 2).reshape(-1, 3) @ rot.T).reshape(n, 3, 3)
    m = wr * torch.exp(log_scales)[:, :, None]  # m[:, j] = s_j (W R)[:, j], column j of W R S
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = pc.unbind(-1)
    zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = zs * torch.clamp(x / zs, min=-float(lim_xn), max=float(lim_xp))
    ty = zs * torch.clamp(y / zs, min=-float(lim_yn), max=float(lim_yp))
    # J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]; rows of T = J (W R S), one per axis
    inv_z = 1.0 / zs
    row0, row1, row2 = m.unbind(2)  # rows of W R S (unbind: one gradient buffer, not three)
    t0 = (fx * inv_z)[:, None] * row0 - (fx * tx * inv_z * inv_z)[:, None] * row2
    t1 = (fy * inv_z)[:, None] * row1 - (fy * ty * inv_z * inv_z)[:, None] * row2
    a = (t0 * t0).sum(-1) + eps2d
    b = (t0 * t1).sum(-1)
    c = (t1 * t1).sum(-1) + eps2d
    det = a * c - b * b
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / safe_det, -b / safe_det, a / safe_det], dim=-1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], dim=-1)

    with torch.no_grad():
        op = opacities.detach()
        extent = torch.clamp(torch.sqrt(2.0 * torch.log(torch.clamp(op, min=1e-12)
                                                        / ALPHA_THRESHOLD).clamp(min=0)),
                             max=MAX_EXTENT)
        rx = torch.ceil(extent * torch.sqrt(a.detach().clamp(min=0)))
        ry = torch.ceil(extent * torch.sqrt(c.detach().clamp(min=0)))
        m2 = means2d.detach()
        valid = (det.detach() > 0) & (z.detach() > near) & (z.detach() < far)
        valid &= op >= ALPHA_THRESHOLD
        valid &= (rx > 0) | (ry > 0)
        valid &= (m2[:, 0] + rx > 0) & (m2[:, 0] - rx < width)
        valid &= (m2[:, 1] + ry > 0) & (m2[:, 1] - ry < height)
        radii = torch.stack([rx, ry], -1).to(torch.int64) * valid[:, None]
    return means2d, conics, z, radii
