"""Writes examples/example.ply, the small synthetic scene the README's first command encodes.

    python examples/make_example.py            # (re)creates examples/example.ply

3,000 Gaussians with SH degree 3 (about 0.75 MB), deterministic (seed 7).
"""

from pathlib import Path

from gscodec import write_ply
from gscodec.synthetic import make_scene

if __name__ == "__main__":
    out = Path(__file__).with_name("example.ply")
    write_ply(out, make_scene(3000, sh_degree=3, seed=7), force=True)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
