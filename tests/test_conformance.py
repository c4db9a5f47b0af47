"""The conformance files of formats/conformance/ (GSZ.md section 10): every valid file decodes
to its expected float32 values (gscodec and the reference decoder written from the spec), every
invalid file is refused with the error class and message the index names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import reference_decoder

import gscodec
import gscodec.formats
from gscodec import sideinfo
from gscodec.formats import errors
from gscodec.formats.gsz import decode_meta, read_container

ROOT = Path(__file__).resolve().parent.parent / "formats" / "conformance"
INDEX = json.loads((ROOT / "INDEX.json").read_text(encoding="utf-8"))["files"]
VALID = [e for e in INDEX if e["valid"]]
INVALID = [e for e in INDEX if not e["valid"]]


def _floats(rows: list[str], shape: tuple[int, ...]) -> np.ndarray:
    bits = [int(h, 16) for row in rows for h in row.split()]
    return np.array(bits, dtype="<u4").view("<f4").reshape(shape)


def _expected(entry: dict) -> dict[str, np.ndarray]:
    e = json.loads((ROOT / entry["expected"]).read_text(encoding="utf-8"))
    n, k = e["n"], (e["sh_degree"] + 1) ** 2
    return {
        "means": _floats(e["means"], (n, 3)),
        "quats": _floats(e["quats"], (n, 4)),
        "log_scales": _floats(e["log_scales"], (n, 3)),
        "opacity_logits": _floats(e["opacity_logits"], (n,)),
        "sh": _floats(e["sh"], (n, k, 3)),
    }


def _check(values: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for name in ("means", "quats", "log_scales", "sh"):
        got = np.asarray(values[name], np.float32).reshape(expected[name].shape)
        # bit for bit (the views compare -0.0 and 0.0, and NaN payloads, too)
        np.testing.assert_array_equal(got.view("<u4"), expected[name].view("<u4"), err_msg=name)
    # ln is not correctly rounded everywhere: one float32 ulp (GSZ.md 6.4)
    got = np.asarray(values["opacity_logits"], np.float32).reshape(-1)
    np.testing.assert_array_max_ulp(got, expected["opacity_logits"], maxulp=1)


@pytest.mark.parametrize("entry", VALID, ids=[e["file"] for e in VALID])
def test_valid_files_decode_to_the_expected_values(entry):
    path = ROOT / entry["file"]
    expected = _expected(entry)
    g = gscodec.decode(path, refine=False)
    _check({k: getattr(g, k) for k in expected}, expected)
    # steps=0 also parses the side information (without refining)
    _check({k: getattr(gscodec.decode(path, steps=0), k) for k in expected}, expected)
    _check(reference_decoder.decode(path.read_bytes()), expected)


@pytest.mark.parametrize("entry", [e for e in VALID if "expected_side" in e],
                         ids=lambda e: e["file"])
def test_side_information_decodes_to_the_expected_residuals(entry):
    data = (ROOT / entry["file"]).read_bytes()
    side = json.loads((ROOT / entry["expected_side"]).read_text(encoding="utf-8"))["side"]
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)["streams"]["SIDE"]
    si = sideinfo.decode(c.get("SIDE").payload, meta)
    assert si.scale == side["scale"] and len(si.cameras) == len(side["views"]) > 0
    assert si.prior == side.get("prior")  # the learned prior's gains (6.8), where present
    for cam, res, view in zip(si.cameras, si.residuals, side["views"], strict=True):
        assert (cam.width, cam.height) == (view["width"], view["height"])
        want = _floats(view["residuals"], res.shape)
        np.testing.assert_array_equal(res.view("<u4"), want.view("<u4"))


@pytest.mark.parametrize("entry", INVALID, ids=[e["file"] for e in INVALID])
def test_invalid_files_are_refused_with_the_documented_error(entry):
    path = ROOT / entry["file"]
    cls = getattr(errors, entry["error"])
    with pytest.raises(cls) as info:
        gscodec.decode(path, steps=0)
    assert type(info.value) is cls
    assert entry["message"] in str(info.value)
    # inspect reads the same header and metadata; it fails the same way when those are bad
    if entry["rule"].split(",")[0] in ("2", "1", "4"):
        with pytest.raises(cls):
            gscodec.inspect(path)


def test_index_lists_every_file_and_the_spec_lists_the_index():
    listed = {e["file"] for e in INDEX}
    on_disk = {str(p.relative_to(ROOT)) for p in ROOT.glob("*/*.gsz")}
    assert listed == on_disk
    for e in VALID:
        assert (ROOT / e["expected"]).is_file()
    spec = Path(gscodec.formats.__file__).with_name("GSZ.md").read_text(encoding="utf-8")
    for e in INDEX:
        assert f"`{e['file']}`" in spec, e["file"]
        if not e["valid"]:
            assert e["message"] in spec, e["message"]
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert total < 200_000  # small enough to commit
