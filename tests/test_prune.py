"""Importance pruning: the removal cost, the encoder's dropping, what the file and the CLI say."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import one_error_line
from click.testing import CliRunner

import gscodec
from gscodec import encoder
from gscodec.api import encode_with_order
from gscodec.cameras import encoder_views
from gscodec.cli.main import main
from gscodec.codec.quality import between, preset
from gscodec.formats.gsz import decode_meta, read_container
from gscodec.gaussians import SH_C0, Gaussians
from gscodec.importance import removal_costs
from gscodec.render import render
from gscodec.scene import write_ply
from gscodec.synthetic import make_scene


def _rgb(r, g, b):
    return [(c - 0.5) / SH_C0 for c in (r, g, b)]


def _layered() -> Gaussians:
    """A wide opaque grey wall at z = 0 and, behind it (seen from +z), a hidden red Gaussian;
    beside the wall a visible green one, a faint one and one the colour of the wall, in front of
    a second wall."""
    means = [(0.0, 0.0, 0.0), (0.0, 0.0, -0.3), (1.2, 0.0, 0.2), (1.2, 0.6, 0.2),
             (1.2, -0.15, 0.1), (1.2, 0.0, 0.0)]
    log_scales = [(-0.2, -0.2, -4.0), (-2.0, -2.0, -2.0), (-2.2, -2.2, -2.2),
                  (-2.2, -2.2, -2.2), (-2.2, -2.2, -2.2), (-0.5, -0.5, -4.0)]
    logits = [6.0, 4.0, 4.0, -4.0, 4.0, 6.0]
    colours = [_rgb(.5, .5, .5), _rgb(1, 0, 0), _rgb(0, 1, 0), _rgb(0, 1, 0),
               _rgb(.5, .5, .5), _rgb(.5, .5, .5)]
    n = len(means)
    return Gaussians(np.asarray(means, np.float32), np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                     np.asarray(log_scales, np.float32), np.asarray(logits, np.float32),
                     np.asarray(colours, np.float32)[:, None, :])


def _front_views(g: Gaussians, count: int, size: int):
    """Views from the +z side (every encoder view there), so that the wall hides what is behind."""
    cams = [c for c in encoder_views(g.means, 32, size) if c.viewmat[2, 2] < -0.5]
    assert len(cams) >= count
    return cams[:count]


def _exact_costs(g: Gaussians, cams) -> np.ndarray:
    """The squared change of the renders when each Gaussian alone is removed, by re-rendering."""
    full = [render(g, c, backend="cpu").image.detach().numpy() for c in cams]
    out = np.zeros(g.n)
    for i in range(g.n):
        rest = g.take(np.delete(np.arange(g.n), i))
        for c, ref in zip(cams, full, strict=True):
            out[i] += ((render(rest, c, backend="cpu").image.detach().numpy() - ref) ** 2).sum()
    return out


def test_removal_costs_measure_what_removing_each_gaussian_changes():
    g = _layered()
    cams = _front_views(g, 3, 48)
    est = removal_costs(g, cams, probes=64, backend="cpu")
    exact = _exact_costs(g, cams)
    assert est.shape == (g.n,) and est.dtype == np.float64
    # hidden (1), faint (3) and wall-coloured-before-the-wall (4) cost far less than the visible
    # green one (2) and the walls (0, 5), as re-rendering without each of them says
    for cheap in (1, 3, 4):
        for dear in (0, 2, 5):
            assert exact[cheap] < 0.2 * exact[dear]
            assert est[cheap] < 0.2 * est[dear]
    # and the estimate is the exact change where it matters (first order is exact for one
    # Gaussian's opacity in front-to-back blending; the estimate is Hutchinson's)
    dear = exact > 0.1 * exact.max()
    np.testing.assert_allclose(est[dear], exact[dear], rtol=0.35)
    # deterministic
    np.testing.assert_array_equal(est, removal_costs(g, cams, probes=64, backend="cpu"))


def test_removal_costs_rank_a_scene_as_re_rendering_does():
    g = make_scene(60, sh_degree=0, seed=3)
    cams = encoder_views(g.means, 3, 40)
    est = removal_costs(g, cams, probes=16, backend="cpu")
    exact = _exact_costs(g, cams)
    # the cheapest third by the estimate is mostly the cheapest third by re-rendering
    k = g.n // 3
    overlap = len(set(np.argsort(est)[:k]) & set(np.argsort(exact)[:k])) / k
    assert overlap >= 0.7
    # (a score that knows nothing: about a third)
    rng = np.random.default_rng(0)
    assert len(set(rng.permutation(g.n)[:k]) & set(np.argsort(exact)[:k])) / k < 0.7


@pytest.fixture
def no_budget(monkeypatch):
    """Pruning drops the whole fraction asked for (no error budget)."""
    monkeypatch.setattr(encoder, "PRUNE_ERROR_RATIO", float("inf"))


def test_encoder_drops_the_cheapest_and_says_how_many(monkeypatch, no_budget):
    monkeypatch.setattr(encoder, "PRUNE_ROUNDS", 1)
    g = make_scene(1500, sh_degree=1, seed=5)
    plain, _ = encode_with_order(g, 1, views=2)
    data, order = encode_with_order(g, 1, views=2, prune=0.4)
    info = gscodec.inspect(data)
    assert info["pruned"] == 600 and gscodec.inspect(plain)["pruned"] == 0

    def base_bytes(i):
        return sum(s["bytes"] for s in i["streams"] if s["stream"] != "SIDE")
    assert base_bytes(info) < 0.7 * base_bytes(gscodec.inspect(plain))
    dec = gscodec.decode(data, refine=False)
    assert dec.n == 900 and order.shape == (900,) and len(set(order.tolist())) == 900
    # the order maps decoded Gaussians to the input rows kept
    assert np.abs(dec.means - g.means[order]).max() < 0.01
    # the rows kept are those the removal cost ranks highest at the encoder's pruning views
    cams = encoder_views(g.means, encoder.PRUNE_VIEWS, encoder.PRUNE_SIZE)
    costs = removal_costs(g, cams, backend="cpu")
    assert set(order.tolist()) == set(np.argsort(costs, kind="stable")[600:].tolist())
    # the side information measures against the whole input: its residuals see the dropped
    assert "SIDE" in [s["stream"] for s in info["streams"]]
    # the metadata records the count
    meta = decode_meta(read_container(data).streams[0].payload)
    assert meta["pruned"] == 600


def test_pruning_measures_again_after_each_round(monkeypatch, no_budget):
    g = make_scene(900, sh_degree=0, seed=7)
    seen = []

    def recording(gaussians, cams, **kw):
        costs = removal_costs(gaussians, cams, **kw)
        seen.append((gaussians, costs))
        return costs
    monkeypatch.setattr(gscodec.importance, "removal_costs", recording)
    _, order = encode_with_order(g, 1, prune=0.5)
    assert encoder.PRUNE_ROUNDS == 3 and [s[0].n for s in seen] == [900, 750, 600]
    assert order.shape == (450,)
    # the kept are the 450 that the last round's costs, of the 600 left then, rank highest
    last, costs = seen[-1]
    top = np.argsort(costs, kind="stable")[150:]
    assert {tuple(m) for m in last.means[top]} == {tuple(m) for m in g.means[order]}


def test_pruning_in_chunked_files_and_its_bounds(no_budget):
    g = make_scene(1200, sh_degree=0, seed=6)
    data, order = encode_with_order(g, 2, prune=0.25, chunk_size=256)
    assert gscodec.inspect(data)["chunks"] is not None
    assert gscodec.inspect(data)["pruned"] == 300 and gscodec.decode(data, refine=False).n == 900
    assert sorted(order.tolist()) == sorted(set(order.tolist())) and order.shape == (900,)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="prune"):
            encode_with_order(g, 2, prune=bad)
    # nothing pruned: the very file of a preset without pruning
    assert encode_with_order(g, 6, prune=0.0)[0] == encode_with_order(g, 6)[0]


def test_pruning_stops_at_its_error_budget(monkeypatch):
    g = make_scene(1000, sh_degree=0, seed=9)
    unpruned = encode_with_order(g, 1, views=0, prune=0.0)[0]
    # a budget nothing fits: the unpruned file itself
    monkeypatch.setattr(encoder, "PRUNE_ERROR_RATIO", 1e-9)
    assert encode_with_order(g, 1, views=0, prune=0.6)[0] == unpruned
    # a budget of a tenth of the base layer's error at the check views: some dropped, not all
    # asked for, and the pruned input's own error there within the budget
    monkeypatch.setattr(encoder, "PRUNE_ERROR_RATIO", 0.1)
    data, order = encode_with_order(g, 1, views=0, prune=0.6)
    pruned = gscodec.inspect(data)["pruned"]
    assert 0 < pruned < 600 and order.shape == (1000 - pruned,)
    check = encoder_views(g.means, encoder.PRUNE_CHECK_VIEWS, encoder.PRUNE_CHECK_SIZE,
                          start=encoder.PRUNE_VIEWS)

    def error(x):
        return np.mean([float(((render(x, c, backend="cpu").image.clamp(0, 1)
                                - render(g, c, backend="cpu").image.clamp(0, 1)) ** 2).mean())
                        for c in check])
    base = error(gscodec.decode(unpruned, refine=False))
    assert error(g.take(np.sort(order))) <= 0.1 * base
    # (and dropping all it was asked for would not have been)
    monkeypatch.setattr(encoder, "PRUNE_ERROR_RATIO", float("inf"))
    _, all_asked = encode_with_order(g, 1, views=0, prune=0.6)
    assert all_asked.shape == (400,) and error(g.take(np.sort(all_asked))) > 0.1 * base


def test_presets_prune_only_at_the_bottom_and_the_ladder_interpolates():
    fractions = [preset(q).prune for q in range(1, 11)]
    assert fractions == sorted(fractions, reverse=True)
    assert all(0 <= f < 1 for f in fractions)
    assert preset(1).prune >= 0.3  # (the lowest preset may drop what issue 16 asks of it)
    a, b = preset(1).prune, preset(2).prune
    assert between(1.5).prune == pytest.approx((a + b) / 2)
    # files of presets that prune nothing record no fraction
    assert all("prune" not in preset(q).as_dict() for q in range(1, 11) if preset(q).prune == 0)


def test_cli_prune_option_and_report(tmp_path):
    ply_path = tmp_path / "small.ply"
    write_ply(ply_path, make_scene(800, sh_degree=1, seed=8))
    out = tmp_path / "p.gsz"
    r = CliRunner().invoke(main, ["encode", str(ply_path), "-o", str(out), "-q", "6",
                                  "--views", "0", "--prune", "0.5"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    n, pruned = gscodec.read_ply(ply_path).n, gscodec.inspect(out)["pruned"]
    assert 0 < pruned <= n // 2 and f"{pruned:,} pruned" in r.output
    r = CliRunner().invoke(main, ["bitrate", "report", str(out)], catch_exceptions=False)
    assert r.exit_code == 0 and f"dropped {pruned:,} of the scene's {n:,}" in r.output
    r = CliRunner().invoke(main, ["bitrate", "report", str(out), "--json"])
    assert json.loads(r.output)["pruned"] == pruned
    for bad in ("1", "-0.2", "x"):
        r = CliRunner().invoke(main, ["encode", str(ply_path), "-o", str(tmp_path / "b.gsz"),
                                      "--prune", bad])
        assert r.exit_code != 0 and "--prune" in r.output and "Traceback" not in r.output
        assert not (tmp_path / "b.gsz").exists()
    r = CliRunner().invoke(main, ["encode", str(ply_path), "-o", str(tmp_path / "c.gsz"),
                                  "--base", "spz", "--prune", "0.3"])
    assert r.exit_code != 0 and "--prune" in one_error_line(r)
