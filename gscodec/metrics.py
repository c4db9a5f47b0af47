"""Fidelity measures.

``attribute_errors`` compares two sets of Gaussians in the same order, attribute group by group,
in the units the benchmarks report:

    positions   RMSE of the 3D position error (root of the mean squared distance) divided by the
                diagonal of the reference's bounding box
    log_scales  RMSE of the natural-log scales, over all 3N values
    rotations   mean angle in degrees between the rotations (quaternions normalised; q and -q are
                the same rotation); ``rotations_rms`` is the root mean square
    opacity     RMSE of alpha = sigmoid(opacity logit)
    sh_dc       RMSE of the DC colour 0.5 + SH_C0 * f_dc, in 0..255 RGB units
    sh_rest     RMSE of the higher SH coefficients (absent for SH degree 0)
"""

from __future__ import annotations

import numpy as np

from .gaussians import SH_C0, Gaussians


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def rotation_angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between the rotations of quaternions ``a`` and ``b`` ([N, 4], any norm)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return 2.0 * np.degrees(np.arccos(np.clip(np.abs((a * b).sum(axis=1)), 0.0, 1.0)))


def attribute_errors(ref: Gaussians, other: Gaussians) -> dict[str, float]:
    """Per-attribute-group errors of ``other`` against ``ref`` (same Gaussians, same order)."""
    ref, other = ref.numpy(), other.numpy()
    if ref.n != other.n:
        raise ValueError(f"different counts: {ref.n} and {other.n}")
    if ref.n == 0:
        return {}
    m = ref.means.astype(np.float64)
    diag = float(np.linalg.norm(m.max(axis=0) - m.min(axis=0))) or 1.0
    angles = rotation_angles_deg(ref.quats, other.quats)
    out = {
        "positions": float(np.sqrt(((m - other.means) ** 2).sum(axis=1).mean()) / diag),
        "log_scales": float(np.sqrt(((ref.log_scales.astype(np.float64) - other.log_scales) ** 2)
                                    .mean())),
        "rotations": float(angles.mean()),
        "rotations_rms": float(np.sqrt((angles**2).mean())),
        "opacity": float(np.sqrt(((_sigmoid(ref.opacity_logits)
                                   - _sigmoid(other.opacity_logits)) ** 2).mean())),
        "sh_dc": float(np.sqrt(((SH_C0 * 255.0 * (ref.sh[:, 0].astype(np.float64)
                                                  - other.sh[:, 0])) ** 2).mean())),
    }
    if ref.sh_degree and other.sh_degree == ref.sh_degree:
        out["sh_rest"] = float(np.sqrt(((ref.sh[:, 1:].astype(np.float64) - other.sh[:, 1:]) ** 2)
                                       .mean()))
    return out
