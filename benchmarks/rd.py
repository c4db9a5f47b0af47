"""Rate-distortion of gscodec (every preset) against the peer codecs, measured on renders.

    python3 benchmarks/rd.py SCENE.ply [SCENE.ply ...] [--views 8] [--size 256]
                             [--qualities 1-10] [--peers spz,compressed.ply,sog]
                             [--out benchmarks/results] [--name rd]

For each scene: the evaluation views (``gscodec.cameras.evaluation_views``, never used by the
codec) are rendered from the original and from every decoded version; fidelity is the mean PSNR
(and SSIM) over those views against the original's renders, black background. The peers (SPZ,
PlayCanvas compressed.ply, SOG) are written by the peer tool (../shared/tools/peers/, the same
invocation as its run.sh; SOG on the CPU, skipped after --sog-timeout seconds) and read back to
PLY by the same tool.

Rate difference against a peer. The peers have one operating point each (no quality knob), so
the Bjontegaard delta rate reduces to its one-point form: gscodec's rate at the peer's PSNR,
interpolated linearly in (PSNR, log rate) between the two presets around it, relative to the
peer's rate: ``delta = R_gscodec(PSNR_peer) / R_peer - 1`` (-0.40 = 40% fewer bytes at equal
PSNR). If the peer's PSNR lies above gscodec's best preset the difference is not defined
(reported as null, with ``above_range``); below gscodec's lowest preset, gscodec's lowest preset
is both smaller and better, and the reported value is that preset's ratio, an upper bound
(``below_range``).

Writes ``OUT/NAME.json``, ``OUT/NAME.md`` and one plot per scene ``OUT/NAME-SCENE.png`` (PSNR
against bits per Gaussian), with the command, machine and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gscodec
from gscodec.cameras import evaluation_views
from gscodec.metrics import psnr, ssim
from gscodec.render import render, resolve_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, machine, parse_int_list, peer_tool, write_report  # noqa: E402

PEER_ARGS = {"spz": [], "compressed.ply": [], "sog": ["-g", "cpu"]}


def render_set(g: gscodec.Gaussians, cams: list, backend: str) -> list[torch.Tensor]:
    with torch.no_grad():
        return [render(g, c, backend=backend).image.clamp(0, 1).cpu() for c in cams]


def fidelity(ref_imgs: list[torch.Tensor], imgs: list[torch.Tensor]) -> dict[str, float]:
    p = [psnr(a, b) for a, b in zip(ref_imgs, imgs, strict=True)]
    s = [ssim(a, b) for a, b in zip(ref_imgs, imgs, strict=True)]
    return {"psnr": float(np.mean(p)), "ssim": float(np.mean(s)),
            "psnr_min_view": float(np.min(p))}


def run_peer(tool: str, fmt: str, ply: Path, work: Path, timeout: float) -> dict[str, Any]:
    dst = work / f"{ply.stem}.{fmt}"
    back = work / f"{ply.stem}.{fmt}.back.ply"
    t0 = time.perf_counter()
    try:
        subprocess.run([tool, "-q", "-w", *PEER_ARGS[fmt], str(ply), str(dst)], check=True,
                       capture_output=True, timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        return {"peer": fmt, "error": f"{type(e).__name__}"}
    seconds = time.perf_counter() - t0
    subprocess.run([tool, "-q", "-w", str(dst), str(back)], check=True, capture_output=True)
    return {"peer": fmt, "file": dst, "back": back, "bytes": dst.stat().st_size,
            "encode_s": seconds}


def rate_at(curve: list[dict[str, Any]], target_psnr: float) -> tuple[float | None, str]:
    """gscodec bytes at ``target_psnr`` by linear interpolation in (PSNR, log bytes)."""
    pts = sorted((r["psnr"], math.log(r["bytes"])) for r in curve if math.isfinite(r["psnr"]))
    if not pts:
        return None, "no_curve"
    if target_psnr > pts[-1][0]:
        return None, "above_range"
    if target_psnr <= pts[0][0]:
        return math.exp(pts[0][1]), "below_range"
    for (p0, r0), (p1, r1) in zip(pts, pts[1:], strict=False):
        if p0 <= target_psnr <= p1:
            w = 0.0 if p1 == p0 else (target_psnr - p0) / (p1 - p0)
            return math.exp(r0 + w * (r1 - r0)), "interpolated"
    return None, "not_monotone"


def bench_scene(ply: Path, args: argparse.Namespace, tool: str | None, work: Path,
                backend: str) -> dict[str, Any]:
    ref = gscodec.read_ply(ply)
    cams = evaluation_views(ref.means, args.views, args.size)
    ref_imgs = render_set(ref, cams, backend)
    scene: dict[str, Any] = {"scene": ply.stem, "gaussians": ref.n, "sh_degree": ref.sh_degree,
                             "ply_bytes": ply.stat().st_size, "gscodec": [], "peers": []}
    for q in args.qualities:
        data = gscodec.encode(ref, quality=q)
        dec = gscodec.decode(data)
        f = fidelity(ref_imgs, render_set(dec, cams, backend))
        scene["gscodec"].append({"quality": q, "bytes": len(data),
                                 "bits_per_gaussian": 8 * len(data) / ref.n, **f})
        print(f"  {ply.stem} q{q}: {len(data):,} B, {f['psnr']:.2f} dB", file=sys.stderr)
    for fmt in args.peers if tool else []:
        out = run_peer(tool, fmt, ply, work, args.sog_timeout)
        if "error" in out:
            scene["peers"].append(out)
            print(f"  {ply.stem} {fmt}: {out['error']}", file=sys.stderr)
            continue
        back = gscodec.read_ply(out["back"])
        f = fidelity(ref_imgs, render_set(back, cams, backend))
        rate, how = rate_at(scene["gscodec"], f["psnr"])
        row = {"peer": fmt, "bytes": out["bytes"], "bits_per_gaussian": 8 * out["bytes"] / ref.n,
               "encode_s": out["encode_s"], **f,
               "gscodec_bytes_at_equal_psnr": rate,
               "delta_rate": None if rate is None else rate / out["bytes"] - 1.0,
               "delta_rate_kind": how}
        scene["peers"].append(row)
        print(f"  {ply.stem} {fmt}: {out['bytes']:,} B, {f['psnr']:.2f} dB, delta "
              f"{row['delta_rate']}", file=sys.stderr)
    return scene


def plot(scene: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = [r["bits_per_gaussian"] for r in scene["gscodec"]]
    ys = [r["psnr"] for r in scene["gscodec"]]
    ax.plot(xs, ys, "o-", label="gscodec (presets 1-10)")
    for r in scene["gscodec"]:
        ax.annotate(str(r["quality"]), (r["bits_per_gaussian"], r["psnr"]), fontsize=7,
                    xytext=(3, -8), textcoords="offset points")
    for p in scene["peers"]:
        if "psnr" in p:
            ax.plot([p["bits_per_gaussian"]], [p["psnr"]], "s", label=p["peer"])
    ax.set_xlabel("bits per Gaussian")
    ax.set_ylabel("PSNR (dB) against the original's renders")
    ax.set_title(f"{scene['scene']}: {scene['gaussians']:,} Gaussians, SH {scene['sh_degree']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Rate-distortion benchmark ({report['date']})", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; renderer "
             f"{report['backend']}; {report['views']} evaluation views at {report['size']}x"
             f"{report['size']}, black background.", "",
             "delta rate = gscodec bytes at the peer's PSNR (interpolated between presets) / peer "
             "bytes - 1; negative is smaller.", ""]
    for s in report["scenes"]:
        lines += [f"## {s['scene']}: {s['gaussians']:,} Gaussians, SH {s['sh_degree']}", "",
                  "| codec | bytes | bits/G | PSNR (dB) | SSIM | delta rate |",
                  "|---|---:|---:|---:|---:|---:|"]
        for p in s["peers"]:
            if "psnr" not in p:
                lines.append(f"| {p['peer']} | failed ({p['error']}) | | | | |")
                continue
            d = p["delta_rate"]
            dr = "n/a (above gscodec's range)" if d is None else f"{100 * d:+.1f}%"
            if p["delta_rate_kind"] == "below_range":
                dr = f"<= {dr}"
            lines.append(f"| {p['peer']} | {p['bytes']:,} | {p['bits_per_gaussian']:.1f} | "
                         f"{p['psnr']:.2f} | {p['ssim']:.4f} | {dr} |")
        for r in s["gscodec"]:
            lines.append(f"| gscodec q{r['quality']} | {r['bytes']:,} | "
                         f"{r['bits_per_gaussian']:.1f} | {r['psnr']:.2f} | {r['ssim']:.4f} | |")
        lines += ["", f"![{s['scene']}]({report['name']}-{s['scene']}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--qualities", type=parse_int_list, default=list(range(1, 11)))
    ap.add_argument("--peers", default="spz,compressed.ply,sog")
    ap.add_argument("--sog-timeout", type=float, default=float(os.environ.get("SOG_TIMEOUT", 120)))
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="rd")
    args = ap.parse_args(argv)
    args.peers = [p for p in args.peers.split(",") if p]
    backend = resolve_backend(args.backend)
    tool = peer_tool() if args.peers else None
    report: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python3", "benchmarks/rd.py", *(argv or sys.argv[1:])]),
        "machine": machine(), "backend": backend, "views": args.views, "size": args.size,
        "name": args.name, "scenes": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gscodec-rd-") as tmp:
        for ply in args.scenes:
            scene = bench_scene(ply, args, tool, Path(tmp), backend)
            report["scenes"].append(scene)
            plot(scene, args.out / f"{args.name}-{scene['scene']}.png")
            write_report(args.out, args.name, report, markdown(report))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
