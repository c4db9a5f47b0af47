"""formats/GSZ.md is complete: a decoder written from it alone (reference_decoder.py) decodes
gscodec's files to the same Gaussians."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_decoder

import gscodec
import gscodec.formats
from gscodec.api import encode_with_order
from gscodec.codec.attributes import REGISTRY, ImportanceCodec
from gscodec.formats.gsz import decode_meta, read_container
from gscodec.synthetic import make_scene


def _compare(data: bytes) -> None:
    ours = gscodec.decode(data)
    ref = reference_decoder.decode(data)
    for name in ("means", "log_scales", "quats", "sh"):
        np.testing.assert_array_equal(np.asarray(ref[name], np.float32).reshape(
            getattr(ours, name).shape), getattr(ours, name), err_msg=name)
    # ln is not correctly rounded everywhere: allow one float32 ulp (GSZ.md 6.4)
    np.testing.assert_array_max_ulp(np.asarray(ref["opacity_logits"], np.float32),
                                    ours.opacity_logits, maxulp=1)


@pytest.mark.parametrize(("n", "degree", "quality"),
                         [(0, 0, 7), (1, 3, 7), (300, 0, 1), (400, 1, 5), (500, 3, 10)])
def test_reference_decoder_agrees_with_gscodec(n, degree, quality):
    _compare(gscodec.encode(make_scene(n, sh_degree=degree, seed=n), quality=quality))


def test_reference_decoder_agrees_on_palette_and_neighbour_prediction():
    rng = np.random.default_rng(3)
    g = make_scene(1500, sh_degree=2, seed=4)
    codebook = rng.normal(scale=0.3, size=(12, 8, 3)).astype(np.float32)
    g.sh[:, 1:] = codebook[rng.integers(0, 12, g.n)]
    g.sh[:, 0] = np.round(g.means[:, :1] * 3) / 3  # smooth along the Morton order
    data = gscodec.encode(g, quality=6)
    info = decode_meta(read_container(data).streams[0].payload)
    assert info["streams"]["SHRS"]["mode"] == "palette"
    assert any(p["p"] in ("prev", "prevchan") for p in info["streams"]["SHDC"]["plans"])
    _compare(data)


@pytest.mark.parametrize("degree", [0, 2])
def test_reference_decoder_agrees_on_importance_classes(degree):
    data, _ = encode_with_order(make_scene(700, sh_degree=degree, seed=7), 2, importance=True)
    info = decode_meta(read_container(data).streams[0].payload)
    assert "IMPC" in info["streams"] and "mult" in info["streams"]["ROTN"]
    _compare(data)


def test_reference_decoder_rejects_what_gscodec_rejects():
    data = bytearray(gscodec.encode(make_scene(50, sh_degree=0, seed=1), quality=3))
    data[-1] ^= 1
    with pytest.raises(reference_decoder.Reject):
        reference_decoder.decode(bytes(data))
    with pytest.raises(gscodec.ContainerError):
        gscodec.decode(bytes(data))


def test_spec_lists_every_stream_kind():
    spec = Path(gscodec.formats.__file__).with_name("GSZ.md").read_text(encoding="utf-8")
    for codec in [*REGISTRY.values(), ImportanceCodec()]:
        assert f"`{codec.kind}`" in spec
