"""Atomic output files: write to a temporary file beside the target, then rename.

A reader never sees a half-written output, a failure leaves nothing behind, and without
``force`` an existing file is never replaced, not even by a second process that finishes first
(the final step is a hard link, which fails if the name exists).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import GscodecError, OutputExistsError


def _create_temporary(parent: Path, name: str) -> tuple[int, Path]:
    """A new, empty file beside the output, opened for writing: its name is random (and
    created exclusively), its mode 0o666 less the process's umask, applied by the kernel as
    for any new file (reading the umask would mean setting it, which races with threads)."""
    while True:
        tmp = parent / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o666), tmp
        except FileExistsError:
            continue


def check_output_path(path: str | os.PathLike[str], *, force: bool) -> Path:
    """Validate an output path before any work is done; returns it as a Path.

    Raises OutputExistsError when it exists and ``force`` is false, GscodecError when its folder
    is missing or the path is a folder.
    """
    out = Path(path)
    if out.is_dir():
        raise GscodecError(f"output path {str(out)!r} is a folder")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise GscodecError(f"output folder {str(parent)!r} does not exist")
    if out.exists() and not force:
        raise OutputExistsError(f"{str(out)!r} exists (use --force to overwrite)")
    return out


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], None], *, force: bool
) -> None:
    """Create ``path`` with the bytes that ``write(file)`` writes, atomically.

    Without ``force`` an existing ``path`` is refused (OutputExistsError), also if it appears
    while ``write`` runs. With ``force`` it is replaced in one rename.
    """
    out = check_output_path(path, force=force)
    parent = out.parent if str(out.parent) else Path(".")
    fd, tmp = _create_temporary(parent, out.name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)
            except FileExistsError:
                raise OutputExistsError(f"{str(out)!r} exists (use --force to overwrite)") from None
            except OSError:
                # File systems without hard links: a check-then-rename, racy but still atomic.
                if out.exists():
                    raise OutputExistsError(
                        f"{str(out)!r} exists (use --force to overwrite)"
                    ) from None
                os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, force: bool) -> None:
    """Atomically create ``path`` holding ``data`` (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data), force=force)
