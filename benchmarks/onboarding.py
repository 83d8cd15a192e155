"""Onboarding newcomers on MovieLens 100K: which items to ask, and how much the answers help.

The protocol of the onboarding issue: ML-100K's ``cold_users`` split (20% of users, seed 0);
``BiasedMF(random_state=0)`` fitted on the warm users; each cold user's ratings split 80/20
(``per_user``, seed 0) into a pool they answer from and an evaluation set; every strategy
asked until 5, 10 and 20 answers, answers folded in (by the model's ``fold_in``, and by the
posterior fold-in of :mod:`matfact.onboarding`), RMSE and NDCG@10 on the evaluation set.
Goal: 10 answers close at least half of the RMSE gap between 0 answers (the model's
fallback) and the model trained fully, and the best strategy beats random items.
"""

from __future__ import annotations

import time
from typing import Any

import matfact
from benchmarks.common import ROOT, environment, load_ml100k, print_tables
from matfact.evaluation.onboarding import simulate_onboarding
from matfact.onboarding import STRATEGIES

__all__ = ["run", "PROTOCOL", "PLOT"]

SEED = 0
N_ANSWERS = [5, 10, 20]
GOAL_ANSWERS = 10
GOAL_GAP = 0.5
#: A realistic interview: at most this many items shown, in the second table.
MAX_ASKED = 50
#: The figure of the user guide (written by full runs only).
PLOT = ROOT / "docs" / "img" / "onboarding.png"

PROTOCOL = f"""\
- **Data and model**: `warm, cold = matfact.train_test_split(ml100k, 0.2, "cold_users",
  random_state={SEED})` (189 cold users); `model = matfact.BiasedMF(random_state={SEED})
  .fit(warm)`.
- **Interview**: `matfact.onboarding.simulate_onboarding(model, cold, {N_ANSWERS},
  strategy=[...], random_state={SEED})`: each cold user's ratings are split by
  `train_test_split(cold, 0.2, "per_user", random_state={SEED})` into a pool (80%) and an
  evaluation set (20%). Items are shown in the strategy's order; the user answers exactly
  the shown items in their pool, with their real rating; asking stops at n answers (or when
  the catalogue, or the {MAX_ASKED}-item cap of the third table, runs out). The answers are
  folded in without changing the model: by the model's own `fold_in` (`BiasedMF`'s ridge
  solve, penalty n·reg; first and third tables) or by `fold_in="posterior"` (the posterior
  mean of the user's factors and bias under a Gaussian prior fitted to the warm users'
  `(p_u, b_u)`, noise = the mean squared training residual; second table). `random` shows
  each user their own random order.
- **Metrics**: RMSE over every evaluation rating (predictions clipped to [1, 5]); NDCG@10 over
  the items outside the user's pool, evaluation items relevant; evaluation and pool ratings of
  items the model never saw are dropped. **0 answers** = the model's fallback for an unknown
  user (μ + b_i); **trained fully** = `BiasedMF(random_state={SEED})` fitted on the warm users
  plus every cold user's whole pool. Gap closed = (RMSE₀ − RMSE_n) / (RMSE₀ − RMSE_full).
  Goal: at {GOAL_ANSWERS} answers the best strategy closes ≥ {GOAL_GAP:.0%} of the gap and
  beats random.
"""


def _simulate(model: Any, cold: Any, strategies: list[str], counts: list[int],
              max_asked: int | None, fold_in: str = "model") -> tuple[Any, float]:
    label = "" if max_asked is None else f", at most {max_asked} items asked"
    print(f"  simulate_onboarding (fold_in={fold_in!r}{label})", flush=True)
    start = time.perf_counter()
    result = simulate_onboarding(model, cold, counts, strategy=strategies, max_asked=max_asked,
                                 fold_in=fold_in, random_state=SEED)
    return result, time.perf_counter() - start


def _rows(result: Any) -> list[list[str]]:
    rows = []
    for record in result.table.to_dict(orient="records"):
        answers = record["n_answers"]
        rows.append([
            record["strategy"],
            "all pool" if record["strategy"] == "trained fully" else str(int(answers)),
            f"{record['rmse']:.4f}",
            f"{record['rmse_gap_closed']:.0%}" if record["strategy"] not in (
                "fallback", "trained fully") else "—",
            f"{record['ndcg@10']:.4f}",
            "—" if record["strategy"] == "trained fully" else f"{record['mean_asked']:.1f}",
            "—" if record["strategy"] == "trained fully" else f"{record['median_asked']:.0f}",
            f"{record['mean_answered']:.2f}",
        ])
    return rows


def _goal(result: Any) -> dict[str, Any]:
    gaps = {name: result.gap_closed(name, GOAL_ANSWERS) for name in result.strategies}
    best = max((name for name in gaps if name != "random"), key=gaps.get)
    random_gap = gaps.get("random")
    met = gaps[best] >= GOAL_GAP and (random_gap is None or gaps[best] > random_gap)
    return {"gap_closed_at_goal": gaps, "best": best, "met": met}


def _records(result: Any) -> list[dict[str, Any]]:
    return [{key: (None if value is None or value != value else value)
             for key, value in record.items()}
            for record in result.table.astype(object).to_dict(orient="records")]


def run(quick: bool = False) -> dict[str, Any]:
    """Run the onboarding suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        Two strategies (popularity and random) at 5 and 10 answers, no capped table,
        and the figure is not written.

    Returns
    -------
    dict
    """
    env = environment()
    data = load_ml100k()
    warm, cold = matfact.train_test_split(data, 0.2, "cold_users", random_state=SEED)
    start = time.perf_counter()
    model = matfact.BiasedMF(random_state=SEED).fit(warm, progress=False)
    fit_s = time.perf_counter() - start
    strategies = ["popularity", "random"] if quick else list(STRATEGIES)
    counts = [5, 10] if quick else N_ANSWERS
    columns = ["strategy", "answers", "RMSE", "gap closed", "NDCG@10", "mean asked",
               "median asked", "mean answered"]
    tables, results = [], {}
    for fold_in in ("model", "posterior"):
        result, wall = _simulate(model, cold, strategies, counts, None, fold_in)
        goal = _goal(result)
        gaps = goal["gap_closed_at_goal"]
        how = ("the model's own fold_in (ridge)" if fold_in == "model" else
               "fold_in='posterior' (Bayesian posterior mean)")
        tables.append({
            "title": (f"Onboarding {result.n_users} cold ML-100K users with BiasedMF(), "
                      f"answers folded in by {how}"),
            "columns": columns, "rows": _rows(result),
            "note": (f"Gap closed at {GOAL_ANSWERS} answers by the best strategy "
                     f"({goal['best']}): {gaps[goal['best']]:.0%}, random "
                     f"{gaps.get('random', float('nan')):.0%}; goal ≥ {GOAL_GAP:.0%} and "
                     f"better than random {'✓' if goal['met'] else '✗'}. Users with fewer "
                     f"answerable items than asked for are asked the whole catalogue "
                     f"({model.n_items_:,} items), which lifts the mean; the median is "
                     f"typical. {result.n_eval_ratings} evaluation ratings, "
                     f"{result.n_dropped_ratings} ratings of items the model never saw "
                     f"dropped. Simulation {wall:.1f} s, fit {fit_s:.2f} s."),
        })
        results[fold_in] = {"table": _records(result), "goal": goal, "simulation_s": wall}
        if fold_in == "model" and not quick:
            PLOT.parent.mkdir(parents=True, exist_ok=True)
            result.plot(PLOT, title="Onboarding cold ML-100K users (BiasedMF, answers "
                                    "folded in by the model's fold_in)")
            print(f"  wrote {PLOT}")
    if not quick:
        capped, capped_wall = _simulate(model, cold, strategies, counts, MAX_ASKED)
        tables.append({
            "title": (f"The same interview (the model's fold_in), at most {MAX_ASKED} items "
                      f"shown per user"),
            "columns": columns, "rows": _rows(capped),
            "note": (f"A user stops at {MAX_ASKED} items even without n answers, so "
                     f"'mean answered' shows how many answers each strategy collects in "
                     f"{MAX_ASKED} questions. Simulation {capped_wall:.1f} s."),
        })
        results["model_capped"] = {"table": _records(capped), "max_asked": MAX_ASKED}
    output = {
        "suite": "onboarding",
        "title": "Onboarding newcomers: which items to ask (ML-100K cold users)",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": tables,
        "results": {**results, "n_users": result.n_users,
                    "n_eval_ratings": result.n_eval_ratings,
                    "n_dropped_ratings": result.n_dropped_ratings, "fit_s": fit_s},
    }
    print_tables(output)
    return output
