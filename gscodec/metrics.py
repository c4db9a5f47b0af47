"""Fidelity measures.

``attribute_errors`` compares two sets of Gaussians in the same order, attribute group by group,
in the units the benchmarks report:

    positions   RMSE of the 3D position error (root of the mean squared distance) divided by the
                diagonal of the reference's bounding box
    log_scales  RMSE of the natural-log scales, over all 3N values
    rotations   mean angle in degrees between the rotations (quaternions normalised; q and -q are
                the same rotation); ``rotations_rms`` is the root mean square
    opacity     RMSE of alpha = sigmoid(opacity logit)
    sh_dc       RMSE of the DC colour 0.5 + SH_C0 * f_dc, in 0..255 RGB units
    sh_rest     RMSE of the higher SH coefficients (absent for SH degree 0)
    covariance  mean relative Frobenius error of the 3D covariances (meaningful also where the
                encoder sent an equivalent rotation/scale pair, presets 1-5)

``psnr``/``ssim``/``compare_renders`` measure renders instead: PSNR (dB) and SSIM of images in
[0, 1] against renders of a reference scene, black background; ``compare_renders`` also gives
the PSNR over the pixels that either scene covers (accumulated opacity at least
:data:`COVER_ALPHA`), so that empty background does not inflate the figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .gaussians import SH_C0, Gaussians


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def rotation_angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between the rotations of quaternions ``a`` and ``b`` ([N, 4], any norm)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return 2.0 * np.degrees(np.arccos(np.clip(np.abs((a * b).sum(axis=1)), 0.0, 1.0)))


def covariance_error(ref: Gaussians, other: Gaussians) -> float:
    """Mean over Gaussians of ``|S_ref - S_other|_F / |S_ref|_F`` for the 3D covariances: the
    shape error, blind to how (rotation, scales) parametrize it."""
    from .codec.canonical import quats_to_rotmats

    def cov(g: Gaussians) -> np.ndarray:
        r = quats_to_rotmats(g.quats)
        return (r * np.exp(2.0 * g.log_scales.astype(np.float64))[:, None, :]) @ r.transpose(
            0, 2, 1)

    a, b = cov(ref), cov(other)
    return float((np.linalg.norm(a - b, axis=(1, 2)) / np.linalg.norm(a, axis=(1, 2))).mean())


def attribute_errors(ref: Gaussians, other: Gaussians) -> dict[str, float]:
    """Per-attribute-group errors of ``other`` against ``ref`` (same Gaussians, same order)."""
    ref, other = ref.numpy(), other.numpy()
    if ref.n != other.n:
        raise ValueError(f"different counts: {ref.n} and {other.n}")
    if ref.n == 0:
        return {}
    m = ref.means.astype(np.float64)
    diag = float(np.linalg.norm(m.max(axis=0) - m.min(axis=0))) or 1.0
    angles = rotation_angles_deg(ref.quats, other.quats)
    out = {
        "positions": float(np.sqrt(((m - other.means) ** 2).sum(axis=1).mean()) / diag),
        "log_scales": float(np.sqrt(((ref.log_scales.astype(np.float64) - other.log_scales) ** 2)
                                    .mean())),
        "rotations": float(angles.mean()),
        "rotations_rms": float(np.sqrt((angles**2).mean())),
        "opacity": float(np.sqrt(((_sigmoid(ref.opacity_logits)
                                   - _sigmoid(other.opacity_logits)) ** 2).mean())),
        "sh_dc": float(np.sqrt(((SH_C0 * 255.0 * (ref.sh[:, 0].astype(np.float64)
                                                  - other.sh[:, 0])) ** 2).mean())),
    }
    out["covariance"] = covariance_error(ref, other)
    if ref.sh_degree and other.sh_degree == ref.sh_degree:
        out["sh_rest"] = float(np.sqrt(((ref.sh[:, 1:].astype(np.float64) - other.sh[:, 1:]) ** 2)
                                       .mean()))
    return out


# ---------------------------------------------------------------------------------------------
# image fidelity (renders)


def psnr(a: Any, b: Any) -> float:
    """PSNR in dB between two images in [0, 1] (``[H, W, 3]`` tensors; clamped to [0, 1])."""
    import torch

    mse = torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def ssim(a: Any, b: Any) -> float:
    """SSIM (pytorch-msssim: 11x11 Gaussian window, sigma 1.5) between two ``[H, W, 3]`` images
    in [0, 1]."""
    from pytorch_msssim import ssim as _ssim

    x = a.clamp(0, 1).permute(2, 0, 1)[None].float()
    y = b.clamp(0, 1).permute(2, 0, 1)[None].float()
    return float(_ssim(x, y, data_range=1.0, size_average=True).item())


COVER_ALPHA = 1.0 / 255
"""A pixel is covered by a scene where its render's accumulated opacity reaches this."""


def covered_mse(a: Any, b: Any, alpha_a: Any, alpha_b: Any) -> tuple[float, float]:
    """Mean squared error of images ``a``, ``b`` ``[H, W, 3]`` (clamped to [0, 1]) over the
    pixels either covers (``alpha_* [H, W, 1]`` >= :data:`COVER_ALPHA`), and the share of pixels
    covered. An image that covers nothing gives ``(0.0, 0.0)``."""
    mask = ((alpha_a >= COVER_ALPHA) | (alpha_b >= COVER_ALPHA)).reshape(a.shape[:2])
    covered = int(mask.sum().item())
    if covered == 0:
        return 0.0, 0.0
    d = (a.clamp(0, 1) - b.clamp(0, 1))[mask]
    return float((d.double() ** 2).mean().item()), covered / mask.numel()


@dataclass
class ViewScore:
    name: str
    psnr: float
    ssim: float
    mse: float
    covered_mse: float = 0.0
    coverage: float = 0.0

    @property
    def psnr_covered(self) -> float:
        return float("inf") if self.covered_mse == 0 else float(10 * np.log10(1 / self.covered_mse))


def compare_renders(ref: Gaussians, other: Gaussians, cameras: list[Any], *,
                    backend: str = "auto", progress: Any = None) -> dict[str, Any]:
    """Render both scenes at every camera (black background) and score ``other`` against
    ``ref``: per-view PSNR/SSIM, PSNR over the covered pixels (``psnr_covered``, with the
    share of pixels covered, ``coverage``), their means, and the PSNR of the mean squared error
    over all views. Returns a JSON-able dict (an infinite PSNR, for identical renders, is None);
    ``worst`` is the index of the view with the lowest PSNR."""
    import torch

    from .parallel import available_cores
    from .render import render, side_by_side

    def score(view: tuple[int, Any]) -> ViewScore:
        i, cam = view
        with torch.no_grad():
            ra = render(ref, cam, backend=backend)
            rb = render(other, cam, backend=backend)
            a, b = ra.image, rb.image
            mse = float(torch.mean((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).item())
            cmse, coverage = covered_mse(a, b, ra.alpha, rb.alpha)
            return ViewScore(cam.name or str(i), psnr(a, b), ssim(a, b), mse, cmse, coverage)

    # the views scored side by side on the CPU's cores (the same scores), in batches of as
    # many so that progress is reported as they finish
    batch = available_cores()
    todo = list(enumerate(cameras))
    views: list[ViewScore] = []
    for start in range(0, len(todo), batch):
        if progress:
            progress(start, len(cameras), f"view {start + 1}/{len(cameras)}")
        views += side_by_side(score, todo[start:start + batch], backend)
    mean_mse = float(np.mean([v.mse for v in views])) if views else 0.0
    per_view = [{**v.__dict__, "psnr": _finite_or_none(v.psnr),
                 "psnr_covered": _finite_or_none(v.psnr_covered)} for v in views]
    return {
        "psnr": _finite_or_none(float(np.mean([v.psnr for v in views]))) if views else None,
        "psnr_covered": _finite_or_none(float(np.mean([v.psnr_covered for v in views])))
        if views else None,
        "coverage": float(np.mean([v.coverage for v in views])) if views else None,
        "psnr_of_mean_mse": None if mean_mse == 0 else float(10 * np.log10(1 / mean_mse)),
        "ssim": float(np.mean([v.ssim for v in views])) if views else None,
        "identical": bool(views) and mean_mse == 0,
        "views": len(views),
        "width": cameras[0].width if cameras else 0,
        "height": cameras[0].height if cameras else 0,
        "per_view": per_view,
        "worst": int(np.argmin([v.psnr for v in views])) if views else -1,
    }


def _finite_or_none(x: float) -> float | None:
    """JSON has no infinity: an infinite PSNR (identical images) is reported as None."""
    return float(x) if np.isfinite(x) else None
