"""The channel coder: every predictor and context round-trips; the encoder's choices help."""

from __future__ import annotations

import numpy as np
import pytest

from gscodec.codec.channels import ChannelPlan, GroupSpec, decode_group, encode_group
from gscodec.codec.entropy import AnsDecoder, AnsEncoder, VarintReader
from gscodec.formats.errors import ContainerError


def _round_trip(X, spec, features=None, plans=None):
    features = features or {}
    enc, tables = AnsEncoder(), bytearray()
    meta = encode_group(X, spec, features, enc, tables, plans=plans)
    data = enc.to_bytes()
    dec = AnsDecoder(data)
    reader = VarintReader(bytes(tables))
    out = decode_group(X.shape[1], meta, X.shape[0], spec, features, dec, reader)
    dec.finish()
    assert reader.at_end()
    np.testing.assert_array_equal(out, X)
    # the streaming decode (rows handed over one by one, kept only while later channels read
    # them) gives the same rows
    rows: dict[int, np.ndarray] = {}
    dec = AnsDecoder(data)
    assert decode_group(X.shape[1], meta, X.shape[0], spec, features, dec,
                        VarintReader(bytes(tables)), sink=lambda c, r: rows.setdefault(c, r.copy())
                        ) is None
    dec.finish()
    assert sorted(rows) == list(range(X.shape[0]))
    for c, r in rows.items():
        np.testing.assert_array_equal(r, X[c])
    return meta, len(data) + len(tables)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.integers(-3, 4, n))  # smooth along the order
    a = base + rng.integers(-2, 3, n)
    b = a * 2 + rng.integers(-1, 2, n)
    c = rng.integers(-5000, 5000, n) * (rng.random(n) < 0.1)
    return np.stack([a, b, c]).astype(np.int32)


PLANS = [
    ChannelPlan("none", t=3, m=2),
    ChannelPlan("chan", ref=0, t=2, m=1),
    ChannelPlan("prev", t=4, m=0),
    ChannelPlan("prevchan", ref=1, t=0, m=0),
    ChannelPlan("none", ctx="val", cref=0, edges=(-10, 0, 10), t=5, m=2),
    ChannelPlan("prev", ctx="mag", cref=0, edges=(1, 3), t=2, m=2),
    ChannelPlan("chan", ref=1, ctx="act", edges=(2, 8, 40), t=6, m=3),
    ChannelPlan("none", ctx="feat", feat="f", edges=(0,), off=7, t=1, m=1),
]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.pred}-{p.ctx}")
def test_every_predictor_and_context_round_trips(plan):
    X = _data(3000, seed=1)
    X = np.vstack([X, X[2:3]])  # channel 3 may refer to channels 0..2
    spec = GroupSpec.simple(4, features=("f",))
    feats = {"f": np.random.default_rng(2).integers(-3, 3, 3000)}
    plans = [ChannelPlan("none", t=8, m=2)] * 3 + [plan]
    _round_trip(X, spec, feats, plans)


@pytest.mark.parametrize("n", [0, 1, 2, 5000])
def test_chosen_plans_round_trip_for_any_count(n):
    X = _data(n, seed=n)
    spec = GroupSpec.simple(3, features=("f",), use_act=True)
    _round_trip(X, spec, {"f": np.arange(n) % 7})


def test_encoder_choice_beats_plain_coding_on_correlated_data():
    X = _data(20000, seed=3)
    spec = GroupSpec.simple(3)
    meta, chosen = _round_trip(X, spec)
    _, plain = _round_trip(X, spec, plans=[ChannelPlan("none", t=12, m=2)] * 3)
    assert meta[1]["p"] in ("chan", "prevchan")  # b = 2a + noise: predicted from a
    assert chosen < 0.8 * plain


def test_extreme_int32_values_round_trip():
    lim = (1 << 31) - 1
    X = np.array([[lim, -lim, 0, lim, -lim], [-lim, lim, lim, 0, 1]], np.int32)
    _round_trip(X, GroupSpec.simple(2))


@pytest.mark.parametrize(
    "bad",
    [
        [{"p": "sideways", "c": "none", "o": 0, "t": 0, "m": 0}],
        [{"p": "chan", "r": 0, "c": "none", "o": 0, "t": 0, "m": 0}],  # ref to itself
        [{"p": "none", "c": "act", "e": [1], "o": 0, "t": 0, "m": 0}],  # act on channel 0
        [{"p": "none", "c": "feat", "f": "missing", "e": [1], "o": 0, "t": 0, "m": 0}],
        [{"p": "none", "c": "val", "cr": 0, "e": [1], "o": 0, "t": 0, "m": 0}],
        [{"p": "none", "c": "none", "o": 0, "t": 99, "m": 0}],
        [{"p": "none", "c": "none", "o": 0, "t": 2, "m": 3}],
        "not a list",
    ],
)
def test_bad_plans_are_refused(bad):
    spec = GroupSpec.simple(1)
    with pytest.raises(ContainerError, match="metadata"):
        decode_group(10, bad, 1, spec, {}, AnsDecoder(b""), VarintReader(b""))
