"""``gscodec encode A.ply B.ply ... --jobs N``: several scenes side by side, each file the bytes
a single encode writes; a bad scene is reported on its own line and the others are written."""

from __future__ import annotations

from click.testing import CliRunner

import gscodec
from gscodec.cli.main import main
from gscodec.synthetic import make_scene


def _scenes(tmp_path, count=3):
    paths = []
    for i in range(count):
        p = tmp_path / f"s{i}.ply"
        gscodec.write_ply(p, make_scene(300 + 50 * i, sh_degree=i % 2, seed=20 + i))
        paths.append(p)
    return paths


def test_several_scenes_encode_side_by_side_to_the_single_encodes_bytes(tmp_path):
    paths = _scenes(tmp_path)
    r = CliRunner().invoke(main, ["encode", *map(str, paths), "--views", "0", "--jobs", "2"])
    assert r.exit_code == 0, r.output
    for p in paths:
        assert p.with_suffix(".gsz").read_bytes() == gscodec.encode(gscodec.read_ply(p), 7,
                                                                     views=0)
        assert f"{p} -> {p.with_suffix('.gsz')}" in r.output
    # in input order
    assert [line.split(" -> ")[0] for line in r.output.splitlines()] == list(map(str, paths))


def test_a_bad_scene_fails_alone(tmp_path):
    paths = _scenes(tmp_path, 2)
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat nonsense\n")
    out = tmp_path / "out"
    out.mkdir()
    r = CliRunner().invoke(main, ["encode", str(paths[0]), str(bad), str(paths[1]),
                                  "--views", "0", "-o", str(out), "--jobs", "1"])
    assert r.exit_code == 1
    assert "gscodec: error:" in r.output and str(bad) in r.output
    assert sorted(p.name for p in out.iterdir()) == ["s0.gsz", "s1.gsz"]


def test_outputs_are_checked_before_any_work(tmp_path):
    paths = _scenes(tmp_path, 2)
    paths[1].with_suffix(".gsz").write_bytes(b"old")
    r = CliRunner().invoke(main, ["encode", *map(str, paths), "--views", "0"])
    assert r.exit_code == 1 and "exists" in r.output
    assert not paths[0].with_suffix(".gsz").exists()
    r = CliRunner().invoke(main, ["encode", *map(str, paths), "-o", str(tmp_path / "x.gsz")])
    assert r.exit_code == 1 and "must be an existing folder" in r.output
    r = CliRunner().invoke(main, ["encode", *map(str, paths), "--cameras", str(paths[0])])
    assert r.exit_code == 1 and "--cameras belongs to one scene" in r.output
