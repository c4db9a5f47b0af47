"""The colour fit (gscodec.colourfit): the CPU's default decoder-side refinement."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from gscodec import api, refinement, sideinfo
from gscodec.cameras import encoder_views, evaluation_views
from gscodec.colourfit import fit_colours
from gscodec.gaussians import Gaussians
from gscodec.metrics import psnr
from gscodec.render import render
from gscodec.synthetic import make_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _perturbed(seed: int = 3) -> tuple[Gaussians, Gaussians]:
    g = make_scene(400, sh_degree=1, seed=seed)
    rng = np.random.default_rng(seed)
    sh = g.sh.copy()
    sh[:, 0, :] += rng.normal(scale=0.25, size=(g.n, 3)).astype(np.float32)
    return g, Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh)


def _mean_psnr(a: Gaussians, b: Gaussians, cams) -> float:
    with torch.no_grad():
        return float(np.mean([psnr(render(a, c, backend="cpu").image.clamp(0, 1),
                                   render(b, c, backend="cpu").image.clamp(0, 1)) for c in cams]))


def test_the_pair_sink_sees_every_pair_that_makes_the_image():
    g = make_scene(200, sh_degree=0, seed=1)
    cam = encoder_views(g.means, 1, 24)[0]
    pairs = []
    image = render(g, cam, backend="cpu", max_pairs=97,
                   pair_sink=lambda ids, pix, w: pairs.append((ids, pix, w))).image
    ids = torch.cat([p[0] for p in pairs])
    pix = torch.cat([p[1] for p in pairs])
    w = torch.cat([p[2] for p in pairs])
    colour = (torch.from_numpy(g.sh[:, 0, :]) * 0.28209479177387814 + 0.5).clamp_min(0)
    rebuilt = torch.zeros(cam.width * cam.height, 3).index_add_(0, pix, w[:, None] * colour[ids])
    torch.testing.assert_close(rebuilt.reshape(image.shape), image, atol=1e-5, rtol=1e-4)
    assert len(pairs) > 1  # (several chunks)


def test_the_fit_removes_colour_errors_at_views_it_never_saw():
    original, decoded = _perturbed()
    si = sideinfo.compute(original, decoded, 8, size=64, scale=4, backend="cpu")
    fitted = fit_colours(decoded, si.cameras, si.residuals)
    held_out = evaluation_views(original.means, 4, 64, seed=5)
    before = _mean_psnr(original, decoded, held_out)
    after = _mean_psnr(original, fitted, held_out)
    assert after > before + 2.0, (before, after)
    # only the colours move
    for name in ("means", "quats", "log_scales", "opacity_logits"):
        np.testing.assert_array_equal(getattr(fitted, name), getattr(decoded, name))
    np.testing.assert_array_equal(fitted.sh[:, 1:], decoded.sh[:, 1:])  # bands=0: DC only


def test_the_linear_band_follows_view_dependent_errors():
    original, _ = _perturbed()
    rng = np.random.default_rng(4)
    sh = original.sh.copy()
    sh[:, 1:4, :] += rng.normal(scale=0.3, size=(original.n, 3, 3)).astype(np.float32)
    decoded = Gaussians(original.means, original.quats, original.log_scales,
                        original.opacity_logits, sh)
    si = sideinfo.compute(original, decoded, 16, size=64, scale=4, backend="cpu")
    held_out = evaluation_views(original.means, 4, 64, seed=6)
    dc_only = _mean_psnr(original, fit_colours(decoded, si.cameras, si.residuals), held_out)
    linear = _mean_psnr(original, fit_colours(decoded, si.cameras, si.residuals, bands=1,
                                              ridge=0.05), held_out)
    assert linear > dc_only + 0.3, (dc_only, linear)


def test_cells_bound_the_fit_and_inplace_writes_the_input():
    original, decoded = _perturbed()
    si = sideinfo.compute(original, decoded, 4, size=32, scale=4, backend="cpu")
    lo = torch.from_numpy(decoded.sh[:, :1] - 0.01)
    hi = torch.from_numpy(decoded.sh[:, :1] + 0.01)
    before = decoded.sh.copy()
    fitted = fit_colours(decoded, si.cameras, si.residuals, cells={"sh_dc": (lo, hi)})
    np.testing.assert_array_equal(decoded.sh, before)  # not in place: the input is unchanged
    moved = np.abs(fitted.sh[:, 0] - before[:, 0])
    assert moved.max() <= 0.01 + 1e-6 and moved.max() > 0.005
    same = fit_colours(decoded, si.cameras, si.residuals, cells={"sh_dc": (lo, hi)},
                       inplace=True)
    assert same is decoded
    np.testing.assert_array_equal(decoded.sh, fitted.sh)


def test_half_widths_bound_the_fit_as_the_cells_do():
    """``max_change`` (half-widths, per row or shared) clamps exactly as the equivalent cells
    around the decoded values, for the DC term and the linear band."""
    original, decoded = _perturbed()
    si = sideinfo.compute(original, decoded, 4, size=32, scale=4, backend="cpu")
    n = decoded.n
    rng = np.random.default_rng(3)
    half_dc = rng.uniform(0.002, 0.02, (n, 1, 1)).astype(np.float32)  # per row
    half_rest = np.full((1, decoded.sh.shape[1] - 1, 1), 0.004, np.float32)  # shared
    lo_dc = torch.from_numpy(decoded.sh[:, :1] - half_dc)
    hi_dc = torch.from_numpy(decoded.sh[:, :1] + half_dc)
    rest = decoded.sh[:, 1:]
    lo_r, hi_r = torch.from_numpy(rest - half_rest), torch.from_numpy(rest + half_rest)
    by_cells = fit_colours(decoded, si.cameras, si.residuals, bands=1,
                           cells={"sh_dc": (lo_dc, hi_dc), "sh_rest": (lo_r, hi_r)})
    by_half = fit_colours(decoded, si.cameras, si.residuals, bands=1,
                          max_change={"sh_dc": half_dc, "sh_rest": half_rest})
    free = fit_colours(decoded, si.cameras, si.residuals, bands=1)
    np.testing.assert_allclose(by_half.sh, by_cells.sh, atol=1e-6)
    assert np.abs(free.sh - by_half.sh).max() > 1e-3  # the bounds did bind


def test_the_refinement_method_rules():
    big = refinement.CPU_ADAM_GAUSSIANS + 1
    assert api.refinement_method("auto", "cpu", None, False, big) == "colour"
    assert api.refinement_method("auto", "cpu", None, False, 1000) == "adam"  # small scenes
    assert api.refinement_method("auto", "cpu", 30, False, big) == "adam"  # steps ask for it
    assert api.refinement_method("auto", "cuda", None, False, big) == "adam"
    assert api.refinement_method("colour", "cuda", None, False) == "colour"
    assert api.refinement_method("colour", "cpu", None, True) == "adam"  # the prior's targets
    with pytest.raises(ValueError):
        api.refinement_method("sgd", "cpu", None, False)


def test_decode_refines_large_scenes_with_the_colour_fit_on_the_cpu(monkeypatch):
    original = make_scene(600, sh_degree=0, seed=8)
    data = api.encode(original, quality=2, views=4, sideinfo_size=64)
    base = api.decode(data, refine=False)
    monkeypatch.setattr(refinement, "CPU_ADAM_GAUSSIANS", 500)  # (600 count as large)
    fitted = api.decode(data, device="cpu")
    assert not np.array_equal(fitted.sh[:, 0], base.sh[:, 0])
    np.testing.assert_array_equal(fitted.means, base.means)  # only colours move
    held_out = evaluation_views(original.means, 4, 64, seed=9)
    assert _mean_psnr(original, fitted, held_out) > _mean_psnr(original, base, held_out)
    monkeypatch.setattr(refinement, "CPU_ADAM_GAUSSIANS", 600)  # small: Adam moves positions
    monkeypatch.setattr(refinement, "default_steps", lambda device, n=0: 4)
    stepped = api.decode(data, device="cpu")
    assert not np.array_equal(stepped.means, base.means)


def test_default_views_fall_with_the_scene_size():
    def scene(n, degree):
        return types.SimpleNamespace(n=n, sh_degree=degree)

    assert api.default_views(scene(100_000, 3)) == 8  # 8 whatever the SH degree
    assert api.default_views(scene(100_000, 0)) == 8
    assert api.default_views(scene(500_000, 3)) == 8
    assert api.default_views(scene(1_000_000, 3)) == 8
    assert api.default_views(scene(1_500_000, 3)) == 5
    assert api.default_views(scene(1_000_000, 0)) == 8
    assert api.default_views(scene(3_000_000, 3)) == 4
    assert api.default_views(scene(50_000_000, 0)) == 4


def test_the_budget_counts_the_fits_chunks():
    from gscodec import budget, colourfit

    assert budget.COLOUR_MAX_PAIRS == colourfit.MAX_PAIRS
    assert budget.colour_bytes(1000, 3, []) == 0
    # per Gaussian far below gradient refinement's
    assert budget.colour_bytes(10**6, 3, [(256, 256)] * 8) < \
        budget.refine_bytes(10**6, 3, [(256, 256)] * 8) / 4


@pytest.mark.parametrize("quality", [3, 7])
def test_decode_with_the_colour_fit_stays_in_the_files_cells(quality):
    """``decode(method="colour")`` moves only the colours it fits (DC and the linear band),
    each within its quantization cell (per-class steps at preset 3, uniform at 7), and does
    move them."""
    g = make_scene(3000, sh_degree=2, seed=4)
    data = api.encode(g, quality, views=3, importance=quality <= 5)
    plain = api.decode(data, refine=False)
    fitted = api.decode(data, method="colour", device="cpu")
    from gscodec.codec.attributes import REGISTRY, ImportanceCodec
    from gscodec.formats.gsz import decode_meta, read_container

    container = read_container(data)
    meta = decode_meta(container.streams[0].payload)["streams"]
    classes = None
    if quality <= 5:
        pos = REGISTRY["means"].decode(container.get("POSN").payload, meta["POSN"], g.n, {})
        classes = ImportanceCodec().decode(container.get("IMPC").payload, meta["IMPC"], g.n,
                                           pos.features).values
        assert "mult" in meta["SHDC"]  # per-class steps: per-row half-widths
    half = api.quantization_halves(plain.sh_degree, meta, classes)
    moved = np.abs(fitted.sh - plain.sh)
    assert (moved[:, :1] <= half["sh_dc"] + 1e-6).all()
    assert (moved[:, 1:4] <= half["sh_rest"][:, :3] + 1e-6).all()
    assert moved[:, 4:].max() == 0  # the quadratic band is not fitted
    assert moved[:, :4].max() > 0
    for name in ("means", "quats", "log_scales", "opacity_logits"):
        np.testing.assert_array_equal(getattr(fitted, name), getattr(plain, name))


def test_the_colour_fit_leaves_the_files_prior_gains_unused():
    # a file whose side information carries non-zero prior gains (restore-v3 helps this scene)
    # decodes with the colour fit as asked, as with --prior off; --prior on still uses the prior
    g = make_scene(3000, sh_degree=0, seed=4)
    data = api.encode(g, 1, views=3)
    assert max(api.inspect(data)["side_prior"]["gain"]) > 0
    fitted = api.decode(data, method="colour", device="cpu")
    off = api.decode(data, method="colour", device="cpu", prior="off")
    np.testing.assert_array_equal(fitted.sh, off.sh)
    on = api.decode(data, method="colour", device="cpu", prior="on", steps=2)
    assert not np.array_equal(on.means, off.means)  # gradient steps (with the prior) ran
