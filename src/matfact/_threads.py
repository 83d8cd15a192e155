"""One ``n_threads`` knob for numba kernels, set for the duration of a call.

Every kernel gives the same result for any thread count, so choosing the
count is only a matter of speed. BLAS is held to one thread around small work
(:func:`blas_single_thread`): one process-wide hold, counted, so threads that
overlap never restore each other's counts wrongly.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numba

__all__ = ["numba_threads", "resolve_n_threads", "single_thread", "available_cores",
           "blas_single_thread", "blas_single_thread_for"]


#: Below this much work per parallel step (about one multiply-add each unit),
#: ``n_threads=None`` runs on one thread: the steps are then so short that
#: threads waiting on each other (worst when another process holds a core)
#: cost more than the work they share.
SMALL_WORK = 1_000_000


def resolve_n_threads(n_threads: int | None, work: int | None = None) -> int:
    """``None`` → every thread numba may use (one for small ``work``); else capped at that."""
    limit = int(numba.config.NUMBA_NUM_THREADS)
    if n_threads is None:
        return 1 if work is not None and work < SMALL_WORK else limit
    return max(1, min(int(n_threads), limit))


@contextlib.contextmanager
def numba_threads(n_threads: int | None, work: int | None = None) -> Iterator[int]:
    """Run numba's parallel loops on ``n_threads`` threads, restoring the previous count.

    BLAS is held to one thread meanwhile: its pool would otherwise keep spinning
    after each small matrix product and fight numba's threads for the cores
    (measured: a 20-100× slowdown of alternating BLAS/numba steps on 2 cores).
    """
    previous = numba.get_num_threads()
    wanted = resolve_n_threads(n_threads, work)
    numba.set_num_threads(wanted)
    try:
        with blas_single_thread():
            if wanted > _checked_up_to:
                _check_oversubscription(wanted)
            yield wanted
    finally:
        numba.set_num_threads(previous)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


#: The largest thread count checked so far (each larger one is checked once; after a
#: warning, none is): the check reads threadpoolctl's state, about a millisecond.
_checked_up_to = 0


def _check_oversubscription(wanted: int) -> None:
    """Warn once per process if numba threads × BLAS threads would exceed the cores.

    Called inside a parallel region, where BLAS should already be held to one
    thread; a BLAS threadpoolctl cannot limit (it reports more than one thread)
    or ``NUMBA_NUM_THREADS`` set above the core count would make the pools fight
    for the cores (a 20-100× slowdown measured on 2 cores).
    """
    global _checked_up_to
    _checked_up_to = wanted
    from threadpoolctl import threadpool_info

    blas = max((pool.get("num_threads", 1) for pool in threadpool_info()
                if held_blas(pool)), default=1)
    cores = available_cores()
    if wanted * blas > cores:
        from matfact.exceptions import ThreadWarning

        warnings.warn(
            f"{wanted} numba thread(s) × {blas} BLAS thread(s) exceed the {cores} core(s) "
            f"this process may use; the pools will oversubscribe the cores. Set "
            f"NUMBA_NUM_THREADS (now {numba.config.NUMBA_NUM_THREADS}) or n_threads to at "
            f"most {cores}, and limit BLAS (e.g. OPENBLAS_NUM_THREADS=1). Warned once.",
            ThreadWarning, stacklevel=4)
        _checked_up_to = 2**31  # once per process


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run numba's parallel loops and BLAS on the calling thread only, for one-row work (fold-in).

    Waking the pool for a single row costs far more than the row: one ALS fold-in
    took 30 ms on 2 threads against 0.06 ms on one while another process held a
    core. The numba count is per calling thread, so a server's threads do not
    disturb each other; BLAS is held by :func:`blas_single_thread`.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with blas_single_thread():
            yield
    finally:
        numba.set_num_threads(previous)


class _BlasHold:
    """The process-wide "BLAS on one thread" hold behind :func:`blas_single_thread`.

    BLAS thread counts are global to the process (OpenBLAS, MKL), so two threads
    each saving and restoring the count would interleave badly: the second saves
    the first's limit of 1 and restores it after the first has restored the
    default, leaving BLAS on one thread for good. Holders are counted instead:
    the first one in saves the counts and limits them, the last one out restores
    them. The BLAS libraries are found once (``ThreadpoolController()`` scans the
    loaded libraries, about a millisecond; a limit through it costs a few µs).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._libraries: list[Any] | None = None
        self._restore: list[tuple[Any, int]] = []

    def _blas_libraries(self) -> list[tuple[Any, Any]]:
        """(controller, thread-count setter) of each BLAS the process has loaded."""
        if self._libraries is None:
            import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, which numba kernels call)
            from threadpoolctl import ThreadpoolController

            self._libraries = [(lib, _setter(lib)) for lib in
                               ThreadpoolController().lib_controllers if held_blas(lib)]
        return self._libraries

    def __enter__(self) -> None:
        with self._lock:
            if self._holders == 0:
                restore = []
                for lib, set_threads in self._blas_libraries():
                    count = lib.get_num_threads()
                    if count is not None and count > 1:
                        set_threads(1)
                        restore.append((set_threads, count))
                self._restore = restore
            self._holders += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                for set_threads, count in self._restore:
                    set_threads(count)
                self._restore = []


def held_blas(lib: Any) -> bool:
    """Whether the hold limits the BLAS library ``lib`` (a threadpoolctl controller or
    ``threadpool_info`` entry): the BLAS NumPy and SciPy call, not the OpenBLAS that
    faiss bundles for itself, which only faiss calls (its threads follow faiss'
    OpenMP setting, :func:`matfact.models.ann._omp_threads`) and whose OpenMP build
    sets thread counts per calling thread, which a process-wide hold cannot count."""
    get = lib.get if isinstance(lib, dict) else lambda key: getattr(lib, key, None)
    return get("user_api") == "blas" and "faiss" not in str(get("filepath") or "")


def _setter(lib: Any) -> Any:
    """How to set ``lib``'s thread count from any thread.

    OpenBLAS (0.3.30 and 0.3.31 here) was seen to ignore ``openblas_set_num_threads``
    from other threads once the main thread had called it (as a fit does), so a
    server's worker threads could not limit it; its
    ``openblas_set_num_threads_local`` takes effect from any thread (and, despite
    its name, for the whole process, which the counted hold expects).
    """
    if getattr(lib, "internal_api", None) == "openblas":
        import ctypes

        for name in ("openblas_set_num_threads_local",
                     f"{getattr(lib, 'prefix', '')}_set_num_threads_local64_",
                     f"{getattr(lib, 'prefix', '')}_set_num_threads_local"):
            function = getattr(getattr(lib, "dynlib", None), name, None)
            if function is not None:
                function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
                return lambda count, function=function: function(int(count))
    return lib.set_num_threads


_BLAS_HOLD = _BlasHold()


def blas_single_thread() -> Any:
    """BLAS held to one thread for the duration (restored afterwards), as numba kernels are.

    For loops of many tiny solves and products, one user's scores (a matrix-vector
    product) and fold-in, where waking BLAS threads costs more than the work: with
    OpenBLAS's two threads on a loaded 2-core machine, one user's scores over 17,632
    items took a median of 8 ms (p99 12 ms) against 0.07 ms on one thread. The hold
    is process-wide and counted (see :class:`_BlasHold`); while any thread holds it,
    every BLAS call of the process runs on one thread.
    """
    return _BLAS_HOLD


def blas_single_thread_for(n_rows: int) -> Any:
    """:func:`blas_single_thread` when scoring one row (one user's scores), else nothing.

    One user's scores are one matrix-vector product, a fraction of a millisecond
    on one thread even for a large catalogue; many users' are a matrix product
    that BLAS's threads do speed up.
    """
    return _BLAS_HOLD if n_rows <= 1 else contextlib.nullcontext()
