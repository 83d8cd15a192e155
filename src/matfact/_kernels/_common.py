"""Helpers shared by the numba kernels."""

from __future__ import annotations

import numba

__all__ = ["ordered_sum"]


@numba.njit(cache=True)
def ordered_sum(values):
    """Sum in index order.

    Inside a ``parallel=True`` kernel, ``array.sum()`` becomes a parallel
    reduction whose grouping, and so whose float rounding, depends on the
    number of threads; a call to this (serial) function does not, which keeps
    the kernels' results identical for any thread count.
    """
    total = values.dtype.type(0)
    for i in range(values.shape[0]):
        total += values[i]
    return total
