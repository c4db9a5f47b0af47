"""Side information: coarse rendering residuals at a few views, for decoder-side refinement.

At ``K`` encoder views (``cameras.encoder_views``, disjoint from the evaluation views) the encoder
renders the original scene and the decoded base layer; the residual (original - decoded) is
averaged over ``scale x scale`` pixel blocks, quantized with ``step`` (image units, 1 = full
range) and coded with the channel coder (3 colour channels, pixels in raster order, views one
after the other). The decoder adds the upsampled residuals to its own renders of the decoded
Gaussians to get refinement targets (:func:`targets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import budget
from .cameras import Camera, encoder_views
from .codec.attributes import decode_matrix, encode_matrix
from .codec.channels import GroupSpec
from .codec.meta import get_float_list
from .formats.errors import ContainerError
from .formats.gsz import DEFAULT_LIMITS, Limits
from .gaussians import Gaussians
from .render import render, side_by_side
from .sidemeta import parse_views

KIND = "SIDE"
CODEC = 1
SPEC = GroupSpec.simple(3)
PRIOR_ID_LENGTH = 16  # hex digits of the weights' SHA-256 that name them in the SIDE metadata


@dataclass
class SideInfo:
    """Per view: the camera and the coarse residual ``[H/scale, W/scale, 3]`` (float32)."""

    cameras: list[Camera]
    residuals: list[np.ndarray]
    scale: int
    step: float
    # the encoder's gains for the learned prior's correction (gscodec.restore.fit_gains):
    # ``{"weights": first 16 hex digits of the weights' SHA-256, "gain": [without residual,
    # with residual]}``, or None
    prior: dict[str, Any] | None = None


def compute(original: Gaussians, decoded: Gaussians, views: int, *, scale: int = 4,
            step: float = 1.0 / 255, size: int = 256, backend: str = "auto",
            renders: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> SideInfo:
    """Render both scenes at ``views`` encoder views of ``size`` pixels and keep the coarse
    residuals, already quantized (multiples of ``step``). ``renders``, where given, receives
    the (original, decoded) renders of every view, clamped to [0, 1]."""
    cams = cameras(original.means, views, size, scale)
    return from_renders(render_views(original, cams, backend), decoded, cams, scale=scale,
                        step=step, backend=backend, renders=renders)


def cameras(means: Any, views: int, size: int, scale: int) -> list[Camera]:
    """The side information's ``views`` encoder views of ``size`` pixels around ``means``;
    ValueError where ``size`` is not a multiple of the block ``scale``."""
    if size % scale:
        raise ValueError("the render size must be a multiple of the side-information scale")
    return encoder_views(means, views, size)


def render_views(g: Gaussians, cams: list[Camera], backend: str = "auto") -> list[torch.Tensor]:
    """Renders of ``g`` at ``cams``, clamped to [0, 1] (CPU tensors); on the CPU backend the
    views render side by side on the available cores (:func:`gscodec.render.side_by_side`),
    the same images."""

    def one(cam: Camera) -> torch.Tensor:
        with torch.no_grad():
            return render(g, cam, backend=backend).image.clamp(0, 1).cpu()

    return side_by_side(one, cams, backend)


def from_renders(originals: list[torch.Tensor], decoded: Gaussians, cams: list[Camera], *,
                 scale: int = 4, step: float = 1.0 / 255, backend: str = "auto",
                 renders: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> SideInfo:
    """:func:`compute` from the original's renders at ``cams`` (:func:`cameras`,
    :func:`render_views`), so that the original need not be in memory while the decoded scene
    is rendered."""
    residuals = []
    with torch.no_grad():
        for a, b in zip(originals, render_views(decoded, cams, backend), strict=True):
            if renders is not None:
                renders.append((a, b))
            r = (a - b).numpy().astype(np.float64)
            h, w = r.shape[0] // scale, r.shape[1] // scale
            coarse = r.reshape(h, scale, w, scale, 3).mean(axis=(1, 3))
            residuals.append((np.rint(coarse / step) * step).astype(np.float32))
    return SideInfo(list(cams), residuals, scale, step)


def encode(si: SideInfo) -> tuple[bytes, dict[str, Any]]:
    """The SIDE stream's payload and metadata."""
    ints = [np.rint(r / si.step).astype(np.int32).reshape(-1, 3) for r in si.residuals]
    X = np.ascontiguousarray(np.concatenate(ints).T) if ints else np.zeros((3, 0), np.int32)
    payload, meta = encode_matrix(X, SPEC, {})
    meta.update({
        "scale": si.scale,
        "step": si.step,
        "views": [{"viewmat": [float(v) for v in c.viewmat.reshape(-1)],
                   "K": [float(c.K[0, 0]), float(c.K[1, 1]), float(c.K[0, 2]), float(c.K[1, 2])],
                   "width": c.width, "height": c.height} for c in si.cameras],
    })
    if si.prior is not None:
        meta["prior"] = {"weights": si.prior["weights"],
                         "gain": [float(g) for g in si.prior["gain"]]}
    return payload, meta


def decode(payload: bytes, meta: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> SideInfo:
    """Inverse of :func:`encode`; every value is checked (ContainerError), and the declared image
    sizes against ``limits`` and the payload size (LimitError) before anything is allocated."""
    scale, step, cams = parse_views(meta)
    shapes = [(cam.height // scale, cam.width // scale) for cam in cams]
    budget.check_side_pixels(sum(cam.width * cam.height for cam in cams), limits)
    n = sum(a * b for a, b in shapes)
    # the residual rows' memory against the budget (GSZ.md 4.1), whatever the payload size:
    # residuals that are mostly zero code in a few bytes
    budget.check(budget.Estimate(budget.FIXED_BYTES + len(payload) * budget.FILE_BYTE_FACTOR,
                                 budget.side_bytes(n)), limits,
                 f"SIDE stream declares {n} residual pixels")
    X = decode_matrix(payload, meta, n, 3, SPEC, {})
    residuals, start = [], 0
    for a, b in shapes:
        block = X[:, start : start + a * b].T.reshape(a, b, 3)
        residuals.append((block.astype(np.float64) * step).astype(np.float32))
        start += a * b
    return SideInfo(cams, residuals, scale, step, parse_prior(meta))


def parse_prior(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The learned prior's entry of SIDE metadata (GSZ.md 6.8) as ``{"weights": id, "gain":
    [without, with]}``, None where there is none; ContainerError where it is malformed."""
    if "prior" not in meta:
        return None
    p = meta["prior"]
    if not isinstance(p, dict):
        raise ContainerError("bad metadata: SIDE prior must be an object")
    w = p.get("weights")
    if not (isinstance(w, str) and len(w) == PRIOR_ID_LENGTH
            and all(c in "0123456789abcdef" for c in w)):
        raise ContainerError(f"bad metadata: SIDE prior weights must be {PRIOR_ID_LENGTH} "
                             "lowercase hex digits")
    gain = get_float_list(p, "gain", 2, "SIDE prior: ")
    if not all(0.0 <= g <= 1.0 for g in gain):
        raise ContainerError("bad metadata: SIDE prior gains must be in [0, 1]")
    return {"weights": w, "gain": gain}


def targets(decoded: Gaussians, si: SideInfo, *, backend: str = "auto",
            device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """Refinement targets: the decoded renders plus the (bilinearly) upsampled residuals,
    clamped to [0, 1]."""
    def one(view: tuple[Camera, np.ndarray]) -> torch.Tensor:
        cam, res = view
        with torch.no_grad():
            img = render(decoded, cam, backend=backend, device=device).image.clamp(0, 1)
            r = torch.from_numpy(res).to(img.device).permute(2, 0, 1)[None]
            up = torch.nn.functional.interpolate(r, size=(cam.height, cam.width),
                                                 mode="bilinear", align_corners=False)
            return (img + up[0].permute(1, 2, 0)).clamp(0, 1)

    return side_by_side(one, list(zip(si.cameras, si.residuals, strict=True)), backend, device)
