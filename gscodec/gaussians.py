"""The one type for a set of 3D Gaussians."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from .formats.common import SH_C0  # noqa: F401  Y_0^0 (rgb = 0.5 + SH_C0 * dc), re-exported

if TYPE_CHECKING:  # torch is imported lazily: the base codec does not need it
    import torch


@dataclass
class Gaussians:
    """N Gaussians, as numpy arrays or torch tensors (all fields the same kind).

    Attributes:
        means: [N, 3] float32, world units.
        quats: [N, 4] float32, rotation quaternion (w, x, y, z); need not be normalised.
        log_scales: [N, 3] float32, natural log of the per-axis standard deviation.
        opacity_logits: [N] float32, logit of the opacity (alpha = sigmoid(logit)).
        sh: [N, (d+1)^2, 3] float32, spherical-harmonics coefficients per colour channel,
            degree d in 0..3, DC (degree 0) first, then the coefficients of band 1, 2, 3 in the
            usual real-SH order.
    """

    means: Any
    quats: Any
    log_scales: Any
    opacity_logits: Any
    sh: Any

    def __post_init__(self) -> None:
        n = int(self.means.shape[0])
        shapes = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
        }
        for name, shape in shapes.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} must have shape {shape}, got {got}")
        sh = tuple(self.sh.shape)
        if len(sh) != 3 or sh[0] != n or sh[2] != 3 or sh[1] not in (1, 4, 9, 16):
            raise ValueError(f"Gaussians.sh must have shape [N, (d+1)^2, 3], got {sh}")

    @property
    def n(self) -> int:
        """Number of Gaussians."""
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        """Spherical-harmonics degree d (0..3)."""
        return {1: 0, 4: 1, 9: 2, 16: 3}[int(self.sh.shape[1])]

    def __len__(self) -> int:
        return self.n

    @staticmethod
    def shapes(sh_degree: int) -> dict[str, tuple[int, ...]]:
        """Each field's shape per Gaussian (after the leading N) at SH degree ``sh_degree``."""
        return {"means": (3,), "quats": (4,), "log_scales": (3,), "opacity_logits": (),
                "sh": ((sh_degree + 1) ** 2, 3)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> Gaussians:
        """Build from a dict with the field names as keys (what gscodec.formats.ply returns)."""
        return cls(**{f.name: arrays[f.name] for f in fields(cls)})

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The fields as a dict of float32 numpy arrays (copies only where needed)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, np.ndarray):
                value = value.detach().cpu().numpy()
            out[f.name] = np.ascontiguousarray(value, dtype=np.float32)
        return out

    def numpy(self) -> Gaussians:
        """The same Gaussians as float32 numpy arrays."""
        return Gaussians.from_arrays(self.as_arrays())

    def torch(self, device: str | torch.device | None = None) -> Gaussians:
        """The same Gaussians as float32 torch tensors on ``device`` (default: CPU)."""
        import torch

        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
            out[f.name] = value.to(device=device, dtype=torch.float32)
        return Gaussians.from_arrays(out)

    def take(self, index: Any) -> Gaussians:
        """The Gaussians at ``index`` (an integer array, a slice or a boolean mask)."""
        return Gaussians.from_arrays({f.name: getattr(self, f.name)[index] for f in fields(self)})
