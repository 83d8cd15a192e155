"""Hyper-parameter tuning on a validation split of the training data — never on test rows.

``tune(model, params, train)`` holds out part of ``train`` (by default 10%: a
``random`` split for rating metrics, ``per_user`` for ranking metrics, seed 1),
fits one clone per parameter set on the rest, scores it on the held-out part and
refits the best parameters on all of ``train``. ``params=None`` searches the model
class's :data:`DEFAULT_SPACES` entry (also what ``matfact evaluate --models`` tunes). Grid and random search use
scikit-learn's ``ParameterGrid`` / ``ParameterSampler``; ``search="bayes"`` runs
Optuna's TPE sampler. Models with early stopping stop on the validation part and
the refit keeps the best number of iterations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matfact.data.interactions import Interactions
from matfact.evaluation.metrics import RATING_METRICS, parse_metric
from matfact.evaluation.split import STRATEGIES, train_test_split
from matfact.evaluation.validate import (
    jobs_and_threads,
    resolve_folds,
    run_parallel,
    score,
)
from matfact.exceptions import DataError, ParameterError

__all__ = ["tune", "TuneResult", "DEFAULT_SPACES", "default_space"]

#: Validation share and split seed when ``validation`` does not say.
DEFAULT_VALIDATION = 0.1
VALIDATION_SEED = 1

#: What :func:`tune` searches with ``params=None``, per model class (and what
#: ``matfact evaluate --models`` and :func:`~matfact.evaluation.report.build_report` tune):
#: the parameters that move its accuracy most, a few values each. ImplicitALS searches its
#: confidence transform too: ``"auto"`` (linear on binary and narrow weights, the log with
#: quantile-set α and ε on weights spanning orders of magnitude) and ``"log"`` (α and ε as
#: given, on any weights); ``"linear"`` is left out, as ``"auto"`` is linear wherever the
#: linear form is sound. BPR and HybridMF's ranking losses count every interaction as one
#: positive whatever its weight, so they have no confidence to tune.
DEFAULT_SPACES: dict[str, dict[str, list]] = {
    "Baseline": {"reg_user": [2.0, 5.0, 15.0, 30.0], "reg_item": [2.0, 5.0, 10.0, 25.0]},
    "BiasedMF": {"n_factors": [20, 50, 100], "reg": [0.01, 0.02, 0.05, 0.1],
                 "learning_rate": [0.005, 0.01, 0.02]},
    "SVDPlusPlus": {"n_factors": [10, 20, 50], "reg": [0.01, 0.02, 0.05]},
    "ALS": {"n_factors": [10, 20, 50], "reg": [0.02, 0.05, 0.1, 0.2]},
    # Around the defaults (256 factors, α = 3, λ = 3); factors stop at 256, as 512 scored
    # within 1 % of it on validation splits of Steam, Retailrocket and ML-100K
    # (docs/benchmarks.md, "ImplicitALS defaults on raw counts").
    "ImplicitALS": {"confidence": ["auto", "log"], "n_factors": [64, 128, 256],
                    "alpha": [1.5, 3.0, 6.0], "reg": [1.0, 3.0, 10.0]},
    "BPR": {"n_factors": [32, 64], "learning_rate": [0.01, 0.02, 0.05],
            "reg": [0.0005, 0.002, 0.01]},
    "BayesianMF": {"n_factors": [5, 10, 20]},
    "NMF": {"n_components": [15, 30, 50], "alpha_W": [0.02, 0.08, 0.2]},
    "PureSVD": {"n_factors": [10, 20, 50, 100]},
    "HybridMF": {"n_factors": [32, 64], "learning_rate": [0.05, 0.1], "reg": [1e-4, 1e-3]},
}


def default_space(model: Any) -> dict[str, list]:
    """The search space :func:`tune` uses for ``model`` with ``params=None`` (a copy).

    Parameters
    ----------
    model : matfact model or class

    Raises
    ------
    ParameterError
        If :data:`DEFAULT_SPACES` has no entry for the model's class.
    """
    name = model.__name__ if isinstance(model, type) else type(model).__name__
    if name not in DEFAULT_SPACES:
        raise ParameterError(f"no default search space for {name}; give params= "
                             f"(name → list of values). Classes with one: "
                             f"{', '.join(DEFAULT_SPACES)}")
    return {key: list(values) for key, values in DEFAULT_SPACES[name].items()}


@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes
    ----------
    best_params : dict
        The parameter set with the best validation score.
    best_score : float
    best_model : matfact model
        A clone with ``best_params`` refitted on all the training data given to ``tune``.
    results : pandas.DataFrame
        One row per trial: a column per tuned parameter, the metric, ``fit_time``, and
        ``best_iter`` where the model stopped early; sorted from best to worst.
    metric : str
    """

    best_params: dict
    best_score: float
    best_model: Any
    results: pd.DataFrame
    metric: str

    def plot(self, path: Any, *, title: str | None = None) -> Any:
        """The validation score of every trial against each parameter, as a PNG (see
        :func:`matfact.plots.plot_tuning`)."""
        from matfact.plots import plot_tuning

        return plot_tuning(self, path, title=title)


def _minimize(metric: str) -> bool:
    return metric in RATING_METRICS


def _check_metric(metric: Any, data: Interactions) -> str:
    if not isinstance(metric, str):
        raise ParameterError(f"metric must be a name such as 'rmse' or 'ndcg@10', got {metric!r}")
    if metric in RATING_METRICS:
        if data.is_implicit:
            raise ParameterError(f"metric={metric!r} needs explicit ratings; the data is "
                                 f"implicit: tune a ranking metric such as 'ndcg@10'")
    else:
        parse_metric(metric)
    return metric


def _validation_splits(validation: Any, cv: Any, data: Interactions, metric: str,
                       random_state: Any) -> list[tuple[Interactions, Interactions]]:
    """The (fit, validation) pairs, all cut from ``data``."""
    if cv is not None:
        return resolve_folds(cv, data, VALIDATION_SEED if random_state is None else random_state)
    strategy = "random" if metric in RATING_METRICS else "per_user"
    size = DEFAULT_VALIDATION
    if validation is None:
        pass
    elif isinstance(validation, str):
        strategy = validation
    elif isinstance(validation, tuple) and len(validation) == 2:
        strategy, size = validation
    elif isinstance(validation, float) and not isinstance(validation, bool):
        size = validation
    else:
        raise ParameterError(f"validation must be a fraction, a split strategy "
                             f"({', '.join(STRATEGIES)}) or (strategy, fraction); "
                             f"got {validation!r}")
    if strategy not in STRATEGIES:
        raise ParameterError(f"unknown validation strategy {strategy!r}; choose from "
                             f"{', '.join(STRATEGIES)}")
    split = train_test_split(data, size, strategy, random_state=VALIDATION_SEED)
    return [(split.train, split.test)]


def _trial(model: Any, params: dict, splits: list, metric: str, k: int,
           threads: int | None) -> dict:
    """Fit a clone with ``params`` on each split's fit part; mean score on the held-out parts."""
    from sklearn.base import clone

    scores, iters, seconds = [], [], 0.0
    for fit_part, held_out in splits:
        candidate = clone(model).set_params(**params)
        if threads is not None and "n_threads" in candidate.get_params():
            candidate.set_params(n_threads=threads)
        start = time.perf_counter()
        if getattr(candidate, "early_stopping", False) and metric in RATING_METRICS:
            # Stops on the held-out part; the refit keeps the iteration count.
            candidate.fit(fit_part, validation=held_out, progress=False)
            iters.append(getattr(candidate, "best_iter_", None))
        else:
            candidate.fit(fit_part, progress=False)
        seconds += time.perf_counter() - start
        scores.append(score(candidate, held_out, [metric], k)[metric])
    row = {**params, metric: float(np.mean(scores)), "fit_time": seconds}
    if iters and all(i is not None for i in iters):
        row["best_iter"] = int(round(float(np.mean(iters))))
    return row


def _grid(params: Any) -> list[dict]:
    from sklearn.model_selection import ParameterGrid

    return list(ParameterGrid(params))


def _random(params: Any, n_iter: int, random_state: Any) -> list[dict]:
    from sklearn.model_selection import ParameterSampler

    seed = 0 if random_state is None else random_state
    return list(ParameterSampler(params, n_iter=n_iter, random_state=seed))


def _suggest(trial: Any, name: str, space: Any) -> Any:
    """Optuna's suggestion for one parameter: a list is categorical, a tuple a range."""
    if isinstance(space, list):
        return trial.suggest_categorical(name, space)
    if isinstance(space, tuple) and len(space) in (2, 3):
        low, high = space[0], space[1]
        log = len(space) == 3 and space[2] == "log"
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return trial.suggest_int(name, low, high, log=log)
        return trial.suggest_float(name, float(low), float(high), log=log)
    raise ParameterError(f"search='bayes': give {name!r} as a list of values or a "
                         f"(low, high) or (low, high, 'log') range, got {space!r}")


def _check_params(params: Any, search: str) -> None:
    if not isinstance(params, dict) or not params:
        raise ParameterError("params must be a non-empty dict: name → values")
    for name, values in params.items():
        if search == "bayes":
            continue
        if isinstance(values, (str, bytes)) or not (hasattr(values, "__iter__")
                                                    or hasattr(values, "rvs")):
            raise ParameterError(f"params[{name!r}] must be a list of values"
                                 + (" or a scipy.stats distribution" if search == "random"
                                    else "") + f", got {values!r}")


def tune(model: Any, params: dict | None, data: Interactions, metric: str = "rmse", *,
         search: str = "grid", n_iter: int = 20, validation: Any = None, cv: Any = None,
         k: int = 10, n_jobs: int = 1, random_state: Any = 0,
         warm_start: bool = True) -> TuneResult:
    """Choose ``params`` of ``model`` on held-out parts of ``data`` (training data only).

    Parameters
    ----------
    model : matfact model
        The other parameters stay as set on it.
    params : dict or None
        Parameter name → list of values (``grid``/``random``), a scipy.stats
        distribution (``random``), or a ``(low, high)`` / ``(low, high, "log")`` range
        (``bayes``, ints give integer ranges). ``None``: :func:`default_space` of the
        model (lists: categorical in ``bayes``).
    data : Interactions
        Training data. Test rows must not be in it: tuning reads nothing else.
    metric : str, default="rmse"
        ``rmse`` / ``mae`` (minimized) or a ranking metric such as ``ndcg@10``,
        ``map``, ``recall@20`` (maximized).
    search : {"grid", "random", "bayes"}, default="grid"
    n_iter : int, default=20
        Trials of random and Bayesian search.
    validation : float, str or (str, float), default=None
        The held-out share (0.1), a split strategy, or both; by default ``random``
        for rating metrics and ``per_user`` for ranking metrics; seed 1.
    cv : int, callable or list, default=None
        Cross-validate each trial on folds of ``data`` instead (as
        :func:`~matfact.cross_validate`'s ``cv``).
    k : int, default=10
        Cut-off of a ranking metric named without ``@k``.
    n_jobs : int, default=1
        Trials in parallel processes (grid and random search); the numba threads of each
        are cut so that jobs × threads ≤ cores.
    random_state : int or None, default=0
        Seed of random and Bayesian search (and of ``cv`` folds when ``cv`` is an int).
    warm_start : bool, default=True
        Bayesian search starts from the model's own values of the tuned parameters
        (when each lies in its space), so the search never reports a best below the
        starting configuration's validation score. Iterative models also stop early on
        the validation part when their ``early_stopping`` is on, and the refit keeps
        that iteration count.

    Returns
    -------
    TuneResult
    """
    if not isinstance(data, Interactions):
        raise DataError(f"data must be a matfact.Interactions, got {type(data).__name__}")
    if search not in ("grid", "random", "bayes"):
        raise ParameterError(f"search must be 'grid', 'random' or 'bayes', got {search!r}")
    if not isinstance(n_iter, int) or isinstance(n_iter, bool) or n_iter < 1:
        raise ParameterError(f"n_iter must be a positive int, got {n_iter!r}")
    metric = _check_metric(metric, data)
    if params is None:
        params = default_space(model)
    _check_params(params, search)
    unknown = sorted(set(params) - set(model.get_params()))
    if unknown:
        raise ParameterError(f"{type(model).__name__} has no parameter(s) {', '.join(unknown)}")
    splits = _validation_splits(validation, cv, data, metric, random_state)
    if search == "bayes":
        rows = _bayes(model, params, splits, metric, k, n_iter, random_state, warm_start)
    else:
        candidates = _grid(params) if search == "grid" else _random(params, n_iter,
                                                                      random_state)
        jobs, threads = jobs_and_threads(model, n_jobs, len(candidates))
        rows = run_parallel(_trial, [(model, p, splits, metric, k, threads)
                                     for p in candidates], jobs, threads)
    values = np.array([row[metric] for row in rows], dtype=np.float64)
    # NaN (e.g. no user to rank) never wins; ties go to the earlier trial.
    order = np.argsort(np.where(np.isnan(values), np.inf, values if _minimize(metric)
                                else -values), kind="stable")
    best = rows[order[0]]
    # From the trial's own dict: a results frame would turn ints into floats.
    best_params = {name: best[name] for name in params}
    results = pd.DataFrame([rows[i] for i in order]).reset_index(drop=True)
    from sklearn.base import clone

    final = clone(model).set_params(**best_params)
    if best.get("best_iter") is not None:
        final.set_params(max_iter=int(best["best_iter"]), early_stopping=False)
    final.fit(data, progress=False)
    return TuneResult(best_params=best_params, best_score=float(best[metric]),
                      best_model=final, results=results, metric=metric)


def _bayes(model: Any, params: dict, splits: list, metric: str, k: int, n_iter: int,
           random_state: Any, warm_start: bool) -> list[dict]:
    try:
        import optuna
    except ImportError:  # pragma: no cover - the dev extra has it
        raise ParameterError("search='bayes' needs Optuna: pip install 'matfact[tune]'") \
            from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict] = []

    def objective(trial: Any) -> float:
        chosen = {name: _suggest(trial, name, space) for name, space in params.items()}
        row = _trial(model, chosen, splits, metric, k, None)
        rows.append(row)
        return row[metric]

    sampler = optuna.samplers.TPESampler(seed=0 if random_state is None else random_state)
    study = optuna.create_study(direction="minimize" if _minimize(metric) else "maximize",
                                sampler=sampler)
    start = _starting_point(model, params) if warm_start else None
    if start is not None:
        study.enqueue_trial(start)
    study.optimize(objective, n_trials=n_iter)
    return rows


def _starting_point(model: Any, params: dict) -> dict | None:
    """The model's own values of the tuned parameters, if every one lies in its space."""
    current = model.get_params()
    start = {}
    for name, space in params.items():
        value = current[name]
        if isinstance(space, list):
            inside = value in space
        else:
            low, high = space[0], space[1]
            inside = isinstance(value, (int, float)) and not isinstance(value, bool) \
                and low <= value <= high
        if not inside:
            return None
        start[name] = value
    return start
