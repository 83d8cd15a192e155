"""Time-ordered replay: how a model does when it is updated as new ratings arrive.

:func:`replay` streams the ratings in time order. The model is first fitted
on the earliest ``start`` fraction of them; then, period after period, it is
scored on the next period's ratings (never seen before: a true forecast) and
updated with them, by one of three strategies, each on its own clone of the
model:

- ``"partial_fit"``: ``model.partial_fit(new period)``;
- ``"refit"``: a full ``fit`` on every rating so far;
- ``"none"``: no update (the initial model ages).

Each (period, strategy) gives the RMSE and NDCG@k on the period's ratings and
the seconds the update took; :class:`ReplayResult` holds them as a table and
plots them.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from matfact.data.interactions import Interactions
from matfact.evaluation.validate import evaluate, evaluate_ranking
from matfact.exceptions import DataError, ParameterError

__all__ = ["replay", "ReplayResult", "STRATEGIES"]

#: The update strategies :func:`replay` compares.
STRATEGIES = ("partial_fit", "refit", "none")

_STRATEGY_SLOTS = {"partial_fit": 0, "refit": 1, "none": 6}  # places in plots.MODEL_COLORS


@dataclass(frozen=True)
class ReplayResult:
    """What :func:`replay` measured.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per (period, strategy), in time order: ``period_start``,
        ``period_end`` (UTC timestamps; the period is ``[start, end)``),
        ``strategy``, ``n_test`` (ratings of the period), ``n_unknown``
        (of them, with a user or item the model had not seen: scored by its
        fallback), ``rmse``, ``ndcg@<k>`` and ``update_seconds`` (the update
        with the period's ratings, after scoring; 0 for ``"none"``).
    initial_seconds : float
        Time of the initial fit.
    n_initial : int
        Ratings in the initial fit.
    """

    frame: pd.DataFrame
    initial_seconds: float
    n_initial: int

    def summary(self) -> pd.DataFrame:
        """Per strategy: mean RMSE and NDCG over periods, total and mean update seconds.

        Returns
        -------
        pandas.DataFrame
            Indexed by strategy; columns ``rmse`` and the NDCG column (means over
            periods), ``rmse_weighted`` (over all test ratings), ``update_seconds``
            (total) and ``periods``.
        """
        frame = self.frame
        ndcg = [c for c in frame.columns if c.startswith("ndcg@")]
        grouped = frame.groupby("strategy", sort=False)
        out = grouped[["rmse", *ndcg]].mean()
        sq = frame["rmse"] ** 2 * frame["n_test"]
        out["rmse_weighted"] = np.sqrt(sq.groupby(frame["strategy"], sort=False).sum()
                                       / grouped["n_test"].sum())
        out["update_seconds"] = grouped["update_seconds"].sum()
        out["periods"] = grouped.size()
        return out

    def plot(self, path: Any, *, title: str | None = None) -> Path:
        """Three panels against time: RMSE, NDCG and update time (log scale) per strategy.

        Parameters
        ----------
        path : str or path-like
            Where to write the figure (PNG unless ``.svg``/``.pdf``), atomically.
        title : str, default=None

        Returns
        -------
        pathlib.Path
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from matfact.plots import DPI, GRID, MODEL_COLORS, save_figure

        frame = self.frame
        ndcg = next(c for c in frame.columns if c.startswith("ndcg@"))
        panels = [("rmse", "RMSE (lower is better)"), (ndcg, f"{ndcg.upper()} (higher is better)"),
                  ("update_seconds", "update time per period (s)")]
        fig = Figure(figsize=(9.0, 7.6), dpi=DPI, layout="constrained", facecolor="white")
        FigureCanvasAgg(fig)
        axes = fig.subplots(3, 1, sharex=True)
        for ax, (column, label) in zip(axes, panels, strict=True):
            for strategy, rows in frame.groupby("strategy", sort=False):
                if column == "update_seconds" and strategy == "none":
                    continue
                ax.plot(rows["period_start"], rows[column], marker="o", markersize=2.5,
                        linewidth=1.1, label=strategy,
                        color=MODEL_COLORS[_STRATEGY_SLOTS[strategy]] if strategy in _STRATEGY_SLOTS
                        else None)
            ax.set_ylabel(label, fontsize=8.5)
            ax.grid(color=GRID, linewidth=0.8)
            ax.set_axisbelow(True)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            if column == "update_seconds":
                ax.set_yscale("log")
        axes[0].legend(frameon=False, fontsize=8, ncols=3)
        axes[-1].set_xlabel("period start")
        if title:
            fig.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold")
        return save_figure(fig, path)


def _check_start(start: Any) -> float:
    if (isinstance(start, (bool, np.bool_)) or not isinstance(start, numbers.Real)
            or not 0.0 < float(start) < 1.0):
        raise ParameterError(f"start must be the fraction of ratings (in time order) of the "
                             f"initial fit, a number in (0, 1); got {start!r}")
    return float(start)


def _check_period(period: Any) -> int:
    """The period length in whole seconds (from "30D", a Timedelta, or a number of days)."""
    try:
        if isinstance(period, numbers.Real) and not isinstance(period, bool):
            delta = pd.Timedelta(days=float(period))
        else:
            delta = pd.Timedelta(period)
    except (ValueError, TypeError):
        raise ParameterError(f"period must be a fixed duration such as '30D', '12h' or a "
                             f"number of days; got {period!r}") from None
    seconds = int(delta.total_seconds())
    if seconds < 1:
        raise ParameterError(f"period must be at least one second; got {period!r}")
    return seconds


def _check_strategies(strategies: Any, model: Any) -> tuple[str, ...]:
    if isinstance(strategies, str):
        strategies = (strategies,)
    strategies = tuple(strategies)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if not strategies or unknown or len(set(strategies)) != len(strategies):
        raise ParameterError(f"strategies must be distinct names from {STRATEGIES}; "
                             f"got {strategies!r}")
    if "partial_fit" in strategies and not callable(getattr(model, "partial_fit", None)):
        raise ParameterError(f"{type(model).__name__} has no partial_fit; pass "
                             f"strategies=('refit', 'none')")
    return strategies


def _fit(model: Any, data: Interactions) -> None:
    model.fit(data, progress=False)


def replay(model: Any, data: Interactions, period: Any = "30D", start: float = 0.5, *,
           strategies: Any = STRATEGIES, k: int = 10) -> ReplayResult:
    """Replay ``data`` in time order, scoring and updating ``model`` period by period.

    The ratings are sorted by timestamp (stable). The first ``start``
    fraction (by count) trains the initial model. The rest is cut into
    consecutive periods of length ``period`` starting at the first remaining
    rating; periods without ratings are skipped. For each period and
    strategy, the current model is scored on the period's ratings (RMSE by
    :func:`~matfact.evaluation.evaluate`; NDCG@k by
    :func:`~matfact.evaluation.evaluate_ranking` over the period's users with
    all their period items relevant) and then updated with them. Users and
    items the model has not seen are scored by its fallback (see
    :meth:`Recommender.predict <matfact.models.base.Recommender.predict>`).

    Parameters
    ----------
    model : matfact model
        An unfitted (or fitted: it is cloned) explicit-rating model; each
        strategy gets its own ``sklearn.base.clone``.
    data : Interactions
        Explicit ratings with timestamps.
    period : str, Timedelta or float, default="30D"
        Period length: a pandas fixed duration (``"30D"``, ``"7D"``, ``"12h"``)
        or a number of days.
    start : float, default=0.5
        Fraction of the ratings, in time order, of the initial fit.
    strategies : sequence of {"partial_fit", "refit", "none"}, default=all three
    k : int, default=10
        Length of the ranked lists for NDCG.

    Returns
    -------
    ReplayResult

    Raises
    ------
    DataError
        If the data has no timestamps or is implicit.
    ParameterError
        For a bad ``period``, ``start`` or ``strategies``, or a model without
        ``partial_fit`` asked to use it.

    Examples
    --------
    >>> import numpy as np, matfact
    >>> from matfact.evaluation import replay
    >>> rng = np.random.default_rng(0)
    >>> n = 3000
    >>> data = matfact.Interactions.from_arrays(
    ...     rng.integers(0, 60, n), rng.integers(0, 40, n), rng.integers(1, 6, n),
    ...     timestamps=np.sort(rng.integers(0, 90 * 86_400, n)), duplicates="last")
    >>> result = replay(matfact.Baseline(), data, "30D", 0.5, strategies=("refit", "none"))
    >>> sorted(result.frame["strategy"].unique())
    ['none', 'refit']
    """
    if not isinstance(data, Interactions):
        raise DataError(f"data must be a matfact.Interactions, got {type(data).__name__}")
    if data.is_implicit:
        raise DataError("replay scores ratings (RMSE): it needs explicit ratings")
    if data.timestamps is None:
        raise DataError("replay streams the data in time order, but it has no timestamps; "
                        "build it with timestamps (e.g. from_csv(..., timestamp=...))")
    start = _check_start(start)
    seconds = _check_period(period)
    strategies = _check_strategies(strategies, model)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
        raise ParameterError(f"k must be an integer ≥ 1; got {k!r}")

    times = data.timestamps
    order = np.argsort(times, kind="stable")
    n_initial = int(round(start * data.nnz))
    if n_initial < 1 or n_initial >= data.nnz:
        raise DataError(f"start={start} leaves no ratings for the initial fit or none to "
                        f"replay ({data.nnz} ratings)")
    first = int(times[order[n_initial]])
    # Period of every later rating: floor((t - first) / period).
    later = order[n_initial:]
    period_of = (times[later] - first) // seconds
    bounds = np.flatnonzero(np.r_[True, np.diff(period_of) != 0, True])

    models = {}
    initial_seconds = 0.0
    initial = data.take(np.sort(order[:n_initial]), compact=True)
    for strategy in strategies:
        models[strategy] = clone(model)
        tic = time.perf_counter()
        _fit(models[strategy], initial)
        initial_seconds = time.perf_counter() - tic

    rows = []
    ndcg_key = f"ndcg@{k}"
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        positions = later[lo:hi]
        index = int(period_of[lo])
        test = data.take(np.sort(positions), compact=True)
        for strategy in strategies:
            current = models[strategy]
            scores = evaluate(current, test, ["rmse"])
            ranking = evaluate_ranking(current, test, k=k, metrics=["ndcg"])
            tic = time.perf_counter()
            if strategy == "partial_fit":
                current.partial_fit(test)
            elif strategy == "refit":
                _fit(current, data.take(np.sort(order[:n_initial + hi]), compact=True))
            update = time.perf_counter() - tic if strategy != "none" else 0.0
            rows.append({
                "period_start": pd.Timestamp(first + index * seconds, unit="s"),
                "period_end": pd.Timestamp(first + (index + 1) * seconds, unit="s"),
                "strategy": strategy,
                "n_test": test.nnz,
                "n_unknown": scores["n_unknown"],
                "rmse": scores["rmse"],
                ndcg_key: ranking[ndcg_key],
                "update_seconds": update,
            })
    if not rows:
        raise DataError("no ratings to replay after the initial fit")
    frame = pd.DataFrame(rows)
    return ReplayResult(frame=frame, initial_seconds=initial_seconds, n_initial=n_initial)
