"""Time and peak memory of the encoder's importance estimate on a synthetic 1M-Gaussian SH-3
scene, by estimate: ``faithful`` (presets 6-10: the SH rest's closed form, forward renders) or
``canonical`` (presets 1-5: gradients). See the .md."""

import resource
import sys
import time

import torch

from gscodec import encoder
from gscodec.codec.attributes import morton_order
from gscodec.codec.quality import preset
from gscodec.synthetic import make_scene


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


g = make_scene(1_000_000, sh_degree=3, seed=0)
arrays = encoder._validated_arrays(g)
order = morton_order(arrays["means"], preset(7))
base = peak_mb()
t = time.time()
encoder._importance(arrays, order, "cpu", None, sys.argv[1] == "canonical")
print(f"importance ({sys.argv[1]}) at 1M SH-3: {time.time() - t:.1f} s; peak RSS before "
      f"{base:.0f} MB, after {peak_mb():.0f} MB; torch threads {torch.get_num_threads()}")
