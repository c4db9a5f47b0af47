"""A canonical (rotation, scales) pair for each Gaussian: the same covariance, fewer bits.

A Gaussian's covariance ``R diag(exp(2 s)) R^T`` does not change when its three axes are
permuted (columns of R and entries of s together) or when two axes are flipped (R times a
180-degree turn about a body axis). Of the 24 equivalent pairs the encoder can send one chosen
by rule, and the decoder needs to know nothing about it:

1. the scales in decreasing order (the columns of R permuted alike, one flipped if that made a
   reflection);
2. of the four quaternions ``q, q*i, q*j, q*k`` of the equivalent rotations, the one whose
   ``w`` has the largest magnitude, with ``w >= 0``.

Then the smallest-three index is always 0 (w is the largest component) and the sorted scales
predict each other better: about 4 bits per Gaussian less, with identical renders. The
attributes in the output are different numbers, though (rotation and axis order), so the
presets that keep every attribute faithful (6-10) do not use it.
"""

from __future__ import annotations

import numpy as np


def quats_to_rotmats(q: np.ndarray) -> np.ndarray:
    """[N, 4] (w, x, y, z), any norm -> [N, 3, 3] float64."""
    q = q.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=1).reshape(-1, 3, 3)


def rotmats_to_quats(r: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotation matrices -> [N, 4] unit quaternions (w, x, y, z), numerically robust
    (the largest of the four candidate components is computed from the trace terms)."""
    m00, m11, m22 = r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]
    cand = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                     1 - m00 - m11 + m22], axis=1)
    k = np.argmax(cand, axis=1)
    t = np.sqrt(np.maximum(cand[np.arange(r.shape[0]), k], 1e-30))
    q = np.empty((r.shape[0], 4))
    s = 0.5 / t
    a = k == 0
    q[a] = np.stack([0.5 * t[a], (r[a, 2, 1] - r[a, 1, 2]) * s[a], (r[a, 0, 2] - r[a, 2, 0]) * s[a],
                     (r[a, 1, 0] - r[a, 0, 1]) * s[a]], axis=1)
    a = k == 1
    q[a] = np.stack([(r[a, 2, 1] - r[a, 1, 2]) * s[a], 0.5 * t[a], (r[a, 0, 1] + r[a, 1, 0]) * s[a],
                     (r[a, 0, 2] + r[a, 2, 0]) * s[a]], axis=1)
    a = k == 2
    q[a] = np.stack([(r[a, 0, 2] - r[a, 2, 0]) * s[a], (r[a, 0, 1] + r[a, 1, 0]) * s[a], 0.5 * t[a],
                     (r[a, 1, 2] + r[a, 2, 1]) * s[a]], axis=1)
    a = k == 3
    q[a] = np.stack([(r[a, 1, 0] - r[a, 0, 1]) * s[a], (r[a, 0, 2] + r[a, 2, 0]) * s[a],
                     (r[a, 1, 2] + r[a, 2, 1]) * s[a], 0.5 * t[a]], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def canonicalize(quats: np.ndarray, log_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The canonical equivalent of each (quaternion, log-scales) pair, as float32 arrays."""
    if quats.shape[0] == 0:
        return quats.astype(np.float32), log_scales.astype(np.float32)
    rot = quats_to_rotmats(quats)
    perm = np.argsort(-log_scales.astype(np.float64), axis=1, kind="stable")
    scales = np.take_along_axis(log_scales, perm, axis=1)
    rot = np.take_along_axis(rot, perm[:, None, :], axis=2)
    rot[:, :, 2] *= np.sign(np.linalg.det(rot))[:, None]  # keep a proper rotation
    q = rotmats_to_quats(rot)
    w, x, y, z = q.T
    # q, q*i, q*j, q*k: the variant whose w is the largest-magnitude component of q
    variants = np.stack([
        np.stack([w, x, y, z], 1),
        np.stack([-x, w, z, -y], 1),
        np.stack([-y, -z, w, x], 1),
        np.stack([-z, y, -x, w], 1),
    ], axis=1)
    best = np.argmax(np.abs(q), axis=1)
    out = variants[np.arange(q.shape[0]), best]
    out *= np.where(out[:, :1] < 0, -1.0, 1.0)
    return out.astype(np.float32), scales.astype(np.float32)
