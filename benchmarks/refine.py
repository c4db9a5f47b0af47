"""Ablation of side information + refinement against the plain base layer, at equal total bytes.

    python3 benchmarks/refine.py SCENE.ply [...] --split tuning|test [--qualities 1-3]
                                 [--side-views K] [--side-size 256] [--scale 4] [--step 1.0]
                                 [--steps 100] [--views 6] [--sizes 512] [--seed S]
                                 [--cameras cameras.json] [--out benchmarks/results]
                                 [--name refine]

For each scene and preset: the base layer alone (bytes, PSNR/SSIM on the evaluation views of
``benchmarks/evaluation.py``, which the codec never sees, at each of ``--sizes``; scenes of the
other split are refused), and base + side information + refinement (bytes including the SIDE
stream, PSNR/SSIM after ``--steps`` refinement steps, decode seconds, device); with
``--configs`` also the learned prior with side information (full method; ``full-extra`` adds
``--extra-views`` views restored without residual) and without it (``prior``: extra views only).
"At equal total bytes" compares the refined PSNR with the base layer's PSNR interpolated at the
same bytes between presets (linear in log bytes), over all presets of ``--base-qualities``. One
plot per scene (PSNR against bits per Gaussian, with and without refinement) goes beside the
JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gscodec
from gscodec.api import default_views

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import evaluation as ev  # noqa: E402
from common import HERE, parse_int_list, report_header, write_report  # noqa: E402


def score(ref: ev.Reference, g: gscodec.Gaussians) -> dict[str, Any]:
    return ev.fidelity(ref, g, "auto")


def _gain(curve: list[dict[str, Any]], nbytes: float, refined: float, size: int
          ) -> float | None:
    equal = base_psnr_at(curve, nbytes, size)
    return None if equal is None else refined - equal


def base_psnr_at(curve: list[dict[str, Any]], nbytes: float, size: int | None = None
                 ) -> float | None:
    pts = sorted((math.log(r["bytes"]), r["psnr"] if size is None else ev.at_size(r, size))
                 for r in curve)
    if not pts or not pts[0][0] <= math.log(nbytes) <= pts[-1][0]:
        return None
    return float(np.interp(math.log(nbytes), [p[0] for p in pts], [p[1] for p in pts]))


def plot(scene: dict[str, Any], path: Path) -> None:
    plt = common.pyplot(path)
    if plt is None:
        return

    n = scene["gaussians"]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    base = sorted(scene["base_curve"], key=lambda r: r["bytes"])
    ax.plot([8 * r["bytes"] / n for r in base], [r["psnr"] for r in base], "o-",
            label="base layer")
    labels = {"side": "+ side info + refinement", "full": "+ side info + prior (full)",
              "full-extra": "full + extra views", "prior": "+ prior, no side info"}
    for config in dict.fromkeys(r.get("config", "side") for r in scene["refined"]):
        ref = sorted((r for r in scene["refined"] if r.get("config", "side") == config),
                     key=lambda r: r["bytes"])
        ax.plot([8 * r["bytes"] / n for r in ref], [r["psnr"] for r in ref], "s-",
                label=labels.get(config, config))
    for r in base:
        ax.annotate(f"q{r['quality']}", (8 * r["bytes"] / n, r["psnr"]), fontsize=7,
                    textcoords="offset points", xytext=(3, -9))
    ax.set_xlabel("bits per Gaussian (side information included)")
    ax.set_ylabel("PSNR on evaluation views (dB)")
    ax.set_title(f"{scene['scene']}: refinement at equal bytes")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ap.add_argument("--qualities", type=parse_int_list, default=[1, 2, 3])
    ap.add_argument("--base-qualities", type=parse_int_list, default=list(range(1, 11)))
    ap.add_argument("--side-views", type=int, default=None,
                    help="side-information views (default: the CLI's, gscodec.api.default_views)")
    ap.add_argument("--side-size", type=int, default=256)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--step", type=float, default=1.0, help="residual step in 1/255 units")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--configs", type=lambda t: t.split(","), default=["side"],
                    help="comma list of: side (side info + the decoder's default refinement, "
                         "no prior), colour (side info + the colour fit, gscodec.colourfit, DC "
                         "only), colour1 (colour fit of the DC and linear SH bands), adam (side "
                         "info + gradient refinement), full (side info + learned prior), "
                         "full-extra (full + --extra-views restored without residual), prior "
                         "(learned prior on --extra-views, no side info)")
    ap.add_argument("--extra-views", type=int, default=8,
                    help="views restored by the prior without side information (full-extra, "
                         "prior)")
    ev.add_arguments(ap, views=6, sizes="512")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="refine")
    args = ap.parse_args(argv)
    ev.check_split(args.scenes, args.split)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report: dict[str, Any] = {
        **report_header("refine.py", argv), "device": device, "split": args.split,
        "view_seed": ev.view_seed(args), "views": args.views, "sizes": args.sizes,
        "scenes": [],
    }
    for ply in args.scenes:
        g = gscodec.read_ply(ply)
        evref = ev.reference(g, args, "auto")
        train = ev.encoder_cameras(args)  # None: synthesized encoder views
        curve = []
        files: dict[tuple[bool, int], bytes] = {}  # "side" and "full" decode the same file
        for q in sorted(set(args.base_qualities) | set(args.qualities)):
            data = files[False, q] = gscodec.encode(g, quality=q, views=0, cameras=train)
            curve.append({"quality": q, "bytes": len(data), **score(evref, gscodec.decode(data))})
        rows = []
        for config in args.configs:
            side = config in ("side", "colour", "colour1", "adam", "full", "full-extra")
            method = {"colour": "colour", "colour1": "colour", "adam": "adam"}.get(config,
                                                                                  "auto")
            prior = "on" if config in ("full", "full-extra", "prior") else "off"
            extra = args.extra_views if config in ("full-extra", "prior") else 0
            for q in args.qualities:
                side_views = default_views(g, q) if args.side_views is None else args.side_views
                if (side, q) not in files:
                    files[side, q] = gscodec.encode(
                        g, quality=q, views=side_views if side else 0,
                        sideinfo_size=args.side_size, sideinfo_scale=args.scale,
                        sideinfo_step=args.step / 255, cameras=train)
                data = files[side, q]
                t0 = time.perf_counter()
                refined = gscodec.decode(data, steps=args.steps, device=device, prior=prior,
                                         extra_views=extra, method=method,
                                         colour_bands={"colour": 0, "colour1": 1}.get(config))
                seconds = time.perf_counter() - t0
                s = score(evref, refined)
                base = next(r for r in curve if r["quality"] == q)
                equal = base_psnr_at(curve, len(data))
                rows.append({"config": config, "quality": q, "bytes": len(data),
                             "base_bytes": base["bytes"], "side_bytes": len(data) - base["bytes"],
                             **s, "base_psnr": base["psnr"], "base_psnr_at_equal_bytes": equal,
                             "gain_db_at_equal_bytes": None if equal is None else s["psnr"] - equal,
                             "decode_s": seconds, "device": device, "steps": args.steps,
                             "extra_views": extra, "side_views": side_views if side else 0,
                             "method": method,
                             "prior_gains": (gscodec.inspect(data)["side_prior"] or {}).get(
                                 "gain") if side else None,
                             "gain_db_at_equal_bytes_by_size": {
                                 str(z): _gain(curve, len(data), ev.at_size(s, z), z)
                                 for z in args.sizes}})
                print(json.dumps({"scene": ply.stem, **rows[-1]}), file=sys.stderr)
        report["scenes"].append({"scene": ply.stem, "gaussians": g.n, "base_curve": curve,
                                 "refined": rows})
        args.out.mkdir(parents=True, exist_ok=True)
        plot(report["scenes"][-1], args.out / f"{args.name}-{ply.stem}.png")
        lines = [f"# Refinement ablation ({report['date']})", "", f"Command: `{report['command']}`",
                 "", f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
                 f"device {device}. Split {args.split}: {args.views} evaluation views of seed "
                 f"{ev.view_seed(args)} at {args.sizes[0]}x{args.sizes[0]} (PSNR columns; "
                 "gains at the other sizes in the JSON), black background.", ""]
        for sc in report["scenes"]:
            lines += [f"## {sc['scene']} ({sc['gaussians']:,} Gaussians)", "",
                      "| config | preset | bytes (base + side) | PSNR base | PSNR refined | "
                      "base PSNR at equal bytes | gain at equal bytes | decode s | file's prior "
                      "gains |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
            for r in sc["refined"]:
                eq = r["base_psnr_at_equal_bytes"]
                gain = r["gain_db_at_equal_bytes"]
                lines.append(f"| {r.get('config', 'side')} | {r['quality']} | "
                             f"{r['base_bytes']:,} + {r['side_bytes']:,} | "
                             f"{r['base_psnr']:.2f} | {r['psnr']:.2f} | "
                             f"{'-' if eq is None else f'{eq:.2f}'} | "
                             f"{'-' if gain is None else f'{gain:+.2f} dB'} | "
                             f"{r['decode_s']:.0f} | {r.get('prior_gains') or '-'} |")
            lines += ["", f"![{sc['scene']}]({args.name}-{sc['scene']}.png)", ""]
        write_report(args.out, args.name, report, "\n".join(lines))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
