"""A .gsz whose base layer is another codec's file (GSZ.md 6.9): the ``BASE`` stream holds the
bytes of an ``.spz`` file as they are, and the side information (``SIDE``) is computed against
that file's decode, so that ``gscodec decode`` refines the other codec's scene.

Part 1 of the method (side information and decoder-side refinement) does not depend on how the
base layer was coded: wrapping a file that users already ship (SPZ) adds a few kilobytes of
residuals and a refinement to it. The learned prior is not applied to a foreign base (it was
trained on gscodec's own presets), so such a file carries no prior gains.
"""

from __future__ import annotations

import numpy as np

from .formats.errors import ContainerError, FormatError
from .formats.gsz import Stream
from .formats.spz import header_counts

KIND = "BASE"
CODEC_SPZ = 1  # the payload is an .spz file (versions 2-4), read by formats/spz.py
FORMATS = {"spz": CODEC_SPZ}
VERSION_MINOR_FOREIGN = 2  # files with a BASE stream are version 1.2


def spz_header(raw: bytes) -> tuple[int, int, int]:
    """``(n, sh_degree, fractional_bits)`` of an .spz base layer's header
    (:func:`formats.spz.header_counts`); raises FormatError."""
    return header_counts(raw, "the base layer")


def base_stream(spz: bytes) -> Stream:
    """The required ``BASE`` stream holding ``spz`` (the bytes of an .spz file)."""
    return Stream(KIND, CODEC_SPZ, True, bytes(spz))


def spz_of(arrays: dict[str, np.ndarray]) -> bytes:
    """The .spz (version 4) file of a scene, as gscodec writes it (:mod:`formats.writers`)."""
    from .formats.writers import write_spz_bytes

    return write_spz_bytes(arrays, 4)


def decode_fields(stream: Stream, n: int, degree: int) -> dict[str, np.ndarray]:
    """The Gaussians' fields of a ``BASE`` stream whose metadata declares ``n`` Gaussians of SH
    ``degree``; ContainerError where the stream's codec is unknown or its file is damaged or
    holds another count or degree (checked on the header before anything is decoded)."""
    from .formats.spz import decode_spz_bytes

    if stream.codec != CODEC_SPZ:
        raise ContainerError(f"unsupported .gsz file: stream {KIND!r} uses codec {stream.codec}")
    try:
        got_n, got_degree, _ = spz_header(stream.payload)
        if (got_n, got_degree) != (n, degree):
            raise ContainerError(
                f"corrupt .gsz file: the {KIND} stream's .spz file holds {got_n} Gaussians of "
                f"SH {got_degree}, the metadata declares {n} of SH {degree}")
        arrays = decode_spz_bytes(stream.payload, f"the .gsz file's {KIND} stream")
    except FormatError as e:
        raise ContainerError(f"corrupt .gsz file: {e}") from None
    return arrays


def cell_meta(stream: Stream) -> dict[str, dict[str, object]]:
    """Stream metadata, by the kinds of gscodec's own attribute streams, that describes the
    quantization cells of an .spz base layer to the attribute codecs (``half``, ``cell``), so
    that refinement keeps each value inside the .spz cell it came from: positions on the
    24-bit grid of the file's fractional bits, log-scales in steps of 1/16, alphas in 255
    levels, rotations on the smallest-three grid of 9 bits over 1/sqrt(2), DC colours in
    bytes of 1/(255 * 0.15), higher SH bands in steps of 1/128 (files with fewer SH bits
    have wider cells: these are the narrowest)."""
    from .codec.attributes import SH_C0

    try:
        _, degree, frac = spz_header(stream.payload)
    except FormatError as e:
        raise ContainerError(f"corrupt .gsz file: {e}") from None
    meta: dict[str, dict[str, object]] = {
        "POSN": {"step": 2.0 ** -frac}, "SCAL": {"step": 1 / 16},
        "ROTN": {"step": 0.5 ** 0.5 / 511}, "OPAC": {"levels": 255},
        "SHDC": {"step": SH_C0 / 0.15},
    }
    if degree > 0:
        meta["SHRS"] = {"steps": [1 / 128] * 3, "coeffs": (degree + 1) ** 2 - 1}
    return meta


def check_alignment(original: np.ndarray, base: np.ndarray, where: str) -> None:
    """Refuse a base layer whose positions are not the scene's: the centres and extents of the
    two point sets (1st-99th percentiles) must agree to within a tenth of the scene's extent.
    An .spz written by Niantic's tools stores RUB axes (y and z flipped from the PLY's); its
    residuals against the PLY's renders would be noise, not corrections."""
    if len(original) == 0 or len(base) == 0:
        return
    lo_o, hi_o = np.percentile(original, [1, 99], axis=0)
    lo_b, hi_b = np.percentile(base, [1, 99], axis=0)
    extent = float(np.max(hi_o - lo_o)) or 1.0
    off = max(float(np.max(np.abs((lo_o + hi_o) - (lo_b + hi_b)))) / 2,
              float(np.max(np.abs((hi_o - lo_o) - (hi_b - lo_b)))))
    if off > 0.1 * extent:
        flipped = base * np.array([1.0, -1.0, -1.0])
        lo_f, hi_f = np.percentile(flipped, [1, 99], axis=0)
        hint = ""
        if np.max(np.abs((lo_o + hi_o) - (lo_f + hi_f))) / 2 <= 0.1 * extent:
            hint = (" (it matches with y and z flipped: an .spz in Niantic's RUB axes; write "
                    "it from the PLY with gscodec or splat-transform, which keep the PLY's axes)")
        raise FormatError(f"{where}: the base layer's Gaussians are not where the scene's are "
                          f"(centres or extents differ by {off:.3g}, the scene spans "
                          f"{extent:.3g}){hint}")
