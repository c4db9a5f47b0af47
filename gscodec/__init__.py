"""gscodec: compression of 3D Gaussian Splatting scenes into .gsz files.

    >>> import gscodec
    >>> g = gscodec.read_ply("scene.ply")
    >>> data = gscodec.encode(g, quality=7)
    >>> g2 = gscodec.decode(data)        # Gaussians, in Morton order
    >>> gscodec.write_ply("scene.decoded.ply", g2)
"""

from ._version import __version__  # noqa: F401
from .api import decode, encode, encode_with_order, inspect, read_ply, write_ply  # noqa: E402
from .formats.errors import (  # noqa: E402
    ContainerError,
    GscodecError,
    LimitError,
    LimitWarning,
    PlyError,
)
from .gaussians import Gaussians  # noqa: E402

__all__ = [
    "ContainerError",
    "Gaussians",
    "GscodecError",
    "LimitError",
    "LimitWarning",
    "PlyError",
    "decode",
    "encode",
    "encode_with_order",
    "inspect",
    "read_ply",
    "write_ply",
]
