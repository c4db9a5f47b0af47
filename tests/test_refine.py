"""The refinement engine: against renders of the original it lowers the loss and raises PSNR on
views it never saw; it is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gscodec  # noqa: E402
from gscodec.cameras import encoder_views, evaluation_views  # noqa: E402
from gscodec.metrics import psnr  # noqa: E402
from gscodec.refine import RefineConfig, refine  # noqa: E402
from gscodec.render import render  # noqa: E402
from gscodec.synthetic import make_scene  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    g = make_scene(1200, sh_degree=1, seed=3)
    decoded = gscodec.decode(gscodec.encode(g, quality=1))
    train = encoder_views(g.means, 6, 48)
    test = evaluation_views(g.means, 4, 48)
    with torch.no_grad():
        targets = [render(g, c, backend="cpu").image.clamp(0, 1) for c in train]
    return g, decoded, train, test, targets


def _held_out_psnr(ref, other, cams):
    with torch.no_grad():
        return float(np.mean([psnr(render(ref, c, backend="cpu").image,
                                   render(other, c, backend="cpu").image) for c in cams]))


def test_refinement_lowers_the_loss_and_helps_unseen_views(setup):
    g, decoded, train, test, targets = setup
    result = refine(decoded, train, targets, RefineConfig(steps=72), backend="cpu")
    assert len(result.losses) == 72
    assert np.mean(result.losses[-6:]) < 0.8 * np.mean(result.losses[:6])
    before = _held_out_psnr(g, decoded, test)
    after = _held_out_psnr(g, result.gaussians, test)
    assert after > before + 0.3, (before, after)
    assert result.gaussians.n == decoded.n


def test_refinement_is_deterministic(setup):
    _, decoded, train, _, targets = setup
    cfg = RefineConfig(steps=8)
    a = refine(decoded, train, targets, cfg, backend="cpu").gaussians
    b = refine(decoded, train, targets, cfg, backend="cpu").gaussians
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_refinement_needs_one_target_per_camera(setup):
    _, decoded, train, _, targets = setup
    with pytest.raises(ValueError):
        refine(decoded, train, targets[:-1])


def test_refinement_within_quantization_cells(setup):
    g, decoded, train, test, targets = setup
    half = {"means": 0.01, "log_scales": 0.05, "quats": 0.02, "opacity_logits": 0.3,
            "sh_dc": 0.05, "sh_rest": 0.05}
    start = {"means": decoded.means, "log_scales": decoded.log_scales, "quats": decoded.quats,
             "opacity_logits": decoded.opacity_logits, "sh_dc": decoded.sh[:, :1],
             "sh_rest": decoded.sh[:, 1:]}
    cells = {k: (torch.from_numpy(v - half[k]), torch.from_numpy(v + half[k]))
             for k, v in start.items()}
    result = refine(decoded, train, targets, RefineConfig(steps=72), backend="cpu", cells=cells)
    out = result.gaussians
    got = {"means": out.means, "log_scales": out.log_scales, "quats": out.quats,
           "opacity_logits": out.opacity_logits, "sh_dc": out.sh[:, :1], "sh_rest": out.sh[:, 1:]}
    moved = 0.0
    for k, v in got.items():
        lo, hi = cells[k]
        assert (v >= lo.numpy() - 1e-6).all() and (v <= hi.numpy() + 1e-6).all(), k
        moved = max(moved, float(np.abs(v - start[k]).max() / half[k]))
    assert moved > 0.1  # the parameters did move, inside their cells
    before = _held_out_psnr(g, decoded, test)
    after = _held_out_psnr(g, out, test)
    assert after > before + 0.3, (before, after)


def test_learning_rate_schedule(setup):
    _, decoded, train, _, targets = setup
    assert RefineConfig().schedule == "cosine"
    out = {schedule: refine(decoded, train, targets, RefineConfig(steps=12, schedule=schedule),
                            backend="cpu").gaussians
           for schedule in ("constant", "cosine")}
    # the schedule is applied: the two runs end in different places
    assert not np.array_equal(out["constant"].sh, out["cosine"].sh)
    with pytest.raises(ValueError, match="schedule"):
        refine(decoded, train, targets, RefineConfig(steps=2, schedule="linear"), backend="cpu")
