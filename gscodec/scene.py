"""Scene I/O: INRIA PLY in and out, and any scene gscodec reads (other formats, .gsz files,
which are decoded) as Gaussians."""

from __future__ import annotations

import os
from pathlib import Path

from .decoder import decode
from .formats.errors import ContainerError, GscodecError, unreadable
from .formats.gsz import DEFAULT_LIMITS, MAGIC, Limits
from .formats.ply import read_ply_arrays, write_ply_arrays
from .gaussians import Gaussians


def read_ply(path: str | os.PathLike[str]) -> Gaussians:
    """Read a 3DGS PLY (INRIA layout, any property order) into numpy-backed Gaussians."""
    return Gaussians.from_arrays(read_ply_arrays(path))


def write_ply(path: str | os.PathLike[str], gaussians: Gaussians, *, force: bool = False) -> None:
    """Write Gaussians as an INRIA-layout PLY, atomically; refuses an existing file unless
    ``force``."""
    write_ply_arrays(path, gaussians.as_arrays(), force=force)


def load_scene(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
               refine: bool = True) -> Gaussians:
    """Gaussians from a .gsz file or a scene in another format: INRIA PLY, PlayCanvas
    compressed PLY, .splat, .spz, SOG (.sog, meta.json or its folder); told apart by the file's
    first bytes (by the name for .splat). A .gsz file is decoded with the default settings of
    :func:`decode`, which refines files with side information (:func:`refinement_method`: on a
    CPU the colour fit, one render per side-information view; on a GPU :func:`default_steps`
    Adam steps) unless ``refine`` is false."""
    from .formats.readers import read_scene_arrays

    p = Path(path)
    if p.is_dir():
        return Gaussians.from_arrays(read_scene_arrays(p))
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise unreadable(p, e, GscodecError, "a scene file") from None
    if head == MAGIC:
        try:
            return decode(p, limits=limits, refine=refine)
        except ContainerError as e:
            raise type(e)(f"{p}: {e}") from None
    return Gaussians.from_arrays(read_scene_arrays(p))
