r"""Which items to ask a newcomer to rate, and how much their answers help.

A new user arrives with no history. Before recommending, the system may show a
few items and ask for ratings; the answers are folded into the model
(:meth:`~matfact.models.base.Recommender.fold_in`) without retraining it.
:func:`select_items` proposes the list to show; :func:`simulate_onboarding`
replays the interview on held-out users and measures how RMSE and NDCG improve
with the number of answers.

Strategies
----------
Every statistic comes from the model's own training data: ``model.seen_`` (the
users × items matrix of training ratings) and the fitted factors. With
:math:`n_j` the number of training users who rated item :math:`j` and
:math:`p_{jr}` the fraction of those ratings equal to value :math:`r`:

``"popularity"``
    Most rated first: :math:`n_j` (Rashid et al. 2002).
``"entropy"``
    Most disputed first: the Shannon entropy, in bits, of the item's rating
    distribution over the distinct rating values of the training data,
    :math:`H_j = -\sum_r p_{jr}\log_2 p_{jr}` (0 for an unrated item).
``"log_pop_entropy"``
    :math:`\ln(n_j)\,H_j` (Rashid et al. 2002's "log popularity * entropy"):
    disputed items many users can answer.
``"factor_coverage"``
    A greedy Bayesian D-optimal design of the items' factor vectors, weighted
    by the chance that the user can rate the item (in the spirit of Golbandi
    et al. 2011). The unknowns are the newcomer's factors (and bias, for a
    model with user biases) :math:`z = (p_u, b_u)`, with the prior covariance
    :math:`\Sigma` of the training users' ``(p_u, b_u)``; rating item :math:`j`
    observes :math:`x_j\cdot z` plus noise of variance :math:`\sigma^2` (the
    model's mean squared training residual; 1 for implicit feedback), with
    :math:`x_j = (q_j, 1)`. The user knows item :math:`j` with probability
    :math:`\pi_j = n_j / n_\text{users}`. The list :math:`S` is grown one item
    at a time to maximize

    .. math:: f(S) = \log\det\Big(\Sigma^{-1} + \sigma^{-2}\sum_{j\in S}\pi_j
              x_j x_j^\top\Big),

    the posterior precision of :math:`z` were each item answered with weight
    :math:`\pi_j` (the expected answers put inside the log-det). By the matrix
    determinant lemma the gain of adding :math:`j` is
    :math:`\log(1 + \sigma^{-2}\pi_j\,x_j^\top M x_j)` with :math:`M` the
    current posterior covariance, and after choosing :math:`j` (with
    :math:`u = Mx_j`, :math:`w = \sigma^{-2}\pi_j`) the Sherman–Morrison update
    :math:`M \leftarrow M - w\,uu^\top/(1 + w\,x_j^\top u)` keeps every item's
    :math:`x_i^\top M x_i` current in :math:`O(n_\text{items}k)` per step. An
    item pointing where the list is already informative gains little, so the
    list spreads over the factor space while preferring items users know.
    :math:`f` is monotone submodular, so the greedy list is within
    :math:`1 - 1/e` of the best list of its length. Needs item factors.
``"random"``
    A uniform random order (the baseline), from ``random_state``.

Ties go to the more popular item, then to the lower item index (smaller raw id).

Folding in the answers
----------------------
:func:`simulate_onboarding` folds answers in with the model's own ``fold_in``
(default) or, with ``fold_in="posterior"``, with the posterior mean of
:math:`z` under the Gaussian model above (prior mean: the training users'
mean :math:`\bar z`), which shrinks a short history toward a typical user. On
ML-100K with ``BiasedMF`` the posterior fold-in closes more of the RMSE gap
to a fully retrained model at 5-10 answers, and ranks less well; see
``docs/onboarding.md``.

References
----------
Rashid, A. M., Albert, I., Cosley, D., Lam, S. K., McNee, S. M., Konstan, J. A.
& Riedl, J. (2002). Getting to know you: learning new user preferences in
recommender systems. *IUI '02*, 127–134.

Golbandi, N., Koren, Y. & Lempel, R. (2011). Adaptive bootstrapping of
recommender systems using decision trees. *WSDM '11*, 595–604.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, NotFittedError, ParameterError
from matfact.models.base import UserVector

__all__ = ["STRATEGIES", "OnboardingResult", "select_items", "simulate_onboarding"]

#: Names accepted by ``strategy``.
STRATEGIES = ("popularity", "entropy", "log_pop_entropy", "factor_coverage", "random")

_FALLBACK = "fallback"
_FULL = "trained fully"
_FIRST_LENGTH = 256  # first list length tried for factor_coverage; grows ×4 until enough


# ------------------------------------------------------------------------------ validation
def _check_model(model: Any) -> None:
    from matfact.models.base import Recommender

    if not isinstance(model, Recommender):
        raise ParameterError(f"model must be a fitted matfact model, got {type(model).__name__}")
    if not model.is_fitted:
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call fit() on the "
                             f"training users first")


def _check_strategy(strategy: Any) -> str:
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ParameterError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; "
                             f"got {strategy!r}")
    return strategy


def _check_count(value: Any, name: str, high: int) -> int:
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer))
            or not 1 <= value <= high):
        raise ParameterError(f"{name} must be an integer in [1, {high}] (the model knows {high} "
                             f"items); got {value!r}")
    return int(value)


def _check_seed(random_state: Any) -> int | None:
    if random_state is None:
        return None
    if (isinstance(random_state, (bool, np.bool_))
            or not isinstance(random_state, (numbers.Integral, np.integer)) or random_state < 0):
        raise ParameterError(f"random_state must be an int ≥ 0 or None; got {random_state!r}")
    return int(random_state)


def _blas_single_thread() -> Any:
    """BLAS held to one thread for the duration (restored afterwards), as numba kernels do."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


# ------------------------------------------------------------------------------ statistics
def _popularity(model: Any) -> np.ndarray:
    """n_j: the number of training users who rated each item."""
    return np.bincount(model.seen_.indices, minlength=model.n_items_).astype(np.float64)


def _entropy(model: Any) -> np.ndarray:
    """H_j in bits, of each item's distribution over the distinct training rating values."""
    if model.is_implicit_:
        raise ParameterError(
            f"the entropy strategies need a model fitted on ratings, but this "
            f"{type(model).__name__} was fitted on implicit feedback; use 'popularity' or "
            f"'factor_coverage'"
        )
    seen = model.seen_
    levels, level = np.unique(seen.data, return_inverse=True)
    # One count per (item, rating value) pair present, without a loop over ratings.
    keys = seen.indices.astype(np.int64) * len(levels) + level.reshape(-1)
    pairs, counts = np.unique(keys, return_counts=True)
    items = pairs // len(levels)
    p = counts / np.bincount(seen.indices, minlength=model.n_items_)[items]
    return np.bincount(items, weights=-p * np.log2(p), minlength=model.n_items_)


def _order_by(score: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Item indices by score (desc), ties by popularity (desc), then by index (asc)."""
    return np.lexsort((np.arange(len(score)), -popularity, -score))


def _check_factors(model: Any, what: str = "strategy='factor_coverage'",
                   instead: str = "'popularity', 'entropy' or 'log_pop_entropy'") -> np.ndarray:
    factors = getattr(model, "item_factors_", None)
    if factors is None or factors.ndim != 2 or factors.shape[1] == 0:
        raise ParameterError(f"{what} needs a model with item factors, and "
                             f"{type(model).__name__} has none; use {instead}")
    return factors


class _UserPrior(NamedTuple):
    """The Gaussian model of a newcomer shared by factor_coverage and the posterior fold-in.

    ``design`` holds each item's :math:`x_j = (q_j, 1)` (the 1 only for a model with
    user biases), ``mean`` and ``cov`` the mean and covariance of the training users'
    :math:`z_u = (p_u, b_u)` (``precision`` its inverse), ``noise`` the rating noise
    variance :math:`\\sigma^2`.
    """

    design: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    noise: float
    precision: np.ndarray


def _user_prior(model: Any) -> _UserPrior:
    x = _check_factors(model).astype(np.float64)
    users = getattr(model, "user_factors_", None)
    user_bias = getattr(model, "user_bias_", None)
    if user_bias is not None:
        # The fold-in also learns the user's bias: each answer informs it through x_j's 1.
        x = np.hstack([x, np.ones((len(x), 1))])
    dim = x.shape[1]
    if users is not None and len(users) > 1:
        z = users.astype(np.float64)
        if user_bias is not None:
            z = np.hstack([z, user_bias.astype(np.float64)[:, None]])
        mean, cov = z.mean(axis=0), np.cov(z, rowvar=False).reshape(dim, dim)
    else:
        mean, cov = np.zeros(dim), np.eye(dim)
    # A small ridge keeps the prior positive definite when some direction never varies.
    cov += np.eye(dim) * (1e-6 * max(np.trace(cov) / dim, 1e-12))
    return _UserPrior(x, mean, cov, _noise_variance(model), np.linalg.inv(cov))


def _posterior_fold_in(model: Any, prior: _UserPrior, items: np.ndarray,
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


def _coverage_order(model: Any, popularity: np.ndarray) -> Iterator[int]:
    """The greedy weighted D-optimal list (see module doc), one item index at a time."""
    x, _, prior, noise, _ = _user_prior(model)
    weight = popularity / max(model.n_users_, 1) / noise
    cov = prior
    # quad_i = x_iᵀ M x_i for every item, kept current after each choice.
    quad = np.sum((x @ cov) * x, axis=1)
    available = np.ones(len(x), dtype=bool)
    # Equal gains (e.g. unrated items, weight 0) go to the more popular item, then the lower index.
    tiebreak = np.empty(len(x), dtype=np.int64)
    tiebreak[_order_by(np.zeros(len(x)), popularity)] = np.arange(len(x))
    for _ in range(len(x)):
        gain = np.where(available, np.log1p(weight * np.maximum(quad, 0.0)), -np.inf)
        best = np.flatnonzero(gain == gain.max())
        j = int(best[np.argmin(tiebreak[best])])
        available[j] = False
        yield j
        # Sherman–Morrison: M ← M − w uuᵀ / (1 + w x_jᵀu), u = M x_j.
        u = cov @ x[j]
        shrink = weight[j] / (1.0 + weight[j] * (x[j] @ u))
        cov = cov - shrink * np.outer(u, u)
        quad -= shrink * (x @ u) ** 2


def _factor_coverage(model: Any, length: int, popularity: np.ndarray) -> np.ndarray:
    """The first ``length`` items of the greedy weighted D-optimal list."""
    return np.fromiter(islice(_coverage_order(model, popularity), length), dtype=np.int64,
                       count=length)


def _noise_variance(model: Any) -> float:
    """σ²: the mean squared training residual of a rating model (1 for implicit feedback)."""
    if model.is_implicit_:
        return 1.0
    seen = model.seen_.tocoo()
    residual = seen.data - model._score_pairs(seen.row.astype(np.int64),
                                              seen.col.astype(np.int64))
    variance = float(np.mean(residual**2)) if len(residual) else 1.0
    return variance if np.isfinite(variance) and variance > 0 else 1.0


def _ranking(model: Any, strategy: str, length: int) -> np.ndarray:
    """The first ``length`` item indices of a deterministic strategy's list."""
    popularity = _popularity(model)
    if strategy == "popularity":
        order = _order_by(popularity, np.zeros_like(popularity))
    elif strategy == "entropy":
        order = _order_by(_entropy(model), popularity)
    elif strategy == "log_pop_entropy":
        log_pop = np.log(np.maximum(popularity, 1.0))  # an unrated item scores 0
        order = _order_by(log_pop * _entropy(model), popularity)
    else:
        return _factor_coverage(model, length, popularity)
    return order[:length]


# ------------------------------------------------------------------------------ public API
def select_items(model: Any, n: int = 10, strategy: str = "popularity", *,
                 random_state: int | None = None) -> np.ndarray:
    """Items to ask a newcomer to rate, best first.

    Parameters
    ----------
    model : fitted matfact model
        Its training data (``model.seen_``) gives the statistics; its factors
        give ``"factor_coverage"``'s directions.
    n : int, default=10
        Number of items, in [1, ``model.n_items_``].
    strategy : {"popularity", "entropy", "log_pop_entropy", "factor_coverage", "random"}
        See the module documentation for the exact definitions.
    random_state : int or None, default=None
        Seed of the ``"random"`` order (ignored by the others).

    Returns
    -------
    ids : ndarray of shape (n,)
        Raw item ids, in the order to ask them.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    ParameterError
        For an unknown strategy, ``n`` out of range, ``"factor_coverage"`` on a
        model without item factors, or an entropy strategy on a model fitted on
        implicit feedback.

    Examples
    --------
    >>> import matfact
    >>> from matfact.onboarding import select_items
    >>> data = matfact.Interactions.from_arrays([1, 1, 2, 2, 3], [10, 20, 10, 30, 10],
    ...                                         [5, 3, 4, 1, 2])
    >>> model = matfact.Baseline().fit(data, progress=False)
    >>> select_items(model, n=2).tolist()
    [10, 20]
    >>> select_items(model, n=2, strategy="entropy").tolist()   # 10 has three values
    [10, 20]
    """
    _check_model(model)
    strategy = _check_strategy(strategy)
    n = _check_count(n, "n", model.n_items_)
    if strategy == "random":
        codes = np.random.default_rng(_check_seed(random_state)).permutation(model.n_items_)[:n]
    else:
        with _blas_single_thread():
            codes = _ranking(model, strategy, n)
    return model.item_index_.ids[codes]


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


def _split(test_users: Any, eval_size: Any, seed: int | None) -> tuple[Interactions, Interactions]:
    if isinstance(test_users, tuple) and len(test_users) == 2:
        pool, held = test_users
        for name, value in (("pool", pool), ("eval", held)):
            if not isinstance(value, Interactions):
                raise DataError(f"test_users as a (pool, eval) pair needs two Interactions; "
                                f"{name} is a {type(value).__name__}")
        from matfact.evaluation.split import Split

        # An answer that is also an evaluation rating would leak the answer into the score.
        Split(pool, held).check_overlap()
        return pool, held
    if not isinstance(test_users, Interactions):
        raise DataError(
            f"test_users must be a matfact.Interactions of the held-out users' ratings (or a "
            f"(pool, eval) pair of them), got {type(test_users).__name__}"
        )
    from matfact.evaluation.split import train_test_split

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


def _list_rank(model: Any, strategy: str, cap: int, pool_items: np.ndarray,
               pool_rows: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Each item's position in a deterministic strategy's list (``cap`` if beyond it).

    Only as much of the list is built as the interview can reach: every user's
    ``needed`` answerable items must sit in it (the greedy factor_coverage list
    costs O(n_items·k) per item, so it grows ×4 from a short prefix).
    """
    n_items = model.n_items_
    if strategy != "factor_coverage":
        order = _ranking(model, strategy, cap)
    else:
        items = _coverage_order(model, _popularity(model))
        order = np.zeros(0, dtype=np.int64)
        length = min(cap, _FIRST_LENGTH)
        while True:
            order = np.concatenate([order, np.fromiter(islice(items, length - len(order)),
                                                       dtype=np.int64)])
            listed = np.zeros(n_items, dtype=bool)
            listed[order] = True
            reached = np.bincount(pool_rows, weights=listed[pool_items], minlength=len(needed))
            if length >= cap or (reached >= needed).all():
                break
            length = min(cap, 4 * length)
    rank = np.full(n_items, cap, dtype=np.int64)
    rank[order] = np.arange(len(order))
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
    >>> from matfact.onboarding import simulate_onboarding
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

    from matfact._kernels.topk import topk_rows
    from matfact.evaluation.metrics import ndcg_at_k
    from matfact.evaluation.split import _check_test_size
    from matfact.models._params import check_n

    _check_model(model)
    strategies = list(strategy) if isinstance(strategy, (list, tuple)) else [strategy]
    if not strategies:
        raise ParameterError("strategy must name at least one strategy")
    strategies = list(dict.fromkeys(_check_strategy(s) for s in strategies))
    n_items = model.n_items_
    counts = [n_answers] if isinstance(n_answers, (numbers.Integral, np.integer)) else n_answers
    counts = list(counts) if isinstance(counts, (list, tuple, np.ndarray, range)) else []
    if not counts:
        raise ParameterError(f"n_answers must be an int or a non-empty list of ints; "
                             f"got {n_answers!r}")
    counts = sorted({_check_count(n, "each n_answers", n_items) for n in counts})
    cap = n_items if max_asked is None else _check_count(max_asked, "max_asked", n_items)
    k = check_n(k, "k")
    seed = _check_seed(random_state)
    eval_size = _check_test_size(eval_size)
    if fold_in not in ("model", "posterior"):
        raise ParameterError(f"fold_in must be 'model' or 'posterior'; got {fold_in!r}")
    prior = None
    if fold_in == "posterior":
        _check_factors(model, "fold_in='posterior'", "fold_in='model'")
        prior = _user_prior(model)
    for name in strategies:  # fail before any work on a strategy the model cannot support
        if name in ("entropy", "log_pop_entropy"):
            _entropy(model)
        if name == "factor_coverage":
            _check_factors(model)

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
    predicts = not model.is_implicit_ and not getattr(model, "_ranks_only", False)
    exclude_indptr = pool_matrix.indptr.astype(np.int64)
    exclude_indices = pool_matrix.indices.astype(np.int32)

    def measure(scores: np.ndarray) -> tuple[float, float]:
        rmse = np.nan
        if predicts:
            predicted = scores[eval_coo.row, eval_coo.col].astype(np.float64)
            predicted = np.clip(predicted, *model.rating_scale_)
            rmse = float(np.sqrt(np.mean((predicted - eval_coo.data) ** 2)))
        top, _ = topk_rows(np.ascontiguousarray(scores, dtype=np.float32), exclude_indptr,
                           exclude_indices, k)
        return rmse, float(np.nanmean(ndcg_at_k(top, eval_matrix, k)))

    rows = []
    unknown = np.full(len(users), -1, dtype=np.int64)
    fallback = np.asarray(model._score_users(unknown), dtype=np.float32)
    rows.append((_FALLBACK, 0, *measure(fallback), 0.0, 0.0, 0.0))

    n_max = counts[-1]
    pool_sizes = np.diff(pool_matrix.indptr)
    pool_rows = np.repeat(np.arange(len(users)), pool_sizes)
    rng = np.random.default_rng(seed)
    # Hundreds of tiny solves and products: BLAS threads waking for each cost far more
    # than the work (measured on 2 busy cores: 26 s against 1.4 s on one thread).
    with _blas_single_thread():
        for name in strategies:
            rank = None
            if name != "random":
                rank = _list_rank(model, name, cap, pool_matrix.indices, pool_rows,
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
                        vector = model._fold_in(items[pick].astype(np.int64), ratings[pick])
                    else:
                        vector = _posterior_fold_in(model, prior, items[pick], ratings[pick])
                    scores[n][row] = model._score_vector(vector)
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
        scores = np.asarray(refit._score_users(codes), dtype=np.float32)[:, columns]
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

    from matfact.plots import _GRID, _INK, _MUTED, MODEL_COLORS, save_figure

    table = result.table
    ndcg = f"ndcg@{result.k}"
    full = table[table["strategy"] == _FULL].iloc[0]
    panels = [("rmse", "RMSE", "lower is better"), (ndcg, f"NDCG@{result.k}", "higher is better"),
              ("mean_asked", "Items asked per user (mean)", "log scale")]
    if not np.isfinite(table["rmse"].to_numpy(dtype=float)).any():
        panels = panels[1:]
    fig = Figure(figsize=(3.9 * len(panels), 3.6 + (0.35 if title else 0.0)), dpi=150,
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
            ax.axhline(float(full[column]), color=_INK, linestyle=":", linewidth=1.2,
                       label="trained fully")
        if column == "mean_asked":
            ax.set_yscale("log")
            # 1-2-5 ticks written as plain counts read better than powers of ten.
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ticks)
        ax.set_xlabel("answers", color=_INK)
        ax.set_title(label, loc="left", fontsize=11, fontweight="bold", color=_INK, pad=16)
        ax.annotate(hint, xy=(0.0, 1.0), xycoords="axes fraction", xytext=(0, 3),
                    textcoords="offset points", fontsize=8.5, color=_MUTED, va="bottom")
        ax.grid(color=_GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=8, colors=_MUTED)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6),
               frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold", color=_INK)
    return save_figure(fig, path)
