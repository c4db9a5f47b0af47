"""gscodec view: the browser viewer (viser), its camera mapping, colours and screenshot."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line
from click.testing import CliRunner

import gscodec
from gscodec.cameras import Camera, evaluation_views, intrinsics
from gscodec.cli.main import main
from gscodec.gaussians import SH_C0, Gaussians
from gscodec.render import render
from gscodec.synthetic import make_scene
from gscodec.view import (
    BROWSER_ENV,
    browser_pose,
    camera_from_browser,
    colours,
    covariances,
    find_browser,
    home_camera,
    psnr_at,
)

try:
    import viser  # noqa: F401

    HAVE_VISER = True
except ImportError:
    HAVE_VISER = False
needs_viser = pytest.mark.skipif(not HAVE_VISER, reason="viser is not installed")
needs_browser = pytest.mark.skipif(not HAVE_VISER or find_browser() is None,
                                   reason="needs viser and Chromium (Debian: apt install "
                                          "chromium)")


def psnr(a, b) -> float:
    return float(-10 * np.log10(max(np.mean((np.asarray(a) - np.asarray(b)) ** 2), 1e-12)))


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("shape", [(320, 240), (200, 300), (256, 256)])
def test_browser_camera_round_trip(shape):
    """gscodec camera -> viser's (position, wxyz, vertical fov) -> gscodec camera is the
    identity, for any view direction and aspect."""
    w, h = shape
    means = np.random.default_rng(0).normal(size=(500, 3))
    for cam in evaluation_views(means, 5, 64, seed=3):
        fov = math.degrees(2 * math.atan(0.5 * cam.height / cam.K[1, 1]))
        cam = Camera(cam.viewmat, intrinsics(w, h, fov), w, h)
        pose = browser_pose(cam)
        back = camera_from_browser(pose["position"], pose["wxyz"], pose["fov"], w / h,
                                   longest_side=max(w, h))
        assert (back.width, back.height) == (w, h)
        np.testing.assert_allclose(back.viewmat, cam.viewmat, atol=1e-9)
        np.testing.assert_allclose(back.K, cam.K, atol=1e-9)
        # the camera looks along +z of its frame (OpenCV axes, as viser reports them)
        np.testing.assert_allclose(pose["forward"], cam.viewmat[2, :3], atol=1e-12)


def test_covariances_and_colours():
    g = make_scene(200, sh_degree=2, seed=4)
    cov = covariances(g)
    # the covariance of each Gaussian is R S^2 R^T: its eigenvalues are the squared scales
    eig = np.sort(np.linalg.eigvalsh(cov.astype(np.float64)), axis=1)
    np.testing.assert_allclose(eig, np.sort(np.exp(2 * g.log_scales.astype(np.float64)), 1),
                               rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(colours(g, None), np.clip(SH_C0 * g.sh[:, 0] + 0.5, 0, 1),
                               atol=1e-7)
    # with an eye, each colour is what gscodec's renderer shows where the Gaussian alone covers
    # the pixel: one big opaque Gaussian, seen from two sides
    one = Gaussians(means=np.zeros((1, 3), np.float32),
                    quats=np.array([[1, 0, 0, 0]], np.float32),
                    log_scales=np.full((1, 3), math.log(0.5), np.float32),
                    opacity_logits=np.array([12.0], np.float32),
                    sh=g.sh[:1].copy())
    for eye in (np.array([0.0, -4.0, 1.0]), np.array([3.0, 2.0, -2.0])):
        cam = Camera(_look(eye), intrinsics(33, 33, 40.0), 33, 33)
        with torch.no_grad():
            px = render(one, cam).image[16, 16].numpy()
        np.testing.assert_allclose(colours(one, eye)[0], px, atol=2e-3)
    assert not np.allclose(colours(one, np.array([0.0, -4.0, 1.0])),
                           colours(one, np.array([3.0, 2.0, -2.0])))


def _look(eye):
    from gscodec.cameras import look_at

    return look_at(eye, np.zeros(3), np.array([0.0, 0.0, 1.0]))


@needs_viser
def test_panel_psnr_is_the_psnr_at_the_browser_camera():
    """What the panel shows for a browser camera is the PSNR of the decoded scene against the
    original rendered at that camera (gscodec's renderer), and colours follow the camera."""
    from gscodec.view import Viewer

    original = make_scene(800, sh_degree=1, seed=5)
    decoded = gscodec.decode(gscodec.encode(original, 1))
    v = Viewer(decoded, original, port=0)
    try:
        import urllib.request

        with urllib.request.urlopen(v.url, timeout=30) as page:  # the page is served
            assert page.status == 200 and b"<html" in page.read(4096).lower()
        cam = evaluation_views(original.means, 1, 96, seed=2)[0]
        pose = browser_pose(cam)
        before = np.array(v.scenes[0].handle.buffer[:, 7], copy=True)
        v._update(pose["position"], pose["wxyz"], pose["fov"], 1.0)
        want = psnr_at(decoded, original, camera_from_browser(
            pose["position"], pose["wxyz"], pose["fov"], 1.0, v.psnr_size))
        assert v.last_psnr == pytest.approx(want) and 20 < want < 80
        assert f"{want:.2f} dB" in v.psnr_text.content
        # the SH scene's colours were re-evaluated from the new eye
        assert not np.array_equal(before, v.scenes[0].handle.buffer[:, 7])
        # a different view gives a different figure: the PSNR follows the camera
        other = browser_pose(evaluation_views(original.means, 2, 96, seed=2)[1])
        v._update(other["position"], other["wxyz"], other["fov"], 1.0)
        assert v.last_psnr != pytest.approx(want)
    finally:
        v.close()


@needs_browser
def test_screenshot_in_headless_chromium_shows_the_scene(tmp_path):
    """The page loads in headless Chromium, and its frame is the scene: it covers a visible
    part of the frame and agrees with gscodec's own render at the same camera (a wrong
    camera, missing splats or wrong colours fall far below the bar)."""
    from PIL import Image

    original = make_scene(3000, sh_degree=1, seed=0)
    ply, gsz, png = tmp_path / "s.ply", tmp_path / "s.gsz", tmp_path / "shot.png"
    gscodec.write_ply(ply, original)
    gsz.write_bytes(gscodec.encode(original, 5, views=0))
    r = run("view", str(gsz), "--against", str(ply), "--screenshot", str(png), "--size",
            "320x240", "--no-refine", "--quiet")
    assert r.exit_code == 0, r.output
    img = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("RGB"), np.float64) / 255
    assert img.shape == (240, 640, 3)  # decoded | original
    decoded = gscodec.decode(gsz.read_bytes(), refine=False)
    home = home_camera(decoded)
    fov = math.degrees(2 * math.atan(0.5 * home.height / home.K[1, 1]))
    cam = Camera(home.viewmat, intrinsics(320, 240, fov), 320, 240)
    with torch.no_grad():
        ours = render(decoded, cam).image.clamp(0, 1).numpy()
        theirs = render(original, cam).image.clamp(0, 1).numpy()
    left, right = img[:, :320], img[:, 320:]
    assert (left.max(axis=2) > 0.05).mean() > 0.1  # the scene covers a visible part
    assert psnr(left, ours) > 30 and psnr(right, theirs) > 30
    assert psnr(left[:, ::-1], ours) < 25  # the bar tells a mirrored frame from the scene
    assert psnr(np.zeros_like(ours), ours) < 25


def test_screenshot_without_a_browser_is_a_clear_error(tmp_path, monkeypatch):
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(50, sh_degree=0, seed=1))
    monkeypatch.setenv(BROWSER_ENV, str(tmp_path / "no-such-browser"))
    r = run("view", str(ply), "--screenshot", str(tmp_path / "x.png"))
    assert r.exit_code == 1
    assert "needs Chromium" in one_error_line(r)
    assert not (tmp_path / "x.png").exists()


def test_view_refuses_bad_input(tmp_path):
    r = run("view", str(tmp_path / "missing.gsz"))
    assert r.exit_code == 1 and "no such file" in one_error_line(r)
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(50, sh_degree=0, seed=1))
    r = run("view", str(ply), "--size", "12x9000", "--screenshot", str(tmp_path / "x.png"))
    assert r.exit_code == 2 and "16 to 4096" in r.output
