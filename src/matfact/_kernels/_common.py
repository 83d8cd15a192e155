"""Helpers shared by the numba kernels."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["ordered_sum", "longest_row", "balanced_row_bounds"]


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


@numba.njit(cache=True)
def balanced_row_bounds(indptr, n_parts):
    """Cut CSR rows into ``n_parts`` contiguous ranges of about equal work.

    Work is a row's entries plus one, so empty rows still count. Returns
    ``bounds`` of length ``n_parts + 1``: part ``p`` owns rows
    ``bounds[p]:bounds[p + 1]`` (some may be empty).
    """
    n_rows = indptr.shape[0] - 1
    bounds = np.empty(n_parts + 1, dtype=np.int64)
    total = indptr[n_rows] - indptr[0] + n_rows
    row = 0
    bounds[0] = 0
    for part in range(1, n_parts):
        target = total * part // n_parts
        # A row goes to the part where it starts: the cut never splits a row's work.
        while row < n_rows and indptr[row] - indptr[0] + row < target:
            row += 1
        bounds[part] = row
    bounds[n_parts] = n_rows
    return bounds
