"""The SH rest's transform (GSZ.md 6.6a, SHRS codec 2): chosen where it is smaller, exact
integer decoding that a decoder written from the spec reproduces bit for bit, zeros kept zero,
damaged bases rejected, the memory budget counting it."""

from __future__ import annotations

import numpy as np
import pytest
import reference_decoder

import gscodec
from gscodec.api import encode_with_order
from gscodec.budget import base_bytes
from gscodec.codec import attributes, shtransform
from gscodec.codec.attributes import REGISTRY
from gscodec.codec.quality import preset
from gscodec.formats.gsz import Stream, decode_meta, read_container, write_container
from gscodec.synthetic import make_scene


def correlated_scene(n: int, degree: int = 3, rank: int = 3, seed: int = 0,
                     zero_share: float = 0.3) -> gscodec.Gaussians:
    """A scene whose SH rest vectors lie near a ``rank``-dimensional subspace (as a trained
    scene's do), a share of them exactly zero."""
    rng = np.random.default_rng(seed)
    g = make_scene(n, sh_degree=degree, seed=seed)
    c = 3 * ((degree + 1) ** 2 - 1)
    directions = np.linalg.qr(rng.normal(size=(c, rank)))[0]
    weights = rng.normal(scale=[0.4, 0.2, 0.1][:rank], size=(n, rank))
    rest = weights @ directions.T + rng.normal(scale=0.002, size=(n, c))
    rest[rng.random(n) < zero_share] = 0
    g.sh[:, 1:] = rest.reshape(n, -1, 3).astype(np.float32)
    return g


def _shrs(data: bytes) -> tuple[int, dict]:
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)["streams"]["SHRS"]
    return next(s.codec for s in c.streams if s.kind == "SHRS"), meta


def test_transform_is_chosen_where_smaller_and_decodes_within_its_cells(monkeypatch):
    g = correlated_scene(1500)
    data, order = encode_with_order(g, 7, views=0)
    codec, meta = _shrs(data)
    assert codec == 2 and meta["transform"] == "klt"
    assert 3 <= meta["components"] < 45  # (rank 3 plus noise: the weakest are not sent)
    assert read_container(data).version == (1, 3)
    # the same scene with the transform disabled: a larger SHRS stream, a 1.0 file
    monkeypatch.setattr(attributes, "TRANSFORM_MIN_ROWS", 10**9)
    direct, _ = encode_with_order(g, 7, views=0)
    assert _shrs(direct)[0] == 1 and read_container(direct).version == (1, 0)

    def payload(d: bytes) -> bytes:
        return next(s.payload for s in read_container(d).streams if s.kind == "SHRS")

    # the components of a rank-3 scene cost far less than the per-band values (the basis, 45 x
    # 45 int16, is most of this small stream)
    basis = 4 + int.from_bytes(payload(data)[:4], "little")
    assert len(payload(data)) - basis < 0.5 * len(payload(direct))
    dec = gscodec.decode(data, refine=False)
    err = dec.sh[:, 1:] - g.sh[order][:, 1:]
    # each value is a rotation of components quantized with one step: the error of a value is
    # at most sum_t |B[r][t]| step / 2; its RMS is about step / sqrt(12)
    assert np.sqrt((err.astype(np.float64) ** 2).mean()) < 0.5 * meta["step"]
    zero = np.all(g.sh[order][:, 1:] == 0, axis=(1, 2))
    assert zero.sum() > 300 and np.all(dec.sh[zero][:, 1:] == 0)


def test_reference_decoder_reproduces_the_transform_bit_for_bit():
    data = gscodec.encode(correlated_scene(1100, degree=2, seed=3), quality=8, views=0)
    assert _shrs(data)[0] == 2
    ours = gscodec.decode(data, refine=False)
    ref = reference_decoder.decode(data)
    np.testing.assert_array_equal(np.asarray(ref["sh"], np.float32).reshape(ours.sh.shape),
                                  ours.sh)


def test_transform_with_per_class_steps_round_trips():
    g = correlated_scene(1200, degree=1, seed=5)
    values = g.sh[:, 1:].astype(np.float64)
    cls = (np.arange(g.n) % 3).astype(np.int64)
    codec = REGISTRY["sh_rest"]
    out = codec._transformed(values, 0.02, [1, 2, 4], {"imp": cls, "opa": np.zeros(g.n, int),
                                                       "dens": np.zeros(g.n, int)})
    assert out.codec == 2 and out.meta["mult"] == [1, 2, 4]
    dec = codec.decode(out.payload, out.meta, g.n, {"imp": cls, "opa": np.zeros(g.n, int),
                                                    "dens": np.zeros(g.n, int)}, codec=2)
    err = np.abs(dec.values - values)
    # class c's error grows with its step (0.02 * mult), and stays within its cells' reach
    rms = [np.sqrt((err[cls == c] ** 2).mean()) for c in range(3)]
    assert rms[0] < rms[1] < rms[2] < 0.04 * 3
    half = codec.half(out.meta, cls)
    assert half.shape == (g.n, 3, 1) and np.allclose(half[cls == 2], 0.04)


def test_a_palette_scene_keeps_the_direct_form():
    rng = np.random.default_rng(1)
    g = make_scene(2000, sh_degree=2, seed=2)
    g.sh[:, 1:] = rng.normal(scale=0.3, size=(6, 8, 3)).astype(np.float32)[rng.integers(0, 6,
                                                                                         g.n)]
    codec, meta = _shrs(gscodec.encode(g, quality=7, views=0))
    assert codec == 1 and meta["mode"] == "palette"


def _with_shrs(data: bytes, payload=None, meta_edit=None) -> bytes:
    c = read_container(data)
    from gscodec.formats.gsz import encode_meta

    meta = decode_meta(c.streams[0].payload)
    if meta_edit is not None:
        meta_edit(meta["streams"]["SHRS"])
    streams = [Stream("META", 1, True, encode_meta(meta))]
    for s in c.streams[1:]:
        if s.kind == "SHRS" and payload is not None:
            s = Stream(s.kind, s.codec, s.required, payload(s.payload))
        streams.append(s)
    return write_container(streams, minor=c.version[1])


@pytest.mark.parametrize(("damage", "message"), [
    (dict(payload=lambda p: p[:3]), "shorter than its basis header"),
    (dict(payload=lambda p: b"\xff\xff\x00\x00" + p[4:]), "runs past the end"),
    (dict(payload=lambda p: shtransform.pack_basis(np.zeros((3, 3), np.int16)) + p),
     "SH basis"),
    (dict(meta_edit=lambda m: m.update(components=10)), "components"),
    (dict(meta_edit=lambda m: m.update(transform="pca")), "transform"),
    (dict(meta_edit=lambda m: m.update(step=0)), "step"),
])
def test_damaged_transform_streams_are_rejected(damage, message):
    data = gscodec.encode(correlated_scene(1100, degree=1, seed=4), quality=7, views=0)
    assert _shrs(data)[0] == 2
    with pytest.raises(gscodec.ContainerError, match=message):
        gscodec.decode(_with_shrs(data, **damage), refine=False)


def test_an_unknown_shrs_codec_is_refused():
    data = gscodec.encode(correlated_scene(1100, degree=1, seed=4), quality=7, views=0)
    c = read_container(data)
    streams = [Stream(s.kind, 3 if s.kind == "SHRS" else s.codec, s.required, s.payload)
               for s in c.streams]
    with pytest.raises(gscodec.ContainerError, match="'SHRS' uses codec 3"):
        gscodec.decode(write_container(streams, minor=3), refine=False)


def test_the_basis_is_deterministic_and_keeps_zero_rows_zero():
    g = correlated_scene(2000, seed=9)
    B = shtransform.basis(g.sh[:, 1:])
    assert B.dtype == np.int16 and B.shape == (45, 45)
    assert np.array_equal(B, shtransform.basis(g.sh[:, 1:].copy()))
    Bf = B.astype(np.float64) / shtransform.BASIS_SCALE
    assert np.allclose(Bf.T @ Bf, np.eye(45), atol=1e-3)  # orthonormal up to the fixed point
    Y = shtransform.forward(np.zeros((4, 15, 3)), B)
    assert np.all(Y == 0)


def test_the_budget_counts_the_transform():
    plain = base_bytes(10**6, 3, file_bytes=0)
    assert base_bytes(10**6, 3, file_bytes=0, transform=True) - plain == 10**6 * 18 * 45
    assert base_bytes(10**6, 0, file_bytes=0, transform=True) == base_bytes(10**6, 0,
                                                                         file_bytes=0)


def test_presets_without_sh_rest_are_unchanged():
    assert preset(7).sh_rest_steps[0] > 0  # (the transform's step follows the band-1 step)
    data = gscodec.encode(make_scene(1500, sh_degree=0, seed=1), quality=7, views=0)
    assert read_container(data).version == (1, 0)


def test_the_bitrate_report_says_where_the_transform_is_used(tmp_path):
    from click.testing import CliRunner

    from gscodec.cli.main import main

    path = tmp_path / "t.gsz"
    path.write_bytes(gscodec.encode(correlated_scene(1500), quality=7, views=0))
    info = gscodec.inspect(path)
    assert info["sh_transform"]["streams"] == info["sh_transform"]["of"] == 1
    assert info["sh_transform"]["components"] == [_shrs(path.read_bytes())[1]["components"]]
    r = CliRunner().invoke(main, ["bitrate", "report", str(path)], catch_exceptions=False)
    assert r.exit_code == 0 and "SH rest: the per-scene transform (GSZ.md 6.6a) in 1 of 1" \
        in r.output
    plain = tmp_path / "p.gsz"
    plain.write_bytes(gscodec.encode(make_scene(200, sh_degree=1, seed=2), quality=7, views=0))
    assert gscodec.inspect(plain)["sh_transform"] is None
