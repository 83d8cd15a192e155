"""One ``n_threads`` knob for numba kernels, set for the duration of a call.

Every kernel gives the same result for any thread count, so choosing the
count is only a matter of speed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba

__all__ = ["numba_threads", "resolve_n_threads", "single_thread"]


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
            yield wanted
    finally:
        numba.set_num_threads(previous)


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
