"""Training and validation pairs for the restoration network, cached as ``.npz`` (no pickle).

For one scene and each quality preset the scene is encoded, decoded without refinement, and both
the original and the decoded Gaussians are rendered at random views (:func:`training_views`:
random directions and distances around the robust bounds, never the evaluation views of
:func:`gscodec.cameras.evaluation_views`). Each sample keeps the decoded render, the original
render and the coarse residual the encoder would send for that view (:func:`coarse_residual`,
the arithmetic of :func:`gscodec.sideinfo.compute`: block average, then rounding to ``step``).
Whether a sample is shown to the network with or without its residual is drawn at training time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..cameras import Camera, intrinsics, look_at, orbit_views, robust_bounds
from ..gaussians import Gaussians
from ..render import render

CACHE_VERSION = 2  # 2: pairs from the codec with importance classes (encoder of 2026-11-27)


@dataclass(frozen=True)
class PairSpec:
    """What a cache file holds; its hash names the file."""

    qualities: tuple[int, ...] = (1, 2, 3, 4, 5)
    views: int = 12
    size: int = 256
    scale: int = 4
    step: float = 1.0 / 255
    seed: int = 0
    kind: str = "random"  # "random": training_views; "orbit": orbit_views at ``offset``
    offset: float = 0.25

    def key(self) -> str:
        text = json.dumps({"v": CACHE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def coarse_residual(original: torch.Tensor, decoded: torch.Tensor, scale: int,
                    step: float) -> np.ndarray:
    """The quantized coarse residual ``[H/scale, W/scale, 3]`` (float32) of two renders
    ``[H, W, 3]``, computed exactly as :func:`gscodec.sideinfo.compute` does."""
    r = (original.clamp(0, 1) - decoded.clamp(0, 1)).cpu().numpy().astype(np.float64)
    h, w = r.shape[0] // scale, r.shape[1] // scale
    coarse = r.reshape(h, scale, w, scale, 3).mean(axis=(1, 3))
    return (np.rint(coarse / step) * step).astype(np.float32)


def training_views(means: np.ndarray, count: int, size: int, rng: np.random.Generator,
                   fov_y_deg: float = 50.0) -> list[Camera]:
    """``count`` random views: directions uniform on the sphere, distances 0.6-1.3 times the
    orbit distance of :func:`gscodec.cameras.orbit_views`, the look-at point jittered by up to
    15% of the radius, a random up vector (so the images are not all upright)."""
    lo, hi = robust_bounds(means)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2
    if not radius > 1e-9:
        radius = 1.0
    base = radius / math.sin(math.radians(fov_y_deg) / 2)
    K = intrinsics(size, size, fov_y_deg)
    cams = []
    for i in range(count):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        eye = centre + base * rng.uniform(0.6, 1.3) * d
        target = centre + 0.15 * radius * rng.uniform(-1, 1, size=3)
        up = rng.normal(size=3)
        cams.append(Camera(look_at(eye, target, up / np.linalg.norm(up)), K, size, size,
                           f"train{i}"))
    return cams


def views_for(g: Gaussians, spec: PairSpec) -> list[Camera]:
    if spec.kind == "orbit":
        if abs(spec.offset - 0.5) < 1e-9:
            raise ValueError("offset 0.5 gives the evaluation views")
        return orbit_views(g.means, spec.views, size=spec.size, offset=spec.offset)
    return training_views(g.means, spec.views, spec.size, np.random.default_rng(spec.seed))


def make_pairs(g: Gaussians, spec: PairSpec, *, backend: str = "cpu",
               progress=None) -> dict[str, np.ndarray]:
    """Samples of one scene: ``decoded``, ``original`` ``[N, H, W, 3]`` float32 renders in
    [0, 1], ``residual`` ``[N, H/scale, W/scale, 3]`` float32, ``quality`` ``[N]`` int32,
    ``view`` ``[N]`` int32 (index into the views), N = presets x views."""
    from .. import api

    cams = views_for(g, spec)
    with torch.no_grad():
        originals = [render(g, c, backend=backend).image.clamp(0, 1).cpu() for c in cams]
        dec, orig, res, qs, vs = [], [], [], [], []
        for q in spec.qualities:
            d = api.decode(api.encode(g, quality=q, views=0), refine=False)
            for i, c in enumerate(cams):
                img = render(d, c, backend=backend).image.clamp(0, 1).cpu()
                dec.append(img.numpy())
                orig.append(originals[i].numpy())
                res.append(coarse_residual(originals[i], img, spec.scale, spec.step))
                qs.append(q)
                vs.append(i)
            if progress:
                progress(q)
    return {"decoded": np.stack(dec).astype(np.float32),
            "original": np.stack(orig).astype(np.float32),
            "residual": np.stack(res).astype(np.float32),
            "quality": np.asarray(qs, np.int32), "view": np.asarray(vs, np.int32),
            "scale": np.asarray(spec.scale, np.int32), "step": np.asarray(spec.step, np.float64)}


def cache_path(cache: Path, scene: str, spec: PairSpec) -> Path:
    return Path(cache) / f"{scene}-{spec.key()}.npz"


def load_or_make(ply: Path, spec: PairSpec, cache: Path, *, backend: str = "cpu",
                 log=print) -> dict[str, np.ndarray]:
    """The pairs of the scene in ``ply``, from ``cache`` if there, else made and saved there
    (written to a temporary name and renamed, so an interrupted run leaves no partial file)."""
    path = cache_path(cache, Path(ply).stem, spec)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from ..api import load_scene

    g = load_scene(ply)
    log(f"making pairs for {Path(ply).stem} ({g.n:,} Gaussians, {spec.views} views, presets "
        f"{list(spec.qualities)})")
    pairs = make_pairs(g, spec, backend=backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **pairs)
    os.replace(tmp, path)
    return pairs
