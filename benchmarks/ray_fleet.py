"""A fleet of scenes on a local Ray cluster against the same scenes encoded one by one, in one
run: ``gscodec encode A B C --ray ADDRESS`` writes the files that ``gscodec encode X`` writes
for each scene alone (the bar of the scale issue), and how long each way takes.

    python3 benchmarks/ray_fleet.py SCENE.ply [SCENE.ply ...] [--cpus N] [--out DIR]
                                    [--name ray] [-- ENCODE OPTIONS]

Starts a local Ray cluster with ``--cpus`` CPUs (default: every core) in this process, then
runs, each as its own ``gscodec`` process with the default preset and side information (or
the encode options after ``--``): every scene alone (``--jobs 1``), all scenes with ``--jobs``
= the CPUs, and all scenes with ``--ray`` at the cluster's address; compares every file's
bytes with the one-by-one encode. The cluster's start is timed on its own (a fleet on a
running cluster does not pay it).

Writes ``OUT/NAME.json`` and ``OUT/NAME.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, report_header, timed_process, write_report  # noqa: E402

CLI = [sys.executable, "-m", "gscodec.cli.main", "encode"]


def _digests(folder: Path, scenes: list[Path]) -> list[str]:
    return [hashlib.sha256((folder / f"{p.stem}.gsz").read_bytes()).hexdigest()
            for p in scenes]


def run(scenes: list[Path], cpus: int, options: list[str]) -> dict[str, Any]:
    import ray

    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")
    start_s = time.perf_counter() - t
    address = ray.get_runtime_context().gcs_address
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {k: Path(tmp) / k for k in ("alone", "jobs", "ray")}
        for f in folders.values():
            f.mkdir()
        alone = []
        for p in scenes:
            alone.append(timed_process([*CLI, str(p), *options, "--jobs", "1", "--quiet",
                                        "-o", str(folders["alone"] / f"{p.stem}.gsz")]))
            print(f"{p.stem} alone: {alone[-1]['seconds']:.1f} s", file=sys.stderr)
        runs["alone"] = {"seconds": sum(r["seconds"] for r in alone),
                         "per_scene_s": [r["seconds"] for r in alone]}
        for key, extra in (("jobs", ["--jobs", str(cpus)]), ("ray", ["--ray", address])):
            r = timed_process([*CLI, *map(str, scenes), *options, *extra, "--quiet",
                               "-o", str(folders[key])])
            runs[key] = {"seconds": r["seconds"], "peak_bytes_driver": r["peak_bytes"]}
            print(f"{key}: {r['seconds']:.1f} s", file=sys.stderr)
        digests = {k: _digests(f, scenes) for k, f in folders.items()}
        sizes = [(folders["alone"] / f"{p.stem}.gsz").stat().st_size for p in scenes]
    ray.shutdown()
    return {"cluster_cpus": cpus, "cluster_start_s": start_s, "options": options,
            "scenes": [{"scene": p.stem, "bytes": b, "sha256": d}
                       for p, b, d in zip(scenes, sizes, digests["alone"], strict=True)],
            "runs": runs,
            "identical": {k: digests[k] == digests["alone"] for k in ("jobs", "ray")}}


def markdown(report: dict[str, Any]) -> str:
    r = report["runs"]
    met = report["identical"]["ray"] and len(report["scenes"]) >= 3
    lines = [
        f"# A fleet of scenes on a local Ray cluster ({report['date']})", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; load "
        f"average {report['load_average']:.2f} when the run started (above about 0.5 another "
        "job shared the cores and the seconds are inflated). Local Ray cluster in the "
        f"benchmark's process, {report['cluster_cpus']} CPUs, started in "
        f"{report['cluster_start_s']:.1f} s (not counted below). Encode options: "
        f"`{' '.join(report['options']) or '(defaults: preset 7, side information)'}`.", "",
        "| scene | bytes | alone (s) |", "|---|---:|---:|",
    ]
    for s, t in zip(report["scenes"], r["alone"]["per_scene_s"], strict=True):
        lines.append(f"| {s['scene']} | {s['bytes']:,} | {t:.1f} |")
    lines += [
        "", "| run | seconds | files identical to the scenes encoded alone |",
        "|---|---:|---|",
        f"| each scene alone, one after the other (`--jobs 1`) | {r['alone']['seconds']:.1f} "
        "| (reference) |",
        f"| all scenes, `--jobs {report['cluster_cpus']}` | {r['jobs']['seconds']:.1f} | "
        f"{'yes' if report['identical']['jobs'] else 'NO'} |",
        f"| all scenes, `--ray ADDRESS` | {r['ray']['seconds']:.1f} | "
        f"{'yes' if report['identical']['ray'] else 'NO'} |",
        "", "Bar (scale issue): a local cluster encodes three scenes to files identical to the "
        f"serial ones: {'met' if met else 'NOT met'}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = given = sys.argv[1:] if argv is None else argv
    options: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, options = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="ray")
    args = ap.parse_args(argv)
    report = report_header("ray_fleet.py", given)
    report.update(run(args.scenes, args.cpus, options))
    write_report(args.out, args.name, report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
