"""Evaluate models on held-out interactions: rating accuracy, top-k ranking, cross-validation.

:func:`evaluate` and :func:`evaluate_ranking` score a fitted model;
:func:`cross_validate` fits a fresh clone on each fold's training part, scores it
on the fold's test part and returns one row per fold. Folds may run in parallel
processes, whose numba threads are then cut so that jobs × threads ≤ cores.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matfact._params import check_n
from matfact.data.interactions import Interactions
from matfact.evaluation.metrics import (
    BEYOND_ACCURACY,
    RANKING_METRICS,
    RATING_METRICS,
    aggregate,
    auc,
    catalogue_coverage,
    item_popularity,
    parse_metric,
)
from matfact.evaluation.split import Split, kfold
from matfact.exceptions import DataError, LeakageWarning, ParameterError

__all__ = ["evaluate", "evaluate_ranking", "cross_validate", "evaluate_by_activity", "score",
           "count_overlap", "warn_overlap", "default_metrics", "predicts_ratings",
           "relevant_items",
           "resolve_folds", "jobs_and_threads", "run_parallel", "DEFAULT_RANKING_METRICS"]

DEFAULT_RANKING_METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "coverage")
_BATCH = 1024


def _check_test(test: Any) -> Interactions:
    if not isinstance(test, Interactions):
        raise DataError(f"test data must be a matfact.Interactions, got {type(test).__name__}")
    return test


def _metric_names(metrics: Any) -> list[str]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not isinstance(metrics, Iterable) or not metrics:
        raise ParameterError(f"metrics must be a non-empty list of names, got {metrics!r}")
    return list(metrics)


# ------------------------------------------------------------------------------ leakage
def count_overlap(model: Any, test: Interactions) -> int | None:
    """How many pairs of ``test`` the fitted ``model`` saw in training.

    A pair is matched by raw user and item id against the training interactions
    the model keeps (:meth:`~matfact.models.base.Recommender.seen_pairs_mask`).
    Scoring such pairs measures what the model remembers, not what it predicts:
    rating errors look smaller, and ranking metrics look worse because seen items
    are never recommended.

    Parameters
    ----------
    model : fitted matfact model
    test : Interactions

    Returns
    -------
    int or None
        The number of test pairs in training; None when the model keeps no
        training interactions, so it cannot tell.

    Examples
    --------
    >>> import matfact
    >>> data = matfact.Interactions.from_arrays([1, 1, 2], [10, 20, 10], [4.0, 3.0, 5.0])
    >>> model = matfact.Baseline().fit(data, progress=False)
    >>> count_overlap(model, data.subset(users=[1]))
    2
    """
    test = _check_test(test)
    users = model.user_index_.get_indexer(test.user_ids)[test.user_codes]
    items = model.item_index_.get_indexer(test.item_ids)[test.item_codes]
    seen = model.seen_pairs_mask(users, items)
    return None if seen is None else int(seen.sum())


_HELD_OUT = "evaluate on pairs held out from training (e.g. matfact.train_test_split)"


def warn_overlap(model: Any, n_overlap: int | None, n_test: int, consequence: str, *,
                 fix: str = _HELD_OUT, stacklevel: int = 2) -> None:
    """Warn (:class:`~matfact.exceptions.LeakageWarning`) if ``n_overlap`` test pairs > 0.

    The one message for every place that evaluates: the count, the share of the
    ``n_test`` test pairs, what it does to the figures (``consequence``) and ``fix``.
    ``stacklevel`` counts from the caller of this function.
    """
    if not n_overlap:
        return
    warnings.warn(
        f"{n_overlap:,} of {n_test:,} test pairs ({n_overlap / max(n_test, 1):.1%}) were in "
        f"{type(model).__name__}'s training data: {consequence}; {fix}",
        LeakageWarning, stacklevel=stacklevel + 1,
    )


def evaluate(model: Any, test: Interactions, metrics: Iterable[str] = ("rmse", "mae")) -> dict:
    """Rating accuracy of ``model`` on the explicit ratings of ``test``.

    Unknown users and items are scored by the model's documented fallback and
    counted in ``n_unknown``.

    Parameters
    ----------
    model : fitted matfact model
    test : Interactions
        Held-out explicit ratings; their weights, if given, weight the errors.
    metrics : sequence of {"rmse", "mae"}, default=("rmse", "mae")

    Returns
    -------
    dict
        One float per metric, plus ``n`` (test ratings), ``n_unknown``
        (ratings whose user or item the model did not see) and ``n_overlap``
        (test pairs the model saw in training, :func:`count_overlap`; None when
        the model cannot tell).

    Warns
    -----
    LeakageWarning
        When ``n_overlap`` > 0: their errors are training errors.
    """
    test = _check_test(test)
    if test.is_implicit:
        raise DataError("evaluate() needs explicit ratings; use evaluate_ranking() for "
                        "implicit data")
    names = _metric_names(metrics)
    for name in names:
        if name not in RATING_METRICS:
            raise ParameterError(f"unknown rating metric {name!r}; choose from "
                                 f"{sorted(RATING_METRICS)}")
    n_overlap = count_overlap(model, test)
    warn_overlap(model, n_overlap, test.nnz, "their errors are training errors, so RMSE and "
                 "MAE look better than on new data", stacklevel=2)
    users, items = test.users, test.items
    predictions = model.predict(users, items)
    known = (model.user_index_.get_indexer(users) >= 0) & (model.item_index_.get_indexer(items) >= 0)
    weights = test.weights if test.has_weights else None
    result: dict[str, Any] = {
        name: RATING_METRICS[name](test.ratings, predictions, sample_weight=weights)
        for name in names
    }
    result["n"] = test.nnz
    result["n_unknown"] = int((~known).sum())
    result["n_overlap"] = n_overlap
    return result


def evaluate_ranking(model: Any, test: Interactions, k: int = 10,
                     metrics: Iterable[str] = DEFAULT_RANKING_METRICS, *,
                     per_user: bool = False) -> dict | tuple[dict, pd.DataFrame]:
    """Top-``k`` ranking quality of ``model`` on the users of ``test``.

    Every user with at least one test interaction is evaluated; all of that
    user's test items are relevant (ratings are not thresholded: pass
    ``test.to_implicit(threshold)`` to do so). Items the model saw for the user
    in ``fit`` are never recommended. Unknown users get the model's fallback
    ranking; test items the model never saw stay relevant but cannot be hit.

    Parameters
    ----------
    model : fitted matfact model
    test : Interactions
    k : int, default=10
        List length for metrics named without ``@k``.
    metrics : sequence of str, default=DEFAULT_RANKING_METRICS
        From ``precision``, ``recall``, ``ndcg``, ``map``, ``mrr``,
        ``hit_rate``, ``coverage`` (each optionally ``@k``) and ``auc`` (over all
        items the user did not interact with in ``fit``); beyond accuracy,
        ``popularity@k`` (mean training popularity of the recommended items; the
        summary then also holds ``test_popularity``, the same for the users' test
        items) and ``novelty@k`` (mean ``−log₂`` popularity).
    per_user : bool, default=False
        Also return a DataFrame of per-user values (indexed by raw user id).

    Returns
    -------
    summary : dict
        ``"<metric>@<k>"`` → mean over users (users with NaN skipped), plus
        ``n_users``, ``n_unknown_users`` and ``n_overlap`` (test pairs the model saw
        in training, :func:`count_overlap`; None when the model cannot tell).
    per_user : pandas.DataFrame
        Only when ``per_user=True``.

    Warns
    -----
    LeakageWarning
        When ``n_overlap`` > 0: those items are never recommended, so never hit.
    """
    test = _check_test(test)
    k = check_n(k, "k")
    parsed = []
    for name in _metric_names(metrics):
        base, name_k = parse_metric(name)
        if base in RATING_METRICS:
            raise ParameterError(f"{name} is a rating metric; use evaluate()")
        parsed.append((base, name_k or k))
    max_k = max(metric_k for base, metric_k in parsed if base != "auc") if any(
        base != "auc" for base, _ in parsed) else k

    n_overlap = count_overlap(model, test)
    warn_overlap(model, n_overlap, test.nnz, "seen items are never recommended "
                 "(exclude_seen), so they can never be hit and the metrics look worse",
                 stacklevel=2)
    users_raw, relevant = relevant_items(test, model.item_index_)
    model_users = model.user_index_.get_indexer(users_raw)

    recommended = model.recommend_codes(model_users, max_k, exclude_seen=True)[0]
    values: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    popularity = None
    for base, metric_k in parsed:
        key = f"{base}@{metric_k}" if base != "auc" else "auc"
        if base == "coverage":
            summary[key] = catalogue_coverage(recommended, model.n_items_, metric_k)
        elif base in BEYOND_ACCURACY:
            if popularity is None:
                popularity = item_popularity(model.seen_)
                # The same measure of the test items, for comparison.
                summary["test_popularity"] = aggregate(_relevant_popularity(relevant,
                                                                           popularity))
            values[key] = BEYOND_ACCURACY[base](recommended, popularity, metric_k)
            summary[key] = aggregate(values[key])
        elif base == "auc":
            values[key] = _auc(model, model_users, relevant)
            summary[key] = aggregate(values[key])
        else:
            values[key] = RANKING_METRICS[base](recommended, relevant, metric_k)
            summary[key] = aggregate(values[key])
    summary["n_users"] = len(users_raw)
    summary["n_unknown_users"] = int((model_users < 0).sum())
    summary["n_overlap"] = n_overlap
    if per_user:
        frame = pd.DataFrame(values, index=pd.Index(users_raw, name="user"))
        return summary, frame
    return summary


def relevant_items(test: Interactions, item_index: Any) -> tuple[np.ndarray, sp.csr_matrix]:
    """Each test user's relevant items, in the indices of a training vocabulary.

    One row per user with a test interaction, in ascending code order. A test item
    missing from ``item_index`` gets a column past the catalogue, so it counts in the
    relevant set but can never be recommended.

    Returns
    -------
    users : ndarray
        Raw ids of the rows.
    relevant : scipy.sparse.csr_matrix of shape (n_users, len(item_index) + unseen items)
    """
    user_codes = np.unique(test.user_codes)
    row_of = np.full(test.n_users, -1, dtype=np.int64)
    row_of[user_codes] = np.arange(len(user_codes))
    item_codes = item_index.get_indexer(test.item_ids)
    unseen = item_codes < 0
    item_codes[unseen] = len(item_index) + np.arange(int(unseen.sum()))
    relevant = sp.csr_matrix(
        (np.ones(test.nnz, dtype=np.float32),
         (row_of[test.user_codes], item_codes[test.item_codes])),
        shape=(len(user_codes), len(item_index) + int(unseen.sum())),
    )
    relevant.sum_duplicates()
    return test.user_ids[user_codes], relevant


def _relevant_popularity(relevant: sp.csr_matrix, popularity: np.ndarray) -> np.ndarray:
    """Per user: the mean training popularity of their test items the model knows."""
    known = relevant[:, : len(popularity)].tocsr()
    counts = np.diff(known.indptr)
    rows = np.repeat(np.arange(known.shape[0]), counts)
    sums = np.bincount(rows, weights=popularity[known.indices], minlength=known.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _auc(model: Any, model_users: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    out = np.empty(len(model_users))
    rel = relevant[:, : model.n_items_].tocsr()
    for start in range(0, len(model_users), _BATCH):
        batch = model_users[start:start + _BATCH]
        scores = np.asarray(model.score_users(batch), dtype=np.float64)
        candidates = np.ones(scores.shape, dtype=bool)
        known = np.flatnonzero(batch >= 0)
        if len(known):
            seen = model.seen_[batch[known]].tocoo()
            candidates[known[seen.row], seen.col] = False
        out[start:start + len(batch)] = auc(scores, rel[start:start + len(batch)], candidates)
    return out


# ------------------------------------------------------------------------------ cross-validation
def predicts_ratings(model: Any, data: Interactions) -> bool:
    """Whether ``model`` fitted on ``data`` predicts ratings (explicit data, a rating model)."""
    return not data.is_implicit and not model.ranks_only


def default_metrics(model: Any, data: Interactions, k: int = 10) -> list[str]:
    """RMSE and MAE for a rating model on explicit data, else NDCG@k and precision@k."""
    if predicts_ratings(model, data):
        return ["rmse", "mae"]
    return [f"ndcg@{k}", f"precision@{k}"]


def score(model: Any, test: Interactions, metrics: Sequence[str], k: int = 10) -> dict:
    """Every metric of ``metrics`` for a fitted model: rating ones by :func:`evaluate`,
    ranking ones by :func:`evaluate_ranking` (``name@k`` keys)."""
    rating = [m for m in metrics if m in RATING_METRICS]
    ranking = [m for m in metrics if m not in RATING_METRICS]
    result: dict[str, float] = {}
    if rating:
        values = evaluate(model, test, rating)
        result.update({name: values[name] for name in rating})
    if ranking:
        values = evaluate_ranking(model, test, k=k, metrics=ranking)
        for name in ranking:
            base, name_k = parse_metric(name)
            key = f"{base}@{name_k or k}" if base != "auc" else "auc"
            result[name] = values[key]
    return result


def _check_metrics(metrics: Any, model: Any, data: Interactions, k: int) -> list[str]:
    if metrics is None:
        return default_metrics(model, data, k)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ParameterError("metrics must name at least one metric")
    for name in names:
        if name not in RATING_METRICS:
            parse_metric(name)  # raises ParameterError for an unknown name
    if data.is_implicit and any(name in RATING_METRICS for name in names):
        raise ParameterError("rating metrics (rmse, mae) need explicit ratings; the data is "
                             "implicit: use ranking metrics such as ndcg@10")
    return names


def resolve_folds(cv: Any, data: Interactions,
                  random_state: int | None = 0) -> list[tuple[Interactions, Interactions]]:
    """``cv`` as a list of (train, test): an int (k-fold), a splitter or explicit pairs.

    A splitter is a callable ``cv(data)`` returning (train, test) pairs, e.g.
    ``lambda d: [matfact.train_test_split(d, 0.2, "per_user", random_state=s)
    for s in range(3)]``.
    """
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        return [(s.train, s.test) for s in kfold(data, int(cv), random_state=random_state)]
    if callable(cv):
        cv = cv(data)
    if isinstance(cv, Iterable) and not isinstance(cv, (str, bytes)):
        folds = []
        for pair in cv:
            train, test = (pair.train, pair.test) if isinstance(pair, Split) else pair
            if not isinstance(train, Interactions) or not isinstance(test, Interactions):
                raise ParameterError("cv pairs must be (train, test) Interactions")
            folds.append((train, test))
        if folds:
            return folds
    raise ParameterError(f"cv must be an int ≥ 2, a splitter (callable) or a non-empty list of "
                         f"(train, test) pairs; got {cv!r}")


def jobs_and_threads(model: Any, n_jobs: int, n_tasks: int) -> tuple[int, int | None]:
    """Processes to use and numba threads for each, so that jobs × threads ≤ cores."""
    cores = os.cpu_count() or 1
    if not isinstance(n_jobs, (int, np.integer)) or isinstance(n_jobs, bool) or n_jobs == 0 \
            or n_jobs < -1:
        raise ParameterError(f"n_jobs must be a positive int or -1 (all cores), got {n_jobs!r}")
    jobs = cores if n_jobs == -1 else int(n_jobs)
    jobs = max(1, min(jobs, cores, n_tasks))
    if jobs == 1:
        return 1, None
    own = model.get_params().get("n_threads")
    threads = max(1, cores // jobs)
    return jobs, threads if own is None else min(int(own), threads)


def _fit_and_score(model: Any, train: Interactions, test: Interactions, metrics: list[str],
                   k: int, threads: int | None) -> tuple[dict, Any]:
    from sklearn.base import clone

    fitted = clone(model)
    if threads is not None and "n_threads" in fitted.get_params():
        fitted.set_params(n_threads=threads)
    start = time.perf_counter()
    fitted.fit(train, progress=False)
    fit_time = time.perf_counter() - start
    start = time.perf_counter()
    row = score(fitted, test, metrics, k)
    row.update(fit_time=fit_time, test_time=time.perf_counter() - start,
               n_train=train.nnz, n_test=test.nnz, n_overlap=count_overlap(fitted, test))
    return row, fitted


def run_parallel(function: Callable, tasks: list[tuple], jobs: int, threads: int | None, *,
                 progress: Any = False, desc: str = "", unit: str = "task") -> list:
    """``[function(*task) for task in tasks]``, in ``jobs`` processes (joblib/loky) if > 1.

    Each worker's BLAS/OpenMP pools are held to ``threads`` so that processes and their
    threads together stay within the cores. ``progress`` reports each finished task
    (:func:`matfact._progress.progress_bar`: a bar, plain lines, or nothing).
    """
    from matfact._progress import progress_bar

    if jobs == 1:
        results = (function(*task) for task in tasks)
        return list(progress_bar(results, progress=progress, desc=desc, total=len(tasks),
                                 unit=unit))
    from joblib import Parallel, delayed, parallel_config

    with parallel_config(backend="loky", inner_max_num_threads=threads or 1):
        results = Parallel(n_jobs=jobs, return_as="generator")(
            delayed(function)(*task) for task in tasks)
        return list(progress_bar(results, progress=progress, desc=desc, total=len(tasks),
                                 unit=unit))


def cross_validate(model: Any, data: Interactions, cv: Any = 5, metrics: Any = None,
                   k: int = 10, n_jobs: int = 1, return_models: bool = False,
                   random_state: int | None = 0, progress: Any = False
                   ) -> pd.DataFrame | tuple[pd.DataFrame, list]:
    """Fit and score ``model`` on every fold of ``data``.

    Parameters
    ----------
    model : matfact model (unfitted; each fold fits a clone)
    data : Interactions
    cv : int, callable or list, default=5
        Number of k-fold splits (``matfact.kfold(data, cv, random_state)``), a splitter
        ``cv(data) -> [(train, test), ...]``, or explicit (train, test) pairs / ``Split``s.
    metrics : str or list of str, default=None
        Rating metrics (``rmse``, ``mae``) and ranking metrics (``ndcg@10``,
        ``precision``, ``recall@20``, ``map``, ``coverage``, ``auc``...), mixed freely.
        ``None``: RMSE and MAE for rating models on explicit data, else NDCG@k and
        precision@k.
    k : int, default=10
        Cut-off of ranking metrics named without ``@k``.
    n_jobs : int, default=1
        Folds fitted in parallel processes (``-1``: one per core). Each process's model
        then runs on ``cores // n_jobs`` numba threads (fewer if its ``n_threads`` says so).
    return_models : bool, default=False
        Also return the fitted model of each fold.
    random_state : int or None, default=0
        Seed of the k-fold split when ``cv`` is an int.
    progress : bool, "bar", "lines" or None, default=False
        Report each finished fold (``"lines"``: ``"BiasedMF cross-validation: fold
        2/5 …"`` on stderr, for logs of long runs; see
        :func:`matfact._progress.progress_bar`).

    Returns
    -------
    results : pandas.DataFrame
        One row per fold (index 0, 1, ...) with a column per metric, ``fit_time`` and
        ``test_time`` (seconds), ``n_train``, ``n_test`` and ``n_overlap`` (test pairs
        in the fold's training part: 0 for honest folds; see :func:`count_overlap`); then
        rows ``"mean"`` and ``"std"`` (sample standard deviation over the folds).
    models : list
        Only with ``return_models=True``.
    """
    if not isinstance(data, Interactions):
        raise DataError(f"data must be a matfact.Interactions, got {type(data).__name__}")
    k = check_n(k, "k")
    names = _check_metrics(metrics, model, data, k)
    folds = resolve_folds(cv, data, random_state)
    jobs, threads = jobs_and_threads(model, n_jobs, len(folds))
    outcomes = run_parallel(_fit_and_score,
                            [(model, train, test, names, k, threads) for train, test in folds],
                            jobs, threads, progress=progress,
                            desc=f"{type(model).__name__} cross-validation", unit="fold")
    frame = pd.DataFrame([row for row, _ in outcomes])
    frame.index.name = "fold"
    summary = pd.DataFrame([frame.mean(), frame.std(ddof=1)], index=["mean", "std"])
    frame = pd.concat([frame, summary])
    if return_models:
        return frame, [fitted for _, fitted in outcomes]
    return frame


# ------------------------------------------------------------------------------ by user activity
#: Upper bounds of the activity groups (training interactions per user): cold, medium, heavy.
ACTIVITY_BINS = (5, 50)


def evaluate_by_activity(model: Any, test: Interactions, metrics: Any = None, k: int = 10,
                         bins: tuple[int, int] = ACTIVITY_BINS) -> pd.DataFrame:
    """Every metric again, for users grouped by how much they interacted in training.

    Newcomers are where recommenders struggle; this says by how much. A test user's
    activity is their number of training interactions (0 for a user the model never saw).

    Parameters
    ----------
    model : fitted matfact model
    test : Interactions
    metrics : str or list of str, default=None
        As in :func:`cross_validate` (rating and ranking metrics mixed freely).
    k : int, default=10
    bins : (int, int), default=(5, 50)
        ``cold``: at most ``bins[0]`` training interactions; ``medium``: up to
        ``bins[1]``; ``heavy``: more.

    Returns
    -------
    pandas.DataFrame
        Rows ``cold``, ``medium``, ``heavy`` (groups without test users are left out):
        ``n_users``, ``n_test`` and one column per metric.
    """
    test = _check_test(test)
    k = check_n(k, "k")
    if (not isinstance(bins, tuple) or len(bins) != 2 or not all(
            isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in bins)
            or not 0 <= bins[0] < bins[1]):
        raise ParameterError(f"bins must be two increasing ints ≥ 0, got {bins!r}")
    names = _check_metrics(metrics, model, test, k)
    present = test.user_ids[np.unique(test.user_codes)]  # users with test interactions
    codes = model.user_index_.get_indexer(present)
    counts = np.diff(model.seen_.indptr)
    activity = np.where(codes >= 0, counts[np.maximum(codes, 0)], 0)
    group_of_user = np.digitize(activity, [bins[0] + 0.5, bins[1] + 0.5])
    labels = (f"cold (≤ {bins[0]})", f"medium ({bins[0] + 1}–{bins[1]})", f"heavy (> {bins[1]})")
    rows = {}
    for group, label in enumerate(labels):
        users = present[group_of_user == group]
        if users.size == 0:
            continue
        part = test.subset(users=users)
        rows[label] = {"n_users": part.n_users, "n_test": part.nnz,
                       **score(model, part, names, k)}
    return pd.DataFrame.from_dict(rows, orient="index")
