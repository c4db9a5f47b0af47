"""Synthetic 3DGS scenes for tests, examples and speed benchmarks.

The scenes imitate the statistics of trained ones closely enough to exercise every code path:
Gaussians lie on a few noisy surfaces (spheres, a torus, a ground plane) plus some floaters,
are flattened along the surface normal, carry smoothly varying colours, opacities spread over
(0, 1) and small higher-SH coefficients that shrink with the band. Deterministic given the seed.
"""

from __future__ import annotations

import numpy as np

from .gaussians import SH_C0, Gaussians


def _quat_from_normal(normals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Quaternions (wxyz) rotating the z axis onto ``normals``, with a random twist about it."""
    n = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(np.broadcast_to(z, n.shape), n)
    s = np.linalg.norm(axis, axis=1, keepdims=True)
    c = n[:, 2:3]
    angle = np.arctan2(s, c)
    axis = np.where(s > 1e-9, axis / np.maximum(s, 1e-12), np.array([1.0, 0.0, 0.0]))
    half = angle / 2
    q_align = np.concatenate([np.cos(half), axis * np.sin(half)], axis=1)
    twist = rng.uniform(0, np.pi, size=(n.shape[0], 1))
    q_twist = np.concatenate([np.cos(twist), np.zeros((n.shape[0], 2)), np.sin(twist)], axis=1)
    w1, x1, y1, z1 = q_align.T
    w2, x2, y2, z2 = q_twist.T
    return np.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], axis=1)


def make_scene(n: int, sh_degree: int = 3, seed: int = 0) -> Gaussians:
    """A synthetic scene of ``n`` Gaussians with SH degree ``sh_degree`` (0..3), numpy-backed."""
    if not 0 <= sh_degree <= 3:
        raise ValueError("sh_degree must be in 0..3")
    rng = np.random.default_rng(seed)
    kind = rng.choice(5, size=n, p=[0.3, 0.2, 0.2, 0.25, 0.05])
    pts = np.empty((n, 3))
    nrm = np.empty((n, 3))
    # two spheres
    for k, (centre, radius) in enumerate((((0.0, 0.0, 0.5), 0.5), ((1.0, 0.3, 0.35), 0.35))):
        sel = kind == k
        d = rng.normal(size=(int(sel.sum()), 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts[sel] = np.asarray(centre) + radius * d
        nrm[sel] = d
    # a torus
    sel = kind == 2
    m = int(sel.sum())
    u, v = rng.uniform(0, 2 * np.pi, m), rng.uniform(0, 2 * np.pi, m)
    big, small = 0.45, 0.12
    ring = np.stack([np.cos(u), np.sin(u), np.zeros(m)], axis=1)
    pts[sel] = np.array([-0.9, -0.4, 0.3]) + (big + small * np.cos(v))[:, None] * ring
    pts[sel, 2] += small * np.sin(v)
    nrm[sel] = np.cos(v)[:, None] * ring + np.stack([np.zeros(m), np.zeros(m), np.sin(v)], 1)
    # ground plane
    sel = kind == 3
    m = int(sel.sum())
    pts[sel] = np.stack([rng.uniform(-2, 2, m), rng.uniform(-2, 2, m), np.zeros(m)], axis=1)
    nrm[sel] = np.array([0.0, 0.0, 1.0])
    # floaters
    sel = kind == 4
    m = int(sel.sum())
    pts[sel] = rng.normal(scale=1.5, size=(m, 3)) + np.array([0.0, 0.0, 1.0])
    nrm[sel] = rng.normal(size=(m, 3)) + 1e-3
    pts += rng.normal(scale=0.004, size=pts.shape)

    density = max(n, 1) ** (1 / 2)
    base = np.log(2.5 / density) + rng.normal(scale=0.45, size=n)
    log_scales = np.stack([
        base + rng.normal(scale=0.25, size=n),
        base + rng.normal(scale=0.25, size=n),
        base - 1.2 + rng.normal(scale=0.5, size=n),
    ], axis=1)
    log_scales[kind == 4] += 0.8
    quats = _quat_from_normal(nrm, rng)
    quats *= rng.uniform(0.5, 2.0, size=(n, 1))  # trained quaternions are not unit length
    opacity = np.log(rng.beta(0.6, 0.4, size=n).clip(1e-4, 1 - 1e-4))
    opacity = opacity - np.log1p(-np.exp(opacity))

    colour = 0.5 + 0.35 * np.sin(pts @ np.array([[2.1, 0.7, -1.3], [0.4, -1.7, 2.2],
                                                   [-1.1, 1.9, 0.6]]))
    colour += rng.normal(scale=0.05, size=colour.shape)
    k = (sh_degree + 1) ** 2
    sh = np.zeros((n, k, 3))
    sh[:, 0, :] = (colour - 0.5) / SH_C0
    for j in range(1, k):
        band = 1 if j < 4 else 2 if j < 9 else 3
        shared = rng.normal(scale=0.12 / band, size=(n, 1))
        sh[:, j, :] = shared + rng.normal(scale=0.04 / band, size=(n, 3))
    return Gaussians(
        means=pts.astype(np.float32),
        quats=quats.astype(np.float32),
        log_scales=log_scales.astype(np.float32),
        opacity_logits=opacity.astype(np.float32),
        sh=sh.astype(np.float32),
    )
