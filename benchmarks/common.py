"""Helpers shared by the benchmark scripts: machine facts, the peer tool, timed processes."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import gscodec

HERE = Path(__file__).resolve().parent
PEERS = HERE.parent.parent / "shared" / "tools" / "peers"


def pyplot(path: Path) -> Any:
    """matplotlib's pyplot (Agg) for the plot at ``path``, or None with a line on stderr when
    matplotlib is not installed (``pip install matplotlib``, the ``bench`` extra): a plot is
    never the reason a benchmark's figures are lost."""
    try:
        import matplotlib
    except ImportError:
        print(f"no plot {path}: pip install matplotlib", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def report_header(script: str, argv: list[str] | None) -> dict[str, Any]:
    """The fields every results file starts with: date, the command that made it
    (``python3 benchmarks/SCRIPT`` with its arguments) and the machine."""
    import datetime

    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(["python3", f"benchmarks/{script}", *(argv or sys.argv[1:])]),
            "machine": machine(),
            # the 1-minute load average when the run started: above about 0.5 on this 2-core
            # machine other work shared the cores, and seconds in the report are inflated
            "load_average": os.getloadavg()[0]}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import constriction  # noqa: F401

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "gscodec": gscodec.__version__,
    }


def peer_tool() -> str | None:
    installer = PEERS / "install.sh"
    if not installer.exists():
        return None
    try:
        out = subprocess.run([str(installer)], check=True, capture_output=True, text=True)
    except (subprocess.CalledProcessError, OSError):
        return None
    return out.stdout.strip().splitlines()[-1]


def add_peer_run_arguments(ap: Any, name: str) -> None:
    """The options every script that runs the peers shares: where their outputs are cached
    (one cache for all, so a peer file is made once), the renderer, the results folder and the
    results' name."""
    ap.add_argument("--peer-cache", type=Path,
                    default=Path.home() / ".cache" / "gscodec-peer-outputs")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default=name)


def timed_process(cmd: list[str], *, keep_output: bool = False) -> dict[str, Any]:
    """Run ``cmd`` in a fresh interpreter that reports the child's wall time and peak RSS.
    A failure raises RuntimeError, unless ``keep_output``: then the result also holds the exit
    code and the last 2000 characters of stdout and stderr, and a failure is the caller's."""
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "wall = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps({'rc': r.returncode, 'seconds': wall, 'peak_bytes': peak,\n"
        "                  'stdout': r.stdout.decode(errors='replace')[-2000:],\n"
        "                  'stderr': r.stderr.decode(errors='replace')[-2000:]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout)
    if keep_output:
        return result
    if result["rc"] != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result['stderr'][-400:]}")
    return {k: result[k] for k in ("rc", "seconds", "peak_bytes", "stderr")}


def parse_int_list(text: str) -> list[int]:
    """``"1-3,7"`` -> ``[1, 2, 3, 7]``."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def write_report(out: Path, name: str, report: dict[str, Any], markdown: str) -> None:
    """``OUT/NAME.json`` and ``OUT/NAME.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)


def ratio_and_bar_tables(ratios: dict[str, float], bars: dict[str, bool]) -> list[str]:
    """Markdown lines: a table of the ratios, then one of the bars and whether each is met."""
    return ["| ratio | value |", "|---|---:|",
            *(f"| {k} | {v:.3f} |" for k, v in ratios.items()), "",
            "| bar | met |", "|---|:-:|",
            *(f"| {k} | {'yes' if v else 'NO'} |" for k, v in bars.items()), ""]
