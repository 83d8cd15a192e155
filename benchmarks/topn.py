"""Top-N recommendation on MovieLens 100K: matfact ``Popularity`` against an independent check.

No peer library ships a plain popularity recommender with the same protocol, so the peer
side is computed here from scratch: the ranking with pandas, the top-N lists and every
metric in plain Python from their textbook definitions, sharing no code with matfact's
:mod:`matfact.evaluation`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

import matfact
from benchmarks.common import environment, fmt_ratio, fmt_seconds, load_ml100k, print_tables, timed

__all__ = ["PROTOCOL", "reference_ranking", "reference_top_n", "reference_metrics", "run"]

K = 10
SEED = 42
METRICS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate", "coverage")
#: NDCG@10 of popularity on this split, as quoted in the issue.
REFERENCE = {"ndcg@10": 0.2142}
FIT_REPEATS = 5
EVAL_REPEATS = 3

PROTOCOL = f"""\
- **Data**: MovieLens 100K (`u.data`, 100,000 ratings), loaded with
  `matfact.load_dataset("ml-100k")`; ratings are not thresholded: every test rating is a
  relevant item.
- **Split**: `matfact.train_test_split(data, 0.2, "per_user", random_state={SEED})`: for each
  user (ascending id), `round(0.2 × n_u)` of their ratings (at least 1) go to test.
- **matfact**: `Popularity()` (score = number of training users who rated the item; ties
  to the smaller item id), evaluated by `matfact.evaluate_ranking(model, test, k={K},
  metrics=METRICS)` with `METRICS = ({", ".join(repr(m) for m in METRICS)})`:
  every test user gets a top-{K} list that excludes the items they rated in training.
- **Independent check** (the peer side, in `benchmarks/topn.py`, sharing no code with
  matfact's evaluation): per-item counts of the training rows with pandas
  (`groupby("item").size()`), sorted by count descending then item id ascending; for each
  test user, the first {K} items of that ranking they did not rate in training; then, with
  *R* the user's test items, hits at ranks *r* ≤ {K}: precision = hits / {K}, recall =
  hits / |R|, NDCG = Σ 1/log₂(r+1) over hit ranks / Σ_(r ≤ min({K}, |R|)) 1/log₂(r+1),
  AP = Σ over hit ranks of (hits up to r) / r, divided by min({K}, |R|), MRR = 1 / first hit
  rank (0 if none), hit rate = 1 if any hit; each averaged over the test users.
  Coverage = distinct recommended items / items in training.
- **Agreement**: the top-{K} lists of `Popularity().recommend(test users, n={K})` are compared
  with the independent lists user by user, and each metric with its independent value.
- **Timing**: wall clock (`time.perf_counter`) after `gc.collect()`; fit is the median of
  {FIT_REPEATS} runs, recommending + scoring all test users the median of {EVAL_REPEATS}
  (`--quick`: 1 run each). The ratio is independent-check time / matfact time (> 1: matfact
  is faster). implicit has no popularity model, so no third-party peer is timed here.
"""


# ------------------------------------------------------------------------------------ the check
def reference_ranking(train: pd.DataFrame) -> list:
    """Training items by number of rows, most first, ties by ascending item id.

    Parameters
    ----------
    train : DataFrame with ``user`` and ``item`` columns
        One row per training interaction (no duplicates).

    Returns
    -------
    list
        Raw item ids, most popular first.
    """
    counts = train.groupby("item").size().rename("n").reset_index()
    ranked = counts.sort_values(["n", "item"], ascending=[False, True], kind="mergesort")
    return ranked["item"].tolist()


def reference_top_n(train: pd.DataFrame, ranking: list, users: list, k: int) -> dict:
    """Each user's first ``k`` items of ``ranking`` not among their training items.

    Returns
    -------
    dict
        Raw user id → list of up to ``k`` raw item ids, best first.
    """
    seen = train.groupby("user")["item"].agg(set).to_dict()
    top_n = {}
    for user in users:
        exclude = seen.get(user, set())
        chosen = []
        for item in ranking:
            if item not in exclude:
                chosen.append(item)
                if len(chosen) == k:
                    break
        top_n[user] = chosen
    return top_n


def reference_metrics(top_n: dict, relevant: dict, n_items: int, k: int) -> dict[str, float]:
    """Mean precision, recall, NDCG, AP, RR and hit rate at ``k`` over users, and coverage.

    Parameters
    ----------
    top_n : dict
        Raw user id → recommended raw item ids, best first.
    relevant : dict
        Raw user id → set of relevant raw item ids (non-empty); the users averaged over.
    n_items : int
        Catalogue size for coverage.
    k : int
        Cut-off.

    Returns
    -------
    dict
        ``"<metric>@<k>"`` → value, for the metrics of :data:`METRICS`.
    """
    totals = dict.fromkeys(("precision", "recall", "ndcg", "map", "mrr", "hit_rate"), 0.0)
    for user, items in relevant.items():
        hit_ranks = [rank for rank, item in enumerate(top_n[user][:k], start=1) if item in items]
        ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(items)) + 1))
        totals["precision"] += len(hit_ranks) / k
        totals["recall"] += len(hit_ranks) / len(items)
        totals["ndcg"] += sum(1.0 / math.log2(rank + 1) for rank in hit_ranks) / ideal
        totals["map"] += sum(n / rank for n, rank in enumerate(hit_ranks, start=1)) / min(
            k, len(items))
        totals["mrr"] += 1.0 / hit_ranks[0] if hit_ranks else 0.0
        totals["hit_rate"] += 1.0 if hit_ranks else 0.0
    out = {f"{name}@{k}": total / len(relevant) for name, total in totals.items()}
    recommended = {item for items in top_n.values() for item in items[:k]}
    out[f"coverage@{k}"] = len(recommended) / n_items
    return out


def _independent(train: pd.DataFrame, test: pd.DataFrame, k: int) -> dict[str, Any]:
    relevant = test.groupby("user")["item"].agg(set).to_dict()
    top_n = reference_top_n(train, reference_ranking(train), list(relevant), k)
    return {"top_n": top_n, "metrics": reference_metrics(top_n, relevant, train["item"].nunique(),
                                                         k)}


# ------------------------------------------------------------------------------------ suite
def run(quick: bool = False) -> dict[str, Any]:
    """Run the top-N suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        A single run of each timing (the split and metrics are the same).

    Returns
    -------
    dict
        ``suite``, ``title``, ``quick``, ``environment``, ``protocol`` (markdown),
        ``tables`` (formatted, for :mod:`benchmarks.report`) and ``results`` (raw numbers).

    Raises
    ------
    BenchmarkSkipped
        If MovieLens 100K is not available.
    """
    env = environment()
    data = load_ml100k()
    fit_repeats, eval_repeats = (1, 1) if quick else (FIT_REPEATS, EVAL_REPEATS)
    train, test = matfact.train_test_split(data, 0.2, "per_user", random_state=SEED)
    names = tuple(f"{name}@{K}" for name in METRICS)

    fit_time, model = timed(lambda: matfact.Popularity().fit(train, progress=False), fit_repeats)
    eval_time, summary = timed(
        lambda: matfact.evaluate_ranking(model, test, k=K, metrics=METRICS), eval_repeats)
    ours = {name: summary[name] for name in names}

    train_df, test_df = train.to_pandas(), test.to_pandas()
    ref_fit_time, _ = timed(lambda: reference_ranking(train_df), fit_repeats)
    ref_eval_time, independent = timed(lambda: _independent(train_df, test_df, K), eval_repeats)
    theirs = independent["metrics"]

    users = np.asarray(list(independent["top_n"]))
    ids, _ = model.recommend(users, n=K)
    same_lists = sum(ids[row].tolist() == independent["top_n"][user]
                     for row, user in enumerate(users.tolist()))
    differences = {name: abs(ours[name] - theirs[name]) for name in names}

    of_fit = f"median of {fit_repeats}" if fit_repeats > 1 else "1 run"
    of_eval = f"median of {eval_repeats}" if eval_repeats > 1 else "1 run"
    metric_rows = [
        [name, f"{ours[name]:.4f}", f"{theirs[name]:.4f}", f"{differences[name]:.1e}",
         f"{REFERENCE[name]:.4f}" if name in REFERENCE else ""]
        for name in names
    ]
    timing_rows = [
        [f"fit ({of_fit})", fmt_seconds(fit_time.median), fmt_seconds(ref_fit_time.median),
         fmt_ratio(ref_fit_time.median / fit_time.median)],
        [f"top-{K} for {len(users)} test users + metrics ({of_eval})",
         fmt_seconds(eval_time.median), fmt_seconds(ref_eval_time.median),
         fmt_ratio(ref_eval_time.median / eval_time.median)],
    ]
    tables = [
        {
            "title": f"Popularity top-{K}, ML-100K per-user 80/20 split (random_state={SEED})",
            "columns": ["metric", "matfact Popularity()", "independent check (pandas + Python)",
                        "abs. difference", "quoted in the issue"],
            "rows": metric_rows,
            "note": (f"Top-{K} lists identical for {same_lists} of {len(users)} test users; "
                     f"{summary['n_users']} users evaluated, {summary['n_unknown_users']} "
                     f"unknown to the model; {train.nnz:,} training / {test.nnz:,} test "
                     f"ratings."),
        },
        {
            "title": "Popularity top-N: time",
            "columns": ["step", "matfact", "independent check", "ratio (check / matfact)"],
            "rows": timing_rows,
            "note": ("matfact's second step is `evaluate_ranking` (recommend with seen items "
                     "excluded, then the metrics); the check's is the pure-Python loop above "
                     "plus its pandas grouping. The first `evaluate_ranking` call took "
                     f"{fmt_seconds(eval_time.times[0])} (it loads the numba top-k kernel); "
                     + ("the median leaves it out." if eval_repeats > 2
                        and eval_time.times[0] == max(eval_time.times)
                        else "it counts in the figure shown.")),
        },
    ]
    result = {
        "suite": "topn",
        "title": f"Top-N recommendation: Popularity on MovieLens 100K (k = {K})",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": tables,
        "results": {
            "n_train": train.nnz, "n_test": test.nnz, "n_users": summary["n_users"],
            "matfact": ours, "independent": theirs, "abs_difference": differences,
            "identical_top_n_users": same_lists, "reference": REFERENCE,
            "matfact_fit": fit_time.to_dict(), "matfact_evaluate": eval_time.to_dict(),
            "independent_fit": ref_fit_time.to_dict(),
            "independent_evaluate": ref_eval_time.to_dict(),
        },
    }
    print_tables(result)
    return result
