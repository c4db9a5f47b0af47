"""Saving and loading restoration weights; the shipped weights are checked against a SHA-256.

A weights file is a ``torch.save`` of a plain dict (``config``: the :class:`RestoreConfig` as
lists of ints, ``state``: the state dict in float16, ``meta``: strings and numbers), read back
with ``torch.load(..., weights_only=True)``, which unpickles tensors and plain containers only.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from ..formats.atomic import atomic_write_bytes
from ..formats.errors import GscodecError
from .model import RestoreConfig, RestoreNet

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "restore-v3.pt"
# SHA-256 of WEIGHTS_FILE: load_weights() refuses any other file content
WEIGHTS_SHA256 = "eea3e8d62c463f19b24977c01d483c543be21d6e084e146e45a0f7be51fbb902"


class WeightsError(GscodecError):
    """A restoration weights file that is missing, altered or unreadable."""


def save_weights(path: str | os.PathLike[str], model: RestoreNet,
                 meta: dict[str, Any] | None = None) -> str:
    """Write ``model`` in float16 to ``path``; returns the file's SHA-256 (hex). ``meta`` holds
    strings, numbers and lists of them; ``meta["qualities"]`` (list of ints), where given, is
    the presets the network applies to (:attr:`RestoreNet.qualities`)."""
    state = {k: v.detach().to("cpu", torch.float16).contiguous()
             for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"format": "gscodec-restore", "version": 1, "config": model.config.to_dict(),
                "state": state, "meta": dict(meta or {})}, buf)
    data = buf.getvalue()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, data, force=True)
    return hashlib.sha256(data).hexdigest()


def load_weights(path: str | os.PathLike[str] | None = None, *,
                 sha256: str | None = None, device: str | torch.device = "cpu"
                 ) -> tuple[RestoreNet, dict[str, Any]]:
    """The network in ``path`` (default: the shipped weights, checked against
    :data:`WEIGHTS_SHA256`) in eval mode, float32, and its ``meta`` dict.

    ``sha256``: the expected digest; for the shipped file it defaults to
    :data:`WEIGHTS_SHA256`, for other files no check is made unless one is given. The bytes
    are hashed and then deserialized from memory (the file is read once). Raises
    :class:`WeightsError` when the file is missing, the digest differs, or the content is not a
    weights file."""
    p = WEIGHTS_FILE if path is None else Path(path)
    if path is None and sha256 is None:
        sha256 = WEIGHTS_SHA256
    try:
        data = p.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read restoration weights {p}: {e.strerror or e}") from None
    got = hashlib.sha256(data).hexdigest()
    if sha256 is not None:
        if got != sha256:
            raise WeightsError(f"restoration weights {p} fail their checksum (SHA-256 {got}, "
                               f"expected {sha256}): the file is damaged or not the one "
                               f"shipped; reinstall gscodec")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != "gscodec-restore":
            raise ValueError("not a gscodec restoration weights file")
        model = RestoreNet(RestoreConfig.from_dict(obj["config"]))
        model.load_state_dict({k: v.float() for k, v in obj["state"].items()})
        model.qualities = tuple(int(q) for q in obj.get("meta", {}).get("qualities", ()))
        model.digest = got
    except WeightsError:
        raise
    except Exception as e:  # unpickling refused, wrong keys or shapes
        raise WeightsError(f"restoration weights {p} are unreadable: {e}") from None
    return model.to(device).eval(), dict(obj.get("meta", {}))
