"""The decoder's use of the learned prior: --prior on refines against the network's
restorations (here a network whose restorations are known: part 1's targets shifted by a
constant), extra views refine files without side information, and a missing or altered weights
file is a clear error."""

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


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


SHIFT = 40.0  # grey levels the constant network adds to every pixel it restores


def constant_prior(monkeypatch, shift: float):
    """Install, as the shipped network, one whose correction is ``shift`` grey levels at every
    pixel (zero last-layer weights, bias ``shift``; no zero-mean projection, gains 1): its
    restorations are the plain targets (render + upsampled residual) plus ``shift / 255``,
    clamped. It has no weights file, so files carry no gains for it."""
    net = restore.RestoreNet(restore.RestoreConfig((4, 8, 8, 8), (1, 1, 1, 1))).eval()
    torch.nn.init.constant_(net.tail.bias, shift)
    monkeypatch.setattr(restore, "_cached", {"cpu": net})
    return net


def record_refine(monkeypatch) -> list:
    """Record the (cameras, targets, config) that decode hands to gscodec.refine.refine."""
    import gscodec.refine

    calls = []
    original = gscodec.refine.refine

    def recording(g, cameras, targets, config=None, **kwargs):
        calls.append((list(cameras), [t.detach().cpu().clone() for t in targets], config))
        return original(g, cameras, targets, config, **kwargs)

    monkeypatch.setattr(gscodec.refine, "refine", recording)
    return calls


def render_cpu(g, cam):
    from gscodec.render import render

    with torch.no_grad():
        return render(g, cam, backend="cpu").image


def mean_brightness(g, cameras) -> float:
    return float(np.mean([float(render_cpu(g, c).clamp(0, 1).mean()) for c in cameras]))


def side_information(data: bytes):
    from gscodec import sideinfo
    from gscodec.formats.gsz import decode_meta, read_container

    container = read_container(data)
    meta = decode_meta(container.streams[0].payload)
    return sideinfo.decode(container.get("SIDE").payload, meta["streams"]["SIDE"])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_prior_on_refines_toward_the_networks_restorations(monkeypatch, sign):
    """--prior on hands refine the network's restorations, not part 1's targets, and the
    refined scene moves toward them: brighter than the --prior off refinement (same steps) for
    a network that brightens, darker for one that darkens."""
    net = constant_prior(monkeypatch, sign * SHIFT)
    g = make_scene(300, sh_degree=1, seed=8)
    data = gscodec.encode(g, quality=2, **OPTIONS)
    plain = gscodec.decode(data, refine=False)
    si = side_information(data)
    assert si.prior is None  # no gains for this network: it applies with its own (1.0)
    calls = record_refine(monkeypatch)
    on = gscodec.decode(data, steps=20, device="cpu", prior="on")
    off = gscodec.decode(data, steps=20, device="cpu", prior="off")
    assert len(calls) == 2
    (cams_on, targets_on, _), (cams_off, targets_off, _) = calls
    want_cams, want = restore.restore_targets(plain, si, 2, model=net, backend="cpu")
    assert [c.viewmat.tolist() for c in cams_on] == [c.viewmat.tolist() for c in want_cams]
    for got, w, part1 in zip(targets_on, want, targets_off, strict=True):
        torch.testing.assert_close(got, w, atol=1e-6, rtol=0)
        # ... which are part 1's targets shifted by the network's constant correction (where
        # neither is clamped to [0, 1])
        inside = (part1 > 0.2) & (part1 < 0.8)
        assert int(inside.sum()) > 100
        torch.testing.assert_close(got[inside] - part1[inside],
                                   torch.full_like(got[inside], sign * SHIFT / 255),
                                   atol=1e-5, rtol=0)
    assert on.n == plain.n and np.isfinite(on.means).all() and np.isfinite(on.sh).all()
    moved = mean_brightness(on, si.cameras) - mean_brightness(off, si.cameras)
    assert sign * moved > 2e-3, moved  # (about 4e-3; the two decodes differ by < 1e-4 if the
    #                                     prior's targets are replaced by part 1's)


def test_prior_on_uses_the_files_gains_where_it_has_them(monkeypatch):
    """--prior on scales the network's correction by the gains the encoder fitted for these
    weights where the file carries them (here 0: the constant correction does not restore this
    scene, so the targets are part 1's and there is no pixel-level loss), and by the network's
    own calibrated gains (1.0) only for files without gains for these weights."""
    from gscodec import sideinfo

    net = constant_prior(monkeypatch, SHIFT)
    net.digest = "ab" * 32  # as if loaded from a weights file: the encoder fits gains for it
    g = make_scene(300, sh_degree=1, seed=8)
    with_gains = gscodec.encode(g, quality=2, **OPTIONS)
    without = gscodec.encode(g, quality=2, prior_gains=False, **OPTIONS)
    si = side_information(with_gains)
    assert si.prior == {"weights": "ab" * 8, "gain": [0.0, 0.0]}
    assert side_information(without).prior is None
    plain = gscodec.decode(with_gains, refine=False)
    part1 = sideinfo.targets(plain, si, backend="cpu")
    calls = record_refine(monkeypatch)
    gscodec.decode(with_gains, steps=1, device="cpu", prior="on")
    gscodec.decode(without, steps=1, device="cpu", prior="on")
    (_, targets_file, config_file), (_, targets_own, config_own) = calls
    assert config_file.pixel_weight == 0.0 and config_own.pixel_weight == 1.0
    for a, b, c in zip(targets_file, targets_own, part1, strict=True):
        torch.testing.assert_close(a, c, atol=1e-6, rtol=0)
        inside = (c > 0.2) & (c < 0.8)
        torch.testing.assert_close(b[inside] - c[inside],
                                   torch.full_like(c[inside], SHIFT / 255), atol=1e-5, rtol=0)


def test_extra_views_refine_a_file_without_side_information(monkeypatch):
    """Without side information, --prior on with extra views refines against the network's
    restorations at the extra views (gscodec.restore.extra_views_for): brighter there for a
    network that brightens; without extra views nothing is refined."""
    net = constant_prior(monkeypatch, SHIFT)
    g = make_scene(200, sh_degree=0, seed=9)
    data = gscodec.encode(g, quality=2)
    plain = gscodec.decode(data, refine=False)
    calls = record_refine(monkeypatch)
    for kwargs in ({}, {"prior": "on"}, {"prior": "on", "extra_views": 0}):
        out = gscodec.decode(data, steps=4, device="cpu", **kwargs)
        assert np.array_equal(out.sh, plain.sh) and np.array_equal(out.means, plain.means)
    assert calls == []  # nothing to refine
    out = gscodec.decode(data, steps=4, device="cpu", prior="on", extra_views=2)
    assert len(calls) == 1, "extra views refined nothing"
    (cams, targets, _), = calls
    extra = restore.extra_views_for(plain, 2, 256)
    assert len(cams) == 2
    for got, want in zip(cams, extra, strict=True):
        np.testing.assert_array_equal(got.viewmat, want.viewmat)
        np.testing.assert_array_equal(got.K, want.K)
        assert (got.width, got.height) == (want.width, want.height) == (256, 256)
    for cam, t in zip(extra, targets, strict=True):  # the network's restorations, no residual
        torch.testing.assert_close(t, restore.restore_image(
            render_cpu(plain, cam), None, 2, model=net), atol=1e-6, rtol=0)
    assert out.n == plain.n and np.isfinite(out.sh).all()
    assert not np.array_equal(out.sh, plain.sh)
    moved = mean_brightness(out, extra) - mean_brightness(plain, extra)
    assert moved > 2e-4, moved  # (about 6e-4 after 4 steps)


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
