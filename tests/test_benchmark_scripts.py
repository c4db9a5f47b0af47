"""The scripts under benchmarks/ import, parse their options, and the attribute sweep (which
the presets' provenance names) runs end to end on a tiny scene.

A script is not imported by the package, so without this a renamed helper breaks a benchmark
silently until someone runs it (as ``rd.render_set`` once broke ``attribute_sweep.py``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import gscodec
from gscodec.synthetic import make_scene

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py")
                 if p.stem not in ("common", "evaluation"))


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import common, evaluation, rd by name
    spec = importlib.util.spec_from_file_location(f"gscodec_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_script_imports_and_parses_help(name, capsys):
    module = _load(name)
    with pytest.raises(SystemExit) as e:
        module.main(["--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_attribute_sweep_runs_and_coarser_steps_cost_fewer_bytes(tmp_path, monkeypatch):
    sweep = _load("attribute_sweep")
    monkeypatch.setattr(sweep, "GRID", {"position_bits": [9.0, 13.0], "dc_step": [1.0, 8.0]})
    ply = tmp_path / "tiny.ply"
    gscodec.write_ply(ply, make_scene(400, sh_degree=0, seed=2))
    report = sweep.main([str(ply), "--views", "2", "--size", "32", "--out", str(tmp_path),
                         "--name", "sweep-test"])
    rows = report["scenes"][0]["rows"]
    assert [(r["param"], r["value"]) for r in rows] == [
        ("position_bits", 9.0), ("position_bits", 13.0), ("dc_step", 1.0), ("dc_step", 8.0)]
    for coarse, fine in ((rows[0], rows[1]), (rows[3], rows[2])):
        assert coarse["stream_bytes"] < fine["stream_bytes"]
        assert coarse["mse"] > fine["mse"]
    assert report["seed"] == 1 and (tmp_path / "sweep-test.md").is_file()
    # the allocation's proposal never predicts a larger error than the preset's own steps, and
    # spends no more bytes than the finest grid choice would
    for a in sweep.allocation(report["scenes"][0], [3, 5]):
        assert a["proposed_db"] >= a["current_db"] - 1e-9
        assert set(a["proposed"]) == {"position_bits", "dc_step"}
        assert a["proposed_bytes"] <= rows[1]["stream_bytes"] + rows[2]["stream_bytes"]


def test_attribute_sweep_refuses_a_test_scene(tmp_path):
    sweep = _load("attribute_sweep")
    ply = tmp_path / "trumpet.ply"
    gscodec.write_ply(ply, make_scene(10, sh_degree=0, seed=2))
    with pytest.raises(SystemExit, match="test split"):
        sweep.main([str(ply), "--out", str(tmp_path)])


def test_classes_benchmark_compares_variants_with_the_uniform_curve(tmp_path):
    bench = _load("classes")
    ply = tmp_path / "tiny.ply"
    gscodec.write_ply(ply, make_scene(5000, sh_degree=0, seed=4))
    report = bench.main([str(ply), "--views", "2", "--sizes", "48", "--qualities", "3",
                         "--uniform", "2-4",
                         "--variants", "0.25/16/0.6:0.85:0.95,4/16/0.6:0.85:0.95",
                         "--out", str(tmp_path), "--name", "classes-test"])
    scene = report["scenes"][0]
    assert [u["quality"] for u in scene["uniform"]] == [2, 3, 4]
    gentle, coarse = scene["variants"]
    # aiming at four times the uniform steps' error must cost fidelity and save bytes
    assert coarse["psnr"] < gentle["psnr"] and coarse["bytes"] < gentle["bytes"]
    # the default variant is what the encoder does by default
    default = gscodec.encode(gscodec.read_ply(ply), quality=3, views=0)
    assert gentle["bytes"] == len(default)
    assert gentle["psnr_change"] == pytest.approx(gentle["psnr"] - scene["uniform"][1]["psnr"])


def test_presets_benchmark_measures_candidates_against_todays_table(tmp_path):
    bench = _load("presets")
    today = [(40.0, 1000.0), (45.0, 2000.0), (50.0, 4000.0)]
    assert bench.bd_rate(today, [(p, 0.9 * b) for p, b in today]) == pytest.approx(-0.1)
    assert bench.bd_rate(today, [(p + 20, b) for p, b in today]) is None
    ply = tmp_path / "tiny.ply"
    gscodec.write_ply(ply, make_scene(600, sh_degree=0, seed=3))
    spec = tmp_path / "c.json"
    spec.write_text(json.dumps({"same": {}, "coarse": {"3": {"position_bits": 9.0}}}))
    report = bench.main([str(ply), "--candidates", str(spec), "--qualities", "2,3",
                         "--views", "2", "--sizes", "32", "--out", str(tmp_path)])
    scene = report["scenes"][0]
    assert scene["bd_rate"]["same"] == pytest.approx(0.0)
    today_q3, coarse_q3 = scene["curves"]["today"][1], scene["curves"]["coarse"][1]
    assert coarse_q3["params"]["position_bits"] == 9.0
    assert coarse_q3["bytes"] < today_q3["bytes"] and coarse_q3["psnr"] < today_q3["psnr"]
    assert scene["curves"]["coarse"][0]["bytes"] == scene["curves"]["today"][0]["bytes"]
    spec.write_text(json.dumps({"bad": {"3": {"no_such_step": 1}}}))
    with pytest.raises(SystemExit, match="not a preset field"):
        bench.main([str(ply), "--candidates", str(spec), "--qualities", "3"])


def test_presets_benchmark_candidates_may_set_module_constants(tmp_path):
    from gscodec.codec import attributes

    bench = _load("presets")
    ply = tmp_path / "sh.ply"
    g = make_scene(1200, sh_degree=1, seed=3)
    rng = np.random.default_rng(0)
    g.sh[:, 1:] = (rng.normal(scale=0.3, size=(g.n, 1)) * rng.normal(size=(1, 9))).reshape(
        g.n, 3, 3).astype(np.float32)  # rank 1: the SH transform wins
    gscodec.write_ply(ply, g)
    spec = tmp_path / "c.json"
    spec.write_text(json.dumps({"direct": {"constants": {
        "gscodec.codec.attributes:TRANSFORM_MIN_ROWS": 10**12}}}))
    report = bench.main([str(ply), "--candidates", str(spec), "--qualities", "7",
                         "--views", "2", "--sizes", "32", "--out", str(tmp_path)])
    curves = report["scenes"][0]["curves"]
    assert curves["direct"][0]["bytes"] > curves["today"][0]["bytes"]
    assert attributes.TRANSFORM_MIN_ROWS == 1024  # restored after the candidate
    spec.write_text(json.dumps({"bad": {"constants": {"gscodec.codec.attributes:NOPE": 1}}}))
    with pytest.raises(SystemExit, match="has no NOPE"):
        bench.main([str(ply), "--candidates", str(spec), "--qualities", "7"])


def test_sh_coding_benchmark_ranks_representations_on_one_scene(tmp_path):
    bench = _load("sh_coding")
    ply = tmp_path / "sh.ply"
    g = make_scene(1500, sh_degree=2, seed=4)
    rng = np.random.default_rng(1)
    g.sh[:, 1:] = (rng.normal(scale=0.2, size=(g.n, 2)) @ rng.normal(size=(2, 24))).reshape(
        g.n, 8, 3).astype(np.float32)
    gscodec.write_ply(ply, g)
    report = bench.main([str(ply), "--variants", "banded,klt,vq,trunc", "--scales", "0.05,0.2",
                         "--vq-sizes", "16", "--trunc", "0.5", "--views", "2", "--sizes", "32",
                         "--out", str(tmp_path), "--name", "shc"])
    scene = report["scenes"][0]
    for name in ("banded", "klt"):  # coarser steps: fewer bytes
        c = scene["curves"][name]
        assert c[0]["bytes"] > c[1]["bytes"]
    # zeroing half the Gaussians' rest leaves fewer bytes at the same step
    assert scene["curves"]["trunc0.5"][0]["bytes"] < scene["curves"]["banded"][0]["bytes"]
    assert (tmp_path / "shc.md").exists() and "klt" in (tmp_path / "shc.md").read_text()


def test_benchmarks_with_training_cameras_encode_with_some_and_evaluate_on_the_others(
        tmp_path, monkeypatch):
    """--cameras: every 8th camera is held out and evaluated on; the encoder (side
    information, importance) gets the others and never a held-out one."""
    from gscodec.cameras import evaluation_views, same_view

    ev = _load("evaluation")
    refine = _load("refine")
    g = make_scene(600, sh_degree=0, seed=3)
    ply = tmp_path / "tiny.ply"
    gscodec.write_ply(ply, g)
    cams = evaluation_views(g.means, 17, 48, seed=9)
    doc = [{"id": i, "img_name": f"i{i}", "width": c.width, "height": c.height,
            "position": c.position.tolist(), "rotation": c.viewmat[:3, :3].T.tolist(),
            "fx": float(c.K[0, 0]), "fy": float(c.K[1, 1])} for i, c in enumerate(cams)]
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps(doc))
    train, held = ev.camera_split(ev.read_cameras(path))
    assert len(held) == 3 and len(train) == 14  # cameras 0, 8, 16
    assert not any(same_view(a, b) for a in train for b in held)
    given = []
    real = gscodec.encode

    def spy(*a, **kw):
        given.append(kw.get("cameras"))
        return real(*a, **kw)

    monkeypatch.setattr(gscodec, "encode", spy)
    seen = []
    monkeypatch.setattr(refine.ev, "reference", lambda gg, args, backend: seen.append(
        ev.cameras_for(gg, args, 32)) or ev.reference(gg, args, backend))
    refine.main([str(ply), "--split", "tuning", "--cameras", str(path), "--qualities", "5",
                 "--configs", "colour", "--side-views", "2", "--views", "2", "--sizes", "32",
                 "--out", str(tmp_path)])
    assert given and all(c is not None and len(c) == 14 for c in given)
    assert all(same_view(a, b) for a, b in zip(given[0], train, strict=True))
    evaluated = seen[0]
    assert len(evaluated) == 2
    assert not any(same_view(e, t) for e in evaluated for t in train)
    assert all(any(same_view(e, h) for h in held) for e in evaluated)


def test_a_missing_matplotlib_loses_the_plot_not_the_figures(tmp_path, monkeypatch, capsys):
    """matplotlib is the ``bench`` extra, not a dependency: without it rd.py and refine.py
    still write their results (a clean machine runs this suite without it)."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # (import matplotlib fails)
    rd, refine = _load("rd"), _load("refine")
    scene = {"scene": "s", "gaussians": 10, "sh_degree": 0, "gscodec": [], "peers": [],
             "base_curve": [], "refined": {}}
    rd.plot(scene, tmp_path / "rd.png")
    refine.plot(scene, tmp_path / "refine.png")
    assert not list(tmp_path.iterdir())
    assert capsys.readouterr().err.count("pip install matplotlib") == 2
