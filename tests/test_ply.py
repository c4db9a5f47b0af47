"""PLY reading and writing: round trips, layouts other tools write, and every bad input."""

from __future__ import annotations

import numpy as np
import plyfile
import pytest

from gscodec import Gaussians, PlyError, read_ply, write_ply
from gscodec.formats.ply import ply_property_names
from gscodec.synthetic import make_scene


def _assert_same(a: Gaussians, b: Gaussians) -> None:
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 257])
def test_write_then_read_returns_identical_arrays(tmp_path, degree, n):
    g = make_scene(n, sh_degree=degree, seed=n + degree)
    path = tmp_path / "g.ply"
    write_ply(path, g)
    back = read_ply(path)
    assert back.n == n and back.sh_degree == degree
    _assert_same(g, back)


def test_written_header_is_the_inria_layout(tmp_path):
    path = tmp_path / "g.ply"
    write_ply(path, make_scene(3, sh_degree=1))
    header = path.read_bytes().split(b"end_header")[0].decode()
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert props == ply_property_names(1)
    assert props[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert props[-8:] == ["opacity", "scale_0", "scale_1", "scale_2",
                          "rot_0", "rot_1", "rot_2", "rot_3"]


def test_f_rest_is_channel_major(tmp_path):
    g = make_scene(5, sh_degree=1, seed=3)
    path = tmp_path / "g.ply"
    write_ply(path, g)
    v = plyfile.PlyData.read(str(path))["vertex"]
    # f_rest_{c*3 + j} is coefficient j+1 of colour c
    np.testing.assert_array_equal(v["f_rest_0"], g.sh[:, 1, 0])
    np.testing.assert_array_equal(v["f_rest_3"], g.sh[:, 1, 1])
    np.testing.assert_array_equal(v["f_rest_7"], g.sh[:, 2, 2])
    np.testing.assert_array_equal(v["f_rest_8"], g.sh[:, 3, 2])


def _write_custom(path, fields: list[tuple[str, str]], data: dict[str, np.ndarray], n: int,
                  fmt: str = "binary_little_endian", extra_header: str = "") -> None:
    order = "<" if fmt != "binary_big_endian" else ">"
    dtype = np.dtype([(name, order + t) for name, t in fields])
    arr = np.zeros(n, dtype)
    for name, _ in fields:
        arr[name] = data.get(name, 0)
    type_names = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int"}
    lines = ["ply", f"format {fmt} 1.0", *extra_header.splitlines(), f"element vertex {n}"]
    lines += [f"property {type_names[t]} {name}" for name, t in fields]
    lines.append("end_header")
    head = ("\n".join(lines) + "\n").encode()
    if fmt == "ascii":
        body = "".join(" ".join(repr(float(x)) for x in row) + "\n" for row in arr.tolist())
        path.write_bytes(head + body.encode())
    else:
        path.write_bytes(head + arr.tobytes())


def _columns(g: Gaussians) -> dict[str, np.ndarray]:
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2],
            "opacity": g.opacity_logits}
    for i in range(3):
        cols[f"scale_{i}"] = g.log_scales[:, i]
        cols[f"f_dc_{i}"] = g.sh[:, 0, i]
    for i in range(4):
        cols[f"rot_{i}"] = g.quats[:, i]
    return cols


PEER_ORDER = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("rot_0", "f4"), ("rot_1", "f4"),
              ("rot_2", "f4"), ("rot_3", "f4"), ("scale_0", "f4"), ("scale_1", "f4"),
              ("scale_2", "f4"), ("opacity", "f4"), ("f_dc_0", "f4"), ("f_dc_1", "f4"),
              ("f_dc_2", "f4")]


def test_reads_other_property_orders_without_normals(tmp_path):
    g = make_scene(50, sh_degree=0, seed=5)
    path = tmp_path / "peer.ply"
    _write_custom(path, PEER_ORDER, _columns(g), g.n)
    _assert_same(g, read_ply(path))


def test_reads_big_endian_doubles_and_ascii(tmp_path):
    g = make_scene(20, sh_degree=0, seed=6)
    doubles = [(name, "f8") for name, _ in PEER_ORDER]
    path = tmp_path / "be.ply"
    _write_custom(path, doubles, _columns(g), g.n, fmt="binary_big_endian")
    _assert_same(g, read_ply(path))
    path = tmp_path / "ascii.ply"
    _write_custom(path, PEER_ORDER, _columns(g), g.n, fmt="ascii")
    back = read_ply(path)
    np.testing.assert_allclose(back.means, g.means, rtol=1e-6)


def test_reads_vertex_after_another_element(tmp_path):
    g = make_scene(10, sh_degree=0, seed=8)
    cols = _columns(g)
    dtype = np.dtype([(name, "<f4") for name, _ in PEER_ORDER])
    arr = np.zeros(g.n, dtype)
    for name, _ in PEER_ORDER:
        arr[name] = cols[name]
    head = ["ply", "format binary_little_endian 1.0", "comment made by a test",
            "element camera 2", "property float fx", "property float fy",
            f"element vertex {g.n}"] + [f"property float {n}" for n, _ in PEER_ORDER]
    data = ("\n".join(head + ["end_header"]) + "\n").encode()
    data += np.arange(4, dtype="<f4").tobytes() + arr.tobytes()
    path = tmp_path / "cam.ply"
    path.write_bytes(data)
    _assert_same(g, read_ply(path))


def _valid_bytes(n=8):
    g = make_scene(n, sh_degree=0, seed=9)
    return g, _columns(g)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda fields, cols: ([f for f in fields if f[0] != "opacity"], cols),
         "missing property 'opacity'"),
        (lambda fields, cols: ([(n, "u1" if n == "x" else t) for n, t in fields], cols),
         "property 'x' has type uint8"),
        (lambda fields, cols: (fields, {**cols, "y": np.where(np.arange(8) == 3, np.nan, 1.0)}),
         "'y' has 1 non-finite values"),
        (lambda fields, cols: (fields, {**cols, "scale_1": np.full(8, np.inf)}),
         "'scale_1' has 8 non-finite values"),
        (lambda fields, cols: (fields, {**cols, **{f"rot_{i}": np.zeros(8) for i in range(4)}}),
         "zero-length rotation quaternion"),
        (lambda fields, cols: (fields + [("f_rest_0", "f4")], cols),
         "1 f_rest_* properties"),
    ],
)
def test_bad_properties_are_named(tmp_path, mutate, message):
    _, cols = _valid_bytes()
    fields, cols = mutate(list(PEER_ORDER), cols)
    path = tmp_path / "bad.ply"
    _write_custom(path, fields, cols, 8)
    with pytest.raises(PlyError, match=message.replace("*", r"\*")):
        read_ply(path)


def test_truncated_data_is_reported(tmp_path):
    g, cols = _valid_bytes()
    path = tmp_path / "t.ply"
    _write_custom(path, PEER_ORDER, cols, g.n)
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    with pytest.raises(PlyError, match="truncated PLY"):
        read_ply(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PLY file"),
        (b"hello world\n", "not a PLY file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PLY file"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 2\n", "ends before 'end_header'"),
        (b"ply\nformat weird 1.0\nend_header\n", "unsupported PLY format"),
        (b"ply\nformat ascii 1.0\nelement face 1\nproperty float x\nend_header\n1\n",
         "no 'vertex' element"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\n"
         b"property float x\nend_header\n", "truncated PLY"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
         b"property list uchar int vertex_indices\nend_header\n", "list properties"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
         b"end_header\nnot numbers\n", "cannot parse PLY data"),
        (b"ply\nformat binary_little_endian 1.0\n\xff\xfe\nend_header\n", "non-ASCII"),
    ],
)
def test_malformed_files_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "m.ply"
    path.write_bytes(content)
    with pytest.raises(PlyError, match=message):
        read_ply(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(PlyError, match="no such file"):
        read_ply(tmp_path / "nope.ply")
    with pytest.raises(PlyError, match="folder"):
        read_ply(tmp_path)


def test_infinite_opacity_logits_mean_alpha_zero_or_one(tmp_path):
    g, cols = _valid_bytes()
    cols = {**cols, "opacity": np.array([-np.inf, np.inf, 0, 0, 0, 0, 0, 0])}
    path = tmp_path / "inf.ply"
    _write_custom(path, PEER_ORDER, cols, 8)
    back = read_ply(path)
    assert back.opacity_logits[:2].tolist() == [-30.0, 30.0]
    cols["opacity"] = np.array([np.nan, 0, 0, 0, 0, 0, 0, 0])
    _write_custom(path, PEER_ORDER, cols, 8)
    with pytest.raises(PlyError, match="'opacity' has 1 non-finite"):
        read_ply(path)
