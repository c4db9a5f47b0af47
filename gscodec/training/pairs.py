"""Training and validation pairs for the restoration network, cached as ``.npz`` (no pickle).

For one scene and each quality preset the scene is encoded, decoded without refinement, and
both the original and the decoded Gaussians are rendered at random views
(:func:`training_views`: random views of the encoder family,
:func:`gscodec.cameras.random_encoder_views`, which keep
:data:`gscodec.cameras.MIN_SEPARATION_DEG` from every evaluation view). Each sample keeps the
decoded render, the original render and the coarse residual the encoder would send for that
view (:func:`coarse_residual`, the arithmetic of :func:`gscodec.sideinfo.compute`: block
average, then rounding to ``step``).
Whether a sample is shown to the network with or without its residual is drawn at training time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..cameras import EXTRA_VIEWS_START, Camera, encoder_views, random_encoder_views
from ..formats.atomic import atomic_write
from ..gaussians import Gaussians
from ..render import render

CACHE_VERSION = 3  # 2: codec with importance classes (2026-11-27); 3: encoder view family (12-01)


@dataclass(frozen=True)
class PairSpec:
    """What a cache file holds; its hash names the file."""

    qualities: tuple[int, ...] = (1, 2, 3, 4, 5)
    views: int = 12
    size: int = 256
    scale: int = 4
    step: float = 1.0 / 255
    seed: int = 0
    kind: str = "random"  # "random": training_views; "fixed": encoder views from ``start``
    start: int = EXTRA_VIEWS_START

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


def training_views(means: np.ndarray, count: int, size: int, rng: np.random.Generator
                   ) -> list[Camera]:
    """``count`` random views of the encoder family (:func:`random_encoder_views`)."""
    return random_encoder_views(means, count, size, rng)


def views_for(g: Gaussians, spec: PairSpec) -> list[Camera]:
    if spec.kind == "fixed":
        return encoder_views(g.means, spec.views, spec.size, start=spec.start)
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
    atomic_write(path, lambda f: np.savez_compressed(f, **pairs), force=True)
    return pairs
