"""Candidate preset tables against today's, measured on the tuning split: the check that a
re-derived table (for example the proposal of ``attribute_sweep.py``'s allocation) is better in
fact, not only in prediction.

    python3 benchmarks/presets.py SCENE.ply [...] --candidates FILE.json [--qualities 1-5]
                                  [--split tuning] [--views 6] [--sizes 512]
                                  [--out benchmarks/results] [--name presets]

``FILE.json``: ``{"NAME": {"Q": {"position_bits": ..., ...}, ...}, ...}``; each preset's entry
replaces only the steps it names (the others stay today's); a candidate's optional key
``"constants": {"gscodec.MODULE:NAME": value}`` replaces module constants for all its
presets' encodes (:data:`CONSTANTS_KEY`). Every preset of ``--qualities`` is
encoded with today's table and with each candidate (the encoder's defaults otherwise:
importance classes at presets 1-5, no side information), decoded without refinement and
rendered at the split's evaluation views. Reported per scene and candidate: each preset's bytes
and PSNR, and the Bjontegaard-style rate difference against today's curve: the mean over the
PSNR range both curves cover of the difference in log bytes at equal PSNR (piecewise linear in
(PSNR, log bytes); -0.03 = 3% fewer bytes at equal PSNR).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import gscodec
from gscodec.codec.quality import preset
from gscodec.render import resolve_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluation as ev  # noqa: E402
from common import HERE, parse_int_list, report_header, write_report  # noqa: E402

TODAY = "today"


CONSTANTS_KEY = "constants"
"""A candidate's optional key: ``{"module:NAME": value}``, module constants of gscodec that
the candidate's encodes see instead of theirs (lists become tuples), e.g.
``"gscodec.codec.adaptive:ADAPTED"`` (the attributes with per-class steps) or
``"gscodec.codec.attributes:TRANSFORM_MIN_ROWS"``."""


@contextlib.contextmanager
def constants(spec: dict[str, Any]) -> Iterator[None]:
    """Encode with the candidate's module constants (``CONSTANTS_KEY``) where it sets any."""
    saved = []
    try:
        for key, value in spec.get(CONSTANTS_KEY, {}).items():
            module_name, _, name = key.partition(":")
            if not module_name.startswith("gscodec.") or not name:
                raise SystemExit(f"{CONSTANTS_KEY}: {key!r} is not 'gscodec.MODULE:NAME'")
            module = importlib.import_module(module_name)
            if not hasattr(module, name):
                raise SystemExit(f"{CONSTANTS_KEY}: {module_name} has no {name}")
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, tuple(value) if isinstance(value, list) else value)
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def candidate_params(spec: dict[str, Any], q: int) -> Any:
    base = preset(q)
    changes = dict(spec.get(str(q), {}))
    if "sh_rest_steps" in changes:
        changes["sh_rest_steps"] = tuple(float(x) for x in changes["sh_rest_steps"])
    for k, v in changes.items():
        if k not in {f.name for f in dataclasses.fields(base)}:
            raise SystemExit(f"candidate step {k!r} is not a preset field")
        if k != "sh_rest_steps":
            changes[k] = type(getattr(base, k))(v)
    return dataclasses.replace(base, **changes)


def _log_rate_at(curve: list[tuple[float, float]], p: float) -> float:
    pts = sorted(curve)
    xs = [c[0] for c in pts]
    return float(np.interp(p, xs, [math.log(c[1]) for c in pts]))


def bd_rate(reference: list[tuple[float, float]], other: list[tuple[float, float]],
            samples: int = 200) -> float | None:
    """Mean over the PSNR range both ``(psnr, bytes)`` curves cover of exp(log bytes difference)
    - 1 (piecewise linear in PSNR and log bytes); None where the ranges do not overlap. Each
    curve must rise in PSNR with bytes (a non-monotone curve is taken at its sorted points)."""
    lo = max(min(p for p, _ in reference), min(p for p, _ in other))
    hi = min(max(p for p, _ in reference), max(p for p, _ in other))
    if not hi > lo:
        return None
    grid = np.linspace(lo, hi, samples)
    diff = [_log_rate_at(other, p) - _log_rate_at(reference, p) for p in grid]
    return math.exp(float(np.mean(diff))) - 1.0


def bench_scene(ply: Path, args: argparse.Namespace, candidates: dict[str, Any], backend: str
                ) -> dict[str, Any]:
    ref = gscodec.read_ply(ply)
    evref = ev.reference(ref, args, backend)
    curves: dict[str, list[dict[str, Any]]] = {}
    for name, spec in {TODAY: {}, **candidates}.items():
        curves[name] = []
        for q in args.qualities:
            params = candidate_params(spec, q)
            with constants(spec):
                data = gscodec.encode(ref, quality=q, views=0, params=params)
            f = ev.fidelity(evref, gscodec.decode(data, refine=False), backend)
            curves[name].append({"quality": q, "bytes": len(data), "params": params.as_dict(),
                                 **f})
            print(f"  {ply.stem} {name} q{q}: {len(data):,} B, {f['psnr']:.2f} dB",
                  file=sys.stderr, flush=True)
    today = [(r["psnr"], r["bytes"]) for r in curves[TODAY]]
    bd = {name: bd_rate(today, [(r["psnr"], r["bytes"]) for r in rows])
          for name, rows in curves.items() if name != TODAY}
    return {"scene": ply.stem, "split": ev.split_of(ev.scene_name(ply)), "gaussians": ref.n,
            "sh_degree": ref.sh_degree, "curves": curves, "bd_rate": bd}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Preset tables against today's ({report['date']})", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores. Split "
             f"{report['split']}: {report['views']} evaluation views of seed "
             f"{report['view_seed']} at {report['sizes'][0]} px; base layer (no side "
             "information), importance classes as the encoder's defaults.", "",
             "Candidates:", "", "```json", json.dumps(report["candidates"], indent=1), "```", ""]
    for s in report["scenes"]:
        lines += [f"## {s['scene']} ({s['split']}): {s['gaussians']:,} Gaussians, SH "
                  f"{s['sh_degree']}", "", "| table | preset | bytes | PSNR (dB) |",
                  "|---|---:|---:|---:|"]
        for name, rows in s["curves"].items():
            lines += [f"| {name} | {r['quality']} | {r['bytes']:,} | {r['psnr']:.2f} |"
                      for r in rows]
        lines += ["", "| table | bytes against today's at equal PSNR |", "|---|---:|"]
        for name, v in s["bd_rate"].items():
            lines.append(f"| {name} | {'no overlap' if v is None else f'{100 * v:+.1f}%'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", type=Path)
    ev.add_arguments(ap, views=6, sizes="512")
    ap.add_argument("--candidates", type=Path, required=True)
    ap.add_argument("--qualities", type=parse_int_list, default=list(range(1, 6)))
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="presets")
    args = ap.parse_args(argv)
    ev.check_split(args.scenes, args.split)
    candidates = json.loads(args.candidates.read_text())
    if not isinstance(candidates, dict) or TODAY in candidates:
        raise SystemExit(f"{args.candidates}: an object of named tables (not {TODAY!r})")
    for spec in candidates.values():
        for q in args.qualities:
            candidate_params(spec, q)  # refuse unknown fields before measuring anything
        with constants(spec):
            pass
    backend = resolve_backend(args.backend)
    report: dict[str, Any] = {**report_header("presets.py", argv), "backend": backend,
                              "split": args.split, "view_seed": ev.view_seed(args),
                              "views": args.views, "sizes": args.sizes,
                              "candidates": candidates, "scenes": []}
    for ply in args.scenes:
        report["scenes"].append(bench_scene(ply, args, candidates, backend))
        write_report(args.out, args.name, report, markdown(report))
    print(json.dumps({"scenes": len(report["scenes"])}))
    return report


if __name__ == "__main__":
    main()
