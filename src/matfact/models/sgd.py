r"""Gradient-descent factorization: :class:`BiasedMF` ("Funk SVD") and :class:`SVDPlusPlus`.

Both minimize the regularized squared error over the observed ratings,

.. math::
    \sum_{(u,i)} w_{ui}\,(r_{ui} - \hat r_{ui})^2
    + \lambda (\lVert p_u\rVert^2 + \lVert q_i\rVert^2)
    + \lambda_b (b_u^2 + b_i^2),

by stochastic gradient descent; the kernels and their update rules are in
:mod:`matfact._kernels.sgd`. The time options (``time_decay``, ``time_bins``)
keep their state and scoring terms in :class:`matfact.models._time.TimeAwareBiases`,
which both models inherit; this module trains them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from matfact._kernels.sgd import sgd_epoch, sgd_time_epoch, svdpp_epoch, svdpp_time_epoch
from matfact._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Interval,
    Options,
    check_random_state,
)
from matfact._threads import numba_threads, resolve_n_threads, single_thread
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, DivergenceError, ParameterError
from matfact.models._iterative import IterativeModel
from matfact.models._layout import blocked_ratings
from matfact.models._time import TimeAwareBiases
from matfact.models._updates import all_or_nothing
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


@contextlib.contextmanager
def _threads_for(n_threads: int, work: int) -> Iterator[None]:
    """:func:`numba_threads`, without its BLAS limits (costly to set up) for one thread."""
    with numba_threads(n_threads, work) if n_threads > 1 else single_thread():
        yield


def _writable(array: np.ndarray) -> np.ndarray:
    """``array`` itself if the kernels may update it in place, else a copy (e.g. after load)."""
    return array if array.flags.writeable and array.flags.c_contiguous else array.copy()


#: Ratings per step when the kernel-order arrays are gathered (bounds the temporaries).
_GATHER_CHUNK = 1 << 18


def _kernel_arrays(order: np.ndarray, user_codes: np.ndarray, item_codes: np.ndarray,
                   ratings: np.ndarray, weights: np.ndarray | None, user_pos: np.ndarray,
                   item_pos: np.ndarray) -> tuple[np.ndarray, ...]:
    """Renumbered users and items, ratings and weights in kernel ``order``.

    The same as ``user_pos[user_codes[order]]`` (int32), ``item_pos[item_codes[order]]``,
    ``ratings[order]`` and ``weights[order]`` (empty for None), but gathered chunk by
    chunk, with the int32 ``order`` itself overwritten by the users: the peak is the
    result (12 bytes per rating, 16 with weights), not the result plus ``order`` and a
    full-length temporary (measured at 30M ratings, docs/reliability.md).
    """
    n = len(order)
    users = order if order.dtype == np.int32 else np.empty(n, np.int32)
    items = np.empty(n, np.int32)
    values = np.empty(n, ratings.dtype)
    sample_weights = (np.empty(n, weights.dtype) if weights is not None
                      else np.zeros(0, np.float32))
    user_pos32, item_pos32 = user_pos.astype(np.int32), item_pos.astype(np.int32)
    for start in range(0, n, _GATHER_CHUNK):
        part = slice(start, start + _GATHER_CHUNK)
        index = order[part].copy()  # before ``users`` (maybe ``order`` itself) is written
        items[part] = item_pos32[item_codes[index]]
        values[part] = ratings[index]
        if weights is not None:
            sample_weights[part] = weights[index]
        users[part] = user_pos32[user_codes[index]]
    return users, items, values, sample_weights


class _SGDModel(TimeAwareBiases, IterativeModel):
    """The SGD parts BiasedMF and SVD++ share: schedule, epochs, ridge fold-in, partial_fit steps.

    The iteration loop around the epochs (loss history, validation, early stopping,
    callback, divergence) is :class:`~matfact.models._iterative.IterativeModel`'s. The
    time-aware state of ``time_decay`` / ``time_bins`` (decayed weights, time-bin item
    biases, user drift, ``predict(times=...)``, its growth in ``partial_fit``) is
    :class:`~matfact.models._time.TimeAwareBiases`', a mixin listed first so that its
    scoring overrides wrap :class:`~matfact.models.base.FactorModel`'s.
    """

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

    # ------------------------------------------------------------------ partial_fit
    def _partial_rng(self, n_ratings: int) -> np.random.Generator:
        """A generator for ``partial_fit``, seeded by ``random_state`` and the model's size."""
        seed = self.random_state
        if seed is None or isinstance(seed, np.random.Generator):
            return np.random.default_rng(None)
        return np.random.default_rng([seed, self.n_users_, self.n_items_, n_ratings])

    def _grow_factors(self, rng: np.random.Generator, n_users: int, n_items: int) -> None:
        """New users and items start like in ``fit``: small random factors, zero biases."""
        new_users, new_items = self.n_users_ - n_users, self.n_items_ - n_items
        if new_users:
            self.user_factors_ = np.vstack([self.user_factors_,
                                            self._init_factors(rng, new_users)])
            if self.user_bias_ is not None:
                self.user_bias_ = np.concatenate([self.user_bias_,
                                                  np.zeros(new_users, np.float32)])
        if new_items:
            self.item_factors_ = np.vstack([self.item_factors_,
                                            self._init_factors(rng, new_items)])
            if self.item_bias_ is not None:
                self.item_bias_ = np.concatenate([self.item_bias_,
                                                  np.zeros(new_items, np.float32)])

    def _check_partial_epochs(self, max_iter: int | None, default: int) -> int:
        n = default if max_iter is None else max_iter
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ParameterError(f"partial_fit: max_iter must be an integer ≥ 1, got {max_iter!r}")
        return int(n)

    def _check_loss(self, sse: float, epoch: int) -> None:
        if not np.isfinite(sse):
            raise DivergenceError(f"{type(self).__name__}.partial_fit diverged at epoch "
                                  f"{epoch + 1}; {self._divergence_hint()}")


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
    time_decay : float or None, default=None
        Half-life in days of an exponential time decay: a rating ``age`` days
        older than the newest one weighs :math:`2^{-\text{age}/h}` (times its
        sample weight). Needs timestamps. See :func:`matfact.models._time.decay_weights`.
    time_bins : int or None, default=None
        Koren's (2009) time-aware biases: the training period is cut into this
        many equal bins and the prediction becomes :math:`\mu + b_u +
        \alpha_u\,\text{dev}_u(t) + b_i + b_{i,\text{Bin}(t)} + p_u\cdot q_i`
        with :math:`\text{dev}_u(t) = \operatorname{sign}(t - t_u)|t - t_u|^{0.4}`
        (days, :math:`t_u` the user's mean rating day, scaled by its mean
        magnitude). Bin biases and drift take the biases' step size.
        :meth:`predict` takes ``times=``; without it, "now": the newest bin and
        each user's drift at their latest rating. Needs timestamps and
        ``biased=True``.
    reg_time : float, default=0.1
        :math:`\lambda_t`, L2 penalty of the bin biases and drift coefficients,
        per rating (bins hold few ratings each, so more than ``reg_bias``).
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
    time_newest_ : int
        With ``time_decay`` or ``time_bins``: the newest timestamp seen ("now").
    rating_times_ : ndarray of shape (nnz,), int64
        With a time option: each kept rating's time, in ``seen_``'s CSR order.
    item_bin_bias_ : ndarray of shape (n_items, n_bins), float32
        With ``time_bins``: :math:`b_{i,\text{bin}}` (``partial_fit`` may add bins).
    user_drift_ : ndarray of shape (n_users,), float32
        With ``time_bins``: :math:`\alpha_u`.

    Notes
    -----
    Defaults were chosen on validation splits of MovieLens 100K's training
    folds (never its test folds); see ``docs/sgd.md``. :meth:`fold_in` places a
    new user by an exact ridge solve with the items fixed; :meth:`partial_fit`
    adds ratings, users and items with a few SGD epochs (see ``docs/time.md``).

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

    @property
    def _symmetric_fold_in(self) -> bool:  # type: ignore[override]
        # Users and items play the same part, except in the time-bin item biases.
        return not self._has_time_bias()

    _parameter_constraints: ClassVar[dict] = {
        **_SGDModel._common_constraints,
        "learning_rate_bias": [Options(None), Interval(float, 0, None, closed="neither")],
        "biased": [BOOLEAN],
        "n_blocks": [Interval(int, 1, None)],
        "time_decay": [Options(None), Interval(float, 0, None, closed="neither")],
        "time_bins": [Options(None), Interval(int, 1, None)],
        "reg_time": [Interval(float, 0, None)],
    }

    def __init__(self, *, n_factors: int = 100, max_iter: int = 40, learning_rate: float = 0.01,
                 learning_rate_bias: float | None = None, reg: float = 0.1,
                 reg_bias: float = 0.02, init_std: float = 0.02, biased: bool = True,
                 schedule: str = "constant", decay: float = 0.96,
                 early_stopping: bool = False, patience: int = 3, n_blocks: int = 16,
                 time_decay: float | None = None, time_bins: int | None = None,
                 reg_time: float = 0.1, random_state: Any = None,
                 n_threads: int | None = None) -> None:
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
        self.time_decay = time_decay
        self.time_bins = time_bins
        self.reg_time = reg_time
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        if self.time_bins is not None and not self.biased:
            raise ParameterError("BiasedMF: time_bins adds time-dependent biases and needs "
                                 "biased=True; set time_bins=None or biased=True")
        rng = check_random_state(self.random_state)
        times = self._start_time_state(data)
        weights = data.weights if data.has_weights else None
        if times is not None:
            weights = self._decayed_weights(weights, times, self.time_newest_)
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
        bias_lr = self._bias_ratio()
        order, block_ptr, user_pos, item_pos, _ = blocked_ratings(
            data.user_codes, data.item_codes, data.n_users, data.n_items, self.n_blocks, rng)
        # Train on renumbered copies; the fitted attributes are views in the original order.
        user_factors = np.empty_like(self.user_factors_)
        user_factors[user_pos] = self.user_factors_
        item_factors = np.empty_like(self.item_factors_)
        item_factors[item_pos] = self.item_factors_
        # Peak memory: one copy of the factors beside the per-rating arrays, not two.
        # The attributes are None until published: after each epoch when something
        # reads them during the fit (validation, early stopping, a callback), else once
        # at the end, after the per-rating arrays are freed.
        self.user_factors_ = self.item_factors_ = None
        timed = self._has_time_bias()
        if timed:
            bins, devs = self._time_features(data.user_codes[order], times[order])
            item_bin_bias = np.zeros_like(self.item_bin_bias_)
            user_drift = np.zeros_like(self.user_drift_)
        users, items, values, sample_weights = _kernel_arrays(
            order, data.user_codes, data.item_codes, ratings, weights, user_pos, item_pos)
        del order  # now ``users`` (overwritten in place)
        user_bias = np.zeros(data.n_users if self.biased else 0, np.float32)
        item_bias = np.zeros(data.n_items if self.biased else 0, np.float32)

        def run_epoch(lr: float, generator: np.random.Generator) -> float:
            col_perm = generator.permutation(self.n_blocks).astype(np.int64)
            if timed:
                sse = sgd_time_epoch(block_ptr, users, items, values, sample_weights, bins,
                                     devs, user_factors, item_factors, user_bias, item_bias,
                                     item_bin_bias, user_drift, mean, lr, self.reg,
                                     self.reg_bias, self.reg_time, col_perm, lr * bias_lr)
            else:
                sse = sgd_epoch(block_ptr, users, items, values, sample_weights, user_factors,
                                item_factors, user_bias, item_bias, mean, lr, self.reg,
                                self.reg_bias, col_perm, self.biased, lr * bias_lr)
            if self._callback is not None:
                publish()  # the callback sees this epoch's model
            return sse

        def publish() -> None:
            self._publish(user_factors, item_factors, user_bias, item_bias, user_pos,
                          item_pos)
            if timed:
                self.item_bin_bias_ = item_bin_bias[item_pos]
                self.user_drift_ = user_drift[user_pos]

        self._publisher = publish if validation is not None else None
        try:
            with numba_threads(self.n_threads, self._step_work(data.nnz)):
                self._sgd_epochs(run_epoch, total, validation, rng, progress, "BiasedMF")
        finally:
            self._publisher = None
        if validation is None:  # else published by the epochs (and early stopping)
            del users, items, values, sample_weights
            if timed:
                del bins, devs
            publish()
        self.n_threads_ = resolve_n_threads(self.n_threads, self._step_work(data.nnz))

    _publisher: Callable[[], None] | None = None

    def _bias_ratio(self) -> float:
        """Bias step size as a fraction of the factors' (``learning_rate_bias`` / lr)."""
        return (0.25 if self.learning_rate_bias is None
                else self.learning_rate_bias / self.learning_rate)

    def _step_work(self, nnz: int) -> int:
        """Work of one parallel step: a stratum's ratings times the rank."""
        return nnz * self.n_factors // self.n_blocks

    def _finalize(self) -> None:
        if self._publisher is not None:
            self._publisher()

    def _publish(self, user_factors, item_factors, user_bias, item_bias, user_pos,
                 item_pos) -> None:
        """Copy the renumbered training state into the fitted attributes."""
        # Each old array is let go before its replacement is made: during the epochs
        # (validation, a callback) no third copy of the factors joins the per-rating arrays.
        self.user_factors_ = None
        self.user_factors_ = user_factors[user_pos]
        self.item_factors_ = None
        self.item_factors_ = item_factors[item_pos]
        if self.biased:
            self.user_bias_ = user_bias[user_pos]
            self.item_bias_ = item_bias[item_pos]

    def _state_arrays(self) -> list[str]:
        return super()._state_arrays() + self._time_state_arrays()

    @all_or_nothing
    def partial_fit(self, interactions: Interactions, *, max_iter: int | None = None,
                    sample_old: float = 0.0, progress: bool = False) -> BiasedMF:
        r"""Add new ratings (new users and items too) and refine without starting over.

        The new ratings are merged into those the model keeps (a repeated
        pair takes the new rating), the id maps grow, and new users and items
        start from small random factors and zero biases. Then ``max_iter``
        SGD epochs run from the current state over the new ratings, plus, with
        ``sample_old > 0``, a random sample of old ratings (rehearsal, which
        keeps items' factors from following the newest ratings only). The
        global mean :math:`\mu` stays that of ``fit``.

        The defaults were measured on a monthly replay of ml-latest-small
        (``docs/time.md``): rehearsal made RMSE and NDCG worse there (recent
        ratings predict the next month best), so it is off by default.

        With ``time_decay`` the ages count from the newest timestamp seen so
        far (old ratings keep their own times); with ``time_bins`` new bins are
        appended for times after training and :math:`t_u` is recomputed.
        Sample weights of earlier data are not kept.

        Parameters
        ----------
        interactions : Interactions
            New explicit ratings (with timestamps if the model uses time).
        max_iter : int, default=None
            Epochs over the new (and sampled old) ratings; None means 10.
        sample_old : float, default=0.0
            Old ratings replayed per new rating, sampled with replacement
            (0 trains on the new ones only).
        progress : bool, default=False
            Accepted for symmetry with :meth:`fit`; the epochs are short.

        Returns
        -------
        self
        """
        n_epochs = self._check_partial_epochs(max_iter, 10)
        if not (isinstance(sample_old, (int, float, np.floating, np.integer))
                and not isinstance(sample_old, bool) and np.isfinite(sample_old)
                and sample_old >= 0):
            raise ParameterError(f"partial_fit: sample_old must be a number ≥ 0, got "
                                 f"{sample_old!r}")
        merged, n_users, n_items, new = self._merge_with_times(interactions)
        rng = self._partial_rng(merged.nnz)
        self._grow_factors(rng, n_users, n_items)
        seen = self.seen_
        rows = np.repeat(np.arange(self.n_users_, dtype=np.int64), np.diff(seen.indptr))
        self._grow_time_state(rows)
        # CSR order is the order of the keys user·n_items + item: the new ratings'
        # positions are a binary search away. Old ratings are sampled with replacement
        # (cheaper than without, and as good for rehearsal).
        keys = rows * self.n_items_ + seen.indices
        new_keys = np.unique(new.user_codes.astype(np.int64) * self.n_items_ + new.item_codes)
        new_positions = np.searchsorted(keys, new_keys)
        n_old = int(round(sample_old * len(new_positions))) if len(keys) > len(new_keys) else 0
        sampled = rng.integers(0, len(keys), n_old)
        sampled = sampled[keys[sampled] != new_keys[np.minimum(
            np.searchsorted(new_keys, keys[sampled]), len(new_keys) - 1)]]
        chosen = np.concatenate([new_positions, sampled])
        users, items = rows[chosen], seen.indices[chosen]
        ratings = seen.data[chosen].astype(np.float32)
        times = None
        weights = None
        if getattr(self, "rating_times_", None) is not None:
            times = self.rating_times_[chosen]
            weights = self._decayed_weights(None, times, self.time_newest_)
        work = self._step_work(len(chosen))
        # Small updates run on one thread: then one block (a single parallel region
        # per epoch) and no BLAS pool juggling, whose setup costs more than the epochs.
        n_threads = resolve_n_threads(self.n_threads, work)
        n_blocks = 1 if n_threads == 1 else self.n_blocks
        order, block_ptr, _, _, _ = blocked_ratings(users, items, self.n_users_,
                                                    self.n_items_, n_blocks, rng)
        # The blocks only need users and items in disjoint groups, which holds in the
        # original numbering too: train the fitted arrays in place.
        k_users = np.ascontiguousarray(users[order], dtype=np.int32)
        k_items = np.ascontiguousarray(items[order], dtype=np.int32)
        values = np.ascontiguousarray(ratings[order])
        sample_weights = (np.ascontiguousarray(weights[order]) if weights is not None
                          else np.zeros(0, np.float32))
        self.user_factors_ = _writable(self.user_factors_)
        self.item_factors_ = _writable(self.item_factors_)
        user_bias = _writable(self.user_bias_) if self.biased else np.zeros(0, np.float32)
        item_bias = _writable(self.item_bias_) if self.biased else np.zeros(0, np.float32)
        timed = self._has_time_bias()
        if timed:
            bins, devs = self._time_features(k_users, times[order])
        bias_lr = self._bias_ratio()
        with _threads_for(n_threads, work):
            for epoch in range(n_epochs):
                lr = self._learning_rate(epoch)
                col_perm = rng.permutation(n_blocks).astype(np.int64)
                if timed:
                    sse = sgd_time_epoch(block_ptr, k_users, k_items, values, sample_weights,
                                         bins, devs, self.user_factors_, self.item_factors_,
                                         user_bias, item_bias, self.item_bin_bias_,
                                         self.user_drift_, self.global_mean_, lr, self.reg,
                                         self.reg_bias, self.reg_time, col_perm, lr * bias_lr)
                else:
                    sse = sgd_epoch(block_ptr, k_users, k_items, values, sample_weights,
                                    self.user_factors_, self.item_factors_, user_bias,
                                    item_bias, self.global_mean_, lr, self.reg, self.reg_bias,
                                    col_perm, self.biased, lr * bias_lr)
                self._check_loss(sse, epoch)
        if self.biased:
            self.user_bias_, self.item_bias_ = user_bias, item_bias
        return self

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        target = values - self.global_mean_
        if self.biased:
            target = target - self.item_bias_[items]
        target = target - self._now_bin_bias(items)
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
    time_bins : int or None, default=None
        Koren's (2009) time-aware biases, as in :class:`BiasedMF`
        (timeSVD++'s baseline): :math:`b_u + \alpha_u\,\text{dev}_u(t) + b_i +
        b_{i,\text{Bin}(t)}`. Needs timestamps; :meth:`predict` takes ``times=``.
    reg_time : float, default=0.1
        Penalty of the bin biases and drift coefficients.
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
    time_newest_, rating_times_, item_bin_bias_, user_drift_
        With ``time_bins``, as in :class:`BiasedMF`.

    Notes
    -----
    :meth:`fold_in` builds the implicit sum from the history and solves for
    :math:`p_u, b_u` by ridge regression with the items fixed;
    :meth:`partial_fit` adds ratings, users and items with a few epochs over
    the users who rated something new.

    References
    ----------
    Y. Koren. Factorization meets the neighborhood: a multifaceted
    collaborative filtering model. KDD 2008.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_SGDModel._common_constraints,
        "reg_implicit": [Interval(float, 0, None)],
        "time_bins": [Options(None), Interval(int, 1, None)],
        "reg_time": [Interval(float, 0, None)],
    }

    def __init__(self, *, n_factors: int = 100, max_iter: int = 50, learning_rate: float = 0.005,
                 reg: float = 0.05, reg_bias: float = 0.02, reg_implicit: float = 0.02,
                 init_std: float = 0.05, schedule: str = "constant", decay: float = 0.96,
                 early_stopping: bool = False, patience: int = 3,
                 time_bins: int | None = None, reg_time: float = 0.1,
                 random_state: Any = None, n_threads: int | None = None) -> None:
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
        self.time_bins = time_bins
        self.reg_time = reg_time
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        rng = check_random_state(self.random_state)
        times = self._start_time_state(data)
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
        time_features = (self._time_features(data.user_codes[order], times[order])
                         if self._has_time_bias() else None)

        def run_epoch(lr: float, generator: np.random.Generator) -> float:
            user_order = generator.permutation(data.n_users).astype(np.int64)
            return self._epoch(indptr, items, values, sample_weights, time_features,
                               user_order, lr)

        try:
            self._sgd_epochs(run_epoch, total, validation, rng, progress, "SVD++")
            self._finalize()
        finally:
            del self._indptr, self._items

    def _epoch(self, indptr, items, values, sample_weights, time_features, user_order,
               lr: float) -> float:
        """One SVD++ epoch over ``user_order`` (with the time terms when fitted with them)."""
        if time_features is not None:
            bins, devs = time_features
            return svdpp_time_epoch(indptr, items, values, sample_weights, bins, devs,
                                    user_order, self.user_own_factors_, self.item_factors_,
                                    self.implicit_factors_, self.user_bias_, self.item_bias_,
                                    self.item_bin_bias_, self.user_drift_, self.global_mean_,
                                    lr, self.reg, self.reg_bias, self.reg_implicit,
                                    self.reg_time)
        return svdpp_epoch(indptr, items, values, sample_weights, user_order,
                           self.user_own_factors_, self.item_factors_, self.implicit_factors_,
                           self.user_bias_, self.item_bias_, self.global_mean_, lr, self.reg,
                           self.reg_bias, self.reg_implicit)

    @all_or_nothing
    def partial_fit(self, interactions: Interactions, *, max_iter: int | None = None,
                    progress: bool = False) -> SVDPlusPlus:
        r"""Add new ratings (new users and items too) and refine without starting over.

        The new ratings are merged into those the model keeps (a repeated
        pair takes the new rating) and the id maps grow; new users and items
        start from small random :math:`p_u, q_i`, zero :math:`y_j` and zero
        biases. Then ``max_iter`` epochs visit, in random order, every user
        with a new rating, over all of that user's ratings (the implicit sum
        :math:`|N(u)|^{-1/2}\sum_j y_j` needs the whole history). The global
        mean stays that of ``fit``; sample weights of earlier data are not kept.

        Parameters
        ----------
        interactions : Interactions
            New explicit ratings (with timestamps if fitted with ``time_bins``).
        max_iter : int, default=None
            Epochs; None means 5.
        progress : bool, default=False
            Accepted for symmetry with :meth:`fit`.

        Returns
        -------
        self
        """
        n_epochs = self._check_partial_epochs(max_iter, 5)
        merged, n_users, n_items, new = self._merge_with_times(interactions)
        rng = self._partial_rng(merged.nnz)
        new_users, new_items = self.n_users_ - n_users, self.n_items_ - n_items
        self.user_own_factors_ = _writable(np.vstack([self.user_own_factors_,
                                                      self._init_factors(rng, new_users)]))
        self.item_factors_ = _writable(np.vstack([self.item_factors_,
                                                  self._init_factors(rng, new_items)]))
        self.implicit_factors_ = _writable(np.vstack([
            self.implicit_factors_, np.zeros((new_items, self.n_factors), np.float32)]))
        self.user_bias_ = _writable(np.concatenate([self.user_bias_,
                                                    np.zeros(new_users, np.float32)]))
        self.item_bias_ = _writable(np.concatenate([self.item_bias_,
                                                    np.zeros(new_items, np.float32)]))
        seen = self.seen_
        rows = np.repeat(np.arange(self.n_users_), np.diff(seen.indptr))
        self._grow_time_state(rows)
        # Each touched user's ratings, in a random order within the user (as in fit).
        touched = np.unique(new.user_codes)
        in_touched = np.zeros(self.n_users_, dtype=bool)
        in_touched[touched] = True
        positions = np.flatnonzero(in_touched[rows])
        positions = positions[np.lexsort((rng.random(len(positions)), rows[positions]))]
        items = np.ascontiguousarray(seen.indices[positions], dtype=np.int32)
        values = np.ascontiguousarray(seen.data[positions], dtype=np.float32)
        indptr = np.zeros(self.n_users_ + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[positions], minlength=self.n_users_), out=indptr[1:])
        time_features = (self._time_features(rows[positions], self.rating_times_[positions])
                         if self._has_time_bias() else None)
        for epoch in range(n_epochs):
            user_order = rng.permutation(touched).astype(np.int64)
            sse = self._epoch(indptr, items, values, np.zeros(0, np.float32), time_features,
                              user_order, self._learning_rate(epoch))
            self._check_loss(sse, epoch)
        self._indptr, self._items = seen.indptr.astype(np.int64), seen.indices
        try:
            self._finalize()
        finally:
            del self._indptr, self._items
        return self

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
                "item_bias_", *self._time_state_arrays()]

    def _implicit_sum(self, items: np.ndarray) -> np.ndarray:
        if len(items) == 0:
            return np.zeros(self.n_factors, dtype=np.float32)
        return (self.implicit_factors_[items].sum(axis=0) / np.sqrt(len(items))).astype(
            np.float32)

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        z = self._implicit_sum(items)
        target = (values - self.global_mean_ - self.item_bias_[items]
                  - self.item_factors_[items].astype(np.float64) @ z)
        target = target - self._now_bin_bias(items)
        own = self._ridge_fold_in(items, target, self.item_factors_[items], True)
        return UserVector((own.factors + z).astype(np.float32), own.bias)

    _user_arrays: ClassVar[tuple[str, ...]] = (*_SGDModel._user_arrays, "user_own_factors_")
    _item_arrays: ClassVar[tuple[str, ...]] = (*_SGDModel._item_arrays, "implicit_factors_")

    def _after_user_update(self, codes: np.ndarray) -> None:
        # p_u is kept apart from the implicit sum over the user's items: split the new vector.
        if not self.user_own_factors_.flags.writeable:
            self.user_own_factors_ = self.user_own_factors_.copy()
        seen = self.seen_
        for code in codes:
            items = seen.indices[seen.indptr[code]:seen.indptr[code + 1]]
            self.user_own_factors_[code] = self.user_factors_[code] - self._implicit_sum(items)

    def _validate_state(self) -> None:
        super()._validate_state()
        if self.implicit_factors_.shape != self.item_factors_.shape:
            raise ValueError("implicit_factors_ must match item_factors_")
        if self.user_own_factors_.shape != self.user_factors_.shape:
            raise ValueError("user_own_factors_ must match user_factors_")
