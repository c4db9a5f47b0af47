"""Reading PlayCanvas SOG scenes ("spatially ordered Gaussians"), meta.json version 2.

A SOG scene is a ``meta.json`` beside lossless WebP images, or the same files bundled in a zip
(``.sog``). Texel ``i`` (row-major) of every per-Gaussian image holds Gaussian ``i``::

    {"version": 2, "count": N,
     "means":  {"mins": [3], "maxs": [3], "files": ["means_l.webp", "means_u.webp"]},
     "scales": {"codebook": [256], "files": ["scales.webp"]},
     "quats":  {"files": ["quats.webp"]},
     "sh0":    {"codebook": [256], "files": ["sh0.webp"]},
     "shN":    {"count": P, "bands": 1..3, "codebook": [256],
                "files": ["shN_centroids.webp", "shN_labels.webp"]}}      (shN optional)

- means: 16-bit values ``lo | hi << 8`` per axis (RGB of means_l / means_u), ``t = min + (max -
  min) * v / 65535``, position ``sign(t) * (exp(|t|) - 1)`` (the inverse of
  ``sign(x) * log(|x| + 1)``);
- quats: RGB are the three smallest components of the (w, x, y, z) unit quaternion in ascending
  index order, ``(v / 255 * 2 - 1) / sqrt(2)``, and alpha is ``252 +`` the index of the largest,
  which is ``sqrt(1 - a² - b² - c²)``;
- scales: RGB index the log-scale codebook;
- sh0: RGB index the codebook of DC coefficients, alpha is ``sigmoid(opacity) * 255`` (read back
  with the alpha clamped to [1e-6, 1 - 1e-6]);
- shN: labels are 16 bits (R | G << 8) naming a palette entry; entry ``l``'s coefficient ``j``
  (of ``(bands + 1)^2 - 1``) is texel ``(x = (l % 64) * coeffs + j, y = l // 64)`` of the
  centroids image, whose R, G, B index the shN codebook for the three colour channels.

WebP images are decoded with Pillow (imported only here). Every size is checked before
anything is decoded: the images must be lossless WebP, large enough for ``count`` and not much
larger, and a ``.sog`` zip's members are size-checked from its directory before being read.
"""

from __future__ import annotations

import io
import json
import lzma
import math
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    ArrayDict,
    check_count,
    coeffs_for_degree,
    file_size,
    finish,
    logit_from_byte,
    read_bytes,
    smallest_three,
)
from .errors import FormatError, unreadable

MAX_GAUSSIANS = 1 << 25  # 128 MiB per decoded RGBA image
MAX_META_BYTES = 16 << 20
MAX_IMAGE_BYTES = 1 << 30
MAX_ZIP_BYTES = 8 << 30
MAX_ZIP_MEMBERS = 64
MAX_PALETTE = 1 << 16
ZIP_MAGIC = b"PK\x03\x04"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def _fail(where: str, message: str) -> FormatError:
    return FormatError(f"{where}: {message}")


def _get(d: Any, key: str, where: str, what: str = "SOG meta.json") -> Any:
    if not isinstance(d, dict) or key not in d:
        raise _fail(where, f"{what} lacks {key!r}")
    return d[key]


def _int(v: Any, where: str, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, f"SOG meta.json {what} is not an integer")
    return v


def _numbers(v: Any, where: str, what: str, length: int | None = None) -> np.ndarray:
    if not isinstance(v, list) or (length is not None and len(v) != length) or not v:
        want = f"{length} numbers" if length else "a list of numbers"
        raise _fail(where, f"SOG meta.json {what} must be {want}")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise _fail(where, f"SOG meta.json {what} must hold numbers only")
    out = np.asarray(v, dtype=np.float64)
    if not np.isfinite(out).all():
        raise _fail(where, f"SOG meta.json {what} has non-finite numbers")
    return out


def _files(section: Any, key: str, where: str, count: int) -> list[str]:
    files = _get(section, "files", where, f"SOG meta.json {key!r}")
    if not isinstance(files, list) or len(files) != count:
        raise _fail(where, f"SOG meta.json {key}.files must name {count} file(s)")
    for name in files:
        # plain names only: nothing outside the scene's folder (or zip) is ever opened
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
            raise _fail(where, f"SOG meta.json {key}.files has a bad file name {name!r}")
    return files


def _is_lossless_webp(data: bytes) -> bool | None:
    """True for a lossless (VP8L) WebP, False for a lossy one, None when not a WebP."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    pos = 12
    lossless = False
    while pos + 8 <= len(data):
        tag = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if tag == b"VP8 ":
            return False
        if tag == b"VP8L":
            lossless = True
        pos += 8 + size + (size & 1)
    return lossless


def _decode_webp(data: bytes, name: str, where: str, max_pixels: int,
                 width: int | None = None) -> np.ndarray:
    """An RGBA uint8 image [h, w, 4], its size checked before its pixels are decoded."""
    kind = _is_lossless_webp(data)
    if kind is None:
        raise _fail(where, f"SOG image {name} is not a WebP file")
    if not kind:
        raise _fail(where, f"SOG image {name} is a lossy WebP; SOG needs lossless images")
    import warnings

    try:
        from PIL import Image
    except ImportError:
        raise _fail(where, "reading SOG images needs Pillow (pip install pillow)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=["WEBP"])
            w, h = img.size
            if w * h > max_pixels or (width is not None and w != width):
                raise _fail(where, f"SOG image {name} is {w}x{h}, not the size the scene needs")
            img.load()
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except FormatError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _fail(where, f"SOG image {name} does not decode ({e})") from None
    return rgba


def _texels(img: np.ndarray, name: str, count: int, where: str) -> np.ndarray:
    h, w = img.shape[:2]
    if w * h < count:
        raise _fail(where, f"SOG image {name} is {w}x{h}, too small for {count} Gaussians")
    return img.reshape(-1, 4)[:count]


def decode_sog(meta_bytes: bytes, load: Callable[[str, int], bytes], where: str) -> ArrayDict:
    """The Gaussians of a SOG scene: its meta.json bytes and a function that returns the bytes
    of a named image (refusing more than the given number of bytes)."""
    m = _parse_meta(meta_bytes, where)
    return _decode_images(m, load, where)


@dataclass
class _SogMeta:
    """What a SOG meta.json says (validated): counts, bounds, codebooks and image names."""

    n: int
    mins: np.ndarray
    maxs: np.ndarray
    means_files: list[str]
    scale_book: np.ndarray
    scales_file: str
    quats_file: str
    sh0_book: np.ndarray
    sh0_file: str
    degree: int = 0
    palette: int = 0
    shn_book: np.ndarray | None = None
    centroids_file: str = ""
    labels_file: str = ""


def _parse_meta(meta_bytes: bytes, where: str) -> _SogMeta:
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _fail(where, f"SOG meta.json is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _fail(where, "SOG meta.json is not a JSON object")
    if "version" not in meta:
        raise _fail(where, "SOG meta.json without a version (SOG version 1) is not supported")
    version = meta["version"]
    if version != 2 or isinstance(version, bool):
        raise _fail(where, f"unsupported SOG version {version!r} (gscodec reads version 2)")
    n = _int(_get(meta, "count", where), where, "count")
    check_count(where, n, limit=MAX_GAUSSIANS)
    means_s = _get(meta, "means", where)
    mins = _numbers(_get(means_s, "mins", where), where, "means.mins", 3)
    maxs = _numbers(_get(means_s, "maxs", where), where, "means.maxs", 3)
    means_files = _files(means_s, "means", where, 2)
    scales_s = _get(meta, "scales", where)
    scale_book = _numbers(_get(scales_s, "codebook", where), where, "scales.codebook")
    scales_file = _files(scales_s, "scales", where, 1)[0]
    quats_file = _files(_get(meta, "quats", where), "quats", where, 1)[0]
    sh0_s = _get(meta, "sh0", where)
    sh0_book = _numbers(_get(sh0_s, "codebook", where), where, "sh0.codebook")
    sh0_file = _files(sh0_s, "sh0", where, 1)[0]
    for book, what in ((scale_book, "scales"), (sh0_book, "sh0")):
        if len(book) > 256:
            raise _fail(where, f"SOG meta.json {what}.codebook has more than 256 entries")
    m = _SogMeta(n, mins, maxs, means_files, scale_book, scales_file, quats_file, sh0_book,
                 sh0_file)
    shn = meta.get("shN")
    if shn is not None:
        degree = m.degree = _int(_get(shn, "bands", where), where, "shN.bands")
        if degree not in (1, 2, 3):
            raise _fail(where, f"SOG meta.json shN.bands {degree} is not 1, 2 or 3")
        palette = m.palette = _int(_get(shn, "count", where), where, "shN.count")
        if not 0 < palette <= MAX_PALETTE:
            raise _fail(where, f"SOG meta.json shN.count {palette} is not in 1..{MAX_PALETTE}")
        m.shn_book = _numbers(_get(shn, "codebook", where), where, "shN.codebook")
        if len(m.shn_book) > 256:
            raise _fail(where, "SOG meta.json shN.codebook has more than 256 entries")
        m.centroids_file, m.labels_file = _files(shn, "shN", where, 2)

    return m


def _decode_images(m: _SogMeta, load: Callable[[str, int], bytes], where: str) -> ArrayDict:
    """The Gaussians from the images ``m`` names."""
    n, mins, maxs, degree, palette = m.n, m.mins, m.maxs, m.degree, m.palette
    # the writer's images are ceil(sqrt(n) / 4) * 4 wide and a multiple of 4 high
    max_pixels = 2 * n + 64 * (math.isqrt(n) + 64)

    def image(name: str, pixels: int = max_pixels, width: int | None = None) -> np.ndarray:
        return _decode_webp(load(name, MAX_IMAGE_BYTES), name, where, pixels, width)

    lo = _texels(image(m.means_files[0]), m.means_files[0], n, where).astype(np.uint32)
    hi = _texels(image(m.means_files[1]), m.means_files[1], n, where).astype(np.uint32)
    v = (lo[:, :3] | (hi[:, :3] << 8)).astype(np.float64) / 65535.0
    t = mins + (maxs - mins) * v
    means = np.sign(t) * np.expm1(np.abs(t))
    del lo, hi, v, t

    q = _texels(image(m.quats_file), m.quats_file, n, where)
    tag = q[:, 3].astype(np.intp)
    bad = (tag < 252) | (tag > 255)
    if bad.any():
        raise _fail(where, f"SOG quats image has {int(bad.sum())} texels with a bad tag "
                    f"(alpha not 252..255), first at index {int(np.argmax(bad))}")
    abc = (q[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    quats = smallest_three(tag - 252, abc)
    del q, abc

    def lookup(book: np.ndarray, idx: np.ndarray, what: str) -> np.ndarray:
        if idx.size and int(idx.max()) >= len(book):
            raise _fail(where, f"SOG {what} image indexes past its {len(book)}-entry codebook")
        return book[idx]

    s = _texels(image(m.scales_file), m.scales_file, n, where)
    log_scales = lookup(m.scale_book, s[:, :3], "scales")
    del s
    c = _texels(image(m.sh0_file), m.sh0_file, n, where)
    k = coeffs_for_degree(degree)
    sh = np.zeros((n, k, 3), dtype=np.float32)
    sh[:, 0, :] = lookup(m.sh0_book, c[:, :3], "sh0")
    opacity = logit_from_byte(c[:, 3])
    del c
    if degree:
        labels_img = _texels(image(m.labels_file), m.labels_file, n, where)
        labels = labels_img[:, 0].astype(np.intp) | (labels_img[:, 1].astype(np.intp) << 8)
        del labels_img
        per = k - 1
        rows = -(-palette // 64)
        cen = image(m.centroids_file, pixels=64 * per * rows, width=64 * per)
        if labels.size and int(labels.max()) >= min(palette, cen.shape[0] * 64):
            raise _fail(where, f"SOG shN labels name palette entries past the {palette} "
                        "the centroids image holds")
        # palette [P, per, 3] of codebook indices, then per-Gaussian lookup
        pal = cen[:, :, :3].reshape(cen.shape[0], 64, per, 3).reshape(-1, per, 3)
        sh[:, 1:, :] = lookup(m.shn_book, pal[labels], "shN")
    return finish(where, means, quats, log_scales, opacity, sh)


def read_sog_arrays(path: str | os.PathLike[str]) -> ArrayDict:
    """Read a SOG scene (a folder holding meta.json, a meta.json, or a bundled ``.sog`` zip) into
    the array dict of :func:`formats.ply.read_ply_arrays`; raises FormatError."""
    p = Path(path)
    where = str(p)
    if p.is_dir():
        p = p / "meta.json"
        if not p.is_file():
            raise _fail(where, "folder without a SOG meta.json")
    if _head(p, 4) == ZIP_MAGIC:
        return _read_zip(p, where)
    meta_bytes = read_bytes(p, "a SOG meta.json", MAX_META_BYTES)
    folder = p.parent

    def load(name: str, limit: int) -> bytes:
        return read_bytes(folder / name, "a SOG image", limit)

    return decode_sog(meta_bytes, load, where)


def _head(path: Path, n: int) -> bytes:
    file_size(path, "a SOG scene")
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise unreadable(path, e, FormatError, "a SOG scene") from None


def _read_zip(p: Path, where: str) -> ArrayDict:
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _fail(where, f"not a readable .sog zip ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise _fail(where, f".sog zip has {len(infos)} members, more than {MAX_ZIP_MEMBERS}")
        members = {info.filename: info for info in infos}
        total = sum(info.file_size for info in infos)
        if total > MAX_ZIP_BYTES:
            raise _fail(where, f".sog zip expands to {total} bytes, more than {MAX_ZIP_BYTES}")
        budget = [MAX_ZIP_BYTES]

        def load(name: str, limit: int) -> bytes:
            info = members.get(name)
            if info is None:
                raise _fail(where, f".sog zip has no member {name!r}")
            if info.flag_bits & 0x1:
                raise _fail(where, f".sog zip member {name!r} is encrypted")
            if info.file_size > min(limit, budget[0]):
                raise _fail(where, f".sog zip member {name!r} is {info.file_size} bytes, "
                            f"more than the {min(limit, budget[0])} accepted")
            try:
                with zf.open(info) as f:
                    data = f.read(info.file_size + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error,
                    lzma.LZMAError, NotImplementedError, RuntimeError) as e:
                raise _fail(where, f".sog zip member {name!r} does not read ({e})") from None
            if len(data) != info.file_size:
                raise _fail(where, f".sog zip member {name!r} is not the size its entry says")
            budget[0] -= len(data)
            return data

        return decode_sog(load("meta.json", MAX_META_BYTES), load, where)
