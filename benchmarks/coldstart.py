"""Cold start latency: ``fold_in``, ``update_users`` and one user's scoring for every model.

The cold-start issue asks every recommender to place a user it never saw from
20 interactions in ≤ 1 ms, without changing the model (``fold_in``), and to
(re)compute a user in the model itself (``update_users``), which the service
calls on every new rating. Issue 20 asks the same of fold-in and of scoring one
user on a larger catalogue (17,632 items, the size of the tester's play-count
model) with BLAS at its default thread count: the second table.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import matfact
from benchmarks.common import environment, load_ml100k, print_tables, wait_for_quiet

__all__ = ["run", "PROTOCOL"]

HISTORY = 20
CALLS = 500
QUICK_CALLS = 50
GOAL_MS = 1.0
SEED = 0
LARGE_USERS = 3_000
LARGE_ITEMS = 17_632
LARGE_EXTRA = 60_000  # interactions beyond one per item, drawn by a Zipf-like popularity
MODELS = {
    "Baseline()": (matfact.Baseline, "explicit"),
    "BiasedMF()": (lambda: matfact.BiasedMF(random_state=SEED), "explicit"),
    "SVDPlusPlus()": (lambda: matfact.SVDPlusPlus(random_state=SEED), "explicit"),
    "ALS()": (lambda: matfact.ALS(random_state=SEED), "explicit"),
    "BayesianMF()": (lambda: matfact.BayesianMF(random_state=SEED), "explicit"),
    "NMF()": (lambda: matfact.NMF(random_state=SEED), "explicit"),
    "HybridMF()": (lambda: matfact.HybridMF(random_state=SEED), "explicit"),
    "ImplicitALS()": (lambda: matfact.ImplicitALS(random_state=SEED), "implicit"),
    "BPR()": (lambda: matfact.BPR(random_state=SEED), "implicit"),
    "PureSVD()": (matfact.PureSVD, "implicit"),
    "Popularity()": (matfact.Popularity, "implicit"),
}

PROTOCOL = f"""\
- ML-100K; each model at its defaults (seed {SEED}) fitted once on all of it (explicit
  models on the ratings, the others on `data.to_implicit()`).
- `fold_in(items, ratings)`: {CALLS} calls, each with a fresh history of {HISTORY} distinct
  random items (seed {SEED}) and ratings 1–5; wall time per call (`time.perf_counter`),
  median and 99th percentile. Goal: ≤ {GOAL_MS:g} ms per call for {HISTORY} interactions.
- `update_users([user], [(items, ratings)])`: the same histories written to existing users
  in turn (the model changes; the seen-item matrix is rewritten).
- Large catalogue (second table): a synthetic set of {LARGE_USERS:,} users × {LARGE_ITEMS:,}
  items (every item once, plus {LARGE_EXTRA:,} interactions with Zipf-like item
  popularity, ratings 1–5, seed {SEED}); each model at its defaults fitted on it as above.
  `fold_in` as above; `score_users([u])` (every item's score for one known user) and
  `recommend(user, n=10)`, {CALLS} calls each over users in turn. BLAS at its default
  thread count (the environment table lists it). Goal: ≤ {GOAL_MS:g} ms for each.
- One process, after waiting up to 60 s for the machine to be quiet.
"""


def _latencies(call: Any, histories: list) -> np.ndarray:
    times = np.empty(len(histories))
    for n, history in enumerate(histories):
        start = time.perf_counter()
        call(n, *history)
        times[n] = time.perf_counter() - start
    return times * 1e3


def _histories(data: Any, calls: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(SEED)
    return [(rng.choice(data.item_ids, HISTORY, replace=False),
             rng.integers(1, 6, HISTORY).astype(np.float64)) for _ in range(calls)]


def _summary(prefix: str, times: np.ndarray) -> dict[str, float]:
    return {f"{prefix}_median_ms": float(np.median(times)),
            f"{prefix}_p99_ms": float(np.quantile(times, 0.99))}


def _measure(name: str, model: Any, data: Any, calls: int) -> dict[str, Any]:
    histories = _histories(data, calls)
    model.fold_in(*histories[0])  # compile outside the clock
    fold = _latencies(lambda n, items, ratings: model.fold_in(items, ratings), histories)
    users = data.user_ids
    update = _latencies(lambda n, items, ratings: model.update_users(
        [users[n % len(users)]], [(items, ratings)]), histories)
    row = {"model": name, **_summary("fold_in", fold), **_summary("update", update)}
    print(f"  {name:15s} fold_in {row['fold_in_median_ms']:.3f} ms (p99 "
          f"{row['fold_in_p99_ms']:.3f})  update_users {row['update_median_ms']:.3f} ms",
          flush=True)
    return row


def large_catalogue() -> Any:
    """The synthetic ratings of the second table (``LARGE_USERS`` × ``LARGE_ITEMS``, seed 0)."""
    rng = np.random.default_rng(SEED)
    popularity = 1.0 / np.arange(1, LARGE_ITEMS + 1) ** 0.8
    items = np.concatenate([np.arange(LARGE_ITEMS), rng.choice(
        LARGE_ITEMS, LARGE_EXTRA, p=popularity / popularity.sum())])
    users = rng.integers(0, LARGE_USERS, len(items))
    _, first = np.unique(users.astype(np.int64) * LARGE_ITEMS + items, return_index=True)
    users, items = users[first], items[first]
    ratings = rng.integers(1, 6, len(users)).astype(np.float64)
    return matfact.Interactions.from_arrays(users, items, ratings, rating_scale=(1, 5))


def _measure_large(name: str, model: Any, data: Any, calls: int) -> dict[str, Any]:
    histories = _histories(data, calls)
    model.fold_in(*histories[0])
    fold = _latencies(lambda n, items, ratings: model.fold_in(items, ratings), histories)
    codes = np.arange(data.n_users)
    users = model.user_index_.ids
    model.score_users(codes[:1])
    model.recommend(users[0])
    score = _latencies(lambda n, items, ratings: model.score_users(codes[[n % len(codes)]]),
                       histories)
    top = _latencies(lambda n, items, ratings: model.recommend(users[n % len(users)]),
                     histories)
    row = {"model": name, **_summary("fold_in", fold), **_summary("score_user", score),
           **_summary("recommend", top)}
    print(f"  {name:15s} fold_in {row['fold_in_median_ms']:.3f} ms (p99 "
          f"{row['fold_in_p99_ms']:.3f})  score_users(1) {row['score_user_median_ms']:.3f} ms "
          f"(p99 {row['score_user_p99_ms']:.3f})  recommend(1) "
          f"{row['recommend_median_ms']:.3f} ms (p99 {row['recommend_p99_ms']:.3f})",
          flush=True)
    return row


def _mark(*medians: float) -> str:
    return "✓" if max(medians) <= GOAL_MS else "✗"


def run(quick: bool = False) -> dict[str, Any]:
    """Time fold-in, update_users and one user's scoring for every model; print the tables.

    Parameters
    ----------
    quick : bool, default=False
        50 calls per model instead of 500.

    Returns
    -------
    dict
    """
    env = environment()
    calls = QUICK_CALLS if quick else CALLS
    ratings = load_ml100k()
    implicit = ratings.to_implicit()
    large = large_catalogue()
    large_implicit = large.to_implicit()
    quiet = wait_for_quiet()
    rows, large_rows = [], []
    for name, (make, kind) in MODELS.items():
        data = ratings if kind == "explicit" else implicit
        model = make().fit(data, progress=False)
        rows.append(_measure(name, model, data, calls))
    print(f"  large catalogue: {large.n_users:,} users × {large.n_items:,} items, "
          f"{large.nnz:,} ratings", flush=True)
    for name, (make, kind) in MODELS.items():
        data = large if kind == "explicit" else large_implicit
        model = make().fit(data, progress=False)
        large_rows.append(_measure_large(name, model, data, calls))
    worst = max(r["fold_in_median_ms"] for r in rows)
    worst_large = max(max(r["fold_in_median_ms"], r["score_user_median_ms"],
                          r["recommend_median_ms"]) for r in large_rows)
    table_rows = [[r["model"], f"{r['fold_in_median_ms']:.3f} ms",
                   f"{r['fold_in_p99_ms']:.3f} ms", f"{r['update_median_ms']:.3f} ms",
                   f"{r['update_p99_ms']:.3f} ms", _mark(r["fold_in_median_ms"])]
                  for r in rows]
    large_table = [[r["model"], f"{r['fold_in_median_ms']:.3f} ms",
                    f"{r['fold_in_p99_ms']:.3f} ms", f"{r['score_user_median_ms']:.3f} ms",
                    f"{r['score_user_p99_ms']:.3f} ms", f"{r['recommend_median_ms']:.3f} ms",
                    f"{r['recommend_p99_ms']:.3f} ms",
                    _mark(r["fold_in_median_ms"], r["score_user_median_ms"],
                          r["recommend_median_ms"])] for r in large_rows]
    result = {
        "suite": "coldstart",
        "title": "Cold start: fold-in, update_users and one user's scoring",
        "quick": quick,
        "environment": {**env, "quiet": quiet},
        "protocol": PROTOCOL,
        "tables": [{
            "title": f"ML-100K: placing a user from {HISTORY} interactions (median and p99 of "
                     f"{calls} calls)",
            "columns": ["model", "fold_in median", "fold_in p99", "update_users median",
                        "update_users p99", f"≤ {GOAL_MS:g} ms"],
            "rows": table_rows,
            "note": f"Slowest fold-in median: {worst:.3f} ms (goal ≤ {GOAL_MS:g} ms "
                    f"{'✓' if worst <= GOAL_MS else '✗'}).",
        }, {
            "title": f"{LARGE_ITEMS:,} items (synthetic): fold-in of {HISTORY} interactions and "
                     f"one user's scores, BLAS at its default threads (median and p99 of "
                     f"{calls} calls)",
            "columns": ["model", "fold_in median", "fold_in p99", "score_users(1) median",
                        "score_users(1) p99", "recommend(1) median", "recommend(1) p99",
                        f"≤ {GOAL_MS:g} ms"],
            "rows": large_table,
            "note": f"Slowest median: {worst_large:.3f} ms (goal ≤ {GOAL_MS:g} ms "
                    f"{'✓' if worst_large <= GOAL_MS else '✗'}).",
        }],
        "results": {"rows": rows, "large_rows": large_rows,
                    "large_shape": [large.n_users, large.n_items, large.nnz]},
    }
    print_tables(result)
    return result
