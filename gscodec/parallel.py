"""Work split over processes: the parts of a chunked file are encoded and decoded side by side
(``--jobs``). A part's coding is numpy only (the importance classes are measured for the whole
scene before); every task still runs with at most one torch thread, in this process as in the
workers, so that nothing a task computes depends on how many ran at once."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # (not on Linux)
        return max(1, os.cpu_count() or 1)


MIN_PARALLEL_GAUSSIANS = 1 << 18
"""Below this many Gaussians ``jobs=0`` runs in this process: starting processes (about half
a second) would cost more than it saves."""


def resolve_jobs(jobs: int | None, n: int) -> int:
    """The processes for work on ``n`` Gaussians: ``jobs`` (None: 1; 0: every available core,
    or 1 below :data:`MIN_PARALLEL_GAUSSIANS`)."""
    if jobs is None:
        return 1
    if jobs < 0:
        raise ValueError("jobs must be 0 (all cores) or a positive count")
    if jobs == 0:
        return available_cores() if n >= MIN_PARALLEL_GAUSSIANS else 1
    return jobs


def single_threaded(fn: Callable[[T], R], task: T) -> R:
    """``fn(task)`` with torch, where it is loaded, held to one thread (restored after)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return fn(task)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(task)
    finally:
        torch.set_num_threads(before)


def _worker_start() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def pmap(fn: Callable[[T], R], tasks: Iterable[T], jobs: int, window: int = 2) -> Iterator[R]:
    """``fn`` over ``tasks``, results in task order. With ``jobs`` > 1 the tasks run in that many
    processes (started fresh by a fork server, not forked from this one, whose threads a fork
    would not copy), at most ``window`` tasks per process in flight so that the tasks' inputs
    are made as they are needed; ``fn`` must be a module-level function."""
    if jobs <= 1:
        for task in tasks:
            yield single_threaded(fn, task)
        return
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method),
                             initializer=_worker_start) as pool:
        pending: deque[Future[Any]] = deque()
        for task in tasks:
            pending.append(pool.submit(single_threaded, fn, task))
            if len(pending) >= jobs * window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
