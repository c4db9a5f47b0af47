"""The evaluation protocol shared by the benchmarks: the tuning/test split, the views and the
fidelity measures (benchmarks/README.md says why each choice was made).

- Scenes are named by their file's stem (``plant.ply`` -> ``plant``; distilled full-precision
  scenes by ``NAME-sh3``). :data:`SPLIT` puts every shared scene in one of two sets: **tuning**
  scenes choose constants, **test** scenes only report. A benchmark run names its split
  (``--split tuning|test``) and refuses scenes of the other one; scenes in neither set run as
  ``unlisted`` (never a headline figure).
- Views: ``--cameras cameras.json`` (or ``transforms.json``): the scene's training cameras,
  split as 3DGS and Mip-NeRF 360 papers split them (:func:`camera_split`: every
  :data:`HOLDOUT_EVERY`-th camera held out for evaluation, a subset of those evaluated, the rest
  given to the encoder, :func:`encoder_cameras`, for side information and importance); or
  synthesized evaluation views
  (:func:`gscodec.cameras.evaluation_views`) of the split's view seed (:data:`VIEW_SEEDS`,
  ``--seed`` overrides it); at every size of ``--sizes`` (pixels, the longest side).
- Fidelity against the original's renders (black background): mean PSNR over the views, the
  PSNR of the mean squared error over all views, mean SSIM, and the mean PSNR over the pixels
  either scene covers (:func:`gscodec.metrics.covered_mse`), so that the background does not
  inflate the figure.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gscodec
from gscodec.cameras import Camera, evaluation_views, read_cameras, subset
from gscodec.metrics import covered_mse, psnr, ssim
from gscodec.render import render

# Which scene chooses and which reports. The tuning scenes are the ones every earlier constant
# was chosen on (plant, playbot, cat; teapot, skull and boat were reported next to them in the
# sweeps and ablations, so they are treated as seen), plus one statue and the small SH-3 float
# crop. Everything else has never been looked at by a tuning run and only reports.
SPLIT: dict[str, tuple[str, ...]] = {
    "tuning": ("plant", "playbot", "cat", "teapot", "skull", "boat", "angel", "massa",
               "fruit", "plant-sh3", "cat-sh3", "playbot-sh3", "flowers-sh3"),
    "test": ("flowers", "trumpet", "narcissus", "angel-kneeling", "angel-with-candlestick",
             "seal", "biker", "donut", "armadillo", "boot", "cheese", "demosthenes", "fish",
             "goathead", "koala", "penguin", "brucewick", "cow", "falconstatue", "mushroom",
             "trumpet-sh3", "armadillo-sh3"),
}
VIEW_SEEDS = {"tuning": 1, "test": 1001, "unlisted": 0}
"""Evaluation view seeds: tuning runs look at seed 1, reporting runs at seed 1001."""


def split_of(name: str) -> str:
    for split, names in SPLIT.items():
        if name in names:
            return split
    return "unlisted"


def scene_name(path: Path) -> str:
    name = path.name
    for suffix in (".ply", ".gsz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def check_split(paths: list[Path], split: str) -> None:
    """Refuse (SystemExit) scenes that belong to the other split."""
    for p in paths:
        s = split_of(scene_name(p))
        if s not in (split, "unlisted"):
            raise SystemExit(f"{p}: scene {scene_name(p)!r} is in the {s} split, not {split} "
                             "(benchmarks/README.md); a tuning run never looks at a test scene "
                             "and a reporting run never at a tuning one")


def parse_sizes(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def add_arguments(ap: argparse.ArgumentParser, *, views: int = 8, sizes: str = "512",
                  split: str = "tuning") -> None:
    ap.add_argument("--split", choices=["tuning", "test"], default=split,
                    help="which scenes and view seed (benchmarks/README.md)")
    ap.add_argument("--seed", type=int, default=None,
                    help="evaluation view seed (default: the split's, VIEW_SEEDS)")
    ap.add_argument("--cameras", type=Path, default=None,
                    help="training cameras (INRIA cameras.json or transforms.json): evaluate at "
                         "(a subset of) every 8th, encode with the others")
    ap.add_argument("--views", type=int, default=views, help="evaluation views")
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes(sizes),
                    help="comma list of render sizes (longest side, pixels)")


def view_seed(args: argparse.Namespace) -> int:
    return VIEW_SEEDS[args.split] if args.seed is None else args.seed


HOLDOUT_EVERY = 8
"""With ``--cameras``, cameras 0, 8, 16, ... of the file are held out for evaluation (the
convention of the 3DGS and Mip-NeRF 360 evaluations) and never given to the encoder."""


def camera_split(cams: list[Camera]) -> tuple[list[Camera], list[Camera]]:
    """(encoder cameras, held-out cameras) of a training set: every :data:`HOLDOUT_EVERY`-th
    held out, the rest for the encoder (a set of fewer than 2 cameras cannot be split)."""
    if len(cams) < 2:
        raise SystemExit(f"--cameras: {len(cams)} camera(s); at least 2 are needed to hold "
                         "some out for evaluation")
    held = [c for i, c in enumerate(cams) if i % HOLDOUT_EVERY == 0]
    return [c for i, c in enumerate(cams) if i % HOLDOUT_EVERY != 0], held


def encoder_cameras(args: argparse.Namespace) -> list[Camera] | None:
    """The cameras the encoder may use (side information, importance) with ``--cameras``;
    None without (the encoder's synthesized views, disjoint from the evaluation views)."""
    if args.cameras is None:
        return None
    return camera_split(read_cameras(args.cameras))[0]


def cameras_for(g: gscodec.Gaussians, args: argparse.Namespace, size: int) -> list[Camera]:
    if args.cameras is not None:
        return subset(camera_split(read_cameras(args.cameras))[1], args.views, size)
    return evaluation_views(g.means, args.views, size, seed=view_seed(args))


@dataclass
class Reference:
    """The original's renders at every size: ``images[size]``, ``alphas[size]``, ``cams[size]``."""

    cams: dict[int, list[Camera]]
    images: dict[int, list[torch.Tensor]]
    alphas: dict[int, list[torch.Tensor]]


def renders(g: gscodec.Gaussians, cams: list[Camera], backend: str
            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    imgs, alphas = [], []
    with torch.no_grad():
        for c in cams:
            r = render(g, c, backend=backend)
            imgs.append(r.image.clamp(0, 1).cpu())
            alphas.append(r.alpha.cpu())
    return imgs, alphas


def reference(g: gscodec.Gaussians, args: argparse.Namespace, backend: str) -> Reference:
    ref = Reference({}, {}, {})
    for size in args.sizes:
        ref.cams[size] = cameras_for(g, args, size)
        ref.images[size], ref.alphas[size] = renders(g, ref.cams[size], backend)
    return ref


def _db(mse: float) -> float:
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def fidelity(ref: Reference, g: gscodec.Gaussians, backend: str) -> dict[str, Any]:
    """Per size: ``psnr`` (mean over views), ``psnr_all`` (of the mean squared error over all
    views), ``ssim``, ``psnr_covered`` (mean over views of the PSNR over covered pixels),
    ``coverage``, ``psnr_min_view``; the first size's figures also at the top level."""
    out: dict[str, Any] = {}
    for size in ref.cams:
        imgs, alphas = renders(g, ref.cams[size], backend)
        p, s, pc, cov, mses = [], [], [], [], []
        for a, b, aa, ab in zip(ref.images[size], imgs, ref.alphas[size], alphas, strict=True):
            mse = float(torch.mean((a - b) ** 2).item())
            mses.append(mse)
            p.append(psnr(a, b))
            s.append(ssim(a, b))
            cm, c = covered_mse(a, b, aa, ab)
            pc.append(_db(cm))
            cov.append(c)
        out[str(size)] = {"psnr": float(np.mean(p)), "psnr_all": _db(float(np.mean(mses))),
                          "ssim": float(np.mean(s)), "psnr_covered": float(np.mean(pc)),
                          "coverage": float(np.mean(cov)), "psnr_min_view": float(np.min(p))}
    first = out[str(next(iter(ref.cams)))]
    return {**first, "by_size": out}


def at_size(row: dict[str, Any], size: int, key: str = "psnr") -> float:
    return row["by_size"][str(size)][key]
