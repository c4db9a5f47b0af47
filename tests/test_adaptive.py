"""Importance classes: sensitivities, class and step choice, per-class coding, the IMPC stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gscodec
from gscodec.api import encode_with_order
from gscodec.cameras import encoder_views
from gscodec.codec import adaptive
from gscodec.codec.attributes import REGISTRY, ImportanceCodec, morton_order
from gscodec.codec.quality import preset
from gscodec.formats.errors import ContainerError
from gscodec.formats.gsz import decode_meta, read_container
from gscodec.gaussians import SH_C0, Gaussians
from gscodec.importance import sensitivities, sh_sensitivities
from gscodec.synthetic import make_scene

PARAMS = preset(3)


def test_classes_are_quantiles_of_the_sensitivity():
    rng = np.random.default_rng(0)
    j = rng.lognormal(size=4000)
    cls = adaptive.classes({"a": j, "b": 2 * j}, (0.25, 0.5, 0.75))
    assert np.bincount(cls).tolist() == [1000] * 4
    assert np.bincount(adaptive.classes({"a": j})).tolist() == [2400, 1000, 400, 200]
    # higher class = more sensitive
    means = [j[cls == k].mean() for k in range(4)]
    assert means == sorted(means)


def test_class_steps_follow_the_inverse_square_root_and_keep_the_estimated_error():
    cls = np.repeat(np.arange(4), 100)
    w = np.repeat([1 / 16, 1 / 4, 1.0, 4.0], 100)
    for ratio in (1.0, 0.5):
        factor, mults = adaptive.class_steps(w, cls, 4, max_ratio=6.0, error_ratio=ratio)
        # step ratio to the most sensitive class: sqrt(4 / w) -> 8, 4, 2, 1 (capped at 6 here)
        assert mults == [12, 8, 4, 2]
        err = sum(w[cls == k].sum() * (factor * m) ** 2 for k, m in enumerate(mults))
        assert err == pytest.approx(ratio * w.sum())
    # nothing seen at all: uniform half-steps
    assert adaptive.class_steps(np.zeros(400), cls, 4) == (0.5, [2, 2, 2, 2])


def test_capped_class_steps_are_never_coarser_than_the_uniform_step():
    cls = np.repeat(np.arange(4), 100)
    w = np.repeat([1 / 16, 1 / 4, 1.0, 4.0], 100)
    free, free_mults = adaptive.class_steps(w, cls, 4, max_ratio=6.0)
    assert free * free_mults[0] > 1  # (uncapped, the least sensitive class is coarser)
    factor, mults = adaptive.class_steps(w, cls, 4, max_ratio=6.0, cap=1.0)
    assert max(mults) * factor <= 1 + 1e-12
    # the sensitive classes keep their finer steps; the others take the coarsest within the cap
    assert factor == free and mults[-1] == free_mults[-1] and mults == sorted(mults, reverse=True)
    assert (max(mults) + 1) * factor > 1
    # a factor above half the cap is lowered so that even the finest multiple (2) fits
    factor, mults = adaptive.class_steps(w, cls, 4, max_ratio=6.0, error_ratio=100.0, cap=1.0)
    assert factor == 0.5 and mults == [2, 2, 2, 2]
    assert adaptive.class_steps(np.zeros(400), cls, 4, cap=0.5) == (0.25, [2, 2, 2, 2])
    # which attributes take them, with which cap
    assert adaptive.adapted(True) == (adaptive.ADAPTED, {})
    assert adaptive.adapted(False) == (adaptive.FAITHFUL, {
        "cap": 1.0, "error_ratio": adaptive.FAITHFUL_ERROR_RATIO})


def _sorted(n, degree, seed=0):
    g = make_scene(n, sh_degree=degree, seed=seed)
    return g.take(morton_order(g.means, PARAMS))


@pytest.mark.parametrize("name", ["log_scales", "quats", "sh_dc", "sh_rest"])
def test_per_class_steps_round_trip_within_half_the_class_step(name, monkeypatch):
    from gscodec.codec import attributes

    # the SH rest per band (codec 1), whose values each keep within half their step (the
    # transform's components do: tests/test_sh_transform.py)
    monkeypatch.setattr(attributes, "TRANSFORM_MIN_ROWS", 10**12)
    g = _sorted(3000, 3)
    values = {"log_scales": g.log_scales, "quats": g.quats, "sh_dc": g.sh[:, 0, :],
              "sh_rest": g.sh[:, 1:, :]}[name]
    values = np.ascontiguousarray(values)
    if name == "quats":
        values = values / np.linalg.norm(values, axis=1, keepdims=True)
        values *= np.where(values[np.arange(len(values)), np.abs(values).argmax(1)] < 0,
                           -1, 1)[:, None]
    rng = np.random.default_rng(1)
    imp = rng.integers(0, 3, 3000)
    feats = {"imp": imp, "dens": rng.integers(0, 9, 3000)}
    adapt = (0.5, [6, 4, 2])
    codec = REGISTRY[name]
    out = codec.encode(values, PARAMS, dict(feats), adapt)
    assert out.meta["mult"] == [6, 4, 2]
    back = codec.decode(out.payload, out.meta, 3000, dict(feats))
    unit = {"log_scales": PARAMS.log_scale_step, "quats": PARAMS.rotation_step,
            "sh_dc": PARAMS.dc_step / 255 / SH_C0, "sh_rest": PARAMS.sh_rest_steps[2]}[name] * 0.5
    err = np.abs(back.values.reshape(3000, -1) - values.reshape(3000, -1)).max(axis=1)
    mult = np.asarray([6, 4, 2])[imp]
    if name == "quats":  # the largest is recomputed from the other three: compare those only
        others = np.ones((3000, 4), bool)
        others[np.arange(3000), np.abs(values).argmax(axis=1)] = False
        err = np.where(others, np.abs(back.values - values), 0).max(axis=1)
    assert (err <= 0.5 * unit * mult * 1.001 + 1e-6).all()
    # coarser classes really are coarser
    assert err[imp == 0].max() > 1.5 * err[imp == 2].max()
    for key, v in out.features.items():
        np.testing.assert_array_equal(v, back.features[key])


def test_per_class_stream_needs_the_classes():
    g = _sorted(500, 0)
    feats = {"imp": np.zeros(500, np.int64)}
    out = REGISTRY["sh_dc"].encode(np.ascontiguousarray(g.sh[:, 0, :]), PARAMS, feats,
                                   (0.5, [2]))
    with pytest.raises(ContainerError, match="IMPC"):
        REGISTRY["sh_dc"].decode(out.payload, out.meta, 500, {})
    bad = dict(out.meta, sizes=[len(out.payload) - 1])
    with pytest.raises(ContainerError, match="class parts"):
        REGISTRY["sh_dc"].decode(out.payload, bad, 500, feats)
    with pytest.raises(ContainerError, match="must be an object"):
        REGISTRY["sh_dc"].decode(out.payload, dict(out.meta, parts=[7]), 500, feats)


def test_importance_codec_round_trip_and_range_check():
    cls = np.random.default_rng(2).integers(0, 4, 2000)
    codec = ImportanceCodec()
    out = codec.encode(cls, 4, {})
    back = codec.decode(out.payload, out.meta, 2000, {})
    np.testing.assert_array_equal(back.values, cls)
    with pytest.raises(ContainerError, match="out of range"):
        codec.decode(out.payload, dict(out.meta, k=3), 2000, {})


def _one(mean, log_scales, quat=(1.0, 0.0, 0.0, 0.0)):
    return dict(means=mean, quats=quat, log_scales=log_scales)


def test_sensitivities_see_what_the_views_see():
    # a visible elongated Gaussian, a visible round one, and one far outside every view
    rows = [_one((0.0, 0.0, 0.0), (-1.0, -2.5, -2.5), (0.9, 0.3, 0.2, 0.1)),
            _one((0.3, 0.0, 0.0), (-1.8, -1.8, -1.8), (0.9, 0.3, 0.2, 0.1)),
            _one((0.0, 0.0, 0.0), (-1.8, -1.8, -1.8))]
    g = Gaussians(
        means=np.asarray([r["means"] for r in rows], np.float32),
        quats=np.asarray([r["quats"] for r in rows], np.float32),
        log_scales=np.asarray([r["log_scales"] for r in rows], np.float32),
        opacity_logits=np.full(3, 2.0, np.float32),
        sh=np.full((3, 1, 3), 1.0, np.float32),
    )
    cams = encoder_views(g.means[:2], 4, 48)
    hidden = g.means.copy()
    hidden[2] = (1e4, 1e4, 1e4)
    g = Gaussians(hidden, g.quats, g.log_scales, g.opacity_logits, g.sh)
    j = sensitivities(g, cams, probes=2, backend="cpu")
    assert set(j) == {"log_scales", "quats", "sh_dc"}
    for name in j:
        assert j[name][2] == 0.0 and j[name][:2].min() > 0.0
    # a round Gaussian's rotation does not matter (up to float noise), an elongated one's does
    assert j["quats"][1] < 1e-6 * j["quats"][0]
    # without the colours in the backward pass: the same geometry sensitivities, no colours
    geometry = sensitivities(g, cams, probes=2, backend="cpu", colours=False)
    assert set(geometry) == {"log_scales", "quats"}
    for name in geometry:
        np.testing.assert_allclose(geometry[name], j[name], rtol=1e-6, atol=0)


def test_sh_sensitivities_are_the_expected_value_of_the_gradient_estimate():
    # SH degree 2, a fifth of the Gaussians with colours clamped at 0 in every view
    g = make_scene(600, sh_degree=2, seed=9)
    sh = g.sh.copy()
    dark = np.arange(g.n) % 5 == 0
    sh[dark, 0] = -3.0
    g = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh)
    cams = encoder_views(g.means, 3, 48)
    exact = sh_sensitivities(g, cams, backend="cpu")
    noisy = sensitivities(g, cams, probes=48, backend="cpu")
    assert set(exact) == {"sh_dc", "sh_rest"}
    for name in exact:
        a, b = exact[name], noisy[name]
        assert (a[dark] == 0).all() and (b[dark] == 0).all()  # no gradient through the clamp
        seen = ~dark & (a > 0)
        assert seen.sum() > 300
        # Hutchinson's estimate scatters around the closed form, 48 probes: within a few percent
        assert a[seen].sum() == pytest.approx(b[seen].sum(), rel=0.03)
        assert np.corrcoef(np.log(a[seen]), np.log(b[seen]))[0, 1] > 0.99
    # the mean of Y_k^2 over a band's coefficients is 1 / (4 pi), as C0^2 is for the DC term
    np.testing.assert_allclose(exact["sh_rest"], exact["sh_dc"], rtol=1e-12)
    # an SH-0 scene has no rest
    flat = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, sh[:, :1])
    assert set(sh_sensitivities(flat, cams, backend="cpu")) == {"sh_dc"}


def test_sh_sensitivities_on_the_cpu_are_those_of_the_deterministic_kernels_bit_for_bit():
    # the estimate leaves torch's deterministic kernels off on the CPU (each view's scatters
    # run in one thread): the same sums, to the bit, as with them on
    from gscodec.render import deterministic

    g = make_scene(3000, sh_degree=1, seed=4)
    cams = encoder_views(g.means, 3, 64)
    assert not torch.are_deterministic_algorithms_enabled()
    plain = sh_sensitivities(g, cams, backend="cpu")
    with deterministic():
        strict = sh_sensitivities(g, cams, backend="cpu")
    assert plain["sh_dc"].any()
    for name in strict:
        np.testing.assert_array_equal(plain[name], strict[name])


def test_chunked_sh_scenes_get_the_faithful_classes_by_default():
    from gscodec import decoder
    from gscodec.formats.chunks import parse_table

    g = make_scene(adaptive.MIN_GAUSSIANS + 500, sh_degree=1, seed=3)
    data = gscodec.encode(g, 7, views=0, chunk_size=1500)
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)
    table = parse_table(c.get("CTAB").payload, len(c.get("CHNK").payload), meta["n"], 1 << 20)
    parts = [bytes(c.get("CHNK").payload[p.offset : p.offset + p.length])
             for t in table for p in t.parts]
    assert len(parts) > 2
    mults = set()
    for blob in parts:
        part = read_container(blob)
        kinds = [s.kind for s in part.streams]
        streams = decode_meta(part.streams[0].payload)["streams"]
        assert "IMPC" in kinds and "mult" in streams["SHRS"], kinds
        mults |= set(streams["SHRS"]["mult"])
    assert len(mults) > 1  # one set of classes for the scene, the steps differ between them
    assert decoder.decode(data, refine=False).n == g.n


def test_encoder_codes_importance_classes_when_asked():
    g = make_scene(1500, sh_degree=1, seed=4)
    plain, _ = encode_with_order(g, 3, importance=False)
    data, order = encode_with_order(g, 3, importance=True)
    kinds = [s.kind for s in read_container(data).streams]
    assert "IMPC" in kinds and "IMPC" not in [s.kind for s in read_container(plain).streams]
    assert kinds.index("IMPC") == kinds.index("POSN") + 1
    container = read_container(data)
    meta = decode_meta(container.streams[0].payload)["streams"]
    for kind in ("SCAL", "ROTN", "SHDC", "SHRS"):
        assert len(meta[kind]["mult"]) == adaptive.DEFAULT_CLASSES
    dec = gscodec.decode(data, refine=False)
    ref = g.take(order)
    # coarser steps never reach the geometry: positions are coded as before
    np.testing.assert_array_equal(dec.means, gscodec.decode(plain, refine=False).means)
    assert np.abs(dec.sh[:, 0] - ref.sh[:, 0]).max() < 0.5
    # small scenes are coded without classes by default
    default, _ = encode_with_order(g, 3)
    assert "IMPC" not in [s.kind for s in read_container(default).streams]
    # the estimate needs gradients, also when the caller encodes under no_grad (the
    # restoration network's pair maker does)
    import torch

    with torch.no_grad():
        again, _ = encode_with_order(g, 3, importance=True)
    assert again == data


def test_refinement_cells_widen_with_the_class_step(monkeypatch):
    from gscodec.api import quantization_cells
    from gscodec.codec import attributes

    # codec 1's cells, which hold the original values (the SH transform's cell is a rotated
    # cube: its refinement box is tests/test_sh_transform's)
    monkeypatch.setattr(attributes, "TRANSFORM_MIN_ROWS", 10**12)
    g = make_scene(1500, sh_degree=1, seed=5)
    data, order = encode_with_order(g, 2, importance=True)
    container = read_container(data)
    meta = decode_meta(container.streams[0].payload)["streams"]
    n = g.n
    pos = REGISTRY["means"].decode(container.get("POSN").payload, meta["POSN"], n, {})
    classes = ImportanceCodec().decode(container.get("IMPC").payload, meta["IMPC"], n,
                                       pos.features).values
    dec = gscodec.decode(data, refine=False)
    ref = g.take(order)
    cells = quantization_cells(dec, meta, classes)
    narrow = quantization_cells(dec, meta)
    # every original DC colour and SH coefficient lies in its cell (the scales may have been
    # reordered by the canonical form, so they are not compared)
    for name, values in (("sh_dc", ref.sh[:, :1]), ("sh_rest", ref.sh[:, 1:])):
        lo, hi = cells[name]
        assert (values >= lo.numpy() - 1e-5).all() and (values <= hi.numpy() + 1e-5).all()
    mult = np.asarray(meta["SHDC"]["mult"])[classes]
    width = (cells["sh_dc"][1] - cells["sh_dc"][0]).numpy()[:, 0, 0]
    narrow_width = (narrow["sh_dc"][1] - narrow["sh_dc"][0]).numpy()[:, 0, 0]
    np.testing.assert_allclose(width, narrow_width * mult, rtol=1e-4)


def test_faithful_presets_give_the_sh_rest_classes_within_the_preset_step(monkeypatch):
    from gscodec.codec import attributes

    # codec 1 (per band), whose values each keep within half their step; an aim that would
    # send the less important classes coarser than the preset's step, were they not capped
    monkeypatch.setattr(attributes, "TRANSFORM_MIN_ROWS", 10**12)
    monkeypatch.setattr(adaptive, "FAITHFUL_ERROR_RATIO", 1.0)
    g = make_scene(adaptive.MIN_GAUSSIANS + 100, sh_degree=1, seed=6)
    assert preset(7).faithful_classes and not preset(7).canonical
    data, order = encode_with_order(g, 7, views=0)
    container = read_container(data)
    meta = decode_meta(container.streams[0].payload)["streams"]
    assert "IMPC" in meta and "mult" in meta["SHRS"]
    assert not any("mult" in meta[k] for k in ("SCAL", "ROTN", "SHDC"))  # only the SH rest
    mults = meta["SHRS"]["mult"]
    assert len(set(mults)) > 1  # the classes differ
    err = np.abs(gscodec.decode(data, refine=False).sh[:, 1:] - g.take(order).sh[:, 1:])
    assert err.max() <= preset(7).sh_rest_steps[0] / 2 + 1e-6
    # an SH-0 scene has nothing to adapt: no classes measured
    plain, _ = encode_with_order(make_scene(adaptive.MIN_GAUSSIANS + 100, sh_degree=0, seed=6),
                                 7, views=0)
    assert "IMPC" not in [s.kind for s in read_container(plain).streams]
