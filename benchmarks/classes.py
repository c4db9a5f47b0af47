"""Importance classes against uniform steps at equal PSNR: the tuning run behind
``gscodec.codec.adaptive`` (error ratio, ratio cap, class edges).

    python3 benchmarks/classes.py SCENE.ply [...] [--split tuning] [--views 6] [--sizes 512]
                                  [--qualities 3,5] [--uniform 1-7]
                                  [--variants 0.25/16/0.6:0.85:0.95,...]
                                  [--out benchmarks/results] [--name classes]

For each scene: the base layer with uniform steps (``importance=False``) at every preset of
``--uniform`` gives a rate/fidelity curve; each variant ``ERROR_RATIO/MAX_RATIO/Q1:Q2:Q3`` (the
error the per-class steps aim at relative to the uniform steps, the cap on the ratio between the
coarsest and finest class, and the class edges as quantiles of the importance score) is encoded
at every preset of ``--qualities``. Reported per variant and preset: bytes, PSNR (mean over the
evaluation views of the split's seed, first size), the PSNR change against the uniform steps of
the same preset, and the bytes against the uniform curve at the variant's PSNR (interpolated
in (PSNR, log bytes) between the two uniform presets around it; -0.05 = 5% fewer bytes at equal
PSNR). The render sensitivities are measured once per storage order (they do not depend on the
variant), so a variant costs one encode, decode and set of renders per row.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

import gscodec
import gscodec.importance
from gscodec.codec import adaptive
from gscodec.render import resolve_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluation as ev  # noqa: E402
from common import HERE, parse_int_list, report_header, write_report  # noqa: E402

DEFAULT_VARIANTS = "0.25/16/0.6:0.85:0.95"  # the encoder's default (codec.adaptive)


def parse_variant(text: str) -> dict[str, Any]:
    try:
        ratio, cap, edges = text.split("/")
        quantiles = tuple(float(q) for q in edges.split(":"))
        v = {"error_ratio": float(ratio), "max_ratio": float(cap), "quantiles": quantiles}
    except ValueError:
        raise argparse.ArgumentTypeError(f"variant {text!r} is not ERROR/CAP/Q1:Q2:Q3") from None
    if (len(quantiles) != adaptive.DEFAULT_CLASSES - 1 or list(quantiles) != sorted(quantiles)
            or not all(0 < q < 1 for q in quantiles) or not v["error_ratio"] > 0
            or not v["max_ratio"] >= 1):
        raise argparse.ArgumentTypeError(
            f"variant {text!r}: {adaptive.DEFAULT_CLASSES - 1} increasing quantiles in (0, 1), "
            "a positive error ratio and a cap of at least 1")
    return v


def name_of(v: dict[str, Any]) -> str:
    return (f"{v['error_ratio']:g}/{v['max_ratio']:g}/"
            + ":".join(f"{q:g}" for q in v["quantiles"]))


def uniform_bytes_at(curve: list[dict[str, Any]], target: float) -> float | None:
    """Bytes of the uniform curve at ``target`` dB (log-linear between the presets around it);
    None outside the curve."""
    pts = sorted((r["psnr"], r["bytes"]) for r in curve)
    for (p0, b0), (p1, b1) in zip(pts, pts[1:], strict=False):
        if p0 <= target <= p1 and p1 > p0:
            t = (target - p0) / (p1 - p0)
            return math.exp((1 - t) * math.log(b0) + t * math.log(b1))
    return None


class _Patched:
    """Within the block: the encoder's importance classes use variant ``v`` and reuse one
    measurement of the sensitivities per scene."""

    def __init__(self, v: dict[str, Any] | None, cache: dict[str, Any]):
        self.v, self.cache = v, cache

    def __enter__(self):
        self.saved = (gscodec.importance.sensitivities, adaptive.classes, adaptive.class_steps)
        original = self.saved[0]

        def sensitivities(g, *a, **k):
            # keyed by the storage order (it follows the preset's position grid)
            key = hashlib.sha256(np.ascontiguousarray(g.means).tobytes()).hexdigest()
            if key not in self.cache:
                self.cache[key] = original(g, *a, **k)
            return self.cache[key]

        gscodec.importance.sensitivities = sensitivities
        if self.v is not None:
            adaptive.classes = functools.partial(self.saved[1], quantiles=self.v["quantiles"])
            adaptive.class_steps = functools.partial(
                self.saved[2], max_ratio=self.v["max_ratio"], error_ratio=self.v["error_ratio"])
        return self

    def __exit__(self, *exc):
        gscodec.importance.sensitivities, adaptive.classes, adaptive.class_steps = self.saved


def bench_scene(ply: Path, args: argparse.Namespace, backend: str) -> dict[str, Any]:
    ref = gscodec.read_ply(ply)
    evref = ev.reference(ref, args, backend)
    cache: dict[str, Any] = {}

    def measure(q: int, v: dict[str, Any] | None) -> dict[str, Any]:
        with _Patched(v, cache):
            data = gscodec.encode(ref, quality=q, views=0, importance=v is not None)
        f = ev.fidelity(evref, gscodec.decode(data, refine=False), backend)
        row = {"quality": q, "variant": "uniform" if v is None else name_of(v),
               "bytes": len(data), "bits_per_gaussian": 8 * len(data) / max(ref.n, 1), **f}
        print(f"  {ply.stem} q{q} {row['variant']}: {len(data):,} B, {f['psnr']:.2f} dB",
              file=sys.stderr, flush=True)
        return row

    uniform = [measure(q, None) for q in args.uniform]
    rows = []
    for v in args.variants:
        for q in args.qualities:
            row = measure(q, v)
            same = next((u for u in uniform if u["quality"] == q), None)
            row["psnr_change"] = None if same is None else row["psnr"] - same["psnr"]
            at = uniform_bytes_at(uniform, row["psnr"])
            row["vs_uniform_at_equal_psnr"] = None if at is None else row["bytes"] / at - 1.0
            rows.append(row)
    return {"scene": ply.stem, "split": ev.split_of(ev.scene_name(ply)), "gaussians": ref.n,
            "sh_degree": ref.sh_degree, "uniform": uniform, "variants": rows}


def _pct(x: float | None) -> str:
    return "outside the uniform curve" if x is None else f"{100 * x:+.1f}%"


def markdown(report: dict[str, Any]) -> str:
    size = report["sizes"][0]
    lines = [f"# Importance classes against uniform steps ({report['date']})", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores. Split "
             f"{report['split']}: {report['views']} evaluation views of seed "
             f"{report['view_seed']} at {size} px (mean PSNR over views). Variant = error "
             "ratio / ratio cap / class edges (quantiles of the importance score); today's "
             f"default is {DEFAULT_VARIANTS}.", ""]
    for s in report["scenes"]:
        lines += [f"## {s['scene']} ({s['split']}): {s['gaussians']:,} Gaussians, SH "
                  f"{s['sh_degree']}", "", "Uniform steps:", "",
                  "| preset | bytes | PSNR (dB) |", "|---:|---:|---:|"]
        lines += [f"| {u['quality']} | {u['bytes']:,} | {u['psnr']:.2f} |" for u in s["uniform"]]
        lines += ["", "| variant | preset | bytes | PSNR (dB) | PSNR vs uniform, same preset | "
                  "bytes vs uniform at equal PSNR |", "|---|---:|---:|---:|---:|---:|"]
        for r in s["variants"]:
            change = "" if r["psnr_change"] is None else f"{r['psnr_change']:+.2f}"
            lines.append(f"| {r['variant']} | {r['quality']} | {r['bytes']:,} | "
                         f"{r['psnr']:.2f} | {change} | "
                         f"{_pct(r['vs_uniform_at_equal_psnr'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ev.add_arguments(ap, views=6, sizes="512")
    ap.add_argument("--qualities", type=parse_int_list, default=[3, 5])
    ap.add_argument("--uniform", type=parse_int_list, default=list(range(1, 8)))
    ap.add_argument("--variants", default=DEFAULT_VARIANTS,
                    help="comma list of ERROR_RATIO/MAX_RATIO/Q1:Q2:Q3")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="classes")
    args = ap.parse_args(argv)
    ev.check_split(args.scenes, args.split)
    args.variants = [parse_variant(t) for t in args.variants.split(",") if t]
    backend = resolve_backend(args.backend)
    report: dict[str, Any] = {**report_header("classes.py", argv), "backend": backend,
                              "split": args.split, "view_seed": ev.view_seed(args),
                              "views": args.views, "sizes": args.sizes, "scenes": []}
    for ply in args.scenes:
        report["scenes"].append(bench_scene(ply, args, backend))
        write_report(args.out, args.name, report, markdown(report))
    print(json.dumps({"scenes": len(report["scenes"])}))
    return report


if __name__ == "__main__":
    main()
