"""Training cameras in: INRIA cameras.json and nerfstudio transforms.json, the encoder's choice
of training views for side information and importance, and held-out evaluation in compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import one_error_line
from click.testing import CliRunner

import gscodec
import gscodec.importance
from gscodec.api import training_views
from gscodec.cameras import (
    Camera,
    CameraError,
    evaluation_views,
    fitted,
    read_cameras,
    same_view,
    spread,
)
from gscodec.cli.main import main
from gscodec.info import side_cameras
from gscodec.synthetic import make_scene


def _poses(g, count=12):
    # training-like cameras: 4:3 images at varied distances around the scene
    cams = evaluation_views(g.means, count, 160, seed=7)
    out = []
    for c in cams:
        K = c.K.copy()
        K[1, 2] = 60.0  # 160 x 120
        out.append(Camera(c.viewmat, K, 160, 120, f"img{len(out):03d}.png"))
    return out


def _inria(cams):
    return [{"id": i, "img_name": c.name, "width": c.width, "height": c.height,
             "position": c.position.tolist(), "rotation": c.viewmat[:3, :3].T.tolist(),
             "fx": float(c.K[0, 0]), "fy": float(c.K[1, 1])} for i, c in enumerate(cams)]


def _transforms(cams):
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    frames = []
    for c in cams:
        c2w = np.linalg.inv(c.viewmat) @ flip  # OpenCV camera axes -> OpenGL's
        # focal lengths per frame, the rest shared (both places are read)
        frames.append({"file_path": c.name, "transform_matrix": c2w.tolist(),
                       "fl_x": float(c.K[0, 0]), "fl_y": float(c.K[1, 1])})
    c = cams[0]
    return {"cx": float(c.K[0, 2]), "cy": float(c.K[1, 2]), "w": c.width, "h": c.height,
            "frames": frames}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("cams")
    g = make_scene(2000, sh_degree=1, seed=3)
    ply = d / "s.ply"
    gscodec.write_ply(ply, g)
    cams = _poses(g)
    (d / "cameras.json").write_text(json.dumps(_inria(cams)))
    (d / "transforms.json").write_text(json.dumps(_transforms(cams)))
    return g, ply, cams, d


def test_both_formats_read_the_same_cameras(scene):
    _, _, cams, d = scene
    for name in ("cameras.json", "transforms.json"):
        got = read_cameras(d / name)
        assert [c.name for c in got] == [c.name for c in cams]
        for a, b in zip(got, cams, strict=True):
            assert np.allclose(a.viewmat, b.viewmat, atol=1e-9)
            assert np.allclose(a.K, b.K) and (a.width, a.height) == (160, 120)


def test_transforms_json_with_a_field_of_view_and_bad_files(tmp_path, scene):
    _, _, cams, _ = scene
    doc = _transforms(cams[:1])
    for key in ("fl_x", "fl_y"):
        del doc["frames"][0][key]
    del doc["cx"], doc["cy"]
    doc["camera_angle_x"] = 2 * np.arctan(80 / cams[0].K[0, 0])
    (tmp_path / "t.json").write_text(json.dumps(doc))
    got = read_cameras(tmp_path / "t.json")
    assert np.allclose(got[0].K, cams[0].K) and same_view(got[0], cams[0])
    bad = {"frames": []}, {"frames": [{"transform_matrix": [[1]]}], "w": 4, "h": 4, "fl_x": 1}
    for i, doc in enumerate(bad):
        (tmp_path / f"b{i}.json").write_text(json.dumps(doc))
        with pytest.raises(CameraError):
            read_cameras(tmp_path / f"b{i}.json")
    scaled = _transforms(cams[:1])
    scaled["frames"][0]["transform_matrix"] = (2 * np.eye(4)).tolist()
    (tmp_path / "s.json").write_text(json.dumps(scaled))
    with pytest.raises(CameraError, match="scaled rotation"):
        read_cameras(tmp_path / "s.json")


def test_spread_and_fitted(scene):
    _, _, cams, _ = scene
    chosen = spread(cams, 5)
    assert len(set(chosen)) == 5 and chosen == spread(cams, 5) and spread(cams, 50) == list(
        range(len(cams)))
    pos = np.array([c.position for c in cams])
    # first the camera nearest the mean centre, then the one farthest from it
    assert chosen[0] == int(np.argmin(np.linalg.norm(pos - pos.mean(axis=0), axis=1)))
    assert chosen[1] == int(np.argmax(np.linalg.norm(pos - pos[chosen[0]], axis=1)))
    f = fitted(cams[0], 90, 4)  # 160x120 -> 90x68 -> 88x68
    assert (f.width, f.height) == (88, 68)
    s = 90 / 160
    # the image centre's ray is unchanged up to the crop: the principal point moved by half of it
    assert f.K[0, 2] == pytest.approx(cams[0].K[0, 2] * s - 1.0)
    assert f.K[1, 2] == pytest.approx(cams[0].K[1, 2] * round(120 * s) / 120)
    assert same_view(f, cams[0])


def test_encode_with_cameras_stores_the_training_cameras(scene, tmp_path, monkeypatch):
    g, ply, cams, d = scene
    seen = []
    original = gscodec.importance.sensitivities

    def recording(gs, cameras, **kw):
        seen.extend(cameras)
        return original(gs, cameras, **kw)

    monkeypatch.setattr(gscodec.importance, "sensitivities", recording)
    out = tmp_path / "s.gsz"
    r = CliRunner().invoke(main, ["encode", str(ply), "-o", str(out), "-q", "3", "--views", "4",
                                  "--importance", "--cameras", str(d / "cameras.json")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    stored = side_cameras(out)
    expected = [cams[i] for i in spread(cams, 4)]
    assert len(stored) == 4
    for a, b in zip(stored, expected, strict=True):
        assert same_view(a, b)  # the SIDE stream's cameras are the given training cameras
        assert max(a.width, a.height) <= 256 and a.width % 4 == 0 and a.height % 4 == 0
    assert "side information at 4 of 12 training cameras: " + ", ".join(
        c.name for c in expected) in r.output
    # the importance estimate looked at training cameras too
    assert seen and all(any(same_view(s, c) for c in cams) for s in seen)
    # without --cameras: synthesized encoder views, none of them a training camera
    plain = tmp_path / "plain.gsz"
    plain.write_bytes(gscodec.encode(g, 3, views=4))
    assert not any(same_view(a, c) for a in side_cameras(plain) for c in cams)
    assert [c.width for c in training_views(cams, 4, 256, 4)] == [c.width for c in stored]


def test_compare_with_cameras_evaluates_on_held_out_views(scene, tmp_path):
    g, ply, cams, d = scene
    gsz = tmp_path / "s.gsz"
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(ply), "-o", str(gsz), "--views", "10",
                             "--cameras", str(d / "transforms.json"), "--quiet"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["compare", str(ply), str(gsz), "--cameras",
                             str(d / "cameras.json"), "--views", "8", "--size", "32",
                             "--json", "--no-refine"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["views"] == 2  # 12 cameras, 10 carried the side information
    assert "10 of the 12 cameras carry the file's side information" in r.stderr
    used = {c.name for c in (cams[i] for i in spread(cams, 10))}
    assert {v["name"] for v in result["per_view"]}.isdisjoint(used)
    everything = tmp_path / "all.gsz"
    runner.invoke(main, ["encode", str(ply), "-o", str(everything), "--views", "12",
                         "--cameras", str(d / "cameras.json"), "--quiet"],
                  catch_exceptions=False)
    r = runner.invoke(main, ["compare", str(ply), str(everything), "--cameras",
                             str(d / "cameras.json"), "--no-refine", "--quiet"],
                      catch_exceptions=False)
    assert r.exit_code == 1 and "none is left to evaluate on" in one_error_line(r)
    (tmp_path / "junk.json").write_text("{}")
    r = runner.invoke(main, ["encode", str(ply), "-o", str(tmp_path / "x.gsz"), "--cameras",
                             str(tmp_path / "junk.json")], catch_exceptions=False)
    assert r.exit_code == 1 and "cameras" in one_error_line(r)
    assert not (tmp_path / "x.gsz").exists()
