"""Cameras (synthesized and INRIA cameras.json), image metrics and `gscodec compare`."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import gscodec  # noqa: E402
from gscodec.cameras import (  # noqa: E402
    CameraError,
    encoder_views,
    evaluation_views,
    read_cameras_json,
)
from gscodec.cli.main import main  # noqa: E402
from gscodec.metrics import psnr, ssim  # noqa: E402
from gscodec.synthetic import make_scene  # noqa: E402


def test_synthesized_views_look_at_the_scene_and_are_disjoint():
    g = make_scene(3000, seed=3)
    enc, ev = encoder_views(g.means, 6), evaluation_views(g.means, 6)
    assert len(enc) == len(ev) == 6
    positions = [c.position for c in enc + ev]
    for i, a in enumerate(positions):
        for b in positions[i + 1:]:
            assert np.linalg.norm(a - b) > 1e-3  # no view appears twice
    lo, hi = np.quantile(g.means, 0.01, axis=0), np.quantile(g.means, 0.99, axis=0)
    centre = (lo + hi) / 2
    for cam in enc + ev:
        pc = cam.viewmat[:3, :3] @ centre + cam.viewmat[:3, 3]
        assert pc[2] > 0 and abs(pc[0]) < 1e-6 and abs(pc[1]) < 1e-6  # centre straight ahead
        R = cam.viewmat[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    # deterministic
    np.testing.assert_array_equal(evaluation_views(g.means, 6)[2].viewmat, ev[2].viewmat)


def test_inria_cameras_json(tmp_path):
    rot = np.eye(3)
    data = [{"id": 0, "img_name": "a", "width": 64, "height": 48, "position": [0, 0, -3],
             "rotation": rot.tolist(), "fx": 50.0, "fy": 50.0}]
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps(data))
    cam = read_cameras_json(path)[0]
    np.testing.assert_allclose(cam.position, [0, 0, -3])
    np.testing.assert_allclose(cam.K, [[50, 0, 32], [0, 50, 24], [0, 0, 1]])
    half = cam.scaled(32)
    assert (half.width, half.height) == (32, 24) and half.K[0, 0] == 25
    for bad in ("not json", "[]", '[{"width": 1}]'):
        path.write_text(bad)
        with pytest.raises(CameraError):
            read_cameras_json(path)


def test_psnr_and_ssim():
    a = torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0))
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    b = (a + 0.1).clamp(0, 1)
    assert 15 < psnr(a, b) < 25
    assert ssim(a, b) < 1.0
    assert psnr(a, torch.zeros_like(a)) < psnr(a, b)


def test_compare_cli_on_a_scene_and_its_gsz(tmp_path):
    g = make_scene(3000, sh_degree=1, seed=8)
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, g)
    low, high = tmp_path / "low.gsz", tmp_path / "high.gsz"
    low.write_bytes(gscodec.encode(g, quality=1))
    high.write_bytes(gscodec.encode(g, quality=9))
    runner = CliRunner()
    results = {}
    for path in (low, high):
        r = runner.invoke(main, ["compare", str(ply), str(path), "--views", "3", "--size", "48",
                                 "--json", "--quiet"])
        assert r.exit_code == 0, r.output
        results[path.name] = json.loads(r.output)
    lo, hi = results["low.gsz"], results["high.gsz"]
    assert lo["views"] == 3 and lo["width"] == 48 and len(lo["per_view"]) == 3
    assert hi["psnr"] > lo["psnr"] + 3  # more bits, closer renders
    assert hi["ssim"] >= lo["ssim"]
    png = tmp_path / "worst.png"
    r = runner.invoke(main, ["compare", str(ply), str(low), "--views", "2", "--size", "32",
                             "--png", str(png), "--quiet"])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "PSNR" in r.output


def test_compare_cli_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["compare", str(tmp_path / "a.ply"), str(tmp_path / "b.ply")])
    assert r.exit_code == 1 and "no such file" in r.output
    bad = tmp_path / "bad.gsz"
    bad.write_bytes(b"\x89GSZ\r\n\x1a\n" + bytes(10))
    r = runner.invoke(main, ["compare", str(bad), str(bad)])
    assert r.exit_code == 1 and "truncated" in r.output and "Traceback" not in r.output


def test_compare_cli_with_a_cameras_file(tmp_path):
    g = make_scene(2000, sh_degree=0, seed=9)
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, g)
    gsz = tmp_path / "s.gsz"
    gsz.write_bytes(gscodec.encode(g, quality=3))
    cams = []
    for i, cam in enumerate(evaluation_views(g.means, 4, 64)):
        rot = cam.viewmat[:3, :3]
        cams.append({"id": i, "img_name": f"v{i}", "width": 128, "height": 96,
                     "position": cam.position.tolist(), "rotation": rot.T.tolist(),
                     "fx": 100.0, "fy": 100.0})
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps(cams))
    r = CliRunner().invoke(main, ["compare", str(ply), str(gsz), "--cameras", str(path),
                                  "--views", "2", "--size", "64", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["views"] == 2 and (out["width"], out["height"]) == (64, 48)
    assert [v["name"] for v in out["per_view"]] == ["v0", "v2"]
    assert 20 < out["psnr"] < 90
