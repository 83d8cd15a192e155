r"""Time in the models: decayed sample weights, time bins, user drift, per-rating times.

One place computes the exponential time decay used by every model that takes
weights (:class:`~matfact.ALS`, :class:`~matfact.ImplicitALS`,
:class:`~matfact.BiasedMF`): a rating ``age`` days older than the newest one
the model has seen weighs

.. math::
    w_{ui} \;\leftarrow\; w_{ui}\, 2^{-\text{age}_{ui} / h}

with ``h = time_decay`` the half-life in days. The same module holds the
helpers of Koren's (2009) time-aware biases (bins of item bias, user drift
:math:`\text{dev}_u(t) = \operatorname{sign}(t - t_u)\,|t - t_u|^{\beta}`) and
keeps each training rating's timestamp aligned with the model's ``seen_``
matrix, so ``partial_fit`` can re-weigh old ratings when newer ones arrive.

The functions are pure; :class:`TimeAwareBiases` is the time state of the SGD
models (:class:`~matfact.BiasedMF`, :class:`~matfact.SVDPlusPlus`), a mixin that
records it at fit, grows it in ``partial_fit``, checks it on load and adds its
terms to the scores.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from matfact.data.interactions import MAX_TIMESTAMP, Interactions
from matfact.exceptions import DataError, ParameterError

__all__ = ["SECONDS_PER_DAY", "DRIFT_BETA", "decay_weights", "require_timestamps",
           "decayed", "csr_times", "merge_times", "merge_with_times", "in_data_order",
           "with_timestamps", "as_times", "user_mean_days",
           "user_last_times", "drift",
           "time_bin", "TimeAwareBiases"]

SECONDS_PER_DAY = 86_400.0
#: Exponent β of Koren's user drift :math:`|t - t_u|^\beta` (0.4 in the paper).
DRIFT_BETA = 0.4


def decay_weights(timestamps: Any, half_life_days: float, now: Any = None) -> np.ndarray:
    r"""Exponential time-decay weights :math:`2^{-\text{age}/h}`, age in days before ``now``.

    Parameters
    ----------
    timestamps : array-like of shape (n,)
        Unix seconds.
    half_life_days : float
        :math:`h > 0`: a rating this many days older than ``now`` weighs ½.
    now : int, default=None
        Unix seconds of "now"; the newest timestamp by default. Ratings newer
        than ``now`` weigh 1 (their age is taken as 0).

    Returns
    -------
    weights : ndarray of shape (n,), float32
        In (0, 1]; 1 for the newest rating.

    Examples
    --------
    >>> day = 86_400
    >>> decay_weights([0, 10 * day, 20 * day], half_life_days=10).tolist()
    [0.25, 0.5, 1.0]
    """
    times = np.asarray(timestamps, dtype=np.int64)
    if not (np.isfinite(half_life_days) and half_life_days > 0):
        raise ParameterError(f"half_life_days must be a positive number of days, got "
                             f"{half_life_days!r}")
    if times.size == 0:
        return np.zeros(0, dtype=np.float32)
    newest = int(times.max()) if now is None else int(now)
    age_days = np.maximum(newest - times, 0).astype(np.float64) / SECONDS_PER_DAY
    return np.exp2(-age_days / float(half_life_days)).astype(np.float32)


def require_timestamps(data: Interactions, model: str, option: str) -> np.ndarray:
    """The data's timestamps, or a :class:`DataError` saying ``option`` needs them."""
    if data.timestamps is None:
        raise DataError(
            f"{model}: {option} needs timestamps, but the data has none; build it with "
            f"timestamps (e.g. Interactions.from_pandas(df, ..., timestamp='timestamp')) "
            f"or set {option}=None"
        )
    return data.timestamps


def _full_scale(data: Interactions) -> tuple[float, ...] | None:
    """``data``'s declared rating scale with its step, to rebuild data on the same scale."""
    if data.rating_scale is None or data.rating_step is None:
        return data.rating_scale
    return (*data.rating_scale, data.rating_step)


def decayed(data: Interactions, half_life_days: float, now: int) -> Interactions:
    """``data`` with its weights multiplied by :func:`decay_weights` (ages before ``now``).

    For implicit data the weights are the interaction strengths, so old
    interactions count less; for explicit data they are sample weights.
    """
    weights = decay_weights(data.timestamps, half_life_days, now)
    if data.has_weights:
        weights = weights * data.weights
    return Interactions(
        data.user_codes, data.item_codes, data.user_index, data.item_index,
        ratings=data.ratings, weights=weights, timestamps=data.timestamps,
        user_features=data.user_features, item_features=data.item_features,
        rating_scale=_full_scale(data),
    )


def csr_times(users: np.ndarray, items: np.ndarray, times: np.ndarray,
              n_items: int) -> np.ndarray:
    """Timestamps in the order of the CSR matrix of these pairs (a repeated pair: the last).

    ``np.unique`` sorts the keys ``user · n_items + item``, which is exactly
    the row-major, column-sorted order of a canonical CSR matrix.
    """
    keys = users.astype(np.int64) * np.int64(n_items) + items.astype(np.int64)
    _, last = np.unique(keys[::-1], return_index=True)
    return np.asarray(times, dtype=np.int64)[len(keys) - 1 - last]


def merge_times(old_users: np.ndarray, old_items: np.ndarray, old_times: np.ndarray,
                new: Interactions, n_items: int) -> np.ndarray:
    """Per-rating times of the data ``_merge_new`` builds, in its ``seen_`` (CSR) order.

    ``old_*`` describe the model's ``seen_`` before the merge (row, col in
    CSR order, and their times); ``new`` is the new data in the extended id
    maps. As in the merge, a repeated pair takes the new rating's time.
    """
    users = np.concatenate([old_users, new.user_codes]).astype(np.int64)
    items = np.concatenate([old_items, new.item_codes]).astype(np.int64)
    times = np.concatenate([old_times, new.timestamps]).astype(np.int64)
    return csr_times(users, items, times, n_items)


def merge_with_times(model: Any, interactions: Any,
                     option: str) -> tuple[Interactions, int, int, Interactions]:
    """``model._merge_new(interactions)``, keeping the model's per-rating times up to date.

    ``Recommender._merge_new`` drops timestamps, so a model that keeps
    ``rating_times_`` (in ``seen_``'s CSR order) merges them here the same way
    (a repeated pair takes the new time) and moves ``time_newest_`` forward.

    Returns
    -------
    merged : Interactions
        What ``_merge_new`` returned (no timestamps).
    n_users, n_items : int
        The numbers of users and items before the merge.
    new : Interactions
        ``interactions`` in the extended id maps (with its timestamps).
    """
    model._check_fitted()
    data = model._check_training_data(interactions)
    timed = getattr(model, "rating_times_", None) is not None
    if timed:
        require_timestamps(data, type(model).__name__, option)
        old = model.seen_.tocoo()
        old_users, old_items, old_times = old.row, old.col, model.rating_times_
    merged, n_users, n_items = model._merge_new(data)
    new = data._reindex(model.user_index_, model.item_index_)
    if timed:
        model.rating_times_ = merge_times(old_users, old_items, old_times, new, model.n_items_)
        model.time_newest_ = max(model.time_newest_, int(new.timestamps.max()))
    return merged, n_users, n_items, new


def in_data_order(data: Interactions, times_csr: np.ndarray) -> np.ndarray:
    """Per-rating times given in CSR order, rearranged to ``data``'s order (no repeated pairs)."""
    keys = data.user_codes.astype(np.int64) * np.int64(data.n_items) + data.item_codes
    out = np.empty(len(keys), dtype=np.int64)
    out[np.argsort(keys, kind="stable")] = times_csr
    return out


def with_timestamps(data: Interactions, times: np.ndarray) -> Interactions:
    """``data`` carrying the given per-rating ``times``."""
    return Interactions(
        data.user_codes, data.item_codes, data.user_index, data.item_index,
        ratings=data.ratings, weights=data.weights if data.has_weights else None,
        timestamps=times, user_features=data.user_features,
        item_features=data.item_features, rating_scale=_full_scale(data),
    )


def as_times(times: Any, n: int) -> np.ndarray:
    """Query times (Unix seconds, datetimes or strings), broadcast to shape (n,), int64."""
    if np.isscalar(times) or isinstance(times, (pd.Timestamp, np.datetime64)):
        times = [times]
    series = pd.Series(np.asarray(times).reshape(-1) if not isinstance(times, pd.Series)
                       else times)
    if series.dtype.kind in "OUS":
        try:
            series = pd.to_datetime(series)
        except (ValueError, TypeError):
            raise DataError("times must be Unix seconds or datetimes") from None
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        values = series.to_numpy().astype("datetime64[s]").astype(np.int64)
    else:
        values = series.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all() or (np.abs(values) > MAX_TIMESTAMP).any():
            raise DataError(f"times must be finite Unix seconds within ±{MAX_TIMESTAMP:,} "
                            f"(the year 10000)")
        values = np.round(values).astype(np.int64)
    if len(values) == 1:
        return np.full(n, values[0], dtype=np.int64)
    if len(values) != n:
        raise DataError(f"got {len(values)} times for {n} (user, item) pairs; give one time "
                        f"per pair, or one for all")
    return values


def user_mean_days(user_codes: np.ndarray, times: np.ndarray, n_users: int) -> np.ndarray:
    """:math:`t_u`: each user's mean rating day (float64 days since the epoch; 0 if none)."""
    counts = np.bincount(user_codes, minlength=n_users).astype(np.float64)
    sums = np.bincount(user_codes, weights=np.asarray(times, np.float64) / SECONDS_PER_DAY,
                       minlength=n_users)
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), 0.0)


def user_last_times(user_codes: np.ndarray, times: np.ndarray, n_users: int) -> np.ndarray:
    """Each user's latest rating time (Unix seconds, int64; 0 for a user without ratings)."""
    last = np.zeros(n_users, dtype=np.int64)
    if len(user_codes):
        order = np.lexsort((times, user_codes))
        ends = np.flatnonzero(np.r_[np.diff(user_codes[order]) != 0, True])
        last[user_codes[order][ends]] = np.asarray(times, np.int64)[order][ends]
    return last


def drift(times: np.ndarray, mean_days: np.ndarray, scale: float) -> np.ndarray:
    r""":math:`\text{dev}_u(t) / s = \operatorname{sign}(t - t_u)|t - t_u|^{\beta} / s`, float32.

    ``mean_days`` is :math:`t_u` per pair; ``scale`` :math:`s` is the mean
    :math:`|\text{dev}|` over the training ratings, so the drift coefficient
    :math:`\alpha_u` is in rating units per typical deviation (and the bias
    step size and penalty suit it).
    """
    delta = np.asarray(times, np.float64) / SECONDS_PER_DAY - mean_days
    return (np.sign(delta) * np.abs(delta) ** DRIFT_BETA / scale).astype(np.float32)


def time_bin(times: np.ndarray, origin: int, width: float, n_bins: int) -> np.ndarray:
    """Bin of each time: ``floor((t − origin) / width)``, clipped to ``[0, n_bins − 1]``."""
    bins = np.floor((np.asarray(times, np.float64) - origin) / width)
    return np.clip(bins, 0, n_bins - 1).astype(np.int32)


class TimeAwareBiases:
    r"""The time state of a model with ``time_decay`` / ``time_bins``: a mixin.

    Put before the model's base class (``class _SGDModel(TimeAwareBiases,
    IterativeModel)``): its overrides of :meth:`predict`, ``_score_pairs``,
    ``_item_base``, :meth:`user_side` and ``_validate_state`` call the next class's
    and add the time terms (or checks). What the model itself does with time is to call,
    from its fit and ``partial_fit``: :meth:`_start_time_state`,
    :meth:`_decayed_weights` (sample weights times the decay),
    :meth:`_time_features` (each rating's bin and drift, for the kernels),
    :meth:`_merge_with_times` and :meth:`_grow_time_state`; and to train
    ``item_bin_bias_`` and ``user_drift_``.

    With ``time_bins`` the score of :math:`(u, i)` at time :math:`t` is the
    model's plus Koren's (2009) time-aware biases,

    .. math::
        \alpha_u\,\text{dev}_u(t) + b_{i,\text{Bin}(t)},

    and "now" (no ``times=``) is the newest bin and each user's drift at their
    latest training rating. The user drift reaches every item the same way, so it
    joins the user's offset (:meth:`user_side`); the item's bin bias "now" joins the
    item's base score (``_item_base``): scores stay ``base + offset + p_u·q_i``.

    Fitted attributes (their names are the saved model's format): ``time_newest_``
    and ``rating_times_`` with either option; with ``time_bins`` also
    ``time_origin_``, ``time_bin_width_``, ``drift_scale_``, ``user_mean_day_``,
    ``user_last_time_``, ``item_bin_bias_`` and ``user_drift_``.
    """

    time_bins: int | None = None
    time_decay: float | None = None
    # Per-user and per-item time state: grows with new ids (see ``_updates``).
    _user_arrays: ClassVar[tuple[str, ...]] = ("user_drift_", "user_last_time_",
                                               "user_mean_day_")
    _item_arrays: ClassVar[tuple[str, ...]] = ("item_bin_bias_",)

    def _uses_time(self) -> bool:
        return self.time_decay is not None or self.time_bins is not None

    def _has_time_bias(self) -> bool:
        return getattr(self, "item_bin_bias_", None) is not None

    def _time_option(self) -> str:
        return "time_decay" if self.time_decay is not None else "time_bins"

    def _start_time_state(self, data: Interactions) -> np.ndarray | None:
        """Record the training times (when a time option is on); return them, or None.

        Fitted state: ``time_newest_`` (Unix seconds), ``rating_times_`` (each
        training rating's time, in ``seen_``'s CSR order, for ``partial_fit``)
        and, with ``time_bins``, the bins' origin and width, each user's mean
        rating day :math:`t_u`, the drift scale, and zero-initialized
        ``item_bin_bias_`` (n_items, time_bins) and ``user_drift_`` (n_users,).
        """
        if not self._uses_time():
            return None
        times = require_timestamps(data, type(self).__name__, self._time_option())
        self.time_newest_ = int(times.max())
        self.rating_times_ = csr_times(data.user_codes, data.item_codes, times, data.n_items)
        if self.time_bins is not None:
            origin = int(times.min())
            self.time_origin_ = origin
            # One second more than the span, so the newest rating falls in the last bin.
            self.time_bin_width_ = float(self.time_newest_ - origin + 1) / self.time_bins
            self.user_mean_day_ = user_mean_days(data.user_codes, times, data.n_users)
            self.user_last_time_ = user_last_times(data.user_codes, times, data.n_users)
            raw = drift(times, self.user_mean_day_[data.user_codes], 1.0)
            scale = float(np.abs(raw, dtype=np.float64).mean())
            self.drift_scale_ = scale if scale > 0 else 1.0
            self.item_bin_bias_ = np.zeros((data.n_items, self.time_bins), np.float32)
            self.user_drift_ = np.zeros(data.n_users, np.float32)
        return times

    def _time_features(self, user_codes: np.ndarray,
                       times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Bin(t), dev_u(t)/scale) of ratings or queries; users and times aligned."""
        bins = time_bin(times, self.time_origin_, self.time_bin_width_,
                        self.item_bin_bias_.shape[1])
        devs = drift(times, self.user_mean_day_[user_codes], self.drift_scale_)
        return bins, devs

    def _decayed_weights(self, weights: np.ndarray | None, times: np.ndarray | None,
                         now: int) -> np.ndarray | None:
        """Sample weights times the time decay (when ``time_decay`` is set)."""
        if self.time_decay is None:
            return weights
        decay = decay_weights(times, self.time_decay, now)
        return decay if weights is None else (decay * weights).astype(np.float32)

    def _time_terms(self, users: np.ndarray, items: np.ndarray,
                    times: np.ndarray | None) -> np.ndarray:
        r""":math:`\alpha_u \text{dev}_u(t) + b_{i,\text{Bin}(t)}` of index pairs (0 where unknown).

        ``times=None`` is "now": the item's bias in the newest bin, and the
        user's drift at their own latest rating, since extrapolating
        :math:`\text{dev}_u` beyond the user's ratings is a guess the data
        does not support.
        """
        terms = np.zeros(len(users), dtype=np.float64)
        ku, ki = users >= 0, items >= 0
        item_times = (np.full(len(items), self.time_newest_, dtype=np.int64) if times is None
                      else times)
        bins = time_bin(item_times, self.time_origin_, self.time_bin_width_,
                        self.item_bin_bias_.shape[1])
        terms[ki] += self.item_bin_bias_[items[ki], bins[ki]]
        user_times = self.user_last_time_[users[ku]] if times is None else times[ku]
        devs = drift(user_times, self.user_mean_day_[users[ku]], self.drift_scale_)
        terms[ku] += self.user_drift_[users[ku]] * devs.astype(np.float64)
        return terms

    def predict(self, users: Any, items: Any, *, times: Any = None, unknown: str = "fallback",
                clip: bool = True) -> np.ndarray:
        """Predicted ratings of (user, item) pairs given as raw ids.

        Parameters
        ----------
        users, items : array-like of shape (n,) or scalars
            Raw ids, paired element-wise.
        times : array-like of shape (n,) or scalar, default=None
            When each rating would be given (Unix seconds or datetimes), for
            models fitted with ``time_bins``: the item bias of that time's bin
            (the last bin for times after training) and the user's drift at
            that time. None means "now": the newest bin, and each user's drift
            at their latest training rating.
        unknown : {"fallback", "raise", "nan"}, default="fallback"
        clip : bool, default=True

        Returns
        -------
        scores : ndarray of shape (n,), float64
        """
        self._check_fitted()
        if times is None:
            return super().predict(users, items, unknown=unknown, clip=clip)
        if not self._has_time_bias():
            raise ParameterError(f"{type(self).__name__}: times= applies to models fitted "
                                 f"with time_bins; this one has time_bins=None")
        # Scores "now", then swap in the time terms at the given times (no state is kept
        # between the two, so concurrent calls cannot mix their times).
        scores = super().predict(users, items, unknown=unknown, clip=False)
        u = self._indices(users, self.user_index_, "user", "fallback")
        i = self._indices(items, self.item_index_, "item", "fallback")
        at = as_times(times, len(u))
        scores += self._time_terms(u, i, at) - self._time_terms(u, i, None)
        if clip and self.rating_scale_ is not None:
            np.clip(scores, *self.rating_scale_, out=scores)
        return scores

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        scores = super()._score_pairs(users, items)
        if self._has_time_bias():
            scores += self._time_terms(users, items, None)
        return scores

    def _now_bin_bias(self, items: np.ndarray) -> np.ndarray | float:
        r""":math:`b_{i,\text{Bin}(now)}` of ``items`` (0 without time bins)."""
        if not self._has_time_bias():
            return 0.0
        now = time_bin(np.array([self.time_newest_]), self.time_origin_,
                       self.time_bin_width_, self.item_bin_bias_.shape[1])[0]
        return self.item_bin_bias_[items, now]

    def _item_base(self, items: np.ndarray | None = None) -> np.ndarray:
        base = super()._item_base(items)
        if self._has_time_bias():
            base += self._now_bin_bias(np.arange(self.n_items_) if items is None else items)
        return base

    def user_side(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # The user's drift at their latest rating joins the bias: both reach every item.
        vectors, offsets = super().user_side(users)
        if self._has_time_bias():
            users = np.asarray(users, dtype=np.int64)
            devs = drift(self.user_last_time_[users], self.user_mean_day_[users],
                         self.drift_scale_)
            offsets = offsets + (self.user_drift_[users] * devs).astype(np.float32)
        return vectors, offsets

    def _time_state_arrays(self) -> list[str]:
        """The trained time arrays (for snapshots of the best epoch), if any."""
        return ["item_bin_bias_", "user_drift_"] if self._has_time_bias() else []

    def _validate_state(self) -> None:
        super()._validate_state()
        times = getattr(self, "rating_times_", None)
        if times is not None and times.shape != (self.seen_.nnz,):
            raise ValueError("rating_times_ does not match the seen matrix")
        if self._has_time_bias():
            if self.item_bin_bias_.ndim != 2 or len(self.item_bin_bias_) != self.n_items_:
                raise ValueError("item_bin_bias_ must have one row per item")
            if self.user_drift_.shape != (self.n_users_,):
                raise ValueError("user_drift_ must have one value per user")
            if (self.user_mean_day_.shape != (self.n_users_,)
                    or self.user_last_time_.shape != (self.n_users_,)):
                raise ValueError("user_mean_day_ and user_last_time_ need one value per user")

    def _merge_with_times(self, interactions: Interactions) -> tuple[Interactions, int, int,
                                                                     Interactions]:
        """:func:`merge_with_times` for this model."""
        return merge_with_times(self, interactions, self._time_option())

    def _grow_time_state(self, merged_users: np.ndarray) -> None:
        """Rows for new users and items, columns for new bins, fresh user mean days."""
        if not self._has_time_bias():
            return
        n_users, n_items = self.n_users_, self.n_items_
        n_bins = max(self.item_bin_bias_.shape[1],
                     int((self.time_newest_ - self.time_origin_) // self.time_bin_width_) + 1)
        grown = np.zeros((n_items, n_bins), np.float32)
        old = self.item_bin_bias_
        grown[:old.shape[0], :old.shape[1]] = old
        self.item_bin_bias_ = grown
        user_drift = np.zeros(n_users, np.float32)
        user_drift[:len(self.user_drift_)] = self.user_drift_
        self.user_drift_ = user_drift
        # t_u moves as a user rates more: recompute it from every rating kept.
        self.user_mean_day_ = user_mean_days(merged_users, self.rating_times_, n_users)
        self.user_last_time_ = user_last_times(merged_users, self.rating_times_, n_users)
