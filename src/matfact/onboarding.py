r"""Which items to ask a newcomer to rate.

A new user arrives with no history. Before recommending, the system may show a
few items and ask for ratings; the answers are folded into the model
(:meth:`~matfact.models.base.Recommender.fold_in`) without retraining it.
:func:`select_items` proposes the list to show (raw ids); :func:`item_order`
gives the same list as item codes, one item at a time, for code that works in
codes. How much the answers help is measured by
:func:`matfact.evaluation.onboarding.simulate_onboarding`, which replays the
interview on held-out users (also importable from here, as
``matfact.onboarding.simulate_onboarding``).

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
    :math:`1 - 1/e` of the best list of its length. Needs item factors. The
    Gaussian model of the newcomer (:math:`\Sigma`, :math:`\bar z`,
    :math:`\sigma^2`, the :math:`x_j`) is :func:`user_prior`; the onboarding
    simulation's posterior fold-in uses it too.
``"random"``
    A uniform random order (the baseline), from ``random_state``.

Ties go to the more popular item, then to the lower item index (smaller raw id).

References
----------
Rashid, A. M., Albert, I., Cosley, D., Lam, S. K., McNee, S. M., Konstan, J. A.
& Riedl, J. (2002). Getting to know you: learning new user preferences in
recommender systems. *IUI '02*, 127–134.

Golbandi, N., Koren, Y. & Lempel, R. (2011). Adaptive bootstrapping of
recommender systems using decision trees. *WSDM '11*, 595–604.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any, NamedTuple

import numpy as np

from matfact._params import check_item_count, check_seed
from matfact.exceptions import NotFittedError, ParameterError

__all__ = ["STRATEGIES", "UserPrior", "item_order", "select_items", "user_prior"]

#: Names accepted by ``strategy``.
STRATEGIES = ("popularity", "entropy", "log_pop_entropy", "factor_coverage", "random")

#: The simulation, re-exported: it lives in matfact.evaluation.onboarding, which imports
#: this module, so it is loaded on first use (importing this module never loads it).
_SIMULATION = ("OnboardingResult", "simulate_onboarding")


def __getattr__(name: str) -> Any:
    if name in _SIMULATION:
        from matfact.evaluation import onboarding as simulation

        return getattr(simulation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


# ------------------------------------------------------------------------------ statistics
def _popularity(model: Any) -> np.ndarray:
    """n_j: the number of training users who rated each item."""
    return model.item_popularity().astype(np.float64)


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


class UserPrior(NamedTuple):
    r"""The Gaussian model of a newcomer: what one answer tells about their factors.

    The unknowns are the newcomer's factors and bias :math:`z = (p_u, b_u)`;
    rating item :math:`j` observes :math:`x_j\cdot z` plus noise of variance
    :math:`\sigma^2`. ``"factor_coverage"`` picks the items whose answers
    shrink the posterior of :math:`z` most; the onboarding simulation's
    ``fold_in="posterior"`` takes its posterior mean.

    Attributes
    ----------
    design : ndarray of shape (n_items, n_factors) or (n_items, n_factors + 1), float64
        Each item's :math:`x_j = (q_j, 1)`; the trailing 1 only for a model
        with user biases.
    mean : ndarray of shape (design.shape[1],), float64
        :math:`\bar z`, the mean of the training users' :math:`z_u`.
    cov : ndarray of shape (design.shape[1], design.shape[1]), float64
        :math:`\Sigma`, their covariance (plus a tiny ridge that keeps it
        positive definite).
    noise : float
        :math:`\sigma^2`, the model's mean squared training residual (1 for
        implicit feedback).
    precision : ndarray of shape (design.shape[1], design.shape[1]), float64
        :math:`\Sigma^{-1}`.
    """

    design: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    noise: float
    precision: np.ndarray


def user_prior(model: Any) -> UserPrior:
    """The Gaussian model of a newcomer of ``model``, from its training users.

    Parameters
    ----------
    model : fitted matfact model with item factors
        ``item_factors_`` give the :math:`q_j`; ``user_factors_`` and
        ``user_bias_`` (when present) the prior; ``seen_`` the noise variance.

    Returns
    -------
    UserPrior

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    ParameterError
        If the model has no item factors (``Baseline``, ``Popularity``).
    """
    _check_model(model)
    x = _check_factors(model, "the newcomer prior", "a model with factors").astype(np.float64)
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
    return UserPrior(x, mean, cov, _noise_variance(model), np.linalg.inv(cov))


def _coverage_order(model: Any, popularity: np.ndarray) -> Iterator[int]:
    """The greedy weighted D-optimal list (see module doc), one item index at a time."""
    x, _, prior, noise, _ = user_prior(model)
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


def _noise_variance(model: Any) -> float:
    """σ²: the mean squared training residual of a rating model (1 for implicit feedback)."""
    if model.is_implicit_:
        return 1.0
    seen = model.seen_.tocoo()
    residual = seen.data - model.score_pairs(seen.row.astype(np.int64),
                                             seen.col.astype(np.int64), clip=False)
    variance = float(np.mean(residual**2)) if len(residual) else 1.0
    return variance if np.isfinite(variance) and variance > 0 else 1.0


def _order(model: Any, strategy: str) -> np.ndarray:
    """Every item index in the order of a strategy ranked by a statistic (not factor_coverage)."""
    popularity = _popularity(model)
    if strategy == "popularity":
        return _order_by(popularity, np.zeros_like(popularity))
    if strategy == "entropy":
        return _order_by(_entropy(model), popularity)
    log_pop = np.log(np.maximum(popularity, 1.0))  # an unrated item scores 0
    return _order_by(log_pop * _entropy(model), popularity)


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
    n = check_item_count(n, "n", model.n_items_)
    from matfact._threads import blas_single_thread  # (numba: loaded on use)

    with blas_single_thread():
        order = item_order(model, strategy, random_state=random_state)
        codes = np.fromiter(islice(order, n), dtype=np.int64, count=n)
    return model.item_index_.ids[codes]


def item_order(model: Any, strategy: str = "popularity", *,
               random_state: int | None = None) -> Iterator[int]:
    r"""The model's items in the order ``strategy`` asks them, as item codes, one at a time.

    :func:`select_items` in codes (positions in ``model.item_index_``), for code
    that works in codes, such as the onboarding simulation. The arguments are
    checked at the call; the list is then produced lazily, so taking the first
    items of ``"factor_coverage"`` costs only their greedy steps
    (:math:`O(n_\text{items}k)` each).

    Parameters
    ----------
    model : fitted matfact model
    strategy : {"popularity", "entropy", "log_pop_entropy", "factor_coverage", "random"}
        See the module documentation.
    random_state : int or None, default=None
        Seed of the ``"random"`` order (ignored by the others).

    Returns
    -------
    Iterator of int
        Every item code once, best first.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    ParameterError
        For an unknown strategy, ``"factor_coverage"`` on a model without item
        factors, or an entropy strategy on a model fitted on implicit feedback.

    Examples
    --------
    >>> import matfact
    >>> from itertools import islice
    >>> from matfact.onboarding import item_order
    >>> data = matfact.Interactions.from_arrays([1, 1, 2, 2, 3], [10, 20, 10, 30, 10],
    ...                                         [5, 3, 4, 1, 2])
    >>> model = matfact.Baseline().fit(data, progress=False)
    >>> codes = list(islice(item_order(model), 2))
    >>> model.item_index_.ids[codes].tolist()
    [10, 20]
    """
    _check_model(model)
    strategy = _check_strategy(strategy)
    if strategy == "random":
        seed = check_seed(random_state)
        return iter(np.random.default_rng(seed).permutation(model.n_items_).tolist())
    if strategy == "factor_coverage":
        _check_factors(model)
        return _coverage_order(model, _popularity(model))
    return iter(_order(model, strategy).tolist())


