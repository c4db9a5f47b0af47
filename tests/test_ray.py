"""Ray (``gscodec encode --ray ADDRESS``, ``jobs=RayCluster(...)``): on a local cluster that
these tests start, a fleet of scenes and the chunks of one scene encode to the bytes of the
serial encode; a missing Ray, an unreachable cluster and a failing node give clear errors."""

from __future__ import annotations

import functools
import operator
import subprocess
import sys
import types

import pytest
from click.testing import CliRunner

import gscodec
from gscodec.cli.main import main
from gscodec.formats.errors import GscodecError
from gscodec.parallel import RayCluster, pmap
from gscodec.synthetic import make_scene


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster (2 CPUs) for this module: its address, as another process would
    give it to ``--ray``."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 << 20, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _scenes(tmp_path, count=3):
    paths = []
    for i in range(count):
        p = tmp_path / f"s{i}.ply"
        gscodec.write_ply(p, make_scene(400 + 100 * i, sh_degree=i, seed=40 + i))
        paths.append(p)
    return paths


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gscodec.cli.main", *args],
                          capture_output=True, text=True, timeout=600)


def test_a_local_cluster_encodes_a_fleet_to_the_serial_files(cluster, tmp_path):
    paths = _scenes(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    r = _cli("encode", *map(str, paths), "--views", "0", "-o", str(out), "--ray", cluster)
    assert r.returncode == 0, r.stderr
    for p in paths:  # the bytes of each scene encoded alone, here
        assert (out / f"{p.stem}.gsz").read_bytes() == gscodec.encode(gscodec.read_ply(p), 7,
                                                                      views=0)
    # one summary per scene, in input order, naming the file written here
    lines = r.stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines] == list(map(str, paths))
    assert all(f"-> {out / p.stem}.gsz:" in line for p, line in zip(paths, lines, strict=True))


def test_the_chunks_of_one_scene_run_as_the_clusters_tasks(cluster, tmp_path):
    scene = make_scene(3000, sh_degree=1, seed=7)
    serial, _ = gscodec.encode_with_order(scene, 5, chunk_size=256, jobs=1)
    on_ray, _ = gscodec.encode_with_order(scene, 5, chunk_size=256,
                                          jobs=RayCluster(cluster))
    assert on_ray == serial
    assert gscodec.inspect(on_ray)["chunks"]["count"] >= 8  # (the work was really split)
    # and through the CLI, side information included
    ply = tmp_path / "big.ply"
    gscodec.write_ply(ply, scene)
    r = _cli("encode", str(ply), "--chunk-size", "256", "--views", "2", "--ray", cluster,
             "--quiet")
    assert r.returncode == 0, r.stderr
    local, _ = gscodec.encode_with_order(gscodec.read_ply(ply), 7, views=2, chunk_size=256,
                                         jobs=1)
    assert ply.with_suffix(".gsz").read_bytes() == local


def test_a_tasks_own_error_is_raised_as_itself(cluster):
    divide = functools.partial(operator.truediv, 1)
    with pytest.raises(ZeroDivisionError):
        list(pmap(divide, [1, 0], RayCluster(cluster)))
    assert list(pmap(divide, [1, 2, 4, 8, 16], RayCluster(cluster), window=1)) == \
        [1.0, 0.5, 0.25, 0.125, 0.0625]


class _FakeRay(types.ModuleType):
    """A ``ray`` module that cannot reach any cluster."""

    def __init__(self):
        super().__init__("ray")

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        raise ConnectionError(f"Could not find any running Ray instance at {kwargs['address']}."
                              "\nPlease start one.")


def test_an_unreachable_cluster_or_missing_ray_is_a_clear_error(tmp_path, monkeypatch):
    ply = tmp_path / "s.ply"
    gscodec.write_ply(ply, make_scene(200, seed=1))
    monkeypatch.setitem(sys.modules, "ray", _FakeRay())
    r = CliRunner().invoke(main, ["encode", str(ply), "--ray", "10.0.0.1:6379"])
    assert r.exit_code == 1
    assert ("gscodec: error: cannot connect to the Ray cluster at 10.0.0.1:6379: Could not "
            "find any running Ray instance at 10.0.0.1:6379.") in r.output
    assert "Traceback" not in r.output and not ply.with_suffix(".gsz").exists()
    monkeypatch.setitem(sys.modules, "ray", None)  # (import ray raises ImportError)
    with pytest.raises(GscodecError, match=r"pip install 'gscodec\[ray\]'"):
        RayCluster("auto").connect()
    r = CliRunner().invoke(main, ["encode", str(ply), str(ply.with_name("t.ply")), "--ray",
                                  "auto"])
    assert r.exit_code == 1 and "gscodec[ray]" in r.output


def test_a_node_that_fails_a_scene_fails_that_scene_alone(monkeypatch):
    """What Ray raises when a node dies or runs out of memory (after its retries) becomes that
    task's error line (``fallback``) or a clear error, not a traceback."""
    ray = pytest.importorskip("ray")

    class Lost(ray.exceptions.RayError):
        def __str__(self):
            return "the node running this task died\n(details)"

    c = RayCluster("unused")
    monkeypatch.setattr(ray, "get", lambda ref: (_ for _ in ()).throw(Lost()))
    outcome = c._get(ray, "scene.ply", object(), lambda task, e: (task, str(e)))
    assert outcome == ("scene.ply", "a task on the Ray cluster failed: the node running this "
                                    "task died")
    with pytest.raises(GscodecError, match="the node running this task died"):
        c._get(ray, "scene.ply", object(), None)
