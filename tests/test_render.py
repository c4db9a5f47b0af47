"""The renderer: the CPU rasterizer against a slow, obviously-correct per-pixel reference, its
gradients against a dense autograd reference, and (with CUDA) against gsplat."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gscodec import Gaussians  # noqa: E402
from gscodec.cameras import Camera, evaluation_views, intrinsics, look_at  # noqa: E402
from gscodec.render import gsplat_available, render  # noqa: E402
from gscodec.render.sh import sh_basis  # noqa: E402
from gscodec.synthetic import make_scene  # noqa: E402


def tiny_scene(n: int = 40, degree: int = 2, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=0.5, size=(n, 3))
    quats = rng.normal(size=(n, 4))
    log_scales = rng.normal(loc=-2.0, scale=0.5, size=(n, 3))
    opacity = rng.normal(loc=0.5, scale=1.5, size=n)
    sh = rng.normal(scale=0.4, size=(n, (degree + 1) ** 2, 3))
    return Gaussians(*(a.astype(np.float32) for a in (means, quats, log_scales, opacity, sh)))


def tiny_camera(width: int = 24, height: int = 20, seed: int = 0) -> Camera:
    rng = np.random.default_rng(seed + 100)
    eye = rng.normal(size=3)
    eye = 2.5 * eye / np.linalg.norm(eye)
    return Camera(look_at(eye, np.zeros(3), np.array([0.0, 0.0, 1.0])),
                  intrinsics(width, height, 60.0), width, height)


def reference_render(g: Gaussians, cam: Camera) -> np.ndarray:
    """Per pixel, per Gaussian in depth order, exactly as the rules say (float64, no tiles)."""
    view, K = cam.viewmat.astype(np.float64), cam.K.astype(np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    w_img, h_img = cam.width, cam.height
    items = []
    for i in range(g.n):
        q = g.quats[i].astype(np.float64)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                      [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
        S = np.diag(np.exp(g.log_scales[i].astype(np.float64)))
        cov = R @ S @ S @ R.T
        pc = view[:3, :3] @ g.means[i] + view[:3, 3]
        if pc[2] <= 0.01:
            continue
        lim = [(w_img - cx) / fx + 0.3 * 0.5 * w_img / fx, cx / fx + 0.3 * 0.5 * w_img / fx,
               (h_img - cy) / fy + 0.3 * 0.5 * h_img / fy, cy / fy + 0.3 * 0.5 * h_img / fy]
        tx = pc[2] * min(lim[0], max(-lim[1], pc[0] / pc[2]))
        ty = pc[2] * min(lim[2], max(-lim[3], pc[1] / pc[2]))
        J = np.array([[fx / pc[2], 0, -fx * tx / pc[2] ** 2],
                      [0, fy / pc[2], -fy * ty / pc[2] ** 2]])
        cov2 = J @ view[:3, :3] @ cov @ view[:3, :3].T @ J.T + 0.3 * np.eye(2)
        if np.linalg.det(cov2) <= 0:
            continue
        opacity = 1 / (1 + math.exp(-float(g.opacity_logits[i])))
        if opacity < 1 / 255:
            continue
        mean2 = np.array([fx * pc[0] / pc[2] + cx, fy * pc[1] / pc[2] + cy])
        d = g.means[i] - cam.position
        d = d / np.linalg.norm(d)
        basis = sh_basis(g.sh_degree, torch.tensor(d[None])).numpy()[0]
        rgb = np.maximum((basis[:, None] * g.sh[i].astype(np.float64)).sum(0) + 0.5, 0)
        extent = min(3.33, math.sqrt(2 * math.log(opacity * 255)))
        rx = math.ceil(extent * math.sqrt(cov2[0, 0]))
        ry = math.ceil(extent * math.sqrt(cov2[1, 1]))
        if mean2[0] + rx <= 0 or mean2[0] - rx >= w_img or mean2[1] + ry <= 0 \
                or mean2[1] - ry >= h_img:
            continue
        items.append((pc[2], mean2, np.linalg.inv(cov2), opacity, rgb))
    items.sort(key=lambda t: t[0])
    out = np.zeros((h_img, w_img, 3))
    for row in range(h_img):
        for col in range(w_img):
            T, c = 1.0, np.zeros(3)
            for _, mean2, inv, opacity, rgb in items:
                dlt = np.array([col + 0.5, row + 0.5]) - mean2
                power = 0.5 * dlt @ inv @ dlt
                alpha = min(0.999, opacity * math.exp(-power))
                if power < 0 or alpha < 1 / 255:
                    continue
                if T * (1 - alpha) <= 1e-4:
                    break
                c += T * alpha * rgb
                T *= 1 - alpha
            out[row, col] = c
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpu_rasterizer_matches_the_per_pixel_reference(seed):
    g = tiny_scene(seed=seed)
    cam = tiny_camera(seed=seed)
    ours = render(g, cam, backend="cpu").image.numpy()
    ref = reference_render(g, cam)
    assert ref.max() > 0.05  # the scene is actually in view
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_dense_and_opaque_scene_stops_early_like_the_reference():
    g = tiny_scene(n=60, seed=5)
    g.opacity_logits[:] = 6.0
    g.log_scales[:] += 1.0
    cam = tiny_camera(seed=5)
    ref = reference_render(g, cam)
    np.testing.assert_allclose(render(g, cam, backend="cpu").image.numpy(), ref, atol=2e-4)


def test_gaussians_behind_finished_pixels_are_dropped_without_changing_the_image(monkeypatch):
    # two wide opaque Gaussians between the camera and a cloud of small ones: in small chunks,
    # Gaussians whose box lies on finished pixels are dropped before their pairs are enumerated
    from gscodec.render import cpu

    g = tiny_scene(n=60, seed=5)
    cam = tiny_camera(seed=5)
    eye = -cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3]
    wall = np.stack([0.5 * eye, 0.55 * eye]).astype(np.float32)
    g = Gaussians(np.concatenate([wall, g.means]),
                  np.concatenate([np.tile([[1.0, 0, 0, 0]], (2, 1)), g.quats]).astype(np.float32),
                  np.concatenate([np.full((2, 3), 2.0), g.log_scales]).astype(np.float32),
                  np.concatenate([[8.0, 8.0], g.opacity_logits]).astype(np.float32),
                  np.concatenate([g.sh[:2], g.sh]).astype(np.float32))
    dropped = []
    live_boxes = cpu._live_boxes

    def counting(*args):
        live = live_boxes(*args)
        dropped.append(int((~live).sum()))
        return live

    monkeypatch.setattr(cpu, "_live_boxes", counting)
    ref = reference_render(g, cam)
    np.testing.assert_allclose(render(g, cam, backend="cpu", max_pairs=600).image.numpy(), ref,
                               atol=2e-4)
    assert sum(dropped) > 0


def _behind_a_wall(g: Gaussians, centres: list[np.ndarray], log_scale: float,
                   logit: float) -> Gaussians:
    """``g`` with round, opaque Gaussians at ``centres`` appended (last in storage: a wall
    first in depth where they lie between the camera and the scene)."""
    k = len(centres)
    return Gaussians(np.concatenate([g.means, np.stack(centres)]).astype(np.float32),
                     np.concatenate([g.quats, [[1.0, 0, 0, 0]] * k]).astype(np.float32),
                     np.concatenate([g.log_scales, np.full((k, 3), log_scale)]).astype(np.float32),
                     np.concatenate([g.opacity_logits, [logit] * k]).astype(np.float32),
                     np.concatenate([g.sh, g.sh[:k]]).astype(np.float32))


def _counted_projections(monkeypatch) -> list[int]:
    """The Gaussians each call of the renderer's projection gets, from now on in the test."""
    import gscodec.render as r

    projected: list[int] = []
    project = r.project

    def counting(means, *args, **kwargs):
        projected.append(means.shape[0])
        return project(means, *args, **kwargs)

    monkeypatch.setattr(r, "project", counting)
    return projected


def test_without_autograd_gaussians_behind_a_finished_image_are_not_projected(monkeypatch):
    # the no-grad path projects and composites in depth order a chunk at a time: once every
    # pixel has finished (behind an opaque wall) the rest is not even projected
    import gscodec.render as r

    cam = tiny_camera(seed=5)
    eye = -cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3]
    g = _behind_a_wall(tiny_scene(n=60, seed=5), [0.5 * eye, 0.55 * eye], 2.0, 8.0)
    projected = _counted_projections(monkeypatch)
    monkeypatch.setattr(r, "PROJECT_CHUNK", 8)
    with torch.no_grad():
        image = render(g, cam, backend="cpu").image.numpy()
    np.testing.assert_allclose(image, reference_render(g, cam), atol=2e-4)
    assert projected == [8]  # the first chunk (the wall and six behind it), not all 62
    # the same image with autograd (every Gaussian projected at once)
    projected.clear()
    np.testing.assert_allclose(render(g, cam, backend="cpu").image.detach().numpy(), image,
                               atol=1e-6)
    assert projected == [62]


def test_chunking_does_not_change_images_or_gradients():
    g = tiny_scene(n=50, seed=3)
    cam = tiny_camera(32, 32, seed=3)

    def grads(max_pairs):
        t = g.torch()
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            getattr(t, name).requires_grad_(True)
        out = render(t, cam, backend="cpu", max_pairs=max_pairs).image
        (out * torch.linspace(0, 1, out.numel()).reshape(out.shape)).sum().backward()
        return out.detach(), [getattr(t, n).grad for n in ("means", "log_scales", "sh")]

    big, gb = grads(1 << 22)
    small, gs = grads(37)
    torch.testing.assert_close(small, big, atol=1e-5, rtol=1e-4)
    for a, b in zip(gs, gb, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_gradients_match_finite_differences_of_a_smooth_scene():
    # large, well-separated Gaussians keep every alpha far from the 1/255 cut-off
    g = tiny_scene(n=6, degree=1, seed=9)
    g.log_scales[:] = -1.2
    g.opacity_logits[:] = 0.0
    cam = tiny_camera(16, 16, seed=9)
    weights = torch.linspace(0.5, 1.5, 16 * 16 * 3, dtype=torch.float64).reshape(16, 16, 3)

    def loss_of(means: np.ndarray) -> float:
        h = Gaussians(means.astype(np.float32), g.quats, g.log_scales, g.opacity_logits, g.sh)
        return float((render(h, cam, backend="cpu").image.double() * weights).sum())

    t = g.torch()
    t.means.requires_grad_(True)
    (render(t, cam, backend="cpu").image.double() * weights).sum().backward()
    eps = 1e-3
    for i, axis in [(0, 0), (2, 1), (4, 2)]:
        plus, minus = g.means.astype(np.float64).copy(), g.means.astype(np.float64).copy()
        plus[i, axis] += eps
        minus[i, axis] -= eps
        numeric = (loss_of(plus) - loss_of(minus)) / (2 * eps)
        assert t.means.grad[i, axis].item() == pytest.approx(numeric, rel=0.05, abs=0.05)


def test_empty_scene_and_background():
    empty = make_scene(0, sh_degree=0)
    cam = tiny_camera()
    out = render(empty, cam, backend="cpu", background=(0.2, 0.4, 0.6))
    assert out.image.shape == (20, 24, 3)
    np.testing.assert_allclose(out.image[0, 0].numpy(), [0.2, 0.4, 0.6])
    assert float(out.alpha.max()) == 0.0


def test_scene_behind_the_camera_is_culled():
    g = tiny_scene(n=10, seed=4)
    cam = Camera(look_at(np.array([0.0, 0.0, 3.0]), np.array([0.0, 0.0, 10.0]),
                         np.array([0.0, 1.0, 0.0])), intrinsics(16, 16, 60.0), 16, 16)
    assert float(render(g, cam, backend="cpu").alpha.max()) == 0.0


def test_synthetic_scene_renders_through_the_public_function():
    g = make_scene(5000, sh_degree=3, seed=2)
    cam = evaluation_views(g.means, 1, 64)[0]
    out = render(g, cam)
    assert out.image.shape == (64, 64, 3)
    assert 0.1 < float(out.alpha.mean()) <= 1.0


# How closely gsplat and the CPU renderer must agree. A file's side information is computed
# with one renderer and refined against with the other (encode and decode may run on different
# machines): the decoder's target is its own render plus the encoder's residual, so the two
# renders' difference goes straight into the targets. The residual is quantized with a step of
# 1/255, whose rounding error alone is 1/255/sqrt(12) RMS (59 dB); the disagreement must stay
# well below it: 70 dB (RMS 3.2e-4, 0.08 grey levels) adds under 8% to that error's power, and
# no 4x4 block average (what the residual keeps) may move by half a step (1/510). The effects
# measured through these renders are 50-75 dB PSNR (decodes of the benchmark scenes) and
# refinement gains of 0.3-1 dB on them; 40 dB (the bound before 2026-12-01) allowed an RMS
# error of 2.5 grey levels, larger than the codec's own errors at every preset.
AGREEMENT_PSNR_DB = 70.0
AGREEMENT_BLOCK_MAX = 0.5 / 255


@pytest.mark.gpu
@pytest.mark.skipif(not gsplat_available(), reason="needs CUDA and gsplat")
def test_gsplat_and_cpu_backends_agree():
    from gscodec.metrics import psnr

    g = make_scene(20000, sh_degree=3, seed=1)
    for cam in evaluation_views(g.means, 3, 128):
        tensors = []
        for backend, device in (("cpu", "cpu"), ("gsplat", "cuda")):
            t = g.torch(device)
            for name in ("means", "log_scales", "sh", "opacity_logits"):
                getattr(t, name).requires_grad_(True)
            img = render(t, cam, backend=backend).image
            img.sum().backward()
            tensors.append((img.detach().cpu(), {n: getattr(t, n).grad.cpu() for n in
                                                 ("means", "log_scales", "sh",
                                                  "opacity_logits")}))
        (a, ga), (b, gb) = tensors
        a, b = a.clamp(0, 1), b.clamp(0, 1)  # as the codec uses renders (sideinfo.compute)
        assert psnr(a, b) >= AGREEMENT_PSNR_DB, psnr(a, b)
        blocks = torch.nn.functional.avg_pool2d((a - b).permute(2, 0, 1)[None], 4)
        assert float(blocks.abs().max()) < AGREEMENT_BLOCK_MAX, float(blocks.abs().max())
        for name in ga:
            cos = torch.nn.functional.cosine_similarity(ga[name].flatten(), gb[name].flatten(),
                                                        dim=0)
            assert cos > 0.98, name


@pytest.mark.gpu
@pytest.mark.skipif(not gsplat_available(), reason="needs CUDA and gsplat")
@pytest.mark.parametrize(("encoder", "decoder"), [("gsplat", "cpu"), ("cpu", "gsplat")])
def test_side_information_made_on_one_backend_refines_on_the_other(encoder, decoder):
    """A file whose side information was rendered by one backend decodes and refines on the
    other: refinement still improves the held-out (evaluation) views over the unrefined decode,
    about as much as when both sides use the decoder's backend (CPU to CPU on this scene, 50
    steps: 43.1 dB unrefined, +1.3 dB refined)."""
    import gscodec
    from gscodec.metrics import psnr

    g = make_scene(2000, sh_degree=1, seed=4)
    options = {"quality": 4, "views": 4, "sideinfo_size": 64}  # preset 4: no learned prior
    data = gscodec.encode(g, backend=encoder, **options)
    same = gscodec.encode(g, backend=decoder, **options)
    assert "SIDE" in [s["stream"] for s in gscodec.inspect(data)["streams"]]
    device = "cuda" if decoder == "gsplat" else "cpu"
    base = gscodec.decode(data, refine=False)
    refined = gscodec.decode(data, steps=50, device=device, backend=decoder)
    reference = gscodec.decode(same, steps=50, device=device, backend=decoder)
    assert refined.n == g.n
    assert all(np.isfinite(getattr(refined, k)).all()
               for k in ("means", "quats", "log_scales", "opacity_logits", "sh"))
    cams = evaluation_views(g.means, 4, 64)

    def held_out_psnr(s: Gaussians) -> float:  # one renderer for every score: the CPU one
        with torch.no_grad():
            return float(np.mean([psnr(render(s, c, backend="cpu").image.clamp(0, 1),
                                       render(g, c, backend="cpu").image.clamp(0, 1))
                                  for c in cams]))

    before, after = held_out_psnr(base), held_out_psnr(refined)
    assert after > before + 0.5, (before, after)
    assert after > held_out_psnr(reference) - 0.25, (after, held_out_psnr(reference))


def test_gsplat_probe_falls_back_with_a_warning_when_gsplat_cannot_render(monkeypatch):
    import gscodec.render as r
    from gscodec.render import gsplat_backend

    def broken(*args, **kwargs):
        raise RuntimeError("kernels failed to compile")

    monkeypatch.setattr(gsplat_backend, "render_gsplat", broken)
    # (without CUDA the probe fails earlier, at its first CUDA tensor; either way: no gsplat)
    with pytest.warns(RuntimeWarning, match="gsplat does not render on this machine"):
        assert r._probe_gsplat() is False
    # the answer is remembered: a machine with CUDA probes once per process
    monkeypatch.setattr(r.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(r, "_GSPLAT_STATE", {})
    with pytest.warns(RuntimeWarning):
        assert r.gsplat_available() is False
    assert r.resolve_backend("auto") == "cpu"
    assert r._GSPLAT_STATE == {"ok": False}


def test_projection_in_chunks_without_autograd_gives_the_same_image(monkeypatch):
    import gscodec.render as r

    g = tiny_scene(n=50, degree=2, seed=11)
    cam = tiny_camera(32, 32, seed=11)
    whole = render(g, cam, backend="cpu").image.detach()  # (autograd on: one chunk)
    monkeypatch.setattr(r, "PROJECT_CHUNK", 7)
    with torch.no_grad():
        chunked = render(g, cam, backend="cpu").image
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


def test_depth_order_is_the_stable_float_order_with_ties_and_without_positive_depths():
    from gscodec.render.cpu import _depth_order

    rng = np.random.default_rng(3)
    d = torch.from_numpy(rng.choice(np.float32([0.5, 1.0, 2.0, 3.25, 1e-6, 7e3]), 500))
    assert torch.equal(_depth_order(d), torch.argsort(d, stable=True))
    neg = d.clone()
    neg[::7] *= -1  # (bit patterns of negative floats sort backwards: the float sort is used)
    assert torch.equal(_depth_order(neg), torch.argsort(neg, stable=True))


def test_views_rendered_side_by_side_equal_one_at_a_time():
    from gscodec import sideinfo
    from gscodec.parallel import threaded

    g = tiny_scene(300, degree=3, seed=5)
    cams = [tiny_camera(32, 28, seed=s) for s in range(5)]
    before = torch.get_num_threads()
    with torch.no_grad():
        serial = [render(g, c, backend="cpu").image.clamp(0, 1) for c in cams]
    got = sideinfo.render_views(g, cams, backend="cpu")
    assert all(torch.equal(a, b) for a, b in zip(serial, got, strict=True))
    assert torch.get_num_threads() == before

    seen = []

    def task(i: int) -> int:
        seen.append(torch.get_num_threads())
        return i * i

    assert threaded(task, list(range(9)), threads=3) == [i * i for i in range(9)]
    assert seen == [1] * 9 and torch.get_num_threads() == before
    with pytest.raises(ZeroDivisionError):
        threaded(lambda i: 1 // i, [1, 0, 2], threads=2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("seed", range(6))
def test_the_bounds_before_projection_hold_every_projected_box(seed):
    # without autograd, Gaussians are dropped before their projection where these bounds lie
    # on finished pixels: the bounds must hold the box the projection gives, for any shape
    import gscodec.render as r
    from gscodec.render import cpu
    from gscodec.render.project import project

    g = tiny_scene(n=400, degree=0, seed=seed)
    rng = np.random.default_rng(seed)
    g.log_scales[:] += rng.normal(scale=1.5, size=g.log_scales.shape).astype(np.float32)
    g.log_scales[::7, 0] += 3.0  # needles and discs
    g.opacity_logits[:] = 8.0
    cam = tiny_camera(40, 28, seed=seed)
    t = r._Tensors(*(torch.from_numpy(a) for a in (g.means, g.quats, g.log_scales)),
                   torch.sigmoid(torch.from_numpy(g.opacity_logits)), torch.from_numpy(g.sh),
                   torch.from_numpy(cam.viewmat).float(), torch.from_numpy(cam.K).float())
    rows = r._front_to_back(t, 0.01).long()
    m2d, con, _, rad = project(t.means[rows], t.quats[rows], t.log_scales[rows],
                               t.opacities[rows], t.viewmat, t.K, cam.width, cam.height)
    on = (rad > 0).any(dim=-1)
    assert on.sum() > 100
    table = cpu.pair_table(m2d, con, t.opacities[rows], torch.zeros(rows.numel(), 3))
    x0, bw, y0, bh = (b.long() for b in cpu.screen_boxes(table, rad, None, cam.width,
                                                         cam.height))
    lx, hx, ly, hy = r._screen_bounds(t, rows, cam, 0.3)
    assert ((lx <= x0) & (x0 + bw - 1 <= hx) & (ly <= y0) & (y0 + bh - 1 <= hy))[on].all()


def test_gaussians_behind_finished_pixels_are_dropped_before_their_projection(monkeypatch):
    # an opaque wall over part of the image: Gaussians behind it are not projected, and the
    # image is the one with autograd (every Gaussian projected and composited at once)
    import gscodec.render as r

    g = tiny_scene(n=300, seed=8)
    g.log_scales[:] -= 1.0
    cam = tiny_camera(64, 64, seed=8)
    eye = -cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3]
    side = np.cross(eye, [0.0, 0.0, 1.0])
    # (six layers: a pixel finishes where its transmittance falls to 1e-4)
    g = _behind_a_wall(g, [k * eye + 0.15 * side / np.linalg.norm(side)
                           for k in (0.8, 0.81, 0.82, 0.83, 0.84, 0.85)], -1.0, 9.0)
    projected = _counted_projections(monkeypatch)
    monkeypatch.setattr(r, "PROJECT_CHUNK", 16)
    with torch.no_grad():
        image = render(g, cam, backend="cpu").image.numpy()
    hidden = g.n - sum(projected)
    projected.clear()
    whole = render(g, cam, backend="cpu").image.detach().numpy()
    assert projected == [g.n]
    np.testing.assert_allclose(image, whole, atol=1e-6)
    assert image.max() > 0.05 and hidden > 20
