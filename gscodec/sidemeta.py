"""The views of a ``SIDE`` stream's metadata (GSZ.md 6.8), parsed without torch: shared by the
side-information decoder (:func:`gscodec.sideinfo.decode`) and the header reader
(:mod:`gscodec.info`), which must stay fast to import."""

from __future__ import annotations

from typing import Any

import numpy as np

from .budget import MAX_SIDE, MAX_VIEWS
from .cameras import Camera
from .codec.meta import get_float, get_float_list, get_int, get_list
from .formats.errors import ContainerError


def parse_views(meta: dict[str, Any]) -> tuple[int, float, list[Camera]]:
    """``(scale, step, cameras)`` of a SIDE stream's metadata; every value checked
    (ContainerError)."""
    scale = get_int(meta, "scale", 1, 64)
    step = get_float(meta, "step", 1e-6, 1.0)
    cams = []
    for i, v in enumerate(get_list(meta, "views", MAX_VIEWS)):
        if not isinstance(v, dict):
            raise ContainerError(f"bad metadata: SIDE view {i} must be an object")
        where = f"SIDE view {i}: "
        w = get_int(v, "width", scale, MAX_SIDE, where)
        h = get_int(v, "height", scale, MAX_SIDE, where)
        if w % scale or h % scale:
            raise ContainerError(f"bad metadata: {where}size is not a multiple of the scale")
        view = np.asarray(get_float_list(v, "viewmat", 16, where), np.float64).reshape(4, 4)
        fx, fy, cx, cy = get_float_list(v, "K", 4, where)
        if not (fx > 0 and fy > 0):
            raise ContainerError(f"bad metadata: {where}focal lengths must be positive")
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        cams.append(Camera(view, K, w, h, f"side{i}"))
    return scale, step, cams
