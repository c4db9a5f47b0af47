"""Readers of the formats people already have: .splat, .spz (v2, v3, v4), PlayCanvas compressed
PLY and SOG (meta.json + WebP, bundled .sog). Tiny writers below pack known Gaussians; the
readers must recover them within each format's quantization, and refuse bad input with the
library's error (never a traceback, never an allocation from an unchecked count)."""

from __future__ import annotations

import gzip
import io
import json
import math
import struct
import sys
import zipfile

import numpy as np
import pytest
import zstandard
from cli_helpers import one_error_line as _one_error_line
from click.testing import CliRunner

from gscodec.api import load_scene
from gscodec.cli.main import main
from gscodec.formats.errors import FormatError, GscodecError, PlyError
from gscodec.formats.readers import detect_format, read_scene_arrays
from gscodec.synthetic import make_scene

SH_C0 = 0.28209479177387814
SQRT1_2 = math.sqrt(0.5)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def unit(q):
    q = np.asarray(q, dtype=np.float64)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def quat_error(a, b):
    """Largest component difference between unit quaternions, up to sign (q and -q agree)."""
    a, b = unit(a), unit(b)
    b = b * np.where(np.einsum("ij,ij->i", a, b) < 0, -1.0, 1.0)[:, None]
    return float(np.abs(a - b).max())


def scene(n=700, degree=2, seed=3):
    """Known Gaussians, clipped to what every format here can represent."""
    g = make_scene(n, sh_degree=degree, seed=seed).as_arrays()
    rgb = np.clip(0.5 + SH_C0 * g["sh"][:, 0, :], 0.02, 0.98)
    g["sh"][:, 0, :] = (rgb - 0.5) / SH_C0
    g["sh"][:, 1:, :] = np.clip(g["sh"][:, 1:, :], -0.9, 0.9)
    g["opacity_logits"] = np.clip(g["opacity_logits"], -5, 5)
    g["log_scales"] = np.clip(g["log_scales"], -9, 5)
    return g


# --------------------------------------------------------------------------- .splat


def pack_splat(g) -> bytes:
    n = g["means"].shape[0]
    rec = np.zeros(n, dtype=[("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)),
                             ("rot", "u1", (4,))])
    rec["pos"] = g["means"]
    rec["scale"] = np.exp(g["log_scales"])
    rgb = 0.5 + SH_C0 * g["sh"][:, 0, :]
    rec["rgba"][:, :3] = np.clip(np.round(rgb * 255), 0, 255)
    rec["rgba"][:, 3] = np.clip(np.round(sigmoid(g["opacity_logits"]) * 255), 0, 255)
    rec["rot"] = np.clip(np.round(unit(g["quats"]) * 128 + 128), 0, 255)
    return rec.tobytes()


def test_splat_round_trip(tmp_path):
    g = scene(degree=0)
    path = tmp_path / "s.splat"
    path.write_bytes(pack_splat(g))
    assert detect_format(path) == "splat"
    a = read_scene_arrays(path)
    assert set(a) == {"means", "quats", "log_scales", "opacity_logits", "sh"}
    assert all(v.dtype == np.float32 for v in a.values())
    assert a["sh"].shape == (700, 1, 3)
    np.testing.assert_array_equal(a["means"], g["means"])
    assert np.abs(a["log_scales"] - g["log_scales"]).max() < 1e-5
    rgb = 0.5 + SH_C0 * a["sh"][:, 0, :]
    assert np.abs(rgb - (0.5 + SH_C0 * g["sh"][:, 0, :])).max() <= 0.5 / 255 + 1e-6
    assert np.abs(sigmoid(a["opacity_logits"]) - sigmoid(g["opacity_logits"])).max() \
        <= 0.5 / 255 + 1e-6
    assert quat_error(a["quats"], g["quats"]) <= 1.0 / 128
    assert load_scene(path).n == 700


def test_splat_identity_rotation_bytes_read_as_identity(tmp_path):
    g = scene(n=3, degree=0)
    raw = bytearray(pack_splat(g))
    raw[28:32] = bytes([128, 128, 128, 128])
    path = tmp_path / "s.splat"
    path.write_bytes(bytes(raw))
    np.testing.assert_array_equal(read_scene_arrays(path)["quats"][0], [1, 0, 0, 0])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-5], "not a multiple of 32"),
        (lambda b: b"", "empty"),
        (lambda b: struct.pack("<f", float("nan")) + b[4:], "non-finite means"),
        (lambda b: b[:12] + struct.pack("<f", -1.0) + b[16:], "not a positive finite"),
        (lambda b: b[:16] + struct.pack("<f", float("inf")) + b[20:], "not a positive finite"),
    ],
)
def test_bad_splat(tmp_path, mutate, message):
    path = tmp_path / "bad.splat"
    path.write_bytes(mutate(pack_splat(scene(n=5, degree=0))))
    with pytest.raises(FormatError, match=message):
        read_scene_arrays(path)


# --------------------------------------------------------------------------- .spz


def spz_blocks(g, version, frac=12):
    n = g["means"].shape[0]
    degree = {1: 0, 4: 1, 9: 2, 16: 3}[g["sh"].shape[1]]
    fixed = np.round(g["means"].astype(np.float64) * (1 << frac)).astype(np.int64).reshape(-1)
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], 1).astype(np.uint8)
    alpha = np.clip(np.round(sigmoid(g["opacity_logits"]) * 255), 0, 255).astype(np.uint8)
    colour = np.clip(np.round(g["sh"][:, 0, :] * 0.15 * 255 + 127.5), 0, 255).astype(np.uint8)
    scale = np.clip(np.round((g["log_scales"] + 10) * 16), 0, 255).astype(np.uint8)
    xyzw = unit(g["quats"])[:, [1, 2, 3, 0]]
    if version == 2:
        xyzw = xyzw * np.where(xyzw[:, 3:] < 0, -1.0, 1.0)
        rot = np.clip(np.round(xyzw[:, :3] * 127.5 + 127.5), 0, 255).astype(np.uint8)
    else:
        rot = np.zeros((n, 4), dtype=np.uint8)
        for i, q in enumerate(xyzw):
            big = int(np.argmax(np.abs(q)))
            if q[big] < 0:
                q = -q
            comp = big
            for j in range(4):
                if j != big:
                    mag = int(round(511 * abs(q[j]) / SQRT1_2))
                    comp = (comp << 10) | (int(q[j] < 0) << 9) | mag
            rot[i] = np.frombuffer(struct.pack("<I", comp), dtype=np.uint8)
    sh = np.clip(np.round(g["sh"][:, 1:, :] * 128 + 128), 0, 255).astype(np.uint8)
    blocks = [pos.tobytes(), alpha.tobytes(), colour.tobytes(), scale.tobytes(), rot.tobytes(),
              sh.tobytes()]
    return n, degree, blocks


def pack_spz(g, version, flags=0, frac=12, compress=True) -> bytes:
    n, degree, blocks = spz_blocks(g, version, frac)
    if version == 4:
        streams = blocks if degree else blocks[:5]
        comp = [zstandard.ZstdCompressor().compress(b) for b in streams]
        out = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, degree, frac, flags, len(comp), 32)
        out += b"".join(struct.pack("<QQ", len(c), len(b)) for c, b in zip(comp, streams,
                                                                         strict=True))
        return out + b"".join(comp)
    raw = struct.pack("<IIIBBBB", 0x5053474E, version, n, degree, frac, flags, 0) + b"".join(blocks)
    return gzip.compress(raw) if compress else raw


@pytest.mark.parametrize(("version", "degree"), [(2, 0), (2, 3), (3, 1), (3, 2), (4, 0), (4, 3)])
def test_spz_round_trip(tmp_path, version, degree):
    g = scene(degree=degree)
    path = tmp_path / "s.spz"
    path.write_bytes(pack_spz(g, version))
    assert detect_format(path) == "spz"
    a = read_scene_arrays(path)
    assert a["sh"].shape == g["sh"].shape
    assert np.abs(a["means"] - g["means"]).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(a["log_scales"] - g["log_scales"]).max() <= 0.5 / 16 + 1e-6
    assert np.abs(a["sh"][:, 0] - g["sh"][:, 0]).max() <= 0.5 / (0.15 * 255) + 1e-6
    assert np.abs(a["sh"][:, 1:] - g["sh"][:, 1:]).max(initial=0) <= 0.5 / 128 + 1e-6
    assert np.abs(sigmoid(a["opacity_logits"]) - sigmoid(g["opacity_logits"])).max() \
        <= 0.5 / 255 + 1e-6
    # v2 derives w from 8-bit x, y, z (coarse where w is small); v3/v4 keep 9 bits + sign
    bound = 0.1 if version == 2 else 3 * 0.5 * SQRT1_2 / 511
    assert quat_error(a["quats"], g["quats"]) <= bound


def test_spz_uncompressed_v3_and_fractional_bits(tmp_path):
    g = scene(degree=1)
    path = tmp_path / "s.spz"
    path.write_bytes(pack_spz(g, 3, frac=16, compress=False))
    a = read_scene_arrays(path)
    assert np.abs(a["means"] - g["means"]).max() <= 0.5 / 65536 + 1e-6


def _regzip(raw: bytes) -> bytes:
    return gzip.compress(raw)


def _spz_raw(version=3, n=20, degree=1):
    return gzip.decompress(pack_spz(scene(n=n, degree=degree), version))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _regzip(b"XXXX" + _spz_raw()[4:]), "bad magic"),
        (lambda: _regzip(_spz_raw()[:4] + struct.pack("<I", 5) + _spz_raw()[8:]),
         "unsupported .spz version 5"),
        (lambda: _regzip(_spz_raw()[:4] + struct.pack("<I", 1) + _spz_raw()[8:]),
         "unsupported .spz version 1"),
        (lambda: _regzip(_spz_raw()[:12] + bytes([4]) + _spz_raw()[13:]), "SH degree 4"),
        (lambda: _regzip(_spz_raw()[:13] + bytes([30]) + _spz_raw()[14:]), "fractional bits"),
        (lambda: _regzip(_spz_raw()[:14] + bytes([2]) + _spz_raw()[15:]), "extensions"),
        (lambda: _regzip(_spz_raw()[:-7]), "truncated .spz"),
        (lambda: _regzip(_spz_raw() + b"\0\0"), "data after"),
        (lambda: pack_spz(scene(n=20), 3)[:-12], "truncated gzip|corrupt gzip|truncated"),
        (lambda: pack_spz(scene(n=20), 3) + b"junk", "after the gzip stream"),
        (lambda: b"\x1f\x8b" + b"\0" * 30, "corrupt gzip"),
        (lambda: _regzip(b"NGSP"), "too short"),
        # a count the data cannot back: refused before anything is allocated
        (lambda: _regzip(_spz_raw()[:8] + struct.pack("<I", 4_000_000) + _spz_raw()[12:]),
         "more than its .* compressed bytes|truncated"),
        (lambda: _regzip(_spz_raw()[:8] + struct.pack("<I", 0xFFFFFFFF) + _spz_raw()[12:]),
         "more than the"),
        (lambda: b"", "empty"),
        (lambda: b"NGSP", "not an .spz"),
    ],
)
def test_bad_spz(tmp_path, make, message):
    path = tmp_path / "bad.spz"
    path.write_bytes(make())
    with pytest.raises(FormatError, match=message):
        read_scene_arrays(path)


def test_spz_gzip_bomb_is_refused_before_inflating(tmp_path):
    # 64 MiB of zeros (~64 KiB of gzip) behind a header declaring 1000 Gaussians: the reader
    # inflates only what the header declares (plus one byte) and refuses the rest
    n = 1_000
    head = struct.pack("<IIIBBBB", 0x5053474E, 3, n, 0, 12, 0, 0)
    path = tmp_path / "bomb.spz"
    path.write_bytes(gzip.compress(head + bytes(64 << 20), compresslevel=1))
    with pytest.raises(FormatError, match="data after"):
        read_scene_arrays(path)


def _v4(g=None, **kw):
    return bytearray(pack_spz(g if g is not None else scene(n=20, degree=1), 4, **kw))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.__setitem__(15, 5), "has 5 streams"),
        (lambda b: b.__setitem__(slice(16, 20), struct.pack("<I", 8)), "table of contents"),
        (lambda b: b.__setitem__(slice(16, 20), struct.pack("<I", 1 << 30)), "table of contents"),
        (lambda b: b.__setitem__(slice(40, 48), struct.pack("<Q", 999)), "positions stream holds"),
        (lambda b: b.__setitem__(slice(32, 40), struct.pack("<Q", 1 << 40)), "truncated .spz"),
        (lambda b: b.__setitem__(slice(32 + 6 * 16, 32 + 6 * 16 + 4), b"XXXX"), "corrupt zstd"),
        (lambda b: b.extend(b"trailing"), "after the last"),
        (lambda b: b.__setitem__(14, 2), "extensions"),
    ],
)
def test_bad_spz_v4(tmp_path, mutate, message):
    raw = _v4()
    mutate(raw)
    path = tmp_path / "bad.spz"
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=message):
        read_scene_arrays(path)


def test_spz_v4_stream_bomb_is_refused(tmp_path):
    # a stream whose TOC size disagrees with its zstd content: never decompressed past the TOC
    n = 20
    big = zstandard.ZstdCompressor().compress(bytes(50 << 20))
    raw = struct.pack("<IIIBBBBI12x", 0x5053474E, 4, n, 0, 12, 0, 5, 32)
    sizes = [9 * n, n, 3 * n, 3 * n, 4 * n]
    raw += b"".join(struct.pack("<QQ", len(big), s) for s in sizes) + big * 5
    path = tmp_path / "bomb.spz"
    path.write_bytes(raw)
    with pytest.raises(FormatError, match="decompresses to more bytes"):
        read_scene_arrays(path)


# --------------------------------------------------------------------------- compressed PLY


def _unorm(t, bits):
    m = (1 << bits) - 1
    return np.clip(np.floor(np.asarray(t, dtype=np.float64) * m + 0.5), 0, m).astype(np.uint32)


def _norm(x, lo, hi):
    span = hi - lo
    return np.where(span > 1e-5, (x - lo) / np.where(span > 1e-5, span, 1), 0.0)


def pack_compressed_ply(g, colour_bounds=True) -> bytes:
    n = g["means"].shape[0]
    k = g["sh"].shape[1] - 1
    chunks = -(-n // 256)
    ci = np.arange(n) // 256
    pad = chunks * 256 - n

    def bounds(x):
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]).reshape(chunks, 256, -1)
        return x.min(axis=1), x.max(axis=1)

    rgb = 0.5 + SH_C0 * g["sh"][:, 0, :].astype(np.float64)
    pmin, pmax = bounds(g["means"].astype(np.float64))
    smin, smax = bounds(g["log_scales"].astype(np.float64))
    cmin, cmax = bounds(rgb)
    chunk = np.concatenate([pmin, pmax, smin, smax] + ([cmin, cmax] if colour_bounds else []),
                           axis=1).astype("<f4")

    def pack3(x, lo, hi):
        t = _norm(x, lo[ci], hi[ci])
        return (_unorm(t[:, 0], 11) << 21) | (_unorm(t[:, 1], 10) << 11) | _unorm(t[:, 2], 11)

    q = unit(g["quats"])
    big = np.argmax(np.abs(q), axis=1)
    q = q * np.where(q[np.arange(n), big] < 0, -1.0, 1.0)[:, None]
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[big]
    abc = q[np.arange(n)[:, None], others] * SQRT1_2 + 0.5
    rot = (big.astype(np.uint32) << 30) | (_unorm(abc[:, 0], 10) << 20) \
        | (_unorm(abc[:, 1], 10) << 10) | _unorm(abc[:, 2], 10)
    c = _norm(rgb, cmin[ci], cmax[ci]) if colour_bounds else rgb
    colour = (_unorm(c[:, 0], 8) << 24) | (_unorm(c[:, 1], 8) << 16) | (_unorm(c[:, 2], 8) << 8) \
        | _unorm(sigmoid(g["opacity_logits"]), 8)
    vertex = np.stack([pack3(g["means"], pmin, pmax), rot, pack3(g["log_scales"], smin, smax),
                       colour], axis=1).astype("<u4")
    names = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z", "min_scale_x", "min_scale_y",
             "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]
    if colour_bounds:
        names += ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
    head = ["ply", "format binary_little_endian 1.0", "comment test", f"element chunk {chunks}"]
    head += [f"property float {p}" for p in names]
    head += [f"element vertex {n}"] + [f"property uint {p}" for p in
                                       ("packed_position", "packed_rotation", "packed_scale",
                                        "packed_color")]
    body = chunk.tobytes() + vertex.tobytes()
    if k:
        head += [f"element sh {n}"] + [f"property uchar f_rest_{i}" for i in range(3 * k)]
        rest = g["sh"][:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * k)  # channel-major
        body += np.clip(np.trunc((rest / 8 + 0.5) * 256), 0, 255).astype(np.uint8).tobytes()
    return ("\n".join(head + ["end_header"]) + "\n").encode() + body


@pytest.mark.parametrize(("degree", "colour_bounds"), [(0, True), (2, True), (3, False)])
def test_compressed_ply_round_trip(tmp_path, degree, colour_bounds):
    g = scene(n=700, degree=degree)
    path = tmp_path / "s.compressed.ply"
    path.write_bytes(pack_compressed_ply(g, colour_bounds))
    assert detect_format(path) == "compressed-ply"
    a = read_scene_arrays(path)
    assert a["sh"].shape == g["sh"].shape
    extent = g["means"].max(axis=0) - g["means"].min(axis=0)
    assert (np.abs(a["means"] - g["means"]) <= extent / 2046 + 1e-5).all()
    s_extent = g["log_scales"].max(axis=0) - g["log_scales"].min(axis=0)
    assert (np.abs(a["log_scales"] - g["log_scales"]) <= s_extent / 2046 + 1e-5).all()
    rgb_err = np.abs(SH_C0 * (a["sh"][:, 0] - g["sh"][:, 0]))
    assert rgb_err.max() <= 0.5 / 255 + 1e-5
    assert np.abs(sigmoid(a["opacity_logits"]) - sigmoid(g["opacity_logits"])).max() \
        <= 0.5 / 255 + 1e-6
    # the largest component is rebuilt from the other three: up to ~3x their rounding error
    assert quat_error(a["quats"], g["quats"]) <= 3 * 0.5 * math.sqrt(2) / 1023
    if degree:
        assert np.abs(a["sh"][:, 1:] - g["sh"][:, 1:]).max() <= 8 / 256 + 1e-6


def _cply_header_edit(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert old in raw
    return raw.replace(old, new, 1)


@pytest.mark.parametrize(
    ("mutate", "message", "error"),
    [
        (lambda b: b[:-10], "truncated compressed PLY", FormatError),
        (lambda b: _cply_header_edit(b, b"element chunk 3", b"element chunk 2"),
         "has 2 chunks", FormatError),
        (lambda b: _cply_header_edit(b, b"element sh 700", b"element sh 600"),
         "600 'sh' rows", FormatError),
        (lambda b: _cply_header_edit(b, b"property float min_x\n", b"property float min_q\n"),
         "lacks 'min_x'", FormatError),
        (lambda b: _cply_header_edit(b, b"uint packed_scale", b"float packed_scale"),
         "wrong type", FormatError),
        (lambda b: _cply_header_edit(b, b"property uchar f_rest_0\n", b""),
         "9, 24 or 45", FormatError),
        (lambda b: _cply_header_edit(b, b"element vertex 700", b"element vertex 99999999"),
         "'sh' rows", FormatError),
        (lambda b: _cply_header_edit(_cply_header_edit(b, b"element vertex 700",
                                                       b"element vertex 9999"),
                                     b"element sh 700", b"element sh 9999"),
         "has 3 chunks, 9999 Gaussians need 40", FormatError),
        (lambda b: b[: b.index(b"end_header")], "end_header", PlyError),
    ],
)
def test_bad_compressed_ply(tmp_path, mutate, message, error):
    path = tmp_path / "bad.compressed.ply"
    path.write_bytes(mutate(pack_compressed_ply(scene(n=700, degree=1))))
    with pytest.raises(error, match=message):
        read_scene_arrays(path)


def test_compressed_ply_non_finite_bounds(tmp_path):
    raw = bytearray(pack_compressed_ply(scene(n=10, degree=0)))
    start = raw.index(b"end_header\n") + len(b"end_header\n")
    raw[start : start + 4] = struct.pack("<f", float("nan"))
    path = tmp_path / "bad.compressed.ply"
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="not finite"):
        read_scene_arrays(path)


# --------------------------------------------------------------------------- SOG


def _webp(rgba: np.ndarray, lossless=True) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buf, "WEBP", lossless=lossless,
                                                            exact=True)
    return buf.getvalue()


def _codebook(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    book = np.linspace(values.min(), values.max(), 256)
    idx = np.clip(np.round((values - book[0]) / (book[1] - book[0] + 1e-30)), 0, 255)
    return book, idx.astype(np.uint8)


def pack_sog(g) -> dict[str, bytes]:
    n = g["means"].shape[0]
    w = math.ceil(math.sqrt(n) / 4) * 4
    h = math.ceil(n / w / 4) * 4

    def image(channels) -> np.ndarray:
        img = np.zeros((w * h, 4), dtype=np.uint8)
        img[:, 3] = 255
        for i, c in enumerate(channels):
            img[:n, i] = c
        return img.reshape(h, w, 4)

    t = np.sign(g["means"]) * np.log1p(np.abs(g["means"].astype(np.float64)))
    mins, maxs = t.min(axis=0), t.max(axis=0)
    v = np.round(65535 * (t - mins) / (maxs - mins)).astype(np.uint32)
    files = {"means_l.webp": _webp(image([v[:, i] & 0xFF for i in range(3)])),
             "means_u.webp": _webp(image([v[:, i] >> 8 for i in range(3)]))}
    q = unit(g["quats"])
    big = np.argmax(np.abs(q), axis=1)
    q = q * np.where(q[np.arange(n), big] < 0, -1.0, 1.0)[:, None] * math.sqrt(2)
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[big]
    abc = np.round(255 * (q[np.arange(n)[:, None], others] * 0.5 + 0.5))
    files["quats.webp"] = _webp(image([abc[:, 0], abc[:, 1], abc[:, 2], 252 + big]))
    sbook, sidx = _codebook(g["log_scales"].astype(np.float64))
    files["scales.webp"] = _webp(image([sidx[:, i] for i in range(3)]))
    cbook, cidx = _codebook(g["sh"][:, 0, :].astype(np.float64))
    alpha = np.clip(np.round(sigmoid(g["opacity_logits"]) * 255), 0, 255)
    files["sh0.webp"] = _webp(image([cidx[:, 0], cidx[:, 1], cidx[:, 2], alpha]))
    meta = {"version": 2, "asset": {"generator": "test"}, "count": n,
            "means": {"mins": mins.tolist(), "maxs": maxs.tolist(),
                      "files": ["means_l.webp", "means_u.webp"]},
            "scales": {"codebook": sbook.tolist(), "files": ["scales.webp"]},
            "quats": {"files": ["quats.webp"]},
            "sh0": {"codebook": cbook.tolist(), "files": ["sh0.webp"]}}
    k = g["sh"].shape[1] - 1
    if k:
        rest = g["sh"][:, 1:, :].astype(np.float64)  # [n, k, 3]
        book, idx = _codebook(rest)
        palette, labels = np.unique(idx.reshape(n, -1), axis=0, return_inverse=True)
        labels = labels.reshape(-1)
        p = palette.shape[0]
        rows = -(-p // 64)
        cen = np.zeros((rows * 64, k, 4), dtype=np.uint8)
        cen[:, :, 3] = 255
        cen[:p, :, :3] = palette.reshape(p, k, 3)
        files["shN_centroids.webp"] = _webp(cen.reshape(rows, 64 * k, 4))
        files["shN_labels.webp"] = _webp(image([labels & 0xFF, labels >> 8]))
        meta["shN"] = {"count": p, "bands": {3: 1, 8: 2, 15: 3}[k], "codebook": book.tolist(),
                       "files": ["shN_centroids.webp", "shN_labels.webp"]}
    files["meta.json"] = json.dumps(meta).encode()
    return files


def write_sog_folder(folder, files):
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_sog_zip(path, files, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def check_sog(a, g):
    t = np.sign(g["means"]) * np.log1p(np.abs(g["means"].astype(np.float64)))
    step = (t.max(axis=0) - t.min(axis=0)) / 65535
    ta = np.sign(a["means"]) * np.log1p(np.abs(a["means"].astype(np.float64)))
    assert (np.abs(ta - t) <= step / 2 + 1e-6).all()
    half = (g["log_scales"].max() - g["log_scales"].min()) / 255 / 2
    assert np.abs(a["log_scales"] - g["log_scales"]).max() <= half + 1e-5
    half = (g["sh"][:, 0].max() - g["sh"][:, 0].min()) / 255 / 2
    assert np.abs(a["sh"][:, 0] - g["sh"][:, 0]).max() <= half + 1e-5
    if g["sh"].shape[1] > 1:
        half = (g["sh"][:, 1:].max() - g["sh"][:, 1:].min()) / 255 / 2
        assert np.abs(a["sh"][:, 1:] - g["sh"][:, 1:]).max() <= half + 1e-5
    assert np.abs(sigmoid(a["opacity_logits"]) - sigmoid(g["opacity_logits"])).max() \
        <= 0.5 / 255 + 1e-6
    assert quat_error(a["quats"], g["quats"]) <= 3 * 1.0 / 255 / math.sqrt(2)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_sog_folder_meta_json_and_zip(tmp_path, degree):
    g = scene(n=700, degree=degree)
    files = pack_sog(g)
    folder = write_sog_folder(tmp_path / "scene", files)
    for path in (folder, folder / "meta.json"):
        assert detect_format(path) == "sog"
        a = read_scene_arrays(path)
        assert a["sh"].shape == g["sh"].shape
        check_sog(a, g)
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        z = write_sog_zip(tmp_path / f"scene{compression}.sog", files, compression)
        assert detect_format(z) == "sog"
        check_sog(read_scene_arrays(z), g)
    assert load_scene(folder).n == 700


def _meta_edit(files, edit):
    meta = json.loads(files["meta.json"])
    edit(meta)
    files = dict(files)
    files["meta.json"] = json.dumps(meta).encode()
    return files


def _image_edit(files, name, edit):
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(files[name])).convert("RGBA")).copy()
    edit(img)
    files = dict(files)
    files[name] = _webp(img)
    return files


@pytest.fixture(scope="module")
def sog_files():
    return pack_sog(scene(n=300, degree=1))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: {**f, "meta.json": b"{not json"}, "not valid JSON"),
        (lambda f: {**f, "meta.json": b"[1, 2]"}, "not a JSON object"),
        (lambda f: _meta_edit(f, lambda m: m.pop("version")), "version 1"),
        (lambda f: _meta_edit(f, lambda m: m.update(version=3)), "unsupported SOG version 3"),
        (lambda f: _meta_edit(f, lambda m: m.update(count=400)), "too small for 400"),
        (lambda f: _meta_edit(f, lambda m: m.update(count=10**12)), "more than the"),
        (lambda f: _meta_edit(f, lambda m: m.update(count="300")), "count is not an integer"),
        (lambda f: _meta_edit(f, lambda m: m.pop("quats")), "lacks 'quats'"),
        (lambda f: _meta_edit(f, lambda m: m["means"].update(mins=[0, 0])), "means.mins must"),
        (lambda f: _meta_edit(f, lambda m: m["means"]["maxs"].__setitem__(0, float("nan"))),
         "non-finite"),
        (lambda f: _meta_edit(f, lambda m: m["scales"].update(files=["../scales.webp"])),
         "bad file name"),
        (lambda f: _meta_edit(f, lambda m: m["scales"].update(files=["/etc/passwd"])),
         "bad file name"),
        (lambda f: _meta_edit(f, lambda m: m["scales"].update(files=["missing.webp"])),
         "no such file|no member"),
        (lambda f: _meta_edit(f, lambda m: m["scales"].update(codebook=[0.0] * 300)),
         "more than 256"),
        (lambda f: _meta_edit(f, lambda m: m["scales"].update(codebook=[0.0] * 3)),
         "past its 3-entry codebook"),
        (lambda f: _meta_edit(f, lambda m: m["shN"].update(bands=4)), "shN.bands 4"),
        (lambda f: _meta_edit(f, lambda m: m["shN"].update(count=m["shN"]["count"] - 1)),
         "palette entries past"),
        (lambda f: {**f, "quats.webp": b"not an image at all"}, "not a WebP"),
        (lambda f: {**f, "quats.webp": _webp(np.zeros((20, 20, 4), np.uint8), lossless=False)},
         "lossy WebP"),
        (lambda f: {**f, "quats.webp": f["quats.webp"][:60]}, "does not decode"),
        (lambda f: {**f, "sh0.webp": _webp(np.zeros((4000, 4000, 4), np.uint8))},
         "not the size the scene needs"),
        (lambda f: _image_edit(f, "quats.webp", lambda im: im.__setitem__((0, 0, 3), 7)),
         "bad tag"),
    ],
)
def test_bad_sog(tmp_path, sog_files, mutate, message):
    files = mutate(sog_files)
    folder = write_sog_folder(tmp_path / "bad", files)
    with pytest.raises(FormatError, match=message):
        read_scene_arrays(folder)
    with pytest.raises(FormatError, match=message):
        read_scene_arrays(write_sog_zip(tmp_path / "bad.sog", files))


def test_sog_zip_limits_checked_before_reading(tmp_path, sog_files, monkeypatch):
    # meta.json of 20 MiB (a few KiB zipped): refused from the zip directory, before inflating
    files = {**sog_files, "meta.json": b" " * (20 << 20)}
    path = write_sog_zip(tmp_path / "bomb.sog", files, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(FormatError, match="meta.json' is .* more than"):
        read_scene_arrays(path)
    from gscodec.formats import sog

    monkeypatch.setattr(sog, "MAX_ZIP_BYTES", 1000)
    with pytest.raises(FormatError, match="expands to"):
        read_scene_arrays(write_sog_zip(tmp_path / "ok.sog", sog_files))


def test_sog_without_pillow_is_a_clear_error(tmp_path, sog_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(FormatError, match="needs Pillow"):
        read_scene_arrays(write_sog_folder(tmp_path / "s", sog_files))


def test_sog_bad_zip(tmp_path, sog_files):
    path = tmp_path / "bad.sog"
    raw = write_sog_zip(path, sog_files).read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match="zip"):
        read_scene_arrays(path)
    # a member whose data does not match its CRC
    files = dict(sog_files)
    path = write_sog_zip(tmp_path / "crc.sog", files)
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"version"')
    raw[at + 1] ^= 0x20
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="does not read"):
        read_scene_arrays(path)


# --------------------------------------------------------------------------- dispatch, CLI


def test_detect_format(tmp_path, ply_path):
    assert detect_format(ply_path) == "ply"
    assert read_scene_arrays(ply_path)["sh"].shape[1] == 16
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(FormatError, match="without a SOG meta.json"):
        detect_format(folder)
    with pytest.raises(FormatError, match="no such file"):
        detect_format(tmp_path / "missing.spz")
    other = tmp_path / "scene.xyz"
    other.write_bytes(b"\0" * 64)
    with pytest.raises(FormatError, match="unrecognised scene format"):
        read_scene_arrays(other)
    gsz = tmp_path / "x.gsz"
    gsz.write_bytes(b"\x89GSZ\r\n\x1a\n" + bytes(40))
    assert detect_format(gsz) == "gsz"
    with pytest.raises(FormatError, match="load_scene"):
        read_scene_arrays(gsz)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.spz", b"\x1f\x8b" + b"\0" * 40, "corrupt gzip"),
        ("bad.spz", b"nonsense", "not an .spz"),
        ("bad.splat", b"\0" * 33, "multiple of 32"),
        ("bad.sog", b"PK\x03\x04" + b"\0" * 40, "zip"),
        ("meta.json", b'{"version": 7}', "unsupported SOG version"),
    ],
)
def test_cli_encode_bad_input_exits_1(tmp_path, name, content, message):
    src = tmp_path / name
    src.write_bytes(content)
    r = CliRunner().invoke(main, ["encode", str(src)], catch_exceptions=False)
    assert r.exit_code == 1
    assert message in _one_error_line(r)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_cli_encode_splat_and_spz(tmp_path):
    g = scene(n=400, degree=0)
    for name, data in (("s.splat", pack_splat(g)), ("s.spz", pack_spz(g, 3))):
        src = tmp_path / name
        src.write_bytes(data)
        out = tmp_path / (name + ".gsz")
        r = CliRunner().invoke(main, ["encode", str(src), "-o", str(out), "--quiet"],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert load_scene(out).n == 400


def test_errors_are_library_errors():
    assert issubclass(FormatError, GscodecError)
