r"""Gradient-descent factorization: :class:`BiasedMF` ("Funk SVD") and :class:`SVDPlusPlus`.

Both minimize the regularized squared error over the observed ratings,

.. math::
    \sum_{(u,i)} w_{ui}\,(r_{ui} - \hat r_{ui})^2
    + \lambda (\lVert p_u\rVert^2 + \lVert q_i\rVert^2)
    + \lambda_b (b_u^2 + b_i^2),

by stochastic gradient descent; the kernels and their update rules are in
:mod:`matfact._kernels.sgd`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from matfact._kernels.sgd import sgd_epoch, svdpp_epoch
from matfact._threads import numba_threads, resolve_n_threads
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError
from matfact.models._iterative import IterativeModel
from matfact.models._layout import blocked_ratings
from matfact.models._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Interval,
    Options,
    check_random_state,
)
from matfact.models.base import UserVector

__all__ = ["BiasedMF", "SVDPlusPlus"]

Callback = Callable[[int, dict], Any]


def _total_weight(weights: np.ndarray | None, nnz: int) -> float:
    if weights is None:
        return float(nnz)
    total = float(weights.sum(dtype=np.float64))
    if total <= 0:
        raise DataError("every sample weight is 0: nothing to learn from")
    return total


class _SGDModel(IterativeModel):
    """Shared epoch loop: schedule, validation, early stopping, callback, divergence."""

    _accepts: ClassVar[tuple[str, ...]] = ("explicit",)
    _common_constraints: ClassVar[dict] = {
        "n_factors": [Interval(int, 1, None)],
        "max_iter": [Interval(int, 1, None)],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "reg": [Interval(float, 0, None)],
        "reg_bias": [Interval(float, 0, None)],
        "init_std": [Interval(float, 0, None)],
        "schedule": [Options("constant", "decay")],
        "decay": [Interval(float, 0, 1, closed="right")],
        "early_stopping": [BOOLEAN],
        "patience": [Interval(int, 1, None)],
        "random_state": RANDOM_STATE,
        "n_threads": N_THREADS,
    }

    def _learning_rate(self, epoch: int) -> float:
        if self.schedule == "decay":
            return self.learning_rate * self.decay**epoch
        return self.learning_rate

    def _divergence_hint(self) -> str:
        return f"use a smaller learning_rate than {self.learning_rate:g} or a larger reg"

    def _sgd_epochs(self, run_epoch: Callable[[float, np.random.Generator], float],
                    total_weight: float, validation: Interactions | None,
                    rng: np.random.Generator, progress: bool, name: str) -> None:
        def step(epoch: int) -> tuple[float, dict]:
            lr = self._learning_rate(epoch)
            return run_epoch(lr, rng), {"learning_rate": lr}

        self._run_iterations(step, total_weight, validation, progress, name)

    def _ridge_fold_in(self, items: np.ndarray, target: np.ndarray,
                       item_vectors: np.ndarray, use_bias: bool) -> UserVector:
        r"""Solve for a user's ``p`` (and ``b``) with items fixed.

        Minimizes :math:`\sum_i (t_i - b - p\cdot q_i)^2 + n(\lambda\lVert p\rVert^2
        + \lambda_b b^2)`: SGD applies the penalty once per rating, so a user
        with ``n`` ratings carries it ``n`` times.
        """
        k = self.n_factors
        n = len(items)
        if n == 0:
            return UserVector(np.zeros(k, dtype=np.float32), 0.0)
        design = item_vectors.astype(np.float64)
        penalty = [self.reg] * k
        if use_bias:
            design = np.hstack([design, np.ones((n, 1))])
            penalty.append(self.reg_bias)
        gram = design.T @ design + n * np.diag(penalty)
        solution = np.linalg.solve(gram, design.T @ target)
        bias = float(solution[k]) if use_bias else 0.0
        return UserVector(solution[:k].astype(np.float32), bias)


class BiasedMF(_SGDModel):
    r"""Biased matrix factorization by SGD: :math:`\hat r_{ui} = \mu + b_u + b_i + p_u\cdot q_i`.

    The model of Koren, Bell & Volinsky (2009) and Funk's Netflix Prize "SVD"
    (Surprise's ``SVD``). With ``biased=False`` it is plain Funk MF,
    :math:`\hat r_{ui} = p_u\cdot q_i`. Epochs are parallel and deterministic:
    ratings are cut into a grid of user × item blocks and each stratum's blocks
    (no shared user or item) are processed by different threads, so the same
    ``random_state`` gives the same model whatever ``n_threads`` is.

    Parameters
    ----------
    n_factors : int, default=100
        Rank :math:`k` of the factors.
    max_iter : int, default=40
        Epochs (full passes over the ratings).
    learning_rate : float, default=0.01
        SGD step size of the factors (at the first epoch, with ``schedule="decay"``).
    learning_rate_bias : float or None, default=None
        Step size of the biases; None means ``learning_rate / 4``. Slower biases
        let the factors, rather than the biases, absorb the early error.
        Follows the same schedule.
    reg : float, default=0.1
        :math:`\lambda`, L2 penalty on the factors, per rating.
    reg_bias : float, default=0.02
        :math:`\lambda_b`, L2 penalty on the biases, per rating.
    init_std : float, default=0.02
        Factors start from :math:`\mathcal N(0, \text{init\_std}^2)`; biases from 0.
    biased : bool, default=True
        Learn :math:`\mu, b_u, b_i`; False gives plain Funk MF.
    schedule : {"constant", "decay"}, default="constant"
        ``"decay"`` multiplies the learning rate by ``decay`` after each epoch.
    decay : float, default=0.96
    early_stopping : bool, default=False
        Stop when the validation RMSE has not improved for ``patience`` epochs
        and keep the best epoch (needs ``validation=`` in :meth:`fit`).
    patience : int, default=3
    n_blocks : int, default=16
        Blocks per side of the parallel grid (≥ 2 × threads keeps cores busy).
    random_state : int, Generator or None, default=None
    n_threads : int or None, default=None
        Threads for the epochs; None uses every core, or one when each parallel
        step is too small to share (about 10⁶ multiply-adds, e.g. ML-100K),
        where threads would mostly wait on each other. The model is the same
        for any value.

    Attributes
    ----------
    global_mean_ : float
    user_bias_, item_bias_ : ndarray of shape (n_users,), (n_items,), float32, or None
    user_factors_ : ndarray of shape (n_users, n_factors), float32
    item_factors_ : ndarray of shape (n_items, n_factors), float32
    n_iter_ : int
    loss_history_ : dict
        ``train_rmse`` (online, measured during each epoch) and
        ``validation_rmse`` per epoch.

    Notes
    -----
    Defaults were chosen on validation splits of MovieLens 100K's training
    folds (never its test folds); see ``docs/sgd.md``. :meth:`fold_in` places a
    new user by an exact ridge solve with the items fixed.

    References
    ----------
    Y. Koren, R. Bell, C. Volinsky. Matrix factorization techniques for
    recommender systems. IEEE Computer 42(8), 2009.
    R. Gemulla et al. Large-scale matrix factorization with distributed SGD. KDD 2011.

    Examples
    --------
    >>> import matfact
    >>> data = matfact.datasets.make_synthetic(200, 100, 4000, random_state=0)
    >>> model = matfact.BiasedMF(n_factors=8, max_iter=5, random_state=0).fit(data, progress=False)
    >>> model.predict([0], [1]).shape
    (1,)
    """

    _parameter_constraints: ClassVar[dict] = {
        **_SGDModel._common_constraints,
        "learning_rate_bias": [Options(None), Interval(float, 0, None, closed="neither")],
        "biased": [BOOLEAN],
        "n_blocks": [Interval(int, 1, None)],
    }

    def __init__(self, *, n_factors: int = 100, max_iter: int = 40, learning_rate: float = 0.01,
                 learning_rate_bias: float | None = None, reg: float = 0.1,
                 reg_bias: float = 0.02, init_std: float = 0.02, biased: bool = True, schedule: str = "constant", decay: float = 0.96,
                 early_stopping: bool = False, patience: int = 3, n_blocks: int = 16,
                 random_state: Any = None, n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.learning_rate_bias = learning_rate_bias
        self.reg = reg
        self.reg_bias = reg_bias
        self.init_std = init_std
        self.biased = biased
        self.schedule = schedule
        self.decay = decay
        self.early_stopping = early_stopping
        self.patience = patience
        self.n_blocks = n_blocks
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        rng = check_random_state(self.random_state)
        weights = data.weights if data.has_weights else None
        ratings = data.ratings
        total = _total_weight(weights, data.nnz)
        if self.biased:
            mean = (float(np.dot(weights, ratings)) / total if weights is not None
                    else float(ratings.mean(dtype=np.float64)))
        else:
            mean = 0.0
        self.global_mean_ = mean
        self.user_factors_ = self._init_factors(rng, data.n_users)
        self.item_factors_ = self._init_factors(rng, data.n_items)
        self.user_bias_ = np.zeros(data.n_users, np.float32) if self.biased else None
        self.item_bias_ = np.zeros(data.n_items, np.float32) if self.biased else None
        bias_ratio = (0.25 if self.learning_rate_bias is None
                      else self.learning_rate_bias / self.learning_rate)
        order, block_ptr, user_pos, item_pos, _ = blocked_ratings(
            data.user_codes, data.item_codes, data.n_users, data.n_items, self.n_blocks, rng)
        users = user_pos[data.user_codes[order]].astype(np.int32)
        items = item_pos[data.item_codes[order]].astype(np.int32)
        values = np.ascontiguousarray(ratings[order])
        sample_weights = (np.ascontiguousarray(weights[order]) if weights is not None
                          else np.zeros(0, np.float32))
        # Train on renumbered copies; the fitted attributes are views in the original order.
        user_factors = np.empty_like(self.user_factors_)
        user_factors[user_pos] = self.user_factors_
        item_factors = np.empty_like(self.item_factors_)
        item_factors[item_pos] = self.item_factors_
        user_bias = np.zeros(data.n_users if self.biased else 0, np.float32)
        item_bias = np.zeros(data.n_items if self.biased else 0, np.float32)

        def run_epoch(lr: float, generator: np.random.Generator) -> float:
            col_perm = generator.permutation(self.n_blocks).astype(np.int64)
            return sgd_epoch(block_ptr, users, items, values, sample_weights, user_factors,
                             item_factors, user_bias, item_bias, mean, lr, self.reg,
                             self.reg_bias, col_perm, self.biased, lr * bias_ratio)

        self._publisher = lambda: self._publish(user_factors, item_factors, user_bias,
                                                item_bias, user_pos, item_pos)
        try:
            with numba_threads(self.n_threads, self._step_work(data.nnz)):
                self._sgd_epochs(run_epoch, total, validation, rng, progress, "BiasedMF")
        finally:
            self._publisher = None
        self.n_threads_ = resolve_n_threads(self.n_threads, self._step_work(data.nnz))

    _publisher: Callable[[], None] | None = None

    def _step_work(self, nnz: int) -> int:
        """Work of one parallel step: a stratum's ratings times the rank."""
        return nnz * self.n_factors // self.n_blocks

    def _finalize(self) -> None:
        if self._publisher is not None:
            self._publisher()

    def _publish(self, user_factors, item_factors, user_bias, item_bias, user_pos,
                 item_pos) -> None:
        """Copy the renumbered training state into the fitted attributes."""
        self.user_factors_ = user_factors[user_pos]
        self.item_factors_ = item_factors[item_pos]
        if self.biased:
            self.user_bias_ = user_bias[user_pos]
            self.item_bias_ = item_bias[item_pos]

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        target = values - self.global_mean_
        if self.biased:
            target = target - self.item_bias_[items]
        return self._ridge_fold_in(items, target, self.item_factors_[items], self.biased)


class SVDPlusPlus(_SGDModel):
    r"""SVD++ (Koren 2008): biased MF plus the implicit signal of which items a user rated.

    .. math::
        \hat r_{ui} = \mu + b_u + b_i + q_i\cdot\Big(p_u + |N(u)|^{-1/2}
        \sum_{j\in N(u)} y_j\Big)

    where :math:`N(u)` are the items ``u`` rated in training. Each epoch visits
    users in a fresh random order and handles a user's ratings together: the
    implicit sum is computed once per visit and the accumulated gradient of
    the :math:`y_j` applied once, so an epoch costs O(nnz·k) rather than
    Surprise's O(Σ_u |N(u)|²·k). Epochs run on one thread (the :math:`y_j`
    of one user touch items everywhere, so the block schedule does not apply);
    ``n_threads`` is accepted for the common vocabulary.

    Parameters
    ----------
    n_factors : int, default=100
    max_iter : int, default=50
    learning_rate : float, default=0.005
    reg : float, default=0.05
        Penalty on :math:`p_u, q_i`.
    reg_bias : float, default=0.02
    reg_implicit : float, default=0.02
        Penalty on :math:`y_j`.
    init_std : float, default=0.05
    schedule, decay, early_stopping, patience, random_state, n_threads
        As in :class:`BiasedMF`.

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, n_factors), float32
        The effective user vectors :math:`p_u + |N(u)|^{-1/2}\sum_j y_j`.
    user_own_factors_ : ndarray of shape (n_users, n_factors), float32
        :math:`p_u` alone.
    implicit_factors_ : ndarray of shape (n_items, n_factors), float32
        :math:`y_j`.
    item_factors_, user_bias_, item_bias_, global_mean_, n_iter_, loss_history_
        As in :class:`BiasedMF`.

    Notes
    -----
    :meth:`fold_in` builds the implicit sum from the history and solves for
    :math:`p_u, b_u` by ridge regression with the items fixed.

    References
    ----------
    Y. Koren. Factorization meets the neighborhood: a multifaceted
    collaborative filtering model. KDD 2008.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_SGDModel._common_constraints,
        "reg_implicit": [Interval(float, 0, None)],
    }

    def __init__(self, *, n_factors: int = 100, max_iter: int = 50, learning_rate: float = 0.005,
                 reg: float = 0.05, reg_bias: float = 0.02, reg_implicit: float = 0.02,
                 init_std: float = 0.05, schedule: str = "constant", decay: float = 0.96,
                 early_stopping: bool = False, patience: int = 3, random_state: Any = None,
                 n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.reg = reg
        self.reg_bias = reg_bias
        self.reg_implicit = reg_implicit
        self.init_std = init_std
        self.schedule = schedule
        self.decay = decay
        self.early_stopping = early_stopping
        self.patience = patience
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        rng = check_random_state(self.random_state)
        weights = data.weights if data.has_weights else None
        total = _total_weight(weights, data.nnz)
        self.global_mean_ = (float(np.dot(weights, data.ratings)) / total if weights is not None
                             else float(data.ratings.mean(dtype=np.float64)))
        self.user_own_factors_ = self._init_factors(rng, data.n_users)
        self.item_factors_ = self._init_factors(rng, data.n_items)
        self.implicit_factors_ = np.zeros((data.n_items, self.n_factors), np.float32)
        self.user_bias_ = np.zeros(data.n_users, np.float32)
        self.item_bias_ = np.zeros(data.n_items, np.float32)
        # Group each user's ratings together, in a random order fixed for the fit.
        shuffled = rng.permutation(data.nnz)
        order = shuffled[np.argsort(data.user_codes[shuffled], kind="stable")]
        items = np.ascontiguousarray(data.item_codes[order])
        values = np.ascontiguousarray(data.ratings[order])
        sample_weights = (np.ascontiguousarray(weights[order]) if weights is not None
                          else np.zeros(0, np.float32))
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(data.user_codes, minlength=data.n_users), out=indptr[1:])
        self._indptr, self._items = indptr, items

        def run_epoch(lr: float, generator: np.random.Generator) -> float:
            user_order = generator.permutation(data.n_users).astype(np.int64)
            return svdpp_epoch(indptr, items, values, sample_weights, user_order,
                               self.user_own_factors_,
                               self.item_factors_, self.implicit_factors_, self.user_bias_,
                               self.item_bias_, self.global_mean_, lr, self.reg,
                               self.reg_bias, self.reg_implicit)

        try:
            self._sgd_epochs(run_epoch, total, validation, rng, progress, "SVD++")
            self._finalize()
        finally:
            del self._indptr, self._items

    def _finalize(self) -> None:
        indptr, items = self._indptr, self._items
        counts = np.diff(indptr)
        # Σ_j y_j per user as one sparse product (robust to users with no ratings).
        membership = sp.csr_matrix((np.ones(len(items), np.float32), items, indptr),
                                   shape=(len(counts), self.implicit_factors_.shape[0]))
        sums = np.asarray(membership @ self.implicit_factors_, dtype=np.float32)
        scale = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
        self.user_factors_ = (self.user_own_factors_ + sums * scale[:, None]).astype(np.float32)

    def _after_restore(self) -> None:
        self._finalize()

    def _state_arrays(self) -> list[str]:
        return ["user_own_factors_", "item_factors_", "implicit_factors_", "user_bias_",
                "item_bias_"]

    def _implicit_sum(self, items: np.ndarray) -> np.ndarray:
        if len(items) == 0:
            return np.zeros(self.n_factors, dtype=np.float32)
        return (self.implicit_factors_[items].sum(axis=0) / np.sqrt(len(items))).astype(
            np.float32)

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        z = self._implicit_sum(items)
        target = (values - self.global_mean_ - self.item_bias_[items]
                  - self.item_factors_[items].astype(np.float64) @ z)
        own = self._ridge_fold_in(items, target, self.item_factors_[items], True)
        return UserVector((own.factors + z).astype(np.float32), own.bias)

    def _validate_state(self) -> None:
        super()._validate_state()
        if self.implicit_factors_.shape != self.item_factors_.shape:
            raise ValueError("implicit_factors_ must match item_factors_")
        if self.user_own_factors_.shape != self.user_factors_.shape:
            raise ValueError("user_own_factors_ must match user_factors_")
