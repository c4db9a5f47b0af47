"""Pinhole cameras: reading INRIA ``cameras.json`` and synthesizing views around a scene.

Convention (the one of 3DGS, COLMAP and gsplat): ``viewmat`` is the 4x4 world-to-camera
matrix; in camera space x points right, y down and z forward (into the scene). ``K`` is the 3x3
intrinsic matrix: pixel ``u = fx * x / z + cx``, ``v = fy * y / z + cy``, with pixel centres at
half-integers (the pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .formats.errors import GscodecError, unreadable


class CameraError(GscodecError):
    """A cameras file that cannot be used."""


@dataclass(frozen=True)
class Camera:
    """One view: ``viewmat [4, 4]`` world-to-camera, ``K [3, 3]``, image ``width`` x ``height``."""

    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int
    name: str = ""

    @property
    def position(self) -> np.ndarray:
        """Camera centre in world coordinates, [3]."""
        r = self.viewmat[:3, :3]
        return -r.T @ self.viewmat[:3, 3]

    def scaled(self, longest_side: int) -> Camera:
        """The same view at another resolution (longest side ``longest_side`` pixels)."""
        s = longest_side / max(self.width, self.height)
        w, h = max(1, round(self.width * s)), max(1, round(self.height * s))
        K = self.K.copy()
        K[0] *= w / self.width
        K[1] *= h / self.height
        return Camera(self.viewmat, K, w, h, self.name)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera matrix of a camera at ``eye`` looking at ``target`` (x right, y down)."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    if abs(float(np.dot(forward, up))) > 0.99 * np.linalg.norm(up):
        up = np.array([0.0, 1.0, 0.0]) if abs(forward[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    view = np.eye(4)
    view[:3, :3] = rot
    view[:3, 3] = -rot @ eye
    return view


def intrinsics(width: int, height: int, fov_y_deg: float) -> np.ndarray:
    f = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def robust_bounds(means: np.ndarray, lo: float = 0.01, hi: float = 0.99) -> tuple[np.ndarray,
                                                                                  np.ndarray]:
    """The box between the ``lo`` and ``hi`` quantiles of each coordinate (ignores far floaters)."""
    if means.shape[0] == 0:
        return np.zeros(3), np.ones(3)
    return (np.quantile(means, lo, axis=0).astype(np.float64),
            np.quantile(means, hi, axis=0).astype(np.float64))


def orbit_views(means: np.ndarray, count: int, *, size: int = 256, fov_y_deg: float = 50.0,
                offset: float = 0.0, up: np.ndarray | None = None,
                distance_scale: float = 1.0) -> list[Camera]:
    """``count`` views on a Fibonacci sphere around the robust bounds of ``means``, looking at
    their centre, far enough that the box fits in the field of view. ``offset`` in [0, 1)
    shifts the points along the spiral, which gives disjoint sets of views."""
    lo, hi = robust_bounds(means)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2
    if not radius > 1e-9:  # one Gaussian, or all at one point: frame a unit sphere around it
        radius = 1.0
    distance = distance_scale * radius / math.sin(math.radians(fov_y_deg) / 2)
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, np.float64)
    K = intrinsics(size, size, fov_y_deg)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    views = []
    for i in range(count):
        t = (i + 0.5 + offset) / count
        z = 1.0 - 2.0 * t
        r = math.sqrt(max(0.0, 1.0 - z * z))
        phi = golden * (i + offset * count)
        direction = np.array([r * math.cos(phi), r * math.sin(phi), z])
        eye = centre + distance * direction
        views.append(Camera(look_at(eye, centre, up), K, size, size, f"orbit{i}"))
    return views


def encoder_views(means: np.ndarray, count: int, size: int = 256) -> list[Camera]:
    """Views the encoder may use (side information); disjoint from :func:`evaluation_views`."""
    return orbit_views(means, count, size=size, offset=0.0)


def evaluation_views(means: np.ndarray, count: int, size: int = 256) -> list[Camera]:
    """Views for measuring fidelity, which nothing in the codec ever sees."""
    return orbit_views(means, count, size=size, offset=0.5)


def read_cameras_json(path: str | os.PathLike[str]) -> list[Camera]:
    """Cameras of an INRIA 3DGS ``cameras.json``: a list of objects with ``width``, ``height``,
    ``position`` [3], ``rotation`` [3][3] (camera-to-world), ``fx``, ``fy``; principal point at
    the image centre."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise unreadable(p, e, CameraError, "a cameras.json file") from None
    except UnicodeDecodeError:
        raise CameraError(f"{p}: not UTF-8 text") from None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise CameraError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(items, list) or not items:
        raise CameraError(f"{p}: expected a non-empty JSON list of cameras")
    cams = []
    for i, item in enumerate(items):
        try:
            w, h = int(item["width"]), int(item["height"])
            pos = np.asarray(item["position"], dtype=np.float64).reshape(3)
            rot = np.asarray(item["rotation"], dtype=np.float64).reshape(3, 3)
            fx, fy = float(item["fx"]), float(item["fy"])
        except (KeyError, TypeError, ValueError) as e:
            raise CameraError(f"{p}: camera {i} is malformed ({type(e).__name__}: {e})") from None
        if w <= 0 or h <= 0 or not (fx > 0 and fy > 0) or not np.isfinite(rot).all() \
                or not np.isfinite(pos).all():
            raise CameraError(f"{p}: camera {i} has invalid values")
        view = np.eye(4)
        view[:3, :3] = rot.T
        view[:3, 3] = -rot.T @ pos
        K = np.array([[fx, 0.0, w / 2], [0.0, fy, h / 2], [0.0, 0.0, 1.0]])
        cams.append(Camera(view, K, w, h, str(item.get("img_name", i))))
    return cams
