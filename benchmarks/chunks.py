"""Chunked files (GSZ.md 11) on a large synthetic scene, timed in one run: a box decode against
the whole decode, ``jobs=2`` against ``jobs=1`` (bytes and decodes identical; also the streamed
part-by-part decode that ``gscodec decode`` writes a base-layer PLY from), and what chunking
costs against a plain file of the same scene.

    python3 benchmarks/chunks.py [--gaussians 4000000] [--degree 3] [--quality 7]
                                 [--share 0.1] [--chunk-size 65536] [--out DIR] [--name chunks]

Makes a synthetic scene (``gscodec.synthetic.make_scene``, seed 1) and, in this process:
encodes it without side information as a chunked file with ``jobs=2`` and ``jobs=1`` and as a
plain file (``chunk_size`` = the scene); decodes the chunked file whole with ``jobs=1`` and
``jobs=2``, the plain file whole, and a box around the scene's median position that holds
``--share`` of the Gaussians (a cube, grown until it does) with ``jobs=1`` and ``jobs=2``.
The bars of the scale issue: the box decode takes at most 1/5 of the whole decode (same jobs);
``jobs=2`` decodes at least 1.6x faster than ``jobs=1`` on 2 cores, with identical bytes.

Writes ``OUT/NAME.json`` and ``OUT/NAME.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import gscodec
from gscodec.synthetic import make_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, ratio_and_bar_tables, report_header, write_report  # noqa: E402

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def _consume(data: bytes, jobs: int) -> int:
    """The base layer part by part, as ``gscodec decode`` to a PLY without refinement reads
    it (``decode_parts``; nothing written): the Gaussians seen."""
    _, _, parts = gscodec.api.decode_parts(data, jobs=jobs)
    return sum(p["means"].shape[0] for p in parts)


def _same(a: gscodec.Gaussians, b: gscodec.Gaussians) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)


def box_shares(g: gscodec.Gaussians, lo: np.ndarray, hi: np.ndarray,
               sizes: list[int]) -> list[dict[str, Any]]:
    """For each chunk size, the chunks the encoder would cut and the share of the Gaussians
    held by those whose box (the bounds of their centres) meets ``[lo, hi]``."""
    cover = gscodec.chunks.coverage(g.opacity_logits, g.log_scales)
    out = []
    for size in sizes:
        plan = gscodec.chunks.split(g.means, cover, size)
        held = 0
        for layers in plan:
            m = g.means[np.concatenate(layers)]
            if np.all(m.min(axis=0) <= hi) and np.all(m.max(axis=0) >= lo):
                held += m.shape[0]
        out.append({"chunk_size": size, "chunks": len(plan), "share": held / g.n})
    return out


def share_box(means: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """A cube around the median position holding about ``share`` of the Gaussians."""
    centre = np.median(means, axis=0)
    far = np.abs(means - centre).max(axis=1)  # (the half-side a cube needs to hold each)
    r = float(np.quantile(far, share))
    return centre - r, centre + r


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gaussians", type=int, default=4_000_000)
    ap.add_argument("--degree", type=int, default=3)
    ap.add_argument("--quality", type=int, default=7)
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--chunk-size", type=int, default=gscodec.chunks.DEFAULT_CHUNK_SIZE)
    ap.add_argument("--shares-for", default="65536,32768,16384,8192,4096", metavar="SIZES",
                    help="chunk sizes at which to count the Gaussians the box's chunks hold")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="chunks")
    args = ap.parse_args(argv)
    report = report_header("chunks.py", argv)
    g = make_scene(args.gaussians, sh_degree=args.degree, seed=1)
    q = args.quality
    t: dict[str, float] = {}
    cs = args.chunk_size
    data, t["encode jobs=2"] = _timed(gscodec.encode, g, q, views=0, jobs=2, chunk_size=cs)
    data1, t["encode jobs=1"] = _timed(gscodec.encode, g, q, views=0, jobs=1, chunk_size=cs)
    plain, t["encode plain"] = _timed(gscodec.encode, g, q, views=0,
                                        chunk_size=g.n)
    lo, hi = share_box(g.means, args.share)
    shares = box_shares(g, lo, hi, [int(x) for x in args.shares_for.split(",") if x])
    del g
    full1, t["decode jobs=1"] = _timed(gscodec.decode, data, refine=False, jobs=1)
    full2, t["decode jobs=2"] = _timed(gscodec.decode, data, refine=False, jobs=2)
    same_decode = _same(full1, full2)
    inside = int(((full1.means >= lo) & (full1.means <= hi)).all(axis=1).sum())
    n = full1.n
    del full2
    whole_plain, t["decode plain"] = _timed(gscodec.decode, plain, refine=False)
    del whole_plain
    _, t["streamed jobs=1"] = _timed(_consume, data, 1)
    _, t["streamed jobs=2"] = _timed(_consume, data, 2)
    box1, t["box jobs=1"] = _timed(gscodec.decode, data, region=(lo, hi), jobs=1)
    box2, t["box jobs=2"] = _timed(gscodec.decode, data, region=(lo, hi), jobs=2)
    box_ok = box1.n == inside and _same(box1, box2)
    info = gscodec.inspect(data)
    ratios = {"box / whole, jobs=1": t["box jobs=1"] / t["decode jobs=1"],
              "box / whole, jobs=2": t["box jobs=2"] / t["decode jobs=2"],
              "decode jobs=1 / jobs=2": t["decode jobs=1"] / t["decode jobs=2"],
              "encode jobs=1 / jobs=2": t["encode jobs=1"] / t["encode jobs=2"],
              "streamed decode jobs=1 / jobs=2": t["streamed jobs=1"] / t["streamed jobs=2"],
              "chunked / plain bytes": len(data) / len(plain),
              "chunked (jobs=1) / plain decode": t["decode jobs=1"] / t["decode plain"]}
    bars = {"box decode <= 1/5 of the whole (jobs=1)": ratios["box / whole, jobs=1"] <= 0.2,
            "jobs=2 decodes >= 1.6x faster": ratios["decode jobs=1 / jobs=2"] >= 1.6,
            "bytes identical for jobs 1 and 2": data == data1,
            "decodes identical for jobs 1 and 2": same_decode,
            "box decode = whole decode's Gaussians in the box": box_ok}
    report.update({"gaussians": n, "sh_degree": args.degree, "quality": q, "chunk_size": cs,
                   "chunks": info["chunks"], "bytes": {"chunked": len(data), "plain": len(plain)},
                   "box": [lo.tolist(), hi.tolist()], "box_gaussians": inside, "seconds": t,
                   "ratios": ratios, "bars": bars, "box_shares": shares})
    md = [f"# Chunked files ({report['date']})", "",
          f"Command: `{report['command']}`", "",
          f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; load "
          f"average {report['load_average']:.2f} at the start (above about 0.5 other work "
          "shared the cores).", "",
          f"A synthetic {n:,}-Gaussian SH-{args.degree} scene (seed 1) at preset {q}, no side "
          f"information: chunked {len(data):,} bytes ({info['chunks']['count']} chunks of 2 "
          f"layers, chunk size {cs:,}), plain {len(plain):,} bytes. The box holds "
          f"{inside:,} Gaussians ({inside / n:.1%}). One run each, in one process (the job "
          "pools' start included).", "",
          "| step | seconds |", "|---|---:|",
          *(f"| {k} | {v:.2f} |" for k, v in t.items()), "",
          *ratio_and_bar_tables(ratios, bars), "",
          "What a chunk-level box decode can reach: the share of the scene's Gaussians that the "
          "chunks meeting the box hold, by chunk size (from the chunk split alone, nothing "
          "decoded). A box decode decodes every part of those chunks whole, so its time is at "
          "least about this share of the whole decode's.", "",
          "| chunk size | chunks | share of the Gaussians decoded for the box |",
          "|---:|---:|---:|",
          *(f"| {r['chunk_size']:,} | {r['chunks']} | {r['share']:.3f} |" for r in shares)]
    write_report(args.out, args.name, report, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
