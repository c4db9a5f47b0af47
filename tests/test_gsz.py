"""The .gsz container: layout, corruption, unknown streams, limits."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import gscodec
from gscodec.formats.errors import ContainerError, LimitError
from gscodec.formats.gsz import (
    ENTRY_SIZE,
    HEADER_SIZE,
    MAGIC,
    Limits,
    Stream,
    decode_meta,
    encode_meta,
    read_container,
    write_container,
)
from gscodec.synthetic import make_scene


@pytest.fixture(scope="module")
def small_gsz() -> bytes:
    return gscodec.encode(make_scene(800, sh_degree=1, seed=21), quality=4)


def _rewrite(data: bytes, streams: list[Stream]) -> bytes:
    """A new container with these streams (checksums recomputed)."""
    return write_container(streams)


def test_layout_is_as_specified(small_gsz):
    data = small_gsz
    assert data[:8] == MAGIC
    major, minor, flags, count, length, crc = struct.unpack_from("<HHIIQI", data, 8)
    assert (major, minor, flags) == (1, 0, 0)
    assert length == len(data)
    table = data[HEADER_SIZE:HEADER_SIZE + ENTRY_SIZE * count]
    assert crc == zlib.crc32(data[:28] + table)
    kinds = [table[i * ENTRY_SIZE:i * ENTRY_SIZE + 4].decode() for i in range(count)]
    assert kinds == ["META", "POSN", "SCAL", "ROTN", "OPAC", "SHDC", "SHRS"]
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)
    assert meta["n"] == 800 and meta["sh_degree"] == 1


def test_every_truncation_is_refused(small_gsz):
    for cut in list(range(0, 200)) + list(range(200, len(small_gsz), 97)):
        with pytest.raises(ContainerError):
            gscodec.decode(small_gsz[:cut])


def test_every_header_and_table_bit_flip_is_detected(small_gsz):
    count = struct.unpack_from("<I", small_gsz, 16)[0]
    end = HEADER_SIZE + ENTRY_SIZE * count
    for pos in range(end):
        for bit in range(8):
            bad = bytearray(small_gsz)
            bad[pos] ^= 1 << bit
            with pytest.raises(ContainerError):
                gscodec.decode(bytes(bad))


def test_payload_byte_flips_are_detected(small_gsz):
    rng = np.random.default_rng(0)
    count = struct.unpack_from("<I", small_gsz, 16)[0]
    start = HEADER_SIZE + ENTRY_SIZE * count
    for pos in rng.integers(start, len(small_gsz), 200):
        bad = bytearray(small_gsz)
        bad[pos] ^= 1 << int(rng.integers(8))
        with pytest.raises(ContainerError, match="checksum"):
            gscodec.decode(bytes(bad))


def test_wrong_magic_and_future_version(small_gsz):
    with pytest.raises(ContainerError, match="bad magic"):
        gscodec.decode(b"PK\x03\x04" + small_gsz[4:])
    future = bytearray(small_gsz)
    struct.pack_into("<H", future, 8, 2)
    with pytest.raises(ContainerError, match="unsupported .gsz version 2"):
        gscodec.decode(bytes(future))
    with pytest.raises(ContainerError, match="empty"):
        gscodec.decode(b"")


def test_unknown_optional_stream_is_skipped_and_required_one_refused(small_gsz):
    c = read_container(small_gsz)
    base = gscodec.decode(small_gsz)
    extra = Stream("ZZZZ", 9, False, b"anything at all")
    skipped = gscodec.decode(write_container(c.streams + [extra]))
    np.testing.assert_array_equal(skipped.means, base.means)
    np.testing.assert_array_equal(skipped.sh, base.sh)
    required = Stream("ZZZZ", 9, True, b"anything at all")
    with pytest.raises(ContainerError, match="unknown required stream 'ZZZZ'"):
        gscodec.decode(write_container(c.streams + [required]))


def test_unknown_codec_and_missing_stream_are_refused(small_gsz):
    c = read_container(small_gsz)
    streams = [Stream(s.kind, 7 if s.kind == "ROTN" else s.codec, s.required, s.payload)
               for s in c.streams]
    with pytest.raises(ContainerError, match="codec 7"):
        gscodec.decode(write_container(streams))
    with pytest.raises(ContainerError, match="missing stream 'ROTN'"):
        gscodec.decode(write_container([s for s in c.streams if s.kind != "ROTN"]))


def _with_meta(small_gsz, change):
    c = read_container(small_gsz)
    meta = decode_meta(c.streams[0].payload)
    change(meta)
    return write_container([Stream("META", 1, True, encode_meta(meta))] + c.streams[1:])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(n=-1), "n must be an integer"),
        (lambda m: m.update(n="12"), "n must be an integer"),
        (lambda m: m.update(sh_degree=4), "sh_degree"),
        (lambda m: m.update(format="zip"), "format"),
        (lambda m: m["streams"].pop("OPAC"), "streams.OPAC"),
        (lambda m: m["streams"]["SCAL"].update(step=-1), "step"),
        (lambda m: m["streams"]["SCAL"].update(mode="magic"), "mode"),
        (lambda m: m["streams"]["ROTN"]["plans"].pop(), "channel plans"),
        (lambda m: m["streams"]["POSN"].update(origin=[0, 0]), "origin"),
        (lambda m: m.update(n=m["n"] + 1), "corrupt stream"),
    ],
)
def test_bad_metadata_is_refused_with_a_clear_error(small_gsz, change, message):
    with pytest.raises(ContainerError, match=message):
        gscodec.decode(_with_meta(small_gsz, change))


def test_limits_are_checked_before_allocation(small_gsz):
    huge = _with_meta(small_gsz, lambda m: m.update(n=10**12))
    with pytest.raises(LimitError):
        gscodec.decode(huge)
    many = _with_meta(small_gsz, lambda m: m.update(n=50_000_000))  # 20 GB by the estimate
    with pytest.raises(LimitError, match="above the memory budget"):
        gscodec.decode(many)
    with pytest.raises(LimitError, match="streams"):
        read_container(small_gsz, Limits(max_streams=3))
    with pytest.raises(LimitError, match="metadata"):
        decode_meta(read_container(small_gsz).streams[0].payload, Limits(max_meta_bytes=10))


def test_streams_outside_the_file_or_overlapping_are_refused(small_gsz):
    def patch_entry(data, index, offset=None, length=None):
        b = bytearray(data)
        pos = HEADER_SIZE + ENTRY_SIZE * index
        if offset is not None:
            struct.pack_into("<Q", b, pos + 8, offset)
        if length is not None:
            struct.pack_into("<Q", b, pos + 16, length)
        count = struct.unpack_from("<I", b, 16)[0]
        crc = zlib.crc32(bytes(b[:28]) + bytes(b[HEADER_SIZE:HEADER_SIZE + ENTRY_SIZE * count]))
        struct.pack_into("<I", b, 28, crc)
        return bytes(b)

    with pytest.raises(ContainerError, match="outside the file"):
        read_container(patch_entry(small_gsz, 1, length=len(small_gsz)))
    with pytest.raises(ContainerError, match="outside the file"):
        read_container(patch_entry(small_gsz, 1, offset=2**63))
    c = read_container(small_gsz)
    with pytest.raises(ContainerError, match="overlap|checksum"):
        read_container(patch_entry(small_gsz, 2, offset=c.offsets[1]))
