"""Turning a scene 180 degrees about a coordinate axis: the axis conventions viewers differ by.

INRIA PLYs keep the trainer's (COLMAP's) world axes, often with y down; Niantic's tools store
``.spz`` in RUB axes (x right, y up, z back) and flip y and z on the way in from a PLY; glTF is
y up. Each of these conversions is a half turn about one axis (two coordinates change sign),
which is a rotation, so every Gaussian stays a valid Gaussian:

- positions: the two coordinates other than the axis change sign;
- rotations: the turn's quaternion (0, e_axis) times the Gaussian's, so covariances turn too;
- spherical harmonics: colour seen from direction d must be the colour the original showed
  from the turned-back direction, and each real SH basis function of degree <= 3 is a
  polynomial whose every term has the same parity in x, y and z, so its coefficient changes
  sign when an odd number of the flipped coordinates appear in it (:data:`PARITY`).
"""

from __future__ import annotations

import numpy as np

from .ply import ArrayDict

AXES = ("x", "y", "z")

# (x, y, z) exponent parities of the real SH basis functions in the 3DGS order (degree 0..3):
# 1; y, z, x; xy, yz, 3z^2-1, xz, x^2-y^2; y(3x^2-y^2), xyz, y(4z^2-x^2-y^2), z(2z^2-3x^2-3y^2),
# x(4z^2-x^2-y^2), z(x^2-y^2), x(x^2-3y^2)
PARITY = np.array([
    (0, 0, 0),
    (0, 1, 0), (0, 0, 1), (1, 0, 0),
    (1, 1, 0), (0, 1, 1), (0, 0, 0), (1, 0, 1), (0, 0, 0),
    (0, 1, 0), (1, 1, 1), (0, 1, 0), (0, 0, 1), (1, 0, 0), (0, 0, 1), (1, 0, 0),
], dtype=np.int64)


def sh_signs(axis: str, coeffs: int) -> np.ndarray:
    """The sign of each of the first ``coeffs`` SH coefficients under a half turn about
    ``axis`` (float32, [coeffs])."""
    flipped = np.array([a != axis for a in AXES], dtype=np.int64)
    return np.where((PARITY[:coeffs] @ flipped) % 2 == 1, -1.0, 1.0).astype(np.float32)


def turn(arrays: ArrayDict, axis: str) -> ArrayDict:
    """The scene turned 180 degrees about ``axis`` ("x", "y" or "z"), as new arrays; ValueError
    for another axis."""
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    i = AXES.index(axis)
    means = np.array(arrays["means"], dtype=np.float32)
    for j in range(3):
        if j != i:
            means[:, j] *= -1.0
    # (0, e_i) * (w, v) = (-v_i, w e_i + e_i x v)
    q = np.asarray(arrays["quats"], dtype=np.float32)
    w, v = q[:, 0], q[:, 1:]
    out_q = np.empty_like(q)
    out_q[:, 0] = -v[:, i]
    e = np.zeros(3, np.float32)
    e[i] = 1.0
    out_q[:, 1:] = w[:, None] * e + np.cross(e, v)
    sh = np.array(arrays["sh"], dtype=np.float32)
    sh *= sh_signs(axis, sh.shape[1])[None, :, None]
    return {**arrays, "means": means, "quats": out_q, "sh": sh}
