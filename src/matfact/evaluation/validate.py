"""Evaluate a fitted model on held-out interactions: rating accuracy and top-k ranking."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matfact.data.interactions import Interactions
from matfact.evaluation.metrics import (
    RANKING_METRICS,
    RATING_METRICS,
    aggregate,
    auc,
    catalogue_coverage,
    parse_metric,
)
from matfact.exceptions import DataError, MatfactWarning, ParameterError
from matfact.models._params import check_n

__all__ = ["evaluate", "evaluate_ranking", "DEFAULT_RANKING_METRICS"]

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
        One float per metric, plus ``n`` (test ratings) and ``n_unknown``
        (ratings whose user or item the model did not see).
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
        items the user did not interact with in ``fit``).
    per_user : bool, default=False
        Also return a DataFrame of per-user values (indexed by raw user id).

    Returns
    -------
    summary : dict
        ``"<metric>@<k>"`` → mean over users (users with NaN skipped), plus
        ``n_users`` and ``n_unknown_users``.
    per_user : pandas.DataFrame
        Only when ``per_user=True``.
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

    # Relevant items in the model's item indices; test items the model never
    # saw get indices past the catalogue so they count in |relevant| but are never hit.
    user_codes_test = np.unique(test.user_codes)
    users_raw = test.user_ids[user_codes_test]
    row_of = np.full(test.n_users, -1, dtype=np.int64)
    row_of[user_codes_test] = np.arange(len(user_codes_test))
    item_codes = model.item_index_.get_indexer(test.item_ids)
    unseen_items = item_codes < 0
    item_codes[unseen_items] = model.n_items_ + np.arange(int(unseen_items.sum()))
    n_columns = model.n_items_ + int(unseen_items.sum())
    relevant = sp.csr_matrix(
        (np.ones(test.nnz, dtype=np.float32),
         (row_of[test.user_codes], item_codes[test.item_codes])),
        shape=(len(users_raw), n_columns),
    )
    relevant.sum_duplicates()
    model_users = model.user_index_.get_indexer(users_raw)
    _warn_overlap(model, model_users, relevant)

    recommended = model._recommend_codes(model_users, max_k, exclude_seen=True)[0]
    values: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    for base, metric_k in parsed:
        key = f"{base}@{metric_k}" if base != "auc" else "auc"
        if base == "coverage":
            summary[key] = catalogue_coverage(recommended, model.n_items_, metric_k)
        elif base == "auc":
            values[key] = _auc(model, model_users, relevant)
            summary[key] = aggregate(values[key])
        else:
            values[key] = RANKING_METRICS[base](recommended, relevant, metric_k)
            summary[key] = aggregate(values[key])
    summary["n_users"] = len(users_raw)
    summary["n_unknown_users"] = int((model_users < 0).sum())
    if per_user:
        frame = pd.DataFrame(values, index=pd.Index(users_raw, name="user"))
        return summary, frame
    return summary


def _warn_overlap(model: Any, model_users: np.ndarray, relevant: sp.csr_matrix) -> None:
    known = model_users >= 0
    if not known.any():
        return
    seen = model.seen_[model_users[known]]
    rel = relevant[np.flatnonzero(known)][:, : model.n_items_]
    overlap = int(seen.multiply(rel).nnz)
    if overlap:
        warnings.warn(
            f"{overlap} test interaction(s) were also in the training data; they can never be "
            f"recommended (exclude_seen) and lower recall: split train and test without overlap",
            MatfactWarning, stacklevel=3,
        )


def _auc(model: Any, model_users: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    out = np.empty(len(model_users))
    rel = relevant[:, : model.n_items_].tocsr()
    for start in range(0, len(model_users), _BATCH):
        batch = model_users[start:start + _BATCH]
        scores = np.asarray(model._score_users(batch), dtype=np.float64)
        candidates = np.ones(scores.shape, dtype=bool)
        known = np.flatnonzero(batch >= 0)
        if len(known):
            seen = model.seen_[batch[known]].tocoo()
            candidates[known[seen.row], seen.col] = False
        out[start:start + len(batch)] = auc(scores, rel[start:start + len(batch)], candidates)
    return out
