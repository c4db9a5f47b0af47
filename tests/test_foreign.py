"""A .gsz whose base layer is an .spz file (GSZ.md 6.9, gscodec.foreign, encode --base)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gscodec
from gscodec import foreign, sideinfo
from gscodec.decoder import decode
from gscodec.encoder import encode_with_order
from gscodec.formats.errors import ContainerError, FormatError
from gscodec.formats.gsz import (
    Stream,
    decode_meta,
    encode_meta,
    read_container,
    write_container,
)
from gscodec.formats.spz import decode_spz_bytes
from gscodec.formats.writers import write_spz_bytes
from gscodec.metrics import psnr
from gscodec.render import render
from gscodec.synthetic import make_scene

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


@pytest.fixture(scope="module")
def scene():
    return make_scene(2500, sh_degree=1, seed=11)


@pytest.fixture(scope="module")
def wrapped(scene):
    data, order = encode_with_order(scene, base="spz", views=3, sideinfo_size=64,
                                    backend="cpu")
    return data, order


def test_the_base_stream_is_the_spz_file_and_decodes_to_it(scene, wrapped):
    data, order = wrapped
    spz = write_spz_bytes(scene.as_arrays(), 4)
    c = read_container(data)
    assert c.version == (1, foreign.VERSION_MINOR_FOREIGN)
    base = c.get(foreign.KIND)
    assert base.required and base.codec == foreign.CODEC_SPZ and base.payload == spz
    assert [s.kind for s in c.streams] == ["META", "BASE", "SIDE"]
    np.testing.assert_array_equal(order, np.arange(scene.n))
    info = gscodec.inspect(data)
    assert info["quality"] is None and info["side_prior"] is None
    got = decode(data, refine=False)
    want = decode_spz_bytes(spz)
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(got, k), want[k])


def test_refinement_moves_the_spz_scene_towards_the_original(scene, wrapped):
    data, _ = wrapped
    spz = decode_spz_bytes(write_spz_bytes(scene.as_arrays(), 4))
    plain = gscodec.Gaussians.from_arrays(spz)
    refined = decode(data, steps=30, device="cpu", backend="cpu")
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)
    cams = sideinfo.decode(c.get("SIDE").payload, meta["streams"]["SIDE"]).cameras
    assert len(cams) == 3
    gain = []
    with torch.no_grad():
        for cam in cams:
            ref = render(scene, cam, backend="cpu").image.clamp(0, 1)
            a = render(plain, cam, backend="cpu").image.clamp(0, 1)
            b = render(refined, cam, backend="cpu").image.clamp(0, 1)
            gain.append(psnr(ref, b) - psnr(ref, a))
    assert np.mean(gain) > 0.2


def test_refinement_cells_are_the_spz_quantization_cells(scene):
    # the cells the refinement stays inside (foreign.cell_meta through the attribute codecs)
    # hold the original value each .spz value was quantized from, and are no wider than the
    # .spz step
    from gscodec.codec.attributes import REGISTRY

    spz = write_spz_bytes(scene.as_arrays(), 4)
    decoded = gscodec.Gaussians.from_arrays(decode_spz_bytes(spz))
    cells = foreign.cell_meta(Stream(foreign.KIND, foreign.CODEC_SPZ, True, spz))
    _, _, frac = foreign.spz_header(spz)
    widths = {"means": 2.0 ** -frac, "log_scales": 1 / 16, "sh_dc": 1 / (255 * 0.15),
              "sh_rest": 1 / 128}
    for name, codec in REGISTRY.items():
        if name in ("quats", "opacity_logits"):
            continue  # (a loose box on the smallest three; alpha cells in logits, below)
        values = codec.decoded_view(getattr(decoded, codec.field))
        lo, hi = codec.cell(values, cells[codec.kind])
        truth = codec.decoded_view(getattr(scene, codec.field))
        assert np.all(lo <= truth + 1e-6) and np.all(truth <= hi + 1e-6), name
        assert np.max(hi - lo) <= widths[name] * 1.0001, name
    lo, hi = REGISTRY["opacity_logits"].cell(decoded.opacity_logits, cells["OPAC"])
    alpha = 1 / (1 + np.exp(-scene.opacity_logits.astype(np.float64)))
    a_lo, a_hi = (1 / (1 + np.exp(-x.astype(np.float64))) for x in (lo, hi))
    assert np.all(a_lo <= alpha + 1e-6) and np.all(alpha <= a_hi + 1e-6)
    assert np.max(a_hi - a_lo) <= 1 / 255 + 1e-6


def test_a_given_spz_file_is_wrapped_as_it_is(scene):
    spz = write_spz_bytes(scene.as_arrays(), 3)  # gzip, version 3
    data, order = encode_with_order(scene, base=spz, views=2, sideinfo_size=64, backend="cpu")
    assert order is None and read_container(data).get(foreign.KIND).payload == spz
    got = decode(data, refine=False)
    np.testing.assert_array_equal(got.means, decode_spz_bytes(spz)["means"])


def test_an_spz_file_in_other_axes_is_refused_with_the_reason(scene):
    flipped = scene.as_arrays()
    flipped["means"] = flipped["means"] * np.array([1, -1, -1], np.float32) + \
        np.array([0, 3, 3], np.float32)
    with pytest.raises(FormatError, match="not where the scene's are"):
        encode_with_order(scene, base=write_spz_bytes(flipped, 4), views=2, backend="cpu")
    with pytest.raises(FormatError, match="not an .spz file"):
        encode_with_order(scene, base=b"not an spz file at all", views=2, backend="cpu")


def _file(meta: dict, payload: bytes, codec: int = foreign.CODEC_SPZ) -> bytes:
    return write_container([Stream("META", 1, True, encode_meta(meta)),
                            Stream(foreign.KIND, codec, True, payload)],
                           minor=foreign.VERSION_MINOR_FOREIGN)


def test_damaged_or_mismatched_base_streams_are_container_errors(scene):
    spz = write_spz_bytes(scene.as_arrays(), 4)
    meta = {"format": "gsz", "n": scene.n, "sh_degree": 1, "base": "spz", "streams": {}}
    assert decode(_file(meta, spz), refine=False).n == scene.n
    with pytest.raises(ContainerError, match="holds 2500 Gaussians of SH 1, the metadata "
                                             "declares 2501"):
        decode(_file({**meta, "n": scene.n + 1}, spz), refine=False)
    with pytest.raises(ContainerError, match="codec 7"):
        decode(_file(meta, spz, codec=7), refine=False)
    broken = bytearray(spz)
    broken[200:260] = bytes(60)  # inside the first zstd stream
    with pytest.raises(ContainerError, match="corrupt .gsz file"):
        decode(_file(meta, bytes(broken)), refine=False)
    with pytest.raises(ContainerError, match="corrupt .gsz file"):
        decode(_file(meta, spz[:-10]), refine=False)


def test_the_budget_counts_the_spz_decode():
    from gscodec import budget

    plain = budget.base_bytes(10**6, 0, file_bytes=10**7)
    spz = budget.base_bytes(10**6, 0, file_bytes=10**7, foreign=True)
    assert spz - plain == 10**6 * budget.FOREIGN_GAUSSIAN_BYTES


def test_cli_encodes_with_an_spz_base_and_decodes_it(tmp_path, scene):
    from cli_helpers import one_error_line
    from click.testing import CliRunner

    from gscodec.cli.main import main

    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, scene)
    spz = tmp_path / "s.spz"
    spz.write_bytes(write_spz_bytes(scene.as_arrays(), 4))
    run = CliRunner().invoke
    r = run(main, ["encode", str(ply), "--base", "spz", "--views", "2", "-o",
                   str(tmp_path / "a.gsz")])
    assert r.exit_code == 0, r.output
    assert "base layer spz" in r.output
    r = run(main, ["encode", str(ply), "--base", str(spz), "--views", "2", "-o",
                   str(tmp_path / "b.gsz"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["base"] == str(spz)
    for name in ("a", "b"):  # the same .spz bytes, the same side information
        assert read_container((tmp_path / f"{name}.gsz").read_bytes()).get("BASE").payload == \
            spz.read_bytes()
    r = run(main, ["decode", str(tmp_path / "b.gsz"), "-o", str(tmp_path / "b.ply")])
    assert r.exit_code == 0, r.output
    assert gscodec.read_ply(tmp_path / "b.ply").n == scene.n
    r = run(main, ["bitrate", "report", str(tmp_path / "b.gsz")])
    assert r.exit_code == 0 and "BASE" in r.output, r.output
    for bad, message in ((["--base", "spz", "-q", "3"], "--quality does not apply"),
                         (["--base", str(tmp_path / "missing.spz")], "no such file"),
                         (["--base", str(ply)], "not an .spz file")):
        r = run(main, ["encode", str(ply), "--views", "1", "-o", str(tmp_path / "c.gsz"), *bad])
        assert r.exit_code == 1 and message in one_error_line(r), r.output
        assert not (tmp_path / "c.gsz").exists()


def test_a_base_stream_beside_attribute_streams_is_refused(scene):
    plain = read_container(gscodec.encode(scene, quality=3, views=0))
    spz = write_spz_bytes(scene.as_arrays(), 4)
    streams = [*plain.streams, Stream(foreign.KIND, foreign.CODEC_SPZ, True, spz)]
    with pytest.raises(ContainerError, match="a BASE stream beside 'POSN'"):
        decode(write_container(streams, minor=2), refine=False)


def test_mutated_base_streams_give_container_errors_only(scene):
    # a fuzz of the .spz payload inside a valid container: every failure is a ContainerError
    import gzip

    rng = np.random.default_rng(5)
    meta = {"format": "gsz", "n": scene.n, "sh_degree": 1, "base": "spz", "streams": {}}
    sources = [write_spz_bytes(scene.as_arrays(), 4), write_spz_bytes(scene.as_arrays(), 3),
               gzip.decompress(write_spz_bytes(scene.as_arrays(), 3))]
    for head in (b"\x1f\x8b" + bytes(40), b"NGSP" + bytes(12), b""):  # header-level damage
        with pytest.raises(ContainerError, match="corrupt .gsz file"):
            decode(_file(meta, head), refine=False)
    failures = 0
    for i in range(150):
        b = bytearray(sources[i % 3])
        for j in rng.integers(0, len(b), rng.integers(1, 6)):
            b[j] = rng.integers(256)
        if i % 5 == 0:
            b = b[:rng.integers(len(b))]
        try:
            decode(_file(meta, bytes(b)), refine=False)
        except ContainerError:
            failures += 1
    assert failures > 20


def test_a_cpu_decode_gives_an_spz_base_its_own_steps(scene, wrapped, monkeypatch):
    # near-lossless bases want more gradient steps than the CPU's default 30
    # (refinement.FOREIGN_CPU_STEPS, chosen on the tuning split); fewer for the test's speed
    from gscodec import refinement

    monkeypatch.setattr(refinement, "FOREIGN_CPU_STEPS", 7)
    data, _ = wrapped
    default = decode(data, device="cpu", backend="cpu")
    np.testing.assert_array_equal(default.sh, decode(data, steps=7, device="cpu",
                                                     backend="cpu").sh)
    assert not np.array_equal(default.sh, decode(data, steps=refinement.default_steps(
        "cpu", scene.n), device="cpu", backend="cpu").sh)
