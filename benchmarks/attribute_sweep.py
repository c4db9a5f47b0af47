"""Per-attribute rate/distortion sweep: how the render error and the stream bytes of each attribute
move with its quantizer step, the others held at a base preset.

    python3 benchmarks/attribute_sweep.py SCENE.ply [--base 5] [--views 6] [--size 512]
                                          [--split tuning] [--seed S]
                                          [--out benchmarks/results] [--name sweep]

For each attribute (positions, log-scales, rotations, opacity, DC colour, each SH band) and each
step of its grid: encode with only that step changed, record the bytes of the attribute's stream,
decode, and render the reference scene with *only that attribute* replaced by its decoded values
(rotations and scales compared in the encoder's canonical form at presets that use it). The
render MSE against the original's renders at the evaluation views is the error that attribute
alone causes. Errors of different attributes roughly add, so a set of steps whose marginal cost
per unit of error is about equal across attributes is close to the best allocation; the presets
1-5 in ``gscodec/codec/quality.py`` were picked that way from runs of this script (plant, SH 0;
playbot, SH 2). The SH bands share one stream: their rows give that stream's bytes with one band
changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

import gscodec
from gscodec.api import encode_with_order, inspect
from gscodec.cameras import evaluation_views
from gscodec.codec.canonical import canonicalize
from gscodec.codec.quality import preset
from gscodec.render import resolve_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, machine, write_report  # noqa: E402
from evaluation import VIEW_SEEDS, check_split, renders, view_seed  # noqa: E402

GRID: dict[str, list[float]] = {
    "position_bits": [10.5, 11, 11.5, 12, 12.5, 13, 13.5, 14, 14.5],
    "log_scale_step": [1 / 3, 1 / 4, 1 / 5, 1 / 6.5, 1 / 8, 1 / 10.5, 1 / 13, 1 / 16, 1 / 20,
                       1 / 25],
    "rotation_step": [0.004, 0.006, 0.008, 0.011, 0.016, 0.022, 0.03, 0.04, 0.06, 0.08],
    "opacity_levels": [12, 16, 24, 32, 48, 64, 85, 128, 255],
    "dc_step": [1.0, 1.45, 2.0, 2.6, 3.3, 4.3, 5.3, 6.5, 8.0, 10.0],
    "sh_band1": [0.03, 0.05, 0.08, 0.12, 0.18, 0.26, 0.4, 0.6],
    "sh_band2": [0.03, 0.05, 0.08, 0.12, 0.18, 0.26, 0.4, 0.6],
    "sh_band3": [0.03, 0.05, 0.08, 0.12, 0.18, 0.26, 0.4, 0.6],
}
STREAM = {"position_bits": "POSN", "log_scale_step": "SCAL", "rotation_step": "ROTN",
          "opacity_levels": "OPAC", "dc_step": "SHDC"}
ATTRIBUTE = {"position_bits": "means", "log_scale_step": "log_scales", "rotation_step": "quats",
             "opacity_levels": "opacity_logits"}
SH_ROWS = {"dc_step": slice(0, 1), "sh_band1": slice(1, 4), "sh_band2": slice(4, 9),
           "sh_band3": slice(9, 16)}


def with_step(base: Any, param: str, value: float) -> Any:
    if param.startswith("sh_band"):
        steps = list(base.sh_rest_steps)
        steps[int(param[-1]) - 1] = value
        return dataclasses.replace(base, sh_rest_steps=tuple(steps))
    return dataclasses.replace(base, **{param: type(getattr(base, param))(value)})


def sweep_scene(ply: Path, args: argparse.Namespace, backend: str) -> dict[str, Any]:
    ref = gscodec.read_ply(ply)
    cams = evaluation_views(ref.means, args.views, args.size, seed=view_seed(args))
    ref_imgs = renders(ref, cams, backend)[0]
    base = preset(args.base)
    params = [p for p in GRID if not (p.startswith("sh_band") and int(p[-1]) > ref.sh_degree)]
    ref_arrays = ref.as_arrays()
    # the canonical form of each Gaussian does not depend on the storage order: compute it once
    canon_quats, canon_scales = canonicalize(ref_arrays["quats"], ref_arrays["log_scales"])
    rows = []
    for param in params:
        for value in GRID[param]:
            p = with_step(base, param, value)
            data, order = encode_with_order(ref, args.base, params=p, importance=False)
            kind = STREAM.get(param, "SHRS")
            stream_bytes = sum(r["bytes"] for r in inspect(data)["streams"] if r["stream"] == kind)
            dec = gscodec.decode(data)
            mix = {a: np.asarray(x)[order] for a, x in ref_arrays.items()}
            got = {a: np.asarray(x) for a, x in dec.as_arrays().items()}
            if p.canonical:
                # the encoder keeps whichever form codes smaller; compare in the form it kept
                s = canon_scales[order]
                if np.abs(s - got["log_scales"]).mean() < np.abs(
                        mix["log_scales"] - got["log_scales"]).mean():
                    mix["quats"], mix["log_scales"] = canon_quats[order], s
            if param in SH_ROWS:
                sh = mix["sh"].copy()
                sh[:, SH_ROWS[param]] = got["sh"][:, SH_ROWS[param]]
                mix["sh"] = sh
            else:
                mix[ATTRIBUTE[param]] = got[ATTRIBUTE[param]]
            imgs = renders(gscodec.Gaussians.from_arrays(mix), cams, backend)[0]
            mse = float(np.mean([((a - b) ** 2).mean().item()
                                 for a, b in zip(ref_imgs, imgs, strict=True)]))
            row = {"param": param, "value": value, "stream": kind, "stream_bytes": stream_bytes,
                   "file_bytes": len(data), "mse": mse}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return {"scene": ply.stem, "gaussians": ref.n, "sh_degree": ref.sh_degree,
            "base": args.base, "base_params": base.as_dict(), "rows": rows}


def _coarseness(param: str, value: float) -> float:
    """log of the step, larger = coarser (bits and levels count the other way)."""
    if param == "position_bits":
        return -value * np.log(2.0)
    if param == "opacity_levels":
        return -float(np.log(value))
    return float(np.log(value))


def _at(points: list[tuple[float, float, float]], x: float) -> tuple[float, float, bool]:
    """(bytes, mse, inside) at coarseness ``x``: bytes linear and log mse linear in x between
    the grid points around it; clamped to the grid's ends (inside False)."""
    xs = [p[0] for p in points]
    if x <= xs[0] or x >= xs[-1]:
        p = points[0] if x <= xs[0] else points[-1]
        return p[1], p[2], xs[0] <= x <= xs[-1]
    j = int(np.searchsorted(xs, x)) - 1
    (x0, b0, m0), (x1, b1, m1) = points[j], points[j + 1]
    t = (x - x0) / (x1 - x0)
    return (1 - t) * b0 + t * b1, float(np.exp((1 - t) * np.log(m0) + t * np.log(m1))), True


def _current(params: Any, param: str) -> float:
    if param.startswith("sh_band"):
        return params.sh_rest_steps[int(param[-1]) - 1]
    return getattr(params, param)


def allocation(scene: dict[str, Any], presets: list[int]) -> list[dict[str, Any]]:
    """For each preset: its steps' predicted bytes (sum of the attributes' stream bytes) and
    error (sum of the attributes' render MSEs, which roughly add), and the grid steps with the
    fewest predicted bytes at no larger predicted error: for a multiplier ``lam`` each
    attribute takes the grid value minimising ``bytes + lam * mse`` (the Lagrangian choice,
    equal marginal cost of error across attributes); ``lam`` is the smallest whose total error
    stays within the preset's. Nothing here is measured at the chosen steps together: it is a
    proposal for the rd runs to check."""
    curves: dict[str, list[tuple[float, float, float]]] = {}
    for r in scene["rows"]:
        if r["mse"] > 0:
            curves.setdefault(r["param"], []).append(
                (_coarseness(r["param"], r["value"]), float(r["stream_bytes"]), r["mse"],
                 r["value"]))
    for k in curves:
        curves[k].sort()
    out = []
    for q in presets:
        p = preset(q)
        cur, clamped = {}, []
        for k, pts in curves.items():
            b, m, inside = _at([t[:3] for t in pts], _coarseness(k, _current(p, k)))
            cur[k] = (b, m)
            if not inside:
                clamped.append(k)
        budget_mse = sum(m for _, m in cur.values())

        def choose(lam: float) -> dict[str, tuple[float, float, float]]:
            return {k: min(((b, m, v) for _, b, m, v in pts), key=lambda c: c[0] + lam * c[1])
                    for k, pts in curves.items()}

        def total(lam: float) -> float:
            return sum(c[1] for c in choose(lam).values())

        # the total error falls as lam grows: the smallest lam (log bisection) within budget
        lo, hi = -20.0, 80.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if total(10.0**mid) <= budget_mse else (mid, hi)
        hi = 10.0**hi
        best = choose(hi)
        out.append({
            "preset": q, "lambda": hi, "clamped": clamped,
            "current": {k: {"value": _current(p, k), "bytes": b, "mse": m}
                        for k, (b, m) in cur.items()},
            "proposed": {k: {"value": v, "bytes": b, "mse": m} for k, (b, m, v) in best.items()},
            "current_bytes": sum(b for b, _ in cur.values()),
            "current_db": _db(budget_mse),
            "proposed_bytes": sum(t[0] for t in best.values()),
            "proposed_db": _db(sum(t[1] for t in best.values()))})
    return out


def _db(mse: float) -> float:
    return 10 * float(np.log10(1 / mse)) if mse > 0 else float("inf")


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Per-attribute sweep ({report['date']})", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; "
             f"{report['views']} evaluation views of seed "
             f"{report.get('seed', '(views before 2026-12-01)')} at "
             f"{report['size']}x{report['size']}.", "",
             "error = render PSNR with only that attribute decoded (others exact); bytes = the "
             "attribute's stream.", ""]
    for scene in report["scenes"]:
        lines += [f"## {scene['scene']}: {scene['gaussians']:,} Gaussians, SH "
                  f"{scene['sh_degree']}, other attributes at preset {scene['base']}", "",
                  "| attribute step | value | stream bytes | PSNR, this attribute alone (dB) |",
                  "|---|---:|---:|---:|"]
        for r in scene["rows"]:
            db = 10 * np.log10(1 / r["mse"]) if r["mse"] > 0 else float("inf")
            lines.append(f"| {r['param']} | {r['value']:.4g} | {r['stream_bytes']:,} | {db:.2f} |")
        lines.append("")
        alloc = allocation(scene, report.get("presets", [1, 2, 3, 4, 5]))
        params = sorted({r["param"] for r in scene["rows"]}, key=list(GRID).index)
        lines += ["### Allocation (a proposal, from the rows above)", "",
                  "Per preset: its steps, and the grid steps with the fewest predicted bytes at "
                  "no larger predicted error (errors of the attributes added; the Lagrangian "
                  "choice on the grid, `allocation()`). Predicted figures, not measured "
                  "together: an rd run checks them.", "",
                  "| preset | | " + " | ".join(params) + " | predicted bytes | predicted dB |",
                  "|---:|---|" + "---:|" * (len(params) + 2)]
        for a in alloc:
            for kind in ("current", "proposed"):
                vals = " | ".join(f"{a[kind][k]['value']:.4g}" for k in params)
                lines.append(f"| {a['preset']} | {kind} | {vals} | {a[kind + '_bytes']:,.0f} | "
                             f"{a[kind + '_db']:.2f} |")
            if a["clamped"]:
                lines.append(f"| {a['preset']} | outside the grid | "
                             + ", ".join(a["clamped"]) + " |" + " |" * (len(params) + 1))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ap.add_argument("--base", type=int, default=5)
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--split", choices=sorted(VIEW_SEEDS.keys() - {"unlisted"}),
                    default="tuning",
                    help="a sweep chooses constants: tuning (benchmarks/README.md)")
    ap.add_argument("--seed", type=int, default=None,
                    help="evaluation view seed (default: the split's)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="sweep")
    ap.add_argument("--from-json", action="store_true",
                    help="SCENES is one results .json of an earlier run: rewrite its .md only")
    args = ap.parse_args(argv)
    if args.from_json:
        report = json.loads(args.scenes[0].read_text())
        args.scenes[0].with_suffix(".md").write_text(markdown(report))
        return report
    check_split(args.scenes, args.split)
    backend = resolve_backend("auto")
    report = {"command": "python3 benchmarks/attribute_sweep.py " + " ".join(
                  sys.argv[1:] if argv is None else argv),
              "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine(), "renderer": backend, "views": args.views,
              "size": args.size, "split": args.split, "seed": view_seed(args),
              "scenes": [sweep_scene(p, args, backend) for p in args.scenes]}
    write_report(args.out, args.name, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
