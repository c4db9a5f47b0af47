"""Side information: the SIDE stream round-trips, is optional, and refinement guided by it helps
views it never saw."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import gscodec  # noqa: E402
from gscodec import sideinfo  # noqa: E402
from gscodec.cameras import evaluation_views  # noqa: E402
from gscodec.cli.main import main  # noqa: E402
from gscodec.formats.gsz import (  # noqa: E402
    Stream,
    decode_meta,
    encode_meta,
    read_container,
    write_container,
)
from gscodec.metrics import psnr  # noqa: E402
from gscodec.render import render  # noqa: E402
from gscodec.synthetic import make_scene  # noqa: E402

OPTIONS = {"views": 6, "sideinfo_size": 64, "sideinfo_scale": 4, "sideinfo_step": 0.5 / 255}


@pytest.fixture(scope="module")
def scene():
    g = make_scene(3000, sh_degree=1, seed=5)
    return g, gscodec.encode(g, quality=1), gscodec.encode(g, quality=1, **OPTIONS)


def test_side_stream_is_optional_and_leaves_the_base_layer_alone(scene):
    _, base, side = scene
    c = read_container(side)
    s = c.get("SIDE")
    assert s is not None and not s.required
    a, b = gscodec.decode(base), gscodec.decode(side, refine=False)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # a decoder that does not know SIDE skips it: drop the stream's meaning by renaming it
    renamed = [Stream("ZZZZ" if x.kind == "SIDE" else x.kind, x.codec, x.required, x.payload)
               for x in c.streams]
    np.testing.assert_array_equal(gscodec.decode(write_container(renamed)).sh, a.sh)


def test_side_information_round_trips_exactly(scene):
    g, base, _ = scene
    si = sideinfo.compute(g, gscodec.decode(base), 3, scale=4, step=1 / 255, size=32)
    payload, meta = sideinfo.encode(si)
    back = sideinfo.decode(payload, meta)
    assert back.scale == 4 and len(back.cameras) == 3 and back.prior is None
    si.prior = {"weights": "0123456789abcdef", "gain": [0.0, 0.515625]}
    assert sideinfo.decode(*sideinfo.encode(si)).prior == si.prior
    for a, b in zip(si.residuals, back.residuals, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(si.cameras, back.cameras, strict=True):
        np.testing.assert_allclose(a.viewmat, b.viewmat)
        np.testing.assert_allclose(a.K, b.K)


def test_refinement_with_side_information_helps_unseen_views(scene):
    g, base, side = scene
    cams = evaluation_views(g.means, 4, 64)

    def score(h):
        with torch.no_grad():
            return float(np.mean([psnr(render(g, c).image, render(h, c).image) for c in cams]))

    plain = score(gscodec.decode(base))
    refined = score(gscodec.decode(side, steps=80, device="cpu"))
    assert refined > plain + 0.3, (plain, refined)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(scale=0),
        lambda m: m.update(step=-1),
        lambda m: m["views"][0].update(width=33),
        lambda m: m["views"][0].update(K=[0, 1, 2, 3]),
        lambda m: m["views"][0].update(viewmat=[1, 2]),
        lambda m: m.update(views="x"),
        lambda m: m.update(prior=3),
        lambda m: m.update(prior={"weights": "not hex digits!!", "gain": [0, 0]}),
        lambda m: m.update(prior={"weights": "0" * 16, "gain": [0, 1.5]}),
        lambda m: m.update(prior={"weights": "0" * 16, "gain": [0]}),
    ],
)
def test_bad_side_metadata_is_refused(scene, change):
    _, _, side = scene
    c = read_container(side)
    meta = decode_meta(c.streams[0].payload)
    change(meta["streams"]["SIDE"])
    data = write_container([Stream("META", 1, True, encode_meta(meta))] + c.streams[1:])
    with pytest.raises(gscodec.ContainerError):
        gscodec.decode(data, steps=1)
    gscodec.decode(data, refine=False)  # the base layer alone still decodes


def test_cli_side_information_and_refinement(tmp_path):
    g = make_scene(800, sh_degree=0, seed=2)
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, g)
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(ply), "--views", "2", "--quality", "2"])
    assert r.exit_code == 0, r.output
    info = gscodec.inspect(tmp_path / "s.gsz")
    assert any(row["stream"] == "SIDE" for row in info["streams"])
    r = runner.invoke(main, ["decode", str(tmp_path / "s.gsz"), "--steps", "3"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert r.exit_code == 0 and "refined with side information" in r.output \
        and f"(3 steps on {device})" in r.output
    r = runner.invoke(main, ["decode", str(tmp_path / "s.gsz"), "--no-refine", "--force"])
    assert r.exit_code == 0 and "not refined" in r.output
    r = runner.invoke(main, ["decode", str(tmp_path / "s.gsz"), "--steps", "0", "--force"])
    assert r.exit_code == 0 and "not refined (--steps 0)" in r.output
