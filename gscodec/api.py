"""The public Python API, a facade over the pipelines: scene I/O (:mod:`gscodec.scene`), the
encoder (:mod:`gscodec.encoder`), the decoder (:mod:`gscodec.decoder`), the refinement policy
(:mod:`gscodec.refinement`) and the bitrate report (:mod:`gscodec.bitrate`). Code outside the
package (the CLI, scripts, users) imports from here; the pipelines never do."""

from __future__ import annotations

import os
from typing import Any

from .bitrate import inspect
from .codec.quality import DEFAULT_QUALITY
from .decoder import decode, decode_parts, decode_refusal
from .encoder import InputError, encode_with_order, training_views
from .encoder import encode as _encode
from .gaussians import Gaussians
from .progress import Progress
from .ratecontrol import Reached, TargetError, encode_to
from .refinement import (
    default_steps,
    default_views,
    quantization_cells,
    quantization_halves,
    refinement_method,
    refinement_plan,
    resolve_device,
)
from .scene import load_scene, read_ply, write_ply

__all__ = [
    "InputError",
    "Progress",
    "Reached",
    "TargetError",
    "decode",
    "decode_parts",
    "decode_refusal",
    "default_steps",
    "default_views",
    "encode",
    "encode_to",
    "encode_with_order",
    "inspect",
    "load_scene",
    "quantization_cells",
    "quantization_halves",
    "read_ply",
    "refinement_method",
    "refinement_plan",
    "resolve_device",
    "training_views",
    "write_ply",
]


def encode(gaussians_or_path: Gaussians | str | os.PathLike[str], quality: int | None = None,
           *, target_size: int | None = None, target_psnr: float | None = None,
           progress: Progress | None = None, **options: Any) -> bytes:
    """Compress Gaussians (or the PLY at a path) into .gsz bytes: at preset ``quality``
    (1..10, default 7; :func:`gscodec.encoder.encode`), or at the quality that fits
    ``target_size`` bytes (within 3% below) or reaches ``target_psnr`` dB at the encoder's
    views (within 0.5 dB above): :func:`gscodec.ratecontrol.encode_to`, which also says what
    was reached. ``options`` as :func:`encode_with_order` takes them."""
    if target_size is None and target_psnr is None:
        return _encode(gaussians_or_path, DEFAULT_QUALITY if quality is None else quality,
                       progress=progress, **options)
    if quality is not None:
        raise ValueError("a target chooses the quality: give quality or a target, not both")
    g = gaussians_or_path if isinstance(gaussians_or_path, Gaussians) else \
        read_ply(gaussians_or_path)
    return encode_to(g, target_size=target_size, target_psnr=target_psnr, progress=progress,
                     **options)[0]
