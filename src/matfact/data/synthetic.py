"""Synthetic ratings with a planted low-rank structure and power-law popularity.

:func:`make_synthetic` draws distinct (user, item) pairs with skewed
popularity, as in real data, and rates them by a known biased low-rank model
plus noise, so tests and benchmarks can check that a model recovers it and
can scale to any size.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matfact.data.interactions import IdIndex, Interactions
from matfact.exceptions import ParameterError

__all__ = ["SyntheticTruth", "make_synthetic"]

_GLOBAL_MEAN = 3.5
_USER_BIAS_STD = 0.4
_ITEM_BIAS_STD = 0.4
_DOT_STD = 0.9  # std of p_u . q_i, whatever the rank
_RATING_SCALE = (1.0, 5.0)
_MAX_FILL = 0.5  # beyond this share of cells, rejection sampling of distinct pairs crawls
_MAX_ROUNDS = 200
_T0 = 1_500_000_000  # first timestamp (2017-07-14), one second per interaction after it
_CHUNK_VALUES = 1 << 22  # factor entries gathered per chunk (16 MB of float32)


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """The model :func:`make_synthetic` planted; arrays are indexed by raw id.

    A noiseless score is ``global_mean + user_bias[u] + item_bias[i] +
    user_factors[u] @ item_factors[i]`` (ratings add noise and clip it to [1, 5]).
    The data's vocabularies are all ids ``0..n-1``, so raw id, dense index
    and row of these arrays coincide.

    Attributes
    ----------
    user_factors : ndarray of shape (n_users, rank), dtype float32
    item_factors : ndarray of shape (n_items, rank), dtype float32
    user_bias : ndarray of shape (n_users,), dtype float32
    item_bias : ndarray of shape (n_items,), dtype float32
    global_mean : float
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_mean: float

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """Noiseless, unclipped scores of (user, item) pairs given by raw id.

        Parameters
        ----------
        users, items : array-like of int, shape (n,)

        Returns
        -------
        scores : ndarray of shape (n,), dtype float32
        """
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if users.shape != items.shape:
            raise ParameterError(f"got {len(users)} users but {len(items)} items")
        for what, ids, n in (("user", users, len(self.user_bias)),
                             ("item", items, len(self.item_bias))):
            if ids.size and (ids.min() < 0 or ids.max() >= n):
                raise ParameterError(f"{what} ids must lie in [0, {n})")
        return _scores(self, users, items)


def _scores(truth: SyntheticTruth, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    # Gathering rank-wide rows of 10M pairs at once would take gigabytes: go by chunks.
    rank = truth.user_factors.shape[1]
    chunk = max(1, _CHUNK_VALUES // rank)
    out = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), chunk):
        u, i = users[start:start + chunk], items[start:start + chunk]
        out[start:start + chunk] = np.einsum("ij,ij->i", truth.user_factors[u],
                                             truth.item_factors[i])
        out[start:start + chunk] += truth.user_bias[u] + truth.item_bias[i]
    out += np.float32(truth.global_mean)
    return out


def _check_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"≥ {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ParameterError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def _check_float(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ParameterError(f"{name} must be finite and ≥ 0, got {value!r}")
    return float(value)


class _Popularity:
    """Draws ids with probability ∝ (1 + popularity rank)^-skew.

    The ranks go to ids through a random permutation, so the popular ids are
    not simply the low ones.
    """

    def __init__(self, n: int, skew: float, rng: np.random.Generator) -> None:
        cdf = np.cumsum((1.0 + np.arange(n)) ** -skew)
        self._cdf = cdf / cdf[-1]  # exactly 1.0 at the end, so every u < 1 finds a rank
        self._ids = rng.permutation(n).astype(np.int64)
        # Guide table (indexed search): the first rank of each of 2n equal slices of [0, 1).
        # Starting there, the rank is found in a step or two, three times faster than a
        # binary search at 10M draws.
        self._slices = 2 * n
        self._guide = np.searchsorted(self._cdf, np.arange(self._slices) / self._slices,
                                      side="right")

    def draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(size)
        ranks = self._guide[(u * self._slices).astype(np.int64)]
        todo = np.flatnonzero(self._cdf[ranks] <= u)
        for _ in range(8):
            if not todo.size:
                break
            ranks[todo] += 1
            todo = todo[self._cdf[ranks[todo]] <= u[todo]]
        if todo.size:  # a steep tail puts many ranks in one slice: finish by bisection
            ranks[todo] = np.searchsorted(self._cdf, u[todo], side="right")
        return self._ids[ranks]


def _distinct_pairs(n_ratings: int, n_items: int, users: _Popularity, items: _Popularity,
                    rng: np.random.Generator) -> np.ndarray:
    """``n_ratings`` distinct keys ``user * n_items + item``, in order of first draw."""
    rounds: list[np.ndarray] = []  # the new keys of each round, in drawing order
    seen = np.empty(0, dtype=np.int64)  # all keys kept so far, sorted
    have = 0
    gain = 1.0  # share of the last batch that were new pairs
    for _ in range(_MAX_ROUNDS):
        need = n_ratings - have
        if need <= 0:
            return np.concatenate(rounds)
        # Oversample by the expected loss to repeats, so a few rounds are enough.
        size = int(need / max(gain, 0.02) * 1.05) + 64
        # pd.unique hashes (linear time) and keeps first occurrences in order.
        drawn = pd.unique(users.draw(size, rng) * n_items + items.draw(size, rng))
        if len(seen):
            # Later batches are small: look them up in the sorted keys rather than re-hashing all.
            at = np.minimum(np.searchsorted(seen, drawn), len(seen) - 1)
            drawn = drawn[seen[at] != drawn]
        gain = max(len(drawn) / size, 1e-6)
        drawn = drawn[:need]
        rounds.append(drawn)
        have += len(drawn)
        if have < n_ratings:
            # A stable sort of two sorted runs is a linear merge.
            seen = np.sort(np.concatenate([seen, np.sort(drawn)]), kind="stable")
    if have >= n_ratings:
        return np.concatenate(rounds)
    raise ParameterError(  # pragma: no cover - the fill limit keeps this out of reach
        f"could not draw {n_ratings:,} distinct pairs in {_MAX_ROUNDS} rounds; lower n_ratings "
        f"or the skews"
    )


def make_synthetic(n_users: int, n_items: int, n_ratings: int, rank: int = 32,
                   noise: float = 0.5, user_skew: float = 0.5, item_skew: float = 0.8,
                   implicit: bool = False, random_state: Any = 0,
                   return_truth: bool = False) -> Interactions | tuple[Interactions,
                                                                        SyntheticTruth]:
    """Make ratings from a planted biased low-rank model, with power-law popularity.

    Each user and item gets a popularity rank (a random permutation of the
    ids); pairs are drawn with probability ∝ ``(1 + rank)^-skew`` on each axis
    until ``n_ratings`` distinct pairs are found (repeats keep their first
    draw). A pair is rated ``clip(3.5 + b_u + b_i + p_u·q_i + ε, 1, 5)`` with
    biases ~ N(0, 0.4²), factors scaled so that ``p_u·q_i`` has std 0.9 at any
    rank, and ε ~ N(0, noise²). Ratings are continuous, not rounded.

    Parameters
    ----------
    n_users, n_items : int
        Number of user and item ids; the vocabularies hold all of ``0..n-1``,
        also ids that were never drawn.
    n_ratings : int
        Number of distinct (user, item) pairs, at most half the cells.
    rank : int, default=32
        Rank of the planted factors.
    noise : float, default=0.5
        Standard deviation of the rating noise.
    user_skew, item_skew : float, default=0.5, 0.8
        Power-law exponents of the popularity; 0 is uniform.
    implicit : bool, default=False
        Return implicit interactions whose weights are the ratings.
    random_state : int, numpy.random.Generator or None, default=0
        Seed of :func:`numpy.random.default_rng`.
    return_truth : bool, default=False
        Also return the planted :class:`SyntheticTruth`.

    Returns
    -------
    data : Interactions
        Explicit with ``rating_scale=(1, 5)`` (or implicit), timestamps
        increasing in the order of the interactions, which is the drawing order.
    truth : SyntheticTruth
        Only with ``return_truth=True``.

    Raises
    ------
    ParameterError
        If a size is not a positive integer, ``rank < 1``, ``noise`` or a skew
        is negative or not finite, or ``n_ratings`` exceeds half of
        ``n_users * n_items``.

    Examples
    --------
    >>> data = make_synthetic(100, 50, 1000, rank=4)
    >>> data.nnz
    1000
    """
    limit = np.iinfo(np.int32).max  # Interactions keeps int32 codes
    n_users = _check_int(n_users, "n_users", maximum=limit)
    n_items = _check_int(n_items, "n_items", maximum=limit)
    n_ratings = _check_int(n_ratings, "n_ratings")
    rank = _check_int(rank, "rank")
    noise = _check_float(noise, "noise")
    user_skew = _check_float(user_skew, "user_skew")
    item_skew = _check_float(item_skew, "item_skew")
    cells = n_users * n_items
    if n_ratings > cells:
        raise ParameterError(
            f"n_ratings={n_ratings:,} exceeds the n_users * n_items = {cells:,} cells"
        )
    if n_ratings > _MAX_FILL * cells:
        raise ParameterError(
            f"n_ratings={n_ratings:,} would fill more than {_MAX_FILL:.0%} of the {cells:,} "
            f"cells; drawing that many distinct skewed pairs is impractical, so use at most "
            f"{int(_MAX_FILL * cells):,} or more users/items"
        )
    rng = np.random.default_rng(random_state)

    scale = np.float32(np.sqrt(_DOT_STD / np.sqrt(rank)))  # std(p·q) = rank^½ · scale²
    truth = SyntheticTruth(
        user_factors=_readonly(rng.standard_normal((n_users, rank), dtype=np.float32) * scale),
        item_factors=_readonly(rng.standard_normal((n_items, rank), dtype=np.float32) * scale),
        user_bias=_readonly(rng.standard_normal(n_users, dtype=np.float32)
                            * np.float32(_USER_BIAS_STD)),
        item_bias=_readonly(rng.standard_normal(n_items, dtype=np.float32)
                            * np.float32(_ITEM_BIAS_STD)),
        global_mean=_GLOBAL_MEAN,
    )
    users = _Popularity(n_users, user_skew, rng)
    items = _Popularity(n_items, item_skew, rng)
    keys = _distinct_pairs(n_ratings, n_items, users, items, rng)
    user_ids, item_ids = np.divmod(keys, n_items)
    del keys

    values = _scores(truth, user_ids, item_ids)
    if noise > 0:
        values += rng.standard_normal(len(values), dtype=np.float32) * np.float32(noise)
    np.clip(values, *_RATING_SCALE, out=values)
    timestamps = _T0 + np.arange(n_ratings, dtype=np.int64)
    # The pairs are distinct, the ids in range and the values finite by construction, so the
    # checks and id sorting of Interactions.from_arrays (most of the run time at 10M ratings)
    # are skipped. The vocabularies are all ids 0..n-1, so dense index = raw id = truth row.
    data = Interactions(
        user_ids.astype(np.int32), item_ids.astype(np.int32),
        IdIndex(np.arange(n_users)), IdIndex(np.arange(n_items)),
        ratings=None if implicit else values, weights=values if implicit else None,
        timestamps=timestamps, rating_scale=None if implicit else _RATING_SCALE,
    )
    return (data, truth) if return_truth else data


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
