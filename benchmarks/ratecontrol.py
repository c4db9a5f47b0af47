"""Rate control on real scenes: where ``--target-size`` and ``--target-psnr`` land
(:mod:`gscodec.ratecontrol`), against the rate-distortion issue's bars: within 3% below a size
target, within 0.5 dB above a PSNR target, on every scene.

    python3 benchmarks/ratecontrol.py SCENE.ply [...] [--split test] [--shares 0.08,0.12,0.2]
                                      [--psnrs 40,45,50] [--views 0] [--out DIR]
                                      [--name ratecontrol]

Size targets are shares of each scene's PLY size (so that one list fits scenes of any size);
PSNR targets are dB at the encoder's own views (``ratecontrol.PSNR_VIEWS`` views of
``PSNR_SIZE`` px). ``--views`` side-information views in every encode (default 0: the base
layer). Each target is one :func:`gscodec.ratecontrol.encode_to`; the bytes and dB do not
depend on the machine's load, the seconds do (the load average is recorded).

Writes ``OUT/NAME.json`` and ``OUT/NAME.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import gscodec
from gscodec import ratecontrol

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluation as ev  # noqa: E402
from common import HERE, report_header, write_report  # noqa: E402


def run_scene(ply: Path, shares: list[float], psnrs: list[float], views: int
              ) -> dict[str, Any]:
    g = gscodec.read_ply(ply)
    rows: list[dict[str, Any]] = []
    for kind, goals in (("size", [int(s * ply.stat().st_size) for s in shares]),
                        ("psnr", psnrs)):
        for goal in goals:
            t = time.perf_counter()
            try:
                data, _, r = ratecontrol.encode_to(
                    g, views=views, **({"target_size": goal} if kind == "size"
                                       else {"target_psnr": goal}))
                row = r.as_dict()
            except ratecontrol.TargetError as e:
                row = {"error": str(e), "met": False}
            row.update(kind=kind, goal=goal, seconds=time.perf_counter() - t)
            if kind == "size" and "bytes" in row:
                row["share_of_target"] = row["bytes"] / goal
            rows.append(row)
            print(f"  {ply.stem} {kind} {goal}: {row.get('bytes')} B, q {row.get('quality')}, "
                  f"met {row['met']} ({row['seconds']:.0f} s)", file=sys.stderr)
    return {"scene": ply.stem, "gaussians": g.n, "sh_degree": g.sh_degree,
            "ply_bytes": ply.stat().st_size, "targets": rows}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Rate control ({report['date']})", "", f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; load "
             f"average {report['load_average']:.2f} at the start (seconds only). Split: "
             f"{report['split']}; side-information views: {report['views']}. A size target is "
             f"met within {ratecontrol.SIZE_TOLERANCE:.0%} below it; a PSNR target (the base "
             f"layer against the scene at the encoder's {ratecontrol.PSNR_VIEWS} views of "
             f"{ratecontrol.PSNR_SIZE} px) within {ratecontrol.PSNR_TOLERANCE} dB above it.", "",
             "| scene | target | reached | quality | encodes | met | seconds |",
             "|---|---:|---:|---:|---:|:-:|---:|"]
    met = total = 0
    for s in report["scenes"]:
        for r in s["targets"]:
            total += 1
            met += bool(r["met"])
            goal = f"{r['goal']:,} B" if r["kind"] == "size" else f"{r['goal']:g} dB"
            if "error" in r:
                got, q, n = r["error"], "", ""
            else:
                got = (f"{r['bytes']:,} B ({r['share_of_target']:.3f})" if r["kind"] == "size"
                       else f"{r['psnr']:.2f} dB ({r['bytes']:,} B)")
                q, n = f"{r['quality']:.3f}", str(r["encodes"])
            lines.append(f"| {s['scene']} | {goal} | {got} | {q} | {n} | "
                         f"{'yes' if r['met'] else 'NO'} | {r['seconds']:.0f} |")
    lines += ["", f"Targets met: {met} of {total}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ap.add_argument("--split", choices=["tuning", "test"], default="test")
    ap.add_argument("--shares", default="0.08,0.12,0.2")
    ap.add_argument("--psnrs", default="40,45,50")
    ap.add_argument("--views", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="ratecontrol")
    args = ap.parse_args(argv)
    ev.check_split(args.scenes, args.split)
    report = report_header("ratecontrol.py", argv)
    report.update(split=args.split, views=args.views, scenes=[])
    for ply in args.scenes:
        report["scenes"].append(run_scene(ply, [float(x) for x in args.shares.split(",")],
                                          [float(x) for x in args.psnrs.split(",")],
                                          args.views))
        write_report(args.out, args.name, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
