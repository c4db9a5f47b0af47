"""``gscodec view``: a decoded scene in the browser, the original toggled beside it.

The page is served by viser (the nerfstudio project's web viewer library, an optional
dependency: ``pip install 'gscodec[view]'``), whose WebGL splat renderer draws each Gaussian with
one RGB colour; :func:`splat_arrays` gives it the colour of the SH bands seen from the current
camera (recomputed, like the PSNR, when the camera has stopped moving). The side panel shows the
PSNR of the decoded scene against the original at the current camera, rendered by gscodec's own
renderer (:func:`gscodec.render.render`, black background) at :data:`PSNR_SIZE` pixels, the
measure ``gscodec compare`` uses.

``--screenshot`` drives a headless Chromium (:func:`find_browser`) at the page and asks it for
one frame through viser (``ClientHandle.get_render``): what a browser really draws, from the
camera :func:`home_camera` chooses.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .cameras import Camera, encoder_views, intrinsics, robust_bounds
from .formats.errors import GscodecError
from .formats.scene import sigmoid
from .gaussians import SH_C0, Gaussians

if TYPE_CHECKING:  # viser is optional, imported when a viewer starts
    import viser

PSNR_SIZE = 256
"""Longest side, in pixels, of the renders behind the panel's PSNR."""
COLOUR_MAX_GAUSSIANS = 2_000_000
"""Above this many Gaussians the splats keep their DC colour (re-sending the colours of every
Gaussian at each camera stop would take longer than the stop)."""
BROWSER_ENV = "GSCODEC_BROWSER"
BROWSER_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--use-angle=swiftshader", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--hide-scrollbars", "--mute-audio")
"""Headless Chromium with software WebGL (SwiftShader) and none of its background connections,
which a closed network refuses."""

PANEL_ALLOWANCE = 640
"""Pixels added to a screenshot's window width for viser's control panel."""


class ViewerError(GscodecError):
    """The viewer cannot start (viser or a browser is missing, the port is taken)."""


def _viser() -> Any:
    try:
        import viser
    except ImportError:
        raise ViewerError("gscodec view needs viser: pip install 'gscodec[view]'") from None
    return viser


def find_browser() -> str | None:
    """Chromium for ``--screenshot``: ``$GSCODEC_BROWSER`` where set (and nothing else), else
    the first of chromium, chromium-browser, google-chrome on the PATH."""
    env = os.environ.get(BROWSER_ENV)
    if env:
        return env if shutil.which(env) or os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def colours(g: Gaussians, eye: np.ndarray | None) -> np.ndarray:
    """``[N, 3]`` RGB in [0, 1] of each Gaussian: its SH bands evaluated along the direction
    from ``eye`` (world coordinates) to the Gaussian, as gscodec's renderer does, or the DC
    colour where ``eye`` is None or the scene has no higher bands."""
    sh = np.asarray(g.sh, np.float32)
    if eye is None or g.sh_degree == 0:
        return np.clip(SH_C0 * sh[:, 0] + 0.5, 0.0, 1.0)
    import torch

    from .render.sh import sh_basis

    dirs = torch.from_numpy(np.asarray(g.means, np.float32) - np.asarray(eye, np.float32))
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    with torch.no_grad():
        basis = sh_basis(g.sh_degree, dirs)  # [N, (d+1)^2]
        rgb = (basis[:, :, None] * torch.from_numpy(sh)).sum(1) + 0.5
    return rgb.clamp(0.0, 1.0).numpy()


def covariances(g: Gaussians) -> np.ndarray:
    """``[N, 3, 3]`` world covariances ``R diag(s^2) R^T`` (quaternions normalised here)."""
    r = _rotations(np.asarray(g.quats, np.float64))
    s2 = np.exp(2.0 * np.clip(np.asarray(g.log_scales, np.float64), -30.0, 30.0))
    return np.einsum("nij,nj,nkj->nik", r, s2, r).astype(np.float32)


def splat_arrays(g: Gaussians, eye: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """What viser's ``add_gaussian_splats`` takes: centers, covariances, rgbs, opacities."""
    return {"centers": np.ascontiguousarray(g.means, np.float32),
            "covariances": covariances(g),
            "rgbs": colours(g, eye).astype(np.float32),
            "opacities": sigmoid(np.asarray(g.opacity_logits, np.float64))
            .astype(np.float32)[:, None]}


def _rgba_words(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The RGBA word of viser's splat buffer (4 x uint8 read as one little-endian uint32)."""
    b = np.concatenate([np.asarray(rgb).reshape(-1, 3), np.asarray(alpha).reshape(-1, 1)], 1)
    return np.ascontiguousarray((np.clip(b, 0, 1) * 255 + 0.5).astype(np.uint8)).view(
        np.uint32)[:, 0]


def _quat_wxyz(r: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of the rotation matrix ``r``."""
    m = np.asarray(r, np.float64)
    t = np.trace(m)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12)) * 2
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q / np.linalg.norm(q)


def _rotations(q: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` rotation matrices of quaternions ``[N, 4]`` (w, x, y, z; normalised here)."""
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                    axis=1).reshape(-1, 3, 3)


def frame_camera(cam: Camera, width: int, height: int) -> Camera:
    """``cam``'s pose and vertical field of view at a ``width`` x ``height`` frame."""
    fov_y = math.degrees(2.0 * math.atan(0.5 * cam.height / cam.K[1, 1]))
    return Camera(cam.viewmat, intrinsics(width, height, fov_y), width, height)


def camera_from_browser(position: Any, wxyz: Any, fov_y: float, aspect: float,
                        longest_side: int = PSNR_SIZE) -> Camera:
    """gscodec's camera for the browser's: viser reports the camera-to-world rotation
    ``wxyz`` and centre ``position`` in OpenCV axes (x right, y down, z forward, as gscodec's),
    the vertical field of view ``fov_y`` in radians and the canvas's width / height."""
    if aspect >= 1:
        w, h = longest_side, max(1, round(longest_side / aspect))
    else:
        w, h = max(1, round(longest_side * aspect)), longest_side
    r = _rotations(np.asarray(wxyz, np.float64)[None])[0]  # camera to world
    view = np.eye(4)
    view[:3, :3] = r.T
    view[:3, 3] = -r.T @ np.asarray(position, np.float64)
    return Camera(view, intrinsics(w, h, math.degrees(fov_y)), w, h, "browser")


def browser_pose(cam: Camera) -> dict[str, Any]:
    """The viser camera state of gscodec's ``cam``: centre, camera-to-world ``wxyz``, vertical
    fov in radians, and the forward and up axes in world coordinates."""
    rot = cam.viewmat[:3, :3]
    fov_y = 2.0 * math.atan(0.5 * cam.height / cam.K[1, 1])
    return {"position": cam.position, "wxyz": _quat_wxyz(rot.T), "fov": fov_y,
            "forward": rot[2], "up": -rot[1]}


def home_camera(g: Gaussians, size: int = PSNR_SIZE) -> Camera:
    """The camera a viewer opens at: the first encoder view (looking at the centre of the
    scene's robust bounds from the distance at which they fill a 50 degree field of view)."""
    return encoder_views(np.asarray(g.means), 1, size)[0]


def psnr_at(decoded: Gaussians, original: Gaussians, cam: Camera) -> float:
    """PSNR (dB) of ``decoded`` against ``original`` rendered at ``cam`` (black background)."""
    import torch

    from .metrics import psnr
    from .render import render

    with torch.no_grad():
        a = render(original, cam).image.clamp(0, 1)
        b = render(decoded, cam).image.clamp(0, 1)
    return psnr(a, b)


@dataclass
class _Scene:
    name: str
    gaussians: Gaussians
    handle: Any = None
    opacity: np.ndarray | None = None


class Viewer:
    """A viser server showing ``decoded`` (and ``original``, toggled from the panel)."""

    def __init__(self, decoded: Gaussians, original: Gaussians | None = None, *,
                 host: str = "127.0.0.1", port: int = 8080, title: str = "gscodec",
                 psnr_size: int = PSNR_SIZE) -> None:
        viser_mod = _viser()
        try:
            self.server: viser.ViserServer = viser_mod.ViserServer(host=host, port=port,
                                                                   verbose=False)
        except OSError as e:
            raise ViewerError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
        self.host, self.port = host, self.server.get_port()
        self.psnr_size = psnr_size
        self.home = home_camera(decoded, psnr_size)
        eye = self.home.position
        self.scenes = [_Scene("decoded", decoded)]
        if original is not None:
            self.scenes.append(_Scene("original", original))
        for i, s in enumerate(self.scenes):
            s.handle = self.server.scene.add_gaussian_splats(
                f"/{s.name}", **splat_arrays(s.gaussians, eye), visible=i == 0)
            s.opacity = sigmoid(np.asarray(s.gaussians.opacity_logits, np.float64))
        self.server.scene.set_up_direction("+z")
        pose = browser_pose(self.home)
        init = self.server.initial_camera
        init.fov = float(pose["fov"])
        init.position = tuple(pose["position"])
        lo, hi = robust_bounds(np.asarray(decoded.means))
        ahead = max(float(np.dot((lo + hi) / 2 - pose["position"], pose["forward"])), 1e-6)
        init.look_at = tuple(pose["position"] + ahead * pose["forward"])  # the orbit's pivot
        init.up = tuple(pose["up"])
        gui = self.server.gui
        gui.add_markdown(f"**{title}**: {decoded.n:,} Gaussians, SH {decoded.sh_degree}")
        self.show = gui.add_dropdown("Show", tuple(s.name for s in self.scenes),
                                     initial_value="decoded")
        self.show.on_update(lambda _: self._toggle())
        self.psnr_text = gui.add_markdown(
            "PSNR at this view: ..." if original is not None
            else "PSNR at this view: no original (`--against ORIGINAL`)")
        self._pending: tuple[Any, ...] | None = None
        self._wake = threading.Condition()
        self._stop = False
        self.last_psnr: float | None = None
        self.server.on_client_connect(self._on_connect)
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _toggle(self) -> None:
        for s in self.scenes:
            s.handle.visible = s.name == self.show.value

    def _on_connect(self, client: Any) -> None:
        client.camera.on_update(lambda cam: self._changed(cam))

    def _changed(self, cam: Any) -> None:
        with self._wake:
            self._pending = (np.array(cam.position), np.array(cam.wxyz), float(cam.fov),
                             float(cam.aspect), time.monotonic())
            self._wake.notify()

    def _work(self) -> None:
        """Once the camera has stopped for half a second: colours seen from it, and the PSNR."""
        while True:
            with self._wake:
                while self._pending is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                pending = self._pending
                if time.monotonic() - pending[4] < 0.5:
                    self._wake.wait(0.5)
                    continue
                self._pending = None
            try:
                self._update(*pending[:4])
            except Exception as e:  # a failed update must not end the viewer
                self.psnr_text.content = f"PSNR at this view: failed ({type(e).__name__})"

    def _update(self, position: np.ndarray, wxyz: np.ndarray, fov: float, aspect: float
                ) -> None:
        for s in self.scenes:
            if s.gaussians.sh_degree > 0 and s.gaussians.n <= COLOUR_MAX_GAUSSIANS:
                buf = np.array(s.handle.buffer, copy=True)
                buf[:, 7] = _rgba_words(colours(s.gaussians, position), s.opacity)
                s.handle.buffer = buf
        if len(self.scenes) > 1:
            cam = camera_from_browser(position, wxyz, fov, aspect, self.psnr_size)
            value = psnr_at(self.scenes[0].gaussians, self.scenes[1].gaussians, cam)
            self.last_psnr = value
            self.psnr_text.content = (f"PSNR at this view: **{value:.2f} dB** (decoded against "
                                      f"original, {cam.width}x{cam.height})")

    def close(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self.server.stop()


def screenshot(viewer: Viewer, width: int, height: int, *, browser: str | None = None,
               timeout: float = 120.0) -> dict[str, np.ndarray]:
    """Frames a headless Chromium draws of ``viewer``'s page at the home camera: ``{name:
    [height, width, 4] uint8 RGBA}`` for each scene shown (decoded, original), transparent
    where no Gaussian covers the pixel. ViewerError without a browser or when the page gives no
    frame within ``timeout`` seconds."""
    exe = browser or find_browser()
    if exe is None:
        raise ViewerError("--screenshot needs Chromium (Debian: apt install chromium), or "
                          f"${BROWSER_ENV} naming a Chromium executable")
    clients: list[Any] = []
    connected = threading.Event()

    def on_connect(client: Any) -> None:
        clients.append(client)
        connected.set()

    viewer.server.on_client_connect(on_connect)
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="gscodec-view-") as profile:
        # wider than the frame by the control panel's width, so that the canvas beside it is
        # at least as wide as the frame (viser's splats are drawn for the canvas's aspect)
        cmd = [exe, *BROWSER_FLAGS, f"--user-data-dir={profile}",
               f"--window-size={width + PANEL_ALLOWANCE},{height}", viewer.url]
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as e:
            raise ViewerError(f"{exe}: cannot start the browser: {e.strerror or e}") from None
        try:
            if not connected.wait(max(1.0, deadline - time.monotonic())):
                raise ViewerError(f"the browser did not open the page within {timeout:.0f} s")
            client = clients[0]
            aspect = _canvas_aspect(client, deadline)
            wide = max(width, round(height * aspect))  # the canvas's shape: no distortion
            pose = browser_pose(frame_camera(viewer.home, wide, height))
            left = (wide - width) // 2
            frames = {}
            for s in viewer.scenes:
                for other in viewer.scenes:
                    other.handle.visible = other is s
                frame = _settled_frame(client, wide, height, pose, deadline)
                frames[s.name] = np.ascontiguousarray(frame[:, left:left + width])
            viewer._toggle()
            return frames
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _canvas_aspect(client: Any, deadline: float) -> float:
    """Width / height of the browser's canvas, once the page has reported its camera."""
    while time.monotonic() < deadline:
        try:
            return float(client.camera.aspect)
        except AssertionError:  # viser: no camera state from this client yet
            time.sleep(0.1)
    raise ViewerError("the browser did not report its camera in time")


def _settled_frame(client: Any, width: int, height: int, pose: dict[str, Any], deadline: float
                   ) -> np.ndarray:
    """The browser's frame once two successive frames agree (the splats are uploaded and
    sorted), or the last one at the deadline."""
    last = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            if last is None:
                raise ViewerError("the browser gave no frame in time")
            return last
        try:
            frame = np.asarray(client.get_render(
                height, width, wxyz=pose["wxyz"], position=pose["position"], fov=pose["fov"],
                transport_format="png", timeout=left))
        except TimeoutError:
            continue
        if frame.ndim == 3 and frame.shape[2] == 3:
            frame = np.concatenate([frame, np.full(frame.shape[:2] + (1,), 255, np.uint8)], 2)
        if last is not None and frame[..., 3].any() and np.array_equal(frame, last):
            return frame
        last = frame
        time.sleep(0.5)
