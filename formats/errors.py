"""Errors raised on bad input.

Every problem with a file a user hands us (a PLY, a .gsz) is reported as a subclass of
:class:`GscodecError` with a one-line message that names the problem. The CLI turns these into
exit code 1 and that one line on stderr; library callers can catch the class they care about.
"""

from __future__ import annotations


class GscodecError(Exception):
    """Base class of every error gscodec reports about its inputs or outputs."""


class PlyError(GscodecError):
    """The input is not a readable 3DGS PLY (not a PLY, truncated, missing or bad properties)."""


class FormatError(GscodecError):
    """The input is not a readable scene in one of the other formats gscodec reads (.splat,
    .spz, PlayCanvas compressed .ply, SOG): bad size, magic, version, counts or values."""


class ContainerError(GscodecError):
    """The input is not a valid .gsz file (bad magic, version, table, length or checksum)."""


class LimitError(ContainerError):
    """A .gsz file declares sizes or counts beyond the decoder's configured limits."""


class LimitWarning(UserWarning):
    """The encoder wrote a file that a decoder with the default limits refuses (its estimated
    memory is above the default budget, GSZ.md 4.1): it decodes with larger limits."""


class OutputExistsError(GscodecError):
    """The output path exists and overwriting was not asked for."""


def unreadable(path: object, err: OSError, error: type[GscodecError], what: str) -> GscodecError:
    """The error to raise when an input file cannot be opened or read."""
    if isinstance(err, FileNotFoundError):
        return error(f"{path}: no such file")
    if isinstance(err, IsADirectoryError):
        return error(f"{path}: is a folder, not {what}")
    return error(f"{path}: cannot read: {err.strerror or err}")
