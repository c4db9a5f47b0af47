"""formats.axes: a half turn about an axis turns positions, covariances and view-dependent
colour together (checked against the renderer's own SH evaluation), and renders the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gscodec import Gaussians
from gscodec.cameras import Camera, evaluation_views
from gscodec.codec.canonical import quats_to_rotmats
from gscodec.formats.axes import turn
from gscodec.render import render
from gscodec.render.sh import sh_to_rgb
from gscodec.synthetic import make_scene

TURN = {"x": np.diag([1.0, -1.0, -1.0]), "y": np.diag([-1.0, 1.0, -1.0]),
        "z": np.diag([-1.0, -1.0, 1.0])}


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_half_turn_moves_every_attribute_consistently(axis):
    a = make_scene(300, sh_degree=3, seed=4).as_arrays()
    t = turn(a, axis)
    m = TURN[axis]
    assert np.allclose(t["means"], a["means"] @ m.T)

    def cov(arr):
        r = quats_to_rotmats(arr["quats"])
        return (r * np.exp(2 * arr["log_scales"])[:, None]) @ r.transpose(0, 2, 1)

    assert np.allclose(cov(t), m @ cov(a) @ m.T, atol=1e-5)
    # the colour the turned scene shows from the turned direction is the original's
    rng = np.random.default_rng(1)
    d = rng.normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    before = sh_to_rgb(torch.from_numpy(a["sh"]), torch.from_numpy(d).float())
    after = sh_to_rgb(torch.from_numpy(t["sh"]), torch.from_numpy(d @ m.T).float())
    assert torch.allclose(before, after, atol=1e-5)
    assert np.array_equal(t["opacity_logits"], a["opacity_logits"])
    assert np.array_equal(turn(t, axis)["sh"], a["sh"])  # two half turns: the identity


def test_a_turned_scene_renders_as_the_original_from_the_turned_camera():
    g = make_scene(400, sh_degree=2, seed=5)
    t = Gaussians.from_arrays(turn(g.as_arrays(), "x"))
    cam = evaluation_views(g.means, 1, 48, seed=3)[0]
    m = np.eye(4)
    m[:3, :3] = TURN["x"]
    turned = Camera(cam.viewmat @ m, cam.K, cam.width, cam.height)  # world -> turned world
    with torch.no_grad():
        a = render(g, cam, backend="cpu").image
        b = render(t, turned, backend="cpu").image
    assert float((a - b).abs().max()) < 1e-4 and float(a.abs().max()) > 0.05


def test_unknown_axis():
    with pytest.raises(ValueError, match="axis"):
        turn(make_scene(3, sh_degree=0, seed=1).as_arrays(), "w")
