"""Every attribute codec alone: round trip for N = 0, 1 and many, with error bounds."""

from __future__ import annotations

import numpy as np
import pytest

from gscodec.codec.attributes import REGISTRY, morton_order, position_grid
from gscodec.codec.quality import preset
from gscodec.gaussians import SH_C0
from gscodec.metrics import rotation_angles_deg as quat_angle_deg
from gscodec.synthetic import make_scene

PARAMS = preset(5)


def _values(g, name):
    if name == "sh_dc":
        return g.sh[:, 0, :]
    if name == "sh_rest":
        return g.sh[:, 1:, :]
    return getattr(g, name)


def _round_trip(name, values, features=None):
    codec = REGISTRY[name]
    out = codec.encode(np.ascontiguousarray(values), PARAMS, dict(features or {}))
    back = codec.decode(out.payload, out.meta, values.shape[0], dict(features or {}))
    return out, back


@pytest.fixture
def per_band(monkeypatch):
    """The SH codec's codec 1 only (per-band steps; its transform is tests/test_sh_transform)."""
    from gscodec.codec import attributes

    monkeypatch.setattr(attributes, "TRANSFORM_MIN_ROWS", 10**12)


def _sorted_scene(n, degree=3, seed=0):
    g = make_scene(n, sh_degree=degree, seed=seed)
    return g.take(morton_order(g.means, PARAMS))


@pytest.mark.parametrize("n", [0, 1, 2, 3000])
def test_positions_round_trip_within_half_a_step(n):
    g = _sorted_scene(n)
    out, back = _round_trip("means", g.means)
    assert back.values.shape == (n, 3) and back.values.dtype == np.float32
    if n:
        step = position_grid(g.means, PARAMS).step
        assert np.abs(back.values - g.means).max() <= 0.5 * step * 1.0001 + 1e-7
        np.testing.assert_array_equal(out.features["dens"], back.features["dens"])


def test_positions_refuse_unsorted_input():
    g = make_scene(100, seed=1)
    with pytest.raises(ValueError, match="Morton order"):
        REGISTRY["means"].encode(g.means[::-1].copy(), PARAMS, {})


def test_duplicate_positions_round_trip():
    means = np.zeros((50, 3), np.float32)
    means[25:] = 1.0
    _, back = _round_trip("means", means)
    assert (back.values[:25] == back.values[0]).all()
    assert (back.values[25:] == back.values[25]).all()
    step = position_grid(means, PARAMS).step
    assert np.abs(back.values - means).max() <= 0.5 * step * 1.0001


def _features(g):
    feats = REGISTRY["means"].encode(g.means, PARAMS, {}).features
    feats.update(REGISTRY["log_scales"].encode(g.log_scales, PARAMS, feats).features)
    feats.update(REGISTRY["opacity_logits"].encode(g.opacity_logits, PARAMS, feats).features)
    return feats


@pytest.mark.parametrize("n", [0, 1, 3000])
def test_log_scales_round_trip(n):
    g = _sorted_scene(n)
    _, back = _round_trip("log_scales", g.log_scales, _features(g))
    if n:
        assert np.abs(back.values - g.log_scales).max() <= PARAMS.log_scale_step / 2 + 1e-6


@pytest.mark.parametrize("n", [0, 1, 3000])
def test_rotations_round_trip_within_the_grid(n):
    g = _sorted_scene(n)
    _, back = _round_trip("quats", g.quats, _features(g))
    if n:
        # each of the three small components is off by at most step/2
        assert quat_angle_deg(back.values, g.quats).max() < np.degrees(4 * PARAMS.rotation_step)
        np.testing.assert_allclose(np.linalg.norm(back.values, axis=1), 1.0, atol=1e-5)


def test_rotations_handle_sign_and_every_largest_axis():
    q = np.array([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 2, 0], [0, 0, 0, -3],
                  [-0.5, 0.5, -0.5, 0.5], [0.1, -0.7, 0.7, 0.1]], np.float32)
    _, back = _round_trip("quats", q)
    assert quat_angle_deg(back.values, q).max() < np.degrees(4 * PARAMS.rotation_step)


@pytest.mark.parametrize("n", [0, 1, 3000])
def test_opacity_round_trip_in_alpha(n):
    g = _sorted_scene(n)
    _, back = _round_trip("opacity_logits", g.opacity_logits, _features(g))
    if n:
        a = 1 / (1 + np.exp(-g.opacity_logits.astype(np.float64)))
        b = 1 / (1 + np.exp(-back.values.astype(np.float64)))
        assert np.abs(a - b).max() <= 0.5 / PARAMS.opacity_levels + 1e-6


def test_opacity_reproduces_8bit_alpha_exactly():
    k = np.arange(256)
    alpha = np.clip(k / 255, 1e-6, 1 - 1e-6)
    logits = np.log(alpha / (1 - alpha)).astype(np.float32)
    _, back = _round_trip("opacity_logits", logits)
    a = 1 / (1 + np.exp(-back.values.astype(np.float64)))
    np.testing.assert_allclose(a * 255, np.clip(k, 255e-6, 255 - 255e-6), atol=1e-4)


@pytest.mark.parametrize("n", [0, 1, 3000])
def test_dc_colour_round_trip(n):
    g = _sorted_scene(n)
    _, back = _round_trip("sh_dc", g.sh[:, 0, :], _features(g))
    if n:
        err = np.abs(SH_C0 * (back.values - g.sh[:, 0, :])) * 255
        assert err.max() <= PARAMS.dc_step / 2 + 1e-3


@pytest.mark.parametrize("degree", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 3000])
def test_sh_rest_round_trip_per_band(degree, n, per_band):
    g = _sorted_scene(n, degree=degree)
    _, back = _round_trip("sh_rest", g.sh[:, 1:, :], _features(g))
    assert back.values.shape == g.sh[:, 1:, :].shape
    for j in range((degree + 1) ** 2 - 1):
        band = 1 if j < 3 else 2 if j < 8 else 3
        err = np.abs(back.values[:, j] - g.sh[:, 1 + j])
        assert err.max() <= PARAMS.sh_rest_steps[band - 1] / 2 + 1e-6


def test_sh_rest_decodes_into_its_output_without_the_integer_matrix(per_band):
    """Decoding SH-3 rest coefficients into a given array needs less working memory than the
    [45, N] int32 matrix of their integers alone (numpy reports its allocations to
    tracemalloc): the channels are dequantized as they are decoded."""
    import tracemalloc

    n = 40_000
    g = _sorted_scene(n, degree=3)
    out, _ = _round_trip("sh_rest", g.sh[:, 1:, :], _features(g))
    dest = np.empty((n, 15, 3), np.float32)
    tracemalloc.start()
    try:
        back = REGISTRY["sh_rest"].decode(out.payload, out.meta, n, _features(g), out=dest)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert back.values is dest
    assert (np.abs(dest - g.sh[:, 1:, :]) <= PARAMS.sh_rest_steps[2] / 2 + 1e-6).all()
    assert peak < 45 * 4 * n, f"decode working memory {peak / n:.0f} bytes per Gaussian"


def test_sh_rest_palette_mode_is_used_for_codebook_data():
    rng = np.random.default_rng(4)
    codebook = rng.normal(scale=0.3, size=(64, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 64, 20000)
    values = codebook[labels]
    out, back = _round_trip("sh_rest", values)
    assert out.meta["mode"] == "palette"
    steps = np.array([PARAMS.sh_rest_steps[0]] * 3 + [PARAMS.sh_rest_steps[1]] * 5)
    assert (np.abs(back.values - values) <= steps[None, :, None] / 2 + 1e-6).all()


def test_decoding_is_deterministic(scene_sh3):
    g = scene_sh3.take(morton_order(scene_sh3.means, PARAMS))
    feats = _features(g)
    for name, codec in REGISTRY.items():
        a = codec.encode(np.ascontiguousarray(_values(g, name)), PARAMS, dict(feats))
        b = codec.encode(np.ascontiguousarray(_values(g, name)), PARAMS, dict(feats))
        assert a.payload == b.payload and a.meta == b.meta
        d1 = codec.decode(a.payload, a.meta, g.n, dict(feats)).values
        d2 = codec.decode(a.payload, a.meta, g.n, dict(feats)).values
        np.testing.assert_array_equal(d1, d2)


def test_values_beyond_int16_take_the_int32_path():
    rng = np.random.default_rng(5)
    log_scales = rng.uniform(-3000, 3000, size=(500, 3)).astype(np.float32)
    _, back = _round_trip("log_scales", log_scales)
    assert np.abs(back.values - log_scales).max() <= PARAMS.log_scale_step / 2 + 1e-3


def test_constant_scales_come_back_exactly():
    log_scales = np.tile(np.array([[-4.7312, -4.7312, -6.1093]], np.float32), (1000, 1))
    out, back = _round_trip("log_scales", log_scales)
    np.testing.assert_array_equal(back.values, log_scales)
    assert len(out.payload) < 64  # three constant channels cost (almost) nothing
