"""How fast refinement may move the SH rest inside its quantization cells: the experiment behind
``RefineConfig.cell_lr["sh_rest"]`` (gscodec/refine.py).

    python3 benchmarks/sh_rest_lr.py SCENE.ply QUALITY SIDE_VIEWS LR[,LR...]

Encodes SCENE at preset QUALITY with SIDE_VIEWS views of side information, decodes it without
refinement and with 30 Adam steps on the CPU for each SH-rest cell learning rate LR (the other
groups at their defaults), and prints the mean PSNR over the tuning split's evaluation views (4
views of seed 1 at 512 px) of each, against the original's renders. One line per run on stdout;
``benchmarks/results/sh-rest-lr.md`` collects the lines of the runs that chose the default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gscodec
import gscodec.refine as refine_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluation as ev  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", type=Path)
    ap.add_argument("quality", type=int)
    ap.add_argument("views", type=int, help="side-information views")
    ap.add_argument("rates", help="comma list of SH-rest cell learning rates")
    a = ap.parse_args(argv)
    ply, quality, views, rates = a.scene, a.quality, a.views, a.rates
    ev.check_split([ply], "tuning")
    g = gscodec.read_ply(ply)
    opts = SimpleNamespace(sizes=[512], cameras=None, views=4, split="tuning", seed=None)
    ref = ev.reference(g, opts, "cpu")
    data = gscodec.encode(g, quality, views=views)
    base = ev.fidelity(ref, gscodec.decode(data, refine=False), "cpu")["psnr"]
    print(f"{ply.stem} q{quality}, {views} side views: base {base:.2f} dB, {len(data):,} B",
          flush=True)
    original = refine_module.refine
    try:
        for lr in (float(x) for x in rates.split(",")):
            def patched(*a, lr=lr, **k):
                cfg = k.get("config") or (a[3] if len(a) > 3 else None)
                if cfg is not None:
                    cfg.cell_lr["sh_rest"] = lr
                return original(*a, **k)

            refine_module.refine = patched
            t = time.perf_counter()
            dec = gscodec.decode(data, steps=30, device="cpu", method="adam")
            p = ev.fidelity(ref, dec, "cpu")["psnr"]
            print(f"  sh_rest cell lr {lr:g}: refined {p:.2f} dB, gain {p - base:+.2f} dB "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
    finally:
        refine_module.refine = original


if __name__ == "__main__":
    main()
