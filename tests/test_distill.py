"""benchmarks/distill.py: fitting a full-precision SH-3 scene to renders of another scene.

A tiny synthetic SH-0 source (300 Gaussians) is distilled for 60 iterations at 32 px, twice with
one seed, through the command line; the output must be a float32 SH-3 INRIA PLY whose renders
beat the initialisation at held-out views, whose values are not the source's, whose count the
scheduled refinement changed, and whose bytes repeat for the seed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gscodec
from gscodec.cameras import random_encoder_views
from gscodec.render import render
from gscodec.synthetic import make_scene

ROOT = Path(__file__).resolve().parent.parent


def _load_distill():
    spec = importlib.util.spec_from_file_location("gscodec_bench_distill",
                                                  ROOT / "benchmarks" / "distill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


distill = _load_distill()

ITERS, REFINE_AT = 60, 40
ARGS = ["--seed", "3", "--iters", str(ITERS), "--size", "32", "--views", "12",
        "--eval-views", "4", "--sh-every", "10", "--refine-every", str(REFINE_AT),
        "--refine-start", str(REFINE_AT - 10), "--refine-stop", str(REFINE_AT + 1),
        "--device", "cpu", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: the tensors are tiny, and a second thread on a shared 2-core machine costs
    more in contention than it brings (the CLI's --threads 1 sets the same)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    source = make_scene(300, sh_degree=0, seed=21)
    src_path = tmp / "source.ply"
    gscodec.write_ply(src_path, source)
    outs = []
    for name in ("a", "b"):
        out = tmp / f"{name}.ply"
        assert distill.main([str(src_path), str(out), *ARGS]) == 0
        outs.append(out)
    return source, outs


def test_output_is_float32_sh3_with_all_bands_used(runs):
    _, (out, _) = runs
    head = out.read_bytes()[:4096].split(b"end_header")[0].decode()
    props = [line.split() for line in head.splitlines() if line.startswith("property")]
    assert props and all(p[1] == "float" for p in props)  # float32, every property
    g = gscodec.read_ply(out)
    assert g.sh_degree == 3 and g.sh.dtype == np.float32
    for band in (slice(1, 4), slice(4, 9), slice(9, 16)):  # bands 1-3 learned, not left at 0
        assert float(np.abs(g.sh[:, band]).max()) > 1e-4
    assert np.isfinite(g.as_arrays()["means"]).all()


def test_sidecar_and_improvement_over_initialisation(runs):
    _, (out, _) = runs
    report = json.loads(out.with_suffix(".json").read_text())
    for key in ("source", "seed", "iters", "size", "gaussians", "psnr", "psnr_init",
                "wall_seconds", "device"):
        assert key in report
    assert report["seed"] == 3 and report["iters"] == ITERS and report["size"] == 32
    assert report["device"] == "cpu" and report["gaussians"] == gscodec.read_ply(out).n
    assert report["psnr"] > report["psnr_init"] + 1.0, report


def test_values_are_not_the_sources(runs):
    source, (out, _) = runs
    g = gscodec.read_ply(out)
    src = source.numpy()

    def rows(a: np.ndarray) -> set[bytes]:
        return {r.tobytes() for r in np.ascontiguousarray(a.reshape(a.shape[0], -1))}

    assert not rows(g.means) & rows(src.means)  # no output position is a source position
    assert not rows(g.sh[:, 0]) & rows(src.sh[:, 0])  # nor a base colour
    assert not rows(g.log_scales) & rows(src.log_scales)
    assert not set(g.opacity_logits.tolist()) & set(src.opacity_logits.tolist())


def test_scheduled_refinement_changed_the_count(runs):
    _, (out, _) = runs
    report = json.loads(out.with_suffix(".json").read_text())
    steps = [r["step"] for r in report["refinements"]]
    assert steps == [REFINE_AT]  # the one step the schedule names, and no other
    event = report["refinements"][0]
    assert event["after"] != event["before"] and event["cloned"] + event["split"] > 0


def test_same_seed_same_bytes(runs):
    _, (a, b) = runs
    assert a.read_bytes() == b.read_bytes()


def test_count_cap():
    source = make_scene(200, sh_degree=0, seed=4)
    cfg = distill.DistillConfig(iters=12, size=24, views=4, eval_views=1, init_gaussians=150,
                                max_gaussians=160, refine_every=10, refine_start=5,
                                refine_stop=11, grow_grad2d=0.0)
    result = distill.distill(source, cfg, seed=1, device="cpu")
    event = result.refinements[0]
    assert event["before"] < event["after"] <= 160 and result.gaussians.n <= 160


def test_training_render_is_the_projects_render():
    """The CPU training path composes gscodec.render.render from its parts (to keep the 2D
    means' gradient): it must give the same image."""
    g = make_scene(200, sh_degree=3, seed=8)
    cam = random_encoder_views(g.means, 1, 24, np.random.default_rng(0))[0]
    t = g.torch()
    params = {"means": t.means, "quats": t.quats, "scales": t.log_scales,
              "opacities": t.opacity_logits, "sh0": t.sh[:, :1], "shN": t.sh[:, 1:]}
    params["means"] = params["means"].clone().requires_grad_(True)
    bg = torch.tensor([0.2, 0.5, 0.7])
    mine, means2d, visible = distill.render_train_cpu(params, cam, 3, bg)
    ref = render(g, cam, background=bg, backend="cpu").image
    assert torch.allclose(mine, ref, atol=1e-6)
    mine.sum().backward()
    assert means2d.grad is not None and visible.any()


def test_refuses_output_inside_the_repository(tmp_path):
    src = tmp_path / "s.ply"
    gscodec.write_ply(src, make_scene(20, sh_degree=0, seed=1))
    target = ROOT / "distilled-never-written.ply"
    with pytest.raises(SystemExit) as e:
        distill.main([str(src), str(target), "--iters", "1", "--quiet"])
    assert e.value.code == 2 and not target.exists()
