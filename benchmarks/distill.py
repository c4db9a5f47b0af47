"""Distil a full-precision, SH-degree-3 3DGS scene from renders of any scene (issue 14).

    python3 benchmarks/distill.py SOURCE OUT.ply [--seed 0] [--iters 2000] [--size 128]
        [--device auto|cpu|cuda] [--max-gaussians 200000] [--init-gaussians N] [--views 128]
        [--eval-views 8] [--sh-every K] [--refine-every K] [--refine-start S] [--refine-stop S]
        [--grow-grad2d 0.0002] [--reset-every 0] [--background random|black]
        [--strategy auto|gsplat|builtin] [--threads T] [--log-every 50] [--force] [--quiet]

Every benchmark scene the project has went through an 8-bit or codebook format, so its values
sit on a quantization grid that a codec can exploit. This script fits a NEW scene, float32 and
SH degree 3, to renders of ``SOURCE`` (anything :func:`gscodec.api.load_scene` reads) the way
3DGS training fits one to photographs, so that the result has the statistics of a trained scene
(values off any grid, SH bands 1-3 in use) while showing what the source shows. It writes
``OUT.ply`` (INRIA layout, float32, atomically) and ``OUT.json`` beside it (source, seed,
iterations, size, final count, PSNR against the source at held-out views, wall time, device).
An output inside this repository is refused: scenes made from shared data are never committed.

Method (3DGS training, Kerbl et al. 2023, with gsplat's conventions):

- Targets: ``--views`` renders of the source (default 128) at random views of the encoder
  family (:func:`gscodec.cameras.random_encoder_views`: random encoder directions, distances
  0.6-1.3x, random roll), ``--size`` pixels square, rendered once and cached as colour on black
  plus alpha, so that any background composites exactly: ``target = colour + (1 - alpha) * bg``.
  Encoder-family views never coincide with the codec's evaluation views, so a benchmark that
  scores the distilled scene at evaluation views scores views the distillation never saw.
- Background: a uniformly random colour per step (``--background random``, the default); with a
  fixed black background, dark pixels can be explained by transparency, and the fit leaves
  holes and semi-transparent floaters whose alpha disagrees with the source's. Scores are on
  black, as everywhere in the project.
- Initialisation: a random subset (``--init-gaussians``, default min(count, max / 2)) of the
  source's positions among the Gaussians that can render (alpha >= 1/255), each moved by
  Gaussian noise of 0.3 times its mean distance to its 3 nearest neighbours; isotropic scales
  from that distance (as 3DGS does from SfM points), identity rotations, opacity 0.1, SH DC from
  the source's base colour plus uniform noise of +-0.5/255 (so that it leaves the source's grid
  at once), bands 1-3 zero. The source's positions play the part of the SfM point cloud: they
  put Gaussians where the surfaces are, which random points in the bounds would need many more
  iterations (and densification rounds) to find, a cost the CPU budget cannot pay. Only the
  positions (jittered) and the base colour (as a starting point) come from the source; every
  attribute is then learned.
- Loss ``0.8 * L1 + 0.2 * (1 - SSIM)`` (pytorch-msssim, 11x11 window); one Adam per parameter
  group with 3DGS's learning rates (positions 1.6e-4 times the scene scale, decaying
  exponentially to 1/100 of that over the run; log-scales 5e-3; rotations 1e-3; opacity logits
  5e-2; SH DC 2.5e-3; higher bands 2.5e-3 / 20); eps 1e-15. The scene scale is 3DGS's: 1.1 times
  the largest distance of a training camera from the cameras' mean position.
- SH bands grow: degree 0 first, +1 every ``--sh-every`` iterations (default iters / 10) up to 3.
- Densification (3DGS / gsplat DefaultStrategy rules): the norm of each Gaussian's screen-space
  positional gradient (in NDC units: pixels times width / 2, height / 2) is averaged over the
  steps in which it was visible; every ``--refine-every`` steps (default max(10, iters / 40))
  after ``--refine-start`` (default 2x that) and before ``--refine-stop`` (default iters / 2),
  those above ``--grow-grad2d`` are cloned (largest scale <= 0.01 x scene scale) or split (two
  samples from the Gaussian, scales / 1.6), and those with opacity below 0.005 are pruned,
  after an opacity reset also those with a largest scale above 0.1 x scene scale (gsplat's
  rule; pruning big Gaussians from the start removed real content: the sparse initial ones
  that cover large surfaces, -2 dB on a small test scene). The count never exceeds
  ``--max-gaussians``: when growth would, the candidates with the largest gradients go first.
  Opacity reset (``--reset-every``, to 0.01) is off by default: a run of 1-3k iterations has no
  time to recover from it. At the end Gaussians that cannot render (alpha < 1/255, which changes
  no render) or that no training view contains are dropped.
- CPU (``--strategy builtin``): gscodec's own renderer, composed here from its parts
  (``gscodec.render.project`` / ``sh`` / ``cpu``, the same calls as ``gscodec.render.render``)
  so that the gradient of the projected 2D means can be retained; densification is implemented
  here. CUDA (``--strategy gsplat``, the default there): ``gsplat.rasterization`` (classic mode,
  the project's conventions) and ``gsplat.strategy.DefaultStrategy`` with the same schedule and
  thresholds; the count cap (least opaque removed first; DefaultStrategy has none) and the
  opacity reset (never fired by gsplat 1.5.3's DefaultStrategy: ``step % reset_every == 0 &
  step > 0`` parses as a chained comparison that is always false) are applied here with
  gsplat's own ``strategy.ops``. ``--strategy builtin`` on CUDA runs the CPU path's
  densification with gsplat's rasterizer.
- Deterministic for a seed on the CPU: same seed, machine and thread count give the same PLY
  bytes (torch's deterministic algorithms, stable sorts, seeded numpy and torch generators).
  gsplat's CUDA kernels accumulate gradients with atomics, so CUDA runs are not bitwise
  repeatable.

Speed (2-core CPU shared with other jobs, load average 5-6, one thread; one iteration =
render + loss + backward + Adam): at 96 / 128 / 192 px, 0.29 / 0.43 / 0.77 s with 10k Gaussians
initialised from teapot, 0.60 / 0.45 / 0.93 s with 25k, 0.71 / 0.86 / 1.16 s with 50k and
2.1 / 2.5 / 2.7 s with 100k (the pure-PyTorch rasterizer's cost grows with the Gaussian-pixel
pairs, and with opacity as the fit fills in: fewer pixels stop early), so CPU runs use a few 10k
Gaussians. Rendering the cached targets costs about one source render per view. Measured run
(16 minutes on one shared core: 3 for 96 target renders, 12.8 for the loop at 0.77 s/it; teapot
12,000 -> 16,803 Gaussians, held-out PSNR 21.5 dB at initialisation, 35.6 dB at the end)::

    python3 benchmarks/distill.py ../shared/data/objects/teapot.splat /tmp/teapot-float.ply \
        --iters 1000 --size 128 --init-gaussians 12000 --max-gaussians 30000 --views 96 \
        --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gscodec
from gscodec.cameras import Camera, random_encoder_views
from gscodec.gaussians import SH_C0, Gaussians
from gscodec.render import cpu as cpu_raster
from gscodec.render import deterministic, gsplat_available, render
from gscodec.render.project import ALPHA_THRESHOLD, project, quat_to_rotmat
from gscodec.render.sh import sh_to_rgb

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")  # gsplat's parameter names
EPS2D = 0.3  # gscodec.render.render's defaults
NEAR_PLANE = 0.01


@dataclass
class DistillConfig:
    """Hyper-parameters; ``None`` means "derived from ``iters``" (see :meth:`resolved`)."""

    iters: int = 2000
    size: int = 128
    views: int = 128  # cached training targets
    eval_views: int = 8  # held-out views for the PSNR (another random draw of the family)
    init_gaussians: int | None = None  # default: min(renderable source count, max / 2)
    max_gaussians: int = 200_000
    jitter: float = 0.3  # position noise, in units of the mean 3-NN distance
    init_opacity: float = 0.1
    sh_every: int | None = None  # default iters // 10
    refine_every: int | None = None  # default max(10, iters // 40)
    refine_start: int | None = None  # default 2 * refine_every
    refine_stop: int | None = None  # default iters // 2
    grow_grad2d: float = 2e-4
    grow_scale3d: float = 0.01  # times the scene scale: clone at or below, split above
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1  # times the scene scale
    reset_every: int = 0  # opacity reset period (0: off)
    ssim_weight: float = 0.2
    background: str = "random"  # or "black"
    lr: dict[str, float] = field(default_factory=lambda: {
        "means": 1.6e-4, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2,
        "sh0": 2.5e-3, "shN": 2.5e-3 / 20})
    means_lr_final: float = 0.01  # the position learning rate ends at this share of its start
    log_every: int = 50

    def resolved(self) -> DistillConfig:
        """A copy with every derived default filled in."""
        iters = self.iters
        every = self.refine_every or max(10, iters // 40)
        return DistillConfig(**{
            **asdict(self),
            "sh_every": self.sh_every or max(1, iters // 10),
            "refine_every": every,
            "refine_start": self.refine_start if self.refine_start is not None else 2 * every,
            "refine_stop": self.refine_stop if self.refine_stop is not None else iters // 2,
        })


@dataclass
class DistillResult:
    gaussians: Gaussians  # numpy, float32, SH degree 3
    psnr: float  # mean PSNR over the held-out views, against the source, black background
    psnr_init: float  # the same for the initial Gaussians
    init_gaussians: int
    refinements: list[dict[str, int]]  # one entry per refinement step that changed the count
    final_prune: dict[str, int]
    losses: list[float]
    seconds: float
    seconds_per_iter: float
    device: str
    strategy: str
    scene_scale: float


# ---------------------------------------------------------------------------------------------
# initialisation


def _part1by2(v: np.ndarray) -> np.ndarray:
    x = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in ((32, 0x1F00000000FFFF), (16, 0x1F0000FF0000FF), (8, 0x100F00F00F00F00F),
                        (4, 0x10C30C30C30C30C3), (2, 0x1249249249249249)):
        x = (x | (x << np.uint64(shift))) & np.uint64(mask)
    return x


def nn_distances(points: np.ndarray, k: int = 3, window: int = 16) -> np.ndarray:
    """Approximate root-mean-square distance of each point to its ``k`` nearest neighbours:
    candidates are the ``window`` points before and after it in two Morton orders (the second
    with the grid shifted), O(n * window). Exact for up to ``window + 1`` points; elsewhere an
    overestimate where a neighbour falls across a seam of both orders, which only matters for
    a starting scale."""
    pts = np.asarray(points, np.float64)
    n = pts.shape[0]
    lo = pts.min(axis=0) if n else np.zeros(3)
    span = float((pts.max(axis=0) - lo).max()) if n else 1.0
    span = span if span > 0 else 1.0
    if n < 2:
        return np.full(n, 0.01 * span)
    best = np.full((n, k), np.inf)
    bits = (1 << 21) - 1
    for shift in (0.0, 0.3183):
        q = np.floor((pts - lo + shift * span) / (2.0 * span) * bits).astype(np.int64)
        code = _part1by2(q[:, 0]) | (_part1by2(q[:, 1]) << np.uint64(1)) \
            | (_part1by2(q[:, 2]) << np.uint64(2))
        order = np.argsort(code, kind="stable")
        p = pts[order]
        for off in range(1, min(window, n - 1) + 1):
            d2 = ((p[off:] - p[:-off]) ** 2).sum(axis=1)
            for idx in (order[:-off], order[off:]):
                both = np.concatenate([best[idx], d2[:, None]], axis=1)
                best[idx] = np.sort(both, axis=1)[:, :k]
    finite = np.isfinite(best)
    mean_d2 = np.where(finite, best, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    return np.sqrt(np.maximum(mean_d2, (1e-4 * span) ** 2))


def initial_params(source: Gaussians, n_init: int, cfg: DistillConfig,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh float32 parameters (gsplat's names) at a jittered random subset of the source's
    renderable positions."""
    src = source.numpy()
    alpha = 1.0 / (1.0 + np.exp(-src.opacity_logits.astype(np.float64)))
    pool = np.nonzero(alpha >= ALPHA_THRESHOLD)[0]
    if pool.size == 0:
        pool = np.arange(src.n)
    n = min(n_init, pool.size)
    idx = np.sort(rng.choice(pool, size=n, replace=False))
    base = src.means[idx].astype(np.float64)
    dist = nn_distances(base)
    means = base + rng.normal(size=base.shape) * (cfg.jitter * dist)[:, None]
    dc = src.sh[idx, 0, :].astype(np.float64)
    dc = dc + rng.uniform(-0.5, 0.5, size=dc.shape) / (255.0 * SH_C0)
    quats = np.zeros((n, 4))
    quats[:, 0] = 1.0
    logit = math.log(cfg.init_opacity / (1.0 - cfg.init_opacity))
    return {
        "means": means.astype(np.float32),
        "quats": quats.astype(np.float32),
        "scales": np.repeat(np.log(dist)[:, None], 3, axis=1).astype(np.float32),
        "opacities": np.full(n, logit, np.float32),
        "sh0": dc[:, None, :].astype(np.float32),
        "shN": np.zeros((n, 15, 3), np.float32),
    }


def to_gaussians(params: dict[str, torch.Tensor]) -> Gaussians:
    """numpy float32 Gaussians of the parameters (SH degree 3)."""
    with torch.no_grad():
        return Gaussians(
            means=params["means"].detach().cpu().numpy().astype(np.float32),
            quats=params["quats"].detach().cpu().numpy().astype(np.float32),
            log_scales=params["scales"].detach().cpu().numpy().astype(np.float32),
            opacity_logits=params["opacities"].detach().cpu().numpy().astype(np.float32),
            sh=torch.cat([params["sh0"], params["shN"]], dim=1).detach().cpu().numpy()
            .astype(np.float32),
        )


# ---------------------------------------------------------------------------------------------
# rendering for training: image plus what densification needs


def _camera_tensors(cam: Camera, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(cam.viewmat, dtype=torch.float32, device=device),
            torch.as_tensor(cam.K, dtype=torch.float32, device=device))


def render_train_cpu(p: dict[str, torch.Tensor], cam: Camera, degree: int, bg: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """gscodec.render.render's CPU path step by step: returns (image [H, W, 3], means2d [N, 2]
    with its gradient retained, visible [N] bool)."""
    viewmat, K = _camera_tensors(cam, p["means"].device)
    opacities = torch.sigmoid(p["opacities"])
    means2d, conics, depths, radii = project(p["means"], p["quats"], p["scales"], opacities,
                                             viewmat, K, cam.width, cam.height, eps2d=EPS2D,
                                             near=NEAR_PLANE)
    means2d.retain_grad()
    cam_pos = -viewmat[:3, :3].T @ viewmat[:3, 3]
    dirs = p["means"] - cam_pos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    n_used = (degree + 1) ** 2
    sh = torch.cat([p["sh0"], p["shN"][:, : n_used - 1]], dim=1)
    colors = sh_to_rgb(sh, dirs, degree)
    image, alpha = cpu_raster.rasterize(means2d, conics, colors, opacities, depths, radii,
                                        cam.width, cam.height)
    return image + (1.0 - alpha) * bg, means2d, (radii > 0).all(dim=-1)


def render_train_gsplat(p: dict[str, torch.Tensor], cam: Camera, degree: int, bg: torch.Tensor
                        ) -> tuple[torch.Tensor, dict[str, Any]]:
    """One ``gsplat.rasterization`` call with the project's conventions (classic mode, eps2d
    0.3, near plane 0.01, unpacked); returns (image [H, W, 3], gsplat's info dict)."""
    from gsplat import rasterization

    viewmat, K = _camera_tensors(cam, p["means"].device)
    colors, _, info = rasterization(
        means=p["means"], quats=p["quats"], scales=torch.exp(p["scales"]),
        opacities=torch.sigmoid(p["opacities"]),
        colors=torch.cat([p["sh0"], p["shN"]], dim=1), viewmats=viewmat[None], Ks=K[None],
        width=cam.width, height=cam.height, sh_degree=degree, eps2d=EPS2D,
        near_plane=NEAR_PLANE, rasterize_mode="classic", packed=False, absgrad=False,
        backgrounds=bg[None])
    return colors[0], info


def image_loss(image: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    from pytorch_msssim import ssim

    l1 = (image - target).abs().mean()
    if ssim_weight <= 0:
        return l1
    x = image.permute(2, 0, 1)[None]
    y = target.permute(2, 0, 1)[None]
    win = 11 if min(image.shape[0], image.shape[1]) > 11 else 3
    d_ssim = 1.0 - ssim(x, y, data_range=1.0, size_average=True, win_size=win)
    return (1.0 - ssim_weight) * l1 + ssim_weight * d_ssim


# ---------------------------------------------------------------------------------------------
# densification and pruning of the builtin strategy (any device)


def _replace_rows(params: dict[str, torch.Tensor], opts: dict[str, torch.optim.Optimizer],
                  keep: torch.Tensor, extra: dict[str, torch.Tensor]) -> None:
    """Keep rows ``keep`` of every parameter and append ``extra[name]``; the optimizer moments
    follow the kept rows and start at zero for the appended ones."""
    for name in NAMES:
        old = params[name]
        new = torch.cat([old.detach()[keep], extra[name].to(old.dtype)]).requires_grad_(True)
        params[name] = new
        opt = opts[name]
        state = opt.state.pop(old, None)
        opt.param_groups[0]["params"] = [new]
        if state:
            n_new = extra[name].shape[0]
            opt.state[new] = {
                k: v if k == "step" else torch.cat([v[keep], v.new_zeros((n_new, *v.shape[1:]))])
                for k, v in state.items()}


@torch.no_grad()
def builtin_refine(params: dict[str, torch.Tensor], opts: dict[str, torch.optim.Optimizer],
                   stats: dict[str, torch.Tensor], cfg: DistillConfig, scene_scale: float,
                   gen: torch.Generator, step: int) -> dict[str, int]:
    """One 3DGS densification step: clone / split by averaged screen-space gradient, prune by
    opacity and size, within ``cfg.max_gaussians``. Returns the counts."""
    n = params["means"].shape[0]
    grads = stats["grad2d"] / stats["count"].clamp_min(1)
    max_scale = torch.exp(params["scales"]).max(dim=-1).values
    prune = torch.sigmoid(params["opacities"]) < cfg.prune_opa
    if cfg.reset_every > 0 and step > cfg.reset_every:  # gsplat's rule: only after a reset
        prune |= max_scale > cfg.prune_scale3d * scene_scale
    if bool(prune.all()):  # never prune everything: a scene of no Gaussians cannot learn
        prune = torch.zeros_like(prune)
    cand = torch.nonzero((grads > cfg.grow_grad2d) & ~prune).squeeze(1)
    budget = max(0, cfg.max_gaussians - int((~prune).sum()))
    if cand.numel() > budget:
        order = torch.argsort(-grads[cand], stable=True)  # largest first, ties by index
        cand = torch.sort(cand[order[:budget]]).values
    small = max_scale[cand] <= cfg.grow_scale3d * scene_scale
    clone, split = cand[small], cand[~small]
    drop = prune.clone()
    drop[split] = True
    keep = torch.nonzero(~drop).squeeze(1)

    # children of a split: two samples from the Gaussian, scales / 1.6, the rest copied
    k = split.numel()
    rot = quat_to_rotmat(params["quats"][split])
    sigma = torch.exp(params["scales"][split])
    z = torch.randn((2, k, 3), generator=gen, dtype=torch.float32).to(rot.device)
    offsets = torch.einsum("nij,nj,bnj->bni", rot, sigma, z).reshape(2 * k, 3)
    extra = {}
    for name in NAMES:
        p = params[name].detach()
        if name == "means":
            children = p[split].repeat(2, 1) + offsets
        elif name == "scales":
            children = (p[split] - math.log(1.6)).repeat(2, 1)
        else:
            children = p[split].repeat(2, *([1] * (p.dim() - 1)))
        extra[name] = torch.cat([p[clone], children])
    _replace_rows(params, opts, keep, extra)
    m = params["means"].shape[0]
    stats["grad2d"] = torch.zeros(m, device=params["means"].device)
    stats["count"] = torch.zeros(m, device=params["means"].device)
    return {"before": n, "cloned": int(clone.numel()), "split": k, "pruned": int(prune.sum()),
            "after": m}


@torch.no_grad()
def reset_opacities(params: dict[str, torch.Tensor], opts: dict[str, torch.optim.Optimizer],
                    value: float) -> None:
    """3DGS's opacity reset: alpha = min(alpha, value), the opacities' Adam moments zeroed."""
    old = params["opacities"]
    new = old.detach().clamp(max=math.log(value / (1.0 - value))).requires_grad_(True)
    params["opacities"] = new
    opt = opts["opacities"]
    state = opt.state.pop(old, None)
    opt.param_groups[0]["params"] = [new]
    if state:
        opt.state[new] = {k: v if k == "step" else torch.zeros_like(v) for k, v in state.items()}


# ---------------------------------------------------------------------------------------------
# the loop


def _resolve_device(device: str) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError("device must be auto, cpu or cuda")
    if device == "auto":
        return torch.device("cuda" if gsplat_available() else "cpu")
    if device == "cuda" and not gsplat_available():
        raise RuntimeError("--device cuda needs CUDA and a working gsplat")
    return torch.device(device)


def _scene_scale(cams: list[Camera]) -> float:
    """3DGS's normalisation radius: 1.1 x the largest distance of a camera from their mean."""
    pos = np.stack([c.position for c in cams])
    return float(1.1 * np.linalg.norm(pos - pos.mean(axis=0), axis=1).max()) or 1.0


def _mean_psnr(g: Gaussians, cams: list[Camera], refs: list[torch.Tensor], backend: str,
               device: torch.device) -> float:
    from gscodec.metrics import psnr

    with torch.no_grad():
        vals = [psnr(render(g, c, backend=backend, device=device).image, r)
                for c, r in zip(cams, refs, strict=True)]
    return float(np.mean(vals))


def distill(source: Gaussians, config: DistillConfig | None = None, *, seed: int = 0,
            device: str = "auto", strategy: str = "auto",
            progress: Callable[[str], None] | None = None) -> DistillResult:
    """Fit a new float32 SH-3 scene to renders of ``source``; see the module docstring."""
    cfg = (config or DistillConfig()).resolved()
    if cfg.iters < 1 or cfg.size < 8 or cfg.views < 1 or cfg.eval_views < 1:
        raise ValueError("need iters >= 1, size >= 8, views >= 1 and eval views >= 1")
    if cfg.background not in ("random", "black"):
        raise ValueError("background must be random or black")
    dev = _resolve_device(device)
    if strategy == "auto":
        strategy = "gsplat" if dev.type == "cuda" else "builtin"
    if strategy not in ("gsplat", "builtin"):
        raise ValueError("strategy must be auto, gsplat or builtin")
    if strategy == "gsplat" and dev.type != "cuda":
        raise ValueError("the gsplat strategy needs CUDA")
    if source.n == 0:
        raise ValueError("the source scene has no Gaussians")
    say = progress or (lambda _line: None)
    if dev.type == "cpu":
        with deterministic():
            return _distill(source, cfg, seed, dev, strategy, say)
    return _distill(source, cfg, seed, dev, strategy, say)


def _distill(source: Gaussians, cfg: DistillConfig, seed: int, dev: torch.device,
             strategy: str, say: Callable[[str], None]) -> DistillResult:
    t_start = time.perf_counter()
    torch.manual_seed(seed)  # gsplat's split draws from torch's global generator
    gen = torch.Generator().manual_seed(seed)  # builtin splits
    rng_views = np.random.default_rng([seed, 0])
    rng_eval = np.random.default_rng([seed, 1])
    rng_init = np.random.default_rng([seed, 2])
    rng_steps = np.random.default_rng([seed, 3])
    backend = "gsplat" if dev.type == "cuda" else "cpu"
    src = source.torch(dev)

    cams = random_encoder_views(source.numpy().means, cfg.views, cfg.size, rng_views)
    eval_cams = random_encoder_views(source.numpy().means, cfg.eval_views, cfg.size, rng_eval)
    colours, alphas = [], []
    with torch.no_grad():
        for i, cam in enumerate(cams):
            r = render(src, cam, backend=backend, device=dev)
            colours.append(r.image)
            alphas.append(r.alpha)
            if (i + 1) % 32 == 0:
                say(f"targets {i + 1}/{len(cams)}")
        eval_refs = [render(src, c, backend=backend, device=dev).image for c in eval_cams]
    scene_scale = _scene_scale(cams)

    n_init = cfg.init_gaussians or min(source.n, max(1, cfg.max_gaussians // 2))
    n_init = min(n_init, cfg.max_gaussians)
    init = initial_params(source, n_init, cfg, rng_init)
    params = {k: torch.from_numpy(v).to(dev).requires_grad_(True) for k, v in init.items()}
    n0 = int(params["means"].shape[0])
    psnr_init = _mean_psnr(to_gaussians(params), eval_cams, eval_refs, backend, dev)
    say(f"init: {n0} Gaussians from {source.n} (SH {source.sh_degree}); scene scale "
        f"{scene_scale:.4g}; PSNR {psnr_init:.2f} dB at {len(eval_cams)} held-out views")

    means_lr = cfg.lr["means"] * scene_scale
    opts = {k: torch.optim.Adam([{"params": [params[k]], "name": k,
                                  "lr": means_lr if k == "means" else cfg.lr[k]}], eps=1e-15)
            for k in NAMES}
    gs_strategy = gs_state = None
    if strategy == "gsplat":
        from gsplat.strategy import DefaultStrategy

        params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.detach()) for k, v in params.items()})
        for k in NAMES:
            opts[k].param_groups[0]["params"] = [params[k]]
        gs_strategy = DefaultStrategy(
            prune_opa=cfg.prune_opa, grow_grad2d=cfg.grow_grad2d, grow_scale3d=cfg.grow_scale3d,
            prune_scale3d=cfg.prune_scale3d, refine_start_iter=cfg.refine_start,
            refine_stop_iter=cfg.refine_stop, refine_every=cfg.refine_every,
            reset_every=gs_reset_every(cfg),
            absgrad=False, verbose=False)
        gs_strategy.check_sanity(params, opts)
        gs_state = gs_strategy.initialize_state(scene_scale=scene_scale)
    stats = {"grad2d": torch.zeros(n0, device=dev), "count": torch.zeros(n0, device=dev)}

    losses: list[float] = []
    refinements: list[dict[str, int]] = []
    order = np.empty(0, np.int64)
    t_loop = time.perf_counter()
    t_said = t_loop
    for step in range(cfg.iters):  # 0-based, as gsplat's strategies count
        if step % len(cams) == 0:
            order = rng_steps.permutation(len(cams))
        v = int(order[step % len(cams)])
        bg_np = rng_steps.random(3) if cfg.background == "random" else np.zeros(3)
        bg = torch.tensor(bg_np, dtype=torch.float32, device=dev)
        target = colours[v] + (1.0 - alphas[v]) * bg
        degree = min(3, step // cfg.sh_every)
        means_lr_now = means_lr * cfg.means_lr_final ** (step / cfg.iters)
        opts["means"].param_groups[0]["lr"] = means_lr_now
        refining = (step > cfg.refine_start and step % cfg.refine_every == 0
                    and step < cfg.refine_stop)

        if backend == "cpu":
            image, means2d, visible = render_train_cpu(params, cams[v], degree, bg)
            info = None
        else:
            image, info = render_train_gsplat(params, cams[v], degree, bg)
            if gs_strategy is not None:
                gs_strategy.step_pre_backward(params, opts, gs_state, step, info)
            else:
                info["means2d"].retain_grad()
        loss = image_loss(image, target, cfg.ssim_weight)
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts.values():
            opt.step()
        losses.append(float(loss.detach()))

        n_before = int(params["means"].shape[0])
        if gs_strategy is not None:
            gs_strategy.step_post_backward(params, opts, gs_state, step, info, packed=False)
            if refining:
                _gsplat_trim(params, opts, gs_state, cfg)
            if cfg.reset_every > 0 and step > 0 and step % cfg.reset_every == 0 \
                    and step < cfg.refine_stop:
                from gsplat.strategy.ops import reset_opa

                reset_opa(params, opts, gs_state, value=2.0 * cfg.prune_opa)
            n_after = int(params["means"].shape[0])
            if n_after != n_before:
                refinements.append({"step": step, "before": n_before, "after": n_after})
        else:
            if step < cfg.refine_stop:
                if backend == "cpu":
                    g2 = means2d.grad
                else:
                    g2 = info["means2d"].grad[0]
                    visible = (info["radii"][0] > 0).all(dim=-1)
                _accumulate(stats, g2, visible, cams[v].width, cams[v].height)
            if refining:
                event = builtin_refine(params, opts, stats, cfg, scene_scale, gen, step)
                refinements.append({"step": step, **event})
            if cfg.reset_every > 0 and step > 0 and step % cfg.reset_every == 0 \
                    and step < cfg.refine_stop:
                reset_opacities(params, opts, 2.0 * cfg.prune_opa)

        now = time.perf_counter()
        if step + 1 == cfg.iters or ((step + 1) % cfg.log_every == 0 and now - t_said >= 1.0):
            t_said = now
            say(f"step {step + 1}/{cfg.iters} loss {np.mean(losses[-cfg.log_every:]):.4f} "
                f"sh {degree} n {int(params['means'].shape[0])} "
                f"{(now - t_loop) / (step + 1):.3f} s/it")

    loop_seconds = time.perf_counter() - t_loop
    params = {k: v.detach() for k, v in params.items()}
    final_prune = _final_prune(params, cams)
    out = to_gaussians(params)
    psnr = _mean_psnr(out, eval_cams, eval_refs, backend, dev)
    say(f"done: {out.n} Gaussians, PSNR {psnr:.2f} dB (init {psnr_init:.2f} dB)")
    return DistillResult(
        gaussians=out, psnr=psnr, psnr_init=psnr_init, init_gaussians=n0,
        refinements=refinements, final_prune=final_prune, losses=losses,
        seconds=time.perf_counter() - t_start, seconds_per_iter=loop_seconds / cfg.iters,
        device=str(dev), strategy=strategy, scene_scale=scene_scale)


def _accumulate(stats: dict[str, torch.Tensor], grad2d: torch.Tensor | None,
                visible: torch.Tensor, width: int, height: int) -> None:
    """Add the NDC-scaled screen-space gradient norm of the visible Gaussians (gsplat's rule)."""
    if grad2d is None:
        return
    with torch.no_grad():
        scale = torch.tensor([width / 2.0, height / 2.0], device=grad2d.device)
        norm = (grad2d * scale).norm(dim=-1)
        vis = visible.to(norm.dtype)
        stats["grad2d"] += norm * vis
        stats["count"] += vis


@torch.no_grad()
def _gsplat_trim(params: Any, opts: dict[str, torch.optim.Optimizer], state: dict[str, Any],
                 cfg: DistillConfig) -> None:
    """After a DefaultStrategy refinement, which has no count cap: remove the least opaque
    Gaussians down to ``cfg.max_gaussians`` (with gsplat's own ``remove``)."""
    from gsplat.strategy.ops import remove

    n = int(params["means"].shape[0])
    if n <= cfg.max_gaussians:
        return
    drop = torch.zeros(n, dtype=torch.bool, device=params["means"].device)
    opa = torch.sigmoid(params["opacities"].detach())
    drop[torch.argsort(opa, stable=True)[: n - cfg.max_gaussians]] = True
    remove(params=params, optimizers=opts, state=state, mask=drop)


def gs_reset_every(cfg: DistillConfig) -> int:
    """DefaultStrategy's reset period: never within the run when resets are off."""
    return cfg.reset_every if cfg.reset_every > 0 else 10 * cfg.iters + 1


@torch.no_grad()
def _final_prune(params: dict[str, torch.Tensor], cams: list[Camera]) -> dict[str, int]:
    """Drop the Gaussians that cannot render (alpha < 1/255: no render changes) and those that
    no training view contains. Edits ``params`` in place."""
    n = int(params["means"].shape[0])
    opacities = torch.sigmoid(params["opacities"])
    renderable = opacities >= ALPHA_THRESHOLD
    seen = torch.zeros(n, dtype=torch.bool, device=params["means"].device)
    for cam in cams:
        viewmat, K = _camera_tensors(cam, params["means"].device)
        radii = project(params["means"], params["quats"], params["scales"], opacities, viewmat,
                        K, cam.width, cam.height, eps2d=EPS2D, near=NEAR_PLANE)[3]
        seen |= (radii > 0).any(dim=-1)
    keep = renderable & seen
    if not bool(keep.any()):
        keep = renderable if bool(renderable.any()) else torch.ones_like(keep)
    for k in NAMES:
        params[k] = params[k][keep]
    return {"unrenderable": int((~renderable).sum()), "unseen": int((renderable & ~seen).sum()),
            "after": int(keep.sum())}


# ---------------------------------------------------------------------------------------------
# command line


def _inside_repository(path: Path) -> bool:
    try:
        path.resolve().relative_to(ROOT)
        return True
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="any scene gscodec.api.load_scene reads")
    ap.add_argument("out", help="output .ply (the JSON sidecar goes beside it)")
    d = DistillConfig()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=d.iters)
    ap.add_argument("--size", type=int, default=d.size, help="training/eval image side, px")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--strategy", choices=("auto", "gsplat", "builtin"), default="auto")
    ap.add_argument("--max-gaussians", type=int, default=d.max_gaussians)
    ap.add_argument("--init-gaussians", type=int, default=None)
    ap.add_argument("--views", type=int, default=d.views, help="cached training views")
    ap.add_argument("--eval-views", type=int, default=d.eval_views)
    ap.add_argument("--sh-every", type=int, default=None)
    ap.add_argument("--refine-every", type=int, default=None)
    ap.add_argument("--refine-start", type=int, default=None)
    ap.add_argument("--refine-stop", type=int, default=None)
    ap.add_argument("--grow-grad2d", type=float, default=d.grow_grad2d)
    ap.add_argument("--reset-every", type=int, default=d.reset_every)
    ap.add_argument("--background", choices=("random", "black"), default=d.background)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--log-every", type=int, default=d.log_every)
    ap.add_argument("--force", action="store_true", help="overwrite OUT and its JSON")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    from gscodec.formats.errors import GscodecError

    try:
        return _run(args, ap)
    except (GscodecError, ValueError, RuntimeError) as e:  # one line, no traceback
        print(f"distill: error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    from gscodec.formats.atomic import atomic_write, check_output_path

    out = Path(args.out)
    sidecar = out.with_suffix(".json")
    if _inside_repository(out):
        ap.error(f"refusing to write {out} inside the repository {ROOT}: scenes made from "
                 "shared data must never be committed; write under /tmp or elsewhere")
    if Path(args.source).resolve() == out.resolve():
        ap.error("the output would overwrite the source")
    check_output_path(out, force=args.force)
    check_output_path(sidecar, force=args.force)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = DistillConfig(
        iters=args.iters, size=args.size, views=args.views, eval_views=args.eval_views,
        init_gaussians=args.init_gaussians, max_gaussians=args.max_gaussians,
        sh_every=args.sh_every, refine_every=args.refine_every, refine_start=args.refine_start,
        refine_stop=args.refine_stop, grow_grad2d=args.grow_grad2d,
        reset_every=args.reset_every, background=args.background, log_every=args.log_every)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    source = gscodec.api.load_scene(args.source)
    result = distill(source, cfg, seed=args.seed, device=args.device, strategy=args.strategy,
                     progress=say)
    gscodec.write_ply(out, result.gaussians, force=args.force)
    report = {
        "source": str(args.source),
        "source_gaussians": source.n,
        "source_sh_degree": source.sh_degree,
        "out": str(out),
        "seed": args.seed,
        "iters": cfg.iters,
        "size": cfg.size,
        "gaussians": result.gaussians.n,
        "init_gaussians": result.init_gaussians,
        "psnr": result.psnr,
        "psnr_init": result.psnr_init,
        "eval_views": cfg.eval_views,
        "eval": "mean PSNR vs the source, black background, held-out random encoder-family "
                "views (another draw than the training views)",
        "wall_seconds": round(result.seconds, 2),
        "seconds_per_iter": round(result.seconds_per_iter, 4),
        "device": result.device,
        "strategy": result.strategy,
        "threads": torch.get_num_threads(),
        "scene_scale": result.scene_scale,
        "refinements": result.refinements,
        "final_prune": result.final_prune,
        "final_loss": float(np.mean(result.losses[-cfg.log_every:])),
        "config": asdict(cfg.resolved()),
        "torch": torch.__version__,
        "gscodec": gscodec.__version__,
    }
    text = (json.dumps(report, indent=1) + "\n").encode()
    atomic_write(sidecar, lambda f: f.write(text), force=args.force)
    say(f"wrote {out} ({result.gaussians.n} Gaussians, PSNR {result.psnr:.2f} dB) and {sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
