"""Work split over processes: the parts of a chunked file are encoded and decoded side by side
(``--jobs``), or sent to a Ray cluster (:class:`RayCluster`, ``--ray``). A part's coding is
numpy only (the importance classes are measured for the whole scene before); every task still
runs with at most one torch thread, here as in the workers and on a cluster's nodes, so that
nothing a task computes depends on how many ran at once or where."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

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


def resolve_jobs(jobs: int | None | RayCluster, n: int) -> int | RayCluster:
    """The processes for work on ``n`` Gaussians: ``jobs`` (None: 1; 0: every available core,
    or 1 below :data:`MIN_PARALLEL_GAUSSIANS`; a :class:`RayCluster` as it is)."""
    if isinstance(jobs, RayCluster):
        return jobs
    if jobs is None:
        return 1
    if jobs < 0:
        raise ValueError("jobs must be 0 (all cores) or a positive count")
    if jobs == 0:
        return available_cores() if n >= MIN_PARALLEL_GAUSSIANS else 1
    return jobs


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch, where it is loaded, held to one thread within (restored after)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(fn: Callable[[T], R], task: T) -> R:
    """``fn(task)`` with torch, where it is loaded, held to one thread (restored after)."""
    with one_torch_thread():
        return fn(task)


def threaded(fn: Callable[[T], R], items: list[T], threads: int | None = None) -> list[R]:
    """``fn`` over ``items`` in ``threads`` threads of this process (default: the available
    cores, at most one an item), results in item order, with torch held to one thread
    meanwhile (restored after). For torch work on a CPU, such as renders: its operations
    release the GIL, so the items run side by side with no processes to start and no scene to
    copy (8 renders of 1M Gaussians on 2 cores: 1.35x faster than one at a time on two torch
    threads), and each operation runs on one thread however many cores the machine has."""
    return list(threaded_iter(fn, items, threads))


def threaded_iter(fn: Callable[[T], R], items: list[T],
                  threads: int | None = None) -> Iterator[R]:
    """:func:`threaded` as results in item order, as they come: at most ``threads`` items in
    flight and none of their results held back, so that a caller that folds the results (a
    sum over views) holds a few of them, not all. torch stays held to one thread until the
    iterator is exhausted or closed."""
    count = max(1, min(threads or available_cores(), len(items)))
    with one_torch_thread():
        if count == 1:
            for item in items:
                yield fn(item)
            return
        with ThreadPoolExecutor(count) as pool:
            pending: deque[Future[R]] = deque()
            for item in items:
                if len(pending) == count:
                    yield pending.popleft().result()
                pending.append(pool.submit(fn, item))
            while pending:
                yield pending.popleft().result()


def _worker_start() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def local_jobs(jobs: int | None | RayCluster) -> int | None:
    """``jobs`` for work that stays in this process tree (0, every core, for a cluster)."""
    return 0 if isinstance(jobs, RayCluster) else jobs


def pmap(fn: Callable[[T], R], tasks: Iterable[T], jobs: int | RayCluster,
         window: int = 2) -> Iterator[R]:
    """``fn`` over ``tasks``, results in task order. With ``jobs`` > 1 the tasks run in that many
    processes (started fresh by a fork server, not forked from this one, whose threads a fork
    would not copy), at most ``window`` tasks per process in flight so that the tasks' inputs
    are made as they are needed; ``fn`` must be a module-level function. With a
    :class:`RayCluster` they run as its tasks, ``window`` per CPU of the cluster."""
    if isinstance(jobs, RayCluster):
        yield from jobs.map(fn, tasks, window)
        return
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


class SharedArrays:
    """float32 arrays in one anonymous shared-memory file (Linux ``memfd_create``) that worker
    processes open by path and write rows into, so that what they compute reaches this
    process without being pickled, piped and copied (a 4M-Gaussian SH-3 decode returns 0.9 GB
    of fields). :func:`shared_arrays` gives None where the system has no memfd; the arrays
    stay valid after :meth:`close` (which only ends the workers' access) for as long as they
    are referenced."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.layout: list[tuple[str, tuple[int, ...], int]] = []
        offset = 0
        for name, shape in shapes.items():
            self.layout.append((name, shape, offset))
            offset += 4 * int(np.prod(shape, dtype=np.int64))
        self.size = offset
        self._fd = os.memfd_create("gscodec-shared", 0)
        try:
            os.ftruncate(self._fd, max(1, self.size))
            self._map = mmap.mmap(self._fd, max(1, self.size))
        except BaseException:
            self.close()
            raise
        self.arrays = {name: np.ndarray(shape, np.float32, buffer=self._map, offset=off)
                       for name, shape, off in self.layout}

    def spec(self) -> tuple[str, int, list[tuple[str, tuple[int, ...], int]]]:
        """What a worker needs to open the arrays (:func:`write_rows`)."""
        return f"/proc/{os.getpid()}/fd/{self._fd}", self.size, self.layout

    def close(self) -> None:
        """No more workers: the file's descriptor closed (the arrays stay)."""
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def shared_arrays(shapes: dict[str, tuple[int, ...]]) -> SharedArrays | None:
    """:class:`SharedArrays` of these shapes, or None where there is no memfd to hold them."""
    if not hasattr(os, "memfd_create") or not os.path.isdir(f"/proc/{os.getpid()}/fd"):
        return None
    try:
        return SharedArrays(shapes)
    except OSError:
        return None


def write_rows(spec: tuple[str, int, list[tuple[str, tuple[int, ...], int]]], start: int,
               values: dict[str, np.ndarray]) -> bool:
    """In a worker: ``values`` (a part's rows of the named arrays) written at row ``start`` of
    the :class:`SharedArrays` that ``spec`` names; False (nothing written) where this process
    may not open that file (a system that keeps other processes' descriptors private), so that
    the caller sends the rows back instead."""
    path, size, layout = spec
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        shared = mmap.mmap(fd, max(1, size))
    finally:
        os.close(fd)
    try:
        for name, shape, off in layout:
            if name in values:
                v = values[name]
                row = 4 * int(np.prod(shape[1:], dtype=np.int64))
                view = np.ndarray((v.shape[0], *shape[1:]), np.float32, buffer=shared,
                                  offset=off + start * row)
                view[...] = v
                del view
    finally:
        shared.close()
    return True


class RayCluster:
    """A Ray cluster to run tasks on (``pip install 'gscodec[ray]'``): ``address`` as
    ``ray.init`` takes it (``"auto"``: the cluster this machine belongs to; ``"HOST:PORT"``:
    its head node; ``"ray://HOST:10001"``: through Ray Client; ``"local"``: a cluster started
    for this process and stopped with it). Ray places, retries and moves the work; gscodec
    schedules nothing itself. The nodes need the gscodec version of this process (each task
    checks) and its dependencies; tasks' inputs travel through Ray's object store, so the
    nodes need no shared filesystem for them."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._remote: Any = None
        self._cpus = 1

    def __repr__(self) -> str:
        return f"RayCluster({self.address!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # (a task that is handed the cluster gets the address, not the connection)
        return (RayCluster, (self.address,))

    def connect(self) -> Any:
        """The ``ray`` module, connected (once per process); clear errors, no traceback, when
        Ray is missing or the cluster cannot be reached."""
        from .formats.errors import GscodecError

        try:
            import ray
        except ImportError:
            raise GscodecError("--ray needs Ray: pip install 'gscodec[ray]'") from None
        if not ray.is_initialized():
            try:
                local = self.address == "local"
                # (a cluster started here runs no dashboard; one joined keeps its own)
                ray.init(address=None if local else self.address, log_to_driver=False,
                         logging_level="ERROR", **({"include_dashboard": False} if local
                                                   else {}))
            except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
                raise GscodecError(f"cannot connect to the Ray cluster at {self.address}: "
                                   f"{_first_line(e)}") from None
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=2)(_ray_task)
            self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return ray

    def map(self, fn: Callable[[T], R], tasks: Iterable[T], window: int = 2,
            fallback: Callable[[T, Exception], R] | None = None) -> Iterator[R]:
        """``fn`` over ``tasks`` as the cluster's tasks, results in task order, at most
        ``window`` per cluster CPU in flight. A task whose worker or node failed (after Ray's
        retries) raises a :class:`~gscodec.errors.GscodecError`, or gives
        ``fallback(task, error)`` where one is given; an exception that ``fn`` raised is
        raised here as itself."""
        ray = self.connect()
        from ._version import __version__

        pending: deque[tuple[T, Any]] = deque()
        for task in tasks:
            pending.append((task, self._remote.remote(fn, task, __version__)))
            if len(pending) >= self._cpus * window:
                yield self._get(ray, *pending.popleft(), fallback)
        while pending:
            yield self._get(ray, *pending.popleft(), fallback)

    def _get(self, ray: Any, task: T, ref: Any,
             fallback: Callable[[T, Exception], R] | None) -> R:
        from .formats.errors import GscodecError

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            error: Exception = GscodecError(f"a task on the Ray cluster failed: {e}")
        except ray.exceptions.RayError as e:
            error = GscodecError(f"a task on the Ray cluster failed: {_first_line(e)}")
        if fallback is None:
            raise error
        return fallback(task, error)


def _first_line(e: BaseException) -> str:
    """The first line of an error's message (Ray's run to pages), or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _ray_task(fn: Callable[[T], R], task: T, version: str) -> R:
    """One task on a Ray node: ``fn(task)`` with one torch thread, after checking that the
    node codes with the same gscodec (other versions may write other bytes)."""
    from ._version import __version__
    from .formats.errors import GscodecError

    if version != __version__:
        raise GscodecError(f"the Ray node runs gscodec {__version__}, this process {version}: "
                           "install the same version on every node")
    return single_threaded(fn, task)
