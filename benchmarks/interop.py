"""Check gscodec's readers and writers of other formats against the peer tool (PlayCanvas
splat-transform).

    python3 benchmarks/interop.py [--data ../shared/data] [--out benchmarks/results]
                                  [--name interop] [--no-sog] [--no-readers] [--no-writers]

Readers. For every input — the shared scenes as they come (captures/plant.splat, objects/*.splat,
playcanvas/biker.spz, playcanvas/playbot_lod1/meta.json) and files the peer tool makes here from
two of them (plant: .compressed.ply, .sog, SPZ v3; playbot, SH degree 2: .compressed.ply,
SPZ v3) — the peer converts the file to an INRIA .ply (``splat-transform -q -w IN OUT.ply``),
gscodec reads that .ply with ``gscodec.read_ply`` and reads the original file with its own
reader (``gscodec.formats.readers.read_scene_arrays``), and the two are compared Gaussian by
Gaussian, by index. Per attribute it reports the largest difference next to the coarsest
quantization step of that format in that file:

- means (world units); quats (unit quaternions, q and -q taken as equal, per component);
  log_scales; alpha = sigmoid(opacity logit); colour = 0.5 + SH_C0 * f_dc (the 8-bit formats
  quantize these, not the logits and coefficients); sh_rest (SH coefficients above DC).

A file passes when the counts and SH degrees agree and every difference is at most its step
(index-matched positions within a step also show the peer kept the file's order).

Writers (``--no-writers`` skips them). For three scenes — captures/plant.splat (SH 0),
playcanvas/playbot_lod1 (SOG, SH 2) and float/fruit.ply (full precision, SH 3) — the Gaussians
gscodec decodes from a .gsz of the scene (``gscodec.encode(g, 7, views=0)``, then
``gscodec.decode(data, refine=False)``) are written with ``formats.writers.write_scene_arrays``
as .spz v4, .spz v3, .splat, .compressed.ply and .glb. The peer converts each file but the .glb
to an INRIA .ply, read with ``gscodec.read_ply`` and compared with the Gaussians written, by
index (.compressed.ply in the writer's ``morton_order``), attribute by attribute as above, each
difference against the bound tests/test_writers.py derives from the writers' docstrings: half
the format's step plus float32 rounding, three half-steps for the rebuilt largest component of
a "smallest three" rotation; values beyond an 8-bit field's range are compared with the field's
end, as written, and counted. The peer reads no .glb: gscodec's .glb is compared with the .glb
the peer writes from a .ply of the same Gaussians (JSON structure, attribute names, accessors,
the float arrays within an ulp) and with the Gaussians themselves. A row passes when every
ratio difference / bound is at most 1.

Exits 1 if any file fails, 2 if the peer tool or the data is missing. Writes ``OUT/NAME.json``
and ``OUT/NAME.md`` (command, machine, date, run time) and prints a summary.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import math
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

import gscodec
from gscodec.formats.common import SH_C0
from gscodec.formats.ply import _parse_header
from gscodec.formats.readers import detect_format, read_scene_arrays
from gscodec.formats.writers import morton_order, write_scene_arrays

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, machine, peer_tool  # noqa: E402

ATTRIBUTES = ("means", "quats", "log_scales", "alpha", "colour", "sh_rest")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def unit(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.float64)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def float_step(x: np.ndarray) -> float:
    """The float32 spacing at the largest magnitude (formats that store float32 as is)."""
    return float(np.spacing(np.float32(np.abs(x).max()))) if x.size else 0.0


def max_gap(book: list[float]) -> float:
    b = np.sort(np.asarray(book, dtype=np.float64))
    return float(np.diff(b).max()) if b.size > 1 else 0.0


# ------------------------------------------------------------------- quantization steps


def splat_steps(path: Path, a: dict[str, np.ndarray]) -> dict[str, float]:
    return {"means": float_step(a["means"]), "quats": 1 / 128,
            "log_scales": float_step(a["log_scales"]), "alpha": 1 / 255, "colour": 1 / 255}


def spz_header(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    head = gzip.decompress(raw)[:16] if raw[:2] == b"\x1f\x8b" else raw[:16]
    _, version, _, _, frac = struct.unpack_from("<IIIBB", head)
    return version, frac


def spz_steps(path: Path, a: dict[str, np.ndarray]) -> dict[str, float]:
    version, frac = spz_header(path)
    return {"means": 2.0**-frac, "quats": 1 / 127.5 if version == 2 else math.sqrt(0.5) / 511,
            "log_scales": 1 / 16, "alpha": 1 / 255, "colour": SH_C0 / (0.15 * 255),
            "sh_rest": 1 / 128}


def compressed_ply_steps(path: Path, a: dict[str, np.ndarray]) -> dict[str, float]:
    with open(path, "rb") as f:
        _, elements, offset = _parse_header(f, str(path))
        chunk = None
        for el in elements:
            dtype = np.dtype([(name, "<" + t) for name, t in el.props])
            if el.name == "chunk":
                f.seek(offset)
                chunk = np.fromfile(f, dtype=dtype, count=el.count)
            offset += el.count * dtype.itemsize
    assert chunk is not None

    def span(prefix: str, axes: str, bits: tuple[int, ...]) -> float:
        return max(float((chunk[f"max_{prefix}{ax}"] - chunk[f"min_{prefix}{ax}"]).max())
                   / ((1 << b) - 1) for ax, b in zip(axes, bits, strict=True))

    colour = span("", "rgb", (8, 8, 8)) if "min_r" in (chunk.dtype.names or ()) else 1 / 255
    return {"means": span("", "xyz", (11, 10, 11)), "quats": math.sqrt(2) / 1023,
            "log_scales": span("scale_", "xyz", (11, 10, 11)), "alpha": 1 / 255,
            "colour": colour, "sh_rest": 8 / 256}


def sog_steps(path: Path, a: dict[str, np.ndarray]) -> dict[str, float]:
    if path.suffix == ".sog":
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
    else:
        meta = json.loads(path.read_text())
    dt = (np.asarray(meta["means"]["maxs"]) - np.asarray(meta["means"]["mins"])) / 65535
    steps = {"means": float(((1 + np.abs(a["means"].astype(np.float64))) * dt).max()),
             "quats": math.sqrt(2) / 255, "log_scales": max_gap(meta["scales"]["codebook"]),
             "alpha": 1 / 255, "colour": SH_C0 * max_gap(meta["sh0"]["codebook"])}
    if "shN" in meta:
        steps["sh_rest"] = max_gap(meta["shN"]["codebook"])
    return steps


STEPS = {"splat": splat_steps, "spz": spz_steps, "compressed-ply": compressed_ply_steps,
         "sog": sog_steps}


# ------------------------------------------------------------------- comparison


def differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    qa, qb = unit(a["quats"]), unit(b["quats"])
    qb *= np.where(np.einsum("ij,ij->i", qa, qb) < 0, -1.0, 1.0)[:, None]
    out = {
        "means": np.abs(a["means"].astype(np.float64) - b["means"]).max(initial=0.0),
        "quats": np.abs(qa - qb).max(initial=0.0),
        "log_scales": np.abs(a["log_scales"].astype(np.float64) - b["log_scales"]).max(
            initial=0.0),
        "alpha": np.abs(sigmoid(a["opacity_logits"]) - sigmoid(b["opacity_logits"])).max(
            initial=0.0),
        "colour": SH_C0 * np.abs(a["sh"][:, 0].astype(np.float64) - b["sh"][:, 0]).max(
            initial=0.0),
    }
    if a["sh"].shape[1] > 1:
        out["sh_rest"] = np.abs(a["sh"][:, 1:].astype(np.float64) - b["sh"][:, 1:]).max()
    return {k: float(v) for k, v in out.items()}


def peer_convert(st: str, src: Path, dst: Path, *args: str, timeout: float = 600) -> float:
    t = time.perf_counter()
    subprocess.run([st, "-q", "-w", *args, str(src), str(dst)], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t


def check(st: str, name: str, src: Path, work: Path, origin: str) -> dict[str, Any]:
    kind = detect_format(src)
    peer_ply = work / f"{name}.peer.ply"
    peer_s = peer_convert(st, src, peer_ply)
    t = time.perf_counter()
    ours = read_scene_arrays(src)
    ours_s = time.perf_counter() - t
    peer = gscodec.read_ply(peer_ply).as_arrays()
    peer_ply.unlink()
    row: dict[str, Any] = {"file": name, "origin": origin, "format": kind,
                           "bytes": sum(p.stat().st_size for p in src.parent.iterdir())
                           if src.name == "meta.json" else src.stat().st_size,
                           "gaussians": int(ours["means"].shape[0]),
                           "sh_degree": {1: 0, 4: 1, 9: 2, 16: 3}[ours["sh"].shape[1]],
                           "read_s": round(ours_s, 3), "peer_to_ply_s": round(peer_s, 3)}
    if kind == "spz":
        row["spz_version"] = spz_header(src)[0]
    same_shape = ours["means"].shape == peer["means"].shape and \
        ours["sh"].shape == peer["sh"].shape
    row["shapes_agree"] = same_shape
    if not same_shape:
        row["pass"] = False
        return row
    diff = differences(ours, peer)
    step = STEPS[kind](src, ours)
    row["attributes"] = {k: {"max_diff": diff[k], "step": step[k],
                             "pass": diff[k] <= step[k]} for k in diff}
    row["max_logit_diff"] = float(np.abs(ours["opacity_logits"].astype(np.float64)
                                         - peer["opacity_logits"]).max(initial=0.0))
    # Gaussians whose logit the peer wrote as -inf/+inf (read_ply turns them into -30/+30)
    row["peer_infinite_logits"] = int((np.abs(peer["opacity_logits"]) >= 30).sum())
    row["pass"] = all(v["pass"] for v in row["attributes"].values())
    return row


# ------------------------------------------------------------------- writers

WRITER_SCENES = (("plant", "captures/plant.splat"),
                 ("playbot", "playcanvas/playbot_lod1/meta.json"),
                 ("fruit", "float/fruit.ply"))
# (label, file suffix, .spz version)
WRITER_FORMATS = (("spz v4", ".spz", 4), ("spz v3", ".v3.spz", 3), ("splat", ".splat", 4),
                  ("compressed-ply", ".compressed.ply", 4), ("glb", ".glb", 4))
ULP = 2.0**-23  # float32 spacing at 1
EXT = "KHR_gaussian_splatting"
SQRT1_2 = math.sqrt(0.5)


def f32(x: Any) -> np.ndarray:
    """The float32 rounding of a value read back (half an ulp of |x|), plus a hair."""
    return ULP / 2 * np.abs(np.asarray(x, dtype=np.float64)) + 1e-9


def measure(diff: Any, bound: Any, target: Any = None, value: Any = None,
            scale: float = 1.0) -> dict[str, Any]:
    """Largest difference, largest bound and the largest per-value ratio difference/bound
    (0/0 counts as 0); ``target`` and ``value`` (the decoded value clamped to the format's
    range, and as decoded) count the values the format's range clamps."""
    d = np.asarray(diff, dtype=np.float64)
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), d.shape)
    ratio = np.divide(d, b, out=np.where(d > 0, np.inf, 0.0), where=b > 0)
    out: dict[str, Any] = {"max_diff": float(d.max(initial=0.0)) * scale,
                           "bound": float(b.max(initial=0.0)) * scale,
                           "ratio": float(ratio.max(initial=0.0))}
    out["pass"] = out["ratio"] <= 1.0
    if target is not None:
        gap = np.abs(np.asarray(target, dtype=np.float64) - np.asarray(value, dtype=np.float64))
        out["clamped"] = int((gap > 0).sum())
        out["max_clamp"] = float(gap.max(initial=0.0)) * scale
    return out


def quat_measure(got: np.ndarray, want: np.ndarray, small: float, largest: float,
                 order: tuple[int, ...] = (0, 1, 2, 3)) -> dict[str, Any]:
    """Unit quaternions (w, x, y, z) up to sign: the largest component of ``want`` within
    ``largest``, the other three within ``small``, each plus ULP (as tests/test_writers.py
    check_quats). The largest is the one the writer picks: the first largest |component| in
    the component ``order`` its layout indexes (x, y, z, w for .spz), which decides ties."""
    g, w = unit(got), unit(want)
    g *= np.where(np.einsum("ij,ij->i", g, w) < 0, -1.0, 1.0)[:, None]
    bound = np.full(w.shape, small + ULP)
    idx = np.asarray(order)
    bound[np.arange(len(w)), idx[np.argmax(np.abs(w[:, idx]), axis=1)]] = largest + ULP
    return measure(np.abs(g - w), bound)


def alpha_measure(got: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    # 8-bit alpha: half a step of 1/255, the readers' clamp of the alpha to [1e-6, 1 - 1e-6] and
    # the float32 rounding of the logit (|d sigmoid / dx| <= 1/4, |logit| < 14): below 2e-6
    return measure(np.abs(sigmoid(got) - sigmoid(want)), 0.5 / 255 + 2e-6)


def chunk_half_steps(values: np.ndarray, bits: tuple[int, ...]) -> np.ndarray:
    """Per value, half the step of its chunk of 256 (in file order): (chunk max - chunk min)
    / (2^bits - 1) / 2."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    chunks = -(-n // 256)
    padded = np.concatenate([v, np.repeat(v[-1:], chunks * 256 - n, axis=0)])
    c = padded.reshape(chunks, 256, -1)
    half = (c.max(axis=1) - c.min(axis=1)) / (2.0 ** np.asarray(bits) - 1) / 2
    return np.repeat(half, 256, axis=0)[:n]


def dc_measure(a: dict[str, np.ndarray], dc: np.ndarray, target: np.ndarray,
               tol: Any) -> dict[str, Any]:
    """The DC coefficients compared in f_dc and reported as colour = 0.5 + SH_C0 * f_dc."""
    return measure(np.abs(a["sh"][:, 0, :].astype(np.float64) - target), tol, target, dc,
                   scale=SH_C0)


def spz_measures(a: dict[str, np.ndarray], g: dict[str, np.ndarray],
                 frac: int) -> dict[str, dict[str, Any]]:
    """Bounds of tests/test_writers.py check_spz, against the decoded values clamped to the
    fields' ranges (log-scales -10 .. 5.9375, colours 0 .. 1, SH -1 .. 127/128)."""
    ls = g["log_scales"].astype(np.float64)
    ls_t = np.clip(ls, -10.0, 255 / 16 - 10.0)
    dc = g["sh"][:, 0, :].astype(np.float64)
    dc_t = np.clip(dc, -0.5 / 0.15, 0.5 / 0.15)
    e = 0.5 * SQRT1_2 / 511  # half a step of the 9-bit magnitudes
    out = {
        "means": measure(np.abs(a["means"].astype(np.float64) - g["means"]),
                         2.0 ** -(frac + 1) + f32(g["means"])),
        "quats": quat_measure(a["quats"], g["quats"], e, 3 * e, order=(1, 2, 3, 0)),
        "log_scales": measure(np.abs(a["log_scales"] - ls_t), 1 / 32 + f32(ls_t), ls_t, ls),
        "alpha": alpha_measure(a["opacity_logits"], g["opacity_logits"]),
        "colour": dc_measure(a, dc, dc_t, 0.5 / (255 * 0.15) + f32(dc_t)),
    }
    if g["sh"].shape[1] > 1:
        rest = g["sh"][:, 1:, :].astype(np.float64)
        rest_t = np.clip(rest, -1.0, 127 / 128)
        out["sh_rest"] = measure(np.abs(a["sh"][:, 1:, :] - rest_t), 1 / 256 + f32(1.0),
                                 rest_t, rest)
    return out


def splat_measures(a: dict[str, np.ndarray], g: dict[str, np.ndarray]) -> dict[str, Any]:
    """Bounds of check_splat(peer=True): positions exact, scales to float32 (exp, then the
    peer's log), 8-bit colours (clamped to 0 .. 1) and alphas, and rotations within
    2 * (sqrt(7) + 2) / 256 (8-bit components read by the peer as b / 127.5 - 1)."""
    ls = g["log_scales"].astype(np.float64)
    dc = g["sh"][:, 0, :].astype(np.float64)
    dc_t = np.clip(dc, -0.5 / SH_C0, 0.5 / SH_C0)
    rot = 2 * (math.sqrt(7) + 2) / 256
    return {
        "means": measure(np.abs(a["means"].astype(np.float64) - g["means"]), 0.0),
        "quats": quat_measure(a["quats"], g["quats"], rot, rot),
        "log_scales": measure(np.abs(a["log_scales"] - ls), ULP / 2 + f32(ls) + 1e-7),
        "alpha": alpha_measure(a["opacity_logits"], g["opacity_logits"]),
        "colour": dc_measure(a, dc, dc_t, 0.5 / (255 * SH_C0) + f32(dc_t)),
    }


def compressed_measures(a: dict[str, np.ndarray], g: dict[str, np.ndarray]) -> dict[str, Any]:
    """Bounds of check_compressed, ``g`` in the file's order: half the chunk's step for
    positions, log-scales (11-10-11 bits) and colours (8 bits, plus an ulp for the float32
    colour bounds), 1/64 for SH (bytes read as the middle of their 1/32 step; the end bytes,
    every value from +-(4 - 1/32) out, read as +-4, so those values are compared with +-4)."""
    bits = (11, 10, 11)
    means, ls = g["means"].astype(np.float64), g["log_scales"].astype(np.float64)
    dc = g["sh"][:, 0, :].astype(np.float64)
    rgb = 0.5 + SH_C0 * dc
    e = 0.5 * math.sqrt(2) / 1023
    out = {
        "means": measure(np.abs(a["means"] - means), chunk_half_steps(means, bits) + f32(means)),
        "quats": quat_measure(a["quats"], g["quats"], e, 3 * e),
        "log_scales": measure(np.abs(a["log_scales"] - ls),
                              chunk_half_steps(ls, bits) + f32(ls)),
        "alpha": alpha_measure(a["opacity_logits"], g["opacity_logits"]),
        "colour": dc_measure(a, dc, dc, (chunk_half_steps(rgb, (8, 8, 8)) + ULP) / SH_C0
                             + f32(dc)),
    }
    if g["sh"].shape[1] > 1:
        rest = g["sh"][:, 1:, :].astype(np.float64)
        edge = 4 - 1 / 32
        rest_t = np.where(rest >= edge, 4.0, np.where(rest < -edge, -4.0, rest))
        out["sh_rest"] = measure(np.abs(a["sh"][:, 1:, :] - rest_t), 1 / 64 + f32(1.0),
                                 rest_t, rest)
    return out


# --- .glb, parsed here as the glTF 2.0 spec lays it out (as tests/test_writers.py does)


def parse_glb(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON, BIN chunk) of a GLB; ValueError where the container is not as glTF 2.0 says."""
    magic, version, length = struct.unpack_from("<III", raw)
    if (magic, version, length) != (0x46546C67, 2, len(raw)):
        raise ValueError(f"GLB header {magic:#x} {version} {length} (file {len(raw)} bytes)")
    json_len, json_type = struct.unpack_from("<II", raw, 12)
    bin_at = 20 + json_len
    bin_len, bin_type = struct.unpack_from("<II", raw, bin_at)
    if json_type != 0x4E4F534A or json_len % 4 or bin_type != 0x004E4942 or bin_len % 4 \
            or bin_at + 8 + bin_len != len(raw):
        raise ValueError("GLB chunks are not a padded JSON chunk then a padded BIN chunk")
    return json.loads(raw[20:bin_at].decode("utf-8")), raw[bin_at + 8:]


def glb_arrays(doc: dict[str, Any], binary: bytes) -> tuple[dict[str, Any],
                                                              dict[str, np.ndarray]]:
    """(primitive, attribute name -> [count, components] array), checking the accessors and
    buffer views (tightly packed, inside the one buffer)."""
    sizes, dtypes = {5126: 4, 5121: 1}, {5126: "<f4", 5121: "u1"}
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}
    (buffer,) = doc["buffers"]
    (primitive,) = doc["meshes"][0]["primitives"]
    out = {}
    for name, index in primitive["attributes"].items():
        acc = doc["accessors"][index]
        view = doc["bufferViews"][acc["bufferView"]]
        start = view["byteOffset"] + acc.get("byteOffset", 0)
        size = sizes[acc["componentType"]]
        nbytes = acc["count"] * width[acc["type"]] * size
        if start % 4 or view.get("byteStride") is not None or view["buffer"] != 0 \
                or view["byteLength"] != nbytes \
                or view["byteOffset"] + nbytes > min(buffer["byteLength"], len(binary)):
            raise ValueError(f"{name}: accessor {index} / buffer view not tightly packed")
        out[name] = np.frombuffer(binary, dtypes[acc["componentType"]], nbytes // size,
                                  start).reshape(acc["count"], width[acc["type"]])
    return primitive, out


def glb_names(degree: int) -> list[str]:
    names = ["POSITION", "COLOR_0", f"{EXT}:ROTATION", f"{EXT}:SCALE", f"{EXT}:OPACITY"]
    return names + [f"{EXT}:SH_DEGREE_{lvl}_COEF_{c}" for lvl in range(degree + 1)
                    for c in range(2 * lvl + 1)]


def json_differences(a: Any, b: Any, path: str = "") -> list[str]:
    """The paths at which two JSON values differ (dict key order ignored)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k} (only in {'ours' if k in a else 'peer'})")
            else:
                out += json_differences(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in json_differences(x, y, f"{path}/{i}")]
    return [] if a == b else [path or "/"]


def glb_structure(ours: dict[str, Any], peer: dict[str, Any], n: int,
                  degree: int) -> dict[str, Any]:
    """What must agree between the two documents: the primitive's mode and extension object,
    the attribute names (those of the scene's SH degree), each attribute's accessor (count N,
    type, component type, normalized) and the buffer's length; and every other difference."""
    po, pp = ours["meshes"][0]["primitives"][0], peer["meshes"][0]["primitives"][0]
    problems = []
    if po["mode"] != pp["mode"] or po.get("extensions") != pp.get("extensions"):
        problems.append("primitive mode or extension object differ")
    want = set(glb_names(degree))
    if set(po["attributes"]) != want or set(pp["attributes"]) != want:
        problems.append("attribute names differ")
    for name in sorted(want & set(po["attributes"]) & set(pp["attributes"])):
        ao = ours["accessors"][po["attributes"][name]]
        ap = peer["accessors"][pp["attributes"][name]]
        keys = ("count", "type", "componentType")
        if ao["count"] != n or any(ao[k] != ap[k] for k in keys) \
                or ao.get("normalized", False) != ap.get("normalized", False):
            problems.append(f"accessor of {name} differs")
    if ours["buffers"][0]["byteLength"] != peer["buffers"][0]["byteLength"]:
        problems.append("buffer lengths differ")
    others = json_differences(ours, peer)
    return {"attributes": len(want), "accessor_count": n, "problems": problems,
            "json_differences": others, "pass": not problems}


def glb_vs_peer(mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray],
                degree: int) -> dict[str, dict[str, Any]]:
    """test_glb_agrees_with_splat_transform: positions, scales, opacities and SH to an ulp of
    the peer's value; rotations (the peer's unnormalised) as unit quaternions to an ulp; the
    peer's COLOR_0 is not decoded from sRGB: its alpha only, within 1 of 255."""

    def rel(name: str, scale: float = 1.0) -> dict[str, Any]:
        m, t = mine[name].astype(np.float64), theirs[name].astype(np.float64)
        return measure(np.abs(m - t), ULP * np.abs(t), scale=scale)

    sh = glb_names(degree)[5:]
    out = {"means": rel("POSITION"),
           "quats": quat_measure(mine[f"{EXT}:ROTATION"], theirs[f"{EXT}:ROTATION"], ULP, ULP),
           "log_scales": rel(f"{EXT}:SCALE"), "alpha": rel(f"{EXT}:OPACITY"),
           "colour": rel(sh[0], SH_C0),
           "color0_alpha": measure(np.abs(mine["COLOR_0"][:, 3].astype(np.float64)
                                          - theirs["COLOR_0"][:, 3]), 1.0)}
    if degree:
        m = np.stack([mine[k] for k in sh[1:]], axis=1).astype(np.float64)
        t = np.stack([theirs[k] for k in sh[1:]], axis=1).astype(np.float64)
        out["sh_rest"] = measure(np.abs(m - t), ULP * np.abs(t))
    return out


def glb_vs_decoded(attrs: dict[str, np.ndarray], g: dict[str, np.ndarray],
                   degree: int) -> dict[str, dict[str, Any]]:
    """test_glb_container_json_and_buffer: turned back from glTF axes (180 degrees about z,
    exact), positions and SH equal, rotations unit to an ulp, scales exp(log-scale) and
    opacities sigmoid(logit) to float32, COLOR_0 the linear DC colour and alpha to 8 bits."""
    pos = attrs["POSITION"].astype(np.float64) * np.array([-1.0, -1.0, 1.0])
    r = attrs[f"{EXT}:ROTATION"].astype(np.float64)  # x, y, z, w of (0, 0, 0, 1) * q
    q = np.stack([r[:, 2], r[:, 1], -r[:, 0], -r[:, 3]], axis=1)  # w, x, y, z of q
    names = glb_names(degree)[5:]
    signs = np.array([(-1.0) ** (k % 2) for k in range((degree + 1) ** 2)])  # (-1)^m
    sh = np.stack([attrs[k] for k in names], axis=1).astype(np.float64) * signs[None, :, None]
    e = np.exp(g["log_scales"].astype(np.float64))
    alpha = sigmoid(g["opacity_logits"])
    srgb = np.clip(0.5 + SH_C0 * g["sh"][:, 0, :].astype(np.float64), 0, 1)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    colour = attrs["COLOR_0"].astype(np.float64) / 255
    out = {"means": measure(np.abs(pos - g["means"]), 0.0),
           "quats": quat_measure(q, g["quats"], ULP, ULP),
           "log_scales": measure(np.abs(attrs[f"{EXT}:SCALE"] - e), 2 * f32(e)),
           "alpha": measure(np.abs(attrs[f"{EXT}:OPACITY"][:, 0] - alpha), f32(1.0)),
           "colour": measure(np.abs(sh[:, 0] - g["sh"][:, 0]), 0.0, scale=SH_C0),
           "color0": measure(np.abs(colour - np.concatenate([linear, alpha[:, None]], 1)),
                             0.5 / 255 + 1e-9)}
    if degree:
        out["sh_rest"] = measure(np.abs(sh[:, 1:] - g["sh"][:, 1:]), 0.0)
    return out


def check_glb(st: str, scene: str, g: dict[str, np.ndarray], ours_path: Path,
              work: Path) -> dict[str, Any]:
    n, degree = g["means"].shape[0], {1: 0, 4: 1, 9: 2, 16: 3}[g["sh"].shape[1]]
    row: dict[str, Any] = {"read_back_by": "peer's .glb of the same .ply"}
    # the peer reads no GLB: record its answer
    r = subprocess.run([st, "-q", "-w", str(ours_path), str(work / "glb-back.ply")],
                       capture_output=True, text=True, timeout=120)
    said = [ln for ln in (r.stderr + r.stdout).splitlines() if "rror" in ln][:1]
    row["peer_reads_glb"] = r.returncode == 0
    row["peer_reads_glb_message"] = said[0].strip(" ✗").replace(str(ours_path),
                                                                  ours_path.name) if said else ""
    ply = work / f"{scene}.for-glb.ply"
    gscodec.write_ply(ply, gscodec.Gaussians.from_arrays(g), force=True)
    peer_glb = work / f"{scene}.peer.glb"
    row["peer_write_s"] = round(peer_convert(st, ply, peer_glb), 3)
    ply.unlink()
    doc_o, bin_o = parse_glb(ours_path.read_bytes())
    doc_p, bin_p = parse_glb(peer_glb.read_bytes())
    peer_glb.unlink()
    row["structure"] = glb_structure(doc_o, doc_p, n, degree)
    (_, mine), (_, theirs) = glb_arrays(doc_o, bin_o), glb_arrays(doc_p, bin_p)
    row["shapes_agree"] = row["structure"]["pass"]
    if not row["shapes_agree"]:
        row["pass"] = False
        return row
    row["attributes"] = glb_vs_peer(mine, theirs, degree)
    row["vs_decoded"] = glb_vs_decoded(mine, g, degree)
    row["vs_decoded_ratio"] = max(v["ratio"] for v in row["vs_decoded"].values())
    row["pass"] = all(v["pass"] for v in row["attributes"].values()) and \
        all(v["pass"] for v in row["vs_decoded"].values())
    return row


def check_written(st: str, scene: str, g: dict[str, np.ndarray], label: str, suffix: str,
                  version: int, work: Path) -> dict[str, Any]:
    n, degree = g["means"].shape[0], {1: 0, 4: 1, 9: 2, 16: 3}[g["sh"].shape[1]]
    path = work / f"{scene}{suffix}"
    t = time.perf_counter()
    write_scene_arrays(path, g, spz_version=version)
    row: dict[str, Any] = {"scene": scene, "format": label, "file": path.name,
                           "bytes": path.stat().st_size, "gaussians": n, "sh_degree": degree,
                           "write_s": round(time.perf_counter() - t, 3)}
    if label == "glb":
        row.update(check_glb(st, scene, g, path, work))
    else:
        row["read_back_by"] = "peer → .ply"
        back = work / f"{scene}.back.ply"
        row["peer_to_ply_s"] = round(peer_convert(st, path, back), 3)
        a = gscodec.read_ply(back).as_arrays()
        back.unlink()
        if label.startswith("spz"):
            row["spz_version"], row["spz_fractional_bits"] = spz_header(path)
        want_sh = (n, 1, 3) if label == "splat" else g["sh"].shape
        row["shapes_agree"] = a["means"].shape == (n, 3) and a["sh"].shape == want_sh
        if row["shapes_agree"]:
            if label.startswith("spz"):
                row["attributes"] = spz_measures(a, g, row["spz_fractional_bits"])
            elif label == "splat":
                row["attributes"] = splat_measures(a, g)
            else:
                order = morton_order(g["means"])
                row["attributes"] = compressed_measures(a, {k: v[order] for k, v in g.items()})
        row["pass"] = row["shapes_agree"] and all(v["pass"]
                                                  for v in row["attributes"].values())
    path.unlink()
    if "attributes" in row:
        every = list(row["attributes"].items())
        every += [(f"{k}, vs decoded", v) for k, v in row.get("vs_decoded", {}).items()]
        worst = max(every, key=lambda kv: kv[1]["ratio"])
        row["worst"] = {"attribute": worst[0], "ratio": worst[1]["ratio"]}
    return row


def writer_scene(data: Path, name: str, rel: str) -> tuple[dict[str, np.ndarray], float]:
    """The Gaussians gscodec decodes from a .gsz of the scene (quality 7, base layer, no
    refinement), and the seconds that took."""
    src = data / rel
    g = gscodec.read_ply(src) if src.suffix == ".ply" else \
        gscodec.Gaussians.from_arrays(read_scene_arrays(src))
    t = time.perf_counter()
    decoded = gscodec.decode(gscodec.encode(g, 7, views=0), refine=False).as_arrays()
    return decoded, time.perf_counter() - t


def check_writers(st: str, data: Path, work: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    scenes = []
    for name, rel in WRITER_SCENES:
        g, seconds = writer_scene(data, name, rel)
        scenes.append({"scene": name, "source": rel, "gaussians": int(g["means"].shape[0]),
                       "sh_degree": {1: 0, 4: 1, 9: 2, 16: 3}[g["sh"].shape[1]],
                       "encode_decode_s": round(seconds, 3)})
        for label, suffix, version in WRITER_FORMATS:
            rows.append(check_written(st, name, g, label, suffix, version, work))
            print(f"writers: {name} {label}: {'pass' if rows[-1]['pass'] else 'FAIL'}",
                  file=sys.stderr)
    return {"scenes": scenes, "rows": rows, "passed": sum(r["pass"] for r in rows),
            "notes": WRITER_NOTES}


WRITER_NOTES = [
    "The Gaussians compared are those gscodec decodes from a .gsz of the scene "
    "(`gscodec.encode(g, 7, views=0)`, `gscodec.decode(data, refine=False)`), what a user "
    "converts with `gscodec decode -o`: each scene is written with "
    "`gscodec.formats.writers.write_scene_arrays` in every format, the peer converts the file "
    "to an INRIA .ply (`splat-transform -q -w FILE OUT.ply`), and `gscodec.read_ply` reads "
    "that. Gaussians are matched by index; for .compressed.ply, whose writer stores them in "
    "`morton_order(means)`, the decoded Gaussians are put in that order first.",
    "Bounds (those of tests/test_writers.py, from the writers' docstring): half the format's "
    "step plus the float32 rounding of the value read (half an ulp). .spz: positions "
    "2^-(f+1) with the file's fractionalBits f, log-scales 1/32, colours 1/(2 * 255 * 0.15) in "
    "f_dc, SH 1/256; .splat: positions exact, log-scales to float32 (exp, then the peer's log), "
    "colours 1/(2 * 255 * SH_C0) in f_dc, rotations 2 * (sqrt(7) + 2) / 256 per component "
    "(8-bit components, which the peer reads as b / 127.5 - 1, half a step off); "
    ".compressed.ply: half the chunk's range over 2^bits - 1 for positions, log-scales "
    "(11-10-11 bits) and colours (8 bits, plus an ulp for the float32 colour bounds), SH 1/64. "
    "Alphas (every format) 1/(2 * 255) plus 2e-6 (the readers' clamp to [1e-6, 1 - 1e-6] and "
    "the float32 logit). Rotations of the \"smallest three\" layouts: the three stored "
    "components within half a step (sqrt(1/2) / 511 for .spz, sqrt(2) / 1023 for "
    ".compressed.ply), the largest, which the reader rebuilds, within three half-steps; plus "
    "an ulp. The largest is the component the writer picks, the first of the largest "
    "magnitude in the order its index refers to (x, y, z, w for .spz; w, x, y, z for "
    ".compressed.ply): decoded Gaussians can tie exactly (|w| = |x| in one of playbot's), "
    "where the first largest in w, x, y, z order, as tests/test_writers.py takes it for its "
    "random quaternions, is not the one an .spz rebuilds. Cells show the largest difference "
    "and the largest bound of the column; the ratio is taken value by value (bounds vary per "
    "chunk and with the magnitude).",
    "Clamping: a value beyond the range of an 8-bit field is written as the field's end, as "
    "the writers' docstring says and the reference tools do (.spz: log-scales below -10 or "
    "above 5.9375, colours 0.5 + 0.15 * f_dc outside [0, 1], SH above DC outside "
    "[-1, 127/128]; .splat: colours 0.5 + SH_C0 * f_dc outside [0, 1]; .compressed.ply: SH "
    "beyond +-(4 - 1/32), whose bytes 0 and 255 read as -4 and 4). Such values are compared "
    "with the clamped value, at the same bound; the `clamped` column counts them (the JSON "
    "has the largest distance from the decoded value, `max_clamp`). Nothing else is clamped.",
    "GLB: the peer reads no .glb (it answers \"Unsupported input file type\"), so gscodec's "
    ".glb is compared with the .glb the peer writes from an INRIA .ply of the same decoded "
    "Gaussians (written by `gscodec.write_ply`), both parsed here as glTF 2.0 lays them out: "
    "the primitive's mode and extension object, the attribute names, each accessor (count N, "
    "type, component type, normalized) and the buffer's length must agree, and the arrays, "
    "by index: positions, scales, opacities and SH within an ulp of the peer's, rotations "
    "(the peer's are not normalised) as unit quaternions within an ulp, COLOR_0 alpha within "
    "1/255 (the peer's COLOR_0 colour is not decoded from sRGB, so it is not compared). The "
    "glb cells show these differences in the GLB's own terms (linear scale, sigmoid opacity, "
    "the DC coefficient as colour). gscodec's .glb is also compared with the decoded Gaussians "
    "directly, turned back from glTF axes: positions and SH exactly, rotations within an ulp, "
    "scales and opacities to float32, COLOR_0 within half of 1/255 (`vs_decoded` in the JSON, "
    "part of the result).",
]


# ------------------------------------------------------------------- report


def fmt(x: float) -> str:
    return "0" if x == 0 else f"{x:.3g}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Interoperability with the peer tool",
        "",
        f"Command: `{result['command']}`  ",
        f"Date: {result['date']}  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores (CPU only), "
        f"Python {result['machine']['python']}, gscodec {result['machine']['gscodec']}  ",
        f"Peer: {result['peer_version']}  ",
        f"Run time: {result['seconds']:.0f} s",
        "",
    ]
    if result["files"]:
        lines += readers_markdown(result)
    if result.get("writers"):
        lines += writers_markdown(result["writers"])
    if result.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {s}" for s in result["skipped"]] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def readers_markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        "## Readers of other formats against the peer tool",
        "",
        "Each file is read by gscodec's reader and, separately, converted to an INRIA .ply by "
        "the peer tool (read back with `gscodec.read_ply`); Gaussians are matched by index. Cells "
        "are `max |difference|` / `coarsest quantization step of the format in that file`. "
        "alpha = sigmoid(opacity), colour = 0.5 + SH_C0 * f_dc; quats are unit, sign-aligned.",
        "",
        "| file | made by | format | Gaussians | SH | " + " | ".join(ATTRIBUTES)
        + " | our read (s) | result |",
        "|---|---|---|---:|---:|" + "---|" * len(ATTRIBUTES) + "---:|---|",
    ]
    for r in result["files"]:
        fmt_name = r["format"] + (f" v{r['spz_version']}" if "spz_version" in r else "")
        cells = []
        for k in ATTRIBUTES:
            v = r.get("attributes", {}).get(k)
            cells.append("—" if v is None else
                         f"{fmt(v['max_diff'])} / {fmt(v['step'])}" + ("" if v["pass"] else " ✗"))
        lines.append(f"| {r['file']} | {r['origin']} | {fmt_name} | {r['gaussians']:,} | "
                     f"{r['sh_degree']} | " + " | ".join(cells)
                     + f" | {r['read_s']:.2f} | {'pass' if r['pass'] else 'FAIL'} |")
    lines += ["", f"**{result['passed']} of {len(result['files'])} files pass.**", ""]
    lines += ["### What the peer tool does differently", ""] + [f"- {n}" for n in result["notes"]]
    return lines + [""]


def cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "—"
    return f"{fmt(v['max_diff'])} / {fmt(v['bound'])}" + ("" if v["pass"] else " ✗")


def writers_markdown(w: dict[str, Any]) -> list[str]:
    lines = [
        "## Writers: the peer reads gscodec's files",
        "",
        "The Gaussians gscodec decodes from a .gsz of each scene (quality 7, base layer, no "
        "refinement) are written by gscodec in every format; the peer converts each file to an "
        "INRIA .ply, read back with `gscodec.read_ply` and compared with the Gaussians written, "
        "by index (.compressed.ply: in the writer's `morton_order`). The peer reads no .glb: "
        "gscodec's .glb is compared with the .glb the peer writes from the same Gaussians, and "
        "with the Gaussians themselves (see GLB below). Cells are `largest |difference|` / "
        "`largest bound` of the column, the bound being half the format's step plus float32 "
        "rounding (per value: per chunk for .compressed.ply); `worst` is the largest ratio "
        "difference / bound over every value of the row, a row passes when it is at most 1. "
        "alpha = sigmoid(opacity), colour = 0.5 + SH_C0 * f_dc; quats are unit, sign-aligned.",
        "",
        "| scene | Gaussians | SH | encode + decode (s) | source |",
        "|---|---:|---:|---:|---|",
    ]
    for s in w["scenes"]:
        lines.append(f"| {s['scene']} | {s['gaussians']:,} | {s['sh_degree']} | "
                     f"{s['encode_decode_s']:.1f} | {s['source']} |")
    lines += [
        "",
        "| scene | format | SH | bytes | read back by | " + " | ".join(ATTRIBUTES)
        + " | clamped to the format's range | worst | result |",
        "|---|---|---:|---:|---|" + "---|" * len(ATTRIBUTES) + "---|---|---|",
    ]
    for r in w["rows"]:
        attrs = r.get("attributes", {})
        cells = []
        for k in ATTRIBUTES:
            if k == "sh_rest" and r["format"] == "splat" and r["sh_degree"] > 0:
                cells.append("dropped (format: SH 0)")
            else:
                cells.append(cell(attrs.get(k)))
        clamped = ", ".join(f"{k} {v['clamped']:,} (up to {fmt(v['max_clamp'])})"
                            for k, v in attrs.items() if v.get("clamped")) or "none"
        worst = r.get("worst")
        worst_s = "—" if worst is None else f"{worst['ratio']:.4f} ({worst['attribute']})"
        fmt_name = r["format"] + (f" (f = {r['spz_fractional_bits']})"
                                  if "spz_fractional_bits" in r else "")
        lines.append(f"| {r['scene']} | {fmt_name} | {r['sh_degree']} | {r['bytes']:,} | "
                     f"{r['read_back_by']} | " + " | ".join(cells)
                     + f" | {clamped} | {worst_s} | {'pass' if r['pass'] else 'FAIL'} |")
    lines += ["", f"**{w['passed']} of {len(w['rows'])} files pass.**", "", "### GLB", ""]
    for r in w["rows"]:
        if r["format"] != "glb":
            continue
        s = r["structure"]
        reads = "yes" if r["peer_reads_glb"] else f"no ({r['peer_reads_glb_message']})"
        agree = "agree" if s["pass"] else "differ: " + "; ".join(s["problems"])
        others = ", ".join(s["json_differences"]) or "none"
        direct = max(r.get("vs_decoded", {}).items(), key=lambda kv: kv[1]["ratio"],
                     default=None)
        direct_s = "not compared" if direct is None else \
            f"worst ratio {direct[1]['ratio']:.4f} ({direct[0]})"
        lines.append(f"- {r['scene']}: the peer reads gscodec's .glb: {reads}. Against the "
                     f"peer's .glb of the same Gaussians: mode, extension object, the "
                     f"{s['attributes']} attribute names, their accessors (count "
                     f"{s['accessor_count']:,}, type, component type, normalized) and the "
                     f"buffer length {agree}; other JSON differences: {others}. gscodec's "
                     f".glb against the decoded Gaussians: {direct_s}.")
    lines += ["", "### How the writers are checked", ""] + [f"- {n}" for n in w["notes"]]
    return lines + [""]


NOTES = [
    ".splat rotations: the peer decodes each byte as `b / 127.5 - 1`; gscodec uses "
    "`(b - 128) / 128`, the exact inverse of the format's encoder (`q * 128 + 128`, as in "
    "antimatter15's convert.py and viewer). The peer's values are offset by half a step before "
    "normalisation: that is the whole `quats` difference on the .splat files (under one step, "
    "1/128).",
    "Opacity: the peer clamps 8-bit alphas to [1e-6, 1 - 1e-6] for .splat, .spz and SOG "
    "(logits of about ∓13.8); gscodec does the same. For compressed PLY the peer writes -inf/+inf "
    "logits for alpha 0/255 into its .ply (`peer_infinite_logits` in the JSON); "
    "`gscodec.read_ply` reads those as ∓30, and gscodec's compressed-PLY reader returns ∓30 "
    "directly, so they agree (`max_logit_diff` in the JSON).",
    "Coordinates: the peer reads .spz raw (no RUB→RDF flip, the spz library's UNSPECIFIED "
    "default) and labels .splat, .spz, compressed PLY and SOG as PLY space, so its .ply output "
    "has no transform applied; gscodec does the same. SPZ files written by Niantic's own tools "
    "store RUB axes and therefore come out with y and z negated relative to the PLY they came "
    "from, in both tools. The antialiased flag of .spz is ignored by gscodec (the peer keeps it "
    "as a model tag).",
    "Order: the peer's .compressed.ply and SOG writers sort the Gaussians (Morton order), so "
    "those files do not keep the source scene's order; reading a file back (peer or gscodec) "
    "keeps the file's order, which is what is compared here.",
    "Strictness: where the peer substitutes values for corrupt data (an identity rotation for a "
    "SOG quaternion tag outside 252..255, zero SH for a SOG label beyond the palette, an empty "
    "scene for a malformed SPZ v4 container, ignoring .spz extensions), gscodec refuses the file "
    "with an error. Files with .spz extensions (flag 0x2) are refused.",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--name", default="interop")
    ap.add_argument("--no-sog", action="store_true", help="Do not make a .sog with the peer.")
    ap.add_argument("--no-readers", action="store_true", help="Skip the readers section.")
    ap.add_argument("--no-writers", action="store_true", help="Skip the writers section.")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    st = peer_tool()
    if st is None:
        print("the peer tool is not available (../shared/tools/peers/install.sh)",
              file=sys.stderr)
        return 2
    data = args.data
    given = [("captures/plant.splat", data / "captures" / "plant.splat")]
    given += [(f"objects/{p.name}", p) for p in sorted((data / "objects").glob("*.splat"))]
    given += [("playcanvas/biker.spz", data / "playcanvas" / "biker.spz"),
              ("playcanvas/playbot_lod1/meta.json",
               data / "playcanvas" / "playbot_lod1" / "meta.json")]
    needed = [] if args.no_readers else list(given)
    if not args.no_writers:
        needed += [(rel, data / rel) for _, rel in WRITER_SCENES]
    missing = sorted({name for name, p in needed if not p.exists()})
    if missing:
        print(f"missing data: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    writers_result = None
    with tempfile.TemporaryDirectory(prefix="gscodec-interop-") as tmp:
        work = Path(tmp)
        if args.no_readers:
            skipped.append("the readers section (--no-readers)")
            given = []
        for name, path in given:
            rows.append(check(st, name, path, work, "shared data"))
            print(f"{name}: {'pass' if rows[-1]['pass'] else 'FAIL'}", file=sys.stderr)
        made = []
        for scene, src in (() if args.no_readers else
                           (("plant", given[0][1]), ("playbot", given[-1][1]))):
            ply = work / f"{scene}.ply"
            peer_convert(st, src, ply)
            made.append((f"{scene}.compressed.ply", ply, ()))
            made.append((f"{scene}.v3.spz", ply, ("--spz-version", "3")))
            if scene == "plant" and not args.no_sog:
                # SOG clusters SH with k-means: CPU-only it is quick for SH 0 (plant), not for
                # playbot (SH 2, did not finish in 400 s on a 2-core CPU)
                made.append((f"{scene}.sog", ply, ("-g", "cpu")))
        if args.no_sog and not args.no_readers:
            skipped.append("plant.sog (--no-sog)")
        for name, ply, extra in made:
            dst = work / name
            try:
                peer_convert(st, ply, dst, *extra, timeout=300)
            except subprocess.TimeoutExpired:
                skipped.append(f"{name}: the peer did not finish in 300 s")
                continue
            origin = f"peer, from {ply.stem}" + (f" ({' '.join(extra)})" if extra else "")
            rows.append(check(st, name, dst, work, origin))
            print(f"{name}: {'pass' if rows[-1]['pass'] else 'FAIL'}", file=sys.stderr)
        if args.no_writers:
            skipped.append("the writers section (--no-writers)")
        else:
            (work / "writers").mkdir()
            writers_result = check_writers(st, data, work / "writers")
    out = subprocess.run([st, "--version"], capture_output=True, text=True)
    version = (out.stdout.strip() or out.stderr.strip()).splitlines()[-1:] or ["unknown"]
    result = {
        "command": "python3 benchmarks/interop.py" + (" " + " ".join(argv) if argv else
                                                      " " + " ".join(sys.argv[1:])).rstrip(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "peer_version": version[0],
        "seconds": round(time.perf_counter() - started, 1),
        "files": rows,
        "passed": sum(r["pass"] for r in rows),
        "writers": writers_result,
        "skipped": skipped,
        "notes": NOTES,
    }
    result["command"] = result["command"].rstrip()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    failed = len(rows) - result["passed"]
    summary = [] if args.no_readers else [f"readers: {result['passed']} of {len(rows)} files pass"]
    if writers_result is not None:
        failed += len(writers_result["rows"]) - writers_result["passed"]
        summary.append(f"writers: {writers_result['passed']} of {len(writers_result['rows'])} "
                       "files pass")
    print("; ".join(summary + [str(args.out / (args.name + ".md"))]))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
