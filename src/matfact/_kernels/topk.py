"""Top-n selection over rows of a score matrix, with per-row exclusions (numba).

The one top-k of matfact: :func:`topk_rows` (rows in parallel, for batches)
and :func:`topk_rows_serial` (the same code without a parallel region and without
the GIL, for a single row or a caller held to one thread: no thread start-up, no
contention with BLAS threads still spinning after the product that made the
scores, and threads of the caller's own run side by side) compile one function;
:func:`topk_rows_reference` is the NumPy statement of what they compute.

Rows with fewer than ``n`` eligible columns (not excluded, not NaN) are padded
with index -1 and score NaN. Ties go to the lower column index, so results do
not depend on the thread count.
"""

from __future__ import annotations

import types

import numba
import numpy as np

__all__ = ["topk_rows", "topk_rows_serial", "topk_rows_reference"]

#: Columns tested at once against the worst of a full heap (see :func:`_topk_rows`).
_CHUNK = 32


@numba.njit(cache=True, inline="always")
def _before(score_a, index_a, score_b, index_b):
    # Strict "a ranks before b": higher score, then lower index.
    return score_a > score_b or (score_a == score_b and index_a < index_b)


@numba.njit(cache=True, inline="always")
def _sift_down(heap_val, heap_idx, size, value, index):
    """Place (value, index) at the root of a heap of ``size`` and restore the heap."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        # The worse-ranked child moves up if the new entry ranks before it.
        if child + 1 < size and _before(heap_val[child], heap_idx[child],
                                        heap_val[child + 1], heap_idx[child + 1]):
            child += 1
        if _before(value, index, heap_val[child], heap_idx[child]):
            heap_val[pos] = heap_val[child]
            heap_idx[pos] = heap_idx[child]
            pos = child
        else:
            break
    heap_val[pos] = value
    heap_idx[pos] = index


@numba.njit(cache=True, inline="always")
def _push(heap_val, heap_idx, size, n, value, index):
    """Offer (value, index) to a heap of ``size`` ≤ ``n``; return the new size."""
    if size < n:
        pos = size
        size += 1
        while pos > 0:  # sift up: the worst-ranked item sits at the root
            parent = (pos - 1) // 2
            if _before(heap_val[parent], heap_idx[parent], value, index):
                heap_val[pos] = heap_val[parent]
                heap_idx[pos] = heap_idx[parent]
                pos = parent
            else:
                break
        heap_val[pos] = value
        heap_idx[pos] = index
    elif _before(value, index, heap_val[0], heap_idx[0]):
        _sift_down(heap_val, heap_idx, size, value, index)
    return size


def _topk_rows(scores, exclude_indptr, exclude_indices, n, first=None):
    """Best ``n`` columns of each row of ``scores``, skipping excluded columns.

    Parameters
    ----------
    scores : ndarray of shape (n_rows, n_cols), float32
    exclude_indptr : ndarray of shape (n_rows + 1,), int64
    exclude_indices : ndarray of shape (n_excluded,), int32
        CSR-style lists of the columns to skip in each row.
    n : int
    first : ndarray of int64, default=None
        Distinct columns to read before the others, e.g. the items most rows rank
        high (the most popular): the heap starts near its final worst score, so the
        scan skips almost every run of columns (a 209 × 20,000 block of ImplicitALS
        scores: 1.27 → 0.78 ms with the 32 most popular items). The result is the
        same whatever ``first`` holds.

    Returns
    -------
    indices : ndarray of shape (n_rows, n), int64
    values : ndarray of shape (n_rows, n), float32
    """
    n_rows, n_cols = scores.shape
    out_idx = np.full((n_rows, n), -1, dtype=np.int64)
    out_val = np.full((n_rows, n), np.nan, dtype=np.float32)
    if n == 0:
        return out_idx, out_val
    if first is None:
        seed = np.zeros(0, dtype=np.int64)
    else:
        seed = first
    seeded = len(seed) > 0
    is_seed = np.zeros(n_cols if seeded else 0, dtype=np.bool_)
    for k in range(len(seed)):
        is_seed[seed[k]] = True
    for r in numba.prange(n_rows):
        excluded = np.zeros(n_cols, dtype=np.bool_)
        for p in range(exclude_indptr[r], exclude_indptr[r + 1]):
            excluded[exclude_indices[p]] = True
        # A min-heap (by rank) of the best `size` columns seen so far.
        heap_val = np.empty(n, dtype=np.float32)
        heap_idx = np.empty(n, dtype=np.int64)
        size = 0
        row = scores[r]
        for k in range(len(seed)):
            j = seed[k]
            s = row[j]
            if not (excluded[j] or np.isnan(s)):
                size = _push(heap_val, heap_idx, size, n, s, j)
        for start in range(0, n_cols, _CHUNK):
            end = min(start + _CHUNK, n_cols)
            if size == n:
                # Once the heap is full, a column enters only if it ranks before the
                # root. Most runs of columns hold none, found by one branch-free pass
                # and skipped; its unsigned index spares the negative-index check that
                # keeps LLVM from vectorizing it (0.07 against 0.34 ns a score). Without
                # seed columns a tie with the root loses (columns come in increasing
                # order, so the root's index is lower); with them it may not.
                threshold = heap_val[0]
                above = 0
                q = np.uint64(start)
                if seeded:
                    while q < np.uint64(end):
                        above += row[q] >= threshold
                        q += np.uint64(1)
                else:
                    while q < np.uint64(end):
                        above += row[q] > threshold
                        q += np.uint64(1)
                if above == 0:
                    continue
            for j in range(start, end):
                s = row[j]
                if size == n:
                    # Out before the exclusion lookup: most columns of a run that was
                    # not skipped (11-15 % of a 209 × 20,000 block). NaN never ranks.
                    if seeded:
                        if not _before(s, j, heap_val[0], heap_idx[0]):
                            continue
                    elif not s > heap_val[0]:
                        continue
                if excluded[j] or np.isnan(s) or (seeded and is_seed[j]):
                    continue
                size = _push(heap_val, heap_idx, size, n, s, j)
        # Pop worst-first into the tail of the output row.
        for slot in range(size - 1, -1, -1):
            out_val[r, slot] = heap_val[0]
            out_idx[r, slot] = heap_idx[0]
            _sift_down(heap_val, heap_idx, slot, heap_val[slot], heap_idx[slot])
    return out_idx, out_val


def _renamed(func, name):
    """A copy of ``func`` under another name (the same code), for a second dispatcher.

    numba's cache file is named after the function and its index is keyed by the
    signature, not by the jit options (numba#6845): two dispatchers of one function
    share one cache entry, so whichever compiled first was loaded for both, and the
    parallel kernel could run on one thread.
    """
    clone = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__,
                               func.__closure__)
    clone.__qualname__ = name
    clone.__doc__ = func.__doc__
    return clone


topk_rows = numba.njit(cache=True, parallel=True)(_topk_rows)
# The serial kernel releases the GIL, so the workers of batch scoring (each on one
# thread) rank their blocks side by side.
topk_rows_serial = numba.njit(cache=True, nogil=True)(_renamed(_topk_rows,
                                                               "_topk_rows_serial"))


def topk_rows_reference(scores, exclude_indptr, exclude_indices, n, first=None):
    """What :func:`topk_rows` computes, in NumPy (a full stable sort per row; ``first``
    changes nothing but the kernel's speed)."""
    n_rows = scores.shape[0]
    out_idx = np.full((n_rows, n), -1, dtype=np.int64)
    out_val = np.full((n_rows, n), np.nan, dtype=np.float32)
    for r in range(n_rows):
        s = np.asarray(scores[r], dtype=np.float32).copy()
        s[exclude_indices[exclude_indptr[r]:exclude_indptr[r + 1]]] = np.nan
        eligible = np.flatnonzero(~np.isnan(s))
        order = eligible[np.lexsort((eligible, -s[eligible]))][:n]  # score desc, index asc
        out_idx[r, :len(order)] = order
        out_val[r, :len(order)] = s[order]
    return out_idx, out_val
