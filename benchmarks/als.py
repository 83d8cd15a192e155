"""ALS, implicit ALS, BPR and Bayesian MF against implicit and myFM.

Four parts, each run in its own Python process started with ``OPENBLAS_NUM_THREADS=1`` (as
implicit asks; it has to be set before NumPy is imported) and ``TQDM_DISABLE=1``:

- **speed**: time per iteration of ``ImplicitALS`` (CG and Cholesky) against implicit's
  ``AlternatingLeastSquares`` on synthetic data of 1M, 10M and 30M interactions, both
  started from the same factors on the same objective, and their training losses after 3
  iterations (one process per size);
- **memory**: peak resident memory of an ``ImplicitALS`` fit at 30M interactions, against the
  issue's budget (one process per library, so nothing else is resident);
- **topn**: NDCG@10, P@10, MAP@10 of ``ImplicitALS``, ``BPR`` and ``Popularity`` against
  implicit's ALS and BPR on ML-100K (defaults, and tuned on a validation split) and on the
  implicit datasets Steam, Retailrocket and Book-Crossing, all scored by matfact's metrics;
- **rating**: ``ALS`` and ``BayesianMF`` RMSE and fit time on ML-100K's 5 folds against
  myFM's ``MyFMRegressor``.

``python -m benchmarks als`` runs them from :func:`run`; ``python -m benchmarks.als TASK
--out FILE`` is the per-process entry point (internal).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from benchmarks.common import (
    QUIET_CORES,
    QUIET_WAIT_S,
    ROOT,
    OtherCpu,
    _blas,
    data_home,
    environment,
    fmt_ratio,
    fmt_seconds,
    load_ml100k,
    print_tables,
    wait_for_quiet,
)

__all__ = ["PROTOCOL", "run", "assemble", "memory_budget", "rank_scores", "main"]

# ------------------------------------------------------------------------------------ constants
N_USERS = 100_000
N_ITEMS = 20_000
#: Interactions drawn by ``make_synthetic`` for the speed part, full run and ``--quick``.
SIZES = (1_000_000, 10_000_000, 30_000_000)
QUICK_SIZES = (1_000_000,)
#: Size of the memory measurement, full run and ``--quick``.
MEMORY_SIZE = 30_000_000
QUICK_MEMORY_SIZE = 1_000_000
DATA_SEED = 0
SEED = 0
K = 64
ALPHA = 1.0
REG = 0.05
CG_STEPS = 3
THREADS = 2
INIT_STD = 0.01
TIMED_ITERATIONS = 3
LOSS_ITERATIONS = 3
MEMORY_ITERATIONS = 2
SAMPLE_EVERY_S = 0.02
#: implicit's Cholesky is timed over 3 more iterations only if its warm-up iteration took less.
CHOLESKY_LIMIT_S = 120.0
#: Timed measurements disturbed by other processes are redone, up to this many attempts.
ATTEMPTS = 3
GOAL_SPEEDUP = 3.0
GOAL_SPEEDUP_SIZE = 10_000_000
GOAL_LOSS_GAP = 0.01

TOP_K = 10
SPLIT_SEED = 42
VALIDATION_SEED = 1
RANK_METRICS = ("ndcg", "precision", "map")
METRIC_LABELS = {"ndcg": "NDCG@10", "precision": "P@10", "map": "MAP@10"}
#: The tuning grid (both libraries; ``reg_exponent`` is matfact's only), full run and quick.
GRID = {"n_factors": (32, 64), "alpha": (2.0, 3.0, 5.0, 10.0), "reg": (1.0, 3.0, 10.0, 30.0),
        "reg_exponent": (0.0, 0.5)}
QUICK_GRID = {"n_factors": (32,), "alpha": (2.0, 5.0), "reg": (3.0,), "reg_exponent": (0.5,)}
IMPLICIT_ML100K = {"factors": 64, "regularization": 0.05, "alpha": 1.0, "iterations": 15}
#: NDCG@10 quoted in the issue on the same split.
ISSUE_NDCG = {"implicit ALS": 0.352, "implicit ALS tuned": 0.438, "implicit BPR": 0.285}
GOAL_NDCG = {"ImplicitALS()": 0.40, "ImplicitALS tuned": 0.45, "BPR()": 0.30}
#: The implicit datasets: (name, kind, what the weights are).
IMPLICIT_DATASETS = (
    ("steam", None, "hours played (two editions of a game summed)"),
    ("retailrocket", None, "number of events (view, add-to-cart, purchase) of the pair"),
    ("book-crossing", "implicit", "none (every read has weight 1)"),
)

N_FOLDS = 5
FOLD_SEED = 0
BAYES_RANK = 10
MYFM_ITERATIONS = 200
GOAL_ALS_RMSE = 0.915
GOAL_BAYES_RMSE = 0.895
GOAL_BAYES_SPEEDUP = 3.0
SPARK_ALS_RMSE = 0.922
ISSUE_MYFM = {"rmse": 0.8968, "fit_s": 5.5}

_MATFACT_IALS = (f"ImplicitALS(n_factors={K}, alpha={ALPHA:g}, reg={REG:g}, reg_exponent=0, "
                 f"solver=..., cg_steps={CG_STEPS}, max_iter=..., n_threads={THREADS}, "
                 f"random_state={SEED})")
_IMPLICIT_ALS = (f"implicit.als.AlternatingLeastSquares(factors={K}, regularization={REG:g}, "
                 f"alpha={ALPHA:g}, iterations=..., use_cg=..., num_threads={THREADS}, "
                 f"calculate_training_loss=False, random_state={SEED}, use_gpu=False)")


def _grid_text(grid: dict[str, tuple]) -> str:
    return " × ".join(f"`{name}` ∈ {{{', '.join(f'{v:g}' for v in values)}}}"
                      for name, values in grid.items())


PROTOCOL = f"""\
Every part runs in a fresh Python process started with `OPENBLAS_NUM_THREADS=1` (implicit
asks for it; it must be set before NumPy loads) and `TQDM_DISABLE=1`; matfact holds BLAS to
one thread inside its fits by itself. Timed measurements (each speed fit, each rating fold)
first wait (up to {QUIET_WAIT_S:.0f} s) until other processes use less than {QUIET_CORES:g}
cores, and one during which they used more is redone, {ATTEMPTS} attempts at most, the last
kept (`--quick` neither waits nor repeats); the tables give the cores other processes used
during the measurement kept.

**Implicit ALS speed and loss parity**

- **Data**: `d = matfact.make_synthetic({N_USERS:_}, {N_ITEMS:_}, N,
  random_state={DATA_SEED})` for N = 1M, 10M and 30M (`--quick`: 1M), as implicit
  feedback weighted by the ratings: `imp = matfact.Interactions.from_arrays(d.user_codes,
  d.item_codes, weights=d.ratings)`.
- **Same objective**: matfact's confidence is c = 1 + α·w and implicit's c = α·value, so
  implicit gets the CSR matrix of `imp.to_scipy()` with values `1 + {ALPHA:g}·w` (float32) and
  `alpha={ALPHA:g}`; matfact uses `reg_exponent=0` (the plain λ of implicit). Both: k = {K},
  α = {ALPHA:g}, λ = {REG:g}, {CG_STEPS} CG steps, {THREADS} threads.
- **Same start**: matfact initialises users then items from
  `numpy.random.default_rng({SEED})` standard normals × {INIT_STD:g} (float32), in
  `ImplicitALS._fit`; the suite draws the same arrays and checks them against those of a
  matfact fit whose training loop is stubbed out (`start verified` below). implicit 0.7.3
  initialises `user_factors` / `item_factors` only when they are `None`, so they are set to
  copies of those arrays before every implicit `fit`. Both alternate users first, then
  items; both warm-start CG from the current factors.
- **matfact**: `{_MATFACT_IALS}` with `solver="cg"` or `"cholesky"`. A warm-up fit of 1
  iteration (loads the numba kernels), then a fit of {TIMED_ITERATIONS} iterations whose
  `fit(..., callback=cb)` reports `info["seconds"]` per iteration (both half-steps): the
  **time per iteration is the median of these {TIMED_ITERATIONS}**.
- **implicit**: `{_IMPLICIT_ALS}`, then `model.cg_steps = {CG_STEPS}` (in 0.7.3 an
  attribute, not a constructor argument; 3 is its default) and the starting factors.
  A warm-up fit of 1 iteration, then a fit of {TIMED_ITERATIONS} iterations whose
  `callback(iteration, elapsed, loss)` reports each iteration's time (both half-steps, its
  own `time.time()` clock): the median of these {TIMED_ITERATIONS}. For the Cholesky solver,
  if the warm-up iteration takes over {CHOLESKY_LIMIT_S:.0f} s the timed fit is skipped and
  the warm-up iteration is the figure (the table says so).
- **Whole fit**: the wall time of the timed {TIMED_ITERATIONS}-iteration fit, including each
  library's data preparation (matfact: CSR, confidence, transpose, seen-items matrix;
  implicit: dtype check and transpose; the implicit CSR itself is built before).
- **Loss parity**: matfact refitted for {LOSS_ITERATIONS} iterations with
  `calculate_loss=True` (its factors are checked to equal the timed fit's, byte for byte):
  `loss_history_["train_loss"][-1]`; implicit: `implicit.cpu._als.calculate_loss(Cui, X, Y,
  {REG:g}, num_threads={THREADS})` on the factors of its timed {TIMED_ITERATIONS}-iteration
  fit. The same implicit function is also applied to matfact's factors (a check of matfact's
  loss code) and to the common start. Goal: |matfact − implicit| / implicit ≤
  {GOAL_LOSS_GAP:.0%}.
- **Goals** (from the issue): matfact's CG iteration ≥ {GOAL_SPEEDUP:g}× faster than
  implicit's at {GOAL_SPEEDUP_SIZE / 1e6:g}M interactions; matfact's Cholesky iteration ≥
  {GOAL_SPEEDUP:g}× faster than implicit's Cholesky (judged at every size measured).

**Memory** (N = {MEMORY_SIZE / 1e6:g}M; `--quick`: {QUICK_MEMORY_SIZE / 1e6:g}M): a process
generates `imp` as above, deletes `d`, fits a small warm-up model (so loading the kernels is
not counted), collects garbage, resets the kernel's peak-RSS counter (`5` into
`/proc/self/clear_refs`), reads `VmRSS` from `/proc/self/status` (**before**), and fits
`ImplicitALS(n_factors={K}, alpha={ALPHA:g}, reg={REG:g}, reg_exponent=0,
max_iter={MEMORY_ITERATIONS}, n_threads={THREADS}, random_state={SEED})` (CG) while a
background thread reads `VmRSS` every {SAMPLE_EVERY_S * 1000:.0f} ms. **Peak above before** =
max sampled `VmRSS` − before; the thread cannot run while a numba kernel holds the GIL, so
`VmHWM` after the fit (the kernel's exact peak since the reset) − before is given too.
Budget (from the issue): 2 × (12 bytes × nnz) + (n_users + n_items) × {K} × 4 bytes. For
context, implicit's fit (CG, same parameters, its own random start) is measured the same
way in another process, with its CSR matrix of `1 + w` built before "before".

**Top-N** (k = {TOP_K}):

- **Data**: `matfact.load_dataset("ml-100k").to_implicit()` (all 100,000 ratings as
  interactions of weight 1), `load_dataset("steam")` (weights: hours played),
  `load_dataset("retailrocket")` (weights: event counts), `load_dataset("book-crossing",
  kind="implicit")` (weight 1); each split by `matfact.train_test_split(data, 0.2,
  "per_user", random_state={SPLIT_SEED})`.
- **matfact**: fitted on the training `Interactions`, scored by
  `matfact.evaluate_ranking(model, test, k={TOP_K}, metrics=("ndcg", "precision", "map"))`
  (every test user; training items never recommended; all test items relevant).
  `ImplicitALS(random_state={SEED})` (defaults: 256 factors, α = 3, λ = 3, `reg_exponent=0.5`,
  15 iterations), `BPR(random_state={SEED})`, `Popularity()`.
- **implicit**: fitted on `train.to_scipy()` (float32; values = the weights, 1 on ML-100K and
  Book-Crossing) with `random_state={SEED}` and its default `num_threads=0` (all cores); the
  top {TOP_K} of `model.recommend(user codes, train_csr[user codes], N={TOP_K},
  filter_already_liked_items=True)`, mapped back to matfact's item indices, are scored by
  `matfact.evaluation.metrics` (`ndcg_at_k`, `precision_at_k`, `average_precision_at_k`,
  averaged by `aggregate`) against the same relevant sets `evaluate_ranking` builds (test
  items absent from training count as relevant but cannot be hit; a test user unknown to
  training would get an empty list). The same scorer applied to matfact's
  `ImplicitALS()` lists reproduces `evaluate_ranking` (difference in the table notes).
  ML-100K: `AlternatingLeastSquares({", ".join(f"{k}={v:g}" for k, v in IMPLICIT_ML100K.items())})`
  (the issue's setting; with values 1 and α = 1 its confidence is 1 on observed cells) and
  `BayesianPersonalizedRanking()`; on the other datasets implicit's defaults
  `AlternatingLeastSquares()` (100 factors, λ = 0.01, α = 1, 15 iterations) and
  `BayesianPersonalizedRanking()` (100 factors, 100 iterations). implicit's BPR is not
  deterministic on several threads.
- **Tuning** (ML-100K only): `val_train, val_test = matfact.train_test_split(train, 0.2,
  "per_user", random_state={VALIDATION_SEED})`; every point of {_grid_text(GRID)} is fitted
  on `val_train` with 15 iterations and `random_state={SEED}` and scored by NDCG@10 on
  `val_test` (matfact by `evaluate_ranking`, implicit by the scorer above, with
  `factors`/`alpha`/`regularization` from the same grid and no `reg_exponent`); the best
  point (first in grid order on a tie) is refitted on the whole training part and scored on
  the test part. `--quick`: the grid {_grid_text(QUICK_GRID)}.
- **Fit time**: one fit (after a warm-up fit of each model that loads its kernels).

**Ratings on ML-100K**:

- **Folds**: `matfact.kfold(matfact.load_dataset("ml-100k"), {N_FOLDS}, random_state={FOLD_SEED})`
  (`--quick`: the first fold).
- **matfact**: `ALS(random_state={SEED})` (defaults: 64 factors, λ = 0.1 weighted, 15
  iterations), `BayesianMF(random_state={SEED})` (rank 10, 200 Gibbs iterations, 20 burn-in),
  each with its default `n_threads=None` (matfact then picks the thread count from the work
  of each parallel step), and for reference `BayesianMF(random_state={SEED}, n_threads=1)` and
  `n_threads=2` (their predictions are compared with the default's, byte for byte);
  predictions clipped to [1, 5] by matfact.
- **myFM**: `myfm.MyFMRegressor(rank={BAYES_RANK}, random_seed={SEED}).fit(X, y,
  n_iter={MYFM_ITERATIONS})` with X the one-hot (`scipy.sparse.csr_matrix`) of the user and item
  indices of the training part (n_users + n_items columns); a test row whose user or item is
  not in the training part has no column for it. RMSE of its raw predictions and of the
  predictions clipped to [1, 5] (the figure compared). myFM's sampler runs on one core.
- **Timing**: one warm-up fit of each matfact model (compiles or loads its kernels) and a
  short myFM fit, then one timed fit per fold and library (wall clock and the process's CPU
  time); the figure is the median over folds. myFM's one-hot matrices are built outside its
  fit time. RMSE by `matfact.evaluation.metrics.rmse`, mean ± std (`ddof=0`) over folds.
- **Goals** (from the issue): `ALS()` mean RMSE ≤ {GOAL_ALS_RMSE}; `BayesianMF()` mean RMSE ≤
  {GOAL_BAYES_RMSE} with a median fit ≥ {GOAL_BAYES_SPEEDUP:g}× faster than myFM's, each at its
  natural thread count. Spark ALS tuned ({SPARK_ALS_RMSE}) and myFM ({ISSUE_MYFM["rmse"]} in
  {ISSUE_MYFM["fit_s"]} s per fold) are quoted from the issue, not run here.
"""


# ------------------------------------------------------------------------------------ helpers
def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _wait(enabled: bool) -> dict[str, Any] | None:
    return wait_for_quiet() if enabled else None


def _quiet_attempts(measure: Callable[[], tuple[Any, dict[str, Any]]],
                    wait: bool) -> tuple[Any, dict[str, Any]]:
    """``measure()`` after waiting for a quiet machine, repeated while others were busy.

    A measurement during which other processes used :data:`QUIET_CORES` cores or more is
    redone, up to :data:`ATTEMPTS` times in all (once without ``wait``); the last is kept,
    with ``others_cores``, ``quiet_wait`` and the others' cores of every ``attempt``.
    """
    history: list[float | None] = []
    for _ in range(ATTEMPTS if wait else 1):
        quiet = _wait(wait)
        meter = OtherCpu()
        result, timing = measure()
        timing["others_cores"] = _cores(meter)
        timing["quiet_wait"] = quiet
        history.append(timing["others_cores"])
        if timing["others_cores"] is None or timing["others_cores"] < QUIET_CORES:
            break
    timing["attempts_others_cores"] = history
    return result, timing


def _cores(meter: OtherCpu) -> float | None:
    value = meter.cores()
    return None if value is None else round(value, 3)


def memory_budget(nnz: int, n_users: int, n_items: int, k: int = K) -> int:
    """The issue's memory budget: 2 × (12 bytes × nnz) + the two factor matrices (float32)."""
    return 2 * 12 * nnz + (n_users + n_items) * k * 4


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


class _RssSampler:
    """Reads ``VmRSS`` every ``every`` seconds in a daemon thread and keeps the maximum."""

    def __init__(self, every: float = SAMPLE_EVERY_S) -> None:
        self.every = every
        self.peak = _status("VmRSS")
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status("VmRSS"))
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("VmRSS"))


# ------------------------------------------------------------------------------------ speed part
def _synthetic(n_ratings: int) -> Any:
    import matfact

    data = matfact.make_synthetic(N_USERS, N_ITEMS, n_ratings, random_state=DATA_SEED)
    imp = matfact.Interactions.from_arrays(data.user_codes, data.item_codes,
                                           weights=data.ratings)
    del data
    gc.collect()
    return imp


def _implicit_matrix(imp: Any) -> Any:
    """implicit's input with the objective of matfact's linear confidence: values 1 + α·w."""
    import scipy.sparse as sp

    csr = imp.to_scipy()
    values = (1.0 + ALPHA * csr.data.astype(np.float64)).astype(np.float32)
    return sp.csr_matrix((values, csr.indices, csr.indptr), shape=csr.shape)


def _start_factors(n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """matfact's initial factors: users then items from default_rng(SEED), N(0, 1) × init_std."""
    rng = np.random.default_rng(SEED)
    users = rng.standard_normal((n_users, K), dtype=np.float32) * np.float32(INIT_STD)
    items = rng.standard_normal((n_items, K), dtype=np.float32) * np.float32(INIT_STD)
    return users, items


def _ials(solver: str, max_iter: int, calculate_loss: bool = False) -> Any:
    import matfact

    return matfact.ImplicitALS(n_factors=K, alpha=ALPHA, reg=REG, reg_exponent=0.0,
                               solver=solver, cg_steps=CG_STEPS, max_iter=max_iter,
                               init_std=INIT_STD, n_threads=THREADS,
                               calculate_loss=calculate_loss, random_state=SEED)


def _start_verified(imp: Any, users: np.ndarray, items: np.ndarray) -> bool | None:
    """Whether a matfact fit starts from ``users`` / ``items`` (its loop stubbed out)."""
    import matfact

    captured: dict[str, np.ndarray] = {}

    def stub(model: Any, *args: Any, **kwargs: Any) -> None:
        captured["users"] = model.user_factors_.copy()
        captured["items"] = model.item_factors_.copy()

    try:
        with mock.patch.object(matfact.ImplicitALS, "_train", stub):
            _ials("cg", 1).fit(imp, progress=False)
    except Exception:  # noqa: BLE001 - the private hook moved: report "not checked"
        return None
    if not captured:
        return None
    return bool(np.array_equal(captured["users"], users)
                and np.array_equal(captured["items"], items))


def _implicit_loss(cui: Any, users: np.ndarray, items: np.ndarray) -> float:
    from implicit.cpu import _als

    return float(_als.calculate_loss(cui, users, items, REG, num_threads=THREADS))


def _fit_matfact(imp: Any, solver: str, max_iter: int,
                 calculate_loss: bool = False) -> tuple[Any, dict[str, Any]]:
    seconds: list[float] = []
    gc.collect()
    start = time.perf_counter()
    model = _ials(solver, max_iter, calculate_loss).fit(
        imp, progress=False, callback=lambda iteration, info: seconds.append(info["seconds"]))
    wall = time.perf_counter() - start
    return model, {"iterations": max_iter, "iteration_s": seconds, "wall_s": wall}


def _fit_implicit(cui: Any, use_cg: bool, iterations: int, users: np.ndarray,
                  items: np.ndarray) -> tuple[Any, dict[str, Any]]:
    from implicit.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=K, regularization=REG, alpha=ALPHA,
                                    iterations=iterations, use_cg=use_cg, num_threads=THREADS,
                                    calculate_training_loss=False, random_state=SEED,
                                    use_gpu=False)
    model.cg_steps = CG_STEPS
    model.user_factors = users.copy()
    model.item_factors = items.copy()
    seconds: list[float] = []
    gc.collect()
    start = time.perf_counter()
    model.fit(cui, show_progress=False,
              callback=lambda iteration, elapsed, loss: seconds.append(float(elapsed)))
    wall = time.perf_counter() - start
    return model, {"iterations": iterations, "iteration_s": seconds, "wall_s": wall}


def _speed_matfact(imp: Any, cui: Any, solver: str, wait: bool) -> dict[str, Any]:
    print(f"    matfact {solver}: warm-up, {TIMED_ITERATIONS} timed iterations, loss fit",
          flush=True)
    _, warm = _fit_matfact(imp, solver, 1)
    timed_model, timed = _quiet_attempts(
        lambda: _fit_matfact(imp, solver, TIMED_ITERATIONS), wait)
    loss_model, _ = _fit_matfact(imp, solver, LOSS_ITERATIONS, calculate_loss=True)
    same = bool(np.array_equal(timed_model.user_factors_, loss_model.user_factors_)
                and np.array_equal(timed_model.item_factors_, loss_model.item_factors_))
    return {
        "warm_up": warm, "timed": timed,
        "iteration_median_s": _median(timed["iteration_s"]),
        "loss_history": list(loss_model.loss_history_["train_loss"]),
        "loss": float(loss_model.loss_history_["train_loss"][-1]),
        "loss_by_implicit_function": _implicit_loss(cui, loss_model.user_factors_,
                                                    loss_model.item_factors_),
        "loss_fit_equals_timed_fit": same,
    }


def _speed_implicit(cui: Any, solver: str, users: np.ndarray, items: np.ndarray,
                    wait: bool) -> dict[str, Any]:
    use_cg = solver == "cg"
    print(f"    implicit {solver}: warm-up", flush=True)
    _, warm = _fit_implicit(cui, use_cg, 1, users, items)
    out: dict[str, Any] = {"warm_up": warm}
    if not use_cg and warm["iteration_s"][0] > CHOLESKY_LIMIT_S:
        out.update(skipped=(f"warm-up iteration {warm['iteration_s'][0]:.0f} s > "
                            f"{CHOLESKY_LIMIT_S:.0f} s"),
                   iteration_median_s=warm["iteration_s"][0], loss=None)
        return out
    print(f"    implicit {solver}: {TIMED_ITERATIONS} timed iterations", flush=True)
    model, timed = _quiet_attempts(
        lambda: _fit_implicit(cui, use_cg, TIMED_ITERATIONS, users, items), wait)
    out.update(timed=timed, iteration_median_s=_median(timed["iteration_s"]),
               loss=_implicit_loss(cui, model.user_factors, model.item_factors), skipped=None)
    return out


def _speed(n_ratings: int, quick: bool) -> dict[str, Any]:
    print(f"  {_label(n_ratings)}: make_synthetic", flush=True)
    start = time.perf_counter()
    imp = _synthetic(n_ratings)
    cui = _implicit_matrix(imp)
    generate_s = time.perf_counter() - start
    users, items = _start_factors(imp.n_users, imp.n_items)
    out: dict[str, Any] = {
        "n_ratings": n_ratings, "nnz": imp.nnz, "n_users": imp.n_users,
        "n_items": imp.n_items, "generate_s": generate_s,
        "start_verified": _start_verified(imp, users, items),
        "start_loss": _implicit_loss(cui, users, items),
        "load_average_start": list(os.getloadavg()), "solvers": {},
    }
    for solver in ("cg", "cholesky"):
        out["solvers"][solver] = {
            "matfact": _speed_matfact(imp, cui, solver, not quick),
            "implicit": _speed_implicit(cui, solver, users, items, not quick),
        }
    out["load_average_end"] = list(os.getloadavg())
    return out


# ------------------------------------------------------------------------------------ memory part
def _memory(n_ratings: int, library: str) -> dict[str, Any]:
    import matfact

    print(f"  memory, {library}, {_label(n_ratings)}: make_synthetic", flush=True)
    imp = _synthetic(n_ratings)
    tiny = matfact.make_synthetic(2_000, 500, 20_000, random_state=1)
    small = matfact.Interactions.from_arrays(tiny.user_codes, tiny.item_codes,
                                             weights=tiny.ratings)
    cui = None
    if library == "matfact":
        _ials("cg", 1).fit(small, progress=False)  # loads the kernels before the baseline

        def fit() -> Any:
            return _ials("cg", MEMORY_ITERATIONS).fit(imp, progress=False)
    else:
        from implicit.als import AlternatingLeastSquares

        def make(iterations: int) -> Any:
            return AlternatingLeastSquares(factors=K, regularization=REG, alpha=ALPHA,
                                           iterations=iterations, use_cg=True,
                                           num_threads=THREADS, calculate_training_loss=False,
                                           random_state=SEED, use_gpu=False)

        make(1).fit(_implicit_matrix(small), show_progress=False)
        cui = _implicit_matrix(imp)

        def fit() -> Any:
            return make(MEMORY_ITERATIONS).fit(cui, show_progress=False)
    del small, tiny
    gc.collect()
    time.sleep(0.2)
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")  # resets VmHWM to the current RSS
    before = _status("VmRSS")
    print(f"  memory, {library}, {_label(n_ratings)}: fit", flush=True)
    start = time.perf_counter()
    with _RssSampler() as sampler:
        fit()
    wall = time.perf_counter() - start
    hwm = _status("VmHWM")
    return {"library": library, "n_ratings": n_ratings, "nnz": imp.nnz,
            "n_users": imp.n_users, "n_items": imp.n_items, "iterations": MEMORY_ITERATIONS,
            "rss_before": before, "peak_sampled": sampler.peak, "samples": sampler.samples,
            "vm_hwm": hwm, "fit_s": wall,
            "budget": memory_budget(imp.nnz, imp.n_users, imp.n_items)}


# ------------------------------------------------------------------------------------ top-N part
def rank_scores(recommended: np.ndarray, relevant: Any, k: int = TOP_K) -> dict[str, float]:
    """NDCG, precision and MAP at ``k`` by matfact's metric functions, averaged over users.

    Parameters
    ----------
    recommended : ndarray of int, shape (n_users, >= k)
        Item indices (matfact's, of the training part) best first; -1 pads.
    relevant : scipy.sparse matrix of shape (n_users, n_columns)
        Each user's relevant items.
    """
    from matfact.evaluation import metrics

    functions = {"ndcg": metrics.ndcg_at_k, "precision": metrics.precision_at_k,
                 "map": metrics.average_precision_at_k}
    return {name: float(metrics.aggregate(functions[name](recommended, relevant, k)))
            for name in RANK_METRICS}


def _relevant(train: Any, test: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """Test users (raw ids, and their training indices) and their relevant test items,
    as :func:`matfact.evaluate_ranking` builds them."""
    from matfact.evaluation.validate import relevant_items

    users_raw, relevant = relevant_items(test, train.item_index)
    return users_raw, train.user_index.get_indexer(users_raw), relevant


def _train_csr(train: Any) -> Any:
    return train.to_scipy().astype(np.float32)


def _implicit_lists(model: Any, csr: Any, user_codes: np.ndarray) -> np.ndarray:
    """implicit's top-k (training indices) for each user; -1 rows for unknown users."""
    out = np.full((len(user_codes), TOP_K), -1, dtype=np.int64)
    known = np.flatnonzero(user_codes >= 0)
    if len(known):
        codes = user_codes[known]
        ids, _ = model.recommend(codes, csr[codes], N=TOP_K, filter_already_liked_items=True)
        ids = np.asarray(ids, dtype=np.int64).reshape(len(codes), -1)
        out[known, :ids.shape[1]] = ids
    return out


def _matfact_lists(model: Any, train: Any, users_raw: np.ndarray) -> np.ndarray:
    """matfact's top-k as training item indices (-1 pads), for the scorer check."""
    ids, scores = model.recommend(users_raw, n=TOP_K)
    codes = train.item_index.get_indexer(ids.ravel()).reshape(ids.shape)
    return np.where(np.isnan(scores), -1, codes)


def _implicit_als(**params: Any) -> Any:
    from implicit.als import AlternatingLeastSquares

    return AlternatingLeastSquares(random_state=SEED, use_gpu=False, **params)


def _implicit_bpr() -> Any:
    from implicit.bpr import BayesianPersonalizedRanking

    return BayesianPersonalizedRanking(random_state=SEED, use_gpu=False)


def _timed_fit(fit: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def _score_matfact(make: Callable[[], Any], train: Any, test: Any) -> dict[str, Any]:
    import matfact

    model, fit_s = _timed_fit(lambda: make().fit(train, progress=False))
    summary = matfact.evaluate_ranking(model, test, k=TOP_K, metrics=RANK_METRICS)
    return {"model": model, "fit_s": fit_s, "n_users": summary["n_users"],
            "n_unknown_users": summary["n_unknown_users"],
            **{name: float(summary[f"{name}@{TOP_K}"]) for name in RANK_METRICS}}


def _score_implicit(make: Callable[[], Any], train: Any, test: Any) -> dict[str, Any]:
    csr = _train_csr(train)
    users_raw, user_codes, relevant = _relevant(train, test)

    def fit() -> Any:
        model = make()
        model.fit(csr, show_progress=False)
        return model

    model, fit_s = _timed_fit(fit)
    lists = _implicit_lists(model, csr, user_codes)
    return {"fit_s": fit_s, "n_users": len(users_raw),
            "n_unknown_users": int((user_codes < 0).sum()), **rank_scores(lists, relevant)}


def _grid_points(grid: dict[str, tuple], with_exponent: bool) -> list[dict[str, float]]:
    points = []
    exponents = grid["reg_exponent"] if with_exponent else (None,)
    for n_factors in grid["n_factors"]:
        for alpha in grid["alpha"]:
            for reg in grid["reg"]:
                for exponent in exponents:
                    point = {"n_factors": n_factors, "alpha": alpha, "reg": reg}
                    if exponent is not None:
                        point["reg_exponent"] = exponent
                    points.append(point)
    return points


def _tune(train: Any, grid: dict[str, tuple]) -> dict[str, Any]:
    import matfact

    val_train, val_test = matfact.train_test_split(train, 0.2, "per_user",
                                                   random_state=VALIDATION_SEED)
    out: dict[str, Any] = {"n_val_train": val_train.nnz, "n_val_test": val_test.nnz}
    print(f"    tuning matfact ImplicitALS ({len(_grid_points(grid, True))} points)", flush=True)
    scores = []
    for point in _grid_points(grid, True):
        model = matfact.ImplicitALS(random_state=SEED, **point).fit(val_train, progress=False)
        ndcg = matfact.evaluate_ranking(model, val_test, k=TOP_K, metrics=("ndcg",))
        scores.append({**point, "ndcg": float(ndcg[f"ndcg@{TOP_K}"])})
    out["matfact"] = scores
    print(f"    tuning implicit ALS ({len(_grid_points(grid, False))} points)", flush=True)
    scores = []
    for point in _grid_points(grid, False):
        params = {"factors": point["n_factors"], "alpha": point["alpha"],
                  "regularization": point["reg"], "iterations": 15}
        ndcg = _score_implicit(lambda params=params: _implicit_als(**params), val_train,
                               val_test)["ndcg"]
        scores.append({**point, "ndcg": ndcg})
    out["implicit"] = scores
    for side in ("matfact", "implicit"):
        out[f"{side}_best"] = max(out[side], key=lambda s: s["ndcg"])  # first on a tie
    return out


def _warm_up_topn(train: Any) -> None:
    import matfact

    matfact.ImplicitALS(max_iter=1, random_state=SEED).fit(train, progress=False)
    matfact.BPR(max_iter=1, random_state=SEED).fit(train, progress=False)
    csr = _train_csr(train)
    _implicit_als(iterations=1).fit(csr, show_progress=False)
    from implicit.bpr import BayesianPersonalizedRanking

    BayesianPersonalizedRanking(iterations=1, random_state=SEED).fit(csr, show_progress=False)


def _topn_dataset(data: Any, ml100k: bool, grid: dict[str, tuple] | None) -> dict[str, Any]:
    import matfact

    train, test = matfact.train_test_split(data, 0.2, "per_user", random_state=SPLIT_SEED)
    rows: list[dict[str, Any]] = []

    def add(name: str, library: str, call: str, result: dict[str, Any]) -> None:
        result.pop("model", None)
        rows.append({"name": name, "library": library, "call": call, **result})

    als = _score_matfact(lambda: matfact.ImplicitALS(random_state=SEED), train, test)
    users_raw, _, relevant = _relevant(train, test)
    check = rank_scores(_matfact_lists(als["model"], train, users_raw), relevant)
    scorer_gap = max(abs(check[name] - als[name]) for name in RANK_METRICS)
    add("ImplicitALS()", "matfact", f"ImplicitALS(random_state={SEED})", als)
    tuning = None
    if grid is not None:
        tuning = _tune(train, grid)
        best = {k: v for k, v in tuning["matfact_best"].items() if k != "ndcg"}
        add("ImplicitALS tuned", "matfact",
            "ImplicitALS(" + ", ".join(f"{k}={v:g}" for k, v in best.items())
            + f", random_state={SEED})",
            _score_matfact(lambda: matfact.ImplicitALS(random_state=SEED, **best), train,
                           test))
    add("BPR()", "matfact", f"BPR(random_state={SEED})",
        _score_matfact(lambda: matfact.BPR(random_state=SEED), train, test))
    add("Popularity()", "matfact", "Popularity()",
        _score_matfact(matfact.Popularity, train, test))
    params = IMPLICIT_ML100K if ml100k else {}
    call = ("AlternatingLeastSquares(" + "".join(f"{k}={v:g}, " for k, v in params.items())
            + f"random_state={SEED})")
    add("implicit ALS", "implicit", call,
        _score_implicit(lambda: _implicit_als(**params), train, test))
    if tuning is not None:
        best = tuning["implicit_best"]
        tuned = {"factors": best["n_factors"], "alpha": best["alpha"],
                 "regularization": best["reg"], "iterations": 15}
        add("implicit ALS tuned", "implicit",
            "AlternatingLeastSquares(" + ", ".join(f"{k}={v:g}" for k, v in tuned.items())
            + f", random_state={SEED})",
            _score_implicit(lambda: _implicit_als(**tuned), train, test))
    add("implicit BPR", "implicit", f"BayesianPersonalizedRanking(random_state={SEED})",
        _score_implicit(_implicit_bpr, train, test))
    return {"n_train": train.nnz, "n_test": test.nnz, "n_users": data.n_users,
            "n_items": data.n_items, "scorer_check_max_difference": scorer_gap,
            "rows": rows, "tuning": tuning}


def _topn(quick: bool) -> dict[str, Any]:
    import matfact
    from matfact.exceptions import DatasetNotFoundError

    ml = load_ml100k().to_implicit()
    print("  top-N: warm-up fits", flush=True)
    _warm_up_topn(matfact.train_test_split(ml, 0.2, "per_user", random_state=SPLIT_SEED)[0])
    print("  top-N: ML-100K", flush=True)
    out: dict[str, Any] = {"ml-100k": _topn_dataset(ml, True, QUICK_GRID if quick else GRID),
                           "datasets": {}, "missing": {}}
    for name, kind, _ in ([] if quick else IMPLICIT_DATASETS):
        try:
            data = matfact.load_dataset(name, kind=kind, data_home=data_home(), download=False)
        except DatasetNotFoundError as exc:
            out["missing"][name] = str(exc).splitlines()[0]
            continue
        print(f"  top-N: {name}", flush=True)
        out["datasets"][name] = _topn_dataset(data, False, None)
    return out


# ------------------------------------------------------------------------------------ rating part
def _one_hot(train: Any, users: np.ndarray, items: np.ndarray) -> Any:
    import scipy.sparse as sp

    u = train.user_index.get_indexer(users)
    i = train.item_index.get_indexer(items)
    rows = np.arange(len(users))
    row = np.concatenate([rows[u >= 0], rows[i >= 0]])
    col = np.concatenate([u[u >= 0], train.n_users + i[i >= 0]])
    return sp.csr_matrix((np.ones(len(row)), (row, col)),
                         shape=(len(users), train.n_users + train.n_items))


def _clock(fit: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model = fit()
    return model, {"fit_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _rating(quick: bool) -> dict[str, Any]:
    import myfm

    import matfact
    from matfact.evaluation.metrics import rmse

    data = load_ml100k()
    folds = matfact.kfold(data, N_FOLDS, random_state=FOLD_SEED)[: 1 if quick else N_FOLDS]
    train0 = folds[0][0]
    print("  ratings: warm-up fits", flush=True)
    matfact.ALS(max_iter=1, random_state=SEED).fit(train0, progress=False)
    matfact.BayesianMF(max_iter=3, burn_in=1, random_state=SEED).fit(train0, progress=False)
    matfact.BayesianMF(max_iter=3, burn_in=1, random_state=SEED, n_threads=1).fit(
        train0, progress=False)
    myfm.MyFMRegressor(rank=BAYES_RANK, random_seed=SEED).fit(
        _one_hot(train0, train0.users, train0.items), train0.ratings, n_iter=5)
    models = {
        "ALS()": lambda: matfact.ALS(random_state=SEED),
        "BayesianMF()": lambda: matfact.BayesianMF(random_state=SEED),
        "BayesianMF(n_threads=1)": lambda: matfact.BayesianMF(random_state=SEED, n_threads=1),
        "BayesianMF(n_threads=2)": lambda: matfact.BayesianMF(random_state=SEED, n_threads=2),
    }

    def measure_fold(train: Any, test: Any) -> tuple[None, dict[str, Any]]:
        row: dict[str, Any] = {}
        predictions = {}
        for name, make in models.items():
            model, clock = _clock(lambda make=make: make().fit(train, progress=False))
            predictions[name] = model.predict(test.users, test.items)
            row[name] = {**clock, "rmse": rmse(test.ratings, predictions[name])}
        row["bayes_threads_identical"] = bool(all(
            np.array_equal(predictions["BayesianMF()"], predictions[name])
            for name in ("BayesianMF(n_threads=1)", "BayesianMF(n_threads=2)")))
        start = time.perf_counter()
        x_train = _one_hot(train, train.users, train.items)
        x_test = _one_hot(train, test.users, test.items)
        one_hot_s = time.perf_counter() - start
        model, clock = _clock(lambda: myfm.MyFMRegressor(
            rank=BAYES_RANK, random_seed=SEED).fit(x_train, train.ratings,
                                                   n_iter=MYFM_ITERATIONS))
        raw = np.asarray(model.predict(x_test), dtype=np.float64)
        row["myFM"] = {**clock, "one_hot_s": one_hot_s, "rmse_raw": rmse(test.ratings, raw),
                       "rmse": rmse(test.ratings, np.clip(raw, 1.0, 5.0))}
        return None, row

    out: list[dict[str, Any]] = []
    for fold, (train, test) in enumerate(folds):
        print(f"  ratings: fold {fold}", flush=True)
        _, row = _quiet_attempts(lambda train=train, test=test: measure_fold(train, test),
                                 not quick)
        out.append({"fold": fold, "n_train": train.nnz, "n_test": test.nnz, **row})
    return {"folds": out}


# ------------------------------------------------------------------------------------ processes
_TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "speed": lambda args: _speed(args.size, args.quick),
    "memory": lambda args: _memory(args.size, args.library),
    "topn": lambda args: _topn(args.quick),
    "rating": lambda args: _rating(args.quick),
}


def _worker_info() -> dict[str, Any]:
    return {"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"), "blas": _blas()}


def main(argv: list[str] | None = None) -> int:
    """Entry point of one part's process: ``python -m benchmarks.als TASK --out FILE``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.als")
    parser.add_argument("task", choices=list(_TASKS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=QUICK_SIZES[0])
    parser.add_argument("--library", choices=["matfact", "implicit"], default="matfact")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    result = _TASKS[args.task](args)
    result["process"] = _worker_info()
    args.out.write_text(json.dumps(result, default=_plain), encoding="utf-8")
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _run_part(task: str, *args: str) -> dict[str, Any]:
    """Run one part in a fresh process with ``OPENBLAS_NUM_THREADS=1``; return its result."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory(prefix="matfact-als-") as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([sys.executable, "-m", "benchmarks.als", task, "--out", str(out), *args],
                       cwd=ROOT, env=env, check=True)
        return json.loads(out.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ tables
def _label(n: int) -> str:
    return f"{n / 1e6:g}M"


def _mark(ok: bool | None) -> str:
    return "—" if ok is None else "✓" if ok else "✗"


def _cores_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def _speed_tables(speed: list[dict[str, Any]], memory: list[dict[str, Any]],
                  quick: bool) -> tuple[list[dict[str, Any]], list[list[str]]]:
    time_rows, loss_rows, notes = [], [], []
    cg_goals, cholesky_goals, loss_goals, memory_goals = [], [], [], []
    for s in speed:
        label = f"{_label(s['n_ratings'])} ({s['nnz']:,})"
        for solver, pair in s["solvers"].items():
            ours, theirs = pair["matfact"], pair["implicit"]
            ratio = theirs["iteration_median_s"] / ours["iteration_median_s"]
            skipped = theirs.get("skipped")
            time_rows.append([
                label, solver, fmt_seconds(ours["iteration_median_s"]),
                fmt_seconds(theirs["iteration_median_s"]) + (" (1 iteration)" if skipped else ""),
                fmt_ratio(ratio), fmt_seconds(ours["timed"]["wall_s"]),
                "—" if skipped else fmt_seconds(theirs["timed"]["wall_s"]),
                _cores_text(ours["timed"].get("others_cores")) + " / "
                + _cores_text(None if skipped else theirs["timed"].get("others_cores")),
            ])
            if skipped:
                notes.append(f"implicit's Cholesky at {_label(s['n_ratings'])}: {skipped}, so "
                             "only that warm-up iteration was timed and its loss is not given.")
            gap = (None if theirs["loss"] is None
                   else abs(ours["loss"] - theirs["loss"]) / theirs["loss"])
            met = _mark(None if gap is None else gap <= GOAL_LOSS_GAP)
            loss_rows.append([
                label, solver, f"{s['start_loss']:.6g}", f"{ours['loss']:.6g}",
                f"{ours['loss_by_implicit_function']:.6g}",
                "—" if theirs["loss"] is None else f"{theirs['loss']:.6g}",
                "—" if gap is None else f"{gap:.2e}", met,
            ])
            loss_goals.append([f"training loss after {LOSS_ITERATIONS} iterations within "
                               f"{GOAL_LOSS_GAP:.0%} of implicit's ({solver})",
                               _label(s["n_ratings"]), "—" if gap is None else f"{gap:.2e}",
                               met])
            if solver == "cg" and s["n_ratings"] == GOAL_SPEEDUP_SIZE:
                cg_goals.append([f"CG iteration ≥ {GOAL_SPEEDUP:g}× faster than implicit's CG",
                                 _label(s["n_ratings"]), fmt_ratio(ratio),
                                 _mark(ratio >= GOAL_SPEEDUP)])
            if solver == "cholesky":
                cholesky_goals.append([f"Cholesky iteration ≥ {GOAL_SPEEDUP:g}× faster than "
                                       "implicit's Cholesky", _label(s["n_ratings"]),
                                       fmt_ratio(ratio), _mark(ratio >= GOAL_SPEEDUP)])
    if not cg_goals:
        cg_goals.append([f"CG iteration ≥ {GOAL_SPEEDUP:g}× faster than implicit's CG",
                         _label(GOAL_SPEEDUP_SIZE), "not measured (quick run)", "—"])
    verified = {s["n_ratings"]: s["start_verified"] for s in speed}
    identical = all(p["matfact"]["loss_fit_equals_timed_fit"] for s in speed
                    for p in s["solvers"].values())
    start_note = ("Both libraries start from the same factors at every size (start verified "
                  "against a stubbed matfact fit: "
                  + ", ".join(f"{_label(n)} {'yes' if v else 'NO' if v is not None else 'not checked'}"
                              for n, v in verified.items())
                  + "). matfact's loss fits reproduced the timed fits' factors byte for byte: "
                  + ("yes." if identical else "**no**."))
    mem_rows = []
    for m in memory:
        sampled, hwm = m["peak_sampled"] - m["rss_before"], m["vm_hwm"] - m["rss_before"]
        is_matfact = m["library"] == "matfact"
        mem_rows.append([
            ("matfact ImplicitALS (CG)" if is_matfact
             else "implicit AlternatingLeastSquares (CG), for context"),
            f"{_label(m['n_ratings'])} ({m['nnz']:,})", _mb(m["rss_before"]), _mb(sampled),
            _mb(hwm), _mb(m["budget"]), f"{max(sampled, hwm) / m['budget']:.0%}",
            _mark(max(sampled, hwm) <= m["budget"]) if is_matfact else "—",
            fmt_seconds(m["fit_s"]),
        ])
        if is_matfact:
            memory_goals.append([f"peak RSS of the fit ≤ 2 × 12 B × nnz + factors "
                          f"({_mb(m['budget'])})", _label(m["n_ratings"]),
                          f"{_mb(max(sampled, hwm))} ({max(sampled, hwm) / m['budget']:.0%})",
                          _mark(max(sampled, hwm) <= m["budget"])])
    tables = [
        {
            "title": f"Implicit ALS: time per iteration, k = {K}, {THREADS} threads",
            "columns": ["data (nnz)", "solver",
                        f"matfact (median of {TIMED_ITERATIONS}, callback)",
                        f"implicit (median of {TIMED_ITERATIONS}, callback)",
                        "speed ratio (implicit / matfact)",
                        f"matfact whole fit ({TIMED_ITERATIONS} it.)",
                        f"implicit whole fit ({TIMED_ITERATIONS} it.)",
                        "other processes' cores (matfact / implicit)"],
            "rows": time_rows,
            "note": ("Per-iteration times come from each library's own per-iteration callback "
                     "(both half-steps). The whole fit adds each library's data preparation. "
                     + " ".join(notes)).strip(),
        },
        {
            "title": f"Implicit ALS: training loss after {LOSS_ITERATIONS} iterations from the "
                     "same start",
            "columns": ["data (nnz)", "solver", "loss at the start (implicit's function)",
                        "matfact `train_loss`", "implicit's `calculate_loss` on matfact's factors",
                        "implicit (its fit, its `calculate_loss`)",
                        "relative difference (matfact vs implicit)", "within 1 %"],
            "rows": loss_rows,
            "note": start_note,
        },
        {
            "title": "Implicit ALS: peak memory of a fit",
            "columns": ["fit", "data (nnz)", "RSS before the fit",
                        f"peak above before (sampled every {SAMPLE_EVERY_S * 1000:.0f} ms)",
                        "peak above before (VmHWM)", "budget", "peak / budget", "within budget",
                        f"fit time ({MEMORY_ITERATIONS} it.)"],
            "rows": mem_rows,
            "note": ("Budget = 2 × 12 B × nnz + (n_users + n_items) × 64 × 4 B (the issue's). "
                     "The sampler cannot run while a numba kernel holds the GIL; VmHWM is the "
                     "kernel's exact peak since a reset just before the fit. implicit's row "
                     "excludes its input matrix, which it is given ready-made."
                     + (" Quick run: 1M instead of 30M." if quick else "")),
        },
    ]
    return tables, cg_goals + cholesky_goals + loss_goals + memory_goals


def _metric_cells(r: dict[str, Any]) -> list[str]:
    return [f"{r[name]:.4f}" for name in RANK_METRICS]


def _topn_tables(topn: dict[str, Any], quick: bool) -> tuple[list[dict[str, Any]],
                                                               list[list[str]]]:
    ml = topn["ml-100k"]
    rows, goals = [], []
    for r in ml["rows"]:
        goal = GOAL_NDCG.get(r["name"])
        issue = ISSUE_NDCG.get(r["name"])
        rows.append([r["library"], f"`{r['call']}`", *_metric_cells(r), fmt_seconds(r["fit_s"]),
                     "" if issue is None else f"{issue:.3f}",
                     "" if goal is None else f"NDCG@10 ≥ {goal:.2f}",
                     "" if goal is None else _mark(r["ndcg"] >= goal)])
        if goal is not None:
            goals.append([f"{r['name']} NDCG@10 ≥ {goal:.2f} (ML-100K)", "ML-100K",
                          f"{r['ndcg']:.4f}", _mark(r["ndcg"] >= goal)])
    tuning = ml["tuning"]
    tune_rows = []
    for side in ("matfact", "implicit"):
        best = tuning[f"{side}_best"]
        ranked = sorted(tuning[side], key=lambda s: -s["ndcg"])
        params = ", ".join(f"{k}={v:g}" for k, v in best.items() if k != "ndcg")
        tune_rows.append([side, len(tuning[side]), params, f"{best['ndcg']:.4f}",
                          f"{ranked[1]['ndcg']:.4f}" if len(ranked) > 1 else "—",
                          f"{ranked[-1]['ndcg']:.4f}"])
    unknown = {r["n_unknown_users"] for d in [ml, *topn["datasets"].values()] for r in d["rows"]}
    tables = [
        {
            "title": f"Top-{TOP_K} on ML-100K (all ratings as interactions, per-user 80/20 split, "
                     f"random_state={SPLIT_SEED})",
            "columns": ["library", "model", "NDCG@10", "P@10", "MAP@10", "fit (1 run)",
                        "NDCG@10 quoted in the issue", "goal", "met"],
            "rows": rows,
            "note": (f"{ml['n_train']:,} training / {ml['n_test']:,} test interactions. "
                     "implicit's lists are scored by matfact's metric functions; the same "
                     "scorer on matfact's `ImplicitALS()` lists differs from "
                     f"`evaluate_ranking` by {ml['scorer_check_max_difference']:.1e} at most. "
                     "Unknown test users: "
                     + ", ".join(str(u) for u in sorted(unknown)) + "."),
        },
        {
            "title": "Tuning on a validation split of the ML-100K training part "
                     f"(per-user, random_state={VALIDATION_SEED}), NDCG@10",
            "columns": ["library", "grid points", "best parameters", "best validation NDCG@10",
                        "second best", "worst"],
            "rows": tune_rows,
            "note": (f"Grid: {_grid_text(QUICK_GRID if quick else GRID)} (`reg_exponent` is "
                     f"matfact's only; implicit's `factors`, `alpha`, `regularization` take the "
                     f"other values). {tuning['n_val_train']:,} / {tuning['n_val_test']:,} "
                     "validation interactions."),
        },
    ]
    if topn["datasets"]:
        data_rows = []
        for name, d in topn["datasets"].items():
            for r in d["rows"]:
                data_rows.append([f"{name} ({d['n_train']:,} / {d['n_test']:,})", r["library"],
                                  f"`{r['call']}`", *_metric_cells(r), fmt_seconds(r["fit_s"])])
        weights = "; ".join(f"{name}: {what}" for name, _, what in IMPLICIT_DATASETS
                            if name in topn["datasets"])
        missing = "; ".join(f"{n}: {why}" for n, why in topn["missing"].items())
        tables.append({
            "title": f"Top-{TOP_K} on the implicit datasets (defaults, per-user 80/20 split, "
                     f"random_state={SPLIT_SEED})",
            "columns": ["dataset (train / test)", "library", "model", "NDCG@10", "P@10",
                        "MAP@10", "fit (1 run)"],
            "rows": data_rows,
            "note": (f"Weights: {weights}. matfact's confidence is 1 + 2·w, implicit's its "
                     "default α = 1 times the weight." + (f" Missing: {missing}." if missing
                                                           else "")),
        })
    return tables, goals


def _rating_tables(rating: dict[str, Any]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    folds = rating["folds"]
    names = ["ALS()", "BayesianMF()", "BayesianMF(n_threads=1)", "BayesianMF(n_threads=2)",
             "myFM"]
    calls = {"ALS()": f"matfact `ALS(random_state={SEED})`",
             "BayesianMF()": f"matfact `BayesianMF(random_state={SEED})`",
             "BayesianMF(n_threads=1)": f"matfact `BayesianMF(random_state={SEED}, n_threads=1)`",
             "BayesianMF(n_threads=2)": f"matfact `BayesianMF(random_state={SEED}, n_threads=2)`",
             "myFM": f"myFM `MyFMRegressor(rank={BAYES_RANK})`, `n_iter={MYFM_ITERATIONS}`"}
    quoted = {"ALS()": f"Spark ALS tuned: {SPARK_ALS_RMSE}",
              "myFM": f"{ISSUE_MYFM['rmse']} in {ISSUE_MYFM['fit_s']} s per fold"}
    myfm_fit = _median([f["myFM"]["fit_s"] for f in folds])
    summary, per_fold, goals = [], [], []
    for name in names:
        rmses = [f[name]["rmse"] for f in folds]
        fit = _median([f[name]["fit_s"] for f in folds])
        cpu = _median([f[name]["cpu_s"] for f in folds])
        mean = float(np.mean(rmses))
        goal, met = "", ""
        if name == "ALS()":
            goal, met = f"RMSE ≤ {GOAL_ALS_RMSE}", _mark(mean <= GOAL_ALS_RMSE)
            goals.append([f"ALS() {goal}", "ML-100K", f"{mean:.4f}", met])
        if name == "BayesianMF()":
            ok_rmse, ok_speed = mean <= GOAL_BAYES_RMSE, myfm_fit / fit >= GOAL_BAYES_SPEEDUP
            goal = f"RMSE ≤ {GOAL_BAYES_RMSE}; fit ≥ {GOAL_BAYES_SPEEDUP:g}× faster than myFM"
            met = f"RMSE {_mark(ok_rmse)}, speed {_mark(ok_speed)}"
            goals.append([f"BayesianMF() RMSE ≤ {GOAL_BAYES_RMSE}", "ML-100K", f"{mean:.4f}",
                          _mark(ok_rmse)])
            goals.append([f"BayesianMF() fit ≥ {GOAL_BAYES_SPEEDUP:g}× faster than myFM",
                          "ML-100K", fmt_ratio(myfm_fit / fit), _mark(ok_speed)])
        summary.append([calls[name], f"{mean:.4f} ± {np.std(rmses):.4f}", fmt_seconds(fit),
                        f"{cpu / fit:.2f}", fmt_ratio(myfm_fit / fit), quoted.get(name, ""),
                        goal, met])
    for f in folds:
        per_fold.append([f["fold"], f"{f['n_train']:,} / {f['n_test']:,}",
                         *(f"{f[n]['rmse']:.4f}" for n in names), f"{f['myFM']['rmse_raw']:.4f}",
                         *(fmt_seconds(f[n]["fit_s"]) for n in names),
                         "yes" if f["bayes_threads_identical"] else "**no**",
                         _cores_text(f.get("others_cores"))])
    tables = [
        {
            "title": f"Ratings on ML-100K, {len(folds)}-fold cross-validation",
            "columns": ["model", "RMSE (mean ± std)", "fit (median over folds)",
                        "CPU time / wall time", "speed vs myFM (myFM fit / fit)",
                        "quoted in the issue", "goal", "met"],
            "rows": summary,
            "note": ("One timed fit per fold after warm-up fits; myFM's RMSE is of its "
                     "predictions clipped to [1, 5] (raw in the per-fold table). CPU time / "
                     "wall time shows the cores a fit kept busy (matfact's default "
                     "`n_threads=None` picks the thread count from the work of each parallel "
                     "step; myFM samples on one core). The goals are judged on the "
                     "`BayesianMF()` row, each library at its natural thread count; the "
                     "`n_threads` rows are for reference."),
        },
        {
            "title": "Ratings on ML-100K, per fold",
            "columns": ["fold", "train / test", *(f"RMSE {n}" for n in names),
                        "RMSE myFM (raw)", *(f"fit {n}" for n in names),
                        "BayesianMF predictions identical (default, 1, 2 threads)",
                        "other processes' cores (during the fold)"],
            "rows": per_fold,
        },
    ]
    return tables, goals


# ------------------------------------------------------------------------------------ suite
def assemble(env: dict[str, Any], parts: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The suite's result (protocol and tables) from the raw results of its parts.

    ``parts`` holds ``speed`` and ``memory`` (lists), ``topn`` and ``rating``, as the part
    processes returned them; ``assemble(r["environment"], r["results"], r["quick"])``
    re-renders a stored result with this module's tables and protocol.
    """
    speed_tables, speed_goals = _speed_tables(parts["speed"], parts["memory"], quick)
    topn_tables, topn_goals = _topn_tables(parts["topn"], quick)
    rating_tables, rating_goals = _rating_tables(parts["rating"])
    goals = {
        "title": "Goals",
        "columns": ["goal", "data", "measured", "met"],
        "rows": speed_goals + topn_goals + rating_goals,
        "note": "From the issue; each judged on the figures of the tables above.",
    }
    speed = parts["speed"]
    return {
        "suite": "als",
        "title": "ALS, implicit ALS, BPR and Bayesian MF against implicit and myFM",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": [*speed_tables, *topn_tables, *rating_tables, goals],
        "results": {"speed": speed, "memory": parts["memory"], "topn": parts["topn"],
                    "rating": parts["rating"],
                    "part_process": speed[0]["process"] if speed else None},
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run the ALS suite (each part in its own process) and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        1M interactions only (speed and memory), the first fold, ML-100K only with a
        two-point grid, and no waiting for a quiet machine (a smoke test).

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
    quick_args = ["--quick"] if quick else []
    speed = []
    for size in QUICK_SIZES if quick else SIZES:
        print(f"  speed: {_label(size)} interactions (own process)", flush=True)
        speed.append(_run_part("speed", "--size", str(size), *quick_args))
    memory_size = QUICK_MEMORY_SIZE if quick else MEMORY_SIZE
    memory = [_run_part("memory", "--size", str(memory_size), "--library", library)
              for library in ("matfact", "implicit")]
    print("  top-N (own process)", flush=True)
    topn = _run_part("topn", *quick_args)
    print("  ratings (own process)", flush=True)
    rating = _run_part("rating", *quick_args)

    result = assemble(env, {"speed": speed, "memory": memory, "topn": topn, "rating": rating},
                      quick)
    print_tables(result)
    return result


if __name__ == "__main__":
    sys.exit(main())
