"""Command-line hygiene: machine-readable errors (--json-errors), decoder limits from the command
line, no partial outputs, inputs never modified, concurrent writers of one output."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import gscodec
from gscodec.cli.main import main
from gscodec.formats.atomic import atomic_write
from gscodec.formats.errors import OutputExistsError
from gscodec.synthetic import make_scene

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "formats" / "conformance"
INDEX = json.loads((CONFORMANCE / "INDEX.json").read_text(encoding="utf-8"))["files"]
INVALID = [e for e in INDEX if not e["valid"]]


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json_error(r) -> dict:
    lines = [line for line in r.stderr.splitlines()
             if line.strip() and not line.startswith('{"progress"')]
    assert len(lines) == 1, r.stderr
    error = json.loads(lines[0])["error"]
    assert set(error) == {"type", "message", "exit_code"}
    assert error["exit_code"] == r.exit_code
    assert "Traceback" not in r.output
    return error


@pytest.mark.parametrize("entry", INVALID, ids=[e["file"] for e in INVALID])
def test_invalid_conformance_files_fail_cleanly_through_the_cli(tmp_path, entry):
    src = tmp_path / "in.gsz"
    src.write_bytes((CONFORMANCE / entry["file"]).read_bytes())
    before = _digest(src)
    # a defect in the side information (6.8) shows only to a decoder that reads it: not with
    # --no-refine, which skips the stream
    skip = ["--steps", "0"] if entry["rule"] == "6.8" else ["--no-refine"]
    if entry["rule"] == "6.8":
        r = run("decode", str(src), "--no-refine", "-o", str(tmp_path / "base.ply"))
        assert r.exit_code == 0, r.output
        (tmp_path / "base.ply").unlink()
    r = run("--json-errors", "decode", str(src), *skip)
    assert r.exit_code == 1
    error = _json_error(r)
    assert error["type"] == entry["error"]
    assert entry["message"] in error["message"] and str(src) in error["message"]
    r = run("decode", str(src), *skip)
    assert r.exit_code == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gscodec: error: ")
    assert entry["message"] in lines[0]
    # no output, no temporary file, the input untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.gsz"]
    assert _digest(src) == before


def test_valid_conformance_files_decode_without_touching_the_input(tmp_path):
    for entry in [e for e in INDEX if e["valid"]][:6]:
        src = tmp_path / "in.gsz"
        src.write_bytes((CONFORMANCE / entry["file"]).read_bytes())
        before = _digest(src)
        out = tmp_path / "out.ply"
        r = run("decode", str(src), "-o", str(out), "--no-refine", "--quiet", "--force")
        assert r.exit_code == 0, r.output
        assert gscodec.read_ply(out).n == json.loads(
            (CONFORMANCE / entry["expected"]).read_text())["n"]
        assert _digest(src) == before


def test_json_errors_from_the_environment_and_for_each_kind_of_failure(tmp_path, monkeypatch):
    env = {"GSCODEC_JSON_ERRORS": "1"}
    r = run("decode", str(tmp_path / "missing.gsz"), env=env)
    assert r.exit_code == 1 and "no such file" in _json_error(r)["message"]
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n")
    r = run("--json-errors", "encode", str(bad))
    error = _json_error(r)
    assert error["type"] == "PlyError" and "missing property 'y'" in error["message"]
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(20, sh_degree=0, seed=1))
    (tmp_path / "s.gsz").write_bytes(b"keep")
    r = run("--json-errors", "encode", str(ply))
    assert _json_error(r)["type"] == "OutputExistsError"
    assert (tmp_path / "s.gsz").read_bytes() == b"keep"

    from gscodec import api

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(api, "encode_with_order", boom)
    r = run("--json-errors", "encode", str(ply), "-o", str(tmp_path / "t.gsz"))
    error = _json_error(r)
    assert error["type"] == "InternalError" and "RuntimeError: simulated bug" in error["message"]
    assert not (tmp_path / "t.gsz").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--json-errors", "frobnicate"],
        ["--json-errors", "decode", "a.gsz", "--bogus"],
        ["--json-errors", "decode"],
        ["--json-errors", "decode", "a.gsz", "--max-gaussians", "-1"],
        ["decode", "a.gsz", "--json-errors"],  # the flag goes before the command
    ],
)
def test_usage_errors_are_json_too_and_exit_2(args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert _json_error(r)["type"] == "UsageError"


def test_help_and_version_still_exit_0_with_json_errors():
    for args in (["--json-errors", "--help"], ["--json-errors", "--version"],
                 ["--json-errors", "decode", "--help"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0 and r.stderr == "", r.output


def test_max_gaussians_from_the_command_line(tmp_path):
    src = tmp_path / "a.gsz"
    src.write_bytes(gscodec.encode(make_scene(50, sh_degree=0, seed=3), quality=3))
    r = run("--json-errors", "decode", str(src), "--max-gaussians", "49")
    error = _json_error(r)
    assert error["type"] == "LimitError" and "50 Gaussians (limit 49)" in error["message"]
    assert not (tmp_path / "a.decoded.ply").exists()
    r = run("decode", str(src), "--max-gaussians", "50")
    assert r.exit_code == 0 and gscodec.read_ply(tmp_path / "a.decoded.ply").n == 50


def test_failure_during_the_final_write_leaves_nothing(tmp_path, monkeypatch):
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(30, sh_degree=1, seed=2))
    gsz = tmp_path / "s.gsz"
    assert run("encode", str(ply), "--quiet", "--views", "0").exit_code == 0
    before = {p.name: _digest(p) for p in tmp_path.iterdir()}

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    for args in (["encode", str(ply), "-o", str(tmp_path / "x.gsz")],
                 ["decode", str(gsz), "-o", str(tmp_path / "x.ply")]):
        r = run("--json-errors", *args)
        error = _json_error(r)
        assert error["type"] == "OSError" and "No space left" in error["message"]
    assert {p.name: _digest(p) for p in tmp_path.iterdir()} == before


# ---------------------------------------------------------------------------------------------
# concurrent writers


def _race(path: Path, contents: list[bytes], force: bool) -> list[BaseException | None]:
    """Writers that each finish their temporary file, wait until all have, then publish."""
    barrier = threading.Barrier(len(contents))
    results: list[BaseException | None] = [None] * len(contents)

    def writer(i: int) -> None:
        def write(f):
            f.write(contents[i][: len(contents[i]) // 2])
            barrier.wait(timeout=10)
            f.write(contents[i][len(contents[i]) // 2 :])

        try:
            atomic_write(path, write, force=force)
        except BaseException as e:  # noqa: BLE001 - inspected by the test
            results[i] = e

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(contents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_writers_in_one_process(tmp_path):
    contents = [bytes([i]) * 100_000 for i in (1, 2, 3)]
    out = tmp_path / "out.bin"
    results = _race(out, contents, force=False)
    assert sum(r is None for r in results) == 1  # exactly one wins
    assert all(isinstance(r, OutputExistsError) for r in results if r is not None)
    winner = results.index(None)
    assert out.read_bytes() == contents[winner]
    out2 = tmp_path / "forced.bin"
    out2.write_bytes(b"old")
    assert _race(out2, contents, force=True) == [None] * 3
    assert out2.read_bytes() in contents  # one complete file, never a mix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forced.bin", "out.bin"]


def test_racing_cli_processes(tmp_path):
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(3000, sh_degree=1, seed=4))
    before = _digest(ply)
    expected = {q: gscodec.encode(gscodec.read_ply(ply), quality=q) for q in (1, 9)}
    cmd = [sys.executable, "-m", "gscodec.cli.main", "--json-errors", "encode", str(ply),
           "--quiet", "--views", "0"]
    runs = [(q, extra) for extra in ([], ["--force"]) for q in (1, 9)]
    procs = [subprocess.Popen(cmd + ["-q", str(q), "-o",
                                     str(tmp_path / ("forced.gsz" if extra else "plain.gsz"))]
                              + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for q, extra in runs]
    outs = [(p.wait(timeout=120), p.stderr.read().decode()) for p in procs]
    plain, forced = outs[:2], outs[2:]
    # without --force: one writer wins, the other is refused; the file is the winner's
    assert sorted(rc for rc, _ in plain) == [0, 1], plain
    loser = next(err for rc, err in plain if rc == 1)
    assert json.loads(loser)["error"]["type"] == "OutputExistsError"
    winner_q = 1 if plain[0][0] == 0 else 9
    assert (tmp_path / "plain.gsz").read_bytes() == expected[winner_q]
    # with --force: both succeed, and the file is one of the two complete outputs
    assert [rc for rc, _ in forced] == [0, 0], forced
    assert (tmp_path / "forced.gsz").read_bytes() in expected.values()
    assert gscodec.decode(tmp_path / "forced.gsz").n == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forced.gsz", "plain.gsz", "s.ply"]
    assert _digest(ply) == before
