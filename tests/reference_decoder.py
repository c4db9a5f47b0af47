"""A second .gsz decoder, written from formats/GSZ.md alone.

It shares no code with gscodec (no constriction, no numpy in the decoding logic): plain Python
integers, zlib for CRC-32, zstandard for the frames. It is slow and meant for small files; the
test suite checks that it decodes what gscodec encodes to the same Gaussians, which shows that
the specification is complete.
"""

from __future__ import annotations

import json
import math
import struct
import zlib

import zstandard

MAGIC = b"\x89GSZ\r\n\x1a\n"
SH_C0 = 0.28209479177387814
FEATURES = {
    "POSN": (),
    "IMPC": ("dens",),
    "SCAL": ("dens",),
    "ROTN": ("dens", "aniso"),
    "OPAC": ("dens", "aniso", "size"),
    "SHDC": ("dens", "opa"),
    "SHRS": ("opa", "dens"),
}


class Reject(Exception):
    pass


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


# --- section 2: layout -------------------------------------------------------------------------


CHUNKED = 1 << 16


def parse(data: bytes) -> dict[str, tuple[int, bool, bytes]]:
    return parse_with_flags(data)[0]


def parse_with_flags(data: bytes) -> tuple[dict[str, tuple[int, bool, bytes]], int]:
    if len(data) < 32 or data[:8] != MAGIC:
        raise Reject("header")
    major, _minor, flags, count, length, crc = struct.unpack_from("<HHIIQI", data, 8)
    if major != 1 or length != len(data) or count < 1 or 32 + 32 * count > length:
        raise Reject("header fields")
    if zlib.crc32(data[:28] + data[32 : 32 + 32 * count]) != crc or flags & 0xFFFF0000 & ~CHUNKED:
        raise Reject("header crc/flags")
    streams: dict[str, tuple[int, bool, bytes]] = {}
    spans = []
    for i in range(count):
        kind, codec, sflags, off, n, scrc, reserved = struct.unpack_from("<4sHHQQII", data,
                                                                         32 + 32 * i)
        name = kind.decode("ascii")
        if reserved or sflags & ~1 or off < 32 + 32 * count or off + n > length:
            raise Reject("entry")
        payload = data[off : off + n]
        if zlib.crc32(payload) != scrc or name in streams:
            raise Reject("entry crc")
        spans.append((off, off + n))
        streams[name] = (codec, bool(sflags & 1), payload)
    spans.sort()
    if any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)):
        raise Reject("overlap")
    if next(iter(streams)) != "META":
        raise Reject("meta first")
    return streams, flags


# --- section 5: tables, ANS, binarization, channels -------------------------------------------


class Tables:
    def __init__(self, blob: bytes) -> None:
        self.data = zstandard.ZstdDecompressor().decompress(blob)
        self.pos = 0

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    def table(self, limit: int) -> list[int]:
        a = self.varint()
        codes = list(self.data[self.pos : self.pos + a])
        self.pos += a
        if a > limit or a > 65536 or (a and (max(codes) > 248 or max(codes) == 0)):
            raise Reject("table")
        return codes


def model(codes: list[int]) -> tuple[list[int], list[int]]:
    q = [0 if c == 0 else (8 + (c - 1) % 8) << ((c - 1) // 8) for c in codes]
    a, s = len(q), sum(q)
    w = 2**24 - a
    f = [x * w // s for x in q]
    f[q.index(max(q))] += w - sum(f)
    p = [x + 1 for x in f]
    c = [0]
    for x in p:
        c.append(c[-1] + x)
    return p, c


class Ans:
    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise Reject("ans words")
        self.words = list(struct.unpack(f"<{len(data) // 4}I", data))
        self.state = 0
        if self.words:
            self.state = self.words.pop()
            if self.state == 0:
                raise Reject("ans zero word")
            if self.words:
                self.state = (self.state << 32) | self.words.pop()

    def symbol(self, p: list[int], c: list[int]) -> int:
        r = self.state & (2**24 - 1)
        lo, hi = 0, len(p) - 1
        while lo < hi:  # largest s with c[s] <= r
            mid = (lo + hi + 1) // 2
            if c[mid] <= r:
                lo = mid
            else:
                hi = mid - 1
        s = lo
        self.state = (self.state >> 24) * p[s] + (r - c[s])
        if self.state < 2**32 and self.words:
            self.state = (self.state << 32) | self.words.pop()
        return s

    def raw(self, n: int, bits: int) -> list[int]:
        out = [0] * n
        remaining = bits
        while remaining:
            chunk = min(16, remaining)
            remaining -= chunk
            size = 2 ** (24 - chunk)
            p = [size] * (2**chunk)
            c = [i * size for i in range(2**chunk + 1)]
            for i in range(n):
                out[i] = (out[i] << chunk) | self.symbol(p, c)
        return out

    def empty(self) -> bool:
        return self.state == 0 and not self.words


def limit(t: int, m: int, b: int) -> int:
    return 2**t if b <= t else 2**t + ((b - t) << m)


def z_of(s: int, raw: int, t: int, m: int) -> int:
    if s < 2**t:
        return s
    rel = s - 2**t
    k = (rel >> m) + t + 1
    return ((2**m + (rel & (2**m - 1))) << (k - 1 - m)) | raw


def nraw_of(s: int, t: int, m: int) -> int:
    return 0 if s < 2**t else ((s - 2**t) >> m) + t - m


def decode_symbols(n, ctx_bucket, nbuckets, t, m, bits, tables, ans) -> list[int]:
    """Step 2 of section 5.5 (and the POSN symbols): returns z per row."""
    syms = [0] * n
    for b in range(nbuckets):
        rows = [i for i in range(n) if ctx_bucket[i] == b]
        codes = tables.table(limit(t, m, bits))
        if (len(rows) > 0) != (len(codes) > 0):
            raise Reject("table/bucket mismatch")
        if len(codes) == 1:
            continue
        if rows:
            p, c = model(codes)
            for i in rows:
                syms[i] = ans.symbol(p, c)
    nraw = [nraw_of(s, t, m) for s in syms]
    raw = [0] * n
    for b in sorted({x for x in nraw if x > 0}):
        rows = [i for i in range(n) if nraw[i] == b]
        for i, v in zip(rows, ans.raw(len(rows), b), strict=True):
            raw[i] = v
    return [z_of(s, r, t, m) for s, r in zip(syms, raw, strict=True)]


def unzigzag(z: int) -> int:
    return (z >> 1) ^ -(z & 1)


def decode_group(n, nch, plans, features, allowed, tables, ans) -> list[list[int]]:
    if not isinstance(plans, list) or len(plans) != nch:
        raise Reject("plans")
    X: list[list[int]] = []
    E: list[list[int]] = []
    for ch, plan in enumerate(plans):
        kind, ctx = plan["p"], plan["c"]
        edges = plan.get("e", [])
        if ctx == "none":
            v = [0] * n
        elif ctx == "val":
            v = X[plan["cr"]]
        elif ctx == "mag":
            v = [min(abs(x), 65535) for x in E[plan["cr"]]]
        elif ctx == "act":
            v = [sum(abs(E[j][i]) for j in range(ch)) for i in range(n)]
        else:
            if plan["f"] not in allowed:
                raise Reject("feature")
            v = features[plan["f"]]
        bucket = [sum(1 for e in edges if e < x) for x in v]
        z = decode_symbols(n, bucket, len(edges) + 1, plan["t"], plan["m"], 34, tables, ans)
        e = [unzigzag(x) for x in z]
        r = [x + plan["o"] for x in e]
        if kind in ("prev", "prevchan"):
            acc, out = 0, []
            for x in r:
                acc += x
                out.append(acc)
            r = out
        if kind in ("chan", "prevchan"):
            r = [a + b for a, b in zip(r, X[plan["r"]], strict=True)]
        if any(abs(x) > 2**31 - 1 for x in r):
            raise Reject("range")
        X.append(r)
        E.append(e)
    return X


def decode_matrix(meta, payload, n, nch, features, allowed) -> list[list[int]]:
    (blob_len,) = struct.unpack_from("<I", payload, 0)
    tables = Tables(payload[4 : 4 + blob_len])
    ans = Ans(payload[4 + blob_len :])
    if meta["mode"] == "direct":
        X = decode_group(n, nch, meta["plans"], features, allowed, tables, ans)
    else:
        k = meta["k"]
        pal = decode_group(k, nch, meta["palette"], {}, (), tables, ans)
        idx = decode_group(n, 1, meta["index"], features, allowed, tables, ans)[0]
        if any(not 0 <= i < k for i in idx):
            raise Reject("index")
        X = [[col[i] for i in idx] for col in pal]
    if tables.pos != len(tables.data) or not ans.empty():
        raise Reject("leftovers")
    return X


def decode_attribute(meta, payload, n, nch, features, allowed):
    """A matrix with or without per-class steps (section 5.7): the integers of every row and
    each row's step multiplier."""
    if "mult" not in meta:
        return decode_matrix(meta, payload, n, nch, features, allowed), [1] * n
    if "imp" not in features:
        raise Reject("per-class steps without classes")
    mult, sizes, parts = meta["mult"], meta["sizes"], meta["parts"]
    k = len(mult)
    cls = features["imp"]
    if not 1 <= k <= 16 or any(not 1 <= x <= 64 for x in mult) or any(c >= k for c in cls):
        raise Reject("mult")
    if len(sizes) != k or len(parts) != k or sum(sizes) != len(payload):
        raise Reject("sizes")
    X = [[0] * n for _ in range(nch)]
    mults = [0] * n
    pos = 0
    for c in range(k):
        rows = [i for i in range(n) if cls[i] == c]
        sub = {f: [v[i] for i in rows] for f, v in features.items()}
        Xc = decode_matrix(parts[c], payload[pos : pos + sizes[c]], len(rows), nch, sub, allowed)
        pos += sizes[c]
        for j, i in enumerate(rows):
            mults[i] = mult[c]
            for ch in range(nch):
                X[ch][i] = Xc[ch][j]
    return X, mults


# --- section 6: attributes --------------------------------------------------------------------


def decode_transformed(meta, payload, n, nch, features) -> list[list[float]]:
    """6.6a: per row its nch SH-rest values, from the basis and the integer components."""
    k = meta["components"]
    if meta.get("transform") != "klt" or not meta["step"] > 0 or not 1 <= k <= nch:
        raise Reject("transform metadata")
    (blob_len,) = struct.unpack_from("<I", payload, 0)
    if 4 + blob_len > len(payload):
        raise Reject("basis past the end")
    raw = zstandard.ZstdDecompressor().decompress(payload[4 : 4 + blob_len])
    if len(raw) != 2 * nch * k:
        raise Reject("basis size")
    B = [list(struct.unpack_from(f"<{k}h", raw, 2 * k * r)) for r in range(nch)]
    X, mu = decode_attribute(meta, payload[4 + blob_len :], n, k, features, FEATURES["SHRS"])
    rows = []
    for i in range(n):
        unit = (meta["step"] * mu[i]) / 16384
        rows.append([f32(sum(B[r][t] * X[t][i] for t in range(k)) * unit) for r in range(nch)])
    return rows



def morton_decode(code: int) -> tuple[int, int, int]:
    out = [0, 0, 0]
    for j in range(21):
        for axis in range(3):
            out[axis] |= ((code >> (3 * j + axis)) & 1) << j
    return out[0], out[1], out[2]


def decode(data: bytes) -> dict[str, list]:
    streams, flags = parse_with_flags(data)
    codec, _, payload = streams["META"]
    meta = json.loads(zstandard.ZstdDecompressor().decompress(payload))
    if meta["format"] != "gsz":
        raise Reject("format")
    if flags & CHUNKED:
        return decode_chunked(streams, meta)
    for kind, (_, required, _) in streams.items():
        if kind not in FEATURES and kind != "META" and required:
            raise Reject("unknown required stream")
    n, d = meta["n"], meta["sh_degree"]
    sm = meta["streams"]
    features: dict[str, list[int]] = {}

    # positions
    pm = sm["POSN"]
    _, _, payload = streams["POSN"]
    (blob_len,) = struct.unpack_from("<I", payload, 0)
    tables, ans = Tables(payload[4 : 4 + blob_len]), Ans(payload[4 + blob_len :])
    gaps = decode_symbols(n, [0] * n, 1, pm["t"], pm["m"], 63, tables, ans)
    if tables.pos != len(tables.data) or not ans.empty():
        raise Reject("leftovers")
    codes, acc = [], 0
    for g in gaps:
        acc += g
        codes.append(acc)
    if codes and codes[-1] >= 2**63:
        raise Reject("codes")
    means = [[f32(o + q * pm["step"]) for o, q in zip(pm["origin"], morton_decode(c),
                                                      strict=True)] for c in codes]
    lengths = [0] + [(codes[i] - codes[i - 1]).bit_length() for i in range(1, n)]
    dens = []
    for i in range(n):
        lo, hi = max(0, i - 4), min(n, i + 5)
        cnt = hi - lo
        dens.append((2 * sum(lengths[lo:hi]) + cnt // 2) // cnt)
    features["dens"] = dens

    # importance classes
    if "IMPC" in streams:
        m = sm["IMPC"]
        cls = decode_matrix(m, streams["IMPC"][2], n, 1, features, FEATURES["IMPC"])[0]
        if not 1 <= m["k"] <= 16 or any(not 0 <= c < m["k"] for c in cls):
            raise Reject("class")
        features["imp"] = cls

    # log-scales
    m = sm["SCAL"]
    X, mu = decode_attribute(m, streams["SCAL"][2], n, 3, features, FEATURES["SCAL"])
    origin = m["origin"]
    if len(origin) != 3 or any(abs(o) > 1e6 for o in origin):
        raise Reject("origin")
    log_scales = [[f32(X[a][i] * (m["step"] * mu[i]) + origin[a]) for a in range(3)]
                  for i in range(n)]
    Y = [[x * mu[i] + round(origin[a] / m["step"]) for i, x in enumerate(X[a])]
         for a in range(3)]
    features["aniso"] = [max(Y[a][i] for a in range(3)) - min(Y[a][i] for a in range(3))
                         for i in range(n)]
    features["size"] = [Y[0][i] + Y[1][i] + Y[2][i] for i in range(n)]

    # rotations
    m = sm["ROTN"]
    X, mu = decode_attribute(m, streams["ROTN"][2], n, 4, features, FEATURES["ROTN"])
    quats = []
    for i in range(n):
        j = X[0][i]
        if not 0 <= j <= 3:
            raise Reject("rotation index")
        v = [X[k][i] * (m["step"] * mu[i]) for k in (1, 2, 3)]
        w = math.sqrt(max(0.0, 1.0 - ((v[0] * v[0] + v[1] * v[1]) + v[2] * v[2])))
        q = v[:j] + [w] + v[j:]
        quats.append([f32(x) for x in q])

    # opacity
    m = sm["OPAC"]
    k = decode_matrix(m, streams["OPAC"][2], n, 1, features, FEATURES["OPAC"])[0]
    levels = m["levels"]
    opacity = []
    for x in k:
        if not 0 <= x <= levels:
            raise Reject("opacity")
        a = min(max(x / levels, 1e-6), 1 - 1e-6)
        opacity.append(f32(math.log(a / (1 - a))))
    features["opa"] = k

    # colours
    m = sm["SHDC"]
    X, mu = decode_attribute(m, streams["SHDC"][2], n, 3, features, FEATURES["SHDC"])
    sh = [[[f32((X[c][i] * ((m["step"] / 255) * mu[i]) - 0.5) / SH_C0) for c in range(3)]]
          for i in range(n)]
    if d:
        m = sm["SHRS"]
        coeffs = m["coeffs"]
        if coeffs != (d + 1) ** 2 - 1:
            raise Reject("coeffs")
        codec, _, payload = streams["SHRS"]
        if codec == 2:
            for i, row in enumerate(decode_transformed(m, payload, n, 3 * coeffs, features)):
                sh[i] += [row[3 * j : 3 * j + 3] for j in range(coeffs)]
        elif codec == 1:
            X, mu = decode_attribute(m, payload, n, 3 * coeffs, features, FEATURES["SHRS"])
            for j in range(coeffs):
                band = 1 if j + 1 <= 3 else 2 if j + 1 <= 8 else 3
                step = m["steps"][band - 1]
                for i in range(n):
                    sh[i].append([f32(X[3 * j + c][i] * (step * mu[i])) for c in range(3)])
        else:
            raise Reject("SHRS codec")
    return {"means": means, "log_scales": log_scales, "quats": quats,
            "opacity_logits": opacity, "sh": sh}


# --- section 11: chunked files -----------------------------------------------------------------


def decode_chunked(streams: dict[str, tuple[int, bool, bytes]], meta: dict) -> dict[str, list]:
    for kind, (_, required, _) in streams.items():
        if kind not in ("META", "CTAB", "CHNK", "SIDE") and required:
            raise Reject("unknown required stream")
    if "CTAB" not in streams or "CHNK" not in streams:
        raise Reject("missing stream")
    if streams["CTAB"][0] != 1 or streams["CHNK"][0] != 1:
        raise Reject("codec")
    table, parts = streams["CTAB"][2], streams["CHNK"][2]
    if len(table) < 8:
        raise Reject("table")
    c, layers = struct.unpack_from("<II", table, 0)
    if c < 1 or not 1 <= layers <= 16 or len(table) != 8 + c * (24 + 24 * layers):
        raise Reject("table size")
    out: dict[str, list] = {"means": [], "log_scales": [], "quats": [], "opacity_logits": [],
                            "sh": []}
    at, end = 8, 0
    for _ in range(c):
        box = struct.unpack_from("<6f", table, at)
        at += 24
        if not all(math.isfinite(v) for v in box) or any(box[a] > box[a + 3] for a in range(3)):
            raise Reject("box")
        for _ in range(layers):
            off, length, count, crc = struct.unpack_from("<QQII", table, at)
            at += 24
            if off != end or off + length > len(parts):
                raise Reject("part place")
            end += length
            part = parts[off : off + length]
            if zlib.crc32(part) != crc:
                raise Reject("part crc")
            if parse_with_flags(part)[1] & CHUNKED:
                raise Reject("nested")
            pm = json.loads(zstandard.ZstdDecompressor().decompress(parse(part)["META"][2]))
            if pm["n"] != count or pm["sh_degree"] != meta["sh_degree"]:
                raise Reject("part count")
            g = decode(part)
            if any(not box[a] <= p[a] <= box[a + 3] for p in g["means"] for a in range(3)):
                raise Reject("outside the box")
            for k in out:
                out[k] += g[k]
    if end != len(parts) or len(out["means"]) != meta["n"]:
        raise Reject("parts")
    return out
