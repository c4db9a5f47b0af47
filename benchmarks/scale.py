"""Large scenes: peak memory of the CLI's base-layer encode and decode of a synthetic scene of
millions of Gaussians against its PLY's size, and the encode time against SPZ's on a smaller
one, all in one run.

    python3 benchmarks/scale.py [--gaussians 10000000] [--spz-gaussians 2000000] [--degree 3]
                                [--work DIR] [--out DIR] [--name scale]

Writes synthetic scenes (``gscodec.synthetic.make_scene``, seeds 2 and 3) as PLYs under
``--work`` (default: a temporary folder; the 10M SH-3 one is 2.5 GB), then runs in fresh
processes, each watched every 50 ms for the resident memory of its whole process tree (the
coding processes of ``--jobs`` included; pages they share are counted once per process, so the
figure is an upper bound):

- ``gscodec encode BIG.ply --views 0`` and ``gscodec decode BIG.gsz -o BIG.back.ply`` (the base
  layer, written part by part): the bar of the scale issue is a peak of at most 1.5x the PLY;
- ``gscodec encode SMALL.ply --views 0`` against the SPZ tool's encode of the same PLY
  (``../shared/tools/peers``): the bar is an encode no slower than SPZ's.

Writes ``OUT/NAME.json`` and ``OUT/NAME.md``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gscodec.synthetic import make_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    HERE,
    peer_tool,
    ratio_and_bar_tables,
    report_header,
    write_report,
)

BAR_MEMORY = 1.5


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and its descendants (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        pid = int(status.parent.name)
        parents[pid] = int(fields.get("PPid", "0").strip() or 0)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        grew = bool(more)
        tree |= more
    return sum(rss.get(p, 0) for p in tree)


def watched(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; its wall time and the largest resident memory of its process tree."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:2]} failed: {err.decode(errors='replace')[-400:]}")
    return {"seconds": wall, "peak_bytes": peak, "stdout": out.decode(errors="replace")[-400:]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, default=10_000_000)
    ap.add_argument("--spz-gaussians", type=int, default=2_000_000)
    ap.add_argument("--degree", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="scale")
    args = ap.parse_args(argv)
    report = report_header("scale.py", argv)
    exe = shutil.which("gscodec") or "gscodec"
    tool = peer_tool()
    with tempfile.TemporaryDirectory(prefix="gscodec-scale-", dir=args.work) as tmp:
        work = Path(tmp)
        plys = {}
        for key, n, seed in (("big", args.gaussians, 2), ("small", args.spz_gaussians, 3)):
            plys[key] = work / f"{key}.ply"
            from gscodec import write_ply

            write_ply(plys[key], make_scene(n, sh_degree=args.degree, seed=seed))
        ply_bytes = plys["big"].stat().st_size
        runs = {
            "encode": watched([exe, "encode", str(plys["big"]), "--views", "0", "--quiet"]),
            "decode": watched([exe, "decode", str(work / "big.gsz"), "-o",
                               str(work / "big.back.ply"), "--quiet"]),
            "encode small": watched([exe, "encode", str(plys["small"]), "--views", "0",
                                     "--quiet"]),
        }
        if tool is not None:
            runs["spz encode small"] = watched([tool, "-q", "-w", str(plys["small"]),
                                                str(work / "small.spz")])
        gsz_bytes = (work / "big.gsz").stat().st_size
    ratios = {"encode peak / PLY": runs["encode"]["peak_bytes"] / ply_bytes,
              "decode peak / PLY": runs["decode"]["peak_bytes"] / ply_bytes}
    if "spz encode small" in runs:
        ratios["encode / SPZ encode (2M)"] = (runs["encode small"]["seconds"]
                                              / runs["spz encode small"]["seconds"])
    bars = {f"encode peak <= {BAR_MEMORY}x the PLY": ratios["encode peak / PLY"] <= BAR_MEMORY,
            f"decode peak <= {BAR_MEMORY}x the PLY": ratios["decode peak / PLY"] <= BAR_MEMORY}
    if "encode / SPZ encode (2M)" in ratios:
        bars["encode no slower than SPZ"] = ratios["encode / SPZ encode (2M)"] <= 1.0
    report.update({"gaussians": args.gaussians, "spz_gaussians": args.spz_gaussians,
                   "sh_degree": args.degree, "ply_bytes": ply_bytes, "gsz_bytes": gsz_bytes,
                   "runs": runs, "ratios": ratios, "bars": bars})
    md = [f"# Large scenes ({report['date']})", "",
          f"Command: `{report['command']}`", "",
          f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; load "
          f"average {report['load_average']:.2f} at the start.", "",
          f"Synthetic SH-{args.degree} scenes: {args.gaussians:,} Gaussians (PLY "
          f"{ply_bytes / 1e9:.2f} GB, .gsz {gsz_bytes / 1e6:.1f} MB at the default preset) and "
          f"{args.spz_gaussians:,} for the time against SPZ. Peak: the resident memory of the "
          "command's whole process tree, sampled every 50 ms.", "",
          "| run | seconds | peak MB |", "|---|---:|---:|",
          *(f"| {k} | {v['seconds']:.1f} | {v['peak_bytes'] / 1e6:,.0f} |"
            for k, v in runs.items()), "",
          *ratio_and_bar_tables(ratios, bars)]
    write_report(args.out, args.name, report, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
