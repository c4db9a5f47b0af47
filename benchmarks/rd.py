"""Rate-distortion of gscodec (every preset) against the peer codecs, measured on renders.

    python3 benchmarks/rd.py SCENE.ply [SCENE.ply ...] --split tuning|test [--views 8]
                             [--sizes 512,1024] [--seed S] [--cameras cameras.json]
                             [--qualities 1-10] [--peers spz,compressed.ply,sog]
                             [--peer-cache DIR] [--out benchmarks/results] [--name rd]

For each scene: the evaluation views of the split's view seed (``benchmarks/evaluation.py``:
``gscodec.cameras.evaluation_views``, at least 3 degrees from every view the codec uses; or
``--cameras``) are rendered at every size of ``--sizes`` from the original and from every
decoded version; fidelity is the mean PSNR over those views against the original's renders
(black background), with SSIM and the PSNR over covered pixels beside it. Scenes of the other
split are refused. ``--mode base`` (the default) measures gscodec's base layer (``views=0``,
decoded without refinement); ``--mode cli`` the files ``gscodec encode -q Q`` writes with no
other flag (side information where the preset sends it by default), decoded as ``gscodec
decode`` does by default (refinement where the file carries side information: minutes per preset
on a CPU). The peers (SPZ, PlayCanvas compressed.ply, SOG) are written by the peer tool
(../shared/tools/peers/, the same invocation as its run.sh; SOG on the CPU) and read back to PLY
by the same tool; their outputs are cached in ``--peer-cache`` (keyed by the scene's size, time
and name and the tool's path), so SOG, slow on SH scenes, runs once per scene, with no time-out
that would hide it.

Rate difference against a peer. The peers have one operating point each (no quality knob), so
the Bjontegaard delta rate reduces to its one-point form: gscodec's rate at the peer's PSNR,
interpolated linearly in (PSNR, log rate) between the two presets around it, relative to the
peer's rate: ``delta = R_gscodec(PSNR_peer) / R_peer - 1`` (-0.40 = 40% fewer bytes at equal
PSNR). If the peer's PSNR lies above gscodec's best preset the difference is not defined
(reported as null, with ``above_range``); below gscodec's lowest preset, gscodec's lowest preset
is both smaller and better, and the reported value is that preset's ratio, an upper bound
(``below_range``). Also per size: the smallest preset at 45 dB or more and its size as a share
of the PLY.

Writes ``OUT/NAME.json``, ``OUT/NAME.md`` and one plot per scene ``OUT/NAME-SCENE.png`` (PSNR
against bits per Gaussian at the first size), with the command, machine and date.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gscodec
from gscodec.api import default_views
from gscodec.render import resolve_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import evaluation as ev  # noqa: E402
from common import (  # noqa: E402
    add_peer_run_arguments,
    parse_int_list,
    peer_tool,
    report_header,
    write_report,
)

PEER_ARGS = {"spz": [], "compressed.ply": [], "sog": ["-g", "cpu"]}
MODES = {"base": "base layer (no side information, no refinement)",
         "cli": "CLI defaults (encode -q Q, decode)"}


def run_peer(tool: str, fmt: str, ply: Path, cache: Path) -> dict[str, Any]:
    """The peer's file for ``ply`` and its PLY read-back, from ``cache`` where made before."""
    st = ply.stat()
    key = hashlib.sha256(f"{ply.resolve()}|{st.st_size}|{st.st_mtime_ns}|{tool}|{fmt}|"
                         f"{PEER_ARGS[fmt]}".encode()).hexdigest()[:16]
    folder = cache / f"{ply.stem}-{key}"
    dst = folder / f"{ply.stem}.{fmt}"
    back = folder / f"{ply.stem}.{fmt}.back.ply"
    info = folder / "info.json"
    if info.is_file() and dst.is_file() and back.is_file():
        return {**json.loads(info.read_text()), "file": dst, "back": back, "cached": True}
    tmp = cache / f".{ply.stem}-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        subprocess.run([tool, "-q", "-w", *PEER_ARGS[fmt], str(ply), str(tmp / dst.name)],
                       check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        subprocess.run([tool, "-q", "-w", str(tmp / dst.name), str(tmp / back.name)],
                       check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"peer": fmt, "error": f"exit {e.returncode}: {e.stderr.decode()[-200:]}"}
    out = {"peer": fmt, "bytes": (tmp / dst.name).stat().st_size, "encode_s": seconds}
    (tmp / "info.json").write_text(json.dumps(out))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return {**out, "file": dst, "back": back, "cached": False}


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


def gscodec_file(ref: gscodec.Gaussians, q: int, mode: str,
                 cameras: list | None = None) -> bytes:
    """The base layer at preset ``q`` (mode "base"), or what ``gscodec encode -q Q`` writes with
    no other flag (mode "cli"); with ``cameras`` (the training cameras not held out), what
    ``gscodec encode --cameras`` writes."""
    return gscodec.encode(ref, quality=q, views=default_views(ref, q) if mode == "cli" else 0,
                          cameras=cameras)


def bench_scene(ply: Path, args: argparse.Namespace, tool: str | None, backend: str
                ) -> dict[str, Any]:
    ref = gscodec.read_ply(ply)
    evref = ev.reference(ref, args, backend)
    scene: dict[str, Any] = {"scene": ply.stem, "split": ev.split_of(ev.scene_name(ply)),
                             "gaussians": ref.n, "sh_degree": ref.sh_degree,
                             "ply_bytes": ply.stat().st_size, "gscodec": [], "peers": []}
    for q in args.qualities:
        t0 = time.perf_counter()
        data = gscodec_file(ref, q, args.mode, ev.encoder_cameras(args))
        t1 = time.perf_counter()
        dec = gscodec.decode(data, refine=args.mode == "cli")
        t2 = time.perf_counter()
        f = ev.fidelity(evref, dec, backend)
        scene["gscodec"].append({"quality": q, "bytes": len(data),
                                 "side_bytes": _side_bytes(data),
                                 "bits_per_gaussian": 8 * len(data) / max(ref.n, 1),
                                 "encode_s": t1 - t0, "decode_s": t2 - t1, **f})
        print(f"  {ply.stem} q{q}: {len(data):,} B, {f['psnr']:.2f} dB "
              f"({t1 - t0:.0f} + {t2 - t1:.0f} s)", file=sys.stderr)
    for fmt in args.peers if tool else []:
        out = run_peer(tool, fmt, ply, args.peer_cache)
        if "error" in out:
            scene["peers"].append(out)
            print(f"  {ply.stem} {fmt}: {out['error']}", file=sys.stderr)
            continue
        back = gscodec.read_ply(out["back"])
        f = ev.fidelity(evref, back, backend)
        row: dict[str, Any] = {"peer": fmt, "bytes": out["bytes"],
                               "bits_per_gaussian": 8 * out["bytes"] / max(ref.n, 1),
                               "encode_s": out["encode_s"], "cached": out["cached"], **f,
                               "at_equal_psnr": {}}
        for size in args.sizes:
            curve = [{"psnr": ev.at_size(r, size), "bytes": r["bytes"]}
                     for r in scene["gscodec"]]
            rate, how = rate_at(curve, ev.at_size(row, size))
            row["at_equal_psnr"][str(size)] = {
                "gscodec_bytes": rate, "kind": how,
                "delta_rate": None if rate is None else rate / out["bytes"] - 1.0}
        scene["peers"].append(row)
        first = row["at_equal_psnr"][str(args.sizes[0])]
        print(f"  {ply.stem} {fmt}: {out['bytes']:,} B, {f['psnr']:.2f} dB, delta "
              f"{first['delta_rate']}", file=sys.stderr)
    scene["at_45db"] = {}
    for size in args.sizes:
        ok = [r for r in scene["gscodec"] if ev.at_size(r, size) >= 45.0]
        best = min(ok, key=lambda r: r["bytes"]) if ok else None
        scene["at_45db"][str(size)] = None if best is None else {
            "quality": best["quality"], "bytes": best["bytes"],
            "ratio_to_ply": best["bytes"] / scene["ply_bytes"]}
    return scene


def _side_bytes(data: bytes) -> int:
    return sum(s["bytes"] for s in gscodec.inspect(data)["streams"] if s["stream"] == "SIDE")


def plot(scene: dict[str, Any], path: Path) -> None:
    plt = common.pyplot(path)
    if plt is None:
        return

    fig, ax = plt.subplots(figsize=(6, 4.2))
    xs = [r["bits_per_gaussian"] for r in scene["gscodec"]]  # psnr: the first size
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


def _delta(d: dict[str, Any]) -> str:
    if d["delta_rate"] is None:
        return "n/a (above gscodec's range)"
    text = f"{100 * d['delta_rate']:+.1f}%"
    return f"<= {text}" if d["kind"] == "below_range" else text


def markdown(report: dict[str, Any]) -> str:
    sizes = report["sizes"]
    lines = [f"# Rate-distortion benchmark ({report['date']})", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; renderer "
             f"{report['backend']}; gscodec {MODES[report['mode']]}; split {report['split']}, "
             f"{report['views']} evaluation views "
             f"({report['view_source']}) at {', '.join(f'{s}x{s}' for s in sizes)}, black "
             "background. PSNR: mean over views; covered: over the pixels either scene covers.",
             "", "delta rate = gscodec bytes at the peer's PSNR (interpolated between presets, "
             "at that size) / peer bytes - 1; negative is smaller.", "",
             "## Summary", "",
             "| scene | split | peer | " + " | ".join(f"delta rate @{s}" for s in sizes)
             + " | " + " | ".join(f"bytes/PLY at >= 45 dB @{s}" for s in sizes) + " |",
             "|---|---|---|" + "---:|" * (2 * len(sizes))]
    for s in report["scenes"]:
        r45 = " | ".join("-" if s["at_45db"][str(z)] is None else
                         f"{s['at_45db'][str(z)]['ratio_to_ply']:.4f} "
                         f"(q{s['at_45db'][str(z)]['quality']})" for z in sizes)
        for p in s["peers"]:
            if "psnr" not in p:
                continue
            d = " | ".join(_delta(p["at_equal_psnr"][str(z)]) for z in sizes)
            lines.append(f"| {s['scene']} | {s['split']} | {p['peer']} | {d} | {r45} |")
    lines.append("")
    for s in report["scenes"]:
        lines += [f"## {s['scene']}: {s['gaussians']:,} Gaussians, SH {s['sh_degree']} "
                  f"({s['split']}; PLY {s['ply_bytes']:,} B)", ""]
        head = " | ".join(f"PSNR @{z} | covered @{z} | SSIM @{z}" for z in sizes)
        lines += [f"| codec | bytes | bits/G | {head} | delta rate @{sizes[0]} |",
                  "|---|---:|---:|" + "---:|" * (3 * len(sizes)) + "---:|"]

        def cells(r: dict[str, Any]) -> str:
            return " | ".join(f"{ev.at_size(r, z):.2f} | {ev.at_size(r, z, 'psnr_covered'):.2f} "
                              f"| {ev.at_size(r, z, 'ssim'):.4f}" for z in sizes)

        for p in s["peers"]:
            if "psnr" not in p:
                lines.append(f"| {p['peer']} | failed ({p['error']}) |" + " |" * (3 * len(sizes)
                                                                               + 2))
                continue
            lines.append(f"| {p['peer']} | {p['bytes']:,} | {p['bits_per_gaussian']:.1f} | "
                         f"{cells(p)} | {_delta(p['at_equal_psnr'][str(sizes[0])])} |")
        for r in s["gscodec"]:
            side = f" (side {r['side_bytes']:,})" if r["side_bytes"] else ""
            lines.append(f"| gscodec q{r['quality']} | {r['bytes']:,}{side} | "
                         f"{r['bits_per_gaussian']:.1f} | {cells(r)} | |")
        lines += ["", f"![{s['scene']}]({report['name']}-{s['scene']}.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ev.add_arguments(ap, views=8, sizes="512,1024")
    ap.add_argument("--qualities", type=parse_int_list, default=list(range(1, 11)))
    ap.add_argument("--mode", choices=["base", "cli"], default="base",
                    help="base: gscodec's base layer; cli: the CLI's default encode and decode")
    ap.add_argument("--peers", default="spz,compressed.ply,sog")
    add_peer_run_arguments(ap, "rd")
    args = ap.parse_args(argv)
    ev.check_split(args.scenes, args.split)
    args.peers = [p for p in args.peers.split(",") if p]
    backend = resolve_backend(args.backend)
    tool = peer_tool() if args.peers else None
    report: dict[str, Any] = {
        **report_header("rd.py", argv), "backend": backend, "split": args.split, "mode": args.mode,
        "view_seed": ev.view_seed(args), "views": args.views, "sizes": args.sizes,
        "view_source": f"cameras {args.cameras} (every {ev.HOLDOUT_EVERY}th held out, the "
        "rest for the encoder)" if args.cameras else
        f"evaluation_views seed {ev.view_seed(args)}",
        "name": args.name, "scenes": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for ply in args.scenes:
        scene = bench_scene(ply, args, tool, backend)
        report["scenes"].append(scene)
        plot(scene, args.out / f"{args.name}-{scene['scene']}.png")
        write_report(args.out, args.name, report, markdown(report))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
