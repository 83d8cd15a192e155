r"""The onboarding simulation: how much a newcomer's answers help, replayed on held-out users.

:mod:`matfact.onboarding` chooses which items to ask a newcomer to rate;
:func:`simulate_onboarding` replays that interview on users the model was not
fitted on. Each test user answers, from their own ratings, the items a strategy
shows them; the answers are folded into the model (it is not changed) and the
folded-in user is scored on ratings held out from the interview. The table
reports RMSE and NDCG@k against the number of answers, between two reference
rows: the model's fallback for an unknown user (0 answers) and the model
retrained with every answer.

The simulation talks to the model only through its public interface: scores
of pairs, users and folded-in vectors (``score_pairs``, ``score_users``,
``score_vector``), ``fold_in_codes``, and the one top-n of
:func:`matfact.models.ranking.top_n_rows`.

Folding in the answers
----------------------
Answers are folded in with the model's own ``fold_in`` (default) or, with
``fold_in="posterior"``, with the posterior mean of the newcomer's
:math:`z = (p_u, b_u)` under the Gaussian model of
:func:`matfact.onboarding.user_prior` (prior mean: the training users' mean
:math:`\bar z`), which shrinks a short history toward a typical user. On
ML-100K with ``BiasedMF`` the posterior fold-in closes more of the RMSE gap to a
fully retrained model at 5-10 answers, and ranks less well; see
``docs/onboarding.md``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from matfact._params import check_fraction, check_item_count, check_n, check_seed
from matfact._threads import blas_single_thread
from matfact.data.interactions import Interactions
from matfact.evaluation.metrics import ndcg_at_k
from matfact.evaluation.split import Split, train_test_split
from matfact.evaluation.validate import predicts_ratings
from matfact.exceptions import DataError, ParameterError
from matfact.models.base import UserVector
from matfact.models.ranking import top_n_rows
from matfact.onboarding import UserPrior, item_order, user_prior

__all__ = ["OnboardingResult", "simulate_onboarding"]

_FALLBACK = "fallback"
_FULL = "trained fully"
_FIRST_LENGTH = 256  # first list length tried; grows ×4 until every user's answers are in it


# ------------------------------------------------------------------------------ validation
# ------------------------------------------------------------------------------ result
@dataclass(frozen=True)
class OnboardingResult:
    """What :func:`simulate_onboarding` measured.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (strategy, number of answers), after a ``"fallback"`` row
        (0 answers: the model's ranking for an unknown user) and before a
        ``"trained fully"`` row (the model refitted with every test user's whole
        pool). Columns: ``strategy``, ``n_answers`` (nullable int; missing for
        the trained-fully row), ``rmse`` (over every evaluation rating; NaN
        for a model that does not predict ratings), ``ndcg@k`` (mean over
        users), ``rmse_gap_closed`` (the fraction of the RMSE gap between the
        fallback and the trained-fully model that the answers close), and
        ``mean_asked`` / ``mean_answered`` (items shown / items rated per user;
        for the trained-fully row ``mean_answered`` is the mean pool size).
    k : int
        The cut-off of NDCG.
    n_users : int
        Users evaluated.
    n_eval_ratings : int
        Evaluation ratings (on items the model knows).
    n_dropped_ratings : int
        Pool and evaluation ratings of items the model never saw: they can be
        neither asked nor scored, so they are left out.
    """

    table: Any
    k: int
    n_users: int
    n_eval_ratings: int
    n_dropped_ratings: int

    @property
    def strategies(self) -> list[str]:
        """The strategies simulated, in table order."""
        names = self.table["strategy"].tolist()
        return [s for s in dict.fromkeys(names) if s not in (_FALLBACK, _FULL)]

    def curve(self, strategy: str) -> Any:
        """The rows of one strategy, with the fallback row (0 answers) first."""
        table = self.table
        if strategy not in self.strategies:
            raise ParameterError(f"strategy must be one of {self.strategies}; got {strategy!r}")
        rows = table[(table["strategy"] == strategy) | (table["strategy"] == _FALLBACK)]
        return rows.reset_index(drop=True)

    def gap_closed(self, strategy: str, n_answers: int) -> float:
        """``rmse_gap_closed`` of one strategy at ``n_answers`` answers."""
        curve = self.curve(strategy)
        row = curve[curve["n_answers"] == n_answers]
        if row.empty:
            raise ParameterError(f"n_answers={n_answers!r} was not simulated; the table has "
                                 f"{curve['n_answers'].tolist()[1:]}")
        return float(row["rmse_gap_closed"].iloc[0])

    def plot(self, path: str | os.PathLike, *, title: str | None = None) -> Path:
        """Draw each strategy's curve: RMSE, NDCG@k and items asked against answers.

        Every curve starts at the fallback (0 answers); the trained-fully model
        is a dashed line; the random baseline is drawn dashed in grey.

        Parameters
        ----------
        path : str or os.PathLike
            PNG unless the suffix is ``.svg``/``.pdf``; written atomically.
        title : str, default=None

        Returns
        -------
        pathlib.Path
        """
        return _plot(self, path, title)


# ------------------------------------------------------------------------------ simulation
def _split(test_users: Any, eval_size: Any, seed: int | None) -> tuple[Interactions, Interactions]:
    if isinstance(test_users, tuple) and len(test_users) == 2:
        pool, held = test_users
        for name, value in (("pool", pool), ("eval", held)):
            if not isinstance(value, Interactions):
                raise DataError(f"test_users as a (pool, eval) pair needs two Interactions; "
                                f"{name} is a {type(value).__name__}")
        # An answer that is also an evaluation rating would leak the answer into the score.
        Split(pool, held).check_overlap()
        return pool, held
    if not isinstance(test_users, Interactions):
        raise DataError(
            f"test_users must be a matfact.Interactions of the held-out users' ratings (or a "
            f"(pool, eval) pair of them), got {type(test_users).__name__}"
        )
    return train_test_split(test_users, eval_size, "per_user", random_state=seed)


def _user_matrix(data: Interactions, users: np.ndarray, item_index: Any) -> tuple[Any, int]:
    """CSR (len(users), n_items) of ``data``'s values in the model's items; ratings dropped."""
    import scipy.sparse as sp

    rows = np.full(data.n_users, -1, dtype=np.int64)
    found = data.user_index.get_indexer(users)
    rows[found[found >= 0]] = np.flatnonzero(found >= 0)
    r = rows[data.user_codes]
    c = item_index.get_indexer(data.item_ids)[data.item_codes]
    keep = (r >= 0) & (c >= 0)
    matrix = sp.csr_matrix((data.values[keep].astype(np.float64), (r[keep], c[keep])),
                           shape=(len(users), len(item_index)))
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix, int(((r >= 0) & (c < 0)).sum())


def _list_rank(order: Iterator[int], n_items: int, cap: int, pool_items: np.ndarray,
               pool_rows: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Each item's position in a strategy's list ``order`` (``cap`` if beyond what is built).

    Only as much of the list is built as the interview can reach: every user's
    ``needed`` answerable items must sit in it (the greedy factor_coverage list
    costs O(n_items·k) per item, so it grows ×4 from a short prefix). An item
    left out sits after every item a user answers, so it changes no answer.
    """
    ranked = np.zeros(0, dtype=np.int64)
    length = min(cap, _FIRST_LENGTH)
    while True:
        ranked = np.concatenate([ranked, np.fromiter(islice(order, length - len(ranked)),
                                                     dtype=np.int64)])
        listed = np.zeros(n_items, dtype=bool)
        listed[ranked] = True
        reached = np.bincount(pool_rows, weights=listed[pool_items], minlength=len(needed))
        if length >= cap or (reached >= needed).all():
            break
        length = min(cap, 4 * length)
    rank = np.full(n_items, cap, dtype=np.int64)
    rank[ranked] = np.arange(len(ranked))
    return rank


def _answers(positions: np.ndarray, n: int, length: int) -> tuple[int, int]:
    """(answers, items asked) for a user whose answerable items sit at sorted ``positions``.

    The user is shown the list in order and answers the items at ``positions``
    (all < ``length``, the list length); asking stops at the ``n``-th answer, or
    when the list runs out.
    """
    if len(positions) >= n:
        return n, int(positions[n - 1]) + 1
    return len(positions), length


def _posterior_fold_in(model: Any, prior: UserPrior, items: np.ndarray,
                       ratings: np.ndarray) -> UserVector:
    r"""The posterior mean of :math:`z = (p, b)` given the answers (Bayesian linear regression).

    .. math:: \hat z = (\Sigma^{-1} + \sigma^{-2}X^\top X)^{-1}
              (\Sigma^{-1}\bar z + \sigma^{-2}X^\top t),

    with :math:`X` the answered items' rows of ``design`` and :math:`t` the ratings
    minus :math:`\mu + b_i`. No answers give the prior mean :math:`\bar z`.
    """
    target = np.asarray(ratings, dtype=np.float64) - model.global_mean_
    if getattr(model, "item_bias_", None) is not None:
        target = target - model.item_bias_[items]
    x = prior.design[items]
    inv_cov = prior.precision
    precision = inv_cov + x.T @ x / prior.noise
    z = np.linalg.solve(precision, inv_cov @ prior.mean + x.T @ target / prior.noise)
    k = model.item_factors_.shape[1]
    return UserVector(z[:k].astype(np.float32), float(z[k]) if len(z) > k else 0.0)


def simulate_onboarding(model: Any, test_users: Any, n_answers: Any = (5, 10, 20),
                        strategy: Any = "popularity", *, eval_size: float = 0.2,
                        max_asked: int | None = None, k: int = 10, fold_in: str = "model",
                        fully_trained: bool = True,
                        random_state: int | None = 0) -> OnboardingResult:
    r"""Replay the newcomer interview on held-out users and score the folded-in answers.

    Each test user's ratings are split (``train_test_split(test_users,
    eval_size, "per_user", random_state)``) into a **pool** they can answer
    from and an **evaluation set**. For every strategy and ``n`` in
    ``n_answers`` the user is shown the strategy's list in order and answers
    exactly the shown items that are in their pool, with their real rating;
    asking stops at the ``n``-th answer, at ``max_asked`` items, or when the
    list runs out (a user with fewer than ``n`` answerable items gives them
    all). The answers are folded in (the model is not changed) and the
    folded-in user scores every item.

    - **RMSE** over all evaluation ratings, predictions clipped to the
      training rating scale as :meth:`predict` does.
    - **NDCG@k**: the top ``k`` over the items outside the user's pool (the
      pool is withheld, neither relevant nor a miss), every evaluation item
      relevant (as :func:`matfact.evaluate_ranking`); mean over users.

    The reference rows use the same users, items and metrics: ``"fallback"``
    (0 answers) ranks by the model's fallback for an unknown user (``μ + b_i``
    for a model with item biases), and ``"trained fully"`` refits a clone of
    the model on its training ratings (``model.seen_``) plus every user's
    whole pool.

    Parameters
    ----------
    model : fitted matfact model
        Fitted on users disjoint from ``test_users`` (e.g. the train part of
        ``train_test_split(data, 0.2, "cold_users")``).
    test_users : Interactions or (Interactions, Interactions)
        The held-out users' ratings, split here; or an explicit ``(pool,
        eval)`` pair.
    n_answers : int or sequence of int, default=(5, 10, 20)
        Answers to collect, each in [1, ``model.n_items_``].
    strategy : str or sequence of str, default="popularity"
        One or several of :data:`STRATEGIES`. ``"random"`` shows each user
        their own uniformly random order (from ``random_state``).
    eval_size : float, default=0.2
        Fraction of each user's ratings held out for evaluation.
    max_asked : int, default=None
        Show at most this many items per user (``None``: the whole catalogue).
    k : int, default=10
        NDCG cut-off.
    fold_in : {"model", "posterior"}, default="model"
        How the answers become a user vector. ``"model"``: the model's own
        :meth:`~matfact.models.base.Recommender.fold_in`. ``"posterior"``: the
        posterior mean of the user's factors and bias under the Gaussian model
        of ``"factor_coverage"`` (prior: the mean and covariance of the training
        users' ``(p_u, b_u)``; noise: the mean squared training residual),

        .. math:: \hat z = (\Sigma^{-1} + \sigma^{-2}X^\top X)^{-1}
                  (\Sigma^{-1}\bar z + \sigma^{-2}X^\top t),

        with :math:`X` the answered items' :math:`(q_j, 1)` and :math:`t` their
        ratings minus :math:`\mu + b_i`. It shrinks a short history toward a
        typical user instead of fitting it; needs a model with factors.
    fully_trained : bool, default=True
        Compute the ``"trained fully"`` row (one refit; side features are
        not carried over). ``False`` leaves it NaN.
    random_state : int or None, default=0
        Seed of the evaluation split and of the ``"random"`` orders.

    Returns
    -------
    OnboardingResult
        ``.table`` (a DataFrame) and ``.plot(path)``.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    ParameterError
        For an unknown strategy, an ``n_answers``, ``max_asked`` or ``k`` out of
        range, or a strategy the model cannot support (see :func:`select_items`).
    DataError
        If ``test_users`` is not Interactions, holds users the model was
        fitted on, or leaves no user with an evaluation rating on a known item.

    Examples
    --------
    >>> import matfact
    >>> from matfact.evaluation.onboarding import simulate_onboarding
    >>> data = matfact.load_dataset("ml-100k")  # doctest: +SKIP
    >>> warm, cold = matfact.train_test_split(data, 0.2, "cold_users",
    ...                                       random_state=0)  # doctest: +SKIP
    >>> model = matfact.BiasedMF(random_state=0).fit(warm)  # doctest: +SKIP
    >>> result = simulate_onboarding(model, cold, [5, 10, 20],
    ...                              strategy=["popularity", "random"])  # doctest: +SKIP
    >>> result.table  # doctest: +SKIP
    >>> result.plot("onboarding.png")  # doctest: +SKIP
    """
    import pandas as pd

    strategies = list(strategy) if isinstance(strategy, (list, tuple)) else [strategy]
    if not strategies:
        raise ParameterError("strategy must name at least one strategy")
    # item_order checks the model, each name, and that the model supports the strategy
    # (fails before any work); the lists themselves are built later, as far as needed.
    orders: dict[str, Iterator[int]] = {}
    for name in strategies:
        orders.setdefault(name, item_order(model, name))
    strategies = list(orders)
    n_items = model.n_items_
    counts = [n_answers] if isinstance(n_answers, (numbers.Integral, np.integer)) else n_answers
    counts = list(counts) if isinstance(counts, (list, tuple, np.ndarray, range)) else []
    if not counts:
        raise ParameterError(f"n_answers must be an int or a non-empty list of ints; "
                             f"got {n_answers!r}")
    counts = sorted({check_item_count(n, "each n_answers", n_items) for n in counts})
    cap = n_items if max_asked is None else check_item_count(max_asked, "max_asked", n_items)
    k = check_n(k, "k")
    seed = check_seed(random_state)
    eval_size = check_fraction(eval_size, "eval_size")
    if fold_in not in ("model", "posterior"):
        raise ParameterError(f"fold_in must be 'model' or 'posterior'; got {fold_in!r}")
    prior = None
    if fold_in == "posterior":
        try:
            prior = user_prior(model)
        except ParameterError:
            raise ParameterError(f"fold_in='posterior' needs a model with item factors, and "
                                 f"{type(model).__name__} has none; use fold_in='model'") from None

    pool, held = _split(test_users, eval_size, seed)
    known = model.user_index_.get_indexer(np.concatenate([pool.user_ids, held.user_ids]))
    if (known >= 0).any():
        raise DataError(
            f"{int((known >= 0).sum())} test user(s) were in the model's training data, so they "
            f"are not newcomers; fit the model on the other users, e.g. "
            f"train_test_split(data, 0.2, 'cold_users')"
        )
    users = np.unique(held.user_ids)
    eval_matrix, dropped_eval = _user_matrix(held, users, model.item_index_)
    users = users[np.diff(eval_matrix.indptr) > 0]
    if len(users) == 0:
        raise DataError("no test user has an evaluation rating on an item the model knows")
    eval_matrix, dropped_eval = _user_matrix(held, users, model.item_index_)
    pool_matrix, dropped_pool = _user_matrix(pool, users, model.item_index_)
    eval_coo = eval_matrix.tocoo()
    predicts = not model.is_implicit_ and predicts_ratings(model, held)
    exclude_indptr = pool_matrix.indptr.astype(np.int64)
    exclude_indices = pool_matrix.indices.astype(np.int32)

    def measure(scores: np.ndarray) -> tuple[float, float]:
        rmse = np.nan
        if predicts:
            predicted = scores[eval_coo.row, eval_coo.col].astype(np.float64)
            predicted = np.clip(predicted, *model.rating_scale_)
            rmse = float(np.sqrt(np.mean((predicted - eval_coo.data) ** 2)))
        top, _ = top_n_rows(scores, k, exclude_indptr, exclude_indices)
        return rmse, float(np.nanmean(ndcg_at_k(top, eval_matrix, k)))

    rows = []
    unknown = np.full(len(users), -1, dtype=np.int64)
    fallback = model.score_users(unknown)
    rows.append((_FALLBACK, 0, *measure(fallback), 0.0, 0.0, 0.0))

    n_max = counts[-1]
    pool_sizes = np.diff(pool_matrix.indptr)
    pool_rows = np.repeat(np.arange(len(users)), pool_sizes)
    rng = np.random.default_rng(seed)
    # Hundreds of tiny solves and products: BLAS threads waking for each cost far more
    # than the work (measured on 2 busy cores: 26 s against 1.4 s on one thread).
    with blas_single_thread():
        for name in strategies:
            rank = None
            if name != "random":
                rank = _list_rank(orders[name], n_items, cap, pool_matrix.indices, pool_rows,
                                  np.minimum(pool_sizes, n_max))
            scores = {n: np.empty((len(users), n_items), dtype=np.float32) for n in counts}
            asked = {n: np.zeros(len(users)) for n in counts}
            answered = {n: np.zeros(len(users)) for n in counts}
            for row in range(len(users)):
                start, end = pool_matrix.indptr[row], pool_matrix.indptr[row + 1]
                items, ratings = pool_matrix.indices[start:end], pool_matrix.data[start:end]
                if name == "random":  # each user gets their own order
                    user_rank = np.empty(n_items, dtype=np.int64)
                    user_rank[rng.permutation(n_items)] = np.arange(n_items)
                else:
                    user_rank = rank
                # The user's answerable items in the order they are shown (within the first cap).
                position = user_rank[items]
                inside = np.flatnonzero(position < cap)
                inside = inside[np.argsort(position[inside], kind="stable")]
                for n in counts:
                    got, shown = _answers(position[inside], n, cap)
                    pick = inside[:got]
                    if prior is None:
                        vector = model.fold_in_codes(items[pick], ratings[pick])
                    else:
                        vector = _posterior_fold_in(model, prior, items[pick], ratings[pick])
                    scores[n][row] = model.score_vector(vector)
                    asked[n][row], answered[n][row] = shown, got
            for n in counts:
                rows.append((name, n, *measure(scores[n]), float(asked[n].mean()),
                             float(np.median(asked[n])), float(answered[n].mean())))

    full = (np.nan, np.nan)
    if fully_trained:
        refit = _refit(model, pool)
        codes = refit.user_index_.get_indexer(users)
        # The refit also knows items only the pools hold: score the original catalogue only,
        # in the original model's item order.
        columns = refit.item_index_.get_indexer(model.item_index_.ids)
        scores = refit.score_users(codes)[:, columns]
        full = measure(np.ascontiguousarray(scores))
    rows.append((_FULL, None, *full, np.nan, np.nan, float(pool_sizes.mean())))

    table = pd.DataFrame(rows, columns=["strategy", "n_answers", "rmse", f"ndcg@{k}",
                                        "mean_asked", "median_asked", "mean_answered"])
    table["n_answers"] = table["n_answers"].astype("Int64")
    gap = rows[0][2] - full[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        closed = (rows[0][2] - table["rmse"].to_numpy()) / gap
    table.insert(4, "rmse_gap_closed", closed if np.isfinite(gap) and gap != 0 else np.nan)
    return OnboardingResult(table=table, k=k, n_users=len(users),
                            n_eval_ratings=int(eval_matrix.nnz),
                            n_dropped_ratings=dropped_eval + dropped_pool)


def _refit(model: Any, pool: Interactions) -> Any:
    """A clone of ``model`` fitted on its training data plus every test user's pool."""
    from sklearn.base import clone

    seen = model.seen_.tocoo()
    users = np.concatenate([model.user_index_.ids[seen.row], pool.user_ids[pool.user_codes]])
    items = np.concatenate([model.item_index_.ids[seen.col], pool.item_ids[pool.item_codes]])
    values = np.concatenate([seen.data, pool.values]).astype(np.float64)
    if model.is_implicit_:
        data = Interactions.from_arrays(users, items, weights=values)
    else:
        scale = model.rating_scale_
        scale = (min(scale[0], float(values.min())), max(scale[1], float(values.max())))
        data = Interactions.from_arrays(users, items, values, rating_scale=scale)
    return clone(model).fit(data, progress=False)


# ------------------------------------------------------------------------------ plot
def _plot(result: OnboardingResult, path: str | os.PathLike, title: str | None) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from matfact.plots import DPI, GRID, INK, MODEL_COLORS, MUTED, save_figure

    table = result.table
    ndcg = f"ndcg@{result.k}"
    full = table[table["strategy"] == _FULL].iloc[0]
    panels = [("rmse", "RMSE", "lower is better"), (ndcg, f"NDCG@{result.k}", "higher is better"),
              ("mean_asked", "Items asked per user (mean)", "log scale")]
    if not np.isfinite(table["rmse"].to_numpy(dtype=float)).any():
        panels = panels[1:]
    fig = Figure(figsize=(3.9 * len(panels), 3.6 + (0.35 if title else 0.0)), dpi=DPI,
                 layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = iter(MODEL_COLORS)
    ticks = [0, *sorted({int(n) for n in table["n_answers"].dropna() if n > 0})]
    styles = {s: ({"color": "#7F7F7F", "linestyle": "--"} if s == "random"
                  else {"color": next(colors), "linestyle": "-"}) for s in result.strategies}
    for ax, (column, label, hint) in zip(axes, panels, strict=True):
        for name in result.strategies:
            curve = result.curve(name)
            if column == "mean_asked":
                curve = curve.iloc[1:]
            ax.plot(curve["n_answers"].to_numpy(dtype=float), curve[column].to_numpy(dtype=float),
                    marker="o", markersize=4, linewidth=1.8, label=name, **styles[name])
        if column != "mean_asked" and np.isfinite(full[column]):
            ax.axhline(float(full[column]), color=INK, linestyle=":", linewidth=1.2,
                       label="trained fully")
        if column == "mean_asked":
            ax.set_yscale("log")
            # 1-2-5 ticks written as plain counts read better than powers of ten.
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ticks)
        ax.set_xlabel("answers", color=INK)
        ax.set_title(label, loc="left", fontsize=11, fontweight="bold", color=INK, pad=16)
        ax.annotate(hint, xy=(0.0, 1.0), xycoords="axes fraction", xytext=(0, 3),
                    textcoords="offset points", fontsize=8.5, color=MUTED, va="bottom")
        ax.grid(color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=8, colors=MUTED)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6),
               frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold", color=INK)
    return save_figure(fig, path)
