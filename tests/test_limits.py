"""Resource limits: no declared size or count is trusted before it has been checked against the
file length and the configured Limits (GSZ.md sections 2, 4, 6.8; formats/ply.py)."""

from __future__ import annotations

import time
import tracemalloc

import pytest
import zstandard

import gscodec
from gscodec import budget, sideinfo
from gscodec.codec.meta import get_dict
from gscodec.formats.errors import ContainerError, LimitError, PlyError
from gscodec.formats.gsz import (
    ZSTD_MAX_WINDOW,
    Limits,
    Stream,
    bounded_decompress,
    decode_meta,
    encode_meta,
    read_container,
    write_container,
)
from gscodec.formats.ply import read_ply_arrays
from gscodec.synthetic import make_scene


def _peak(fn):
    """(result or exception, peak bytes traced while ``fn`` ran)."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - returned to the caller
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zstd_frame_declaring_more_than_the_limit_is_refused_before_allocating():
    blob = zstandard.ZstdCompressor(level=19).compress(bytes(17 << 20))
    assert len(blob) < 1000
    err, peak = _peak(lambda: bounded_decompress(blob, 16 << 20, "metadata"))
    assert isinstance(err, LimitError) and "metadata declares 17825792 bytes" in str(err)
    assert peak < 1 << 20


def test_zstd_frame_without_size_that_expands_too_far_is_stopped_at_the_limit():
    blob = zstandard.ZstdCompressor(level=19, write_content_size=False).compress(bytes(64 << 20))
    err, peak = _peak(lambda: bounded_decompress(blob, 1 << 20, "metadata"))
    assert isinstance(err, LimitError) and "larger than 1048576 bytes" in str(err)
    assert peak < 4 << 20  # the limit plus one chunk, never the 64 MiB it expands to


def test_zstd_small_output_allocates_little():
    blob = zstandard.ZstdCompressor(level=19).compress(b"{}" * 100)
    out, peak = _peak(lambda: bounded_decompress(blob, 64 << 20, "stream tables"))
    assert out == b"{}" * 100 and peak < 256 << 10  # one zstd output buffer, not the limit


def test_zstd_frame_of_many_empty_blocks_is_decoded_in_linear_time():
    # 3 million empty raw blocks (9 MB of input, no output): the decoder must neither hang in a
    # per-block loop nor allocate per block
    blob = (b"\x28\xb5\x2f\xfd\x00\x00" + b"\x00\x00\x00" * 3_000_000 + b"\x01\x00\x00")
    t0 = time.perf_counter()
    assert bounded_decompress(blob, 16 << 20, "metadata") == b""
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize(
    ("blob", "error", "message"),
    [
        (b"", ContainerError, "not a zstd frame"),
        (b"\x50\x2a\x4d\x18" + bytes(8), ContainerError, "not a zstd frame"),  # skippable frame
        (zstandard.ZstdCompressor().compress(b"abc") + b"x", ContainerError,
         "data after the zstd frame"),
        (zstandard.ZstdCompressor().compress(b"abc") * 2, ContainerError,
         "data after the zstd frame"),
        (zstandard.ZstdCompressor().compress(b"abc" * 99)[:-2], ContainerError, "truncated"),
        (zstandard.ZstdCompressor(level=22, write_content_size=False).compress(bytes(1 << 24)),
         LimitError, "zstd window"),
    ],
)
def test_bad_zstd_frames(blob, error, message):
    if error is LimitError:
        assert zstandard.get_frame_parameters(blob).window_size > ZSTD_MAX_WINDOW
    with pytest.raises(error, match=message):
        bounded_decompress(blob, 64 << 20, "metadata")


def test_metadata_limit_is_configurable():
    payload = encode_meta({"format": "gsz", "pad": "x" * 5000})
    assert decode_meta(payload)["format"] == "gsz"
    with pytest.raises(LimitError, match="metadata declares"):
        decode_meta(payload, Limits(max_meta_bytes=4096))


def test_gaussian_limit_is_configurable_from_the_api():
    data = gscodec.encode(make_scene(50, sh_degree=0, seed=2), quality=3)
    assert gscodec.decode(data, limits=Limits(max_gaussians=50)).n == 50
    with pytest.raises(LimitError, match="50 Gaussians"):
        gscodec.decode(data, limits=Limits(max_gaussians=49))
    with pytest.raises(LimitError, match="50 Gaussians"):
        gscodec.inspect(data, limits=Limits(max_gaussians=49))


@pytest.fixture(scope="module")
def side_file() -> bytes:
    return gscodec.encode(make_scene(24, sh_degree=0, seed=1), quality=7, views=1,
                          sideinfo_size=32)


def _with_side_meta(data: bytes, change) -> bytes:
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)
    change(meta["streams"]["SIDE"])
    return write_container([Stream("META", 1, True, encode_meta(meta))] + c.streams[1:])


def test_side_information_sizes_are_checked_before_allocating(side_file):
    view = decode_meta(read_container(side_file).streams[0].payload)["streams"]["SIDE"]["views"][0]

    def huge(side):  # 8 views of 4096 x 4096 at scale 1: 134M pixels from a 1.5 KB file
        side.update(scale=1, views=[dict(view, width=4096, height=4096)] * 8)

    bomb = _with_side_meta(side_file, huge)
    err, peak = _peak(lambda: gscodec.decode(bomb, steps=0))
    assert isinstance(err, LimitError) and "SIDE views declare 134217728 pixels" in str(err)
    assert peak < 8 << 20

    def many_rows(side):  # within the pixel limit: 262144 residual rows for a payload of 64
        side.update(scale=1, views=[dict(view, width=512, height=512)])

    rows = _with_side_meta(side_file, many_rows)
    # the rows count in the memory budget (GSZ.md 4.1), whatever the payload's length: the
    # default budget lets the decoder try, and the payload turns out to be too short
    err, peak = _peak(lambda: gscodec.decode(rows, steps=0))
    assert type(err) is ContainerError and "corrupt stream" in str(err)
    assert peak < 64 << 20
    # a budget below the rows' estimate refuses them before anything is decoded
    small = Limits(max_memory=budget.FIXED_BYTES + budget.side_bytes(512 * 512) // 2)
    err, peak = _peak(lambda: gscodec.decode(rows, steps=0, limits=small))
    assert isinstance(err, LimitError) and "above the memory budget" in str(err)
    assert peak < 8 << 20
    c = read_container(rows)
    meta = get_dict(decode_meta(c.streams[0].payload)["streams"], "SIDE")
    with pytest.raises(LimitError, match="262144 residual pixels.*above the memory budget"):
        sideinfo.decode(c.get("SIDE").payload, meta, small)
    assert gscodec.decode(rows, refine=False, limits=small).n == 24
    # the pixel limit is configurable, and the base layer does not need the SIDE stream
    with pytest.raises(LimitError, match="SIDE views"):
        gscodec.decode(side_file, steps=0, limits=Limits(max_side_pixels=1000))
    assert gscodec.decode(bomb, refine=False).n == 24


def test_side_decoder_checks_limits_directly(side_file):
    c = read_container(side_file)
    meta = get_dict(decode_meta(c.streams[0].payload)["streams"], "SIDE")
    si = sideinfo.decode(c.get("SIDE").payload, meta)
    assert len(si.cameras) == 1 and si.residuals[0].shape == (8, 8, 3)
    with pytest.raises(LimitError):
        sideinfo.decode(c.get("SIDE").payload, meta, Limits(max_side_pixels=32 * 32 - 1))


@pytest.mark.parametrize(
    "content",
    [
        b"ply\nformat ascii 1.0\nelement vertex 300000000\nproperty float x\nend_header\n1\n",
        b"ply\nformat binary_little_endian 1.0\nelement face 100000000000\n"
        b"property list uchar int vertex_indices\nelement vertex 1\nproperty float x\n"
        b"end_header\n\x00",
    ],
)
def test_ply_counts_are_checked_against_the_file_before_plyfile_allocates(tmp_path, content):
    path = tmp_path / "huge.ply"
    path.write_bytes(content)
    err, peak = _peak(lambda: read_ply_arrays(path))
    assert isinstance(err, PlyError) and "truncated PLY" in str(err)
    assert peak < 1 << 20
