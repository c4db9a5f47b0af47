"""Cameras (synthesized and INRIA cameras.json), image metrics and `gscodec compare`."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import gscodec  # noqa: E402
from gscodec.cameras import (  # noqa: E402
    EXTRA_VIEWS_START,
    MIN_SEPARATION_DEG,
    CameraError,
    encoder_views,
    evaluation_views,
    random_encoder_views,
    read_cameras_json,
    view_direction,
)
from gscodec.cli.main import main  # noqa: E402
from gscodec.metrics import psnr, ssim  # noqa: E402
from gscodec.synthetic import make_scene  # noqa: E402


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles [len(a), len(b)] between unit vectors."""
    return np.degrees(np.arccos(np.clip(a @ b.T, -1.0, 1.0)))


def _directions(cams, means) -> np.ndarray:
    return np.array([view_direction(c, means) for c in cams]).reshape(-1, 3)


def test_encoder_and_evaluation_views_are_3_degrees_apart_for_every_pair_of_counts():
    # an off-centre, anisotropic scene, so that the centre and radius are not trivial
    g = make_scene(3000, seed=3)
    means = g.means * np.array([3.0, 1.0, 0.5], np.float32) + np.array([5.0, -2.0, 1.0],
                                                                       np.float32)
    closest = 180.0
    enc = {k: _directions(encoder_views(means, k, 16), means) for k in range(1, 65)}
    for seed in (0, 1, 2, 1000):
        for v in range(1, 65):
            ev = _directions(evaluation_views(means, v, 16, seed=seed), means)
            for k in range(1, 65):
                closest = min(closest, float(_angles_deg(enc[k], ev).min()))
                assert closest >= MIN_SEPARATION_DEG, (seed, k, v, closest)
    assert closest >= MIN_SEPARATION_DEG == 3.0
    # the extra views (directions 64..127) and random training views keep the same distance
    extra = _directions(encoder_views(means, 64, 32, start=EXTRA_VIEWS_START), means)
    train = _directions(random_encoder_views(means, 200, 32, np.random.default_rng(4)), means)
    for seed in (0, 1, 2, 1000):
        ev = _directions(evaluation_views(means, 64, 32, seed=seed), means)
        assert _angles_deg(np.concatenate([extra, train]), ev).min() >= MIN_SEPARATION_DEG
    # views of the decoded scene (quantized positions move the centre a little) keep 3 degrees
    decoded = gscodec.decode(gscodec.encode(gscodec.Gaussians(
        means, g.quats, g.log_scales, g.opacity_logits, g.sh), quality=1), refine=False)
    enc = _directions(encoder_views(decoded.means, 64, 32), means)
    ev = _directions(evaluation_views(means, 64, 32), means)
    assert _angles_deg(enc, ev).min() >= MIN_SEPARATION_DEG


def test_the_old_construction_would_fail_the_separation_check():
    # the test above can fail: views of one Fibonacci spiral with offsets 0 and 0.5 (the
    # construction before 2026-12-01) coincide for 12 encoder and 8 evaluation views
    from gscodec.cameras import orbit_views

    means = make_scene(500, seed=1).means
    a = _directions(orbit_views(means, 12, size=32, offset=0.0), means)
    b = _directions(orbit_views(means, 8, size=32, offset=0.5), means)
    assert _angles_deg(a, b).min() < MIN_SEPARATION_DEG


def test_view_families_are_spread_nested_seeded_and_varied():
    g = make_scene(3000, seed=3)
    lo, hi = np.quantile(g.means, 0.01, axis=0), np.quantile(g.means, 0.99, axis=0)
    centre = (lo + hi) / 2
    enc = encoder_views(g.means, 16)
    for cam in enc:
        pc = cam.viewmat[:3, :3] @ centre + cam.viewmat[:3, 3]
        assert pc[2] > 0 and abs(pc[0]) < 1e-6 and abs(pc[1]) < 1e-6  # centre straight ahead
        R = cam.viewmat[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    # the first K encoder directions cover the sphere: no direction is far from all of them
    probe = np.random.default_rng(0).normal(size=(4000, 3))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    for k, gap in ((8, 62.0), (16, 45.0), (64, 23.0)):
        d = _directions(encoder_views(g.means, k), g.means)
        assert _angles_deg(probe, d).min(axis=1).max() < gap, k
    ev = evaluation_views(g.means, 32, 64, seed=5)
    d = _directions(ev, g.means)
    assert _angles_deg(probe, d).min(axis=1).max() < 35.0
    # nested: the first views of a larger count are the views of a smaller one
    for a, b in zip(evaluation_views(g.means, 6, 64, seed=5), ev, strict=False):
        np.testing.assert_array_equal(a.viewmat, b.viewmat)
        np.testing.assert_array_equal(a.K, b.K)
    np.testing.assert_array_equal(encoder_views(g.means, 4)[3].viewmat, enc[3].viewmat)
    # seeded: another seed gives other views, the same seed the same ones
    other = evaluation_views(g.means, 32, 64, seed=6)
    assert _angles_deg(d, _directions(other, g.means)).min(axis=1).max() > 1.0
    np.testing.assert_array_equal(evaluation_views(g.means, 32, 64, seed=5)[7].viewmat,
                                  ev[7].viewmat)
    # evaluation views vary their distance (closer ones see detail), field of view and aim
    dist = np.array([np.linalg.norm(c.position - centre) for c in ev])
    enc_dist = np.linalg.norm(enc[0].position - centre)
    assert dist.min() < 0.7 * enc_dist and dist.max() > 0.9 * enc_dist
    focal = np.array([c.K[0, 0] for c in ev])
    assert focal.max() > 1.3 * focal.min()
    off_axis = [np.linalg.norm((c.viewmat[:3, :3] @ centre + c.viewmat[:3, 3])[:2]) for c in ev]
    assert max(off_axis) > 1e-3
    with pytest.raises(ValueError):
        encoder_views(g.means, 65, start=64)


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


def test_covered_psnr_ignores_the_empty_background_but_not_what_either_scene_covers():
    from gscodec.metrics import COVER_ALPHA, covered_mse

    a = torch.zeros(10, 10, 3)
    b = torch.zeros(10, 10, 3)
    alpha_a = torch.zeros(10, 10, 1)
    alpha_b = torch.zeros(10, 10, 1)
    alpha_a[:5] = 1.0  # the reference covers the top half
    a[:5] = 0.5
    b[:5] = 0.6  # error 0.1 on every covered pixel
    mse, coverage = covered_mse(a, b, alpha_a, alpha_b)
    assert coverage == 0.5 and mse == pytest.approx(0.01, rel=1e-5)
    full = float(torch.mean((a - b) ** 2))
    assert full == pytest.approx(mse * coverage, rel=1e-5)  # the background halves the error
    # a floater of the other scene in the reference's empty half counts
    b[9, 9] = 1.0
    alpha_b[9, 9] = COVER_ALPHA
    mse2, coverage2 = covered_mse(a, b, alpha_a, alpha_b)
    assert coverage2 == pytest.approx(0.51) and mse2 > mse
    # fainter than the threshold: not covered
    alpha_b[9, 9] = COVER_ALPHA / 2
    assert covered_mse(a, b, alpha_a, alpha_b)[1] == 0.5
    assert covered_mse(a, b, alpha_a * 0, alpha_b * 0) == (0.0, 0.0)


def test_compare_reports_the_covered_psnr():
    from gscodec.cameras import evaluation_views
    from gscodec.metrics import compare_renders

    g = make_scene(1500, sh_degree=0, seed=4)
    d = gscodec.decode(gscodec.encode(g, quality=2), refine=False)
    out = compare_renders(g, d, evaluation_views(g.means, 2, 48), backend="cpu")
    assert 0 < out["coverage"] < 1
    # the error sits on covered pixels only, so the covered PSNR is lower by about
    # 10 log10(1 / coverage)
    assert out["psnr_covered"] < out["psnr"]
    for v in out["per_view"]:
        expect = v["psnr"] + 10 * np.log10(v["coverage"])
        assert abs(v["psnr_covered"] - expect) < 0.05
