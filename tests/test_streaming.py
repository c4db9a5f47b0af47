"""Bounded-memory I/O: PLYs are read block by block into the same arrays as whole, and a
base-layer decode to a PLY is written part by part (never the whole scene in memory)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import gscodec
import gscodec.api
from gscodec import parallel
from gscodec.cli.main import main
from gscodec.formats import ply
from gscodec.formats.errors import PlyError
from gscodec.synthetic import make_scene

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def test_a_ply_read_in_blocks_is_the_ply_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "s.ply"
    g = make_scene(100, sh_degree=2, seed=5)
    gscodec.write_ply(path, g)
    whole = ply.read_ply_arrays(path)
    monkeypatch.setattr(ply, "_READ_ROWS", 7)
    blocks = ply.read_ply_arrays(path)
    for name in FIELDS:
        np.testing.assert_array_equal(blocks[name], whole[name])
    # a defect in a later block names its vertex in the file, not in the block
    arrays = g.as_arrays()
    arrays["quats"][50] = 0
    ply.write_ply_arrays(tmp_path / "bad.ply", arrays)
    with pytest.raises(PlyError, match="first at vertex 50"):
        ply.read_ply_arrays(tmp_path / "bad.ply")


def test_decode_parts_yields_the_decode_part_by_part(monkeypatch):
    g = make_scene(1200, sh_degree=1, seed=6)
    data = gscodec.encode(g, 7, views=0, chunk_size=256)
    full = gscodec.decode(data, refine=False)
    n, degree, parts = gscodec.api.decode_parts(data)
    got = list(parts)
    assert (n, degree, len(got)) == (full.n, 1, 10)
    for name in FIELDS:
        np.testing.assert_array_equal(np.concatenate([p[name] for p in got]),
                                      getattr(full, name))
    n4, _, parts4 = gscodec.api.decode_parts(data, fraction=0.25)
    assert n4 == gscodec.decode(data, fraction=0.25).n == sum(p["means"].shape[0]
                                                              for p in parts4)
    # in two processes (the parts written into shared arrays), the same parts in order
    _, _, two = gscodec.api.decode_parts(data, jobs=2)
    two = list(two)
    assert len(two) == len(got)
    for a, b in zip(got, two, strict=True):
        for name in FIELDS:
            np.testing.assert_array_equal(a[name], b[name])
    # and where the workers may not open the shared files, the rows come back pickled
    real = parallel.SharedArrays.spec
    monkeypatch.setattr(parallel.SharedArrays, "spec",
                        lambda self: ("/proc/self/fd/999999", *real(self)[1:]))
    _, _, piped = gscodec.api.decode_parts(data, jobs=2)
    for a, b in zip(got, list(piped), strict=True):
        for name in FIELDS:
            np.testing.assert_array_equal(a[name], b[name])


def test_the_cli_writes_a_base_layer_decode_part_by_part(tmp_path, monkeypatch):
    src = tmp_path / "s.ply"
    g = make_scene(900, sh_degree=0, seed=8)
    gscodec.write_ply(src, g)
    gsz = tmp_path / "s.gsz"
    gsz.write_bytes(gscodec.encode(g, 7, views=0, chunk_size=256))
    expected = gscodec.decode(gsz)

    def whole(*args, **kwargs):
        raise AssertionError("the scene was decoded whole")

    monkeypatch.setattr(gscodec.api, "decode", whole)
    out = tmp_path / "out.ply"
    r = CliRunner().invoke(main, ["decode", str(gsz), "-o", str(out), "--jobs", "1"])
    assert r.exit_code == 0, r.output
    back = gscodec.read_ply(out)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(expected, name))
    r = CliRunner().invoke(main, ["decode", str(gsz), "-o", str(tmp_path / "t.ply"),
                                  "--turn", "x"])
    assert r.exit_code == 0, r.output
    turned = gscodec.read_ply(tmp_path / "t.ply")
    np.testing.assert_array_equal(turned.means[:, 0], expected.means[:, 0])
    np.testing.assert_array_equal(turned.means[:, 1], -expected.means[:, 1])
