"""Entropy coding: constriction's ANS coder, exactly specified probability tables, and the
magnitude-category binarization of integers.

Everything about constriction lives in this module: the stack (ANS) semantics, where symbols are
encoded in reverse so that they decode in forward order, are hidden behind :class:`AnsEncoder`
(which records the coding operations in decode order and replays them backwards) and
:class:`AnsDecoder`.

Probability tables. A table is stored as one code byte per symbol, ``c[0..A-1]``, standing for
the integer weights ``q = code_weights(c)`` (see :func:`table_from_counts`). The coder uses the
integer frequencies ``f = expand_table(c)``, which sum to ``2**24 - A``; symbol ``i`` then has
probability exactly ``(f[i] + 1) / 2**24``. That is what constriction's
``Categorical(perfect=False)`` builds from these floating-point weights (its fast quantizer adds
one to every weight and scales the rest by ``(2**24 - A) / sum``, which is 1 here), so the model
is fully specified by integers and a second decoder can rebuild it without constriction.

Binarization. A non-negative integer ``z`` is sent as a symbol from a small alphabet plus raw
bits, with two parameters ``t`` and ``m`` (``m <= t``): values below ``T = 2**t`` are their own
symbol; a larger value with bit length ``k`` is sent as symbol ``T + ((k - t - 1) << m) + top``,
where ``top`` holds the ``m`` bits after the leading one, followed by the remaining ``k - 1 - m``
low bits, uniformly coded.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..formats.errors import ContainerError

# constriction is one compiled module; its submodules are attributes, not importable paths
Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform
AnsCoder = constriction.stream.stack.AnsCoder

PRECISION = 24
TOTAL = 1 << PRECISION
MAX_CODE = 248  # table codes 1..248: weights 8 << 0 .. 15 << 30
RAW_CHUNK_BITS = 16  # raw bits are coded in chunks of at most 16 bits (uint16)
MAX_ALPHABET = 1 << 16


# ---------------------------------------------------------------------------------------------
# integers <-> symbols


def zigzag(e: np.ndarray) -> np.ndarray:
    """Signed int64 -> non-negative uint64: 0, -1, 1, -2, 2 -> 0, 1, 2, 3, 4."""
    e = np.asarray(e, dtype=np.int64)
    return ((e << np.int64(1)) ^ (e >> np.int64(63))).view(np.uint64)


def unzigzag(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag`."""
    z = np.asarray(z, dtype=np.uint64).view(np.int64)
    out = z >> 1
    out &= np.int64(0x7FFFFFFFFFFFFFFF)
    out ^= -(z & 1)
    return out


def bit_length(z: np.ndarray) -> np.ndarray:
    """Bit length of each uint64 (0 for 0), as int64."""
    z = np.asarray(z, dtype=np.uint64)
    if z.size == 0:
        return np.zeros(z.shape, np.int64)
    if int(z.max()) < (1 << 52):
        _, exp = np.frexp(z.astype(np.float64))
        return exp.astype(np.int64)
    out = np.zeros(z.shape, np.int64)
    v = z.copy()
    for s in (32, 16, 8, 4, 2, 1):
        big = v >= np.uint64(1 << s)
        out[big] += s
        v[big] >>= np.uint64(s)
    return out + (v > 0)


def split(z: np.ndarray, t: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binarize non-negative integers: returns (symbol int64, raw bit count int64, raw uint64)."""
    z = np.asarray(z, dtype=np.uint64)
    big = np.flatnonzero(z >= np.uint64(1 << t))
    sym = z.astype(np.int64)
    nraw = np.zeros(z.shape, np.int64)
    raw = np.zeros(z.shape, np.uint64)
    if big.size:
        zb = z[big]
        k = bit_length(zb)
        nr = k - 1 - m
        shift = nr.astype(np.uint64)
        top = ((zb >> shift) & np.uint64((1 << m) - 1)).astype(np.int64)
        sym[big] = (1 << t) + ((k - t - 1) << m) + top
        nraw[big] = nr
        raw[big] = zb & ((np.uint64(1) << shift) - np.uint64(1))
    return sym, nraw, raw


def raw_bits_of(sym: np.ndarray, t: int, m: int) -> np.ndarray:
    """Number of raw bits that follow each symbol (inverse bookkeeping of :func:`split`)."""
    sym = np.asarray(sym, dtype=np.int64)
    out = np.zeros(sym.shape, np.int64)
    big = np.flatnonzero(sym >= (1 << t))
    if big.size:
        out[big] = ((sym[big] - (1 << t)) >> m) + t - m
    return out


def join(sym: np.ndarray, raw: np.ndarray, t: int, m: int) -> np.ndarray:
    """Inverse of :func:`split`: symbols and raw bits back to uint64 values."""
    sym = np.asarray(sym, dtype=np.int64)
    out = sym.astype(np.uint64)
    big = np.flatnonzero(sym >= (1 << t))
    if big.size:
        rel = sym[big] - (1 << t)
        nraw = ((rel >> m) + t - m).astype(np.uint64)
        head = ((1 << m) + (rel & ((1 << m) - 1))).astype(np.uint64)
        out[big] = (head << nraw) | np.asarray(raw, dtype=np.uint64)[big]
    return out


def alphabet_limit(t: int, m: int, max_bits: int) -> int:
    """Largest alphabet :func:`split` can produce for values below ``2**max_bits``."""
    if max_bits <= t:
        return 1 << t
    return (1 << t) + ((max_bits - t) << m)


# ---------------------------------------------------------------------------------------------
# probability tables


def table_from_counts(counts: np.ndarray) -> np.ndarray:
    """Stored table codes (int64 in 0..MAX_CODE) from symbol counts, trimmed after the last used
    symbol: 0 for an unused symbol, else the code of ``8 * count`` rounded to 4 significant bits
    (see :func:`code_weights`). Small counts are exact; large ones are within 1/16."""
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    if used.size == 0:
        return np.zeros(0, np.int64)
    x = counts[: used[-1] + 1] * 8
    e = np.maximum(bit_length(x.astype(np.uint64)) - 4, 0)
    m = (x + (np.int64(1) << e >> 1)) >> e  # round to nearest, in 8..16
    carry = m >= 16
    e = np.where(carry, e + 1, e)
    m = np.where(carry, 8, m)
    codes = 1 + 8 * e + (m - 8)
    codes = np.minimum(codes, MAX_CODE)
    return np.where(x > 0, codes, 0).astype(np.int64)


def code_weights(codes: np.ndarray) -> np.ndarray:
    """Integer weight of each table code: 0 for code 0, else ``(8 + (c-1) % 8) << ((c-1) // 8)``."""
    c = np.asarray(codes, dtype=np.int64)
    cm1 = np.maximum(c - 1, 0)
    return np.where(c > 0, (8 + cm1 % 8) << (cm1 // 8), 0)


def expand_table(codes: np.ndarray) -> np.ndarray:
    """Integer frequencies (as float64) summing to ``2**24 - A``; see the module docstring.

    With weights ``q = code_weights(codes)``, ``W = 2**24 - A`` and ``S = sum(q)``:
    ``f[i] = (q[i] * W) // S``, and the remainder ``W - sum(f)`` is added to the first largest
    entry of ``q``."""
    q = code_weights(codes)
    a = q.size
    s = int(q.sum())
    if a < 1 or a > MAX_ALPHABET or s <= 0:
        raise ContainerError("corrupt stream: invalid probability table")
    w = TOTAL - a
    f = (q * w) // s
    f[int(np.argmax(q))] += w - int(f.sum())
    return f.astype(np.float64)


def write_varints(values: np.ndarray, out: bytearray) -> None:
    """Append unsigned LEB128 varints."""
    for v in np.asarray(values, dtype=np.int64).tolist():
        if v < 0:
            raise ValueError("varints are unsigned")
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)


class VarintReader:
    """Reads unsigned LEB128 varints from bytes, with bounds checks."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, limit: int) -> int:
        """Next varint; ContainerError if the data ends or it exceeds ``limit``."""
        value = 0
        shift = 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise ContainerError("corrupt stream: table data ends early")
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        if value > limit:
            raise ContainerError("corrupt stream: table value out of range")
        return value

    def read_table(self, max_alphabet: int) -> np.ndarray:
        """A table as written by :func:`write_table`: its length, then one code byte per
        symbol."""
        a = self.read(max_alphabet)
        if a == 0:
            return np.zeros(0, np.int64)
        if self.pos + a > len(self.data):
            raise ContainerError("corrupt stream: table data ends early")
        codes = np.frombuffer(self.data, np.uint8, a, self.pos).astype(np.int64)
        self.pos += a
        if codes.max() > MAX_CODE or codes.max() == 0:
            raise ContainerError("corrupt stream: invalid probability table")
        return codes

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def write_table(codes: np.ndarray, out: bytearray) -> None:
    """Append a table: its length as a varint, then one code byte per symbol."""
    write_varints(np.asarray([codes.size]), out)
    out += np.asarray(codes, dtype=np.uint8).tobytes()


# ---------------------------------------------------------------------------------------------
# the ANS coder


class AnsEncoder:
    """Records coding operations in the order the decoder will replay them; :meth:`to_bytes`
    encodes them in reverse with one constriction AnsCoder."""

    def __init__(self) -> None:
        self._ops: list[tuple[np.ndarray, object]] = []

    def categorical(self, symbols: np.ndarray, q: np.ndarray) -> None:
        """Code ``symbols`` (each < len(q)) with the stored table ``q``."""
        if symbols.size == 0 or q.size <= 1:
            return  # a one-symbol alphabet costs nothing
        model = Categorical(expand_table(q), perfect=False)
        # kept as uint16 until to_bytes (alphabets are below 2**16): half the memory of int32
        self._ops.append((np.asarray(symbols).astype(np.uint16), model))

    def raw_bits(self, values: np.ndarray, bits: int) -> None:
        """Code ``values`` (each < 2**bits) uniformly, in 16-bit chunks, high chunk first."""
        values = np.asarray(values, dtype=np.uint64)
        if values.size == 0 or bits == 0:
            return
        remaining = bits
        while remaining > 0:
            c = min(RAW_CHUNK_BITS, remaining)
            remaining -= c
            chunk = (values >> np.uint64(remaining)) & np.uint64((1 << c) - 1)
            self._ops.append((chunk.astype(np.uint16), Uniform(1 << c)))

    def to_bytes(self) -> bytes:
        """The compressed words, little-endian uint32."""
        coder = AnsCoder()
        for symbols, model in reversed(self._ops):
            coder.encode_reverse(symbols.astype(np.int32), model)
        return coder.get_compressed().astype("<u4").tobytes()


class AnsDecoder:
    """Replays :class:`AnsEncoder`'s operations; every failure is a ContainerError."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise ContainerError("corrupt stream: ANS data is not a whole number of words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            self._coder = AnsCoder(words)
        except ValueError:
            raise ContainerError("corrupt stream: invalid ANS data") from None

    def categorical(self, n: int, q: np.ndarray) -> np.ndarray:
        """Decode ``n`` symbols coded with table ``q`` (int64)."""
        if n == 0:
            return np.zeros(0, np.int64)
        if q.size == 1:
            return np.zeros(n, np.int64)
        model = Categorical(expand_table(q), perfect=False)
        return self._coder.decode(model, n).astype(np.int64)

    def raw_bits(self, n: int, bits: int) -> np.ndarray:
        """Decode ``n`` values of ``bits`` bits each (uint64)."""
        out = np.zeros(n, np.uint64)
        if n == 0 or bits == 0:
            return out
        remaining = bits
        while remaining > 0:
            c = min(RAW_CHUNK_BITS, remaining)
            remaining -= c
            chunk = self._coder.decode(Uniform(1 << c), n).astype(np.uint64)
            out |= chunk << np.uint64(remaining)
        return out

    def finish(self) -> None:
        """Check that the stream was consumed exactly (the ANS state is back at its start)."""
        if not self._coder.is_empty():
            raise ContainerError("corrupt stream: ANS data left over after decoding")
