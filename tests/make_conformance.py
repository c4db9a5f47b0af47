"""Generate the .gsz conformance files of formats/conformance/ (GSZ.md section 10). It lives
with the tests, not under formats/, because it encodes with the whole codec (torch included),
which nothing under formats/ may import.

    python tests/make_conformance.py [--out DIR] [--markdown]

Writes, under DIR (default: this folder):

- ``valid/*.gsz``: small files a decoder must accept, and ``expected/*.json`` with the exact
  float32 values it must decode them to;
- ``invalid/*.gsz``: files a decoder must reject, each with one defect;
- ``*/chunked-*``: a chunked file (GSZ.md 11, version 1.1) and files made from it, each with one
  defect; ``--chunked`` makes only these (and adds them to the index), leaving the 1.0 files
  made by earlier encoders as they were;
- ``*/transform-*``: a file with the SH transform (GSZ.md 6.6a, version 1.3) and files made
  from it with one defect each; ``--transform`` makes only these;
- ``INDEX.json``: every file, whether it is valid, its expected values or the error class and
  message fragment gscodec reports (the requirement itself is in GSZ.md section 7).

Everything is deterministic: synthetic scenes from fixed seeds (``gscodec.synthetic``), the
encoder at fixed presets, the side information rendered with the CPU rasterizer, and the invalid
files made from the valid ones by fixed byte edits. The committed files are the reference; the
script documents how they were made (a later encoder may code the same scenes differently, and
``--out`` lets you compare without overwriting them). ``--markdown`` prints the table of
GSZ.md section 10.

Expected values (``expected/*.json``): for each attribute a list of N rows; each row is a string
of space-separated IEEE-754 binary32 bit patterns, 8 hex digits each, most significant digit
first (``3f800000`` is 1.0). ``means`` rows hold x y z, ``quats`` w x y z, ``log_scales`` 3
values, ``opacity_logits`` 1, ``sh`` the (d+1)^2 coefficients (DC first) x 3 colours,
coefficient-major (R G B of coefficient 0, then of coefficient 1, ...). Opacity logits may
differ by one unit in the last place (GSZ.md 6.4); everything else must match bit for bit.
Files with side information also have ``side``: per view its ``width``, ``height`` and the
residual rows (``(height/scale) * (width/scale)`` rows of R G B, raster order), as a decoder
that implements section 6.8 decodes them.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

import gscodec
from gscodec import sideinfo
from gscodec.formats.gsz import (
    ENTRY_SIZE,
    HEADER_SIZE,
    Stream,
    decode_meta,
    encode_meta,
    read_container,
    write_container,
)
from gscodec.synthetic import make_scene

HERE = Path(__file__).resolve().parent.parent / "formats" / "conformance"
_HEADER = struct.Struct("<8sHHIIQI")
_ENTRY = struct.Struct("<4sHHQQII")

# (name, Gaussians, SH degree, quality, side-information views, importance classes)
SCENES = [
    ("sh0-n0", 0, 0, 7, 0, False),
    ("sh3-n0", 0, 3, 7, 0, False),
    ("sh0-n1", 1, 0, 7, 0, False),
    ("sh3-n1", 1, 3, 7, 0, False),
    ("sh0-n40", 40, 0, 7, 0, False),
    ("sh3-n12", 12, 3, 5, 0, False),
    ("sh0-n40-side", 40, 0, 7, 2, False),
    ("sh3-n12-side", 12, 3, 5, 1, False),
    ("sh1-n60-classes", 60, 1, 2, 0, True),
]
SIDE_SIZE = 32  # render size of the side-information views (pixels)
# a SIDE ``prior`` entry (6.8) naming weights no decoder ships: decoders ignore its gains
PRIOR = {"weights": "0123456789abcdef", "gain": [0.25, 0.75]}
SIDE_SCALE = 8


# ---------------------------------------------------------------------------------------------
# byte-level editing


def _fix_header_crc(b: bytearray) -> None:
    count = struct.unpack_from("<I", b, 16)[0]
    table = bytes(b[HEADER_SIZE : HEADER_SIZE + ENTRY_SIZE * count])
    struct.pack_into("<I", b, 28, zlib.crc32(bytes(b[:28]) + table))


def set_header(data: bytes, *, crc: bool = True, **fields: int) -> bytes:
    """Change header fields (major, minor, flags, count, length); recompute the header CRC."""
    b = bytearray(data)
    magic, major, minor, flags, count, length, hcrc = _HEADER.unpack_from(b, 0)
    values = {"major": major, "minor": minor, "flags": flags, "count": count, "length": length}
    values.update(fields)
    _HEADER.pack_into(b, 0, magic, values["major"], values["minor"], values["flags"],
                      values["count"], values["length"], hcrc)
    if crc:
        _fix_header_crc(b)
    return bytes(b)


def set_entry(data: bytes, index: int, **fields: Any) -> bytes:
    """Change fields of stream table entry ``index`` (kind, codec, flags, offset, length, crc,
    reserved); recompute the header CRC."""
    b = bytearray(data)
    pos = HEADER_SIZE + ENTRY_SIZE * index
    names = ("kind", "codec", "flags", "offset", "length", "crc", "reserved")
    values = dict(zip(names, _ENTRY.unpack_from(b, pos), strict=True))
    values.update(fields)
    _ENTRY.pack_into(b, pos, *(values[k] for k in names))
    _fix_header_crc(b)
    return bytes(b)


def entry_index(data: bytes, kind: str) -> int:
    count = struct.unpack_from("<I", data, 16)[0]
    for i in range(count):
        if data[HEADER_SIZE + ENTRY_SIZE * i : HEADER_SIZE + ENTRY_SIZE * i + 4] == kind.encode():
            return i
    raise KeyError(kind)


def with_streams(data: bytes, change) -> bytes:
    """Rewrite a valid file with ``change(streams)`` applied (checksums recomputed; version and
    flags kept)."""
    c = read_container(data)
    return write_container(change(list(c.streams)), c.flags, c.version[1])


def with_meta_payload(data: bytes, payload: bytes) -> bytes:
    return with_streams(data, lambda s: [Stream("META", 1, True, payload)] + s[1:])


def with_meta(data: bytes, change) -> bytes:
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)
    change(meta)
    return with_meta_payload(data, encode_meta(meta))


def forged_zstd_header(content_size: int) -> bytes:
    """A zstd frame header declaring ``content_size`` bytes (8-byte field, 1 KiB window),
    followed by one last RLE block of one byte: tiny, and refused on its declared size."""
    return (b"\x28\xb5\x2f\xfd" + bytes([0xC0, 0x00]) + content_size.to_bytes(8, "little")
            + bytes([0x0B, 0x00, 0x00, 0x20]))


# ---------------------------------------------------------------------------------------------
# expected values


def _hex_rows(a: np.ndarray) -> list[str]:
    a = np.ascontiguousarray(a, dtype="<f4")
    a = a.reshape(a.shape[0], int(np.prod(a.shape[1:])))
    bits = a.view("<u4")
    return [" ".join(f"{int(v):08x}" for v in row) for row in bits]


def expected_values(g: gscodec.Gaussians) -> dict[str, Any]:
    return {
        "n": g.n,
        "sh_degree": g.sh_degree,
        "means": _hex_rows(g.means),
        "quats": _hex_rows(g.quats),
        "log_scales": _hex_rows(g.log_scales),
        "opacity_logits": _hex_rows(g.opacity_logits.reshape(-1, 1)),
        "sh": _hex_rows(g.sh),
    }


def expected_side(data: bytes) -> dict[str, Any]:
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)["streams"]["SIDE"]
    si = sideinfo.decode(c.get("SIDE").payload, meta)
    return {
        "scale": si.scale,
        **({"prior": si.prior} if si.prior is not None else {}),
        "views": [{"width": cam.width, "height": cam.height,
                   "residuals": _hex_rows(r.reshape(-1, 3))}
                  for cam, r in zip(si.cameras, si.residuals, strict=True)],
    }


# ---------------------------------------------------------------------------------------------
# the files


def valid_files() -> dict[str, bytes]:
    out = {}
    for name, n, degree, quality, views, classes in SCENES:
        g = make_scene(n, sh_degree=degree, seed=100 + n + degree)
        out[name] = gscodec.encode(g, quality=quality, views=views, sideinfo_size=SIDE_SIZE,
                                   sideinfo_scale=SIDE_SCALE, backend="cpu", importance=classes)
    return out


def variants(v: dict[str, bytes]) -> list[tuple[str, str, bytes, str]]:
    """Valid files that exercise what a 1.0 decoder must tolerate:
    (name, expected values of, bytes, description)."""
    base = v["sh0-n1"]

    def reordered(data: bytes) -> bytes:
        # payloads in reverse order with 5 bytes of padding between them; the table keeps META
        # first (rule 9) and points at the moved payloads
        c = read_container(data)
        table_end = HEADER_SIZE + ENTRY_SIZE * len(c.streams)
        body = bytearray()
        offsets = {}
        for s in reversed(c.streams):
            body += b"\x00" * 5
            offsets[s.kind] = table_end + len(body)
            body += s.payload
        b = bytearray(data[:table_end]) + body
        for i, s in enumerate(c.streams):
            pos = HEADER_SIZE + ENTRY_SIZE * i
            struct.pack_into("<Q", b, pos + 8, offsets[s.kind])
        struct.pack_into("<Q", b, 20, len(b))
        _fix_header_crc(b)
        return bytes(b)

    return [
        ("minor-version", "sh0-n1", set_header(base, minor=9),
         "version 1.9: a larger minor version is readable by a 1.0 decoder (2, rule 2)"),
        ("hint-flag", "sh0-n1", set_header(base, flags=0x0001),
         "file flag bit 0 set: bits 0..15 are hints that may be ignored (2, rule 6)"),
        ("unknown-optional-stream", "sh0-n1",
         with_streams(base, lambda s: s + [Stream("XTRA", 9, False, b"future data")]),
         "an extra stream 'XTRA' without the REQUIRED bit: skipped (3)"),
        ("unknown-meta-key", "sh0-n1",
         with_meta(base, lambda m: m.update(future_key={"anything": [1, 2, 3]})),
         "an extra metadata key: ignored (4)"),
        ("reordered-payloads", "sh0-n1", reordered(base),
         "payloads in reverse order with gaps between them: a decoder must not rely on the "
         "encoder's layout (2)"),
        ("sh0-n40-side-prior", "sh0-n40",
         with_meta(v["sh0-n40-side"], lambda m: m["streams"]["SIDE"].update(prior=PRIOR)),
         "side information with the learned prior's gains for some weights (6.8)"),
    ]


def invalid_files(v: dict[str, bytes]) -> list[tuple[str, bytes, str, str, str]]:
    """(name, bytes, error class, message fragment, GSZ.md rule)."""
    base = v["sh0-n1"]
    size = len(base)
    posn = entry_index(base, "POSN")
    c = read_container(base)
    meta_json = json.dumps(decode_meta(c.streams[0].payload)).encode()
    posn_payload = c.get("POSN").payload
    flipped = bytearray(base)
    flipped[c.offsets[posn] + 2] ^= 0x04
    bad_kind = set_entry(base, posn, kind=b"PO\x00N")
    return [
        ("empty", b"", "ContainerError", "not a .gsz file (it is empty)", "2, rule 1"),
        ("bad-magic", b"\x89GSZ\n\x1a\n" + base[8:], "ContainerError",
         "not a .gsz file (bad magic)", "2, rule 1"),
        ("short-header", base[:20], "ContainerError", "truncated .gsz file", "2, rule 3"),
        ("truncated", base[:-10], "ContainerError",
         f"truncated .gsz file: header says {size} bytes, found {size - 10}", "2, rule 3"),
        ("trailing-bytes", base + b"\x00" * 8, "ContainerError",
         f"corrupt .gsz file: header says {size} bytes, found {size + 8}", "2, rule 3"),
        ("future-version", set_header(base, major=2), "ContainerError",
         "unsupported .gsz version 2.0", "2, rule 2"),
        ("required-flag", set_header(base, flags=0x00020000), "ContainerError",
         "unsupported .gsz feature flags 0x00020000", "2, rule 6"),
        ("no-streams", set_header(base[:HEADER_SIZE], count=0, length=HEADER_SIZE),
         "ContainerError", "corrupt .gsz file: no streams", "2, rule 4"),
        ("too-many-streams", set_header(base, count=100_000, crc=False), "LimitError",
         "file declares 100000 streams", "2, rule 4; 7"),
        ("truncated-table", set_header(base, count=(size - HEADER_SIZE) // ENTRY_SIZE + 1,
                                       crc=False),
         "ContainerError", "truncated .gsz file: the stream table runs past the end", "2, rule 4"),
        ("header-checksum", set_header(base, crc=False, minor=1), "ContainerError",
         "corrupt .gsz file: header checksum mismatch", "2, rule 5"),
        ("bad-kind", bad_kind, "ContainerError", "has an invalid kind", "2, rule 7"),
        ("reserved-bits", set_entry(base, posn, flags=0x0003), "ContainerError",
         "reserved bits set", "2, rule 7"),
        ("offset-in-table", set_entry(base, posn, offset=HEADER_SIZE), "ContainerError",
         "lies outside the file", "2, rule 7"),
        ("stream-past-end", set_entry(base, posn, length=len(posn_payload) + 1000),
         "ContainerError", "lies outside the file", "2, rule 7"),
        ("payload-checksum", bytes(flipped), "ContainerError",
         "corrupt .gsz file: checksum mismatch in stream 'POSN'", "2, rule 7"),
        ("duplicate-kind", set_entry(base, posn + 1, kind=b"POSN"), "ContainerError",
         "appears twice", "2, rule 8"),
        ("overlap", set_entry(base, posn + 1, offset=c.offsets[posn],
                              length=len(c.streams[posn].payload),
                              crc=zlib.crc32(c.streams[posn].payload)),
         "ContainerError", "corrupt .gsz file: streams overlap", "2, rule 8"),
        ("meta-not-first", _swap_first_two(base), "ContainerError",
         "the first stream must be zstd JSON metadata", "2, rule 9"),
        ("unknown-required-stream",
         with_streams(base, lambda s: s + [Stream("XTRA", 9, True, b"future data")]),
         "ContainerError", "unsupported .gsz file: unknown required stream 'XTRA'", "3"),
        ("unknown-codec", set_entry(base, posn, codec=7), "ContainerError",
         "unsupported .gsz file: stream 'POSN' uses codec 7", "3"),
        ("missing-stream", with_streams(base, lambda s: [x for x in s if x.kind != "SHDC"]),
         "ContainerError", "corrupt .gsz file: missing stream 'SHDC'", "3"),
        ("missing-shrs", with_streams(v["sh3-n1"], lambda s: [x for x in s if x.kind != "SHRS"]),
         "ContainerError", "corrupt .gsz file: missing stream 'SHRS'", "3"),
        ("meta-declares-too-much", with_meta_payload(base, forged_zstd_header(17 << 20)),
         "LimitError", "metadata declares 17825792 bytes", "4"),
        ("meta-expands-too-much", with_meta_payload(
            base, zstandard.ZstdCompressor(level=19, write_content_size=False).compress(
                b" " * (17 << 20) + meta_json)),
         "LimitError", "metadata is larger than 16777216 bytes", "4"),
        ("meta-window", with_meta_payload(
            base, zstandard.ZstdCompressor(level=22, write_content_size=False).compress(
                b" " * (9 << 20) + meta_json)),
         "LimitError", "metadata declares a zstd window of", "1, 4"),
        ("meta-not-zstd", with_meta_payload(base, meta_json), "ContainerError",
         "corrupt metadata: not a zstd frame", "4"),
        ("meta-trailing-data", with_meta_payload(base, c.streams[0].payload + b"\x00"),
         "ContainerError", "corrupt metadata: data after the zstd frame", "1, 4"),
        ("meta-not-object", with_meta_payload(
            base, zstandard.ZstdCompressor().compress(b"[1, 2, 3]")),
         "ContainerError", "corrupt metadata: the top level must be a JSON object", "4"),
        ("meta-nan", with_meta_payload(
            base, zstandard.ZstdCompressor().compress(meta_json.replace(b'"n": 1', b'"n": NaN'))),
         "ContainerError", "corrupt metadata: NaN is not allowed", "1, 4"),
        ("meta-bad-value", with_meta(base, lambda m: m.update(sh_degree=4)), "ContainerError",
         "bad metadata: sh_degree must be", "4"),
        ("absurd-count", with_meta(base, lambda m: m.update(n=10**12)), "LimitError",
         "file declares 1000000000000 Gaussians", "4"),
        # within the count limit, but its decoded arrays alone (47 GB) are beyond any default
        # memory budget (4.1); the file's size says nothing (identical Gaussians code in bytes)
        ("count-over-budget", with_meta(v["sh3-n1"], lambda m: m.update(n=200_000_000)),
         "LimitError", "above the memory budget", "4.1"),
        ("count-mismatch", with_meta(base, lambda m: m.update(n=0)), "ContainerError",
         "corrupt stream", "5, 6.1"),
        ("tables-declare-too-much", with_streams(base, lambda s: [
            Stream(x.kind, x.codec, x.required,
                   struct.pack("<I", 18) + forged_zstd_header(65 << 20) if x.kind == "POSN"
                   else x.payload) for x in s]),
         "LimitError", "stream tables declares 68157440 bytes", "5.1"),
        ("ans-leftover", with_streams(base, lambda s: [
            Stream(x.kind, x.codec, x.required,
                   posn_payload + b"\x01\x00\x00\x00" if x.kind == "POSN" else x.payload)
            for x in s]),
         "ContainerError", "corrupt stream: ANS data left over", "5.3"),
        ("side-prior-gain", with_meta(v["sh0-n40-side"], lambda m: m["streams"]["SIDE"].update(
            prior={**PRIOR, "gain": [0.5, 2.0]})),
         "ContainerError", "bad metadata: SIDE prior gains must be in [0, 1]", "6.8"),
        ("classes-missing", with_streams(v["sh1-n60-classes"],
                                         lambda s: [x for x in s if x.kind != "IMPC"]),
         "ContainerError", "bad metadata: per-class steps without an IMPC stream", "5.7"),
        ("class-parts-mismatch", with_meta(v["sh1-n60-classes"], lambda m: m["streams"]["SHDC"]
                                           .update(sizes=[0] * len(m["streams"]["SHDC"]["sizes"]))),
         "ContainerError", "corrupt stream: class parts do not match the payload", "5.7"),
    ]


# ---------------------------------------------------------------------------------------------
# chunked files (GSZ.md 11, version 1.1), built on their own (``--chunked``) so that the 1.0
# files made by earlier encoders stay as they were committed

CHUNKED = ("chunked-sh1-n40", 40, 1, 2, 20)  # (name, Gaussians, SH degree, quality, chunk size)


def chunked_file() -> bytes:
    name, n, degree, quality, chunk = CHUNKED
    g = make_scene(n, sh_degree=degree, seed=300 + n)
    return gscodec.encode(g, quality=quality, views=0, backend="cpu", importance=True,
                          chunk_size=chunk)


def _with_table(data: bytes, change) -> bytes:
    """The file with its CTAB payload passed through ``change`` (bytearray -> bytes)."""
    def edit(streams: list[Stream]) -> list[Stream]:
        return [Stream(x.kind, x.codec, x.required, change(bytearray(x.payload)))
                if x.kind == "CTAB" else x for x in streams]
    return with_streams(data, edit)


def _with_part_byte_flipped(data: bytes) -> bytes:
    """One byte of the first part flipped; the stream table's CRC of CHNK made to match."""
    def edit(streams: list[Stream]) -> list[Stream]:
        out = []
        for x in streams:
            if x.kind == "CHNK":
                b = bytearray(x.payload)
                b[40] ^= 0x10
                x = Stream(x.kind, x.codec, x.required, bytes(b))
            out.append(x)
        return out
    return with_streams(data, edit)


def chunked_invalid(data: bytes) -> list[tuple[str, bytes, str, str, str]]:
    """(name, bytes, error class, message fragment, GSZ.md rule) of files made from the valid
    chunked file, one defect each."""
    def box_x1(b: bytearray) -> bytes:  # chunk 0's box shrunk to its x0 along x
        x0 = struct.unpack_from("<f", b, 8)[0]
        struct.pack_into("<f", b, 8 + 12, x0)
        return bytes(b)

    def gap(b: bytearray) -> bytes:  # the second part's offset moved by one byte
        struct.pack_into("<Q", b, 8 + 24 + 24, struct.unpack_from("<Q", b, 8 + 24 + 24)[0] + 1)
        return bytes(b)

    def many(b: bytearray) -> bytes:
        struct.pack_into("<I", b, 0, 1 << 21)
        return bytes(b)

    plain = v_plain = gscodec.encode(make_scene(40, sh_degree=1, seed=7), quality=7, views=0)
    posn = next(x for x in read_container(v_plain).streams if x.kind == "POSN")
    del plain
    return [
        ("chunked-no-flag", set_header(data, flags=0), "ContainerError",
         "unsupported .gsz file: unknown required stream 'CTAB'", "11.1"),
        ("chunked-missing-table", with_streams(data, lambda s: [x for x in s if x.kind != "CTAB"]),
         "ContainerError", "corrupt .gsz file: missing stream 'CTAB'", "11.1"),
        ("chunked-plain-stream", with_streams(data, lambda s: s + [posn]), "ContainerError",
         "unsupported .gsz file: unknown required stream 'POSN'", "11.1"),
        ("chunked-table-size", _with_table(data, lambda b: bytes(b[:-4])), "ContainerError",
         "corrupt .gsz file: the chunk table is", "11.2"),
        ("chunked-too-many-chunks", _with_table(data, many), "LimitError",
         "file declares 2097152 chunks", "11.2"),
        ("chunked-part-gap", _with_table(data, gap), "ContainerError",
         "does not follow the one before it", "11.2"),
        ("chunked-count-mismatch", with_meta(data, lambda m: m.update(n=m["n"] + 1)),
         "ContainerError", "the chunks hold 40 Gaussians, the metadata declares 41", "11.2"),
        ("chunked-part-checksum", _with_part_byte_flipped(data), "ContainerError",
         "checksum mismatch in a chunk's part", "11.3"),
        ("chunked-outside-box", _with_table(data, box_x1), "ContainerError",
         "a part has a Gaussian outside its chunk's box", "11.3"),
    ]


# ---------------------------------------------------------------------------------------------
# the SH transform (GSZ.md 6.6a, version 1.3), built on their own (``--transform``) so that the
# earlier files stay as they were committed

INDEX_FORMAT = "gsz conformance files, version 1.3"
MADE_BY = ("python tests/make_conformance.py (version 1.0 files), "
           "python tests/make_conformance.py --chunked (chunked-*, 1.1), "
           "python tests/make_conformance.py --transform (transform-*, 1.3)")
TRANSFORM = ("transform-sh1-n96", 96, 1, 7)  # (name, Gaussians, SH degree, quality)


def transform_file() -> bytes:
    """A file whose SHRS stream is transformed (codec 2). The encoder tries the transform from
    1,024 rows (``TRANSFORM_MIN_ROWS``); the file is made with that lowered to 1 so that it
    stays small, from a scene whose SH-1 rest vectors lie in a plane (where the transform is
    smaller even with its basis, and sends 2 of its 9 components)."""
    from gscodec.codec import attributes

    name, n, degree, quality = TRANSFORM
    g = make_scene(n, sh_degree=degree, seed=400 + n)
    rng = np.random.default_rng(400)
    directions = np.linalg.qr(rng.normal(size=(9, 2)))[0]  # two orthonormal directions
    g.sh[:, 1:] = (rng.normal(scale=[0.3, 0.15], size=(n, 2)) @ directions.T
                   ).reshape(n, 3, 3).astype(np.float32)
    saved, attributes.TRANSFORM_MIN_ROWS = attributes.TRANSFORM_MIN_ROWS, 1
    try:
        data = gscodec.encode(g, quality=quality, views=0, backend="cpu")
    finally:
        attributes.TRANSFORM_MIN_ROWS = saved
    shrs = next(x for x in read_container(data).streams if x.kind == "SHRS")
    assert shrs.codec == 2, "the conformance scene must take the transform"
    return data


def _with_shrs(data: bytes, change) -> bytes:
    def edit(streams: list[Stream]) -> list[Stream]:
        return [Stream(x.kind, x.codec, x.required, change(bytearray(x.payload)))
                if x.kind == "SHRS" else x for x in streams]
    return with_streams(data, edit)


def transform_invalid(data: bytes) -> list[tuple[str, bytes, str, str, str]]:
    """(name, bytes, error class, message fragment, GSZ.md rule) of files made from the valid
    transformed file, one defect each."""
    raw_size = []

    def short_basis(b: bytearray) -> bytes:  # the basis blob re-made with one value missing
        size = struct.unpack_from("<I", b, 0)[0]
        raw = zstandard.ZstdDecompressor().decompress(bytes(b[4 : 4 + size]))
        raw_size.append(len(raw))
        blob = zstandard.ZstdCompressor(level=19).compress(raw[:-2])
        return struct.pack("<I", len(blob)) + blob + bytes(b[4 + size :])

    short = _with_shrs(data, short_basis)

    def meta_edit(m: dict[str, Any]) -> None:
        m["streams"]["SHRS"]["transform"] = "pca"

    return [
        ("transform-basis-size", short, "ContainerError",
         f"corrupt stream: the SH basis holds {raw_size[0] - 2} bytes, not {raw_size[0]}",
         "6.6a"),
        ("transform-unknown", with_meta(data, meta_edit), "ContainerError",
         "bad metadata: transform must be one of ['klt']", "6.6a"),
    ]


def build_transform(out: Path) -> list[dict[str, Any]]:
    """The transformed files (``transform-*``) into ``out`` and its INDEX.json
    (:func:`_build_family`)."""
    name, n, degree, quality = TRANSFORM
    data = transform_file()
    return _build_family(out, "transform-", name, data,
                         f"{n} Gaussians, SH degree {degree}, quality {quality}, the SH rest "
                         "transformed (6.6a, version 1.3)", transform_invalid(data))


def build_chunked(out: Path) -> list[dict[str, Any]]:
    """The chunked files (``chunked-*``) into ``out`` and INDEX.json (:func:`_build_family`)."""
    name, n, degree, quality, chunk = CHUNKED
    data = chunked_file()
    return _build_family(out, "chunked-", name, data,
                         f"{n} Gaussians, SH degree {degree}, quality {quality}, chunked (11): "
                         f"chunks of at most {chunk} Gaussians in 2 layers, importance classes",
                         chunked_invalid(data))


def _build_family(out: Path, prefix: str, name: str, data: bytes, description: str,
                  invalid: list[tuple[str, bytes, str, str, str]]) -> list[dict[str, Any]]:
    """A family of files built on its own: the valid file ``name`` (``data``, its expected
    values) and the ``invalid`` files made from it into ``out``'s valid/, invalid/ and
    expected/, replacing the earlier ``PREFIX*`` files only, and their entries into its
    INDEX.json (replacing the family's); the index's files."""
    for old in out.glob(f"*/{prefix}*"):
        old.unlink()
    (out / "valid" / f"{name}.gsz").write_bytes(data)
    _write_json(out / "expected" / f"{name}.json",
                expected_values(gscodec.decode(data, refine=False)))
    entries: list[dict[str, Any]] = [{
        "file": f"valid/{name}.gsz", "valid": True, "expected": f"expected/{name}.json",
        "description": description}]
    for bad, b, error, message, rule in invalid:
        (out / "invalid" / f"{bad}.gsz").write_bytes(b)
        entries.append({"file": f"invalid/{bad}.gsz", "valid": False, "error": error,
                        "message": message, "rule": rule})
    index_path = out / "INDEX.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["files"] = [e for e in index["files"] if f"/{prefix}" not in e["file"]] + entries
    index["format"], index["made_by"] = INDEX_FORMAT, MADE_BY
    _write_json(index_path, index)
    return index["files"]


def _swap_first_two(data: bytes) -> bytes:
    """The same file with table entries 0 (META) and 1 swapped."""
    b = bytearray(data)
    a, e = HEADER_SIZE, HEADER_SIZE + ENTRY_SIZE
    b[a:e], b[e : e + ENTRY_SIZE] = data[e : e + ENTRY_SIZE], data[a:e]
    _fix_header_crc(b)
    return bytes(b)


def build(out: Path) -> list[dict[str, Any]]:
    v = valid_files()
    index: list[dict[str, Any]] = []
    for sub in ("valid", "invalid", "expected"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).iterdir():
            old.unlink()
    for name, n, degree, quality, views, classes in SCENES:
        data = v[name]
        (out / "valid" / f"{name}.gsz").write_bytes(data)
        base_name = name.removesuffix("-side")
        entry: dict[str, Any] = {
            "file": f"valid/{name}.gsz", "valid": True,
            "expected": f"expected/{base_name}.json",
            "description": f"{n} Gaussians, SH degree {degree}, quality {quality}"
                           + (f", side information at {views} views" if views else "")
                           + (", importance classes (6.1a, 5.7)" if classes else ""),
        }
        if views:
            side = expected_side(data)
            _write_json(out / "expected" / f"{name}.json", {"side": side})
            entry["expected_side"] = f"expected/{name}.json"
        else:
            _write_json(out / "expected" / f"{name}.json",
                        expected_values(gscodec.decode(data, refine=False)))
        index.append(entry)
    for name, values_of, data, description in variants(v):
        (out / "valid" / f"{name}.gsz").write_bytes(data)
        index.append({"file": f"valid/{name}.gsz", "valid": True,
                      "expected": f"expected/{values_of}.json", "description": description})
        if read_container(data).get("SIDE") is not None:
            _write_json(out / "expected" / f"{name}.json", {"side": expected_side(data)})
            index[-1]["expected_side"] = f"expected/{name}.json"
    for name, data, error, message, rule in invalid_files(v):
        (out / "invalid" / f"{name}.gsz").write_bytes(data)
        index.append({"file": f"invalid/{name}.gsz", "valid": False, "error": error,
                      "message": message, "rule": rule})
    _write_json(out / "INDEX.json", {
        "format": "gsz conformance files, version 1.0",
        "made_by": "python tests/make_conformance.py",
        "files": index,
    })
    build_chunked(out)
    build_transform(out)
    return json.loads((out / "INDEX.json").read_text(encoding="utf-8"))["files"]


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def markdown(index: list[dict[str, Any]]) -> str:
    lines = ["| file | outcome | GSZ.md |", "|---|---|---|"]
    for e in index:
        if e["valid"]:
            lines.append(f"| `{e['file']}` | valid: {e['description']} | |")
        else:
            lines.append(f"| `{e['file']}` | `{e['error']}`: `{e['message']}` | {e['rule']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    ap.add_argument("--markdown", action="store_true", help="print the GSZ.md table")
    ap.add_argument("--chunked", action="store_true",
                    help="make only the chunked files (version 1.1) and add them to the index")
    ap.add_argument("--transform", action="store_true",
                    help="make only the files with the SH transform (version 1.3) and add them "
                         "to the index")
    args = ap.parse_args(argv)
    index = (build_chunked(args.out) if args.chunked else
             build_transform(args.out) if args.transform else build(args.out))
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()
                and p.suffix in (".gsz", ".json"))
    print(f"{len(index)} files ({sum(e['valid'] for e in index)} valid) in {args.out}, "
          f"{total} bytes with the expected values and the index", file=sys.stderr)
    if args.markdown:
        print(markdown(index))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
