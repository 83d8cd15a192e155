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
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, ParameterError

__all__ = ["SECONDS_PER_DAY", "DRIFT_BETA", "decay_weights", "require_timestamps",
           "decayed", "csr_times", "merge_times", "merge_with_times", "in_data_order",
           "with_timestamps", "as_times", "user_mean_days",
           "user_last_times", "drift",
           "time_bin"]

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
        rating_scale=data.rating_scale,
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
        item_features=data.item_features, rating_scale=data.rating_scale,
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
        if not np.isfinite(values).all():
            raise DataError("times must be finite")
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
