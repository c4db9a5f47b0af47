"""Chunked files (GSZ.md 11): the encoder's chunks keep a plain file's fidelity, a region decode
reads only the chunks it needs and equals the whole decode filtered, a fraction decodes the
first layers (the most covering Gaussians), the bytes and decodes do not depend on the job
count, refinement works across parts, and small scenes stay plain 1.0 files."""

from __future__ import annotations

import numpy as np
import pytest

import gscodec
from gscodec import chunks, decoder, parallel
from gscodec.formats.chunks import FLAG_CHUNKED, parse_table
from gscodec.formats.errors import LimitError
from gscodec.formats.gsz import Limits, decode_meta, read_container
from gscodec.synthetic import make_scene

CHUNK = 256


@pytest.fixture(scope="module")
def scene() -> gscodec.Gaussians:
    return make_scene(1500, sh_degree=1, seed=11)


@pytest.fixture(scope="module")
def chunked(scene) -> tuple[bytes, np.ndarray]:
    return gscodec.encode_with_order(scene, 3, views=0, importance=True, chunk_size=CHUNK)


def _table(data: bytes):
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)
    return c, meta, parse_table(c.get("CTAB").payload, len(c.get("CHNK").payload), meta["n"],
                                1 << 20)


def test_a_scene_above_the_chunk_size_is_chunked_and_keeps_the_plain_files_fidelity(
        scene, chunked):
    data, order = chunked
    c, meta, table = _table(data)
    assert c.flags & FLAG_CHUNKED and c.version == (1, 1) and meta["order"] == "chunks"
    assert len(table) == chunks.chunk_count(scene.n, CHUNK) == 6
    assert all(len(t.parts) == 2 and t.count <= CHUNK for t in table)
    assert sorted(order.tolist()) == list(range(scene.n))
    g = gscodec.decode(data, refine=False)
    plain_data, plain_order = gscodec.encode_with_order(scene, 3, views=0, importance=True,
                                                        chunk_size=scene.n)
    assert not read_container(plain_data).flags & FLAG_CHUNKED
    p = gscodec.decode(plain_data, refine=False)
    # the parts share the scene's position step: the same worst position error
    err = np.abs(g.means - scene.means[order]).max()
    plain_err = np.abs(p.means - scene.means[plain_order]).max()
    assert err <= plain_err * 1.01
    # and the scene's importance classes: colours as close as the plain file's
    dc = np.abs(g.sh[:, 0] - scene.sh[order, 0]).mean()
    plain_dc = np.abs(p.sh[:, 0] - scene.sh[plain_order, 0]).mean()
    assert dc <= plain_dc * 1.1
    # every decoded position lies in its chunk's box
    start = 0
    for t in table:
        m = g.means[start : start + t.count]
        assert (m >= np.array(t.box[:3], np.float32)).all()
        assert (m <= np.array(t.box[3:], np.float32)).all()
        start += t.count


def test_a_region_decodes_only_the_chunks_that_meet_it(chunked, monkeypatch):
    data, _ = chunked
    _, _, table = _table(data)
    full = gscodec.decode(data, refine=False)
    # chunk 2's box shrunk by a tenth towards its centre: inside its k-d cell only
    b = np.array(table[2].box, np.float32)
    centre, half = (b[:3] + b[3:]) / 2, (b[3:] - b[:3]) / 2
    lo, hi = centre - 0.9 * half, centre + 0.9 * half
    decoded = []
    part = decoder._decode_part

    def counting(task):
        decoded.append(task[2])
        return part(task)

    monkeypatch.setattr(decoder, "_decode_part", counting)
    box = gscodec.decode(data, region=(lo, hi))
    inside = ((full.means >= lo) & (full.means <= hi)).all(axis=1)
    assert 0 < box.n == inside.sum() < full.n
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(box, name), getattr(full, name)[inside])
    meeting = [t for t in table if t.meets(tuple(lo), tuple(hi))]
    assert meeting == [table[2]] and decoded == [p.count for p in table[2].parts]
    # a region outside the scene decodes nothing at all
    decoded.clear()
    empty = gscodec.decode(data, region=(hi.max() + 10 + 0 * lo, hi.max() + 11 + 0 * lo))
    assert empty.n == 0 and decoded == []


def test_a_fraction_decodes_the_first_layer_the_gaussians_that_cover_most(chunked):
    data, _ = chunked
    _, _, table = _table(data)
    full = gscodec.decode(data, refine=False)
    coarse = gscodec.decode(data, fraction=0.25)
    assert coarse.n == sum(t.parts[0].count for t in table)
    assert abs(coarse.n - full.n / 4) <= len(table)
    rows = np.concatenate([np.arange(s, s + t.parts[0].count) for s, t in
                           zip(np.cumsum([0] + [t.count for t in table[:-1]]), table,
                               strict=True)])
    np.testing.assert_array_equal(coarse.means, full.means[rows])
    cover = chunks.coverage(full.opacity_logits, full.log_scales)
    rest = np.setdiff1d(np.arange(full.n), rows)
    assert cover[rows].mean() > 3 * cover[rest].mean()
    # a share above the first layer's needs both layers
    assert gscodec.decode(data, fraction=0.3).n == full.n
    # a plain file is one layer: decoded whole
    plain = gscodec.encode(make_scene(100, seed=1), 7, views=0)
    assert gscodec.decode(plain, fraction=0.25).n == 100


def test_bytes_and_decodes_do_not_depend_on_the_job_count(scene, monkeypatch):
    # (the importance classes are measured once, in this process, before the parts are coded:
    # the parts' coding is what runs in other processes)
    data, order = gscodec.encode_with_order(scene, 7, views=0, chunk_size=CHUNK, jobs=1)
    again, order2 = gscodec.encode_with_order(scene, 7, views=0, chunk_size=CHUNK, jobs=2)
    assert again == data
    np.testing.assert_array_equal(order, order2)
    one = gscodec.decode(data, refine=False, jobs=1)
    two = gscodec.decode(data, refine=False, jobs=2)
    # (where the system has no shared memory file, the parts' rows come back pickled)
    monkeypatch.setattr(parallel, "shared_arrays", lambda shapes: None)
    piped = gscodec.decode(data, refine=False, jobs=2)
    monkeypatch.undo()  # and where the workers may not open the shared file, the same
    real = parallel.SharedArrays.spec
    monkeypatch.setattr(parallel.SharedArrays, "spec",
                        lambda self: ("/proc/self/fd/999999", *real(self)[1:]))
    sent = gscodec.decode(data, refine=False, jobs=2)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
        np.testing.assert_array_equal(getattr(one, name), getattr(piped, name))
        np.testing.assert_array_equal(getattr(one, name), getattr(sent, name))


def test_workers_write_rows_into_shared_arrays():
    shapes = {"a": (10, 3), "b": (10,)}
    shared = parallel.shared_arrays(shapes)
    if shared is None:
        pytest.skip("no memfd on this system")
    spec = shared.spec()
    tasks = [(spec, s, {"a": np.full((5, 3), s + 1, np.float32), "b": np.arange(5.0) + s})
             for s in (0, 5)]
    assert list(parallel.pmap(_write, tasks, 2, window=1)) == [None, None]
    shared.close()  # (the arrays outlive the file's descriptor)
    np.testing.assert_array_equal(shared.arrays["a"][:5], 1)
    np.testing.assert_array_equal(shared.arrays["a"][5:], 6)
    np.testing.assert_array_equal(shared.arrays["b"], np.arange(10.0))
    # a worker that may not open the file writes nothing and says so (its rows go back pickled)
    bad = ("/proc/self/fd/999999", *spec[1:])
    assert not parallel.write_rows(bad, 0, {"b": np.zeros(5, np.float32)})


def _write(task):
    spec, start, values = task
    parallel.write_rows(spec, start, values)


def test_a_chunked_file_with_side_information_refines_inside_each_parts_cells(scene):
    data = gscodec.encode(scene, 3, views=2, sideinfo_size=64, importance=True,
                          chunk_size=CHUNK, prior_gains=False)
    c, meta, table = _table(data)
    assert c.get("SIDE") is not None and set(meta["streams"]) == {"SIDE"}
    base = gscodec.decode(data, refine=False)
    for method in ("colour", "adam"):
        refined = gscodec.decode(data, method=method, steps=None if method == "colour" else 3,
                                 device="cpu", backend="cpu")
        assert refined.n == base.n
        changed = np.abs(refined.sh[:, 0] - base.sh[:, 0]).max()
        assert changed > 0, method
        # no DC value leaves its quantization cell: half a step of the part it came from
        start = 0
        for t in table:
            for p in t.parts:
                part = decoder._decode_part((
                    bytes(c.get("CHNK").payload[p.offset : p.offset + p.length]), 1, p.count,
                    t.box, Limits(), False))
                halves = gscodec.api.quantization_halves(1, part[2], part[1])["sh_dc"]
                rows = slice(start, start + p.count)
                moved = np.abs(refined.sh[rows, :1] - base.sh[rows, :1])
                assert (moved <= np.broadcast_to(halves, moved.shape) * 1.0001 + 1e-7).all()
                start += p.count


def test_small_scenes_stay_plain_version_1_0_files():
    g = make_scene(300, seed=4)
    data = gscodec.encode(g, 7, views=0)
    c = read_container(data)
    assert c.version == (1, 0) and c.flags == 0 and c.get("POSN") is not None


def test_the_budget_counts_only_the_gaussians_a_region_needs(chunked):
    data, _ = chunked
    full = gscodec.decode(data, refine=False)
    lo = full.means.min(axis=0)
    hi = lo + (full.means.max(axis=0) - lo) * 0.3
    whole = gscodec.inspect(data)["decode_memory_bytes"]
    small = Limits(max_memory=whole - 1)
    with pytest.raises(LimitError, match="memory budget"):
        gscodec.decode(data, refine=False, limits=small)
    assert gscodec.decode(data, region=(lo, hi), limits=small).n > 0


def test_a_chunked_decode_counts_its_largest_part_once_and_what_it_keeps(chunked, tmp_path):
    # the parts are decoded one at a time: the estimate counts one part's decode (with classes
    # and the transformed SH rest) and, for every Gaussian, what is kept of it
    from gscodec import budget
    from gscodec.info import info

    data, _ = chunked
    c, meta, table = _table(data)
    n, degree = meta["n"], meta["sh_degree"]
    largest = max(p.count for t in table for p in t.parts)
    assert largest < n
    est = gscodec.inspect(data)["decode_memory_bytes"]
    path = tmp_path / "c.gsz"
    path.write_bytes(data)
    assert info(path)["decode_memory_bytes"] == est  # (the header-only path reads the table)
    part = budget.base_bytes(largest, degree, file_bytes=0, classes=True, transform=True)
    assert budget.kept_bytes(degree) == 2 * (44 + 12 * (degree + 1) ** 2) + 8  # (GSZ.md 4.1)
    rest = est - (part - budget.FIXED_BYTES) - n * budget.kept_bytes(degree)
    assert budget.FIXED_BYTES + budget.FILE_BYTE_FACTOR * len(data) <= rest
    assert rest < budget.FIXED_BYTES + budget.FILE_BYTE_FACTOR * len(data) + (1 << 20)
    with pytest.raises(LimitError, match="memory budget"):
        gscodec.decode(data, refine=False, limits=Limits(max_memory=est - 1))
    assert gscodec.decode(data, refine=False, limits=Limits(max_memory=est)).n == n
    # a 10M-Gaussian SH-3 file of the default chunks, 17 bytes a Gaussian, decodes within the
    # default budget (counted per Gaussian as one part's decode, it was 18 GB)
    big = budget.chunked_bytes(10_000_000, 3, file_bytes=17 * 10_000_000, meta_bytes=1 << 16,
                               largest=chunks.DEFAULT_CHUNK_SIZE)
    assert big < gscodec.formats.gsz.DEFAULT_LIMITS.max_memory / 2
    assert budget.base_bytes(10_000_000, 3, file_bytes=17 * 10_000_000, classes=True,
                             transform=True) > gscodec.formats.gsz.DEFAULT_LIMITS.max_memory


def test_bad_regions_and_fractions_are_refused(chunked):
    data, _ = chunked
    with pytest.raises(ValueError, match="region"):
        gscodec.decode(data, region=((1, 1, 1), (0, 0, 0)))
    with pytest.raises(ValueError, match="fraction"):
        gscodec.decode(data, fraction=0)
    with pytest.raises(ValueError, match="chunk_size"):
        gscodec.encode(make_scene(50, seed=1), 7, views=0, chunk_size=4)


def test_the_cli_chunks_decodes_a_box_and_a_fraction_and_reports_the_chunks(tmp_path):
    from click.testing import CliRunner

    from gscodec.cli.main import main

    src = tmp_path / "s.ply"
    gscodec.write_ply(src, make_scene(900, sh_degree=0, seed=3))
    run = CliRunner().invoke
    r = run(main, ["encode", str(src), "--views", "0", "--chunk-size", "256", "--jobs", "1"])
    assert r.exit_code == 0, r.output
    gsz = tmp_path / "s.gsz"
    r = run(main, ["bitrate", "report", str(gsz)])
    assert r.exit_code == 0 and "chunked: 4 chunks of 2 layers" in r.output, r.output
    full = gscodec.decode(gsz)
    lo, hi = full.means.min(axis=0), np.median(full.means, axis=0)
    box = ",".join(f"{v:.6f}" for v in (*lo, *hi))
    r = run(main, ["decode", str(gsz), "--bbox", box, "-o", str(tmp_path / "box.ply")])
    assert r.exit_code == 0 and "base layer of the box" in r.output, r.output
    got = gscodec.read_ply(tmp_path / "box.ply")
    lo6, hi6 = (np.array([float(f"{v:.6f}") for v in x]) for x in (lo, hi))
    assert got.n == ((full.means >= lo6) & (full.means <= hi6)).all(axis=1).sum() > 0
    r = run(main, ["decode", str(gsz), "--fraction", "0.25", "-o", str(tmp_path / "f.ply")])
    assert r.exit_code == 0, r.output
    assert gscodec.read_ply(tmp_path / "f.ply").n == sum(-(-c // 4) for c in (225,) * 4)
    r = run(main, ["decode", str(gsz), "--bbox", "1,1,1,0,0,0"])
    assert r.exit_code == 2 and "each minimum must be at most its maximum" in r.output


def test_the_first_chunk_chooses_the_channel_plans_the_others_refit(scene, monkeypatch):
    from gscodec.codec import channels

    calls = {"choose": 0, "refit": 0}
    choose, refit = channels._choose_plan, channels._refit_plan

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(channels, "_choose_plan", counted("choose", choose))
    monkeypatch.setattr(channels, "_refit_plan", counted("refit", refit))
    data = gscodec.encode(scene, 7, views=0, chunk_size=CHUNK)
    chosen = calls["choose"]
    # the first chunk's two parts choose every channel's plan; the five other chunks refit them
    assert chosen > 0 and calls["refit"] == 5 * chosen
    g = gscodec.decode(data, refine=False)
    assert g.n == scene.n and np.isfinite(g.sh).all()


def test_parts_with_the_same_steps_share_one_cell_half_width():
    from gscodec.refinement import CellSource

    data = gscodec.encode(make_scene(900, sh_degree=1, seed=9), 7, views=0, chunk_size=256)
    c = read_container(data)
    runs = []
    for t in _table(data)[2]:
        for p in t.parts:
            values, classes, meta = decoder._decode_part((
                bytes(c.get("CHNK").payload[p.offset : p.offset + p.length]), 1, p.count,
                t.box, Limits(), False))
            runs.append((p.count, meta, classes))
    halves = CellSource(tuple(runs)).halves(1)
    # (no row per Gaussian: a 1M-Gaussian SH-3 colour fit held 190 MB of copies before)
    assert {k: v.shape[0] for k, v in halves.items()} == {"sh_dc": 1, "sh_rest": 1}
    single = CellSource.single(*runs[0]).halves(1)
    for k in halves:
        np.testing.assert_array_equal(halves[k], single[k])
