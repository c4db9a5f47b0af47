"""Pinhole cameras: reading training cameras (INRIA ``cameras.json``, nerfstudio
``transforms.json``) and synthesizing views around a scene.

Convention (the one of 3DGS, COLMAP and gsplat): ``viewmat`` is the 4x4 world-to-camera
matrix; in camera space x points right, y down and z forward (into the scene). ``K`` is the 3x3
intrinsic matrix: pixel ``u = fx * x / z + cx``, ``v = fy * y / z + cy``, with pixel centres at
half-integers (the pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    centre, radius = _frame(means)
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


# ---------------------------------------------------------------------------------------------
# The two families of synthesized views.
#
# Encoder views (side information, the importance estimate, the learned prior's extra views and
# its training and validation pairs) look at the scene from directions of one fixed, ordered
# lattice of ENCODER_DIRECTIONS unit vectors; the first K of them are spread over the whole
# sphere for every K (farthest-point order). Evaluation views come from another, seeded family:
# directions of a randomly rotated Fibonacci lattice, minus every direction within
# EXCLUSION_DEG of any encoder direction, in farthest-point order, each with its own distance,
# field of view and look-at point. Directions are those of the camera centre seen from the
# centre of the scene's robust bounds (:func:`robust_bounds`), so the guarantee below holds for
# views computed from one set of positions; views of a decoded scene have a centre moved by the
# quantization of the positions, which the 0.5 degree margin of EXCLUSION_DEG over
# MIN_SEPARATION_DEG absorbs for any sane quantizer step.

ENCODER_DIRECTIONS = 128
"""Size of the encoder lattice: side information takes directions ``0..K-1`` (K <= 64), the
learned prior's extra views ``64..127``."""
ENCODER_CANDIDATES = 512
EXTRA_VIEWS_START = 64
MIN_SEPARATION_DEG = 3.0
"""Guaranteed: every encoder view (any count, any start, training views included) is at least
this many degrees from every evaluation view (any count, any seed), seen from the scene centre."""
EXCLUSION_DEG = 3.5
EVALUATION_CANDIDATES = 1024
ENCODER_FOV_DEG = 50.0
EVALUATION_DISTANCE = (0.55, 1.1)
"""Range of evaluation distances, as multiples of the distance at which the robust bounds fill
the field of view (the encoder's distance is 1.0): the closer views see detail."""
EVALUATION_FOV_DEG = (40.0, 60.0)
EVALUATION_LOOK_JITTER = 0.1
"""The evaluation look-at point is moved by up to this share of the bounds' radius on each
axis."""


def _fibonacci_lattice(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors [n, 3] (Fibonacci spiral)."""
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _farthest_point_order(points: np.ndarray, first: int) -> np.ndarray:
    """Indices of ``points`` (unit vectors) starting at ``first``, each next one the point
    farthest (in angle) from all chosen so far; ties go to the lowest index."""
    n = points.shape[0]
    order = np.empty(n, np.int64)
    best = np.full(n, -np.inf)  # cosine to the nearest chosen point (higher: closer)
    nxt = first
    for k in range(n):
        order[k] = nxt
        best = np.maximum(best, points @ points[nxt])
        best[order[: k + 1]] = np.inf
        nxt = int(np.argmin(best))
    return order


@functools.lru_cache(maxsize=1)
def encoder_directions() -> np.ndarray:
    """The encoder lattice [ENCODER_DIRECTIONS, 3], in the order the encoder uses it (read-only):
    the first ENCODER_DIRECTIONS points, in farthest-point order from the point nearest the
    horizon (z = 0), of a Fibonacci lattice of ENCODER_CANDIDATES points. The first K cover the
    sphere about as well as a Fibonacci lattice of K points (largest gap 56 degrees for K = 8,
    39 for 16, 20 for 64; K-point Fibonacci: 54, 39, 19)."""
    pts = _fibonacci_lattice(ENCODER_CANDIDATES)
    out = pts[_farthest_point_order(pts, int(np.argmin(np.abs(pts[:, 2]))))][:ENCODER_DIRECTIONS]
    out.setflags(write=False)
    return out


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


@functools.lru_cache(maxsize=16)
def _evaluation_family(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Directions [M, 3] (farthest-point order) and per-view parameters [M, 6] (distance
    scale, field of view, look-at offset x/y/z in radii, unused) of evaluation seed ``seed``."""
    rng = np.random.default_rng([0x65A1, seed])
    pts = _fibonacci_lattice(EVALUATION_CANDIDATES) @ _rotation(rng).T
    closest = (pts @ encoder_directions().T).max(axis=1)
    pts = pts[closest < math.cos(math.radians(EXCLUSION_DEG))]
    pts = pts[_farthest_point_order(pts, int(rng.integers(pts.shape[0])))]
    m = pts.shape[0]
    params = np.zeros((m, 6))
    params[:, 0] = rng.uniform(*EVALUATION_DISTANCE, size=m)
    params[:, 1] = rng.uniform(*EVALUATION_FOV_DEG, size=m)
    params[:, 2:5] = rng.uniform(-EVALUATION_LOOK_JITTER, EVALUATION_LOOK_JITTER, size=(m, 3))
    pts.setflags(write=False)
    params.setflags(write=False)
    return pts, params


def _frame(means: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and radius of the robust bounds (radius 1 for a point-like scene)."""
    lo, hi = robust_bounds(means)
    radius = float(np.linalg.norm(hi - lo)) / 2
    if not radius > 1e-9:  # one Gaussian, or all at one point: frame a unit sphere around it
        radius = 1.0
    return (lo + hi) / 2, radius


UP = np.array([0.0, 0.0, 1.0])


def encoder_views(means: np.ndarray, count: int, size: int = 256, *,
                  start: int = 0) -> list[Camera]:
    """``count`` views the encoder may use, at encoder directions ``start .. start+count-1``
    (:func:`encoder_directions`), looking at the centre of the robust bounds of ``means`` from
    the distance at which they fill a 50 degree field of view. Never closer than
    :data:`MIN_SEPARATION_DEG` to any :func:`evaluation_views` view of any seed and count."""
    if count < 0 or start < 0 or start + count > ENCODER_DIRECTIONS:
        raise ValueError(f"encoder views {start}..{start + count - 1} are outside the lattice "
                         f"of {ENCODER_DIRECTIONS} directions")
    centre, radius = _frame(means)
    distance = radius / math.sin(math.radians(ENCODER_FOV_DEG) / 2)
    K = intrinsics(size, size, ENCODER_FOV_DEG)
    dirs = encoder_directions()
    return [Camera(look_at(centre + distance * dirs[i], centre, UP), K, size, size, f"enc{i}")
            for i in range(start, start + count)]


def evaluation_views(means: np.ndarray, count: int, size: int = 256, seed: int = 0
                     ) -> list[Camera]:
    """``count`` views for measuring fidelity, which nothing in the codec ever sees: evaluation
    seed ``seed``'s first ``count`` directions (spread over the sphere, every one at least
    :data:`EXCLUSION_DEG` from every encoder direction), each at its own distance
    (:data:`EVALUATION_DISTANCE`), field of view (:data:`EVALUATION_FOV_DEG`) and look-at point
    (:data:`EVALUATION_LOOK_JITTER`). Views of one seed are nested: the first ``count`` of a
    larger count are the same views. ``size`` is the side of the square image."""
    dirs, params = _evaluation_family(int(seed))
    if count < 0 or count > dirs.shape[0]:
        raise ValueError(f"at most {dirs.shape[0]} evaluation views per seed")
    centre, radius = _frame(means)
    views = []
    for i in range(count):
        scale, fov = params[i, 0], params[i, 1]
        distance = scale * radius / math.sin(math.radians(fov) / 2)
        eye = centre + distance * dirs[i]
        target = centre + radius * params[i, 2:5]
        views.append(Camera(look_at(eye, target, UP), intrinsics(size, size, fov), size, size,
                            f"eval{seed}.{i}"))
    return views


def random_encoder_views(means: np.ndarray, count: int, size: int, rng: np.random.Generator
                         ) -> list[Camera]:
    """``count`` random views of the encoder family (training pairs for the learned prior):
    random encoder directions, distances 0.6-1.3 times the encoder views' distance, a random up
    vector (images not all upright), looking at the centre. Never closer than
    :data:`MIN_SEPARATION_DEG` to an evaluation view, as :func:`encoder_views`."""
    centre, radius = _frame(means)
    base = radius / math.sin(math.radians(ENCODER_FOV_DEG) / 2)
    K = intrinsics(size, size, ENCODER_FOV_DEG)
    dirs = encoder_directions()
    cams = []
    for i in range(count):
        d = dirs[int(rng.integers(ENCODER_DIRECTIONS))]
        eye = centre + base * rng.uniform(0.6, 1.3) * d
        up = rng.normal(size=3)
        cams.append(Camera(look_at(eye, centre, up / np.linalg.norm(up)), K, size, size,
                           f"train{i}"))
    return cams


def view_direction(cam: Camera, means: np.ndarray) -> np.ndarray:
    """Unit vector from the centre of the robust bounds of ``means`` to the camera centre."""
    d = cam.position - _frame(means)[0]
    return d / np.linalg.norm(d)


def subset(cams: list[Camera], count: int, size: int) -> list[Camera]:
    """``count`` of ``cams`` evenly spaced through the list, scaled to longest side ``size``."""
    step = max(1, len(cams) // count)
    return [c.scaled(size) for c in cams[::step][:count]]


def fitted(cam: Camera, longest_side: int, multiple: int = 1) -> Camera:
    """``cam`` at longest side ``longest_side`` pixels, its width and height then cut down to
    multiples of ``multiple`` (the side information's block size) by cropping equally on both
    sides (the principal point moves with the crop; the view itself does not change)."""
    c = cam.scaled(longest_side)
    w = max(multiple, c.width - c.width % multiple)
    h = max(multiple, c.height - c.height % multiple)
    if (w, h) == (c.width, c.height):
        return c
    K = c.K.copy()
    K[0, 2] -= (c.width - w) / 2
    K[1, 2] -= (c.height - h) / 2
    return Camera(c.viewmat, K, w, h, c.name)


def spread(cams: list[Camera], count: int) -> list[int]:
    """Indices of ``count`` of ``cams`` (all of them if fewer) spread over the set: the camera
    nearest the mean camera centre first, then each next one the farthest (in position, ties
    to the lowest index) from those chosen. Deterministic: the encoder's choice of training
    views depends only on the cameras."""
    n = len(cams)
    if count >= n:
        return list(range(n))
    pos = np.array([c.position for c in cams])
    chosen = [int(np.argmin(np.linalg.norm(pos - pos.mean(axis=0), axis=1)))]
    dist = np.linalg.norm(pos - pos[chosen[0]], axis=1)
    while len(chosen) < count:
        dist[chosen] = -np.inf
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(pos - pos[nxt], axis=1))
    return chosen


def same_view(a: Camera, b: Camera, tol: float = 1e-6) -> bool:
    """Whether ``a`` and ``b`` look from the same pose (any resolution)."""
    return bool(np.allclose(a.viewmat, b.viewmat, atol=tol))


def read_cameras(path: str | os.PathLike[str]) -> list[Camera]:
    """Training cameras from an INRIA 3DGS ``cameras.json`` (a JSON list) or a nerfstudio /
    instant-ngp ``transforms.json`` (an object with ``frames``), in the scene's coordinates
    (the cameras must be in the frame the PLY was exported in)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise unreadable(p, e, CameraError, "a cameras file") from None
    except UnicodeDecodeError:
        raise CameraError(f"{p}: not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CameraError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(doc, dict) and "frames" in doc:
        return _transforms_cameras(p, doc)
    return _inria_cameras(p, doc)


_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x")


def _transforms_cameras(p: Path, doc: dict[str, Any]) -> list[Camera]:
    """nerfstudio / instant-ngp frames: ``transform_matrix`` camera-to-world in the OpenGL
    convention (x right, y up, looking down -z), intrinsics per frame or shared at the top
    (``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``; or ``camera_angle_x``, the horizontal
    field of view in radians, with ``w`` and ``h``)."""
    frames = doc.get("frames")
    if not isinstance(frames, list) or not frames:
        raise CameraError(f"{p}: 'frames' must be a non-empty list")
    shared = {k: doc[k] for k in _INTRINSIC_KEYS if k in doc}
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes -> OpenCV (y down, +z ahead)
    cams = []
    for i, frame in enumerate(frames):
        try:
            if not isinstance(frame, dict):
                raise TypeError("a frame must be an object")
            k = {**shared, **{key: frame[key] for key in _INTRINSIC_KEYS if key in frame}}
            w, h = int(k["w"]), int(k["h"])
            if "fl_x" in k:
                fx = float(k["fl_x"])
                fy = float(k.get("fl_y", fx))
            else:
                fx = fy = 0.5 * w / math.tan(0.5 * float(k["camera_angle_x"]))
            cx, cy = float(k.get("cx", w / 2)), float(k.get("cy", h / 2))
            c2w = np.asarray(frame["transform_matrix"], dtype=np.float64).reshape(4, 4)
        except (KeyError, TypeError, ValueError) as e:
            raise CameraError(f"{p}: frame {i} is malformed ({type(e).__name__}: {e})") from None
        if w <= 0 or h <= 0 or not (fx > 0 and fy > 0) or not np.isfinite(c2w).all() \
                or not (np.isfinite(cx) and np.isfinite(cy)):
            raise CameraError(f"{p}: frame {i} has invalid values")
        c2w = c2w @ flip
        rot, pos = c2w[:3, :3], c2w[:3, 3]
        if abs(abs(np.linalg.det(rot)) - 1.0) > 1e-3:
            raise CameraError(f"{p}: frame {i}: transform_matrix has a scaled rotation")
        view = np.eye(4)
        view[:3, :3] = rot.T
        view[:3, 3] = -rot.T @ pos
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        name = frame.get("file_path", i)
        cams.append(Camera(view, K, w, h, str(name)))
    return cams


def read_cameras_json(path: str | os.PathLike[str]) -> list[Camera]:
    """Cameras of an INRIA 3DGS ``cameras.json`` or a nerfstudio ``transforms.json`` (the name
    predates the second format: :func:`read_cameras`)."""
    return read_cameras(path)


def _inria_cameras(p: Path, items: Any) -> list[Camera]:
    """INRIA 3DGS ``cameras.json``: a list of objects with ``width``, ``height``, ``position``
    [3], ``rotation`` [3][3] (camera-to-world), ``fx``, ``fy``; principal point at the image
    centre."""
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
