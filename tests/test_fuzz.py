"""Seeded, fast fuzzing of the .gsz decoder and the PLY reader (the long runs are
benchmarks/fuzz.py, whose mutation engine the last tests reuse).

- every truncation of a conformance file gives the documented truncation error;
- every single-bit flip in the header and the stream table gives a documented error (or, where
  the bit does not matter, the same Gaussians);
- every single-bit flip and every burst of up to 32 flipped bits in a payload is caught by the
  stream's CRC-32: 100%, as the CRC guarantees;
- random splices, duplications, truncations and metadata / payload edits behind valid checksums
  raise ContainerError and nothing else; the same for PLY files and PlyError.
"""

from __future__ import annotations

import importlib.util
import random
import struct
from pathlib import Path

import numpy as np
import pytest

import gscodec
from gscodec.formats.errors import ContainerError, PlyError
from gscodec.formats.gsz import ENTRY_SIZE, HEADER_SIZE, read_container
from gscodec.formats.ply import read_ply_arrays

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "formats" / "conformance" / "valid"

# message beginnings that GSZ.md section 7 lists for the container level
DOCUMENTED = ("not a .gsz file", "truncated .gsz file", "corrupt .gsz file", "unsupported .gsz",
              "file declares")


def _load_fuzz():
    spec = importlib.util.spec_from_file_location("gscodec_bench_fuzz",
                                                  ROOT / "benchmarks" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


def _same(a: gscodec.Gaussians, b: gscodec.Gaussians) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k))
               for k in ("means", "quats", "log_scales", "opacity_logits", "sh"))


@pytest.fixture(scope="module")
def side_file() -> bytes:
    return (CONFORMANCE / "sh0-n40-side.gsz").read_bytes()


@pytest.fixture(scope="module")
def sh3_file() -> bytes:
    return (CONFORMANCE / "sh3-n12.gsz").read_bytes()


def test_truncation_at_every_offset_gives_the_truncation_error(sh3_file):
    for cut in range(len(sh3_file)):
        with pytest.raises(ContainerError) as info:
            gscodec.decode(sh3_file[:cut], refine=False)
        message = str(info.value)
        if cut == 0:
            assert message == "not a .gsz file (it is empty)"
        else:
            assert message.startswith("truncated .gsz file"), (cut, message)


def test_every_header_and_table_bit_flip_gives_a_documented_error(side_file):
    base = gscodec.decode(side_file, refine=False)
    count = struct.unpack_from("<I", side_file, 16)[0]
    end = HEADER_SIZE + ENTRY_SIZE * count
    decoded = 0
    for pos in range(end):
        for bit in range(8):
            bad = bytearray(side_file)
            bad[pos] ^= 1 << bit
            try:
                g = gscodec.decode(bytes(bad), refine=False)
            except ContainerError as e:
                assert str(e).startswith(DOCUMENTED), (pos, bit, str(e))
            else:
                decoded += 1
                assert _same(g, base), (pos, bit)
    assert decoded == 0  # the header CRC covers every byte that is not checked before it


def test_every_payload_bit_flip_is_detected(side_file):
    c = read_container(side_file)
    start = HEADER_SIZE + ENTRY_SIZE * len(c.streams)
    owner = {}
    for s, off in zip(c.streams, c.offsets, strict=True):
        owner.update({p: s.kind for p in range(off, off + len(s.payload))})
    assert sorted(owner) == list(range(start, len(side_file)))  # payloads fill the rest
    flips = 0
    for pos in range(start, len(side_file)):
        for bit in range(8):
            bad = bytearray(side_file)
            bad[pos] ^= 1 << bit
            with pytest.raises(ContainerError) as info:
                gscodec.decode(bytes(bad), refine=False)
            assert str(info.value) == (
                f"corrupt .gsz file: checksum mismatch in stream '{owner[pos]}'")
            flips += 1
    assert flips == 8 * (len(side_file) - start)  # 100%


def test_payload_bursts_up_to_32_bits_are_detected(side_file):
    rng = random.Random(5)
    start = HEADER_SIZE + ENTRY_SIZE * len(read_container(side_file).streams)
    total = (len(side_file) - start) * 8
    for _ in range(500):
        length = rng.randrange(2, 33)
        first = rng.randrange(total - length + 1)
        bad = bytearray(side_file)
        # a burst: the first and last bit flipped, the ones between at random
        for k in range(length):
            if k in (0, length - 1) or rng.random() < 0.5:
                bit = first + k
                bad[start + bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ContainerError, match="checksum mismatch in stream"):
            gscodec.decode(bytes(bad), refine=False)


def test_random_mutations_raise_only_container_errors():
    report = fuzz.run_gsz(300, seed=7, time_limit=5.0)
    assert report["cases"] == 300
    assert report["failures"] == 0, report["failure_cases"]
    assert report["outcomes"].get("ok", 0) < 300  # the mutations do reach the errors
    assert len(report["outcomes"]) > 20


def test_fix_checksums_reaches_the_parsers_behind_them():
    data = (CONFORMANCE / "sh0-n1.gsz").read_bytes()
    bad = bytearray(data)
    bad[-1] ^= 0xFF  # the last byte of the last payload
    with pytest.raises(ContainerError, match="checksum"):
        gscodec.decode(bytes(bad), refine=False)
    with pytest.raises(ContainerError) as info:
        gscodec.decode(fuzz.fix_checksums(bytes(bad)), refine=False)
    assert "checksum" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# PLY


@pytest.fixture(scope="module")
def plys() -> list[bytes]:
    return fuzz.ply_corpus()


def _read(tmp_path: Path, data: bytes):
    path = tmp_path / "f.ply"
    path.write_bytes(data)
    return read_ply_arrays(path)


def test_ply_truncation_at_every_offset(tmp_path, plys):
    binary, ascii_ply = plys[0], plys[2]
    body = binary.index(b"end_header\n") + len(b"end_header\n")
    for cut in range(len(binary)):
        with pytest.raises(PlyError) as info:
            _read(tmp_path, binary[:cut])
        if cut >= body:
            assert "truncated PLY" in str(info.value), cut
    n = _read(tmp_path, ascii_ply)["means"].shape[0]
    body = ascii_ply.index(b"end_header\n") + len(b"end_header\n")
    for cut in list(range(0, body, 7)) + list(range(body, len(ascii_ply))):
        try:  # an ASCII file cut inside its last number still parses, as the shorter number
            assert _read(tmp_path, ascii_ply[:cut])["means"].shape[0] == n
        except PlyError:
            pass


def test_ply_header_mutations_give_only_ply_errors(tmp_path, plys):
    data = plys[1]  # big-endian, SH 0
    head_end = data.index(b"end_header")
    lines = data[:head_end].split(b"\n")
    tokens = [b"", b"0", b"-1", b"4294967296", b"list", b"uchar", b"double", b"vertex", b"face",
              b"ascii", b"\xff", b"end_header", b"property float x"]
    cases = 0
    for i in range(len(lines)):
        variants = [lines[:i] + lines[i + 1 :], lines[: i + 1] + lines[i:]]
        for j in range(len(lines[i].split(b" "))):
            for tok in tokens:
                words = lines[i].split(b" ")
                words[j] = tok
                variants.append(lines[:i] + [b" ".join(words)] + lines[i + 1 :])
        for v in variants:
            cases += 1
            try:
                _read(tmp_path, b"\n".join(v) + data[head_end:])
            except PlyError:
                pass
    assert cases > 300


def test_ply_bit_flips_give_only_ply_errors(tmp_path, plys):
    rng = random.Random(3)
    for k, data in enumerate(plys):
        head_end = data.index(b"end_header") + 11
        # every header byte of the binary files, a sample of the others' (plyfile is slower)
        header = list(range(head_end)) if k in (0, 1) else rng.sample(range(head_end), 40)
        positions = header + [rng.randrange(len(data)) for _ in range(20)]
        for pos in positions:
            if pos >= len(data):
                continue
            bad = bytearray(data)
            bad[pos] ^= 1 << rng.randrange(8)
            try:
                _read(tmp_path, bytes(bad))
            except PlyError:
                pass


def test_random_ply_mutations_raise_only_ply_errors(tmp_path):
    report = fuzz.run_ply(300, seed=7, time_limit=5.0, folder=tmp_path)
    assert report["failures"] == 0, report["failure_cases"]
    assert not report["warnings"], report["warnings"]


@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii"])
def test_ply_with_two_elements_of_one_name_is_refused_in_every_format(tmp_path, fmt):
    head = (f"ply\nformat {fmt} 1.0\nelement vertex 1\nproperty float x\n"
            "element vertex 1\nproperty float y\nend_header\n")
    body = b"\x00" * 8 if fmt != "ascii" else b"1\n2\n"
    with pytest.raises(PlyError, match="element 'vertex' appears twice"):
        _read(tmp_path, head.encode() + body)
