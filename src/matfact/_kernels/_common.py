"""Helpers shared by the numba kernels."""

from __future__ import annotations

import numba

__all__ = ["ordered_sum", "longest_row"]


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


@numba.njit(cache=True)
def longest_row(indptr):
    """The largest number of entries in one CSR row (0 for no rows)."""
    longest = 0
    for u in range(indptr.shape[0] - 1):
        longest = max(longest, indptr[u + 1] - indptr[u])
    return longest
