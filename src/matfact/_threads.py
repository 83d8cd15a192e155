"""One ``n_threads`` knob for numba kernels, set for the duration of a call.

Every kernel gives the same result for any thread count, so choosing the
count is only a matter of speed.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numba

__all__ = ["numba_threads", "resolve_n_threads", "single_thread", "available_cores",
           "blas_single_thread"]


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
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    wanted = resolve_n_threads(n_threads, work)
    numba.set_num_threads(wanted)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
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
                if pool.get("user_api") == "blas"), default=1)
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
    """Run numba's parallel loops on the calling thread only, for one-row work (fold-in).

    Waking the pool for a single row costs far more than the row: one ALS fold-in
    took 30 ms on 2 threads against 0.06 ms on one while another process held a
    core. The count is per calling thread in numba, so a server's threads do not
    disturb each other.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def blas_single_thread() -> Any:
    """BLAS held to one thread for the duration (restored afterwards), as numba kernels are.

    For loops of many tiny solves and products, where waking BLAS threads costs more
    than the work.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
