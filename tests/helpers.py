"""Helpers shared by the tests."""

from __future__ import annotations

import numpy as np


def quat_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle between quaternions (any length, either sign), in degrees."""
    a = a.astype(np.float64) / np.linalg.norm(a, axis=1, keepdims=True)
    b = b.astype(np.float64) / np.linalg.norm(b, axis=1, keepdims=True)
    return 2 * np.degrees(np.arccos(np.clip(np.abs((a * b).sum(axis=1)), 0, 1)))
