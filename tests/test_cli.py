"""The command line: happy paths, default names, every error path, atomic outputs."""

from __future__ import annotations

import hashlib
import json

import pytest
from cli_helpers import PROGRESS_LINE
from cli_helpers import one_error_line as _one_error_line
from click.testing import CliRunner

import gscodec
from gscodec.cli.main import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_encode_decode_report_with_default_names(ply_path, scene_sh3):
    before = _digest(ply_path)
    r = run("encode", str(ply_path), "--quality", "6")
    assert r.exit_code == 0, r.output
    gsz = ply_path.with_suffix(".gsz")
    assert gsz.exists() and "Gaussians" in r.output
    assert gscodec.inspect(gsz)["streams"][-1]["stream"] == "SIDE"  # on by default in the CLI
    r = run("decode", str(gsz), "--steps", "2")
    assert r.exit_code == 0, r.output
    assert "refined with side information" in r.output and "(2 steps on" in r.output
    out = ply_path.with_name("scene.decoded.ply")
    assert gscodec.read_ply(out).n == scene_sh3.n
    r = run("bitrate", "report", str(gsz))
    assert r.exit_code == 0 and "POSN" in r.output and "total" in r.output
    r = run("bitrate", "report", str(gsz), "--json")
    info = json.loads(r.output)
    assert info["gaussians"] == scene_sh3.n and info["file_bytes"] == gsz.stat().st_size
    assert _digest(ply_path) == before  # the input is never modified


def test_importance_switch(ply_path, tmp_path):
    # the fixture scene has 6000 Gaussians: classes by default at quality 3, not with the switch
    kinds = {}
    for flag in ("--importance", "--no-importance"):
        out = tmp_path / f"{flag}.gsz"
        r = run("encode", str(ply_path), "-o", str(out), "-q", "3", "--views", "0", flag)
        assert r.exit_code == 0, r.output
        kinds[flag] = [s["stream"] for s in gscodec.inspect(out)["streams"]]
    assert "IMPC" in kinds["--importance"] and "IMPC" not in kinds["--no-importance"]
    r = run("bitrate", "report", str(tmp_path / "--importance.gsz"))
    assert r.exit_code == 0 and "IMPC" in r.output and "importance" in r.output
    rows = {row["stream"]: row for row in gscodec.inspect(tmp_path / "--importance.gsz")["streams"]}
    # per-class streams hold one table blob per class
    assert rows["IMPC"]["table_bytes"] > 0 and rows["ROTN"]["table_bytes"] > 4 * 4


def test_prior_gains_switch(tmp_path):
    from gscodec.synthetic import make_scene

    ply = tmp_path / "small.ply"
    gscodec.write_ply(ply, make_scene(400, sh_degree=0, seed=6))
    priors = {}
    for flag in ("--prior-gains", "--no-prior-gains"):
        out = tmp_path / f"{flag}.gsz"
        r = run("encode", str(ply), "-o", str(out), "-q", "1", "--views", "2", flag)
        assert r.exit_code == 0, r.output
        priors[flag] = gscodec.inspect(out)["side_prior"]
    assert priors["--no-prior-gains"] is None
    assert len(priors["--prior-gains"]["gain"]) == 2
    r = run("bitrate", "report", str(tmp_path / "--prior-gains.gsz"))
    assert r.exit_code == 0 and "learned-prior gains" in r.output
    r = run("bitrate", "report", str(tmp_path / "--no-prior-gains.gsz"))
    assert r.exit_code == 0 and "learned-prior gains" not in r.output


def test_quiet_prints_nothing(ply_path, tmp_path):
    r = run("encode", str(ply_path), "-o", str(tmp_path / "x.gsz"), "--quiet", "--views", "0")
    assert r.exit_code == 0 and r.output == ""
    r = run("decode", str(tmp_path / "x.gsz"), "-o", str(tmp_path / "x.ply"), "--quiet",
            "--no-refine", "--device", "cpu")
    assert r.exit_code == 0 and r.output == ""


def test_existing_output_is_refused_without_force(ply_path):
    gsz = ply_path.with_suffix(".gsz")
    gsz.write_bytes(b"keep me")
    r = run("encode", str(ply_path))
    assert r.exit_code == 1
    assert "exists" in r.output and "--force" in r.output
    assert gsz.read_bytes() == b"keep me"
    r = run("encode", str(ply_path), "--force")
    assert r.exit_code == 0 and gsz.read_bytes()[:4] == b"\x89GSZ"


def test_output_equal_to_input_is_refused(ply_path):
    r = run("encode", str(ply_path), "-o", str(ply_path), "--force")
    assert r.exit_code == 1 and "overwrite the input" in r.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "not a PLY file"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\n"
         b"end_header\n", "truncated PLY"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n",
         "missing property 'y'"),
    ],
)
def test_bad_ply_inputs_exit_1_with_one_line(tmp_path, content, message):
    src = tmp_path / "in.ply"
    if content is not None:
        src.write_bytes(content)
    r = run("encode", str(src))
    assert r.exit_code == 1
    assert message in _one_error_line(r)
    assert not (tmp_path / "in.gsz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["in.ply"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"", "empty"),
        (lambda d: b"hello, not a gsz file at all, just text" * 3, "bad magic"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 0x10]), "checksum"),
    ],
)
def test_bad_gsz_inputs_exit_1_with_one_line(tmp_path, scene_sh3, mutate, message):
    src = tmp_path / "in.gsz"
    src.write_bytes(mutate(gscodec.encode(scene_sh3, quality=3)))
    for args in (["decode", str(src)], ["bitrate", "report", str(src)]):
        r = run(*args)
        assert r.exit_code == 1
        line = _one_error_line(r)
        assert message in line and str(src) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.gsz"]


@pytest.mark.parametrize(
    "args",
    [
        ["encode"],
        ["encode", "a.ply", "--quality", "0"],
        ["encode", "a.ply", "--quality", "x"],
        ["decode", "a.gsz", "--device", "tpu"],
        ["frobnicate"],
        ["bitrate"],
        ["encode", "a.ply", "--bogus"],
    ],
)
def test_usage_errors_exit_2(args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2


def test_missing_output_folder_and_folder_input(tmp_path, ply_path):
    r = run("encode", str(ply_path), "-o", str(tmp_path / "no" / "such" / "x.gsz"))
    assert r.exit_code == 1 and "does not exist" in _one_error_line(r)
    r = run("encode", str(tmp_path))
    assert r.exit_code == 1 and "folder" in _one_error_line(r)


def test_failure_while_writing_leaves_no_partial_file(tmp_path, ply_path, monkeypatch):
    import gscodec.formats.ply as ply_module

    gsz = tmp_path / "x.gsz"
    assert run("encode", str(ply_path), "-o", str(gsz), "--quiet", "--views", "0").exit_code == 0

    def broken(f, arrays):
        f.write(b"partial rows")
        raise OSError(28, "No space left on device")

    # (the rows writer: a whole-scene PLY and one written part by part both go through it)
    monkeypatch.setattr(ply_module, "write_ply_rows", broken)
    out = tmp_path / "out.ply"
    r = run("decode", str(gsz), "-o", str(out))
    assert r.exit_code == 1 and "No space left on device" in _one_error_line(r)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["scene.ply", "x.gsz"])


def test_unexpected_exceptions_become_one_line(tmp_path, ply_path, monkeypatch):
    import gscodec.api

    def boom(*a, **k):
        raise RuntimeError("simulated bug\nwith a second line")

    monkeypatch.setattr(gscodec.api, "encode_with_order", boom)
    r = run("encode", str(ply_path), "-o", str(tmp_path / "y.gsz"))
    assert r.exit_code == 1
    assert "RuntimeError: simulated bug" in _one_error_line(r)
    assert not (tmp_path / "y.gsz").exists()


def test_decode_refuses_existing_output_and_report_needs_a_file(tmp_path, scene_sh3):
    src = tmp_path / "a.gsz"
    src.write_bytes(gscodec.encode(scene_sh3, quality=2))
    out = tmp_path / "a.decoded.ply"
    out.write_bytes(b"old")
    r = run("decode", str(src))
    assert r.exit_code == 1 and "exists" in _one_error_line(r)
    assert out.read_bytes() == b"old"
    r = run("bitrate", "report", str(tmp_path / "missing.gsz"))
    assert r.exit_code == 1 and "no such file" in _one_error_line(r)


def test_empty_and_single_gaussian_scenes_round_trip_through_the_cli(tmp_path):
    from gscodec.synthetic import make_scene

    for n in (0, 1):
        src = tmp_path / f"s{n}.ply"
        gscodec.write_ply(src, make_scene(n, sh_degree=3, seed=n))
        assert run("encode", str(src), "--quiet").exit_code == 0
        assert run("decode", str(tmp_path / f"s{n}.gsz"), "--quiet", "--steps", "2").exit_code == 0
        assert gscodec.read_ply(tmp_path / f"s{n}.decoded.ply").n == n


@pytest.fixture()
def one_torch_thread():
    # tiny renders: one thread is faster, and much faster when other processes share the cores
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.usefixtures("one_torch_thread")
def test_gsz_inputs_of_compare_and_encode_say_how_they_are_decoded(tmp_path, monkeypatch):
    import torch

    import gscodec.api
    import gscodec.colourfit
    from gscodec.synthetic import make_scene

    # the CPU's default refinement is the colour fit (on the CPU even where CUDA is present,
    # since refinement with gsplat is not bit-reproducible): each call is recorded (its views)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gscodec.refinement, "CPU_ADAM_GAUSSIANS", 0)  # (this scene counts as large)
    steps_run: list[int] = []
    original = gscodec.colourfit.colour_changes

    def recording(g, cameras, residuals, **kwargs):
        steps_run.append(len(cameras))
        return original(g, cameras, residuals, **kwargs)

    monkeypatch.setattr(gscodec.colourfit, "colour_changes", recording)
    g = make_scene(300, sh_degree=0, seed=5)
    ply, gsz, bare = tmp_path / "s.ply", tmp_path / "s.gsz", tmp_path / "bare.gsz"
    gscodec.write_ply(ply, g)
    gsz.write_bytes(gscodec.encode(g, quality=4, views=3, sideinfo_size=32))
    bare.write_bytes(gscodec.encode(g, quality=4))  # no side information
    device = "cpu"
    runner = CliRunner()

    def invoke(*args: str):
        r = runner.invoke(main, list(args), catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r, r.stderr.splitlines()

    def compare(*args: str):
        r, err = invoke("compare", *args, "--views", "2", "--size", "32", "--json")
        return json.loads(r.stdout)["psnr"], err

    refined, err = compare(str(ply), str(gsz))
    assert len(err) == 1 and str(gsz) in err[0], err
    assert f"with refinement: the colour fit at 3 views on {device} (side information)" \
        in err[0], err
    assert steps_run == [3]
    plain, err = compare(str(ply), str(gsz), "--no-refine")
    assert len(err) == 1 and "without refinement (--no-refine)" in err[0], err
    assert steps_run == [3] and plain != refined
    assert compare(str(ply), str(gsz), "--refine")[0] == refined and steps_run == [3, 3]
    assert compare(str(ply), str(gsz), "--quiet")[1] == [] and steps_run == [3, 3, 3]
    _, err = compare(str(ply), str(bare))
    assert len(err) == 1 and "without refinement (it has no side information)" in err[0], err
    assert compare(str(ply), str(ply))[1] == []  # no note for other inputs
    assert steps_run == [3, 3, 3]
    # encode: the same note; the scene encoded is the decoded one, refined unless --no-refine
    for flag, steps in (("--no-refine", None), ("--refine", 3)):
        out = tmp_path / f"re{flag}.gsz"
        r, err = invoke("encode", str(gsz), "-o", str(out), "--views", "0", flag)
        assert len(err) == 1 and str(gsz) in err[0], err
        assert ("without refinement (--no-refine)" if steps is None
                else f"with refinement: the colour fit at 3 views on {device}") in err[0], err
        assert str(out) in r.stdout
        source = gscodec.decode(gsz, refine=steps is not None, device=device)
        assert out.read_bytes() == gscodec.encode(source, quality=7)
    assert steps_run == [3, 3, 3, 3, 3]  # (the encode with --refine, then its check)
    r, err = invoke("encode", str(gsz), "-o", str(tmp_path / "q.gsz"), "--views", "0", "--quiet")
    assert r.output == "" and steps_run[-1] == 3 and len(steps_run) == 6
    r, err = invoke("encode", str(ply), "-o", str(tmp_path / "p.gsz"), "--views", "0")
    assert err == []


@pytest.mark.usefixtures("one_torch_thread")
def test_compare_seed_picks_the_evaluation_views(tmp_path, monkeypatch):
    import gscodec.cameras
    from gscodec.synthetic import make_scene

    g = make_scene(300, sh_degree=0, seed=5)
    ref, other = tmp_path / "ref.ply", tmp_path / "other.ply"
    gscodec.write_ply(ref, g)
    gscodec.write_ply(other, gscodec.decode(gscodec.encode(g, quality=1)))
    seeds: list[int] = []
    original = gscodec.cameras.evaluation_views

    def recording(means, count, size=256, seed=0):
        seeds.append(seed)
        return original(means, count, size, seed=seed)

    monkeypatch.setattr(gscodec.cameras, "evaluation_views", recording)

    def compare(*args: str) -> dict:
        r = run("compare", str(ref), str(other), "--views", "2", "--size", "32", "--json",
                "--backend", "cpu", *args)
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    default, zero, five = compare(), compare("--seed", "0"), compare("--seed", "5")
    assert seeds == [0, 0, 5]
    assert default == zero and zero["seed"] == 0 and five["seed"] == 5
    assert [v["psnr"] for v in five["per_view"]] != [v["psnr"] for v in zero["per_view"]]
    assert compare("--seed", "5") == five
    for bad in ("x", "-1"):
        assert run("compare", str(ref), str(other), "--seed", bad).exit_code == 2


def test_decode_summary_names_the_refinement_method(ply_path):
    r = run("encode", str(ply_path), "--quality", "6", "--views", "2")
    assert r.exit_code == 0, r.output
    gsz = ply_path.with_suffix(".gsz")
    r = run("decode", str(gsz), "--method", "colour", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "refined with side information (colour fit at 2 views)" in r.output
    r = run("decode", str(gsz), "--method", "adam", "--steps", "1", "--device", "cpu", "--force")
    assert r.exit_code == 0 and "(1 steps on cpu)" in r.output, r.output
    r = run("decode", str(gsz), "--method", "sideways")
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_encode_prints_a_limit_warning_as_one_plain_line(tmp_path, monkeypatch):
    from gscodec import budget
    from gscodec.synthetic import make_scene

    monkeypatch.setattr(budget, "GAUSSIAN_BYTES", 1 << 30)  # every Gaussian "costs" 1 GB
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(20, sh_degree=0, seed=6))
    r = CliRunner().invoke(main, ["encode", str(ply), "--views", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if "default limits" in ln]
    assert len(lines) == 1 and lines[0].startswith(
        "warning: a decoder with the default limits refuses this file")
    assert "LimitWarning" not in r.stderr and "api.py" not in r.stderr
    assert ply.with_suffix(".gsz").is_file()


def test_progress_in_logs_is_plain_lines_at_most_one_a_second(tmp_path, monkeypatch):
    from gscodec.cli import main as cli_main
    from gscodec.synthetic import make_scene

    now = [0.0]
    lines: list[str] = []
    update = cli_main.plain_progress("encode", clock=lambda: now[0])
    monkeypatch.setattr(cli_main.click, "echo", lambda text, err=False: lines.append(text))
    for step in range(30):  # 30 updates over 9 seconds
        now[0] += 0.3
        update(step, 30, "coding" if step < 15 else "rendering")
    assert 7 <= len(lines) <= 9
    assert lines[0] == "gscodec encode:  10% coding" and lines[-1].endswith("% rendering")
    monkeypatch.undo()

    # through the command: a clock that runs 2 s per reading gives lines for the stages
    ticks = iter(range(0, 1_000_000, 2))
    monkeypatch.setattr(cli_main, "_clock", lambda: float(next(ticks)))
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(300, sh_degree=0, seed=1))
    r = CliRunner().invoke(main, ["encode", str(ply), "--views", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith("gscodec encode:")]
    assert progress and all(PROGRESS_LINE.match(ln) for ln in progress)
    quiet = CliRunner().invoke(main, ["encode", str(ply), "--views", "1", "--force", "--quiet"],
                               catch_exceptions=False)
    assert quiet.exit_code == 0 and "gscodec encode:" not in quiet.stderr
    # with JSON errors the progress lines are JSON too
    r = CliRunner().invoke(main, ["--json-errors", "encode", str(ply), "--views", "1", "--force"],
                           catch_exceptions=False)
    objs = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{")]
    assert objs and all(set(o["progress"]) == {"command", "percent", "stage"} for o in objs)
