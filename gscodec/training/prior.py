"""Train the restoration network on pairs rendered from scenes (see :mod:`.data`).

    python -m gscodec.training.prior --data SCENE_DIR --out weights.pt [--steps 3000]
        [--crop 128] [--batch 8] [--lr 1e-3] [--time-limit SECONDS] [--train a,b,c]
        [--val plant,playbot] [--views 12] [--val-views 6] [--size 256] [--qualities 1-5]
        [--cache DIR] [--jobs 2] [--report report.json] [--gen-only]
        [--init weights.pt] [--time-inference] [--device auto|cpu|cuda]

Every scene file in ``--data`` (``.ply``, ``.splat``, ``.spz``, ``.sog``) trains except the
validation scenes (``--val``, default massa, playbot and cat, which are only rendered at the
encoder views from direction 64 on, never the evaluation views), ``--exclude`` and the
scenes whose licence forbids it (:data:`RESTRICTED`, refused even when ``--train`` names them).
Pairs are cached in ``--cache`` (one ``.npz`` per scene and settings), so a rerun only trains.
Each sample is shown with its coarse residual or, with probability ``1 - --p-residual``,
without (flag 0).
Loss: ``(1 - w) * L1 + w * (1 - SSIM)`` of restored vs original render, both terms in grey
levels (divided by 1/255); ``w = --ssim-weight`` (0.2).
``--keep-best`` keeps the weights of the validation with the highest mean gain of the
restored render (with residual) over the bilinear target, instead of the last ones.
Validation (``--val-every`` steps and at the end) reports, per scene and preset, the mean PSNR
over views of the decoded render, of decoded + bilinear residual (the side-information target
without the prior), and of the network's output with and without the residual.
With CUDA (``--device auto``, the default, or ``cuda``) the network trains on the GPU and the
pairs are rendered with gsplat; the cache does not tell the renderers apart (same views, renders
that agree to within the renderers' agreement), and the weights are written for the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..formats.atomic import atomic_write_bytes
from ..restore.model import (
    UNIT,
    RestoreConfig,
    RestoreNet,
    compose,
    least_squares_gain,
    make_input,
    make_input_flagged,
    parameter_count,
    upsample,
)
from ..restore.pretrained import load_weights, save_weights
from .pairs import PairSpec, load_or_make


def default_cache() -> Path:
    """Where pairs are cached without ``--cache``: ``$XDG_CACHE_HOME/gscodec/restore-pairs``
    (``~/.cache/...``), the user's own folder, not a predictable shared one under /tmp where
    another user could plant pairs for the training to read."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "gscodec" / "restore-pairs"

SCENE_SUFFIXES = (".ply", ".splat", ".spz", ".sog")  # the shared data's .splat files are 3.2 MB,
# their .ply conversions 5.6 MB: what a GPU lease can carry matters
VALIDATION = ("massa", "playbot", "cat")  # two captures and an object, never trained on
# Scenes of ../shared/data whose licence forbids training shipped weights on them (MANIFEST.md):
# never in the training set, whatever --train says.
RESTRICTED = {
    "biker": "CC BY-NC-ND 4.0 (no derivatives)",
    "seal": "a Luma AI capture: third-party terms, benchmarks only",
    "brucewick": "CC-BY-NC-4.0", "cow": "CC-BY-NC-4.0", "mushroom": "CC-BY-NC-4.0",
    "falconstatue": "CC-BY-NC-SA-4.0",
}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


class Sampler:
    """Random training crops from cached pairs (numpy ``[N, H, W, 3]`` arrays per scene)."""

    def __init__(self, sets: list[dict[str, np.ndarray]], crop: int, seed: int = 0,
                 p_residual: float = 0.5):
        self.sets = sets
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.p_residual = p_residual
        for s in sets:
            if min(s["decoded"].shape[1:3]) < crop:
                raise ValueError(f"crop {crop} is larger than the renders")

    def _one(self) -> tuple[torch.Tensor, ...]:
        s = self.sets[self.rng.integers(len(self.sets))]
        i = int(self.rng.integers(len(s["decoded"])))
        dec = torch.from_numpy(s["decoded"][i]).permute(2, 0, 1)
        orig = torch.from_numpy(s["original"][i]).permute(2, 0, 1)
        H, W = dec.shape[1:]
        res = upsample(torch.from_numpy(s["residual"][i]).permute(2, 0, 1)[None], H, W)[0]
        res = res / UNIT
        c = self.crop
        for _ in range(4):  # prefer crops that show some of the object
            y, x = int(self.rng.integers(H - c + 1)), int(self.rng.integers(W - c + 1))
            if float((orig[:, y:y + c, x:x + c].amax(0) > 1 / 255).float().mean()) > 0.1:
                break
        crops = [t[:, y:y + c, x:x + c] for t in (dec, orig, res)]
        k, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
        crops = [torch.rot90(t, k, (1, 2)) for t in crops]
        if flip:
            crops = [t.flip(2) for t in crops]
        flag = float(self.rng.random() < self.p_residual)
        return (*crops, torch.tensor(flag), torch.tensor(float(s["quality"][i])))

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Network input ``[n, 8, c, c]`` and original crops ``[n, 3, c, c]``."""
        items = [self._one() for _ in range(n)]
        dec, orig, res, flag, q = (torch.stack([it[j] for it in items]) for j in range(5))
        return make_input_flagged(dec.contiguous(), res.contiguous(), flag, q), orig.contiguous()


def loss_fn(restored: torch.Tensor, original: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """``(1 - w) * L1 + w * (1 - SSIM)``, in grey levels (both terms divided by 1/255)."""
    from pytorch_msssim import ssim

    l1 = (restored - original).abs().mean() / UNIT
    if ssim_weight <= 0:
        return l1
    d = 1 - ssim(restored.clamp(0, 1), original, data_range=1.0, win_size=7)
    return (1 - ssim_weight) * l1 + ssim_weight * d / UNIT


@torch.no_grad()
def evaluate(model: RestoreNet, sets: dict[str, dict[str, np.ndarray]],
             batch: int = 4) -> list[dict[str, Any]]:
    """Per scene and preset: mean PSNR (dB) over the views of the decoded render, decoded +
    bilinear residual, network without and with the residual, all against the original (on
    the model's device)."""
    model.eval()
    dev = _device_of(model)
    rows = []
    for name, s in sets.items():
        for q in sorted(set(int(v) for v in s["quality"])):
            idx = np.flatnonzero(s["quality"] == q)
            acc: dict[str, list[float]] = {"decoded": [], "bilinear": [], "prior": [],
                                           "prior_residual": []}
            for j in range(0, len(idx), batch):
                sel = idx[j:j + batch]
                dec, orig, res = (torch.from_numpy(s[k][sel]).permute(0, 3, 1, 2).to(dev)
                                  for k in ("decoded", "original", "residual"))
                x0 = make_input(dec, None, q)
                x1 = make_input(dec, res, q)
                outs = {"decoded": dec, "bilinear": compose(x1, torch.zeros_like(dec)),
                        "prior": model.restore(x0), "prior_residual": model.restore(x1)}
                for k, v in outs.items():
                    acc[k] += [_psnr(v[b], orig[b]) for b in range(len(sel))]
            m = {k: float(np.mean(v)) for k, v in acc.items()}
            rows.append({"scene": name, "quality": q, "views": len(idx),
                         **{f"psnr_{k}": v for k, v in m.items()},
                         "gain_prior": m["prior"] - m["decoded"],
                         "gain_bilinear": m["bilinear"] - m["decoded"],
                         "gain_prior_residual": m["prior_residual"] - m["decoded"],
                         "gain_prior_over_bilinear": m["prior_residual"] - m["bilinear"]})
    return rows


@torch.no_grad()
def calibrate(model: RestoreNet, sets: list[dict[str, np.ndarray]], per_preset: int = 24,
              seed: int = 1, batch: int = 4) -> dict[str, float]:
    """Set ``model.gain[flag, preset]`` to the least-squares optimal scale of the correction,
    clipped to [0, 1], on up to ``per_preset`` random pairs per preset from ``sets`` (training
    pairs), with and without residual; presets without pairs get 0 (no correction). Returns the
    gains as ``{"f<flag>q<preset>": gain}``."""
    model.eval()
    dev = _device_of(model)
    rng = np.random.default_rng(seed)
    pool = [(k, i) for k, s in enumerate(sets) for i in range(len(s["decoded"]))]
    by_q: dict[int, list[tuple[int, int]]] = {}
    for k, i in pool:
        by_q.setdefault(int(sets[k]["quality"][i]), []).append((k, i))
    model.gain.fill_(1.0)
    gains = torch.zeros_like(model.gain)  # presets without pairs: no correction
    out = {}
    for q, items in sorted(by_q.items()):
        pick = [items[j] for j in rng.permutation(len(items))[:per_preset]]
        for flag in (0, 1):
            num = den = 0.0
            for j in range(0, len(pick), batch):
                chunk = pick[j:j + batch]
                dec = torch.stack([torch.from_numpy(sets[k]["decoded"][i]) for k, i in chunk])
                orig = torch.stack([torch.from_numpy(sets[k]["original"][i]) for k, i in chunk])
                res = torch.stack([torch.from_numpy(sets[k]["residual"][i]) for k, i in chunk])
                dec, orig, res = (t.permute(0, 3, 1, 2).to(dev) for t in (dec, orig, res))
                x = make_input(dec, res if flag else None, q)
                h, w = x.shape[-2:]
                xp = F.pad(x, (0, (-w) % 8, 0, (-h) % 8), mode="reflect")
                c = model(xp)[..., :h, :w]
                e = (orig - compose(x, torch.zeros_like(c))) / UNIT
                num += float((c * e).sum())
                den += float((c * c).sum())
            g = least_squares_gain(num, den)
            gains[flag, q] = g
            out[f"f{flag}q{q}"] = g
    model.gain.copy_(gains)
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = ["| scene | preset | decoded | + prior (no residual) | + bilinear residual | "
             "+ residual + prior |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['quality']} | {r['psnr_decoded']:.2f} | "
                     f"{r['gain_prior']:+.3f} | {r['gain_bilinear']:+.3f} | "
                     f"{r['gain_prior_residual']:+.3f} |")
    return "\n".join(lines)


def train(model: RestoreNet, sampler: Sampler, *, steps: int, batch: int = 8, lr: float = 1e-3,
          ssim_weight: float = 0.2, time_limit: float | None = None,
          val: dict[str, dict[str, np.ndarray]] | None = None, val_every: int = 0,
          log=_log, on_validate=None) -> dict[str, Any]:
    """Adam with a cosine schedule (over ``steps``, or over ``time_limit`` seconds when that
    comes first), gradient clipping at 1. Returns the loss history and validations.
    ``on_validate(steps_done, rows)`` is called after each validation (e.g. to save a
    checkpoint)."""
    model.gain.fill_(1.0)  # calibrated gains (from --init weights) would mute some gradients
    dev = _device_of(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    t0 = time.perf_counter()
    history: list[float] = []
    validations = []
    done = 0
    for it in range(steps):
        elapsed = time.perf_counter() - t0
        frac = it / steps
        if time_limit:
            frac = max(frac, elapsed / time_limit)
            if frac >= 1:
                break
        for g in opt.param_groups:
            g["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        model.train()
        x, orig = (t.to(dev, non_blocking=True) for t in sampler.batch(batch))
        restored = compose(x, model(x))
        loss = loss_fn(restored, orig, ssim_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(float(loss.detach()))
        done = it + 1
        if done % 50 == 0:
            log(f"step {done}: loss {np.mean(history[-50:]):.4f} (grey levels), "
                f"{time.perf_counter() - t0:.0f} s")
        if val and val_every and done % val_every == 0:
            rows = evaluate(model, val)
            validations.append({"step": done, "rows": rows})
            log(f"validation at step {done}:\n{format_rows(rows)}")
            if on_validate:
                on_validate(done, rows)
    model.eval()
    return {"steps": done, "seconds": time.perf_counter() - t0, "losses": history,
            "validations": validations}


def time_inference(model: RestoreNet, size: int = 512, repeats: int = 5) -> float:
    """Median seconds of one restoration of a ``size`` x ``size`` view (with residual)."""
    dev = _device_of(model)
    x = make_input(torch.rand(1, 3, size, size), torch.zeros(1, 3, size // 4, size // 4), 3)
    x = x.to(dev)
    model.eval()
    times = []
    with torch.inference_mode():
        model.restore(x)
        for _ in range(repeats):
            _sync(dev)
            t = time.perf_counter()
            model.restore(x)
            _sync(dev)
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def _parse_list(s: str) -> list[str]:
    return [x for x in s.split(",") if x]


def _parse_qualities(s: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += range(int(a), int(b) + 1)
        elif part:
            out.append(int(part))
    return tuple(out)


def _make_one(args: tuple[str, PairSpec, str, str]) -> str:
    ply, spec, cache, backend = args
    torch.set_num_threads(1)
    load_or_make(Path(ply), spec, Path(cache), backend=backend, log=_log)
    return Path(ply).stem


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True,
                    help="folder of scene files (.ply, .splat, .spz or .sog; named by stem)")
    ap.add_argument("--out", type=Path, help="weights file to write")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--time-limit", type=float, default=None, help="stop after these seconds")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ssim-weight", type=float, default=0.2)
    ap.add_argument("--train", type=_parse_list, default=None, help="scene names (default: all)")
    ap.add_argument("--exclude", type=_parse_list, default=[])
    ap.add_argument("--val", type=_parse_list, default=list(VALIDATION))
    ap.add_argument("--views", type=int, default=12, help="random views per training scene")
    ap.add_argument("--val-views", type=int, default=6)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--qualities", type=_parse_qualities, default=(1, 2, 3, 4, 5))
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder of cached pairs (default: ~/.cache/gscodec/restore-pairs)")
    ap.add_argument("--jobs", type=int, default=1, help="processes making pairs")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="where to train ('auto': CUDA when available); with CUDA the pairs "
                         "are rendered with gsplat")
    ap.add_argument("--val-every", type=int, default=1000,
                    help="validate (and save the weights so far) every N steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", type=lambda s: tuple(int(x) for x in s.split(",")),
                    default=RestoreConfig().widths)
    ap.add_argument("--blocks", type=lambda s: tuple(int(x) for x in s.split(",")),
                    default=RestoreConfig().blocks)
    ap.add_argument("--zero-mean-block", type=int, default=RestoreConfig().zero_mean_block,
                    help="project the correction to zero mean over these pixel blocks (the "
                         "side information's scale; 0: no projection)")
    ap.add_argument("--p-residual", type=float, default=0.5,
                    help="share of training samples shown with their residual")
    ap.add_argument("--init", type=Path, default=None, help="start from these weights")
    ap.add_argument("--report", type=Path, default=None, help="JSON report to write")
    ap.add_argument("--keep-best", action="store_true",
                    help="keep the weights of the best validation (mean gain over the bilinear "
                         "target, with residual) instead of the last ones")
    ap.add_argument("--skip-initial-validation", action="store_true",
                    help="do not validate the untrained network (it equals the bilinear target)")
    ap.add_argument("--gen-only", action="store_true", help="make the cached pairs and stop")
    ap.add_argument("--time-inference", action="store_true",
                    help="print the time of one 512x512 restoration and stop")
    return ap


def _scenes(ap: argparse.ArgumentParser, args: argparse.Namespace
            ) -> tuple[dict[str, Path], list[str]]:
    """The scene files of ``--data`` by name, and the training scenes' names."""
    if not args.data.is_dir():
        ap.error(f"--data {args.data} is not a folder")
    names: dict[str, Path] = {}
    for p in sorted(args.data.iterdir()):
        if p.suffix.lower() in SCENE_SUFFIXES and p.is_file():
            if p.stem in names:
                ap.error(f"two scenes named {p.stem} in {args.data}: {names[p.stem].name}, "
                         f"{p.name}")
            names[p.stem] = p
    for v in args.val:
        if v not in names:
            ap.error(f"validation scene {v} is not in {args.data}")
    train_names = args.train if args.train is not None else \
        [n for n in names if n not in args.val and n not in args.exclude and n not in RESTRICTED]
    banned = [f"{n} ({RESTRICTED[n]})" for n in train_names if n in RESTRICTED]
    if banned:
        ap.error(f"these scenes' licences forbid training on them: {', '.join(banned)}")
    overlap = set(train_names) & set(args.val)
    if overlap:
        ap.error(f"scenes both in training and validation: {sorted(overlap)}")
    missing = [n for n in train_names if n not in names]
    if missing or not train_names:
        ap.error(f"no training scenes, or not in {args.data}: {missing}")
    return names, train_names


def _pairs(names: dict[str, Path], train_names: list[str], val_names: list[str],
           train_spec: PairSpec, val_spec: PairSpec, args: argparse.Namespace, backend: str
           ) -> tuple[list[dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]], float]:
    """Training and validation pairs (made where not cached) and the seconds that took."""
    if args.cache is None:
        args.cache = default_cache()
        args.cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    jobs = [(str(names[n]), train_spec, str(args.cache), backend) for n in train_names] + \
           [(str(names[n]), val_spec, str(args.cache), backend) for n in val_names]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) \
                as pool:
            for name in pool.map(_make_one, jobs):
                _log(f"pairs ready: {name}")
    train_sets = [load_or_make(names[n], train_spec, args.cache, backend=backend, log=_log)
                  for n in train_names]
    val_sets = {n: load_or_make(names[n], val_spec, args.cache, backend=backend, log=_log)
                for n in val_names}
    gen_s = time.perf_counter() - t0
    return train_sets, val_sets, gen_s


def _device_and_model(ap: argparse.ArgumentParser, args: argparse.Namespace
                      ) -> tuple[torch.device, RestoreNet]:
    """The training device and the network on it (new, or ``--init``'s weights)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    device = torch.device("cuda" if args.device == "cuda" or
                          (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    if args.init:
        model, _ = load_weights(args.init)
    else:
        model = RestoreNet(RestoreConfig(args.widths, args.blocks, args.zero_mean_block))
    model.to(device)
    return device, model


class Checkpoints:
    """The ``on_validate`` of :func:`train`: the weights saved to ``out`` at each validation
    (``meta(steps, seconds)`` their metadata); with ``keep_best`` only where the validation's
    mean gain over the bilinear target (with residual) is the best so far, and a copy of
    those weights kept for :meth:`finish`."""

    def __init__(self, out: Path, model: RestoreNet, meta: Any, keep_best: bool):
        self.out, self.model, self.meta, self.keep_best = out, model, meta, keep_best
        self.t0 = time.perf_counter()
        self.best: dict[str, Any] = {}

    def __call__(self, steps: int, rows: list[dict[str, Any]]) -> None:
        seconds = time.perf_counter() - self.t0
        if self.keep_best:
            score = float(np.mean([r["gain_prior_over_bilinear"] for r in rows]))
            if self.best and score <= self.best["score"]:
                return
            self.best = {"score": score, "step": steps, "seconds": seconds, "state": {
                k: v.detach().clone() for k, v in self.model.state_dict().items()}}
            _log(f"best validation so far: step {steps}, mean gain over bilinear "
                 f"{score:+.3f} dB")
        save_weights(self.out, self.model, self.meta(steps, seconds))

    def finish(self, result: dict[str, Any], val: dict[str, dict[str, np.ndarray]]
               ) -> tuple[int, float]:
        """The step and training seconds of the weights now in the model: the last ones, or
        with ``keep_best`` the best validation's (the last weights validated too), loaded."""
        if not (self.keep_best and val):
            return result["steps"], result["seconds"]
        if not result["validations"] or result["validations"][-1]["step"] != result["steps"]:
            self(result["steps"], evaluate(self.model, val))
        self.model.load_state_dict(self.best["state"])
        _log(f"kept the weights of step {self.best['step']} (mean gain over bilinear "
             f"{self.best['score']:+.3f} dB)")
        return self.best["step"], self.best["seconds"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = _parser()
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device, model = _device_and_model(ap, args)
    backend = "auto" if device.type == "cuda" else "cpu"
    if args.time_inference:
        s = time_inference(model)
        print(json.dumps({"seconds_512": s, "threads": torch.get_num_threads(),
                          "device": str(device),
                          "parameters": parameter_count(model)}))
        return {"seconds_512": s}

    names, train_names = _scenes(ap, args)
    train_spec = PairSpec(qualities=args.qualities, views=args.views, size=args.size,
                          seed=args.seed, kind="random")
    val_spec = PairSpec(qualities=args.qualities, views=args.val_views, size=args.size,
                        kind="fixed")
    train_sets, val_sets, gen_s = _pairs(names, train_names, args.val, train_spec, val_spec,
                                         args, backend)
    n_pairs = sum(len(s["decoded"]) for s in train_sets)
    _log(f"{n_pairs} training pairs from {len(train_sets)} scenes, "
         f"{sum(len(s['decoded']) for s in val_sets.values())} validation pairs ({gen_s:.0f} s)")
    if args.gen_only:
        return {"pairs": n_pairs}
    if args.out is None:
        ap.error("--out is required unless --gen-only or --time-inference")

    base_rows = [] if args.skip_initial_validation else evaluate(model, val_sets)
    if base_rows:
        _log("validation before training:\n" + format_rows(base_rows))
    if not 0 <= args.p_residual <= 1:
        ap.error("--p-residual must be in [0, 1]")
    sampler = Sampler(train_sets, args.crop, seed=args.seed, p_residual=args.p_residual)

    def meta(steps: int, seconds: float) -> dict[str, Any]:
        return {"train_scenes": ",".join(train_names), "val_scenes": ",".join(args.val),
                "steps": steps, "seconds": round(seconds, 1),
                "crop": args.crop, "batch": args.batch, "lr": args.lr,
                "ssim_weight": args.ssim_weight, "pairs": n_pairs,
                "p_residual": args.p_residual,
                "qualities": list(args.qualities), "residual_scale": train_spec.scale,
                "residual_step": train_spec.step, "render_size": args.size,
                "parameters": parameter_count(model)}

    saver = Checkpoints(args.out, model, meta, args.keep_best)
    result = train(model, sampler, steps=args.steps, batch=args.batch, lr=args.lr,
                   ssim_weight=args.ssim_weight, time_limit=args.time_limit, val=val_sets,
                   val_every=args.val_every, on_validate=saver)
    kept, seconds = saver.finish(result, val_sets)
    gains = calibrate(model, train_sets)
    _log(f"correction gains (flag, preset) calibrated on training pairs: {gains}")
    final_meta = meta(kept, seconds)
    final_meta["steps_trained"] = result["steps"]
    digest = save_weights(args.out, model, final_meta)
    rows = evaluate(model, val_sets)
    _log(f"validation of the weights of step {kept} ({result['steps']} steps trained, "
         f"{result['seconds']:.0f} s):\n"
         + format_rows(rows))
    _log(f"wrote {args.out} (sha256 {digest})")
    report = {"meta": final_meta, "sha256": digest,
              "train_spec": train_spec.__dict__, "val_spec": val_spec.__dict__,
              "pair_seconds": gen_s, "validation": rows, "gains": gains,
              "validation_before": base_rows, "validations": result["validations"],
              "losses_every_50": [float(np.mean(result["losses"][i:i + 50]))
                                  for i in range(0, len(result["losses"]), 50)],
              "torch_threads": torch.get_num_threads(), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.report, json.dumps(report, indent=1, default=list).encode(),
                           force=True)
    return report


if __name__ == "__main__":
    main()
