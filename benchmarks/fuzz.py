"""Fuzz the .gsz decoder and the PLY reader: mutated inputs must decode or raise the library's
documented error, never another exception, never hang, never use much memory.

    python benchmarks/fuzz.py --cases 10000 --ply-cases 2000 [--seed 0] [--time-limit 2]
        [--mem-limit-mb 256] [--out benchmarks/results/fuzz]
    python benchmarks/fuzz.py --replay gsz:SEED [--write FILE]   # one case, with its traceback

Every case runs in this process. The .gsz corpus is the valid conformance files
(formats/conformance/valid); the PLY corpus is a few small PLYs built here (binary of both
endiannesses, ASCII, an element before the vertices, a list element). Each case draws its own
seed (``seed * 1_000_003 + i``), applies one to three mutations (bit flips, byte and integer
overwrites aimed at the header and table, truncation, extension, deletion, duplication and
splicing of chunks, also across files; for .gsz also metadata edits, payload edits and stream
table shuffles behind valid checksums) and, for most byte-level .gsz mutations, recomputes the
file length and every checksum so that the parsers behind them are reached.

Outcomes: ``ok`` (decoded), the error class and its message with numbers and names blanked, or a
failure: ``unexpected`` (an exception that is not ContainerError for .gsz / PlyError for PLY),
``undetected`` (a mutation without recomputed checksums that decoded to other values than the
unmutated file), ``hang`` (over the per-case time limit; SIGALRM interrupts Python code, and a
case stuck in C is counted when it returns) and ``memory`` (a case whose traced peak allocation,
tracemalloc, passes the limit; numpy buffers are traced, allocations inside zstd and
constriction are not, so the process's peak RSS is reported too).

gsz cases call ``gscodec.decode(data, steps=0)`` (which also parses the side information, without
refining) and ``gscodec.inspect(data)``; PLY cases ``read_ply_arrays`` on a temporary file.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import random
import re
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
import tracemalloc
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import gscodec
from gscodec.formats.errors import ContainerError, PlyError
from gscodec.formats.gsz import Stream, decode_meta, encode_meta, read_container, write_container
from gscodec.formats.ply import read_ply_arrays, write_ply_file

HERE = Path(__file__).resolve().parent
CONFORMANCE = HERE.parent / "formats" / "conformance" / "valid"
HEADER, ENTRY = 32, 32
INTERESTING_INTS = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024,
                    4095, 4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63,
                    2**64 - 1]
INTERESTING_JSON = [None, -1, 0, 1, 2, 3, 4, 15, 16, 17, 63, 64, 4095, 4096, 65536, 2**28,
                    2**31, 2**62, 2**63, 10**12, -(2**62), 1e300, -1e300, 0.5, 1e-30, 1e-9,
                    "x", "none", "palette", "direct", "prev", [], {}, [1, 2, 3], [0] * 16, True,
                    False]


# ---------------------------------------------------------------------------------------------
# corpora


def gsz_corpus() -> list[bytes]:
    files = sorted(CONFORMANCE.glob("*.gsz"))
    if not files:
        raise SystemExit(f"no conformance files in {CONFORMANCE}")
    return [p.read_bytes() for p in files]


def _ply_bytes(g: gscodec.Gaussians, fmt: str = "binary_little_endian", *,
               prefix_element: bool = False, list_element: bool = False) -> bytes:
    import io

    buf = io.BytesIO()
    write_ply_file(buf, g.as_arrays())
    data = buf.getvalue()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    head = data[:end].decode("ascii").splitlines()
    columns = sum(line.startswith("property") for line in head)
    body = np.frombuffer(data[end:], "<f4").reshape(g.n, columns)
    extra_head: list[str] = []
    extra_body = b""
    if prefix_element:  # an element before the vertices (binary: skipped by size)
        extra_head = ["element camera 2", "property float fx", "property double fy"]
        extra_body = b"".join(struct.pack("<fd" if fmt != "binary_big_endian" else ">fd", 1, 2)
                              for _ in range(2))
    if list_element:  # a list element before the vertices: read through plyfile
        extra_head = ["element face 2", "property list uchar int vertex_indices"]
        order = ">" if fmt == "binary_big_endian" else "<"
        extra_body = (b"\x03" + struct.pack(order + "3i", 0, 1, 2)) * 2
    head = head[:2] + extra_head + head[2:]
    if fmt == "ascii":
        head[1] = "format ascii 1.0"
        if extra_body:
            raise ValueError("ASCII corpus files have no extra elements")
        rows = "".join(" ".join(f"{v:.9g}" for v in row) + "\n" for row in body.tolist())
        return ("\n".join(head) + "\n").encode() + rows.encode()
    if fmt == "binary_big_endian":
        head[1] = "format binary_big_endian 1.0"
        body = body.astype(">f4")
    return ("\n".join(head) + "\n").encode() + extra_body + body.tobytes()


def ply_corpus() -> list[bytes]:
    from gscodec.synthetic import make_scene

    return [
        _ply_bytes(make_scene(4, sh_degree=1, seed=1)),
        _ply_bytes(make_scene(3, sh_degree=0, seed=2), "binary_big_endian"),
        _ply_bytes(make_scene(3, sh_degree=0, seed=3), "ascii"),
        _ply_bytes(make_scene(2, sh_degree=0, seed=4), prefix_element=True),
        _ply_bytes(make_scene(2, sh_degree=0, seed=5), list_element=True),
        _ply_bytes(make_scene(0, sh_degree=0, seed=6)),
    ]


# ---------------------------------------------------------------------------------------------
# mutations


def fix_checksums(b: bytes) -> bytes:
    """Set file_length to the real length and recompute every checksum that can be (payload CRCs
    of entries inside the file, then the header CRC)."""
    b = bytearray(b)
    if len(b) < HEADER:
        return bytes(b)
    struct.pack_into("<Q", b, 20, len(b))
    count = struct.unpack_from("<I", b, 16)[0]
    end = HEADER + ENTRY * count
    if count > 4096 or end > len(b):
        return bytes(b)
    for i in range(count):
        pos = HEADER + ENTRY * i
        off, length = struct.unpack_from("<QQ", b, pos + 8)
        if off <= len(b) and length <= len(b) - off:
            struct.pack_into("<I", b, pos + 24, zlib.crc32(bytes(b[off : off + length])))
    struct.pack_into("<I", b, 28, zlib.crc32(bytes(b[:28]) + bytes(b[HEADER:end])))
    return bytes(b)


def _chunk(rng: random.Random, b: bytearray, max_len: int = 64) -> tuple[int, int]:
    a = rng.randrange(len(b))
    return a, min(len(b), a + rng.randrange(1, max_len + 1))


def _table_end(b: bytes | bytearray) -> int:
    if len(b) < HEADER:
        return len(b)
    return min(len(b), HEADER + ENTRY * min(struct.unpack_from("<I", b, 16)[0], 64))


def mutate_bytes(rng: random.Random, b: bytearray, others: list[bytes], *,
                 aim_header: bool) -> str:
    """One byte-level mutation in place; returns its name."""
    if not b:
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        return "fill"
    hot = _table_end(b) if aim_header else len(b)
    pos = rng.randrange(hot if hot and rng.random() < 0.5 else len(b))
    op = rng.randrange(9)
    if op == 0:
        for _ in range(rng.choice([1, 1, 2, 4, 8])):
            p = rng.randrange(len(b))
            b[p] ^= 1 << rng.randrange(8)
        return "bitflip"
    if op == 1:
        b[pos] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        return "byte"
    if op == 2:
        width = rng.choice([2, 4, 8])
        value = rng.choice(INTERESTING_INTS + [len(b), len(b) - 1, len(b) + 1]) % (1 << 8 * width)
        if pos + width <= len(b):
            b[pos : pos + width] = value.to_bytes(width, "little")
        return f"int{8 * width}"
    if op == 3:
        del b[rng.randrange(len(b) + 1) :]
        return "truncate"
    if op == 4:
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        return "extend"
    if op == 5:
        a, e = _chunk(rng, b)
        del b[a:e]
        return "delete"
    if op == 6:
        a, e = _chunk(rng, b)
        piece = bytes(b[a:e])
        p = rng.randrange(len(b) + 1)
        b[p:p] = piece
        return "duplicate"
    if op == 7:
        src = bytearray(rng.choice(others)) or bytearray(b"\x00")
        a, e = _chunk(rng, src)
        p, q = _chunk(rng, b)
        b[p:q] = src[a:e]
        return "splice"
    a, e = _chunk(rng, b, 16)
    b[a:e] = bytes(rng.randrange(256) for _ in range(e - a))
    return "random-bytes"


def _json_paths(o: Any, p: tuple = ()):
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _json_paths(v, (*p, k))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from _json_paths(v, (*p, i))
    if p:
        yield p


def mutate_meta(rng: random.Random, data: bytes) -> bytes:
    c = read_container(data)
    meta = decode_meta(c.streams[0].payload)
    for _ in range(rng.choice([1, 1, 2, 3])):
        paths = list(_json_paths(meta))
        if not paths:
            break
        path = rng.choice(paths)
        parent = meta
        for k in path[:-1]:
            parent = parent[k]
        r = rng.random()
        if r < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        elif r < 0.25 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[path[-1]]))
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(INTERESTING_JSON))
    return write_container([Stream("META", 1, True, encode_meta(meta))] + c.streams[1:])


def mutate_payload(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    c = read_container(data)
    streams = [Stream(s.kind, s.codec, s.required, s.payload) for s in c.streams]
    i = rng.randrange(1, len(streams)) if len(streams) > 1 else 0
    b = bytearray(streams[i].payload)
    for _ in range(rng.choice([1, 1, 2])):
        mutate_bytes(rng, b, others, aim_header=False)
    streams[i] = Stream(streams[i].kind, streams[i].codec, streams[i].required, bytes(b))
    return write_container(streams)


def shuffle_streams(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    c = read_container(data)
    streams = list(c.streams[1:])
    r = rng.random()
    if r < 0.3 and streams:
        del streams[rng.randrange(len(streams))]
    elif r < 0.6:
        rng.shuffle(streams)
    else:  # a stream from another file in place of this one's
        other = read_container(rng.choice(others))
        donor = rng.choice(other.streams[1:] or other.streams)
        streams = [donor if s.kind == donor.kind else s for s in streams]
        if all(s.kind != donor.kind for s in streams) and donor.kind != "META":
            streams.append(donor)
    return write_container([c.streams[0]] + streams)


def gsz_case(case_seed: int, corpus: list[bytes]) -> tuple[bytes, int, bool, str]:
    """(mutated bytes, corpus index, whether checksums were recomputed, mutation names)."""
    rng = random.Random(case_seed)
    k = rng.randrange(len(corpus))
    data = corpus[k]
    r = rng.random()
    if r < 0.15:
        return mutate_meta(rng, data), k, True, "meta"
    if r < 0.30:
        return mutate_payload(rng, data, corpus), k, True, "payload"
    if r < 0.35:
        return shuffle_streams(rng, data, corpus), k, True, "streams"
    b = bytearray(data)
    names = [mutate_bytes(rng, b, corpus, aim_header=True)
             for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    fixed = rng.random() < 0.7
    return (fix_checksums(b) if fixed else bytes(b)), k, fixed, "+".join(names)


PLY_WORDS = [b"ply", b"format", b"element", b"property", b"list", b"uchar", b"int", b"uint",
             b"float", b"double", b"char", b"short", b"vertex", b"face", b"end_header",
             b"comment", b"obj_info", b"0", b"1", b"-1", b"2", b"10000000", b"4294967296",
             b"1000000000000", b"99999999999999999999", b"ascii", b"binary_big_endian",
             b"binary_little_endian", b"1.0", b"2.0", b"x", b"f_rest_0", b"f_rest_45",
             b"opacity", b"rot_0", b"scale_2", b"nan", b"inf", b"-inf", b"1e39", b"", b" ",
             b"\t", b"\r", b"\x00", b"\xff"]


def ply_case(case_seed: int, corpus: list[bytes]) -> tuple[bytes, int, str]:
    rng = random.Random(case_seed)
    k = rng.randrange(len(corpus))
    b = bytearray(corpus[k])
    names = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        he = b.find(b"end_header")
        if rng.random() < 0.45 and he > 0:
            lines = bytes(b[:he]).split(b"\n")
            i = rng.randrange(len(lines))
            r = rng.random()
            if r < 0.6:
                words = lines[i].split(b" ")
                words[rng.randrange(len(words))] = rng.choice(PLY_WORDS)
                lines[i] = b" ".join(words)
                names.append("header-word")
            elif r < 0.75:
                lines.insert(rng.randrange(len(lines) + 1), lines[rng.randrange(len(lines))])
                names.append("header-dup-line")
            elif r < 0.9 and len(lines) > 1:
                del lines[i]
                names.append("header-del-line")
            else:
                j = rng.randrange(len(lines))
                lines[i], lines[j] = lines[j], lines[i]
                names.append("header-swap-lines")
            b = bytearray(b"\n".join(lines)) + b[he:]
        elif rng.random() < 0.3 and b:
            body = b.find(b"end_header\n") + 11
            if 10 < body < len(b) and rng.random() < 0.5:  # numbers in ASCII bodies
                p = rng.randrange(body, len(b))
                b[p:p] = rng.choice(PLY_WORDS[17:])
                names.append("body-word")
            else:
                del b[rng.randrange(len(b) + 1) :]
                names.append("truncate")
        else:
            names.append(mutate_bytes(rng, b, corpus, aim_header=False))
    return bytes(b), k, "+".join(names)


# ---------------------------------------------------------------------------------------------
# running


class _Timeout(BaseException):  # noqa: N818 - not an error of the code under test
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def _category(e: BaseException) -> str:
    msg = str(e)
    msg = re.sub(r"^\S*?\.ply: ", "", msg)  # the PLY reader prefixes the path
    msg = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", msg)
    msg = re.sub(r"0x[0-9a-f]+|\d+(\.\d+)?(e[-+]?\d+)?", "N", msg)
    return f"{type(e).__name__}: {msg[:70]}"


def _digest(g: gscodec.Gaussians) -> str:
    h = hashlib.sha256()
    for a in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _run_one(fn, time_limit: float,
             caught: Counter[str]) -> tuple[Any, BaseException | None, float, int]:
    """(result, exception, seconds, traced peak bytes) of ``fn()`` under the time limit; the
    warnings it emits are counted in ``caught``."""
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result, error = None, None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        t0 = time.perf_counter()
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - classified by the caller
            error = e
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        seconds = time.perf_counter() - t0
    for w in seen:
        caught[f"{w.category.__name__}: {w.message}"[:120]] += 1
    peak = tracemalloc.get_traced_memory()[1] - base if tracing else 0
    return result, error, seconds, max(0, peak)


class Tally:
    def __init__(self) -> None:
        self.cases = 0
        self.outcomes: Counter[str] = Counter()
        self.mutations: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.max_seconds = (0.0, -1)
        self.max_peak = (0, -1)
        self.seconds = 0.0
        self.rss_after_warmup = 0

    def add(self, seed: int, kind: str, outcome: str, seconds: float, peak: int,
            failure: dict[str, Any] | None = None) -> None:
        self.cases += 1
        self.outcomes[outcome] += 1
        self.seconds += seconds
        self.max_seconds = max(self.max_seconds, (seconds, seed))
        self.max_peak = max(self.max_peak, (peak, seed))
        if failure is not None:
            self.failures.append({"seed": seed, "replay": f"{kind}:{seed}", **failure})

    def report(self) -> dict[str, Any]:
        fails = Counter(f["failure"] for f in self.failures)
        return {
            "cases": self.cases,
            "failures": len(self.failures),
            "unexpected": fails["unexpected"],
            "undetected": fails["undetected"],
            "hangs": fails["hang"],
            "memory": fails["memory"],
            "failure_cases": self.failures[:50],
            "outcomes": dict(self.outcomes.most_common()),
            "mutations": dict(self.mutations.most_common()),
            "warnings": dict(self.warnings.most_common()),
            "seconds_total": round(self.seconds, 2),
            "rss_after_warmup_bytes": self.rss_after_warmup,
            "slowest_case": {"seconds": round(self.max_seconds[0], 4), "seed": self.max_seconds[1]},
            "largest_case_peak": {"bytes": self.max_peak[0], "seed": self.max_peak[1]},
        }


def run_gsz(cases: int, seed: int, *, time_limit: float = 2.0, mem_limit: int = 256 << 20,
            corpus: list[bytes] | None = None) -> dict[str, Any]:
    signal.signal(signal.SIGALRM, _alarm)
    corpus = corpus or gsz_corpus()
    # steps=0 parses the side information: this also imports torch and the renderer before the
    # timed cases (an import interrupted by the time limit would break every later case)
    originals = [_digest(gscodec.decode(d, steps=0)) for d in corpus]
    tally = Tally()
    tally.rss_after_warmup = _rss()
    for i in range(cases):
        case_seed = seed * 1_000_003 + i
        data, k, fixed, names = gsz_case(case_seed, corpus)
        tally.mutations[names.split("+")[0]] += 1

        def work(data: bytes = data) -> str:
            g = gscodec.decode(data, steps=0)
            gscodec.inspect(data)
            return _digest(g)

        digest, err, seconds, peak = _run_one(work, time_limit, tally.warnings)
        outcome, failure = _classify(err, ContainerError, seconds, peak, time_limit, mem_limit,
                                     names)
        if outcome == "ok" and not fixed and digest != originals[k] and data != corpus[k]:
            failure = {"failure": "undetected", "mutation": names}
        tally.add(case_seed, "gsz", outcome, seconds, peak, failure)
    return tally.report()


def _classify(err: BaseException | None, expected: type[Exception], seconds: float, peak: int,
              time_limit: float, mem_limit: int, names: str) -> tuple[str, dict[str, Any] | None]:
    """A case's outcome ("ok", the documented error's category, "hang", "unexpected ...") and
    its failure record, if it failed."""
    failure: dict[str, Any] | None = None
    if isinstance(err, _Timeout) or seconds > time_limit:
        outcome, failure = "hang", {"failure": "hang", "seconds": seconds}
    elif err is None:
        outcome = "ok"
    elif isinstance(err, expected):
        outcome = _category(err)
    elif isinstance(err, KeyboardInterrupt):
        raise err
    else:
        outcome = "unexpected " + type(err).__name__
        failure = {"failure": "unexpected", "error": repr(err)[:300], "mutation": names,
                   "where": traceback.format_tb(err.__traceback__)[-1].strip()[:300]}
    if failure is None and peak > mem_limit:
        failure = {"failure": "memory", "peak_bytes": peak}
    return outcome, failure


def run_ply(cases: int, seed: int, *, time_limit: float = 2.0, mem_limit: int = 256 << 20,
            folder: Path | None = None) -> dict[str, Any]:
    signal.signal(signal.SIGALRM, _alarm)
    corpus = ply_corpus()
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(folder or tmp) / "case.ply"
        for i in range(cases):
            case_seed = seed * 1_000_003 + i
            data, _, names = ply_case(case_seed, corpus)
            tally.mutations[names.split("+")[0]] += 1
            path.write_bytes(data)
            _, err, seconds, peak = _run_one(lambda: read_ply_arrays(path), time_limit,
                                             tally.warnings)
            outcome, failure = _classify(err, PlyError, seconds, peak, time_limit, mem_limit,
                                         names)
            tally.add(case_seed, "ply", outcome, seconds, peak, failure)
    return tally.report()


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def replay(spec: str, write: Path | None) -> int:
    kind, _, s = spec.partition(":")
    case_seed = int(s)
    if kind == "gsz":
        data, k, fixed, names = gsz_case(case_seed, gsz_corpus())
        print(f"gsz case {case_seed}: corpus file {k}, mutations {names}, checksums fixed: "
              f"{fixed}, {len(data)} bytes")
    elif kind == "ply":
        data, k, names = ply_case(case_seed, ply_corpus())
        print(f"ply case {case_seed}: corpus file {k}, mutations {names}, {len(data)} bytes")
    else:
        raise SystemExit("--replay takes gsz:SEED or ply:SEED")
    if write:
        write.write_bytes(data)
        print(f"wrote {write}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"case.{kind}"
        path.write_bytes(data)
        if kind == "gsz":
            g = gscodec.decode(path, steps=0)
            print("decoded", g.n, "Gaussians")
        else:
            print("read", read_ply_arrays(path)["means"].shape[0], "Gaussians")
    return 0


def markdown(res: dict[str, Any]) -> str:
    out = [f"# Fuzzing the decoder and the PLY reader ({res['date']})", "",
           f"Command: `{res['command']}`", "",
           f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, "
           f"Python {res['machine']['python']}, numpy {res['machine']['numpy']}; in-process, "
           f"per-case time limit {res['time_limit_s']} s, per-case memory limit "
           f"{res['mem_limit_mb']} MiB (tracemalloc peak).", "",
           "| target | cases | unexpected exceptions | undetected corruptions | hangs | "
           "over memory limit | slowest case | largest traced peak | time |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("gsz", "ply"):
        r = res.get(name)
        if not r:
            continue
        out.append(f"| {name} | {r['cases']:,} | {r['unexpected']} | {r['undetected']} | "
                   f"{r['hangs']} | {r['memory']} | {r['slowest_case']['seconds']:.3f} s "
                   f"(seed {r['slowest_case']['seed']}) | "
                   f"{r['largest_case_peak']['bytes'] / 2**20:.1f} MiB "
                   f"(seed {r['largest_case_peak']['seed']}) | {r['seconds_total']:.0f} s |")
    warm = res.get("gsz", {}).get("rss_after_warmup_bytes", 0)
    out += ["", f"Process peak RSS (ru_maxrss): {res['rss_start_bytes'] / 2**20:.0f} MiB at the "
            f"start, {warm / 2**20:.0f} MiB after the warm-up (torch and the renderer imported, "
            f"corpus decoded once), {res['rss_end_bytes'] / 2**20:.0f} MiB at the end.", ""]
    for name in ("gsz", "ply"):
        r = res.get(name)
        if not r:
            continue
        out += [f"## {name}: outcomes", "", "| outcome | cases |", "|---|---:|"]
        items = list(r["outcomes"].items())
        for k, v in items[:30]:
            out.append(f"| {k.replace('|', '/')} | {v:,} |")
        if len(items) > 30:
            out.append(f"| ({len(items) - 30} other messages) | "
                       f"{sum(v for _, v in items[30:]):,} |")
        out += ["", "Mutations (first of each case): "
                + ", ".join(f"{k} {v}" for k, v in r["mutations"].items()), ""]
        if r["warnings"]:
            out += ["Warnings (not failures): "
                    + "; ".join(f"{k} ({v})" for k, v in r["warnings"].items()), ""]
        if r["failure_cases"]:
            out += ["Failures (replay with `python benchmarks/fuzz.py --replay KIND:SEED`):", ""]
            out += [f"- `{f['replay']}`: {f['failure']} {f.get('error', '')}"
                    for f in r["failure_cases"]]
            out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000, help=".gsz cases")
    ap.add_argument("--ply-cases", type=int, default=0, help="PLY cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=2.0, help="seconds per case")
    ap.add_argument("--mem-limit-mb", type=float, default=256, help="traced peak per case")
    ap.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    ap.add_argument("--replay", help="run one case, gsz:SEED or ply:SEED, with its traceback")
    ap.add_argument("--write", type=Path, help="with --replay: save the case's input here")
    args = ap.parse_args(argv)
    if args.replay:
        return replay(args.replay, args.write)
    sys.path.insert(0, str(HERE))
    from common import machine

    mem_limit = int(args.mem_limit_mb * 2**20)
    tracemalloc.start()
    rss_start = _rss()
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python benchmarks/fuzz.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "seed": args.seed,
        "time_limit_s": args.time_limit,
        "mem_limit_mb": args.mem_limit_mb,
    }
    if args.cases:
        res["gsz"] = run_gsz(args.cases, args.seed, time_limit=args.time_limit,
                             mem_limit=mem_limit)
    if args.ply_cases:
        res["ply"] = run_ply(args.ply_cases, args.seed, time_limit=args.time_limit,
                             mem_limit=mem_limit)
    tracemalloc.stop()
    res["rss_start_bytes"] = rss_start
    res["rss_end_bytes"] = _rss()
    res["elapsed_s"] = round(time.perf_counter() - t0, 1)
    text = markdown(res)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text + "\n")
    failed = sum(res[k]["failures"] for k in ("gsz", "ply") if k in res)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
