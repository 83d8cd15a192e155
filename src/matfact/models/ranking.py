"""The one top-n of matfact, for every layer that ranks scores.

``recommend``, ``similar_items``, evaluation, onboarding and the service all
rank through these two functions, which call the numba kernel of
:mod:`matfact._kernels.topk` (its NumPy reference sits beside it). Ties go to
the lower index; NaN scores and excluded indices are never returned.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from matfact._kernels.topk import topk_rows, topk_rows_serial

__all__ = ["top_n", "top_n_rows"]


def top_n_rows(scores: np.ndarray, n: int, exclude_indptr: np.ndarray | None = None,
               exclude_indices: np.ndarray | None = None,
               first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` columns of each row, skipping each row's excluded columns.

    Parameters
    ----------
    scores : ndarray of shape (n_rows, n_cols)
        Converted to contiguous float32 (a copy only when it is not already).
    n : int
        List length (≥ 0).
    exclude_indptr : ndarray of shape (n_rows + 1,), default=None
    exclude_indices : ndarray of shape (n_excluded,), default=None
        CSR-style lists of the columns to skip in each row (none when omitted).
    first : ndarray of distinct column indices, default=None
        Columns to read first, likely to rank high in most rows (the most popular
        items): only faster, never a different result (see :mod:`matfact._kernels.topk`).

    Returns
    -------
    indices : ndarray of shape (n_rows, n), int64
        Best first; -1 where a row has fewer than ``n`` eligible columns.
    values : ndarray of shape (n_rows, n), float32
        Their scores; NaN in the padding.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D, got shape {scores.shape}")
    if exclude_indptr is None:
        exclude_indptr = np.zeros(scores.shape[0] + 1, dtype=np.int64)
        exclude_indices = np.zeros(0, dtype=np.int32)
    exclude_indptr = np.asarray(exclude_indptr, dtype=np.int64)
    exclude_indices = np.asarray(exclude_indices, dtype=np.int32)
    # One row, or a caller holding numba to one thread (``_threads.single_thread``: a
    # request, a worker of batch scoring): no parallel region, and the GIL released.
    serial = scores.shape[0] == 1 or numba.get_num_threads() == 1
    kernel = topk_rows_serial if serial else topk_rows
    if first is None or len(first) == 0:
        return kernel(scores, exclude_indptr, exclude_indices, int(n))
    first = np.asarray(first, dtype=np.int64)
    if first.min() < 0 or first.max() >= scores.shape[1]:
        raise ValueError(f"first columns must lie in [0, {scores.shape[1]})")
    return kernel(scores, exclude_indptr, exclude_indices, int(n), first)


def top_n(scores: np.ndarray, n: int, exclude: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` entries of one score vector, skipping the indices in ``exclude``.

    Returns
    -------
    indices : ndarray of shape (m,), int64
        Best first, ``m = min(n, eligible entries)`` (no padding).
    values : ndarray of shape (m,), float32
    """
    excluded = np.zeros(0, dtype=np.int32) if exclude is None else \
        np.asarray(exclude, dtype=np.int32).reshape(-1)
    idx, val = top_n_rows(np.asarray(scores).reshape(1, -1), n,
                          np.array([0, len(excluded)], dtype=np.int64), excluded)
    keep = idx[0] >= 0
    return idx[0][keep], val[0][keep]
