r"""Alternating least squares: :class:`ALS` (explicit ratings) and :class:`ImplicitALS`.

Each half-step fixes one side's factors and solves every row of the other
side exactly (a small ridge regression per user or item), in parallel over
rows; the kernels are in :mod:`matfact._kernels.als`.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numba
import numpy as np
import scipy.sparse as sp

from matfact._kernels._common import predict_pairs
from matfact._kernels.als import implicit_cg, implicit_cholesky, implicit_loss, solve_rows
from matfact._linalg import forget_gram, gram64, ridge_gram
from matfact._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Interval,
    Options,
    check_random_state,
)
from matfact._threads import numba_threads
from matfact.data.interactions import Interactions
from matfact.exceptions import ConfidenceWarning, DataError, NotFittedError, ParameterError
from matfact.models import _time
from matfact.models._confidence import (
    HEAVY_TAIL_SPREAD,
    Confidence,
    choose_confidence,
    confidence_values,
    user_stacklevel,
    weight_spread,
)
from matfact.models._iterative import IterativeModel
from matfact.models._matrix import csr_parts
from matfact.models._updates import all_or_nothing
from matfact.models.base import UserVector

__all__ = ["ALS", "ImplicitALS", "bm25_weight", "tfidf_weight"]

_EMPTY = np.zeros(0, dtype=np.float32)
_TIME_DECAY = [Options(None), Interval(float, 0, None, closed="neither")]


def _start_decay(model: Any, data: Interactions) -> Interactions:
    """With ``time_decay``: record the training times and return the re-weighted data."""
    if model.time_decay is None:
        return data
    times = _time.require_timestamps(data, type(model).__name__, "time_decay")
    model.time_newest_ = int(times.max())
    model.rating_times_ = _time.csr_times(data.user_codes, data.item_codes, times, data.n_items)
    return _time.decayed(data, model.time_decay, model.time_newest_)


def _merge_decayed(model: Any, interactions: Interactions) -> tuple[Interactions, int, int]:
    """``_merge_new``, re-weighted by the time decay from the newest time seen so far."""
    if getattr(model, "rating_times_", None) is None:
        return model._merge_new(interactions)
    merged, n_users, n_items, _ = _time.merge_with_times(model, interactions, "time_decay")
    merged = _time.with_timestamps(merged, _time.in_data_order(merged, model.rating_times_))
    return _time.decayed(merged, model.time_decay, model.time_newest_), n_users, n_items


def _ridge_prior(k: int, reg: float, reg_bias: float, use_bias: bool):
    d = k + 1 if use_bias else k
    precision = np.zeros((d, d))
    precision[np.arange(k), np.arange(k)] = reg
    if use_bias:
        precision[k, k] = reg_bias
    return precision, np.zeros(d)


class ALS(IterativeModel):
    r"""Explicit-feedback ALS with biases and weighted-λ regularization (ALS-WR).

    Minimizes, over the observed ratings,

    .. math::
        \sum_{(u,i)} w_{ui}(r_{ui} - \mu - b_u - b_i - p_u\cdot q_i)^2
        + \lambda \Big(\sum_u n_u (\lVert p_u\rVert^2 + b_u^2)
        + \sum_i n_i (\lVert q_i\rVert^2 + b_i^2)\Big)

    with :math:`n_u` the (weighted) number of ratings of ``u`` when
    ``weighted_reg=True`` (Zhou et al. 2008), or 1 otherwise. Each half-step
    solves, for every user, the normal equations of ``[p_u, b_u]`` against
    ``[q_i, 1]`` with target :math:`r_{ui} - \mu - b_i` (and symmetrically for
    items) by a Cholesky factorization.

    Parameters
    ----------
    n_factors : int, default=64
    reg : float, default=0.1
        :math:`\lambda` (per rating with ``weighted_reg``).
    max_iter : int, default=15
        Alternations (each solves users, then items).
    weighted_reg : bool, default=True
    biased : bool, default=True
        Learn :math:`\mu, b_u, b_i` jointly with the factors.
    tol : float or None, default=None
        Stop when the training RMSE changes by less than this fraction; warn
        with :class:`~matfact.ConvergenceWarning` if ``max_iter`` comes first.
    init_std : float, default=0.1
        Item factors start from :math:`\mathcal N(0, \text{init\_std}^2)`.
    early_stopping, patience : bool, int, default=False, 3
        As in :class:`~matfact.BiasedMF` (needs ``validation=``).
    time_decay : float or None, default=None
        Half-life in days: each rating's weight is multiplied by
        :math:`2^{-\text{age}/h}`, age in days before the newest timestamp
        (:func:`matfact.models._time.decay_weights`). Needs timestamps.
    random_state : int, Generator or None, default=None
    n_threads : int or None, default=None

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray, float32
    user_bias_, item_bias_ : ndarray, float32, or None
    global_mean_ : float
    n_iter_ : int
    loss_history_ : dict
        ``train_rmse`` and ``validation_rmse`` after each iteration.

    Notes
    -----
    :meth:`fold_in` is one user half-step for the new history (the same
    solve as in training); :meth:`partial_fit` merges new ratings and refines.

    References
    ----------
    Y. Zhou, D. Wilkinson, R. Schreiber, R. Pan. Large-scale parallel
    collaborative filtering for the Netflix Prize. AAIM 2008.
    """

    _symmetric_fold_in: ClassVar[bool] = True  # same objective with users and items swapped
    _parameter_constraints: ClassVar[dict] = {
        "n_factors": [Interval(int, 1, None)],
        "reg": [Interval(float, 0, None)],
        "max_iter": [Interval(int, 1, None)],
        "weighted_reg": [BOOLEAN],
        "biased": [BOOLEAN],
        "tol": [Options(None), Interval(float, 0, None)],
        "init_std": [Interval(float, 0, None)],
        "early_stopping": [BOOLEAN],
        "patience": [Interval(int, 1, None)],
        "time_decay": _TIME_DECAY,
        "random_state": RANDOM_STATE,
        "n_threads": N_THREADS,
    }
    _accepts: ClassVar[tuple[str, ...]] = ("explicit",)

    def __init__(self, *, n_factors: int = 64, reg: float = 0.1, max_iter: int = 15,
                 weighted_reg: bool = True, biased: bool = True, tol: float | None = None,
                 init_std: float = 0.1, early_stopping: bool = False, patience: int = 3,
                 time_decay: float | None = None, random_state: Any = None,
                 n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.reg = reg
        self.max_iter = max_iter
        self.weighted_reg = weighted_reg
        self.biased = biased
        self.tol = tol
        self.init_std = init_std
        self.early_stopping = early_stopping
        self.patience = patience
        self.time_decay = time_decay
        self.random_state = random_state
        self.n_threads = n_threads

    def _prior(self) -> tuple[np.ndarray, np.ndarray]:
        return _ridge_prior(self.n_factors, self.reg, self.reg, self.biased)

    def _half_step(self, rows: tuple, weights: np.ndarray, other: np.ndarray,
                   other_bias: np.ndarray, out: np.ndarray, out_bias: np.ndarray) -> None:
        precision, term = self._prior()
        indptr, indices, values = rows
        solve_rows(indptr, indices, values, weights, other, other_bias, self.biased,
                   self.global_mean_, 1.0, precision, term, self.weighted_reg,
                   np.zeros((0, len(term))), out, out_bias)

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        rng = check_random_state(self.random_state)
        data = _start_decay(self, data)
        if data.has_weights:
            total = float(data.weights.sum(dtype=np.float64))
            if total <= 0:
                raise DataError("every sample weight is 0: nothing to learn from")
            mean = float(np.dot(data.weights, data.ratings)) / total
        else:
            mean = float(data.ratings.mean(dtype=np.float64))
        self.global_mean_ = mean if self.biased else 0.0
        self.user_factors_ = np.zeros((data.n_users, self.n_factors), np.float32)
        self.item_factors_ = self._init_factors(rng, data.n_items)
        self.user_bias_ = np.zeros(data.n_users, np.float32) if self.biased else None
        self.item_bias_ = np.zeros(data.n_items, np.float32) if self.biased else None
        self._train(data, validation, progress, self.max_iter)

    def _train(self, data: Interactions, validation, progress: bool, n_iter: int) -> None:
        """Alternate ``n_iter`` times from the current factors."""
        by_user = data.to_scipy()
        by_item = by_user.T.tocsr()
        if data.has_weights:
            # Weights ride along in CSR order: build them through the same matrices.
            w = sp.csr_matrix((data.weights, (data.user_codes, data.item_codes)),
                              shape=data.shape)
            w.sort_indices()
            user_w = np.ascontiguousarray(w.data, dtype=np.float32)
            item_w = np.ascontiguousarray(w.T.tocsr().data, dtype=np.float32)
            total = float(data.weights.sum(dtype=np.float64))
        else:
            user_w = item_w = _EMPTY
            total = float(data.nnz)
        users_rows, items_rows = csr_parts(by_user, np.float32), csr_parts(by_item, np.float32)
        pairs = (data.user_codes, data.item_codes, data.ratings.astype(np.float64),
                 None if not data.has_weights else data.weights.astype(np.float64))

        def step(iteration: int) -> tuple[float, dict]:
            ub = self.user_bias_ if self.biased else _EMPTY
            ib = self.item_bias_ if self.biased else _EMPTY
            self._half_step(users_rows, user_w, self.item_factors_, ib, self.user_factors_, ub)
            self._half_step(items_rows, item_w, self.user_factors_, ub, self.item_factors_, ib)
            return self._sse(*pairs), {}

        with numba_threads(self.n_threads, data.nnz * (self.n_factors + 1) ** 2 // 2):
            self._run_iterations(step, total, validation, progress, type(self).__name__,
                                 n_iter=n_iter)

    @all_or_nothing
    def partial_fit(self, interactions: Interactions, *, max_iter: int | None = None,
                    progress: bool = False) -> ALS:
        """Add new ratings (new users and items too) and refine without starting over.

        The new interactions are merged into the training data the model keeps
        (a repeated pair takes the new rating; earlier sample weights are not
        kept), the id maps are extended, new users and items are initialized,
        and ``max_iter`` (default 3) more alternations run from the current
        factors. With ``time_decay``, every rating is re-weighted by its age
        before the newest timestamp seen so far (the new data needs timestamps).

        Returns
        -------
        self
        """
        merged, n_users, n_items = _merge_decayed(self, interactions)
        _grow(self, merged, n_users, n_items)
        self._train(merged, None, progress, 3 if max_iter is None else max_iter)
        return self

    def half_step(self, rows: tuple, weights: np.ndarray, other: np.ndarray,
                  other_bias: np.ndarray, out: np.ndarray, out_bias: np.ndarray) -> None:
        """Solve the rows of one side with the other side fixed (one ALS half-step).

        The engine :mod:`matfact.distributed` runs on each block of rows.

        Parameters
        ----------
        rows : tuple of (indptr, indices, values)
            CSR rows of the side being solved; ``indices`` index ``other``.
        weights : ndarray of shape (nnz,), float32
            Per-rating weights, or an empty array for none.
        other, other_bias : ndarray
            The fixed side's factors (n_other, n_factors) and biases (empty if unbiased).
        out, out_bias : ndarray
            Written in place: the solved factors (n_rows, n_factors) and biases.
        """
        self._half_step(rows, weights, other, other_bias, out, out_bias)

    def squared_error(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                      weights: np.ndarray | None) -> float:
        """Σ w (r − r̂)² of code pairs under the current factors (the fit's loss term)."""
        return self._sse(users, items, ratings, weights)

    def _sse(self, users, items, ratings, weights) -> float:
        pred = predict_pairs(users, items, self.user_factors_, self.item_factors_,
                             self.user_bias_ if self.biased else _EMPTY,
                             self.item_bias_ if self.biased else _EMPTY, self.global_mean_,
                             self.biased)
        err = (ratings - pred) ** 2
        return float(err.sum() if weights is None else np.dot(weights, err))

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        factors = np.zeros((1, self.n_factors), np.float32)
        bias = np.zeros(1 if self.biased else 0, np.float32)
        indptr = np.array([0, len(items)], dtype=np.int64)
        self._half_step((indptr, items.astype(np.int32), values.astype(np.float32)), _EMPTY,
                        self.item_factors_, self.item_bias_ if self.biased else _EMPTY,
                        factors, bias)
        return UserVector(factors[0], float(bias[0]) if self.biased else 0.0)


class ImplicitALS(IterativeModel):
    r"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008), by conjugate gradient or Cholesky.

    Every (user, item) cell has a preference :math:`p_{ui} = 1` if the user
    interacted with the item, else 0, and a confidence :math:`c_{ui}`: for an
    interaction of weight :math:`w` (plays, hours, count; 1 by default)
    :math:`c = 1 + \alpha w` (``confidence="linear"``) or
    :math:`c = 1 + \alpha \log(1 + w/\epsilon)` (``"log"``); unobserved cells
    have :math:`c = 1`. By default (``"auto"``) the fit chooses from the weights:
    linear as given for binary and narrow weights, the log with :math:`\alpha` and
    :math:`\epsilon` from the weights' quantiles for weights spanning orders of
    magnitude (see ``confidence`` below). It minimizes

    .. math::
        \sum_{u,i} c_{ui}(p_{ui} - x_u\cdot y_i)^2
        + \lambda(\sum_u \lVert x_u\rVert^2 + \sum_i \lVert y_i\rVert^2)

    over all cells without visiting the zeros: :math:`Y^\top Y` is computed once
    per half-step, and each row solves
    :math:`(Y^\top Y + \lambda I + \sum_{i\in R(u)} (c_{ui}-1) y_i y_i^\top) x_u
    = \sum_{i\in R(u)} c_{ui} y_i` either by ``cg_steps`` conjugate-gradient steps
    warm-started from the previous factors (Takács, Pilászy & Tikk 2011) or
    exactly by Cholesky.

    Parameters
    ----------
    n_factors : int, default=256
        With the frequency-scaled ridge (``reg_exponent``) more factors did not lose
        accuracy on any data measured (Rendle et al. 2022 find the same), while sparse
        catalogues gain much (Retailrocket's events, α = 2: validation NDCG@10 0.076 at
        64, 0.096 at 128, 0.110 at 256; Steam and ML-100K equal or better). Fewer factors
        fit faster and keep smaller models: a fit costs about :math:`O(\text{nnz}\,k +
        (n_u + n_i) k^2)` per iteration, the factors :math:`4 (n_u + n_i) k` bytes.
    reg : float, default=3.0
        :math:`\lambda`.
    reg_exponent : float, default=0.5
        Frequency-scaled regularization (Rendle et al. 2022): a row with
        :math:`n` interactions gets :math:`\lambda n^\nu`; 0 gives plain λ,
        as in implicit and Spark.
    alpha : float, default=3.0
        Confidence scale :math:`\alpha`. With ``confidence="auto"`` choosing the log,
        the confidence of the heaviest 1 % of interactions is :math:`1 + \alpha`.
        (The defaults 256 factors, α = 3, λ = 3 were chosen on validation splits cut
        from the training parts of Steam, Retailrocket and ML-100K; see
        docs/benchmarks.md, "ImplicitALS defaults on raw counts".)
    max_iter : int, default=15
    confidence : {"auto", "linear", "log"}, default="auto"
        ``"auto"`` chooses at fit from the training weights :math:`w` (before any
        ``time_decay``), by their quantiles :math:`q_p` (``numpy.quantile``):
        if :math:`q_{0.99} < 100\,q_{0.01}` (binary, constant, rating-like or
        event-count weights) it is ``"linear"`` with ``alpha`` and ``epsilon`` as given,
        the very model ``confidence="linear"`` fits; otherwise ``"log"`` with
        :math:`\epsilon = q_{0.5}` and :math:`\alpha = \texttt{alpha} / \log(1 +
        q_{0.99}/q_{0.5})`, so the heaviest 1 % get the confidence
        :math:`1 + \texttt{alpha}` every interaction gets on binary data and the choice
        does not depend on the unit. The choice is in ``confidence_``, ``alpha_`` and
        ``epsilon_`` (saved with the model). An explicit ``"linear"`` on weights
        spanning that range warns (:class:`~matfact.ConfidenceWarning`).
    epsilon : float, default=1.0
        :math:`\epsilon` of the log scaling.
    solver : {"cg", "cholesky"}, default="cg"
    cg_steps : int, default=3
    init_std : float, default=0.01
    calculate_loss : bool, default=False
        Compute the training objective after each iteration (one extra pass),
        normalized as implicit's ``calculate_loss``: divided by
        :math:`\sum c_{ui}` over observed cells plus the number of unobserved cells.
    time_decay : float or None, default=None
        Half-life in days: each interaction's weight :math:`w` (hence its
        confidence) becomes :math:`w\,2^{-\text{age}/h}`, age in days before the
        newest timestamp. Needs timestamps.
    random_state : int, Generator or None, default=None
    n_threads : int or None, default=None

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray, float32
    confidence_ : {"linear", "log"}
        The confidence transform used (``"auto"`` resolved).
    alpha_, epsilon_ : float
        The :math:`\alpha` and :math:`\epsilon` used: the parameters, or with
        ``confidence="auto"`` choosing the log, those derived from the weights.
        ``partial_fit`` keeps them.
    n_iter_ : int
    loss_history_ : dict
        ``train_loss`` per iteration (empty unless ``calculate_loss``).

    Notes
    -----
    Scores are :math:`x_u\cdot y_i` (no biases, no clipping). :meth:`fold_in`
    is one exact half-step for the new history; BM25 and TF-IDF re-weighting
    of the weights are available as :func:`bm25_weight` / :func:`tfidf_weight`.

    References
    ----------
    Y. Hu, Y. Koren, C. Volinsky. Collaborative filtering for implicit
    feedback datasets. ICDM 2008.
    G. Takács, I. Pilászy, D. Tikk. Applications of the conjugate gradient
    method for implicit feedback collaborative filtering. RecSys 2011.
    """

    _ranks_only = True

    _symmetric_fold_in: ClassVar[bool] = True  # same objective with users and items swapped
    _parameter_constraints: ClassVar[dict] = {
        "n_factors": [Interval(int, 1, None)],
        "reg": [Interval(float, 0, None)],
        "reg_exponent": [Interval(float, 0, None)],
        "alpha": [Interval(float, 0, None)],
        "max_iter": [Interval(int, 1, None)],
        "confidence": [Options("auto", "linear", "log")],
        "epsilon": [Interval(float, 0, None, closed="neither")],
        "solver": [Options("cg", "cholesky")],
        "cg_steps": [Interval(int, 1, None)],
        "init_std": [Interval(float, 0, None)],
        "calculate_loss": [BOOLEAN],
        "time_decay": _TIME_DECAY,
        "random_state": RANDOM_STATE,
        "n_threads": N_THREADS,
    }
    _needs_ratings: ClassVar[bool] = False
    _step_returns_sse = False

    def __init__(self, *, n_factors: int = 256, reg: float = 3.0, reg_exponent: float = 0.5,
                 alpha: float = 3.0, max_iter: int = 15, confidence: str = "auto", epsilon: float = 1.0,
                 solver: str = "cg", cg_steps: int = 3, init_std: float = 0.01,
                 calculate_loss: bool = False, time_decay: float | None = None,
                 random_state: Any = None, n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.reg = reg
        self.reg_exponent = reg_exponent
        self.alpha = alpha
        self.max_iter = max_iter
        self.confidence = confidence
        self.epsilon = epsilon
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.calculate_loss = calculate_loss
        self.time_decay = time_decay
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, interactions: Interactions, *, validation: Interactions | None = None,
            progress: bool | str | None = None, callback: Any = None) -> ImplicitALS:
        """Learn from implicit interactions (explicit ratings count as interactions of weight 1).

        See :meth:`IterativeModel.fit <matfact.models._iterative.IterativeModel.fit>`.
        """
        return super().fit(_as_implicit(interactions), validation=validation,
                           progress=progress, callback=callback)

    def _computes_loss(self) -> bool:
        return bool(self.calculate_loss)

    def confidence_of(self, weights: np.ndarray) -> np.ndarray:
        """The confidences ``c = 1 + α·f(w)`` of interaction weights (float32).

        ``f`` is the identity, or ``log(1 + w/ε)`` with ``confidence="log"``; a fitted
        model uses its ``confidence_``, ``alpha_`` and ``epsilon_``.
        """
        return self._confidence(weights)

    def confidence_params(self) -> dict[str, Any]:
        """The resolved ``confidence``, ``alpha`` and ``epsilon`` as parameters.

        A model built with them (e.g. the per-block copies :mod:`matfact.distributed`
        makes) computes the same confidences as this fitted one.

        Raises
        ------
        NotFittedError
            With ``confidence="auto"`` before a fit has chosen.
        """
        rule = self._confidence_rule()
        return {"confidence": rule.kind, "alpha": rule.alpha, "epsilon": rule.epsilon}

    def half_step(self, rows: tuple, other: np.ndarray, out: np.ndarray) -> None:
        """Solve the rows of one side with the other side fixed (one ALS half-step).

        The engine :mod:`matfact.distributed` runs on each block of rows.

        Parameters
        ----------
        rows : tuple of (indptr, indices, confidences)
            CSR rows of the side being solved, confidences from :meth:`confidence_of`.
        other : ndarray of shape (n_other, n_factors), float32
            The fixed side.
        out : ndarray of shape (n_rows, n_factors), float32
            The current rows (CG warm-starts from them), overwritten with the solution.
        """
        self._solve(rows, other, out)

    def _confidence(self, weights: np.ndarray) -> np.ndarray:
        return confidence_values(weights, self._confidence_rule())

    def _confidence_rule(self) -> Confidence:
        """The fitted choice, else the parameters (``"auto"`` has no choice before a fit)."""
        if getattr(self, "confidence_", None) is not None:
            return Confidence(self.confidence_, float(self.alpha_), float(self.epsilon_))
        if self.confidence == "auto":
            raise NotFittedError("ImplicitALS(confidence='auto') chooses its confidence from "
                                 "the training weights: fit it first, or pass "
                                 "confidence='linear' or 'log'")
        return Confidence(self.confidence, float(self.alpha), float(self.epsilon))

    def _choose_confidence(self, weights: np.ndarray | None) -> None:
        """Resolve ``confidence`` on the training weights (None: binary) into
        ``confidence_``, ``alpha_``, ``epsilon_``."""
        if self.confidence == "auto":
            rule = choose_confidence(weights, self.alpha, self.epsilon)
        else:
            rule = Confidence(self.confidence, float(self.alpha), float(self.epsilon))
            spread = weight_spread(weights)
            if self.confidence == "linear" and spread >= HEAVY_TAIL_SPREAD:
                warnings.warn(
                    f"ImplicitALS: the weights span {spread:,.0f}× (99th / 1st percentile), "
                    f"so confidence='linear' lets the heaviest interactions outweigh the "
                    f"rest by that much; use confidence='auto' (or 'log')",
                    ConfidenceWarning, stacklevel=user_stacklevel())
        self.confidence_, self.alpha_, self.epsilon_ = rule

    def _gram(self, factors: np.ndarray) -> np.ndarray:
        return self._gram64(factors).astype(np.float32)

    def _gram64(self, factors: np.ndarray) -> np.ndarray:
        gram = gram64(factors)
        gram[np.diag_indices_from(gram)] += self.reg
        return gram

    def _exact(self, rows: tuple, other: np.ndarray, out: np.ndarray, n_parts: int,
               woodbury: bool = True) -> None:
        """Exact half-step: Woodbury in ``G``'s eigenbasis for rows of ≤ 0.8 k interactions.

        Below about 0.8 k interactions the Woodbury form (O(n²k + n³) per row) beats
        forming and factoring the k × k system (O(nk² + k³)); the eigenbasis of ``G``
        (one ``eigh`` and one ``other @ V`` per half-step) lets the frequency-scaled
        ridge differ per row. ``woodbury=False`` (one fold-in row, where rotating every
        item would cost more than the row) factors every row.
        """
        indptr, indices, conf = rows
        gram = self._gram64(other)
        counts = np.diff(indptr)
        k = other.shape[1]
        # Where a row costs the same either way, timed per row for k = 16, 64 and 128.
        short_max = (4 * k) // 5
        if not (woodbury and np.any((counts > 0) & (counts <= short_max))):
            short_max = 0
        if short_max:
            eigvals, eigvecs = np.linalg.eigh(gram)
            eigvecs = np.ascontiguousarray(eigvecs)
            # Λ⁻¹ must exist: with λ = 0 and fewer rows than factors, G is singular (the
            # factoring path then keeps its documented zero row for a singular system).
            if not eigvals[0] > 1e-10 * max(eigvals[-1], 0.0):
                short_max = 0
        if short_max:
            rotated = other @ eigvecs.astype(np.float32)
        else:
            eigvals, eigvecs = np.ones(k), np.eye(k)
            rotated = np.zeros((0, k), np.float32)
        implicit_cholesky(indptr, indices, conf, other, gram.astype(np.float32),
                          self._row_reg(indptr), out, rotated, eigvals, eigvecs, short_max,
                          n_parts)

    def _row_reg(self, indptr: np.ndarray) -> np.ndarray:
        """Extra per-row ridge ``λ (n^ν − 1)``, so the total is ``λ n^ν`` (ν = reg_exponent)."""
        if self.reg_exponent == 0:
            return _EMPTY
        counts = np.maximum(np.diff(indptr), 1).astype(np.float64)
        return (self.reg * (counts**self.reg_exponent - 1.0)).astype(np.float32)

    def _solve(self, rows: tuple, other: np.ndarray, out: np.ndarray) -> None:
        try:
            if self.solver != "cg":
                self._exact(rows, other, out, numba.get_num_threads())
                return
            indptr, indices, conf = rows
            implicit_cg(indptr, indices, conf, other, self._gram(other), self._row_reg(indptr),
                        out, self.cg_steps, numba.get_num_threads())
        finally:
            forget_gram(out)  # ``out`` was written in place: fold-in's kept Gram of it is stale

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        if validation is not None:
            raise ParameterError("ImplicitALS does not take validation= (its loss is not an "
                                 "RMSE); evaluate held-out data with evaluate_ranking")
        self.rating_scale_ = None
        # Before any time decay: the rule reads the data's own weights.
        self._choose_confidence(data.weights if data.has_weights else None)
        rng = check_random_state(self.random_state)
        data = _start_decay(self, data)
        self.user_factors_ = self._init_factors(rng, data.n_users)
        self.item_factors_ = self._init_factors(rng, data.n_items)
        self.global_mean_ = 0.0
        self.user_bias_ = self.item_bias_ = None
        self._train(data, progress, self.max_iter)

    def _train(self, data: Interactions, progress: bool, n_iter: int) -> None:
        """Alternate ``n_iter`` times from the current factors."""
        csr = data.to_scipy()
        # Confidence values on the same index arrays: no copy of the pattern.
        by_user = sp.csr_matrix((self._confidence(csr.data), csr.indices, csr.indptr),
                                shape=csr.shape)
        by_item = by_user.T.tocsr()
        users_rows, items_rows = csr_parts(by_user, np.float32), csr_parts(by_item, np.float32)
        normalizer = float(by_user.data.sum()) + data.n_users * data.n_items - data.nnz

        def step(iteration: int) -> tuple[float, dict]:
            self._solve(users_rows, self.item_factors_, self.user_factors_)
            self._solve(items_rows, self.user_factors_, self.item_factors_)
            loss = (self.loss(users_rows, items_rows) / normalizer if self.calculate_loss
                    else 0.0)
            return loss, {}

        with numba_threads(self.n_threads, data.nnz * self.n_factors * (self.cg_steps + 1)):
            self._run_iterations(step, 1.0, None, progress, type(self).__name__, n_iter=n_iter)
        if not self.calculate_loss:
            self.loss_history_ = {"train_loss": [], "validation_rmse": []}

    @all_or_nothing
    def partial_fit(self, interactions: Interactions, *, max_iter: int | None = None,
                    progress: bool = False) -> ImplicitALS:
        """Add new interactions (new users and items too) and refine without starting over.

        The new interactions are merged into those the model keeps (a repeated
        pair takes the new weight), the id maps are extended, new users and
        items start from small random vectors, and ``max_iter`` (default 3)
        more alternations run from the current factors (warm-started CG). With
        ``time_decay``, every weight is re-decayed from the newest timestamp
        seen so far.

        Returns
        -------
        self
        """
        merged, n_users, n_items = _merge_decayed(self, _as_implicit(interactions))
        _grow(self, merged, n_users, n_items)
        self._train(merged, progress, 3 if max_iter is None else max_iter)
        return self

    def loss(self, user_rows: tuple, item_rows: tuple) -> float:
        """The unnormalized objective: data term plus ``Σ λ_u‖x_u‖² + Σ λ_i‖y_i‖²``.

        ``user_rows`` / ``item_rows`` are the (indptr, indices, confidence) CSR
        parts of the data by user and by item.
        """
        indptr, indices, conf = user_rows
        data_term = implicit_loss(indptr, indices, conf, self.user_factors_,
                                  self.item_factors_, gram64(self.item_factors_))
        penalty = 0.0
        for rows, factors in ((user_rows, self.user_factors_), (item_rows, self.item_factors_)):
            lam = self.reg + self._row_reg(rows[0]) if self.reg_exponent else self.reg
            norms = np.einsum("ij,ij->i", factors, factors).astype(np.float64)
            penalty += float(np.dot(np.broadcast_to(lam, len(factors)), norms))
        return data_term + penalty

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        # The exact row, factored (the Woodbury path of ``_exact`` would rotate every
        # item for one row). ``YᵀY + λI`` over every item is the costly part (O(n_items
        # k²): 2-3 ms at 17,632 items) and the same for every call: ``ridge_gram`` keeps
        # it until the item factors change (every in-place writer calls ``forget_gram``).
        other = self.item_factors_
        k = other.shape[1]
        factors = np.zeros((1, k), np.float32)
        indptr = np.array([0, len(items)], dtype=np.int64)
        implicit_cholesky(indptr, items.astype(np.int32), self._confidence(values), other,
                          ridge_gram(other, self.reg, np.float32), self._row_reg(indptr),
                          factors, np.zeros((0, k), np.float32), np.ones(k), np.eye(k), 0, 1)
        return UserVector(factors[0], 0.0)


def _as_implicit(interactions: Any) -> Any:
    if isinstance(interactions, Interactions) and not interactions.is_implicit:
        return interactions.to_implicit()
    return interactions


def _grow(model: Any, data: Interactions, n_users: int, n_items: int) -> None:
    """Append rows for users and items first seen by ``partial_fit``.

    New items start from small random vectors (seeded by the model's
    ``random_state`` and its size, so a replay is reproducible); new users from
    zeros, since the next half-step solves them from their interactions first.
    """
    rng = np.random.default_rng(
        None if model.random_state is None or isinstance(model.random_state, np.random.Generator)
        else [model.random_state, n_users, n_items])
    k = model.n_factors
    new_users, new_items = data.n_users - n_users, data.n_items - n_items
    if new_users:
        model.user_factors_ = np.vstack([model.user_factors_, np.zeros((new_users, k), np.float32)])
        if model.user_bias_ is not None:
            model.user_bias_ = np.concatenate([model.user_bias_, np.zeros(new_users, np.float32)])
    if new_items:
        fresh = rng.standard_normal((new_items, k), dtype=np.float32) * np.float32(model.init_std)
        model.item_factors_ = np.vstack([model.item_factors_, fresh])
        if model.item_bias_ is not None:
            model.item_bias_ = np.concatenate([model.item_bias_, np.zeros(new_items, np.float32)])


def _check_csr(matrix: Any) -> sp.csr_matrix:
    if isinstance(matrix, Interactions):
        matrix = matrix.to_scipy()
    if not sp.issparse(matrix):
        raise DataError("expected an Interactions or a SciPy sparse matrix")
    return sp.csr_matrix(matrix, dtype=np.float64, copy=True)


def tfidf_weight(matrix: Any) -> sp.csr_matrix:
    """TF-IDF re-weighting of a users × items matrix (items as terms, users as documents).

    Each weight is multiplied by ``log(n_users / n_users_of_item)``, damping
    items everyone has. Returns a new CSR matrix; use its values as the
    ``weight`` column of a new :class:`~matfact.Interactions`.
    """
    csr = _check_csr(matrix)
    n_users = csr.shape[0]
    counts = np.bincount(csr.indices, minlength=csr.shape[1])
    idf = np.log(n_users / np.maximum(counts, 1))
    csr.data *= idf[csr.indices]
    return csr


def bm25_weight(matrix: Any, k1: float = 100.0, b: float = 0.8) -> sp.csr_matrix:
    """Okapi BM25 re-weighting of a users × items matrix, as implicit's ``bm25_weight``.

    ``w' = w (k1 + 1) / (w + k1 (1 - b + b · len_u / avg_len)) · idf_i`` with
    ``len_u`` the user's total weight and ``idf_i = log(n_users / n_users_of_item)``.
    """
    if not (k1 > 0 and 0 <= b <= 1):
        raise ParameterError(f"bm25_weight needs k1 > 0 and 0 ≤ b ≤ 1, got k1={k1}, b={b}")
    csr = _check_csr(matrix)
    n_users = csr.shape[0]
    counts = np.bincount(csr.indices, minlength=csr.shape[1])
    idf = np.log(n_users / np.maximum(counts, 1))
    row_sums = np.asarray(csr.sum(axis=1)).ravel()
    length_norm = (1.0 - b) + b * row_sums / max(row_sums.mean(), 1e-12)
    row_norm = np.repeat(length_norm, np.diff(csr.indptr))
    csr.data = csr.data * (k1 + 1.0) / (k1 * row_norm + csr.data) * idf[csr.indices]
    return csr
