"""Time of the encoder's importance estimate on a synthetic 1M-Gaussian SH-3 scene (see the .md)."""

import time

import torch

from gscodec import encoder
from gscodec.codec.attributes import morton_order
from gscodec.codec.quality import preset
from gscodec.synthetic import make_scene

g = make_scene(1_000_000, sh_degree=3, seed=0)
arrays = encoder._validated_arrays(g)
order = morton_order(arrays["means"], preset(7))
t = time.time()
encoder._importance(arrays, order, "cpu", None, False)
print(f"importance at 1M SH-3: {time.time() - t:.1f} s; torch threads {torch.get_num_threads()}")
