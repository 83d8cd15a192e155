"""Rating and ranking metrics for evaluating recommenders.

Rating metrics (:func:`rmse`, :func:`mae`) compare predicted with observed ratings and return a
single float.

Ranking metrics are computed **per user**: each returns one value per row of ``recommended``,
and :func:`aggregate` turns those into a single number. A user with no relevant items gets NaN,
so that the aggregate skips them instead of counting them as zero.

Conventions shared by the ranking metrics:

* ``recommended`` is a 2-D integer array of shape (n_users, n_rec) holding item indices in rank
  order (rank 1 in column 0). Negative entries (conventionally -1) are padding: "no item at this
  slot". They never count as hits.
* ``relevant`` is either a sparse matrix of shape (n_users, n_items) whose non-zero pattern marks
  the relevant items (explicitly stored zeros are not relevant), or a sequence of length n_users
  of 1-D integer arrays of item indices.
* Only the first ``k`` columns of ``recommended`` are used. If it has fewer than ``k`` columns the
  missing slots are misses.
* An item recommended twice to the same user can only be a hit at its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from matfact.exceptions import ParameterError

__all__ = [
    "rmse",
    "mae",
    "hits_matrix",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "average_precision_at_k",
    "reciprocal_rank_at_k",
    "hit_rate_at_k",
    "catalogue_coverage",
    "auc",
    "aggregate",
    "parse_metric",
    "RANKING_METRICS",
    "RATING_METRICS",
]


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_positive_int(value, name: str) -> int:
    # bool is an int subclass, but k=True is almost certainly a bug, not k=1
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _as_float_1d(x: ArrayLike, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be a 1-D array of numbers: {exc}") from None
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be 1-D, got an array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} contains NaN or infinite values")
    return arr


def _as_recommended(recommended: ArrayLike) -> np.ndarray:
    try:
        rec = np.asarray(recommended)
    except ValueError as exc:  # ragged nested lists
        raise ParameterError(f"recommended must be a 2-D integer array: {exc}") from None
    if rec.ndim != 2 or not np.issubdtype(rec.dtype, np.integer):
        raise ParameterError(
            "recommended must be a 2-D integer array of shape (n_users, n_rec), "
            f"got dtype {rec.dtype} and shape {rec.shape}"
        )
    return rec


def _canonical_csr(matrix, name: str) -> sp.csr_matrix:
    """Copy ``matrix`` to CSR with sorted, unique indices and no stored zeros."""
    csr = sp.csr_matrix(matrix, copy=True)
    # summing first so that duplicate entries cancelling to 0 are dropped as the matrix value is 0
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if csr.ndim != 2:
        raise ParameterError(f"{name} must be 2-D, got shape {csr.shape}")
    return csr


def _as_relevant_csr(relevant, n_users: int, n_items: int | None = None) -> sp.csr_matrix:
    """Normalise ``relevant`` to a canonical CSR matrix of shape (n_users, n_items).

    Parameters
    ----------
    relevant : sparse matrix of shape (n_users, n_items) or sequence of 1-D int arrays
        Non-zero pattern of the matrix, or per-user item indices.
    n_users : int
        Expected number of users (rows).
    n_items : int or None, default=None
        Expected number of items. For sparse input the column count must equal it; for
        sequence input every index must be below it. If None it is taken from the matrix
        shape, or as ``max index + 1`` for sequence input.

    Returns
    -------
    csr : scipy.sparse.csr_matrix of shape (n_users, n_items)
        Sorted indices, no duplicates and no stored zeros, so ``indptr`` gives the per-user
        counts of relevant items.
    """
    if sp.issparse(relevant):
        csr = _canonical_csr(relevant, "relevant")
        if csr.shape[0] != n_users:
            raise ParameterError(f"relevant has {csr.shape[0]} rows but there are {n_users} users")
        if n_items is not None and csr.shape[1] != n_items:
            raise ParameterError(
                f"relevant has {csr.shape[1]} columns but there are {n_items} items"
            )
        return csr

    if isinstance(relevant, (str, bytes)) or (
        isinstance(relevant, np.ndarray) and relevant.ndim != 1
    ):
        # a dense 0/1 matrix would silently be read as lists of item indices 0 and 1
        raise ParameterError(
            "relevant must be a scipy.sparse matrix or a sequence of 1-D integer arrays; "
            "convert a dense indicator matrix with scipy.sparse.csr_matrix(...)"
        )
    try:
        n_rows = len(relevant)
    except TypeError:
        raise ParameterError(
            "relevant must be a scipy.sparse matrix or a sequence of 1-D integer arrays"
        ) from None
    if n_rows != n_users:
        raise ParameterError(f"relevant has {n_rows} entries but there are {n_users} users")

    # the input is a Python sequence, so touching each element once is unavoidable
    arrays = []
    for u, items in enumerate(relevant):
        arr = np.asarray(items)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ParameterError(
                f"relevant[{u}] must be a 1-D integer array, got dtype {arr.dtype} "
                f"and shape {arr.shape}"
            )
        arrays.append(arr.astype(np.int64, copy=False))
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=n_users)
    indices = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
    if indices.size and indices.min() < 0:
        raise ParameterError("item indices in relevant must be >= 0")
    max_item = int(indices.max()) + 1 if indices.size else 0
    if n_items is None:
        n_items = max_item
    elif max_item > n_items:
        raise ParameterError(
            f"relevant contains item index {max_item - 1} but there are only {n_items} items"
        )
    rows = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    csr = sp.csr_matrix(
        (np.ones(indices.size, dtype=np.int8), (rows, indices)), shape=(n_users, n_items)
    )
    csr.sum_duplicates()  # repeated items in one user's list form a set
    return csr


# --------------------------------------------------------------------------------------------
# rating metrics
# --------------------------------------------------------------------------------------------


def _rating_inputs(y_true, y_pred, sample_weight):
    t = _as_float_1d(y_true, "y_true")
    p = _as_float_1d(y_pred, "y_pred")
    if t.size != p.size:
        raise ParameterError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        raise ParameterError("y_true and y_pred are empty")
    if sample_weight is None:
        return t, p, None
    w = _as_float_1d(sample_weight, "sample_weight")
    if w.size != t.size:
        raise ParameterError(f"sample_weight has {w.size} values but y_true has {t.size}")
    if np.any(w < 0) or not w.sum() > 0:
        raise ParameterError("sample_weight must be non-negative with a positive sum")
    return t, p, w


def rmse(y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None) -> float:
    """Root mean squared error between observed and predicted ratings.

    Parameters
    ----------
    y_true : array-like of shape (n_ratings,)
        Observed ratings.
    y_pred : array-like of shape (n_ratings,)
        Predicted ratings.
    sample_weight : array-like of shape (n_ratings,) or None, default=None
        Non-negative weights with a positive sum; None weighs every rating equally.

    Returns
    -------
    float
        ``sqrt(sum(w * (y_true - y_pred)**2) / sum(w))``.

    Raises
    ------
    ParameterError
        On empty input, mismatched lengths, or NaN/inf values.

    Examples
    --------
    >>> rmse([3.0, 4.0], [2.0, 4.0])
    0.7071067811865476
    """
    t, p, w = _rating_inputs(y_true, y_pred, sample_weight)
    return float(np.sqrt(np.average((t - p) ** 2, weights=w)))


def mae(y_true: ArrayLike, y_pred: ArrayLike, *, sample_weight: ArrayLike | None = None) -> float:
    """Mean absolute error between observed and predicted ratings.

    Parameters
    ----------
    y_true : array-like of shape (n_ratings,)
        Observed ratings.
    y_pred : array-like of shape (n_ratings,)
        Predicted ratings.
    sample_weight : array-like of shape (n_ratings,) or None, default=None
        Non-negative weights with a positive sum; None weighs every rating equally.

    Returns
    -------
    float
        ``sum(w * |y_true - y_pred|) / sum(w)``.

    Raises
    ------
    ParameterError
        On empty input, mismatched lengths, or NaN/inf values.

    Examples
    --------
    >>> mae([3.0, 4.0], [2.0, 4.5])
    0.75
    """
    t, p, w = _rating_inputs(y_true, y_pred, sample_weight)
    return float(np.average(np.abs(t - p), weights=w))


# --------------------------------------------------------------------------------------------
# ranking metrics
# --------------------------------------------------------------------------------------------


def _hits_and_counts(recommended, relevant, k) -> tuple[np.ndarray, np.ndarray]:
    """Validate inputs; return the (n_users, k) hit matrix and per-user relevant counts."""
    k = _check_positive_int(k, "k")
    rec = _as_recommended(recommended)
    n_users = rec.shape[0]
    rel = _as_relevant_csr(relevant, n_users)
    n_items = rel.shape[1]
    n_rel = np.diff(rel.indptr).astype(np.int64)

    top = rec[:, :k]
    # items outside [0, n_items) cannot be relevant; masking them first also keeps keys in range
    valid = (top >= 0) & (top < n_items)
    hits = np.zeros(top.shape, dtype=bool)
    if rel.nnz and valid.any():
        if n_users * n_items >= 2**63:
            raise ParameterError("n_users * n_items is too large for int64 item keys")
        # canonical CSR => row-major keys are already globally sorted
        rows = np.repeat(np.arange(n_users, dtype=np.int64), n_rel)
        rel_keys = rows * n_items + rel.indices.astype(np.int64)
        rows_q, cols_q = np.nonzero(valid)
        q = rows_q.astype(np.int64) * n_items + top[rows_q, cols_q].astype(np.int64)
        pos = np.minimum(np.searchsorted(rel_keys, q), rel_keys.size - 1)
        hits[rows_q, cols_q] = rel_keys[pos] == q

        # a stable sort puts the earliest occurrence of each repeated item first in its run
        order = np.argsort(top, axis=1, kind="stable")
        srt = np.take_along_axis(top, order, axis=1)
        dup_sorted = np.zeros(top.shape, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        dup = np.empty_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        hits &= ~dup

    if hits.shape[1] < k:
        hits = np.hstack([hits, np.zeros((n_users, k - hits.shape[1]), dtype=bool)])
    return hits, n_rel


def _per_user(numerator: np.ndarray, denominator: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    out = np.full(n_rel.shape, np.nan)
    ok = n_rel > 0
    out[ok] = numerator[ok] / denominator[ok]
    return out


def hits_matrix(recommended: ArrayLike, relevant, k: int) -> np.ndarray:
    """Mark which of the top-``k`` recommendations are relevant.

    Parameters
    ----------
    recommended : array-like of int, shape (n_users, n_rec)
        Item indices in rank order; negative entries are padding.
    relevant : sparse matrix of shape (n_users, n_items) or sequence of n_users 1-D int arrays
        Relevant items per user (non-zero pattern, or item indices).
    k : int
        Number of ranks to consider, >= 1. Ranks beyond ``n_rec`` are misses.

    Returns
    -------
    hits : ndarray of bool, shape (n_users, k)
        ``hits[u, r]`` is True iff the item at rank ``r + 1`` for user ``u`` is relevant and
        is its first occurrence in the row (duplicates never count twice).

    Examples
    --------
    >>> hits_matrix([[3, 1, 1, -1]], [[1, 2]], k=5)
    array([[False,  True, False, False, False]])
    """
    return _hits_and_counts(recommended, relevant, k)[0]


_PER_USER_DOC = """
    Parameters
    ----------
    recommended : array-like of int, shape (n_users, n_rec)
        Item indices in rank order (rank 1 first); negative entries are padding.
    relevant : sparse matrix of shape (n_users, n_items) or sequence of n_users 1-D int arrays
        Relevant items per user: the non-zero pattern of the matrix, or item indices.
    k : int, default=10
        Cut-off rank, >= 1. Missing slots (``n_rec < k``) are misses.

    Returns
    -------
    values : ndarray of float64, shape (n_users,)
        One value in [0, 1] per user; NaN for users without relevant items.
"""


def _with_doc(func):
    # the six per-user metrics share their Parameters/Returns sections
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__.replace("    {params}\n", _PER_USER_DOC.lstrip("\n"))
    return func


@_with_doc
def precision_at_k(recommended: ArrayLike, relevant, k: int = 10) -> np.ndarray:
    """Fraction of the top-``k`` slots holding a relevant item (always divided by ``k``).

    {params}

    Examples
    --------
    >>> precision_at_k([[3, 1, 4, 2]], [[1, 2, 9]], k=4)
    array([0.5])
    """
    hits, n_rel = _hits_and_counts(recommended, relevant, k)
    return _per_user(hits.sum(axis=1).astype(np.float64), np.full(n_rel.shape, float(k)), n_rel)


@_with_doc
def recall_at_k(recommended: ArrayLike, relevant, k: int = 10) -> np.ndarray:
    """Fraction of each user's relevant items that appear in the top ``k``.

    {params}

    Examples
    --------
    >>> recall_at_k([[3, 1, 4, 2]], [[1, 2, 9]], k=4)
    array([0.66666667])
    """
    hits, n_rel = _hits_and_counts(recommended, relevant, k)
    return _per_user(hits.sum(axis=1).astype(np.float64), n_rel.astype(np.float64), n_rel)


@_with_doc
def ndcg_at_k(recommended: ArrayLike, relevant, k: int = 10) -> np.ndarray:
    """Normalised discounted cumulative gain at ``k`` with binary gains.

    ``DCG = sum over hit ranks r of 1 / log2(r + 1)`` (ranks start at 1), divided by the ideal
    ``sum_{r=1}^{min(k, |relevant|)} 1 / log2(r + 1)``.

    {params}

    Examples
    --------
    >>> ndcg_at_k([[1, 2, 3]], [[1, 2]], k=3)
    array([1.])
    """
    hits, n_rel = _hits_and_counts(recommended, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = hits @ discounts
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(n_rel, k)]
    return _per_user(dcg, idcg, n_rel)


@_with_doc
def average_precision_at_k(recommended: ArrayLike, relevant, k: int = 10) -> np.ndarray:
    """Average precision at ``k`` (the per-user term of MAP@k).

    Sum of precision@r over the hit ranks ``r <= k``, divided by ``min(k, |relevant|)`` so that
    a perfect top-``k`` scores 1 even when a user has more than ``k`` relevant items.

    {params}

    Examples
    --------
    >>> average_precision_at_k([[3, 1, 4, 2]], [[1, 2, 9]], k=4)
    array([0.33333333])
    """
    hits, n_rel = _hits_and_counts(recommended, relevant, k)
    precision_at_r = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    summed = np.where(hits, precision_at_r, 0.0).sum(axis=1)
    return _per_user(summed, np.minimum(n_rel, k).astype(np.float64), n_rel)


@_with_doc
def reciprocal_rank_at_k(recommended: ArrayLike, relevant, k: int = 10) -> np.ndarray:
    """Reciprocal rank of the first relevant item within the top ``k`` (0 if none).

    {params}

    Examples
    --------
    >>> reciprocal_rank_at_k([[3, 1, 4, 2]], [[1, 2, 9]], k=4)
    array([0.5])
    """
    hits, n_rel = _hits_and_counts(recommended, relevant, k)
    first = hits.argmax(axis=1)
    rr = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return _per_user(rr, np.ones(n_rel.shape), n_rel)


@_with_doc
def hit_rate_at_k(recommended: ArrayLike, relevant, k: int = 10) -> np.ndarray:
    """1.0 if any of the top ``k`` items is relevant, else 0.0.

    {params}

    Examples
    --------
    >>> hit_rate_at_k([[3, 1], [5, 6]], [[1], [2]], k=2)
    array([1., 0.])
    """
    hits, n_rel = _hits_and_counts(recommended, relevant, k)
    return _per_user(hits.any(axis=1).astype(np.float64), np.ones(n_rel.shape), n_rel)


def catalogue_coverage(recommended: ArrayLike, n_items: int, k: int = 10) -> float:
    """Fraction of the catalogue recommended to at least one user within the top ``k``.

    Parameters
    ----------
    recommended : array-like of int, shape (n_users, n_rec)
        Item indices in rank order; negative entries are padding and ignored.
    n_items : int
        Catalogue size, >= 1.
    k : int, default=10
        Only the first ``k`` columns are considered.

    Returns
    -------
    float
        Number of distinct item indices in ``recommended[:, :k]`` divided by ``n_items``.

    Raises
    ------
    ParameterError
        If an item index is ``>= n_items`` or ``k``/``n_items`` is not an integer >= 1.

    Examples
    --------
    >>> catalogue_coverage([[0, 1], [1, -1]], n_items=4, k=2)
    0.5
    """
    k = _check_positive_int(k, "k")
    n_items = _check_positive_int(n_items, "n_items")
    top = _as_recommended(recommended)[:, :k]
    items = top[top >= 0]
    if items.size and items.max() >= n_items:
        raise ParameterError(
            f"recommended contains item index {items.max()} but n_items is {n_items}"
        )
    return float(np.unique(items).size / n_items)


def auc(scores: ArrayLike, relevant, candidates=None) -> np.ndarray:
    """Per-user area under the ROC curve of the model scores.

    The fraction of (relevant, non-relevant) candidate pairs in which the relevant item scores
    higher, ties counting 1/2 (the Mann-Whitney U statistic), computed from average ranks in
    O(n_items log n_items) per user.

    Parameters
    ----------
    scores : array-like of float, shape (n_users, n_items)
        Model scores; higher means more recommended. NaN is not allowed, +-inf is.
    relevant : sparse matrix of shape (n_users, n_items) or sequence of n_users 1-D int arrays
        Relevant (positive) items per user.
    candidates : ndarray of bool or sparse matrix, shape (n_users, n_items), default=None
        Items each user is evaluated on (e.g. excluding training items); relevant items
        outside it are ignored. None uses every item.

    Returns
    -------
    values : ndarray of float64, shape (n_users,)
        AUC per user; NaN for users without a positive or without a negative candidate.

    Examples
    --------
    >>> auc([[0.9, 0.1, 0.5, 0.5]], [[0, 2]])
    array([0.875])
    """
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"scores must be a 2-D array of numbers: {exc}") from None
    if s.ndim != 2:
        raise ParameterError(f"scores must be 2-D (n_users, n_items), got shape {s.shape}")
    if np.isnan(s).any():
        raise ParameterError("scores contains NaN")
    n_users, n_items = s.shape

    rel = _as_relevant_csr(relevant, n_users, n_items)
    positive = np.zeros(s.shape, dtype=bool)
    positive[np.repeat(np.arange(n_users), np.diff(rel.indptr)), rel.indices] = True

    if candidates is None:
        cand = np.ones(s.shape, dtype=bool)
    elif sp.issparse(candidates):
        c = _canonical_csr(candidates, "candidates")
        if c.shape != s.shape:
            raise ParameterError(f"candidates has shape {c.shape} but scores has {s.shape}")
        cand = np.zeros(s.shape, dtype=bool)
        cand[np.repeat(np.arange(n_users), np.diff(c.indptr)), c.indices] = True
    else:
        cand = np.asarray(candidates)
        if cand.dtype != np.bool_ or cand.shape != s.shape:
            raise ParameterError(
                f"candidates must be a bool array of shape {s.shape}, "
                f"got dtype {cand.dtype} and shape {cand.shape}"
            )

    positive &= cand
    n_pos = positive.sum(axis=1)
    n_neg = cand.sum(axis=1) - n_pos
    out = np.full(n_users, np.nan)
    if s.size == 0:
        return out
    # Dense ranks are >= 1, so parking non-candidates at 0 puts them strictly below every
    # candidate (even -inf scores): candidate ranks then shift by exactly n_non_candidates.
    dense = rankdata(s, method="dense", axis=1)
    dense[~cand] = 0
    ranks = rankdata(dense, method="average", axis=1)
    n_off = n_items - cand.sum(axis=1)
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=1) - n_pos * n_off
    ok = (n_pos > 0) & (n_neg > 0)
    u_stat = rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0
    out[ok] = u_stat / (n_pos[ok] * n_neg[ok])
    return out


# --------------------------------------------------------------------------------------------
# aggregation and metric names
# --------------------------------------------------------------------------------------------


def aggregate(values: ArrayLike, *, how: str = "mean") -> float:
    """Combine per-user metric values into one number, skipping NaN users.

    Parameters
    ----------
    values : array-like of float, shape (n_users,)
        Per-user values as returned by the ranking metrics.
    how : {"mean", "median"}, default="mean"
        Aggregation over the non-NaN users.

    Returns
    -------
    float

    Raises
    ------
    ParameterError
        If ``values`` is empty or entirely NaN, or ``how`` is unknown.

    Examples
    --------
    >>> aggregate([1.0, float("nan"), 0.5])
    0.75
    """
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"values must be a 1-D array of numbers: {exc}") from None
    if v.ndim != 1:
        raise ParameterError(f"values must be 1-D, got an array of shape {v.shape}")
    funcs = {"mean": np.mean, "median": np.median}
    if how not in funcs:
        raise ParameterError(f"how must be one of {sorted(funcs)}, got {how!r}")
    if v.size == 0:
        raise ParameterError("cannot aggregate an empty array of metric values")
    kept = v[~np.isnan(v)]
    if kept.size == 0:
        raise ParameterError("every metric value is NaN (no user has relevant items)")
    return float(funcs[how](kept))


def item_popularity(train_matrix) -> np.ndarray:
    """Each item's share of users who interacted with it in training (0 to 1).

    Parameters
    ----------
    train_matrix : scipy.sparse matrix of shape (n_users, n_items)
        The training interactions (any non-zero counts once per user).

    Returns
    -------
    ndarray of shape (n_items,)
    """
    matrix = _canonical_csr(train_matrix, "train_matrix")
    counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
    return counts / max(matrix.shape[0], 1)


def _mean_over_list(recommended: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    top = recommended[:, :k]
    if len(values) == 0:  # an empty catalogue: no item is valid, and nothing to index
        return np.full(len(top), np.nan)
    valid = (top >= 0) & (top < len(values))
    gathered = np.where(valid, values[np.where(valid, top, 0)], 0.0)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, gathered.sum(axis=1) / np.maximum(n, 1), np.nan)


def popularity_at_k(recommended: ArrayLike, popularity: ArrayLike, k: int = 10) -> np.ndarray:
    """Mean training popularity of each user's top-``k`` items (popularity bias).

    Compare with the mean popularity of the users' test items: a model recommending
    more popular items than people go on to use has a popularity bias.

    Parameters
    ----------
    recommended : int array of shape (n_users, >= k)
        Item indices, best first; -1 pads.
    popularity : array of shape (n_items,)
        Share of training users per item (:func:`item_popularity`).
    k : int, default=10

    Returns
    -------
    ndarray of shape (n_users,)
        NaN for a user with no recommendation.
    """
    k = _check_positive_int(k, "k")
    return _mean_over_list(_as_recommended(recommended), _as_float_1d(popularity, "popularity"),
                           k)


def novelty_at_k(recommended: ArrayLike, popularity: ArrayLike, k: int = 10) -> np.ndarray:
    """Mean self-information ``−log₂ p_i`` of each user's top-``k`` items (Zhou et al. 2010).

    ``p_i`` is the item's share of training users; never-seen items count as seen by
    one user in ``1 / min(p > 0)``, so the value stays finite. Higher is more novel.

    Parameters
    ----------
    recommended : int array of shape (n_users, >= k)
    popularity : array of shape (n_items,)
    k : int, default=10

    Returns
    -------
    ndarray of shape (n_users,)
    """
    k = _check_positive_int(k, "k")
    p = _as_float_1d(popularity, "popularity")
    floor = p[p > 0].min() if (p > 0).any() else 1.0
    return _mean_over_list(_as_recommended(recommended), -np.log2(np.maximum(p, floor)), k)


RANKING_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "mrr": reciprocal_rank_at_k,
    "hit_rate": hit_rate_at_k,
}

RATING_METRICS: dict[str, Callable[..., float]] = {"rmse": rmse, "mae": mae}

#: Metrics of the recommended lists against the training popularity, not the test items.
BEYOND_ACCURACY: dict[str, Callable[..., np.ndarray]] = {
    "popularity": popularity_at_k,
    "novelty": novelty_at_k,
}

# names that take an optional "@k" and those that take none
_CUTOFF_NAMES = (*RANKING_METRICS, "coverage", *BEYOND_ACCURACY)
_PLAIN_NAMES = (*RATING_METRICS, "auc")
_METRIC_RE = re.compile(r"([a-z_]+)(?:@([0-9]+))?", re.ASCII)


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split a metric spec such as ``"ndcg@10"`` into its base name and cut-off.

    Parameters
    ----------
    name : str
        A ranking metric or ``"coverage"``, optionally followed by ``@k`` with an integer
        ``k >= 1``, or one of ``"rmse"``, ``"mae"``, ``"auc"`` (no cut-off). Case-insensitive.

    Returns
    -------
    base : str
        Canonical lower-case name, a key of :data:`RANKING_METRICS`, :data:`RATING_METRICS`,
        or ``"coverage"``/``"auc"``.
    k : int or None
        The cut-off, or None if absent.

    Raises
    ------
    ParameterError
        For an unknown name (the message lists the valid ones) or a malformed ``@k``.

    Examples
    --------
    >>> parse_metric("NDCG@10")
    ('ndcg', 10)
    >>> parse_metric("rmse")
    ('rmse', None)
    """
    valid = (
        f"valid names are {', '.join(_CUTOFF_NAMES)} (optionally with @k) "
        f"and {', '.join(_PLAIN_NAMES)}"
    )
    if not isinstance(name, str):
        raise ParameterError(f"metric name must be a string, got {name!r}; {valid}")
    spec = name.strip().lower()
    base, at, _ = spec.partition("@")
    if base not in _CUTOFF_NAMES + _PLAIN_NAMES:
        raise ParameterError(f"unknown metric {name!r}; {valid}")
    if at and base in _PLAIN_NAMES:
        raise ParameterError(f"metric {base!r} takes no '@k' cut-off, got {name!r}")
    match = _METRIC_RE.fullmatch(spec)
    if match is None or (match.group(2) is not None and int(match.group(2)) < 1):
        raise ParameterError(f"bad cut-off in metric {name!r}: expected '@k' with integer k >= 1")
    k = match.group(2)
    return base, None if k is None else int(k)
