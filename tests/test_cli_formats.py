"""gscodec decode -o and gscodec convert write every viewer's format (formats.writers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import one_error_line
from click.testing import CliRunner

import gscodec
from gscodec.cli.main import main
from gscodec.formats.readers import read_scene_arrays
from gscodec.synthetic import make_scene


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmt")
    g = make_scene(500, sh_degree=3, seed=8)
    ply, gsz = d / "s.ply", d / "s.gsz"
    gscodec.write_ply(ply, g)
    gsz.write_bytes(gscodec.encode(g, 9))
    return g, ply, gsz, d


@pytest.mark.parametrize("name", ["out.spz", "out.splat", "out.compressed.ply", "out.glb",
                                  "out.ply"])
def test_decode_writes_the_format_its_suffix_names(files, name):
    g, _, gsz, d = files
    out = d / f"decode-{name}"
    r = run("decode", str(gsz), "-o", str(out), "--no-refine")
    assert r.exit_code == 0, r.output
    plain = gscodec.decode(gsz, refine=False).as_arrays()
    if name.endswith(".glb"):
        data = out.read_bytes()
        assert data[:4] == b"glTF"
        length = int.from_bytes(data[12:16], "little")
        doc = json.loads(data[20:20 + length])
        assert "KHR_gaussian_splatting" in doc["extensionsUsed"]
        assert doc["accessors"][0]["count"] == g.n
        return
    back = read_scene_arrays(out)
    assert back["means"].shape[0] == g.n
    degree = 0 if name.endswith(".splat") else 3
    assert back["sh"].shape[1] == (degree + 1) ** 2
    if name.endswith(".compressed.ply"):  # (stored in its own Morton order): match by position
        d2 = ((back["means"][:, None, :] - plain["means"][None, :, :]) ** 2).sum(-1)
        match = d2.argmin(axis=1)
        assert len(set(match.tolist())) == g.n
        plain = {k: v[match] for k, v in plain.items()}
    extent = float(np.ptp(plain["means"], axis=0).max())
    assert np.abs(back["means"] - plain["means"]).max() < 2e-3 * extent
    alpha = 1 / (1 + np.exp(-plain["opacity_logits"]))
    back_alpha = 1 / (1 + np.exp(-back["opacity_logits"]))
    assert np.abs(back_alpha - alpha).max() < 1 / 255 + 1e-6


def test_convert_between_formats(files):
    g, ply, gsz, d = files
    spz = d / "c.spz"
    r = run("convert", str(ply), str(spz), "--spz-version", "3")
    assert r.exit_code == 0, r.output
    assert "500 Gaussians (SH 3), spz" in r.output
    assert read_scene_arrays(spz)["means"].shape == (500, 3)
    again = d / "c.ply"
    r = run("convert", str(spz), str(again))
    assert r.exit_code == 0, r.output
    a, b = gscodec.read_ply(again).as_arrays(), read_scene_arrays(spz)
    assert np.array_equal(a["means"], b["means"]) and np.array_equal(a["sh"], b["sh"])
    r = run("convert", str(gsz), str(d / "c.glb"), "--no-refine", "--quiet")
    assert r.exit_code == 0 and (d / "c.glb").read_bytes()[:4] == b"glTF"


def test_unknown_output_suffix_is_refused_before_any_work(files):
    _, ply, gsz, d = files
    for args in (("decode", str(gsz), "-o", str(d / "x.obj")),
                 ("convert", str(ply), str(d / "x.obj"))):
        r = run(*args)
        assert r.exit_code == 1 and "unknown output format" in one_error_line(r)
        assert not (d / "x.obj").exists()
    r = run("convert", str(ply), str(ply))
    assert r.exit_code == 1 and "overwrite the input" in one_error_line(r)
    r = run("convert", str(ply), str(d / "c.spz"))  # exists (from the test above, or not)
    if (d / "c.spz").exists():
        assert r.exit_code == 1 and "exists" in one_error_line(r)


def test_turn_option(files):
    g, ply, gsz, d = files
    out = d / "turned.ply"
    r = run("convert", str(ply), str(out), "--turn", "x")
    assert r.exit_code == 0, r.output
    a, b = g.as_arrays(), gscodec.read_ply(out).as_arrays()
    assert np.allclose(b["means"], a["means"] * np.array([1, -1, -1], np.float32))
    assert not np.allclose(b["sh"], a["sh"])
    r = run("decode", str(gsz), "-o", str(d / "turned-decode.ply"), "--turn", "z", "--no-refine")
    assert r.exit_code == 0, r.output
    plain = gscodec.decode(gsz, refine=False).as_arrays()
    got = gscodec.read_ply(d / "turned-decode.ply").as_arrays()
    assert np.allclose(got["means"], plain["means"] * np.array([-1, -1, 1], np.float32))
