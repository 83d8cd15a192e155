"""Cold start latency: ``fold_in`` and ``update_users`` for every model on ML-100K.

The cold-start issue asks every recommender to place a user it never saw from
20 interactions in ≤ 1 ms, without changing the model (``fold_in``), and to
(re)compute a user in the model itself (``update_users``), which the service
calls on every new rating.
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
MODELS = {
    "Baseline()": (matfact.Baseline, "explicit"),
    "BiasedMF()": (lambda: matfact.BiasedMF(random_state=SEED), "explicit"),
    "SVDPlusPlus()": (lambda: matfact.SVDPlusPlus(random_state=SEED), "explicit"),
    "ALS()": (lambda: matfact.ALS(random_state=SEED), "explicit"),
    "BayesianMF()": (lambda: matfact.BayesianMF(random_state=SEED), "explicit"),
    "NMF()": (lambda: matfact.NMF(random_state=SEED), "explicit"),
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
- One process, after waiting up to 60 s for the machine to be quiet.
"""


def _latencies(call: Any, histories: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    times = np.empty(len(histories))
    for n, (items, ratings) in enumerate(histories):
        start = time.perf_counter()
        call(n, items, ratings)
        times[n] = time.perf_counter() - start
    return times * 1e3


def _measure(name: str, model: Any, data: Any, calls: int) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    histories = [(rng.choice(data.item_ids, HISTORY, replace=False),
                  rng.integers(1, 6, HISTORY).astype(np.float64)) for _ in range(calls)]
    model.fold_in(*histories[0])  # compile outside the clock
    fold = _latencies(lambda n, items, ratings: model.fold_in(items, ratings), histories)
    users = data.user_ids
    update = _latencies(lambda n, items, ratings: model.update_users(
        [users[n % len(users)]], [(items, ratings)]), histories)
    row = {"model": name, "fold_in_median_ms": float(np.median(fold)),
           "fold_in_p99_ms": float(np.quantile(fold, 0.99)),
           "update_median_ms": float(np.median(update)),
           "update_p99_ms": float(np.quantile(update, 0.99))}
    print(f"  {name:15s} fold_in {row['fold_in_median_ms']:.3f} ms (p99 "
          f"{row['fold_in_p99_ms']:.3f})  update_users {row['update_median_ms']:.3f} ms",
          flush=True)
    return row


def run(quick: bool = False) -> dict[str, Any]:
    """Time fold-in and update_users for every model and print the table.

    Parameters
    ----------
    quick : bool, default=False
        50 calls per model instead of 500.

    Returns
    -------
    dict
    """
    env = environment()
    ratings = load_ml100k()
    implicit = ratings.to_implicit()
    quiet = wait_for_quiet()
    rows = []
    for name, (make, kind) in MODELS.items():
        data = ratings if kind == "explicit" else implicit
        model = make().fit(data, progress=False)
        rows.append(_measure(name, model, data, QUICK_CALLS if quick else CALLS))
    worst = max(r["fold_in_median_ms"] for r in rows)
    table_rows = [[r["model"], f"{r['fold_in_median_ms']:.3f} ms",
                   f"{r['fold_in_p99_ms']:.3f} ms", f"{r['update_median_ms']:.3f} ms",
                   f"{r['update_p99_ms']:.3f} ms",
                   "✓" if r["fold_in_median_ms"] <= GOAL_MS else "✗"] for r in rows]
    result = {
        "suite": "coldstart",
        "title": "Cold start: fold-in and update_users latency on ML-100K",
        "quick": quick,
        "environment": {**env, "quiet": quiet},
        "protocol": PROTOCOL,
        "tables": [{
            "title": f"Placing a user from {HISTORY} interactions (median and p99 of "
                     f"{QUICK_CALLS if quick else CALLS} calls)",
            "columns": ["model", "fold_in median", "fold_in p99", "update_users median",
                        "update_users p99", f"≤ {GOAL_MS:g} ms"],
            "rows": table_rows,
            "note": f"Slowest fold-in median: {worst:.3f} ms (goal ≤ {GOAL_MS:g} ms "
                    f"{'✓' if worst <= GOAL_MS else '✗'}).",
        }],
        "results": {"rows": rows},
    }
    print_tables(result)
    return result
