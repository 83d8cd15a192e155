"""One ``n_threads`` knob for numba kernels, set for the duration of a call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba

__all__ = ["numba_threads", "resolve_n_threads"]


def resolve_n_threads(n_threads: int | None) -> int:
    """``None`` → every thread numba may use; otherwise capped at that."""
    limit = int(numba.config.NUMBA_NUM_THREADS)
    return limit if n_threads is None else max(1, min(int(n_threads), limit))


@contextlib.contextmanager
def numba_threads(n_threads: int | None) -> Iterator[int]:
    """Run numba's parallel loops on ``n_threads`` threads, restoring the previous count.

    BLAS is held to one thread meanwhile: its pool would otherwise keep spinning
    after each small matrix product and fight numba's threads for the cores
    (measured: a 20-100× slowdown of alternating BLAS/numba steps on 2 cores).
    """
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    wanted = resolve_n_threads(n_threads)
    numba.set_num_threads(wanted)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield wanted
    finally:
        numba.set_num_threads(previous)
