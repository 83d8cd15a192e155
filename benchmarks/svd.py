"""Truncated SVD and PureSVD: randomized SVD speed against scikit-learn, PureSVD top-N quality.

Two parts, in one process:

- **speed**: ``matfact.models.svd.TruncatedSVD`` against scikit-learn's ``TruncatedSVD``
  (both randomized, same rank, power iterations and oversampling) on the sparse rating
  matrix of ``make_synthetic(100_000, 20_000, 10M)``: fit time (median of 3 after a
  warm-up fit) and the relative reconstruction error of each;
- **top-N**: ``PureSVD`` (several ranks, with and without item-norm scaling) against
  ``Popularity``, ``ImplicitALS`` and ``BPR`` on ML-100K as implicit feedback, per-user
  80/20 split, scored by :func:`matfact.evaluate_ranking` as in the ALS suite.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.als import RANK_METRICS, SPLIT_SEED, TOP_K, _metric_cells, _score_matfact
from benchmarks.common import (
    QUIET_CORES,
    QUIET_WAIT_S,
    OtherCpu,
    environment,
    fmt_ratio,
    fmt_seconds,
    load_ml100k,
    print_tables,
    wait_for_quiet,
)

__all__ = ["PROTOCOL", "run", "relative_error"]

N_USERS = 100_000
N_ITEMS = 20_000
#: Interactions drawn by ``make_synthetic`` for the speed part, full run and ``quick``.
SIZE = 10_000_000
QUICK_SIZE = 1_000_000
DATA_SEED = 0
SEED = 0
K = 64
N_ITER = 5
N_OVERSAMPLES = 10
REPEATS = 3
#: PureSVD ranks on ML-100K, plain and with ``normalize=True``.
PURE_FACTORS = (10, 20, 50, 100)
NORMALIZED_FACTORS = (20, 50)

_MATFACT_CALL = (f"TruncatedSVD({K}, n_iter={N_ITER}, n_oversamples={N_OVERSAMPLES}, "
                 f"random_state={SEED}{{threads}})")
_SKLEARN_CALL = (f"sklearn.decomposition.TruncatedSVD({K}, algorithm=\"randomized\", "
                 f"n_iter={N_ITER}, n_oversamples={N_OVERSAMPLES}, random_state={SEED})")

PROTOCOL = f"""\
**Randomized SVD speed**

- **Data**: `X = matfact.make_synthetic({N_USERS:_}, {N_ITEMS:_}, N,
  random_state={DATA_SEED}).to_scipy()` for N = {SIZE / 1e6:g}M (quick run: {QUICK_SIZE / 1e6:g}M):
  the users × items CSR matrix of the ratings, float32, as both libraries receive it.
- **matfact**: `{_MATFACT_CALL.format(threads="")}` (default `n_threads=None`: every core
  numba may use; BLAS held to one thread inside), and the same with `n_threads=1`.
- **scikit-learn**: `{_SKLEARN_CALL}` (its LU normalizer, as matfact's `"auto"`; SciPy's
  sparse products on one core, LAPACK on BLAS's default threads).
- **Timing**: one warm-up fit of each (loads matfact's numba kernel), then {REPEATS} timed
  `fit(X)` calls (wall clock; matfact's includes building the CSR of `Xᵀ`); the figure is
  their median. Each timed fit first waits (up to {QUIET_WAIT_S:.0f} s) for other processes to
  use less than {QUIET_CORES:g} cores; the table gives the cores they used during the timed
  fits (median). Quick run: 1 timed fit, no waiting.
- **Error**: `‖X − X V Vᵀ‖_F / ‖X‖_F` with `Vᵀ = components_` of the last timed fit,
  computed in float64 without forming the dense matrix, as
  `‖X‖² − 2‖XV‖² + tr((XV)ᵀ(XV) VᵀV)` (exact for any V). Both libraries run the same
  algorithm (Halko et al.'s range finder) from different random numbers, so their errors
  should agree to a few digits; the ratio checks it.

**PureSVD top-N on ML-100K** (k = {TOP_K}):

- **Data**: `matfact.load_dataset("ml-100k").to_implicit()` (all 100,000 ratings as
  interactions of weight 1), split by `matfact.train_test_split(data, 0.2, "per_user",
  random_state={SPLIT_SEED})`, as the ALS suite's top-N table.
- **Models**: `PureSVD(n_factors=f, random_state={SEED})` for f in
  {{{", ".join(map(str, PURE_FACTORS))}}}, and with `normalize=True` for f in
  {{{", ".join(map(str, NORMALIZED_FACTORS))}}}; for reference `Popularity()`,
  `ImplicitALS(random_state={SEED})` and `BPR(random_state={SEED})` (defaults).
- **Scoring**: `matfact.evaluate_ranking(model, test, k={TOP_K}, metrics=("ndcg", "precision",
  "map"))`: every test user, training items never recommended, all test items relevant.
- **Fit time**: one fit after warm-up fits of PureSVD, ImplicitALS and BPR.
"""


# ------------------------------------------------------------------------------------ speed
def relative_error(X: Any, components: np.ndarray) -> float:
    """``‖X − X V Vᵀ‖_F / ‖X‖_F`` for ``Vᵀ = components`` (float64, ``X`` sparse).

    ``‖X − X V Vᵀ‖² = ‖X‖² − 2‖XV‖² + tr((XV)ᵀ(XV) VᵀV)``, so only ``XV`` (n × k) is formed.
    """
    x = X.astype(np.float64)
    v = np.asarray(components, dtype=np.float64).T
    p = x @ v
    total = float(np.dot(x.data, x.data))
    residual = total - 2.0 * float((p * p).sum()) + float(np.trace((p.T @ p) @ (v.T @ v)))
    return float(np.sqrt(max(residual, 0.0) / total))


def _fit_timed(make: Callable[[], Any], X: Any, repeats: int,
               wait: bool) -> tuple[Any, list[float], list[float | None]]:
    times: list[float] = []
    others: list[float | None] = []
    model = None
    for _ in range(repeats):
        if wait:
            wait_for_quiet()
        meter = OtherCpu()
        gc.collect()
        start = time.perf_counter()
        model = make().fit(X)
        times.append(time.perf_counter() - start)
        cores = meter.cores()
        others.append(None if cores is None else round(cores, 3))
    return model, times, others


def _speed(n_ratings: int, repeats: int, wait: bool) -> dict[str, Any]:
    import numba
    from sklearn.decomposition import TruncatedSVD as SkTruncatedSVD

    import matfact
    from matfact.models.svd import TruncatedSVD

    print(f"  speed: make_synthetic, {n_ratings:_} ratings", flush=True)
    X = matfact.make_synthetic(N_USERS, N_ITEMS, n_ratings, random_state=DATA_SEED).to_scipy()
    cases = [
        ("matfact", _MATFACT_CALL.format(threads=""),
         lambda: TruncatedSVD(K, n_iter=N_ITER, n_oversamples=N_OVERSAMPLES,
                              random_state=SEED)),
        ("matfact", _MATFACT_CALL.format(threads=", n_threads=1"),
         lambda: TruncatedSVD(K, n_iter=N_ITER, n_oversamples=N_OVERSAMPLES,
                              random_state=SEED, n_threads=1)),
        ("scikit-learn", _SKLEARN_CALL,
         lambda: SkTruncatedSVD(K, algorithm="randomized", n_iter=N_ITER,
                                n_oversamples=N_OVERSAMPLES, random_state=SEED)),
    ]
    rows = []
    for library, call, make in cases:
        print(f"    {call}: warm-up, {repeats} timed fit(s)", flush=True)
        make().fit(X)
        model, times, others = _fit_timed(make, X, repeats, wait)
        known = [c for c in others if c is not None]
        rows.append({
            "library": library, "call": call, "times_s": times,
            "median_s": float(statistics.median(times)),
            "others_cores": float(statistics.median(known)) if known else None,
            "relative_error": relative_error(X, model.components_),
            "singular_values_head": [float(s) for s in model.singular_values_[:5]],
        })
    return {"n_ratings": n_ratings, "nnz": int(X.nnz), "shape": list(X.shape),
            "numba_threads": int(numba.config.NUMBA_NUM_THREADS), "rows": rows}


# ------------------------------------------------------------------------------------ top-N
def _topn() -> dict[str, Any]:
    import matfact
    from matfact.models.svd import PureSVD

    data = load_ml100k().to_implicit()
    train, test = matfact.train_test_split(data, 0.2, "per_user", random_state=SPLIT_SEED)
    print("  top-N: warm-up fits", flush=True)
    PureSVD(n_factors=10, random_state=SEED).fit(train, progress=False)
    matfact.ImplicitALS(max_iter=1, random_state=SEED).fit(train, progress=False)
    matfact.BPR(max_iter=1, random_state=SEED).fit(train, progress=False)
    cases: list[tuple[str, Callable[[], Any]]] = []
    for f in PURE_FACTORS:
        cases.append((f"PureSVD(n_factors={f}, random_state={SEED})",
                      lambda f=f: PureSVD(n_factors=f, random_state=SEED)))
    for f in NORMALIZED_FACTORS:
        cases.append((f"PureSVD(n_factors={f}, normalize=True, random_state={SEED})",
                      lambda f=f: PureSVD(n_factors=f, normalize=True, random_state=SEED)))
    cases += [("Popularity()", matfact.Popularity),
              (f"ImplicitALS(random_state={SEED})",
               lambda: matfact.ImplicitALS(random_state=SEED)),
              (f"BPR(random_state={SEED})", lambda: matfact.BPR(random_state=SEED))]
    rows = []
    for call, make in cases:
        print(f"  top-N: {call}", flush=True)
        result = _score_matfact(make, train, test)
        result.pop("model")
        rows.append({"call": call, **result})
    return {"n_train": train.nnz, "n_test": test.nnz, "rows": rows}


# ------------------------------------------------------------------------------------ tables
def _cores(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _tables(speed: dict[str, Any], topn: dict[str, Any], repeats: int,
            quick: bool) -> list[dict[str, Any]]:
    sk = next(r for r in speed["rows"] if r["library"] == "scikit-learn")
    of = f"median of {repeats}" if repeats > 1 else "1 run"
    speed_rows = [[r["library"], f"`{r['call']}`", fmt_seconds(r["median_s"]),
                   fmt_ratio(sk["median_s"] / r["median_s"]), f"{r['relative_error']:.6f}",
                   f"{r['relative_error'] / sk['relative_error']:.5f}",
                   _cores(r["others_cores"])] for r in speed["rows"]]
    n_users, n_items = speed["shape"]
    size = f"{speed['n_ratings'] / 1e6:g}M"
    best = max(topn["rows"], key=lambda r: r["ndcg"])
    return [
        {
            "title": (f"Randomized SVD, k = {K}, of a {n_users:,} × {n_items:,} sparse matrix "
                      f"with {speed['nnz']:,} entries ({size} synthetic ratings)"),
            "columns": ["library", "call", f"fit ({of})", "speed ratio (scikit-learn / this)",
                        "‖X − XVVᵀ‖ / ‖X‖", "error ratio (this / scikit-learn)",
                        "other processes' CPU (cores)"],
            "rows": speed_rows,
            "note": (f"Both run {N_ITER} power iterations with LU normalization and "
                     f"{N_OVERSAMPLES} oversamples. Speed ratio > 1 means matfact is faster. "
                     f"numba may use {speed['numba_threads']} threads here."
                     + (" Quick run: 1M ratings, 1 timed fit." if quick else "")),
        },
        {
            "title": (f"PureSVD top-{TOP_K} on ML-100K (all ratings as interactions, per-user "
                      f"80/20 split, random_state={SPLIT_SEED})"),
            "columns": ["model", "NDCG@10", "P@10", "MAP@10", "fit (1 run)"],
            "rows": [[f"`{r['call']}`", *_metric_cells(r), fmt_seconds(r["fit_s"])]
                     for r in topn["rows"]],
            "note": (f"{topn['n_train']:,} training / {topn['n_test']:,} test interactions. "
                     f"Best NDCG@10: `{best['call']}`."),
        },
    ]


# ------------------------------------------------------------------------------------ suite
def run(quick: bool = False) -> dict[str, Any]:
    """Run the SVD suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        1M ratings instead of 10M, one timed fit and no waiting for a quiet machine (a smoke
        test); the top-N part is the same.

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
    load_ml100k()  # raises BenchmarkSkipped before anything long starts
    repeats = 1 if quick else REPEATS
    speed = _speed(QUICK_SIZE if quick else SIZE, repeats, wait=not quick)
    topn = _topn()
    result = {
        "suite": "svd",
        "title": "Truncated SVD and PureSVD: randomized SVD against scikit-learn, top-N",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": _tables(speed, topn, repeats, quick),
        "results": {"repeats": repeats, "speed": speed, "topn": topn,
                    "metrics": list(RANK_METRICS)},
    }
    print_tables(result)
    return result
