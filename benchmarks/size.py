"""Size, speed and per-attribute error of gscodec at every quality preset, side by side with SPZ.

    python3 benchmarks/size.py SCENE.ply [SCENE.ply ...] [--synthetic N] [--qualities 1-10]
                               [--out benchmarks/results] [--name size]

For each scene: gscodec at every preset (bytes, bits per Gaussian per attribute, encode and
decode seconds through the Python API, per-attribute-group error against the original), and SPZ
written by the peer tool (../shared/tools/peers/install.sh) and read back to PLY by the same tool,
measured the same way, in the same run. A preset "matches SPZ" when every attribute group's
error is no larger than SPZ's (a relative tolerance of 1e-4 absorbs float32 round-off); the
report gives the smallest gscodec/SPZ size ratio among matching presets.

With ``--synthetic N`` a synthetic scene of N Gaussians (SH 3) is generated and timed end to end
through the CLI (``gscodec encode`` / ``gscodec decode`` as subprocesses: reading, coding and
writing included), with the peak memory of each process, beside the peer tool's SPZ encode.

Writes ``OUT/NAME.json`` and ``OUT/NAME.md`` (with the command, machine and date) and prints the
JSON. The error units are those of ``gscodec.metrics.attribute_errors``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gscodec
from gscodec.metrics import attribute_errors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    HERE,
    parse_int_list,
    peer_tool,
    report_header,
    timed_process,
    write_report,
)

GROUPS = ("positions", "log_scales", "rotations", "opacity", "sh_dc", "sh_rest")
TOLERANCE = 1e-4


def gscodec_row(ref: gscodec.Gaussians, quality: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    data, order = gscodec.encode_with_order(ref, quality)
    t1 = time.perf_counter()
    back = gscodec.decode(data)
    t2 = time.perf_counter()
    info = gscodec.inspect(data)
    bits = {r["attribute"]: r["bits_per_gaussian"] for r in info["streams"]}
    return {
        "codec": "gscodec",
        "quality": quality,
        "bytes": len(data),
        "bits_per_gaussian": 8 * len(data) / max(1, ref.n),
        "bits_per_attribute": bits,
        "encode_s": t1 - t0,
        "decode_s": t2 - t1,
        "errors": attribute_errors(ref.take(order), back),
    }


def spz_row(tool: str, ply: Path, ref: gscodec.Gaussians, work: Path) -> dict[str, Any]:
    spz = work / f"{ply.stem}.spz"
    back_ply = work / f"{ply.stem}.spz.ply"
    enc = timed_process([tool, "-q", "-w", str(ply), str(spz)])
    dec = timed_process([tool, "-q", "-w", str(spz), str(back_ply)])
    back = gscodec.read_ply(back_ply)
    if back.n != ref.n:
        raise RuntimeError("SPZ changed the number of Gaussians")
    return {
        "codec": "spz",
        "bytes": spz.stat().st_size,
        "bits_per_gaussian": 8 * spz.stat().st_size / max(1, ref.n),
        "encode_s": enc["seconds"],
        "decode_to_ply_s": dec["seconds"],
        "errors": attribute_errors(ref, back),
    }


def matches(ours: dict[str, float], theirs: dict[str, float]) -> bool:
    return all(ours[g] <= theirs[g] * (1 + TOLERANCE) + 1e-12 for g in GROUPS if g in theirs)


def bench_scene(ply: Path, qualities: list[int], tool: str | None, work: Path) -> dict[str, Any]:
    ref = gscodec.read_ply(ply)
    scene: dict[str, Any] = {"scene": ply.stem, "path": str(ply), "gaussians": ref.n,
                             "sh_degree": ref.sh_degree, "ply_bytes": ply.stat().st_size}
    rows = []
    for q in qualities:
        rows.append(gscodec_row(ref, q))
        print(f"  {ply.stem} q{q}: {rows[-1]['bytes']:,} B", file=sys.stderr)
    scene["gscodec"] = rows
    if tool:
        spz = spz_row(tool, ply, ref, work)
        scene["spz"] = spz
        passing = [r for r in rows if matches(r["errors"], spz["errors"])]
        for r in rows:
            r["ratio_to_spz"] = r["bytes"] / spz["bytes"]
            r["matches_spz_errors"] = r in passing
        if passing:
            best = min(passing, key=lambda r: r["bytes"])
            scene["best_match"] = {"quality": best["quality"], "ratio_to_spz": best["ratio_to_spz"]}
        else:
            scene["best_match"] = None
    return scene


def bench_cli(n: int, tool: str | None, work: Path) -> dict[str, Any]:
    from gscodec.synthetic import make_scene

    ply = work / f"synthetic{n}.ply"
    gscodec.write_ply(ply, make_scene(n, sh_degree=3, seed=1), force=True)
    exe = shutil.which("gscodec") or "gscodec"
    gsz = work / f"synthetic{n}.gsz"
    out = work / f"synthetic{n}.decoded.ply"
    enc = timed_process([exe, "encode", str(ply), "-o", str(gsz), "--force", "--quiet",
                          "--views", "0"])
    dec = timed_process([exe, "decode", str(gsz), "-o", str(out), "--force", "--quiet"])
    result: dict[str, Any] = {
        "gaussians": n,
        "sh_degree": 3,
        "ply_bytes": ply.stat().st_size,
        "gsz_bytes": gsz.stat().st_size,
        "quality": 7,
        "cli_encode_s": enc["seconds"],
        "cli_decode_s": dec["seconds"],
        "encode_peak_bytes": enc["peak_bytes"],
        "decode_peak_bytes": dec["peak_bytes"],
        "encode_peak_over_ply": enc["peak_bytes"] / ply.stat().st_size,
        "decode_peak_over_ply": dec["peak_bytes"] / ply.stat().st_size,
    }
    if tool:
        spz = timed_process([tool, "-q", "-w", str(ply), str(work / f"synthetic{n}.spz")])
        result["spz_encode_s"] = spz["seconds"]
        result["spz_bytes"] = (work / f"synthetic{n}.spz").stat().st_size
        result["encode_time_over_spz"] = enc["seconds"] / spz["seconds"]
    return result


def _fmt_err(e: dict[str, float]) -> str:
    parts = [f"{e['positions']:.2e}", f"{e['log_scales']:.4f}", f"{e['rotations']:.4f}",
             f"{e['opacity']:.5f}", f"{e['sh_dc']:.3f}"]
    parts.append(f"{e['sh_rest']:.4f}" if "sh_rest" in e else "-")
    parts.append(f"{e['covariance']:.4f}" if "covariance" in e else "-")
    return " | ".join(parts)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Size benchmark ({report['date']})", "", f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
             f"Python {report['machine']['python']}; load average at the start "
             f"{report.get('load_average', float('nan')):.2f} (above about 0.5 other work shared "
             "the cores: the seconds are inflated, bytes and errors are not)", "",
             "Errors: positions RMSE / bbox diagonal | log-scale RMSE | rotation mean angle (deg) "
             "| opacity RMSE (alpha) | DC RMSE (0-255) | SH-rest RMSE | covariance relative "
             "error. Presets 1-5 may store an equivalent rotation/scale pair (same covariance), "
             "so their rotation and log-scale errors are not comparable; the covariance error "
             "is.", ""]
    for s in report["scenes"]:
        lines += [f"## {s['scene']}: {s['gaussians']:,} Gaussians, SH {s['sh_degree']}, "
                  f"PLY {s['ply_bytes']:,} B", ""]
        lines += ["| codec | bytes | bits/G | ratio to SPZ | pos | log-scale | rot | opacity | DC "
                  "| SH rest | cov | all <= SPZ | enc s | dec s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|"]
        spz = s.get("spz")
        if spz:
            lines.append(f"| SPZ | {spz['bytes']:,} | {spz['bits_per_gaussian']:.1f} | 1.000 | "
                         f"{_fmt_err(spz['errors'])} | | {spz['encode_s']:.2f} | "
                         f"{spz['decode_to_ply_s']:.2f} |")
        for r in s["gscodec"]:
            ratio = f"{r['ratio_to_spz']:.3f}" if "ratio_to_spz" in r else "-"
            ok = "yes" if r.get("matches_spz_errors") else ""
            lines.append(f"| gscodec q{r['quality']} | {r['bytes']:,} | "
                         f"{r['bits_per_gaussian']:.1f} | {ratio} | {_fmt_err(r['errors'])} | "
                         f"{ok} | {r['encode_s']:.2f} | {r['decode_s']:.2f} |")
        if s.get("best_match"):
            b = s["best_match"]
            lines += ["", f"Smallest gscodec file with every error <= SPZ's: quality "
                      f"{b['quality']}, **{b['ratio_to_spz']:.3f}x** the SPZ file."]
        elif spz:
            lines += ["", "No preset has every error <= SPZ's."]
        q7 = next((r for r in s["gscodec"] if r["quality"] == 7), None)
        if q7:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in q7["bits_per_attribute"].items())
            lines += ["", f"Bits per Gaussian at quality 7: {parts}."]
        lines.append("")
    for c in report.get("cli", []):
        lines += [f"## End-to-end CLI, synthetic {c['gaussians']:,} Gaussians, SH 3 "
                  f"(PLY {c['ply_bytes'] / 1e6:.0f} MB, quality 7)", "",
                  f"- encode {c['cli_encode_s']:.2f} s, peak memory "
                  f"{c['encode_peak_bytes'] / 1e6:.0f} MB "
                  f"({c['encode_peak_over_ply']:.2f}x the PLY)",
                  f"- decode {c['cli_decode_s']:.2f} s, peak memory "
                  f"{c['decode_peak_bytes'] / 1e6:.0f} MB "
                  f"({c['decode_peak_over_ply']:.2f}x the PLY)"]
        if "spz_encode_s" in c:
            lines.append(f"- SPZ encode (peer tool) {c['spz_encode_s']:.2f} s: gscodec/SPZ "
                         f"encode time {c['encode_time_over_spz']:.2f}x; sizes gscodec "
                         f"{c['gsz_bytes']:,} B, SPZ {c['spz_bytes']:,} B")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="*", type=Path)
    ap.add_argument("--synthetic", type=int, action="append", default=[],
                    help="also time the CLI end to end on a synthetic scene of N Gaussians")
    ap.add_argument("--qualities", default="1-10")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="size")
    ap.add_argument("--no-peers", action="store_true", help="skip SPZ")
    args = ap.parse_args(argv)
    tool = None if args.no_peers else peer_tool()
    report: dict[str, Any] = {
        **report_header("size.py", argv),
        "peer_tool": tool,
        "scenes": [],
        "cli": [],
    }
    with tempfile.TemporaryDirectory(prefix="gscodec-bench-") as tmp:
        work = Path(tmp)
        for ply in args.scenes:
            report["scenes"].append(bench_scene(ply, parse_int_list(args.qualities), tool, work))
        for n in args.synthetic:
            report["cli"].append(bench_cli(n, tool, work))
    write_report(args.out, args.name, report, markdown(report))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
