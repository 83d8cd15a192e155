"""Helpers shared by the numba kernels.

What more than one kernel module needs lives here once: the fastmath flags,
ordered sums and row partitions, small symmetric positive definite systems
(normal equations, Cholesky, triangular solves), the splitmix64 generator and
the rejection sampler of a user's unseen items, and the prediction of index
pairs.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["FASTMATH", "ordered_sum", "longest_row", "balanced_row_bounds", "add_outer",
           "cholesky", "solve_lower", "solve_upper_t", "splitmix64_next", "is_seen",
           "draw_unseen", "predict_pairs"]

#: The fastmath flags of the kernels that use fastmath. No "nnan"/"ninf": no NaN/inf
#: assumptions are made, so a diverging fit still surfaces as NaN/inf in its loss.
FASTMATH = {"nsz", "arcp", "contract", "reassoc", "afn"}


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


# ---------------------------------------------------------------------- small SPD systems
# Normal equations A x = b are summed into the lower triangle of A (add_outer), factored
# A = L Lᵀ in place (cholesky), then solved by two triangular solves. NumPy reference::
#
#     low = np.linalg.cholesky(a[:d, :d])
#     x = scipy.linalg.solve_triangular(low.T, scipy.linalg.solve_triangular(low, b, lower=True))


@numba.njit(cache=True, inline="always")
def add_outer(a, b, x, weight, target, d):
    """Add one observation to normal equations: ``a += w x xᵀ`` (lower triangle), ``b += w t x``.

    Inlined, so it runs with the calling kernel's fastmath flags.
    """
    for f in range(d):
        xf = weight * x[f]
        b[f] += xf * target
        for g in range(f + 1):  # lower triangle only
            a[f, g] += xf * x[g]


@numba.njit(cache=True, fastmath=FASTMATH)
def cholesky(a, d):
    """In-place lower Cholesky factor of ``a[:d, :d]``; False if not positive definite."""
    for j in range(d):
        s = a[j, j]
        for p in range(j):
            s -= a[j, p] * a[j, p]
        if s <= 0.0:
            return False
        diag = np.sqrt(s)
        a[j, j] = diag
        for i in range(j + 1, d):
            s = a[i, j]
            for p in range(j):
                s -= a[i, p] * a[j, p]
            a[i, j] = s / diag
    return True


@numba.njit(cache=True, fastmath=FASTMATH)
def solve_lower(low, b, d):
    """Solve ``L y = b`` in place."""
    for i in range(d):
        s = b[i]
        for p in range(i):
            s -= low[i, p] * b[p]
        b[i] = s / low[i, i]


@numba.njit(cache=True, fastmath=FASTMATH)
def solve_upper_t(low, b, d):
    """Solve ``Lᵀ y = b`` in place."""
    for i in range(d - 1, -1, -1):
        s = b[i]
        for p in range(i + 1, d):
            s -= low[p, i] * b[p]
        b[i] = s / low[i, i]


# ---------------------------------------------------------------------- sampling
@numba.njit(cache=True, inline="always")
def splitmix64_next(state):
    """splitmix64: returns (new state, 64-bit output)."""
    state = (state + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    z = state
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(
        0xFFFFFFFFFFFFFFFF)
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(
        0xFFFFFFFFFFFFFFFF)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def is_seen(seen_indptr, seen_indices, u, j):
    """Whether item ``j`` is among user ``u``'s positives (sorted CSR row)."""
    lo = seen_indptr[u]
    hi = seen_indptr[u + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        v = seen_indices[mid]
        if v < j:
            lo = mid + 1
        elif v > j:
            hi = mid
        else:
            return True
    return False


@numba.njit(cache=True, fastmath=FASTMATH)
def draw_unseen(state, lo, width, seen_indptr, seen_indices, u, max_tries):
    """An item of ``lo:lo + width`` that ``u`` has not seen, drawn uniformly by rejection.

    Each try draws ``lo + (splitmix64 output mod width)`` and keeps it unless
    it is in the user's sorted CSR row of positives. Returns ``(state, item)``,
    the item -1 after ``max_tries`` rejected draws. BPR passes the item group
    of the current block; the hybrid model the whole catalogue (``lo=0``).
    """
    for _ in range(max_tries):
        state, draw = splitmix64_next(state)
        cand = lo + np.int64(draw % np.uint64(width))
        if not is_seen(seen_indptr, seen_indices, u, cand):
            return state, cand
    return state, np.int64(-1)


# ---------------------------------------------------------------------- prediction
@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def predict_pairs(users, items, user_factors, item_factors, user_bias, item_bias,
                  global_mean, use_bias):
    """``μ + b_u + b_i + p_u·q_i`` for index pairs (all known), float64 out."""
    n = users.shape[0]
    k = user_factors.shape[1]
    out = np.empty(n, dtype=np.float64)
    for idx in numba.prange(n):
        u = users[idx]
        i = items[idx]
        pred = np.float32(global_mean)
        if use_bias:
            pred += user_bias[u] + item_bias[i]
        for f in range(k):
            pred += user_factors[u, f] * item_factors[i, f]
        out[idx] = pred
    return out
