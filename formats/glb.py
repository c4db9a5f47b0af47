"""Writing glTF 2.0 binary files (``.glb``) with the Khronos ``KHR_gaussian_splatting`` extension.

Written against the extension's text in the KhronosGroup/glTF repository at commit 63770cc
(2026-04-15, "KHR_gaussian_splatting: Editorial review", status "Release Candidate"), the last
change to it in the copy that could be read here. A later copy of the same README gives the
status "Complete, Ratified by the Khronos Group"; its full text could not be read to compare,
so changes made at ratification, if any, are not covered. Checked: the Khronos glTF validator
(2.0.0-dev.3.10, which predates the extension and knows neither it nor its attribute names)
finds nothing else wrong, as with splat-transform's output; the attributes agree with those
PlayCanvas splat-transform 3.7.0 writes for the same scene (which, unlike this writer, stores
its rotations unnormalised and its ``COLOR_0`` without decoding sRGB).

The container (glTF 2.0, all little-endian)::

    0   magic    uint32  0x46546C67 ("glTF")
    4   version  uint32  2
    8   length   uint32  total file length (so a .glb is below 4 GiB)
    12  JSON chunk: uint32 length, uint32 type 0x4E4F534A ("JSON"), UTF-8 JSON padded with
        spaces to a multiple of 4 bytes
    ..  BIN chunk: uint32 length, uint32 type 0x004E4942 ("BIN\\0"), the buffer padded with
        zeros to a multiple of 4 bytes

The JSON has one scene, one node, one mesh with one primitive of mode ``POINTS`` (0) and the
extension object ``{"kernel": "ellipse", "colorSpace": "srgb_rec709_display", "projection":
"perspective", "sortingMethod": "cameraDistance"}`` (3DGS training fits display-referred sRGB
colours), ``KHR_gaussian_splatting`` in ``extensionsUsed`` (not required: viewers without it
show a point cloud). One tightly packed buffer view (target ARRAY_BUFFER) and accessor per
attribute, all with ``count`` N, in this order:

==============================================  ======  ===================================
``POSITION``                                    VEC3    float, with ``min`` / ``max``
``COLOR_0``                                     VEC4    unsigned byte, normalized: the
                                                        fallback point colour, linear (the
                                                        DC colour clamped to [0, 1] and
                                                        decoded from sRGB), alpha = opacity
``KHR_gaussian_splatting:ROTATION``             VEC4    float, unit quaternion x, y, z, w
``KHR_gaussian_splatting:SCALE``                VEC3    float, linear (exp of the log-scale)
``KHR_gaussian_splatting:OPACITY``              SCALAR  float, sigmoid of the logit
``KHR_gaussian_splatting:SH_DEGREE_0_COEF_0``   VEC3    float, the DC coefficients (R, G, B)
``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n``   VEC3    float, degree l = 1..3 (as the input
                                                        has them), n = 0..2l, order m = n - l
==============================================  ======  ===================================

The spec's real SH basis (with the Condon-Shortley phase) is the one 3DGS trains with, in the
same order, so the coefficients are stored as they are.

Axes: glTF is y-up; a scene in INRIA PLY axes (y down, as gscodec's readers return it) is turned
180 degrees about z (``gltf_axes``, the default), the conversion PlayCanvas splat-transform
makes, so that a viewer shows the .glb the way it shows the .ply: positions (x, y, z) become
(-x, -y, z), rotations are multiplied on the left by the quaternion (w, x, y, z) = (0, 0, 0, 1),
and the SH coefficient of order m is multiplied by (-1)^m. All of these are exact (negations and
a permutation). With ``gltf_axes=False`` the coordinates are stored unchanged.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from .common import SH_C0, ArrayDict
from .errors import FormatError
from .ply import _check_arrays
from .scene import check_scene, linear_scales, sigmoid, unit_quats

EXTENSION = "KHR_gaussian_splatting"
GLB_MAGIC = 0x46546C67
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
FLOAT = 5126
UNSIGNED_BYTE = 5121
ARRAY_BUFFER = 34962
POINTS = 0
EXTENSION_OBJECT = {"kernel": "ellipse", "colorSpace": "srgb_rec709_display",
                    "projection": "perspective", "sortingMethod": "cameraDistance"}
MAX_GLB_BYTES = (1 << 32) - 1
JSON_RESERVE = 1 << 16  # room left for the JSON chunk when sizing the largest scene


def sh_attribute_names(degree: int) -> list[str]:
    """The SH attribute semantics for SH degree 0..3, in coefficient order (DC first)."""
    return [f"{EXTENSION}:SH_DEGREE_{lvl}_COEF_{c}" for lvl in range(degree + 1)
            for c in range(2 * lvl + 1)]


def bytes_per_gaussian(degree: int) -> int:
    """Buffer bytes per Gaussian: position, colour, rotation, scale, opacity and SH."""
    return 12 + 4 + 16 + 12 + 4 + 12 * (degree + 1) ** 2


def max_gaussians(degree: int) -> int:
    """The most Gaussians a .glb of this SH degree holds (its length field is a uint32)."""
    return (MAX_GLB_BYTES - 28 - JSON_RESERVE) // bytes_per_gaussian(degree)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def gltf_axes_arrays(arrays: ArrayDict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, quats w x y z, sh) of the scene turned 180 degrees about z, as float32."""
    means = np.array(arrays["means"], dtype=np.float32)
    means[:, :2] *= -1.0
    q = np.asarray(arrays["quats"], dtype=np.float32)
    quats = np.stack([-q[:, 3], -q[:, 2], q[:, 1], q[:, 0]], axis=1)  # (0,0,0,1) * q
    sh = np.array(arrays["sh"], dtype=np.float32)
    # coefficient k = l^2 + l + m has order m, and l^2 + l is even: odd k, odd m, sign flips
    sh[:, 1::2, :] *= -1.0
    return means, quats, sh


def _attributes(arrays: ArrayDict, degree: int, gltf_axes: bool,
                where: str) -> list[tuple[str, str, int, np.ndarray]]:
    """(semantic, type, component type, [N, components] data) per attribute, in file order."""
    if gltf_axes:
        means, quats, sh = gltf_axes_arrays(arrays)
    else:
        means = np.asarray(arrays["means"], dtype=np.float32)
        quats = np.asarray(arrays["quats"], dtype=np.float32)
        sh = np.asarray(arrays["sh"], dtype=np.float32)
    alpha = sigmoid(arrays["opacity_logits"])
    rgb = _srgb_to_linear(np.clip(0.5 + SH_C0 * sh[:, 0, :].astype(np.float64), 0.0, 1.0))
    colour = np.floor(np.concatenate([rgb, alpha[:, None]], axis=1) * 255.0 + 0.5)
    out = [
        ("POSITION", "VEC3", FLOAT, means),
        ("COLOR_0", "VEC4", UNSIGNED_BYTE, colour.astype(np.uint8)),
        (f"{EXTENSION}:ROTATION", "VEC4", FLOAT, unit_quats(quats)[:, [1, 2, 3, 0]]),
        (f"{EXTENSION}:SCALE", "VEC3", FLOAT, linear_scales(arrays["log_scales"], where,
                                                             "a .glb file")),
        (f"{EXTENSION}:OPACITY", "SCALAR", FLOAT, alpha[:, None]),
    ]
    for i, name in enumerate(sh_attribute_names(degree)):
        out.append((name, "VEC3", FLOAT, sh[:, i, :]))
    return out


def write_glb_bytes(arrays: ArrayDict, *, gltf_axes: bool = True, where: str = "scene") -> bytes:
    """The bytes of a ``.glb`` holding the scene with ``KHR_gaussian_splatting`` (see the module
    docstring); raises FormatError (also for an empty scene: glTF accessors hold at least one
    element)."""
    n, degree = _check_arrays(arrays)
    check_scene(arrays, where, max_count=max_gaussians(degree), what="a .glb file (4 GiB)")
    if n == 0:
        raise FormatError(f"{where}: a .glb file cannot hold an empty scene")
    attributes, views, accessors, blobs = {}, [], [], []
    offset = 0
    for i, (name, kind, component, data) in enumerate(_attributes(arrays, degree, gltf_axes,
                                                                  where)):
        blob = np.ascontiguousarray(data, dtype="<f4" if component == FLOAT else "u1").tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob),
                      "target": ARRAY_BUFFER})
        accessor = {"bufferView": i, "byteOffset": 0, "componentType": component, "count": n,
                    "type": kind}
        if component == UNSIGNED_BYTE:
            accessor["normalized"] = True
        if name == "POSITION":
            accessor["min"] = [float(v) for v in data.min(axis=0)]
            accessor["max"] = [float(v) for v in data.max(axis=0)]
        accessors.append(accessor)
        attributes[name] = i
        blobs.append(blob)
        offset += len(blob)  # every attribute's size is a multiple of 4 bytes
    gltf = {
        "asset": {"version": "2.0", "generator": "gscodec"},
        "extensionsUsed": [EXTENSION],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": attributes, "mode": POINTS,
                                    "extensions": {EXTENSION: dict(EXTENSION_OBJECT)}}]}],
        "buffers": [{"byteLength": offset}],
        "bufferViews": views,
        "accessors": accessors,
    }
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    binary = b"".join(blobs)
    binary += b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + 8 + len(binary)
    if total > MAX_GLB_BYTES:
        raise FormatError(f"{where}: the scene needs a {total}-byte .glb, more than 4 GiB")
    return b"".join([
        struct.pack("<III", GLB_MAGIC, GLB_VERSION, total),
        struct.pack("<II", len(text), CHUNK_JSON), text,
        struct.pack("<II", len(binary), CHUNK_BIN), binary,
    ])
