"""gscodec info: a file's contents from its header and metadata, with no payload read."""

from __future__ import annotations

import io
import json

import pytest
from cli_helpers import one_error_line
from click.testing import CliRunner

import gscodec
from gscodec.cli.main import main
from gscodec.formats.errors import ContainerError
from gscodec.formats.gsz import ENTRY_SIZE, HEADER_SIZE, read_container, read_header
from gscodec.info import info
from gscodec.synthetic import make_scene


@pytest.fixture(scope="module")
def gsz(tmp_path_factory):
    path = tmp_path_factory.mktemp("info") / "s.gsz"
    path.write_bytes(gscodec.encode(make_scene(5000, sh_degree=1, seed=1), 3, views=2,
                                    sideinfo_size=32))
    return path


def test_info_agrees_with_inspect(gsz):
    got, full = info(gsz), gscodec.inspect(gsz)
    for key in ("file_bytes", "gaussians", "sh_degree", "quality", "encoder", "version",
                "decode_memory_bytes", "bits_per_gaussian"):
        assert got[key] == full[key], key
    assert [(r["stream"], r["bytes"]) for r in got["streams"]] == \
        [(r["stream"], r["bytes"]) for r in full["streams"]]
    side = got["side_information"]
    assert side["views"] == full["side_views"] == 2 and side["sizes"] == [[32, 32]] * 2
    assert side["prior"] == full["side_prior"] and got["importance_classes"]
    bare = gsz.with_name("bare.gsz")
    bare.write_bytes(gscodec.encode(make_scene(50, sh_degree=0, seed=2), 7))
    assert info(bare)["side_information"] is None and not info(bare)["importance_classes"]


def test_info_reads_no_payload_but_the_metadata(gsz):
    data = bytearray(gsz.read_bytes())
    container = read_container(bytes(data))
    # every byte of every payload but the metadata's overwritten: the decoder refuses the
    # file, info (which never reads those bytes) answers as before
    for stream, offset in zip(container.streams[1:], container.offsets[1:], strict=True):
        data[offset: offset + len(stream.payload)] = b"\xa5" * len(stream.payload)
    broken = gsz.with_name("broken.gsz")
    broken.write_bytes(bytes(data))
    with pytest.raises(ContainerError, match="checksum mismatch"):
        gscodec.decode(broken, refine=False)
    assert info(broken) == {**info(gsz)}

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, size=-1):
            out = super().read(size)
            Counting.read_bytes += len(out)
            return out

    read_header(Counting(bytes(data)))
    meta = len(container.streams[0].payload)
    assert Counting.read_bytes == HEADER_SIZE + ENTRY_SIZE * len(container.streams) + meta


def test_info_refuses_a_bad_header_or_metadata(tmp_path, gsz):
    data = bytearray(gsz.read_bytes())
    container = read_container(bytes(data))
    cases = {"magic": (0, b"X"), "meta": (container.offsets[0] + 3, b"\x00"),
             "table": (HEADER_SIZE + 9, b"\x07")}
    for name, (at, byte) in cases.items():
        bad = bytearray(data)
        bad[at: at + 1] = byte
        path = tmp_path / f"{name}.gsz"
        path.write_bytes(bytes(bad))
        with pytest.raises(ContainerError):
            info(path)
    (tmp_path / "short.gsz").write_bytes(bytes(data[:40]))
    with pytest.raises(ContainerError, match="truncated"):
        info(tmp_path / "short.gsz")


def test_info_command(gsz, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["info", str(gsz)], catch_exceptions=False)
    assert r.exit_code == 0
    assert "5,000 Gaussians, SH degree 1, quality 3" in r.output
    assert "side information: 2 views (32x32)" in r.output and "SHRS" in r.output
    r = runner.invoke(main, ["info", str(gsz), "--json"], catch_exceptions=False)
    assert r.exit_code == 0 and json.loads(r.output) == info(gsz)
    bad = tmp_path / "bad.gsz"
    bad.write_bytes(b"not a gsz file at all, just some text")
    r = runner.invoke(main, ["info", str(bad)], catch_exceptions=False)
    assert r.exit_code == 1 and "bad magic" in one_error_line(r)
    r = runner.invoke(main, ["info", str(tmp_path / "missing.gsz")], catch_exceptions=False)
    assert r.exit_code == 1 and "no such file" in one_error_line(r)
