"""Handing freed memory back to the operating system between the pipeline's phases.

numpy and torch free large arrays with ``free``; glibc's allocator keeps blocks under its
(dynamic, up to 32 MB) mmap threshold in the process heap, where a later phase's arrays may not
fit the holes, so the resident size grows with every phase although nothing is alive. Measured
on a 1M-Gaussian SH-3 encode: 226 MB of the 754 MB resident before the base layer is decoded
were such free heap (``malloc_trim`` gave them back). :func:`release` is called at the phase
boundaries of encode and decode; it is a no-op where the C library has no ``malloc_trim``
(macOS, musl, Windows)."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_LIBC: list[Any] = []  # the C library, once looked up (an empty entry: none)


def _libc() -> Any:
    if not _LIBC:
        try:
            _LIBC.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"))
        except OSError:
            _LIBC.append(None)
    return _LIBC[0]


def _function(name: str, argtypes: list[Any]) -> Any:
    """A glibc function, or None where the C library has none of that name."""
    fn = getattr(_libc(), name, None)
    if fn is not None:
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
    return fn


def release() -> bool:
    """Return the free heap to the operating system; True where that was possible."""
    trim = _function("malloc_trim", [ctypes.c_size_t])
    if trim is None:
        return False
    trim(0)
    return True


RELEASE_ROWS = 1 << 18
"""Below this many rows a codec's per-channel temporaries are not handed back after each
channel: they are small, the next channel reuses their heap, and each ``malloc_trim`` costs
(a chunked 1M-Gaussian SH-3 decode with 16,384-Gaussian chunks called it 5,952 times, 0.8 of
its 6.2 s)."""


M_ARENA_MAX = -8  # glibc's mallopt parameter


def single_arena() -> bool:
    """Make glibc's allocator use one arena for every thread (``mallopt(M_ARENA_MAX, 1)``), as
    the CLI does at start-up: torch's worker threads otherwise free into arenas of their own,
    and the peak of a 1M-Gaussian decode varied from 654 to 708 MB between identical runs
    (with one arena: 656-659 MB, no slower). A process-wide setting, so the library leaves it
    to the program; True where it was set."""
    mallopt = _function("mallopt", [ctypes.c_int, ctypes.c_int])
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, 1))


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 1 << 20
"""The size from which the CLI's allocations are mapped pages of their own (glibc's default
starts at 128 KB and rises, after a large block is freed, up to 32 MB)."""


def mapped_large_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Give blocks of ``threshold`` bytes or more pages of their own, returned to the operating
    system when they are freed (``mallopt(M_MMAP_THRESHOLD, threshold)``; it also fixes the
    threshold, which glibc otherwise raises after each large free), as the CLI does at
    start-up. Without it the tensors of one phase (a render's per-Gaussian rows, 4-32 MB at
    1M Gaussians) land in the heap, where the next phase's do not fit the holes: a 1M-Gaussian
    SH-3 encode then peaked 1,195 MB with up to 352 MB of it free heap, against 1,020 MB
    (``benchmarks/results/encode-memory-profile-2026-12-04.md``). A process-wide setting,
    like :func:`single_arena`; True where it was set."""
    mallopt = _function("mallopt", [ctypes.c_int, ctypes.c_int])
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, threshold))


def resident_bytes() -> int | None:
    """This process's resident set size (Linux ``/proc``), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
