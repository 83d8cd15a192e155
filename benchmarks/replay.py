"""Time in matfact: the replay of ml-latest-small and time-aware biases on MovieLens 100K.

The goal of the time issue, measured the way a user would run it:
``matfact.evaluation.replay(BiasedMF(), ml-latest-small, period="30D", start=0.5)``,
whose ``partial_fit`` strategy should reach a mean RMSE within 0.01 of full refits at
no more than a tenth of their total update time. A second table checks whether
Koren's (2009) time-aware biases (``time_bins``) and the time decay help on ML-100K.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import matfact
from benchmarks.common import (
    ROOT,
    BenchmarkSkipped,
    data_home,
    environment,
    load_ml100k,
    print_tables,
    wait_for_quiet,
)
from matfact.evaluation import replay

__all__ = ["run", "PROTOCOL"]

SEED = 0
SPLIT_SEED = 42
PERIOD = "30D"
START = 0.5
GOAL_RMSE_GAP = 0.01
GOAL_TIME_RATIO = 0.1
FIGURE = ROOT / "docs" / "img" / "replay.png"

PROTOCOL = f"""\
- **Replay**: `matfact.evaluation.replay(BiasedMF(random_state={SEED}), ml-latest-small,
  period="{PERIOD}", start={START})`: the ratings sorted by timestamp; the first half
  fits the model; then for each 30-day period with ratings, each strategy's model is
  scored on the period (RMSE; NDCG@10 with all the period's items of a user relevant)
  and updated: `partial_fit` on the period, a full `fit` on everything so far, or
  nothing. Update times are wall-clock seconds of the update calls only, on the shared
  2-core machine (other jobs running). Goal: mean RMSE over periods of `partial_fit`
  within {GOAL_RMSE_GAP} of `refit`, total update time ≤ {GOAL_TIME_RATIO:g} × refit's.
- **Time-aware biases on ML-100K**: defaults with `random_state={SEED}`, with and without
  `time_bins=30` (Koren 2009: item bias per time bin, user drift α_u·dev_u(t)) or
  `time_decay`, on a random 80/20 split (`train_test_split(data, 0.2, "random",
  random_state={SPLIT_SEED})`) and a temporal 80/20 split (the newest 20% as test).
  Time-bin models are scored twice: `predict(users, items)` ("now": newest bin, each
  user's drift at their last rating) and `predict(..., times=test timestamps)`.
"""


def _load_latest_small() -> Any:
    from matfact.exceptions import DatasetNotFoundError

    try:
        return matfact.load_dataset("ml-latest-small", data_home=data_home(), download=False)
    except DatasetNotFoundError as exc:
        raise BenchmarkSkipped(f"ml-latest-small is not available: {exc}") from None


def _replay(quick: bool) -> dict[str, Any]:
    data = _load_latest_small()
    if quick:  # the earliest 20,000 ratings (1996-2000), 90-day periods
        order = np.argsort(data.timestamps, kind="stable")
        data = data.take(np.sort(order[:20_000]))
    period = "90D" if quick else PERIOD
    quiet = wait_for_quiet(max_wait=10.0 if quick else 60.0)
    print(f"  replay BiasedMF() on {data.nnz:,} ratings, period {period}", flush=True)
    start = time.perf_counter()
    result = replay(matfact.BiasedMF(random_state=SEED), data, period, START)
    wall = time.perf_counter() - start
    summary = result.summary()
    if not quick:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        result.plot(FIGURE, title=f"Replay of ml-latest-small, BiasedMF(), {PERIOD} periods")
    return {"n_ratings": data.nnz, "period": period, "n_initial": result.n_initial,
            "initial_fit_s": result.initial_seconds, "wall_s": wall, "quiet": quiet,
            "summary": summary.reset_index().to_dict(orient="records"),
            "frame": result.frame.assign(
                period_start=result.frame["period_start"].astype(str),
                period_end=result.frame["period_end"].astype(str)).to_dict(orient="records"),
            "figure": None if quick else str(FIGURE.relative_to(ROOT))}


def _rmse(model: Any, test: Any, times: bool = False) -> float:
    if times:
        scores = model.predict(test.users, test.items, times=test.timestamps)
        return float(np.sqrt(np.mean((scores - test.ratings) ** 2)))
    return float(matfact.evaluate(model, test, ["rmse"])["rmse"])


TIME_VARIANTS = {
    "BiasedMF()": (matfact.BiasedMF, {}),
    "BiasedMF(time_bins=30)": (matfact.BiasedMF, {"time_bins": 30}),
    "BiasedMF(time_bins=4, reg_time=1.0)": (matfact.BiasedMF, {"time_bins": 4,
                                                               "reg_time": 1.0}),
    "BiasedMF(time_decay=90)": (matfact.BiasedMF, {"time_decay": 90.0}),
    "SVDPlusPlus()": (matfact.SVDPlusPlus, {}),
    "SVDPlusPlus(time_bins=30)": (matfact.SVDPlusPlus, {"time_bins": 30}),
}


def _time_biases(quick: bool) -> list[dict[str, Any]]:
    data = load_ml100k()
    splits = {"random 80/20 (seed 42)": matfact.train_test_split(data, 0.2, "random",
                                                                  random_state=SPLIT_SEED),
              "temporal 80/20": matfact.train_test_split(data, 0.2, "temporal")}
    names = list(TIME_VARIANTS)[:2] if quick else list(TIME_VARIANTS)
    rows = []
    for split, (train, test) in splits.items():
        for name in names:
            cls, params = TIME_VARIANTS[name]
            print(f"  {split}: {name}", flush=True)
            start = time.perf_counter()
            model = cls(random_state=SEED, **params).fit(train, progress=False)
            seconds = time.perf_counter() - start
            row = {"split": split, "model": name, "rmse": _rmse(model, test),
                   "rmse_with_times": (_rmse(model, test, times=True)
                                       if params.get("time_bins") else None),
                   "fit_s": seconds}
            rows.append(row)
    return rows


def _tables(replay: dict[str, Any], biases: list[dict[str, Any]],
            quick: bool) -> list[dict[str, Any]]:
    by = {row["strategy"]: row for row in replay["summary"]}
    refit, partial = by["refit"], by["partial_fit"]
    gap = partial["rmse"] - refit["rmse"]
    ratio = partial["update_seconds"] / refit["update_seconds"]
    ok = gap <= GOAL_RMSE_GAP and ratio <= GOAL_TIME_RATIO
    rows = [[name, f"{row['rmse']:.4f}", f"{row['rmse_weighted']:.4f}",
             f"{row['ndcg@10']:.4f}", f"{row['update_seconds']:.2f} s", str(row["periods"])]
            for name, row in by.items()]
    bias_rows = [[row["split"], row["model"], f"{row['rmse']:.4f}",
                  "—" if row["rmse_with_times"] is None else f"{row['rmse_with_times']:.4f}",
                  f"{row['fit_s']:.2f} s"] for row in biases]
    return [
        {"title": (f"Replay of ml-latest-small ({replay['n_ratings']:,} ratings), BiasedMF(), "
                   f"{replay['period']} periods after the first half"),
         "columns": ["strategy", "mean RMSE over periods", "RMSE over all ratings",
                     "mean NDCG@10", "total update time", "periods"],
         "rows": rows,
         "note": (f"partial_fit − refit mean RMSE = {gap:+.4f} (goal ≤ {GOAL_RMSE_GAP}); "
                  f"update time ratio {ratio:.3f} (goal ≤ {GOAL_TIME_RATIO:g}) "
                  f"{'✓' if ok else '✗'}. Initial fit {replay['initial_fit_s']:.2f} s."
                  + (" Quick run: the earliest 20,000 ratings, 90-day periods." if quick
                     else ""))},
        {"title": "Time-aware biases and time decay on ML-100K (test RMSE)",
         "columns": ["split", "model", "RMSE (predict now)", "RMSE (predict at test times)",
                     "fit time"],
         "rows": bias_rows,
         "note": "\"now\": the newest bin and each user's drift at their latest rating."},
    ]


def run(quick: bool = False) -> dict[str, Any]:
    """Run the time suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        Replay only the earliest 20,000 ratings with 90-day periods; two ML-100K models.

    Returns
    -------
    dict
    """
    env = environment()
    replayed = _replay(quick)
    biases = _time_biases(quick)
    result = {
        "suite": "replay",
        "title": "Time: replay of ml-latest-small with partial_fit, refit and no update",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": _tables(replayed, biases, quick),
        "results": {"replay": replayed, "time_biases": biases},
    }
    print_tables(result)
    return result
