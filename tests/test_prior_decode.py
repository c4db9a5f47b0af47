"""The decoder's use of the learned prior: --prior on refines against the network's
restorations (here an untrained network, which restores to the decoded render plus residual),
extra views refine files without side information, and a missing or altered weights file is a
clear error."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

import gscodec  # noqa: E402
import gscodec.restore as restore  # noqa: E402
from gscodec.cli.main import main  # noqa: E402
from gscodec.synthetic import make_scene  # noqa: E402

OPTIONS = {"views": 2, "sideinfo_size": 32, "sideinfo_scale": 4}


@pytest.fixture()
def untrained_prior(monkeypatch):
    torch.manual_seed(0)
    net = restore.RestoreNet(restore.RestoreConfig()).eval()
    monkeypatch.setattr(restore, "_cached", {"cpu": net})
    return net


def test_prior_on_refines_with_the_network(untrained_prior):
    g = make_scene(300, sh_degree=1, seed=8)
    data = gscodec.encode(g, quality=2, **OPTIONS)
    plain = gscodec.decode(data, refine=False)
    refined = gscodec.decode(data, steps=3, device="cpu", prior="on")
    assert refined.n == plain.n
    assert np.isfinite(refined.means).all() and np.isfinite(refined.sh).all()
    assert not np.array_equal(refined.sh, plain.sh)


def test_extra_views_refine_a_file_without_side_information(untrained_prior):
    g = make_scene(200, sh_degree=0, seed=9)
    data = gscodec.encode(g, quality=2)
    plain = gscodec.decode(data)
    assert np.array_equal(gscodec.decode(data, prior="on").sh, plain.sh)  # nothing to refine
    out = gscodec.decode(data, steps=2, device="cpu", prior="on", extra_views=2)
    assert out.n == plain.n and np.isfinite(out.sh).all()


def test_bad_prior_value_is_refused():
    with pytest.raises(ValueError):
        gscodec.decode(gscodec.encode(make_scene(5, sh_degree=0, seed=1)), prior="maybe")


def test_prior_on_without_usable_weights_is_one_clear_error(tmp_path, monkeypatch):
    g = make_scene(100, sh_degree=0, seed=3)
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, g)
    (tmp_path / "s.gsz").write_bytes(gscodec.encode(g, quality=2, **OPTIONS))
    monkeypatch.setattr(restore, "_cached", {})
    monkeypatch.setattr(restore.pretrained, "WEIGHTS_FILE", tmp_path / "missing.pt")
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "s.gsz"), "--prior", "on",
                                  "--steps", "1"])
    assert r.exit_code == 1 and "restoration weights" in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "s.decoded.ply").exists()


def test_encoder_fits_prior_gains_for_the_shipped_weights():
    from gscodec.api import refinement_plan
    from gscodec.restore.pretrained import WEIGHTS_SHA256

    g = make_scene(400, sh_degree=0, seed=8)
    data = gscodec.encode(g, quality=1, **OPTIONS)
    p = gscodec.inspect(data)["side_prior"]
    assert p["weights"] == WEIGHTS_SHA256[:16] and len(p["gain"]) == 2
    assert all(0 <= x <= 1 and (x * 64) == int(x * 64) for x in p["gain"])
    # "auto" uses the prior for files with gains for the shipped weights, and only those
    assert refinement_plan(True, "auto", 0, {"prior": {**p, "gain": [0.5, 0.25]}}) == (True, True)
    assert refinement_plan(True, "auto", 0, {"prior": {**p, "gain": [0, 0]}}) == (True, False)
    assert refinement_plan(True, "auto", 0, {"prior": {**p, "weights": "0" * 16}}) == (True, False)
    assert refinement_plan(True, "auto", 0, None) == (True, False)
    assert refinement_plan(True, "on", 0, None) == (True, True)
    assert gscodec.inspect(gscodec.encode(g, quality=1, prior_gains=False,
                                          **OPTIONS))["side_prior"] is None
    # presets the network was not trained for get no gains
    assert gscodec.inspect(gscodec.encode(g, quality=9, **OPTIONS))["side_prior"] is None


def test_small_fitted_gains_are_sent_as_zero():
    from gscodec.restore import GAIN_STEP, MIN_GAIN, quantize_gain

    assert MIN_GAIN == 0.5
    assert quantize_gain(0.49) == 0.0 and quantize_gain(0.41) == 0.0
    assert quantize_gain(0.5) == 0.5
    assert quantize_gain(0.61) == 39 * GAIN_STEP
    assert quantize_gain(1.0) == 1.0
