"""The public Python API, a facade over the pipelines: scene I/O (:mod:`gscodec.scene`), the
encoder (:mod:`gscodec.encoder`), the decoder (:mod:`gscodec.decoder`), the refinement policy
(:mod:`gscodec.refinement`) and the bitrate report (:mod:`gscodec.bitrate`). Code outside the
package (the CLI, scripts, users) imports from here; the pipelines never do."""

from __future__ import annotations

from .bitrate import inspect
from .decoder import decode, decode_parts, decode_refusal
from .encoder import InputError, encode, encode_with_order, training_views
from .progress import Progress
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
    "decode",
    "decode_parts",
    "decode_refusal",
    "default_steps",
    "default_views",
    "encode",
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
