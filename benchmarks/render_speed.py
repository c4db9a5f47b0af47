"""Renderer speed: forward, and forward + backward, at several scene sizes and resolutions.

    python3 benchmarks/render_speed.py [--sizes 100000,1000000] [--pixels 256,512]
                                       [--backends cpu,gsplat,cpu:cuda] [--repeats 3]
                                       [--out benchmarks/results] [--name render_speed]

Scenes are synthetic (``gscodec.synthetic.make_scene``, SH degree 3) and viewed from the first
evaluation view. Each figure is the median of ``--repeats`` runs after one warm-up; the backward
pass is that of the sum of the image with respect to every attribute. The gsplat backend is
measured where CUDA is present (elsewhere it is listed as skipped), and so is ``cpu:cuda``, the
pure-PyTorch renderer on the GPU. Writes ``OUT/NAME.json`` and
``OUT/NAME.md`` with the command, machine and date.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from gscodec.cameras import evaluation_views
from gscodec.render import gsplat_available, render
from gscodec.synthetic import make_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, report_header  # noqa: E402

ATTRS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(g, cam, spec: str, repeats: int) -> dict[str, float]:
    backend, _, device = spec.partition(":")
    device = device or ("cuda" if backend == "gsplat" else "cpu")
    t = g.torch(device)
    fwd, both = [], []
    for i in range(repeats + 1):
        with torch.no_grad():
            _sync(device)
            t0 = time.perf_counter()
            render(t, cam, backend=backend)
            _sync(device)
            t1 = time.perf_counter()
        leaves = t.torch(device)
        for name in ATTRS:
            getattr(leaves, name).requires_grad_(True)
        _sync(device)
        t2 = time.perf_counter()
        render(leaves, cam, backend=backend).image.sum().backward()
        _sync(device)
        t3 = time.perf_counter()
        if i:  # the first run warms up
            fwd.append(t1 - t0)
            both.append(t3 - t2)
    return {"forward_s": statistics.median(fwd), "forward_backward_s": statistics.median(both)}


def _seconds(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 0.1 else f"{s:.2f} s"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Renderer speed ({report['date']})", "", f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, torch "
             f"threads {report['torch_threads']}, GPU: {report['cuda'] or 'none'}.", "",
             "| Gaussians | pixels | backend | forward | forward + backward |",
             "|---:|---:|---|---:|---:|"]
    for r in report["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['gaussians']:,} | {r['pixels']}^2 | {r['backend']} | "
                         f"skipped ({r['skipped']}) | |")
        else:
            lines.append(f"| {r['gaussians']:,} | {r['pixels']}^2 | {r['backend']} | "
                         f"{_seconds(r['forward_s'])} | {_seconds(r['forward_backward_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--pixels", default="256,512")
    ap.add_argument("--backends", default="cpu,gsplat",
                    help="comma list of cpu, gsplat, cpu:cuda (the pure-PyTorch renderer on "
                         "the GPU, what 'auto' falls back to where gsplat does not render)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="render_speed")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {
        **report_header("render_speed.py", argv),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "rows": [],
    }
    for n in (int(x) for x in args.sizes.split(",")):
        g = make_scene(n, sh_degree=3, seed=1)
        for px in (int(x) for x in args.pixels.split(",")):
            cam = evaluation_views(g.means, 1, px)[0]
            for backend in args.backends.split(","):
                row: dict[str, Any] = {"gaussians": n, "pixels": px, "backend": backend}
                if backend == "gsplat" and not gsplat_available():
                    row["skipped"] = "no CUDA"
                elif backend.endswith(":cuda") and not torch.cuda.is_available():
                    row["skipped"] = "no CUDA"
                else:
                    row.update(measure(g, cam, backend, args.repeats))
                report["rows"].append(row)
                print(json.dumps(row), file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
