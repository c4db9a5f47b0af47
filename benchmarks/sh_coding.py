"""SH-rest coding for full-precision scenes: which coder wins per byte at equal PSNR (issue 16).

    python3 benchmarks/sh_coding.py SCENE.ply [SCENE.ply ...] [--split tuning] [--views 6]
        [--sizes 512] [--base 5] [--variants uniform,banded,...]
        [--scales 0.02,0.03,...] [--vq-sizes 64,256,...] [--trunc 0.5,0.75] [--name sh-coding]

For each scene the SH bands 1-3 (the 45 "rest" coefficients of SH 3) are coded by each
candidate at a ladder of rates, the other attributes held exact, and the scene is rendered at
the split's evaluation views with only its SH rest replaced by the decoded values: PSNR against
the original's renders (the error the SH coding alone causes) against the SH stream's bytes
(plus, for the transforms and the codebook, the bytes of their side tables, float16 and zstd).
Every candidate codes its integers with the codec's own context-modelled channel coder
(``gscodec.codec.attributes.encode_matrix``, palette off: the palette mode must not be the
reason a scene looks good), in Morton order, with the features the real encoder gives the SH
stream (density from the positions, opacity), so differences come from the representation:

- ``uniform``: today's coder, one step for all bands (``s``);
- ``banded``: today's coder with the presets' band ratios (steps ``s``, 4/3 s, 5/3 s);
- ``deadzone``: as ``banded``, but the encoder rounds towards zero where the remainder is
  below 0.5 + 0.2 steps (the decoder is today's: an encoder-only change);
- ``klt``: a per-scene KLT (PCA) of the 45-vector of each Gaussian (coefficient x colour),
  components in decreasing variance with one step ``s``, 45 x 45 basis + mean sent;
- ``kltc``: as ``klt`` on the covariance (the mean subtracted and sent);
- ``sklt``: separable KLT: a 3 x 3 colour transform, then per colour component a 15 x 15 one;
- ``vq``: a k-means codebook of K 45-vectors (Lloyd, seeded, on up to 65,536 rows), one index
  per Gaussian (by frequency), codebook sent;
- ``trunc``: ``banded`` after zeroing the SH rest of the fraction F of Gaussians whose view
  dependence changes the encoder views' renders least (first-order cost of zeroing their rest,
  Hutchinson as :func:`gscodec.importance.removal_costs`, 16 encoder views of 256 px);
  ``klt-truncF``: ``klt`` after the same zeroing;
- ``classes``, ``klt-classes``: ``banded`` and ``klt`` with the encoder's importance classes
  and per-class steps (``gscodec.codec.adaptive``; the format allows them for the SH rest,
  the encoder does not use them there today).

The importance classes (per-class steps at presets 1-5) are off but in the ``*classes``
candidates. BD-rate of each candidate against ``banded`` (today's default
shape) over the PSNR range both cover.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zstandard

import gscodec
from gscodec.cameras import encoder_views
from gscodec.codec.attributes import (
    REGISTRY,
    _encode_values,
    _sh_rest_spec,
    encode_matrix,
    morton_order,
)
from gscodec.codec.channels import GroupSpec
from gscodec.codec.quality import preset
from gscodec.render import render, resolve_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluation as ev  # noqa: E402
from common import report_header, write_report  # noqa: E402
from presets import bd_rate  # noqa: E402

BANDS = np.array([1] * 3 + [2] * 5 + [3] * 7)
BAND_RATIO = (1.0, 4 / 3, 5 / 3)
FEATURES = ("opa", "dens")


def _table_bytes(*arrays: np.ndarray) -> int:
    raw = b"".join(np.asarray(a, np.float16).tobytes() for a in arrays)
    return len(zstandard.ZstdCompressor(level=19).compress(raw))


def _code(X: np.ndarray, spec: GroupSpec, features: dict[str, np.ndarray]) -> int:
    payload, _ = encode_matrix(np.ascontiguousarray(X.astype(np.int32)), spec, features)
    return len(payload)


def _scalar(rest: np.ndarray, steps: np.ndarray, features: dict[str, np.ndarray],
            deadzone: float = 0.0) -> tuple[np.ndarray, int]:
    """Today's representation: coefficient j colour c is channel 3j + c, step per channel."""
    n, k, _ = rest.shape
    flat = rest.reshape(n, 3 * k) / np.repeat(steps, 3)[None, :]
    q = np.sign(flat) * np.floor(np.abs(flat) + 0.5 - deadzone)
    size = _code(q.T, _sh_rest_spec(k), features)
    return (q * np.repeat(steps, 3)[None, :]).reshape(n, k, 3), size


def _classed(flat: np.ndarray, steps: np.ndarray, spec: GroupSpec, features: dict[str, np.ndarray],
             imp: tuple[np.ndarray, tuple[float, list[int]]]) -> tuple[np.ndarray, int]:
    """``flat [n, C]`` with the importance classes' per-class steps, as the codec codes them:
    unit ``steps * factor``, class c ``unit * mults[c]``; the values back and the bytes."""
    classes, (factor, mults) = imp
    unit = steps * factor
    payload, _, U = _encode_values(flat, unit, 0.0, mults, spec, {**features, "imp": classes},
                                   units=True)
    return U.T * unit[None, :], len(payload)


def _transform_spec(c: int) -> GroupSpec:
    # decorrelated channels: no linear predictor from earlier ones, but the magnitude of the
    # previous component is a candidate context
    return GroupSpec(tuple(() for _ in range(c)), tuple(((i - 1,) if i else ()) for i in range(c)),
                     True, FEATURES, use_act=True)


def _klt(rest: np.ndarray, step: float, features: dict[str, np.ndarray], centred: bool = False,
         imp: tuple[np.ndarray, tuple[float, list[int]]] | None = None) -> tuple[np.ndarray, int]:
    """The KLT of the second-moment matrix (``centred``: of the covariance, mean sent): without
    the mean a Gaussian whose rest is zero stays all zeros. ``imp``: per-class steps."""
    n, k, _ = rest.shape
    X = rest.reshape(n, 3 * k).astype(np.float64)
    mu = X.mean(axis=0) if centred else np.zeros(3 * k)
    w, B = np.linalg.eigh((X - mu).T @ (X - mu) / n)
    B = B[:, np.argsort(-w)]
    B16, mu16 = B.astype(np.float16).astype(np.float64), mu.astype(np.float16).astype(np.float64)
    Y = (X - mu16) @ np.linalg.inv(B16).T
    tables = (B16, mu16) if centred else (B16,)
    if imp is not None:
        Yh, size = _classed(Y, np.full(3 * k, step), _transform_spec(3 * k), features, imp)
    else:
        q = np.rint(Y / step)
        Yh, size = q * step, _code(q.T, _transform_spec(3 * k), features)
    return (Yh @ B16.T + mu16).reshape(n, k, 3), size + _table_bytes(*tables)


def _sklt(rest: np.ndarray, step: float, features: dict[str, np.ndarray]
          ) -> tuple[np.ndarray, int]:
    n, k, _ = rest.shape
    X = rest.astype(np.float64)
    w, C = np.linalg.eigh(np.einsum("nkc,nkd->cd", X, X) / (n * k))
    C16 = C[:, np.argsort(-w)].astype(np.float16).astype(np.float64)
    Y = X @ np.linalg.inv(C16).T  # [n, k, 3]: colour components
    parts, tables, Bs = [], [C16], []
    for c in range(3):
        w, B = np.linalg.eigh(Y[:, :, c].T @ Y[:, :, c] / n)
        B16 = B[:, np.argsort(-w)].astype(np.float16).astype(np.float64)
        parts.append(np.rint(Y[:, :, c] @ np.linalg.inv(B16).T / step))
        tables.append(B16)
        Bs.append(B16)
    q = np.stack(parts, axis=2)  # [n, k, 3]
    size = _code(q.reshape(n, 3 * k).T, _transform_spec(3 * k), features) + _table_bytes(*tables)
    Yh = np.stack([(q[:, :, c] * step) @ Bs[c].T for c in range(3)], axis=2)
    return Yh @ C16.T, size


def _kmeans(X: torch.Tensor, k: int, seed: int = 0, iters: int = 15) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    sample = X[torch.randperm(X.shape[0], generator=gen)[:65536]]
    cent = sample[torch.randperm(sample.shape[0], generator=gen)[:k]].clone()
    for _ in range(iters):
        a = _assign(sample, cent)
        sums = torch.zeros_like(cent).index_add_(0, a, sample)
        counts = torch.bincount(a, minlength=cent.shape[0]).to(X)[:, None]
        cent = torch.where(counts > 0, sums / counts.clamp(min=1), cent)
    return cent


def _assign(X: torch.Tensor, cent: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.cdist(X[a : a + 16384], cent).argmin(dim=1)
                      for a in range(0, X.shape[0], 16384)])


def _vq(rest: np.ndarray, k: int, features: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    n, kc, _ = rest.shape
    X = torch.from_numpy(rest.reshape(n, 3 * kc).astype(np.float32))
    cent = _kmeans(X, min(k, n)).numpy().astype(np.float16).astype(np.float32)
    a = _assign(X, torch.from_numpy(cent)).numpy()
    by_freq = np.argsort(-np.bincount(a, minlength=cent.shape[0]), kind="stable")
    rank = np.empty_like(by_freq)
    rank[by_freq] = np.arange(by_freq.size)
    size = _code(rank[a][None, :], GroupSpec(((),), ((),), True, FEATURES), features)
    size += _table_bytes(cent)
    return cent[a].reshape(n, kc, 3).astype(np.float64), size


def zeroing_costs(g: gscodec.Gaussians, count: int = 16, size: int = 256) -> np.ndarray:
    """``[N]``: first-order squared change of the encoder views' renders if Gaussian i's SH rest
    were zeroed (d image / d m_i at m = 1 for a factor m_i on its rest), Hutchinson-estimated."""
    a = g.as_arrays()
    sh = torch.tensor(np.asarray(a["sh"], np.float32))
    m = torch.ones(g.n, requires_grad=True)
    acc = torch.zeros(g.n, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    for cam in encoder_views(np.asarray(a["means"]), count, size):
        shm = torch.cat([sh[:, :1], sh[:, 1:] * m[:, None, None]], dim=1)
        h = gscodec.Gaussians(torch.tensor(a["means"]), torch.tensor(a["quats"]),
                              torch.tensor(a["log_scales"]), torch.tensor(a["opacity_logits"]), shm)
        image = render(h, cam, backend="cpu").image
        v = torch.randint(0, 2, tuple(image.shape), generator=gen).to(image) * 2 - 1
        (dm,) = torch.autograd.grad((image * v).sum(), [m])
        acc += dm.double() ** 2
    return acc.numpy()


def _features(arrays: dict[str, np.ndarray], order: np.ndarray, base: int
              ) -> dict[str, np.ndarray]:
    params = preset(base)
    features: dict[str, np.ndarray] = {}
    for name in ("means", "opacity_logits"):
        codec = REGISTRY[name]
        features.update(codec.encode(codec.source(arrays)[order], params, features).features)
    return {f: features[f] for f in FEATURES}


def _candidates(args: argparse.Namespace, rest: np.ndarray, feats: dict[str, np.ndarray],
                costs: np.ndarray | None, imp: Any) -> dict[str, list[tuple[Any, np.ndarray, int]]]:
    k = rest.shape[1]
    n = rest.shape[0]
    banded = np.array([BAND_RATIO[b - 1] for b in BANDS[:k]])
    out: dict[str, list[tuple[Any, np.ndarray, int]]] = {}
    for v in args.variants:
        if v == "vq":
            out[v] = [(K, *_vq(rest, K, feats)) for K in args.vq_sizes]
        elif v == "trunc":
            assert costs is not None
            for f in args.trunc:
                kept = rest.copy()
                kept[np.argsort(costs, kind="stable")[: int(f * rest.shape[0])]] = 0
                out[f"trunc{f:g}"] = [(s, *_scalar(kept, s * banded, feats)) for s in args.scales]
                if "klt" in args.variants:
                    out[f"klt-trunc{f:g}"] = [(s, *_klt(kept, s, feats)) for s in args.scales]
        else:
            run = {"uniform": lambda s: _scalar(rest, s * np.ones(k), feats),
                   "banded": lambda s: _scalar(rest, s * banded, feats),
                   "deadzone": lambda s: _scalar(rest, s * banded, feats, 0.2),
                   "klt": lambda s: _klt(rest, s, feats),
                   "kltc": lambda s: _klt(rest, s, feats, centred=True),
                   "sklt": lambda s: _sklt(rest, s, feats),
                   "classes": lambda s: (lambda r: (r[0].reshape(n, k, 3), r[1]))(
                       _classed(rest.reshape(n, 3 * k), np.repeat(s * banded, 3),
                                _sh_rest_spec(k), feats, imp)),
                   "klt-classes": lambda s: _klt(rest, s, feats, imp=imp)}[v]
            out[v] = [(s, *run(s)) for s in args.scales]
        print(f"  {v}: done", file=sys.stderr, flush=True)
    return out


def bench_scene(ply: Path, args: argparse.Namespace, backend: str) -> dict[str, Any]:
    ref = gscodec.read_ply(ply)
    if ref.sh_degree == 0:
        raise SystemExit(f"{ply}: SH degree 0, nothing to code")
    evref = ev.reference(ref, args, backend)
    arrays = {a: np.asarray(x) for a, x in ref.as_arrays().items()}
    order = morton_order(arrays["means"], preset(args.base))
    mix = {a: x[order] for a, x in arrays.items()}
    rest = mix["sh"][:, 1:, :].astype(np.float64)
    costs = zeroing_costs(gscodec.Gaussians.from_arrays(mix)) if "trunc" in args.variants \
        else None
    imp = None
    if any(v.endswith("classes") for v in args.variants):
        # as gscodec.encoder._importance, with the SH rest among the adapted attributes
        from gscodec.codec import adaptive
        from gscodec.encoder import IMPORTANCE_PROBES, IMPORTANCE_SIZE, IMPORTANCE_VIEWS
        from gscodec.importance import sensitivities

        cams = encoder_views(arrays["means"], IMPORTANCE_VIEWS, IMPORTANCE_SIZE)
        sens = sensitivities(gscodec.Gaussians.from_arrays(mix), cams, probes=IMPORTANCE_PROBES,
                             backend=backend)
        classes = adaptive.classes(sens)
        imp = (classes, adaptive.class_steps(sens["sh_rest"], classes, adaptive.DEFAULT_CLASSES))
    cands = _candidates(args, rest, _features(arrays, order, args.base), costs, imp)
    curves: dict[str, list[dict[str, Any]]] = {}
    for name, points in cands.items():
        curves[name] = []
        for setting, rest_hat, size in points:
            sh = mix["sh"].copy()
            sh[:, 1:, :] = rest_hat
            f = ev.fidelity(evref, gscodec.Gaussians.from_arrays({**mix, "sh": sh}), backend)
            curves[name].append({"setting": setting, "bytes": size,
                                 "bits_per_gaussian": 8 * size / ref.n, "psnr": f["psnr"]})
            print(f"  {ply.stem} {name} {setting}: {size:,} B, {f['psnr']:.2f} dB",
                  file=sys.stderr, flush=True)
    base = [(r["psnr"], r["bytes"]) for r in curves.get("banded", [])]
    bd = {n: bd_rate(base, [(r["psnr"], r["bytes"]) for r in c]) if base else None
          for n, c in curves.items()}
    rms = float(np.sqrt((rest ** 2).mean()))
    return {"scene": ev.scene_name(ply), "gaussians": ref.n, "sh_degree": ref.sh_degree,
            "rest_rms": rms, "curves": curves, "bd_rate_vs_banded": bd}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# SH-rest coding ({report['date']})", "", f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}; load average {report['load_average']:.2f}. "
             f"Split {report['split']}: {report['views']} evaluation views of seed "
             f"{report['seed']} at {report['sizes'][0]} px; other attributes exact; palette "
             "off; no importance classes.", ""]
    for s in report["scenes"]:
        lines += [f"## {s['scene']}: {s['gaussians']:,} Gaussians, SH {s['sh_degree']}, "
                  f"SH-rest RMS {s['rest_rms']:.4f}", "",
                  "| candidate | BD-rate vs banded | setting: bits/Gaussian @ dB |",
                  "|---|---:|---|"]
        for name, c in s["curves"].items():
            bd = s["bd_rate_vs_banded"][name]
            pts = ", ".join(f"{r['setting']:g}: {r['bits_per_gaussian']:.2f} @ {r['psnr']:.2f}"
                            for r in c)
            lines.append(f"| {name} | {'' if bd is None else f'{100 * bd:+.1f}%'} | {pts} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ev.add_arguments(ap, views=6)
    ap.add_argument("--base", type=int, default=5, help="preset of the Morton order and features")
    ap.add_argument("--variants", default="uniform,banded,deadzone,klt,kltc,sklt,vq,trunc,"
                    "classes,klt-classes")
    ap.add_argument("--scales", type=_floats,
                    default=_floats("0.01,0.02,0.03,0.05,0.08,0.12,0.2,0.3"))
    ap.add_argument("--vq-sizes", type=lambda t: [int(x) for x in t.split(",")],
                    default=[16, 64, 256, 1024, 4096])
    ap.add_argument("--trunc", type=_floats, default=_floats("0.25,0.5,0.75,0.9"))
    ap.add_argument("--name", default="sh-coding")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    args.variants = args.variants.split(",")
    ev.check_split(args.scenes, args.split)
    torch.set_num_threads(1)
    backend = resolve_backend("auto")
    report = {**report_header("sh_coding.py", argv), "split": args.split, "views": args.views,
              "seed": ev.view_seed(args), "sizes": args.sizes,
              "scenes": [bench_scene(p, args, backend) for p in args.scenes]}
    write_report(args.out, args.name, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
