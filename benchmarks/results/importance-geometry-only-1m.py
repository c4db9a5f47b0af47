"""An experiment for the next step (not the encoder's code): the gradient estimate of presets 1-5
with the SH coefficients outside the autograd graph (their sensitivities would come from the
closed form, ``importance.sh_sensitivities``), so that the backward pass serves the scales and
rotations only. Time and peak memory at 1M SH-3 Gaussians, as ``importance-cost-1m-exact.py``
measures the encoder's two estimates. See the .md."""

import resource
import time

import numpy as np
import torch

from gscodec import encoder
from gscodec.cameras import encoder_views
from gscodec.codec.attributes import morton_order
from gscodec.codec.quality import preset
from gscodec.gaussians import Gaussians
from gscodec.render import deterministic, render
from gscodec.synthetic import make_scene


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def geometry_only(g: Gaussians, cams: list) -> dict[str, np.ndarray]:
    arrays = g.as_arrays()
    p = {k: torch.tensor(arrays[k], requires_grad=k in ("quats", "log_scales"))
         for k in ("means", "quats", "log_scales", "opacity_logits")}
    sh = torch.from_numpy(arrays["sh"])  # no gradient
    acc = {k: torch.zeros(g.n, dtype=torch.float64) for k in ("quats", "log_scales")}
    gen = torch.Generator().manual_seed(0)
    with deterministic(), torch.enable_grad():
        for cam in cams:
            image = render(Gaussians(p["means"], p["quats"], p["log_scales"],
                                     p["opacity_logits"], sh), cam, backend="cpu").image
            v = torch.randint(0, 2, tuple(image.shape), generator=gen).to(image) * 2 - 1
            dq, ds = torch.autograd.grad((image * v).sum(), [p["quats"], p["log_scales"]])
            acc["quats"] += (dq.double() ** 2).sum(dim=1)
            acc["log_scales"] += (ds.double() ** 2).mean(dim=1)
    return {k: v.numpy() for k, v in acc.items()}


g = make_scene(1_000_000, sh_degree=3, seed=0)
arrays = encoder._validated_arrays(g)
order = morton_order(arrays["means"], preset(3))
base = peak_mb()
t = time.time()
ordered = Gaussians.from_arrays({k: v[order] for k, v in arrays.items()})
geometry_only(ordered, encoder_views(arrays["means"], encoder.IMPORTANCE_VIEWS,
                                     encoder.IMPORTANCE_SIZE))
print(f"geometry-only gradient estimate at 1M SH-3: {time.time() - t:.1f} s; peak RSS before "
      f"{base:.0f} MB, after {peak_mb():.0f} MB; torch threads {torch.get_num_threads()}")
