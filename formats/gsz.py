"""The .gsz container, version 1: a header, a table of typed streams, then the streams.

The byte-level specification is ``GSZ.md`` beside this file; this module implements it. The
container knows nothing about Gaussians: it stores streams (kind, codec, flags, payload) and
verifies lengths and checksums. Nothing is allocated from a declared size before that size has
been checked against the file length and the limits.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import zstandard

from .chunks import FLAG_CHUNKED
from .errors import ContainerError, LimitError

MAGIC = b"\x89GSZ\r\n\x1a\n"
VERSION_MAJOR = 1
VERSION_MINOR = 0
HEADER_SIZE = 32
ENTRY_SIZE = 32
FLAG_REQUIRED = 0x0001
KNOWN_STREAM_FLAGS = FLAG_REQUIRED
REQUIRED_FILE_FLAGS_MASK = 0xFFFF0000  # unknown bits here must be refused; low bits are hints
KNOWN_FILE_FLAGS = FLAG_CHUNKED
ZSTD_UNKNOWN_SIZE = (1 << 64) - 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_MAX_WINDOW = 8 << 20  # RFC 8878 recommends decoders support 8 MiB; levels <= 19 stay below
_ZSTD_BLOCK = 128 << 10  # the largest zstd block
_ZSTD_MIN_FEED = 48  # input bytes fed at least: at most 16 blocks, 2 MiB

_HEADER = struct.Struct("<8sHHIIQI")
_ENTRY = struct.Struct("<4sHHQQII")

META_KIND = "META"
CODEC_ZSTD_JSON = 1


@dataclass(frozen=True)
class Limits:
    """Decoder limits, checked before anything is allocated.

    ``max_gaussians`` bounds the declared count N (GSZ.md section 4); ``max_side_pixels`` the
    full-resolution pixels of all side-information views together (section 6.8), which a
    refining decoder renders and holds as targets; ``max_memory`` (bytes) the decoder's peak
    memory as estimated from the header before decoding (section 4.1, ``gscodec.budget``):
    the decoded arrays, the channel decoder's working memory and, where the file is refined,
    refinement's. Its default, 16 GiB, is what a current laptop or workstation can give one
    process: it decodes the largest captured scenes (up to about 18 million Gaussians at SH
    degree 3, 45 million at 0, in a plain file; 27 and 84 million in a chunked file of the
    default chunks) and refines on a CPU about 1.4 million at SH 3 (2.2 million at
    0), while a file that asks for more (the per-byte rule it replaces let a 4 MB file ask for
    60 GB) is refused before the machine starts to swap or the process is killed. Raise it on
    bigger machines. ``max_chunks`` bounds the chunk count of a chunked file (section 11)."""

    max_streams: int = 256
    max_meta_bytes: int = 16 << 20
    max_gaussians: int = 1 << 28
    max_file_bytes: int = 1 << 40
    max_side_pixels: int = 1 << 24
    max_memory: int = 16 << 30
    max_chunks: int = 1 << 20


DEFAULT_LIMITS = Limits()


@dataclass
class Stream:
    """One stream: a 4-character ASCII kind, a codec id, whether a decoder must understand it,
    and its payload bytes."""

    kind: str
    codec: int
    required: bool
    payload: bytes

    def __post_init__(self) -> None:
        if len(self.kind) != 4 or not self.kind.isascii() or not self.kind.isprintable():
            raise ValueError(f"stream kind must be 4 printable ASCII characters: {self.kind!r}")
        if not 0 <= self.codec <= 0xFFFF:
            raise ValueError("codec id must fit in 16 bits")


@dataclass
class Container:
    """A parsed .gsz file: version, file flags, streams in table order, and the byte layout."""

    version: tuple[int, int]
    flags: int
    streams: list[Stream]
    offsets: list[int] = field(default_factory=list)
    file_size: int = 0

    def get(self, kind: str) -> Stream | None:
        for s in self.streams:
            if s.kind == kind:
                return s
        return None


def bounded_decompress(blob: bytes, limit: int, what: str) -> bytes:
    """Decompress one zstd frame (and nothing after it), refusing more than ``limit`` output
    bytes and windows above ``ZSTD_MAX_WINDOW``.

    A frame that declares more than ``limit`` bytes is refused before anything is allocated. The
    input is fed to the decompressor in pieces small enough that each can add at most about
    ``limit - output so far`` bytes (a zstd block of at most 128 KiB needs at least 3 input
    bytes), so a frame that does not declare its size is stopped just past the limit: no more
    than ``limit`` plus a few blocks is ever held, whatever the frame claims."""
    blob = bytes(blob)
    if not blob.startswith(ZSTD_MAGIC):  # also refuses skippable frames
        raise ContainerError(f"corrupt {what}: not a zstd frame")
    try:
        params = zstandard.get_frame_parameters(blob)
    except zstandard.ZstdError:
        raise ContainerError(f"corrupt {what}: not a zstd frame") from None
    size = params.content_size
    if size != ZSTD_UNKNOWN_SIZE and size > limit:
        raise LimitError(f"{what} declares {size} bytes after decompression (limit {limit})")
    if params.window_size > ZSTD_MAX_WINDOW:
        raise LimitError(
            f"{what} declares a zstd window of {params.window_size} bytes "
            f"(limit {ZSTD_MAX_WINDOW})"
        )
    dec = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()
    view = memoryview(blob)
    chunks: list[bytes] = []
    pos = total = 0
    try:
        while pos < len(blob) and not dec.eof:
            feed = max(_ZSTD_MIN_FEED, 3 * ((limit - total) // _ZSTD_BLOCK))
            chunk = dec.decompress(view[pos : pos + feed])
            pos += feed
            total += len(chunk)
            if total > limit:
                raise LimitError(f"{what} is larger than {limit} bytes after decompression")
            chunks.append(chunk)
    except zstandard.ZstdError:
        raise ContainerError(f"corrupt {what}: zstd data does not decompress") from None
    if not dec.eof:
        raise ContainerError(f"corrupt {what}: the zstd frame is truncated")
    if dec.unused_data or pos < len(blob):
        raise ContainerError(f"corrupt {what}: data after the zstd frame")
    if size != ZSTD_UNKNOWN_SIZE and total != size:
        raise ContainerError(f"corrupt {what}: zstd data does not decompress")
    return b"".join(chunks)


def encode_meta(meta: dict[str, Any]) -> bytes:
    """Metadata payload: compact JSON (UTF-8), zstd-compressed with its content size."""
    text = json.dumps(meta, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return zstandard.ZstdCompressor(level=19).compress(text.encode("utf-8"))


def decode_meta(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    raw = bounded_decompress(payload, limits.max_meta_bytes, "metadata")
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ContainerError("corrupt metadata: not valid UTF-8 JSON") from None
    if not isinstance(meta, dict):
        raise ContainerError("corrupt metadata: the top level must be a JSON object")
    return meta


def _reject_constant(name: str) -> Any:
    raise ContainerError(f"corrupt metadata: {name} is not allowed")


def write_container(streams: list[Stream], flags: int = 0, minor: int = VERSION_MINOR) -> bytes:
    """Serialize streams (the first must be the META stream) into .gsz bytes of version
    ``1.minor`` (an encoder writes the lowest version its file needs)."""
    if not streams or streams[0].kind != META_KIND:
        raise ValueError("the first stream must be the META stream")
    kinds = [s.kind for s in streams]
    if len(set(kinds)) != len(kinds):
        raise ValueError("stream kinds must be unique")
    table_end = HEADER_SIZE + ENTRY_SIZE * len(streams)
    offset = table_end
    entries = bytearray()
    for s in streams:
        entries += _ENTRY.pack(
            s.kind.encode("ascii"),
            s.codec,
            FLAG_REQUIRED if s.required else 0,
            offset,
            len(s.payload),
            zlib.crc32(s.payload),
            0,
        )
        offset += len(s.payload)
    head = _HEADER.pack(MAGIC, VERSION_MAJOR, minor, flags, len(streams), offset, 0)
    crc = zlib.crc32(head[:28] + bytes(entries))
    head = head[:28] + struct.pack("<I", crc)
    return head + bytes(entries) + b"".join(s.payload for s in streams)


@dataclass(frozen=True)
class Entry:
    """One row of the stream table: where a stream's payload lies, without the payload."""

    kind: str
    codec: int
    required: bool
    offset: int
    length: int
    crc: int


def _parse_table(head: bytes, size: int, limits: Limits) -> tuple[int, int, int, list[Entry]]:
    """``(major, minor, flags, entries)`` from the header and as much of the stream table as
    ``head`` holds (all of it: ContainerError otherwise), for a file of ``size`` bytes. Checks
    everything the table alone can show: magic, version, length, limits, header checksum, flags,
    kinds, spans inside the file and not overlapping, no kind twice, META first."""
    if size == 0:
        raise ContainerError("not a .gsz file (it is empty)")
    if size < HEADER_SIZE:
        if not MAGIC.startswith(bytes(head[: len(MAGIC)])):
            raise ContainerError("not a .gsz file (bad magic)")
        raise ContainerError(f"truncated .gsz file: {size} bytes, shorter than the header")
    magic, major, minor, flags, count, length, crc = _HEADER.unpack_from(head, 0)
    if magic != MAGIC:
        raise ContainerError("not a .gsz file (bad magic)")
    if major != VERSION_MAJOR:
        raise ContainerError(
            f"unsupported .gsz version {major}.{minor} (this decoder reads version {VERSION_MAJOR})"
        )
    if length > limits.max_file_bytes:
        raise LimitError(f"file declares {length} bytes (limit {limits.max_file_bytes})")
    if length != size:
        if length > size:
            raise ContainerError(f"truncated .gsz file: header says {length} bytes, found {size}")
        raise ContainerError(f"corrupt .gsz file: header says {length} bytes, found {size}")
    if count == 0:
        raise ContainerError("corrupt .gsz file: no streams")
    if count > limits.max_streams:
        raise LimitError(f"file declares {count} streams (limit {limits.max_streams})")
    table_end = HEADER_SIZE + ENTRY_SIZE * count
    if table_end > size or len(head) < table_end:
        raise ContainerError("truncated .gsz file: the stream table runs past the end")
    if zlib.crc32(bytes(head[:28]) + bytes(head[HEADER_SIZE:table_end])) != crc:
        raise ContainerError("corrupt .gsz file: header checksum mismatch")
    unknown_required = flags & REQUIRED_FILE_FLAGS_MASK & ~KNOWN_FILE_FLAGS
    if unknown_required:
        raise ContainerError(f"unsupported .gsz feature flags 0x{unknown_required:08x}")
    entries: list[Entry] = []
    for i in range(count):
        raw_kind, codec, sflags, offset, slen, scrc, reserved = _ENTRY.unpack_from(
            head, HEADER_SIZE + ENTRY_SIZE * i
        )
        try:
            kind = raw_kind.decode("ascii")
        except UnicodeDecodeError:
            kind = ""
        if len(kind) != 4 or not kind.isprintable():
            raise ContainerError(f"corrupt .gsz file: stream {i} has an invalid kind {raw_kind!r}")
        if reserved != 0 or sflags & ~KNOWN_STREAM_FLAGS:
            raise ContainerError(f"corrupt .gsz file: stream {kind!r} has reserved bits set")
        if offset < table_end or offset > size or slen > size - offset:
            raise ContainerError(
                f"corrupt .gsz file: stream {kind!r} ({slen} bytes at {offset}) "
                "lies outside the file"
            )
        if any(kind == e.kind for e in entries):
            raise ContainerError(f"corrupt .gsz file: stream {kind!r} appears twice")
        entries.append(Entry(kind, codec, bool(sflags & FLAG_REQUIRED), offset, slen, scrc))
    spans = sorted((e.offset, e.offset + e.length) for e in entries)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise ContainerError("corrupt .gsz file: streams overlap")
    if entries[0].kind != META_KIND or entries[0].codec != CODEC_ZSTD_JSON:
        raise ContainerError("corrupt .gsz file: the first stream must be zstd JSON metadata")
    return major, minor, flags, entries


def read_container(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Container:
    """Parse and verify .gsz bytes; every problem is a ContainerError (LimitError for limits)."""
    size = len(data)
    major, minor, flags, entries = _parse_table(data, size, limits)
    streams: list[Stream] = []
    for e in entries:
        payload = bytes(data[e.offset : e.offset + e.length])
        if zlib.crc32(payload) != e.crc:
            raise ContainerError(f"corrupt .gsz file: checksum mismatch in stream {e.kind!r}")
        streams.append(Stream(e.kind, e.codec, e.required, payload))
    return Container((major, minor), flags, streams, [e.offset for e in entries], size)


@dataclass
class Header:
    """What :func:`read_header` reads: version, flags, the stream table and the metadata
    stream's payload (checksum verified); no other payload is read."""

    version: tuple[int, int]
    flags: int
    entries: list[Entry]
    meta_payload: bytes
    file_size: int


def read_header(f: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> Header:
    """The header, stream table and metadata payload of the .gsz file open as ``f`` (binary,
    seekable), reading nothing else: at most ``32 + 32 * streams`` bytes plus the metadata's,
    whatever the file's size. The other streams' checksums are not verified (their bytes are
    not read)."""
    size = f.seek(0, 2)
    f.seek(0)
    head = f.read(HEADER_SIZE)
    if len(head) == HEADER_SIZE and head[:8] == MAGIC:
        count = min(_HEADER.unpack_from(head, 0)[4], limits.max_streams)
        head += f.read(ENTRY_SIZE * count)
    major, minor, flags, entries = _parse_table(head, size, limits)
    meta = entries[0]
    if meta.length > limits.max_meta_bytes:
        raise LimitError(f"metadata stream of {meta.length} bytes (limit {limits.max_meta_bytes})")
    return Header((major, minor), flags, entries, read_payload(f, meta), size)


def read_payload(f: BinaryIO, entry: Entry) -> bytes:
    """The payload of the stream ``entry`` (a row of the stream table) of the .gsz file open
    as ``f``, its checksum verified (ContainerError where it is short or does not match)."""
    f.seek(entry.offset)
    payload = f.read(entry.length)
    if len(payload) != entry.length or zlib.crc32(payload) != entry.crc:
        raise ContainerError(f"corrupt .gsz file: checksum mismatch in stream {entry.kind!r}")
    return payload
