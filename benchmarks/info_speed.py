"""``gscodec info`` against a base-layer decode of the same file, timed in one run.

    python3 benchmarks/info_speed.py [--gaussians 1000000] [--repeats 5] [--out DIR]
                                     [--name info_speed]

Makes a synthetic SH-3 scene (``gscodec.synthetic.make_scene``, seed 1), encodes it with the
library at the default preset without side information, then runs ``gscodec info X.gsz`` and
``gscodec decode X.gsz --no-refine`` in fresh processes ``--repeats`` times each (median wall
time, interpreter start and imports included) and ``gscodec.info.info`` in this process. The bar
of issue 18: ``info`` on a 1M-Gaussian file answers in under a second; the ratio to the decode
says how much of a decode it costs (it reads the header and metadata only,
``tests/test_info.py`` checks that no payload is read).

Writes ``OUT/NAME.json`` and ``OUT/NAME.md``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gscodec
from gscodec.info import info
from gscodec.synthetic import make_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, report_header, timed_process, write_report  # noqa: E402

BAR_SECONDS = 1.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="info_speed")
    args = ap.parse_args(argv)
    report = report_header("info_speed.py", argv)
    exe = shutil.which("gscodec") or "gscodec"
    with tempfile.TemporaryDirectory(prefix="gscodec-info-") as tmp:
        gsz = Path(tmp) / "scene.gsz"
        g = make_scene(args.gaussians, sh_degree=3, seed=1)
        gsz.write_bytes(gscodec.encode(g, views=0))
        del g
        runs = {"info": [], "decode": []}
        for _ in range(args.repeats):
            runs["info"].append(timed_process([exe, "info", str(gsz)])["seconds"])
            runs["decode"].append(timed_process(
                [exe, "decode", str(gsz), "-o", str(Path(tmp) / "out.ply"), "--no-refine",
                 "--force", "--quiet"])["seconds"])
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            info(gsz)
        in_process = (time.perf_counter() - t0) / args.repeats
        file_bytes = gsz.stat().st_size
    med = {k: statistics.median(v) for k, v in runs.items()}
    report.update({"gaussians": args.gaussians, "sh_degree": 3, "file_bytes": file_bytes,
                   "runs": runs, "median_s": med, "info_in_process_s": in_process,
                   "info_over_decode": med["info"] / med["decode"],
                   "bar_seconds": BAR_SECONDS, "bar_met": med["info"] < BAR_SECONDS})
    md = [f"# gscodec info speed ({report['date']})", "",
          f"Command: `{report['command']}`", "",
          f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; load "
          f"average {report['load_average']:.2f} at the start (above about 0.5 other work "
          "shared the cores).", "",
          f"A synthetic {args.gaussians:,}-Gaussian SH-3 scene at the default preset without "
          f"side information: {file_bytes:,} bytes. Median of {args.repeats} fresh processes "
          "each (interpreter start and imports included).", "",
          "| command | median s | runs (s) |", "|---|---:|---|",
          *(f"| `gscodec {k}{' --no-refine' if k == 'decode' else ''}` | {med[k]:.3f} | "
            f"{', '.join(f'{x:.2f}' for x in runs[k])} |" for k in ("info", "decode")), "",
          f"`gscodec.info.info` in one process: {1000 * in_process:.1f} ms. `info` / decode: "
          f"**{report['info_over_decode']:.3f}**. Bar (info under {BAR_SECONDS:.0f} s): "
          f"{'met' if report['bar_met'] else 'NOT met'}.", ""]
    write_report(args.out, args.name, report, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
