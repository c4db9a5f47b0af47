"""Mutated files with valid checksums (so that the parsers behind the CRCs are exercised) either
decode or raise the library's own errors: never another exception."""

from __future__ import annotations

import copy
import random

import pytest

import gscodec
from gscodec.formats.errors import GscodecError
from gscodec.formats.gsz import Stream, decode_meta, encode_meta, read_container, write_container
from gscodec.synthetic import make_scene


@pytest.fixture(scope="module")
def parts():
    data = gscodec.encode(make_scene(200, sh_degree=2, seed=1), quality=5)
    c = read_container(data)
    return c, decode_meta(c.streams[0].payload)


def _paths(o, p=()):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _paths(v, (*p, k))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _paths(v, (*p, i))
    if p:
        yield p


VALUES = [None, -1, 0, 1, 3, 15, 16, 63, 2**31, 2**62, -(2**62), 2**63, 1e300, -1e300, 0.5,
          1e-30, "x", [], {}, [1, 2, 3], True]


def test_mutated_metadata_gives_only_library_errors(parts):
    c, meta = parts
    rng = random.Random(0)
    paths = list(_paths(meta))
    for _ in range(400):
        m = copy.deepcopy(meta)
        p = rng.choice(paths)
        o = m
        for k in p[:-1]:
            o = o[k]
        o[p[-1]] = rng.choice(VALUES)
        data = write_container([Stream("META", 1, True, encode_meta(m))] + c.streams[1:])
        try:
            gscodec.decode(data)
        except GscodecError:
            pass


def test_mutated_payloads_give_only_library_errors(parts):
    c, _ = parts
    rng = random.Random(1)
    for _ in range(400):
        streams = [Stream(s.kind, s.codec, s.required, bytearray(s.payload)) for s in c.streams]
        s = rng.choice(streams[1:])
        for _ in range(rng.choice([1, 2, 5])):
            pos = rng.randrange(len(s.payload))
            if rng.random() < 0.7:
                s.payload[pos] ^= 1 << rng.randrange(8)
            else:
                del s.payload[pos : pos + rng.randrange(1, 20)]
        data = write_container([Stream(x.kind, x.codec, x.required, bytes(x.payload))
                                for x in streams])
        try:
            gscodec.decode(data)
        except GscodecError:
            pass
