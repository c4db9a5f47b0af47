"""The entropy-coding layer: binarization, tables with exactly specified probabilities, ANS."""

from __future__ import annotations

import numpy as np
import pytest

from gscodec.codec.entropy import (
    TOTAL,
    AnsDecoder,
    AnsEncoder,
    bit_length,
    expand_table,
    join,
    raw_bits_of,
    split,
    table_from_counts,
    unzigzag,
    zigzag,
)
from gscodec.formats.errors import ContainerError


def test_zigzag_round_trips_extremes():
    e = np.array([0, -1, 1, -2, 2, 1 << 40, -(1 << 40), (1 << 63) - 1, -(1 << 63)], np.int64)
    z = zigzag(e)
    assert z[:5].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(unzigzag(z), e)


def test_bit_length_is_exact_near_powers_of_two():
    vals = [0, 1, 2, 3, 4, (1 << 52) - 1, 1 << 52, (1 << 53) + 1, (1 << 63) - 1, (1 << 64) - 1]
    z = np.array(vals, dtype=np.uint64)
    assert bit_length(z).tolist() == [int(v).bit_length() for v in vals]
    assert bit_length(z[:5]).tolist() == [0, 1, 2, 2, 3]


@pytest.mark.parametrize(("t", "m"), [(0, 0), (2, 2), (4, 1), (8, 3), (12, 0)])
def test_split_join_round_trip(t, m):
    rng = np.random.default_rng(t * 10 + m)
    z = np.concatenate([
        np.arange(0, 300, dtype=np.uint64),
        rng.integers(0, 1 << 62, 1000, dtype=np.uint64),
        np.array([(1 << 63) - 1, 1 << t, (1 << t) - 1 if t else 0], dtype=np.uint64),
    ])
    sym, nraw, raw = split(z, t, m)
    assert (sym[z < (1 << t)] == z[z < (1 << t)].astype(np.int64)).all()
    np.testing.assert_array_equal(raw_bits_of(sym, t, m), nraw)
    assert (raw < (np.uint64(1) << nraw.astype(np.uint64))).all()
    np.testing.assert_array_equal(join(sym, raw, t, m), z)


def test_tables_give_every_used_symbol_weight_and_sum_exactly():
    counts = np.array([0, 5, 0, 1_000_000, 3, 0, 0])
    q = table_from_counts(counts)
    assert q.size == 5  # trimmed after the last used symbol
    assert (q[[1, 3, 4]] > 0).all() and q[0] == 0
    f = expand_table(q)
    assert f.sum() == TOTAL - q.size
    assert (f >= 0).all() and np.array_equal(f, np.floor(f))


def test_coded_length_matches_the_specified_probabilities():
    """The spec says symbol i costs -log2((f_i + 1) / 2**24); the ANS output must agree."""
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    sym = rng.choice(5, size=200_000, p=p)
    q = table_from_counts(np.bincount(sym))
    ideal = -np.log2((expand_table(q)[sym] + 1) / TOTAL).sum()
    enc = AnsEncoder()
    enc.categorical(sym, q)
    bits = 8 * len(enc.to_bytes())
    assert ideal <= bits <= ideal + 64


def test_ans_round_trip_of_mixed_operations():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 40, 5000)
    b = rng.integers(0, 3, 700)
    raw = [(rng.integers(0, 1 << bits, 300, dtype=np.uint64), bits) for bits in (1, 7, 16, 17, 40)]
    enc = AnsEncoder()
    qa, qb = table_from_counts(np.bincount(a)), table_from_counts(np.bincount(b))
    enc.categorical(a, qa)
    for values, bits in raw:
        enc.raw_bits(values, bits)
    enc.categorical(b, qb)
    enc.categorical(np.zeros(10, np.int64), np.array([7]))  # one-symbol alphabet: free
    data = enc.to_bytes()
    dec = AnsDecoder(data)
    np.testing.assert_array_equal(dec.categorical(a.size, qa), a)
    for values, bits in raw:
        np.testing.assert_array_equal(dec.raw_bits(values.size, bits), values)
    np.testing.assert_array_equal(dec.categorical(b.size, qb), b)
    np.testing.assert_array_equal(dec.categorical(10, np.array([7])), np.zeros(10))
    dec.finish()


def test_decoder_detects_leftover_or_malformed_data():
    enc = AnsEncoder()
    q = np.array([3, 1])
    enc.categorical(np.array([0, 1, 0, 0, 1] * 50), q)
    data = enc.to_bytes()
    dec = AnsDecoder(data)
    dec.categorical(10, q)  # stops early
    with pytest.raises(ContainerError, match="left over"):
        dec.finish()
    with pytest.raises(ContainerError, match="whole number of words"):
        AnsDecoder(data[:-1])
    with pytest.raises(ContainerError, match="invalid ANS"):
        AnsDecoder(data[:-4] + b"\x00\x00\x00\x00")


def test_invalid_tables_are_refused():
    with pytest.raises(ContainerError):
        expand_table(np.zeros(3, np.int64))
    with pytest.raises(ContainerError):
        expand_table(np.zeros(0, np.int64))
