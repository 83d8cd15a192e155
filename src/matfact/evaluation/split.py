"""Train/test splits of :class:`~matfact.data.Interactions`.

Every accuracy figure matfact reports is computed on a split made here, so
each strategy is defined exactly (which random-number calls are made, in
which order, and how sizes are rounded) and a given ``random_state`` always
yields the same split.

Conventions shared by all strategies (``n`` is the number of interactions,
``positions`` are indices into the interactions in the order given):

* Sizes are rounded with Python's built-in :func:`round` applied to the float
  product, e.g. ``round(test_size * n)``. It rounds halves to even ("banker's
  rounding"): ``round(0.25 * 10) == 2`` and ``round(0.5) == 0``.
* ``train`` is ``data.take(train_positions, compact=True)`` and ``test`` is
  ``data.take(test_positions, compact=True).with_vocabulary_of(train)``, with
  both position lists in ascending order. So both keep the original relative
  order of the interactions, the same raw id has the same index in train and
  test, and ids unseen in train get indices after train's. Test interactions
  with unseen users or items are kept; :class:`Split` reports them.
* An empty train or test set is a :class:`~matfact.exceptions.DataError`.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from matfact._params import check_fraction
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, ParameterError

__all__ = ["STRATEGIES", "Split", "kfold", "train_test_split"]

#: Names accepted by the ``strategy`` parameter of :func:`train_test_split`.
STRATEGIES = ("random", "per_user", "temporal", "last_n", "cold_users", "cold_items")

_MAX_SHOWN = 5


class Split(NamedTuple):
    """A train/test pair sharing one vocabulary: ``train, test = split``.

    ``test`` is expressed in ``train``'s id maps, extended by the ids unseen in
    train (which come after train's), so a raw id has the same index in both.

    Attributes
    ----------
    train : Interactions
        The training interactions, vocabularies compacted to the ids they use.
    test : Interactions
        The test interactions, in ``train``'s vocabularies extended by unseen ids.
    """

    train: Interactions
    test: Interactions

    def _unseen_user_mask(self) -> np.ndarray:
        """Boolean mask over ``test.user_ids``: True where the id does not occur in train."""
        return self.train.user_index.get_indexer(self.test.user_ids) < 0

    def _unseen_item_mask(self) -> np.ndarray:
        """Boolean mask over ``test.item_ids``: True where the id does not occur in train."""
        return self.train.item_index.get_indexer(self.test.item_ids) < 0

    @property
    def unseen_users(self) -> np.ndarray:
        """Raw ids of the test users that have no training interaction, in test-index order."""
        return self.test.user_ids[self._unseen_user_mask()]

    @property
    def unseen_items(self) -> np.ndarray:
        """Raw ids of the test items that have no training interaction, in test-index order."""
        return self.test.item_ids[self._unseen_item_mask()]

    @property
    def n_unseen_rows(self) -> int:
        """Number of test interactions whose user or item (or both) is unseen in train."""
        rows = (self._unseen_user_mask()[self.test.user_codes]
                | self._unseen_item_mask()[self.test.item_codes])
        return int(rows.sum())

    def check_overlap(self) -> None:
        """Raise :class:`~matfact.exceptions.DataError` if a (user, item) pair is in both sets.

        Pairs are compared by raw id: test codes are mapped into train's
        vocabulary, and each pair ``(u, i)`` becomes the linear key
        ``u * train.n_items + i``. Test pairs with an unseen user or item can
        never overlap.

        Raises
        ------
        DataError
            If some (user, item) pair occurs in both train and test.
        """
        train, test = self.train, self.test
        users = train.user_index.get_indexer(test.user_ids)[test.user_codes]
        items = train.item_index.get_indexer(test.item_ids)[test.item_codes]
        known = (users >= 0) & (items >= 0)
        n_items = np.int64(train.n_items)
        test_keys = users[known] * n_items + items[known]
        train_keys = train.user_codes.astype(np.int64) * n_items + train.item_codes
        shared = np.intersect1d(train_keys, test_keys)
        if shared.size:
            pairs = ", ".join(
                f"({train.user_ids[key // n_items]!r}, {train.item_ids[key % n_items]!r})"
                for key in shared[:_MAX_SHOWN].tolist()
            )
            more = f" and {shared.size - _MAX_SHOWN} more" if shared.size > _MAX_SHOWN else ""
            raise DataError(
                f"{shared.size} (user, item) pair(s) occur in both train and test: {pairs}{more}"
            )


# ------------------------------------------------------------------------------ validation
def _check_data(data: object) -> Interactions:
    if not isinstance(data, Interactions):
        raise ParameterError(f"data must be an Interactions, got {type(data).__name__}")
    return data



def _check_int(value: object, name: str, low: int, high: int | None = None,
               what: str = "") -> int:
    ok = isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_))
    if ok:
        value = int(value)
        ok = value >= low and (high is None or value <= high)
    if not ok:
        bound = f"≥ {low}" if high is None else f"in [{low}, {high}]"
        raise ParameterError(f"{name}{what} must be an int {bound}, got {value!r}")
    return value


def _check_random_state(random_state: object) -> int | None:
    if random_state is None:
        return None
    return _check_int(random_state, "random_state", 0, what=" (or None for fresh entropy)")


def _needs_timestamps(data: Interactions, strategy: str) -> np.ndarray:
    if data.timestamps is None:
        raise DataError(
            f"strategy={strategy!r} orders interactions by time, but the data has no "
            f"timestamps; build it with timestamps (e.g. from_csv(..., timestamp=...))"
        )
    return data.timestamps


# ------------------------------------------------------------------------------ building
def _make_split(data: Interactions, test_mask: np.ndarray, context: str) -> Split:
    """Build the :class:`Split` whose test set is the interactions where ``test_mask`` is True."""
    if not test_mask.any():
        raise DataError(f"the test set would be empty: {context}")
    if test_mask.all():
        raise DataError(f"the training set would be empty: {context}")
    train = data.take(np.flatnonzero(~test_mask), compact=True)
    test = data.take(np.flatnonzero(test_mask), compact=True).with_vocabulary_of(train)
    return Split(train, test)


def _mask_of(positions: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return mask


def _random(data: Interactions, test_size: float, random_state: int | None) -> np.ndarray:
    n = data.nnz
    n_test = round(test_size * n)
    perm = np.random.default_rng(random_state).permutation(n)
    return _mask_of(perm[:n_test], n)


def _per_user(data: Interactions, test_size: float, random_state: int | None) -> np.ndarray:
    rng = np.random.default_rng(random_state)
    # Positions grouped by user index, each user's run in item-index order (both
    # indices follow sorted raw ids); lexsort is stable, so ties keep their order.
    order = np.lexsort((data.item_codes, data.user_codes))
    counts = np.bincount(data.user_codes, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    chosen = []
    # The loop over users is what fixes the order of the rng calls (see train_test_split).
    multi = counts > 1
    for start, n_u in zip(starts[multi].tolist(), counts[multi].tolist(), strict=True):
        k = max(1, round(test_size * n_u))
        chosen.append(order[start + rng.permutation(n_u)[:k]])
    test = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    return _mask_of(test, data.nnz)


def _temporal(data: Interactions, test_size: float) -> np.ndarray:
    n = data.nnz
    n_test = round(test_size * n)
    # Stable sort by timestamp: equal timestamps stay in position order.
    order = np.argsort(_needs_timestamps(data, "temporal"), kind="stable")
    return _mask_of(order[n - n_test:] if n_test else order[:0], n)


def _last_n(data: Interactions, n_last: int) -> np.ndarray:
    timestamps = _needs_timestamps(data, "last_n")
    # Grouped by user, then by (timestamp, position): each user's run ends with
    # its most recent interactions.
    order = np.lexsort((np.arange(data.nnz), timestamps, data.user_codes))
    counts = np.bincount(data.user_codes, minlength=data.n_users)
    ends = np.cumsum(counts)
    users = data.user_codes[order]
    from_end = ends[users] - np.arange(data.nnz)  # 1 for a user's most recent interaction
    held_out = (counts[users] > n_last) & (from_end <= n_last)
    return _mask_of(order[held_out], data.nnz)


def _cold(data: Interactions, test_size: float, random_state: int | None,
          axis: str) -> np.ndarray:
    count = data.n_users if axis == "user" else data.n_items
    codes = data.user_codes if axis == "user" else data.item_codes
    size = round(test_size * count)
    # Same draw as rng.choice(data.user_ids, size, replace=False): choice over an
    # array picks indices of it exactly as choice over its length does.
    chosen = np.random.default_rng(random_state).choice(count, size=size, replace=False)
    return _mask_of(chosen, count)[codes]


# ------------------------------------------------------------------------------ public API
def train_test_split(data: Interactions, test_size: float = 0.2, strategy: str = "random",
                     random_state: int | None = 0, *, n: int = 1) -> Split:
    """Split interactions into a training and a test set.

    Parameters
    ----------
    data : Interactions
        The interactions, in the order given (``n_int`` of them below).
    test_size : float, default=0.2
        Fraction in the open interval (0, 1) held out; see each strategy for
        what it is a fraction of. Validated but ignored by ``"last_n"``.
    strategy : {"random", "per_user", "temporal", "last_n", "cold_users", "cold_items"}
        How the test set is chosen, exactly:

        ``"random"``
            ``perm = numpy.random.default_rng(random_state).permutation(n_int)``;
            the first ``round(test_size * n_int)`` entries of ``perm`` are the
            test positions.
        ``"per_user"``
            One ``rng = numpy.random.default_rng(random_state)``. Users are
            visited in ascending user index (= ascending raw id). A user's
            ``n_u`` interactions are listed in ascending item index (= ascending
            raw item id), then ``p = rng.permutation(n_u)`` is drawn and the
            interactions at ``p[:max(1, round(test_size * n_u))]`` of that list
            are test. A user with ``n_u = 1`` stays wholly in train and makes
            *no* rng call. A user with ``round(test_size * n_u) == n_u`` (only
            possible for a large ``test_size``) goes wholly to test.
        ``"temporal"``
            The latest ``test_size`` fraction by time: positions are sorted by
            ``(timestamp, position)``; the last ``round(test_size * n_int)`` are
            test. Needs timestamps.
        ``"last_n"``
            Each user's ``n`` most recent interactions are test, recency being
            ``(timestamp, position)`` (a tie goes to the later position). Users
            with ``n_u ≤ n`` stay wholly in train. Needs timestamps.
        ``"cold_users"`` / ``"cold_items"``
            ``rng = numpy.random.default_rng(random_state)``; the users
            ``rng.choice(data.user_ids, size=round(test_size * data.n_users),
            replace=False)`` (the vocabulary in index order, i.e. sorted ids)
            have all their interactions in test, so every test user is unseen
            in train. ``"cold_items"`` does the same with items.
    random_state : int or None, default=0
        Seed (an int ≥ 0) of :func:`numpy.random.default_rng`; ``None`` draws
        fresh entropy, so the split is not reproducible. Unused by
        ``"temporal"`` and ``"last_n"``.
    n : int, default=1
        Interactions held out per user by ``"last_n"`` (an int ≥ 1).

    Returns
    -------
    Split
        ``(train, test)``. Train is ``data.take(train_positions)`` and test is
        ``data.take(test_positions).with_vocabulary_of(train)``, both position
        lists ascending, so each keeps the original order and a raw id has the
        same index in both. Test rows with ids unseen in train are kept.

    Raises
    ------
    ParameterError
        If ``test_size``, ``strategy``, ``random_state`` or ``n`` is invalid.
    DataError
        If the strategy needs timestamps and the data has none, or the train or
        test set would be empty (e.g. ``test_size`` too small for the data).

    Notes
    -----
    Sizes use Python's :func:`round` on the float product, which rounds halves
    to even: ``round(0.25 * 10) == 2``, ``round(0.5 * 3) == 2``.

    Examples
    --------
    >>> from matfact.data import Interactions
    >>> data = Interactions.from_arrays([1, 1, 2, 2, 3], ["a", "b", "a", "c", "b"], [5, 3, 4, 1, 2])
    >>> train, test = train_test_split(data, test_size=0.4, random_state=0)
    >>> train.nnz, test.nnz
    (3, 2)
    """
    data = _check_data(data)
    test_size = check_fraction(test_size, "test_size")
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ParameterError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; got {strategy!r}"
        )
    random_state = _check_random_state(random_state)
    n_last = _check_int(n, "n", 1, what=" (interactions per user held out by 'last_n')")
    total = data.nnz
    if strategy == "random":
        mask = _random(data, test_size, random_state)
        context = (f"test_size={test_size} of {total} interactions gives "
                   f"round({test_size * total:g}) = {round(test_size * total)} test interactions")
    elif strategy == "per_user":
        mask = _per_user(data, test_size, random_state)
        context = ("'per_user' keeps users with a single interaction in train and sends "
                   f"max(1, round(test_size * n_u)) of the others' to test (test_size={test_size}); "
                   "use a smaller test_size" if mask.any() else
                   "every user has a single interaction, and 'per_user' keeps those in train")
    elif strategy == "temporal":
        mask = _temporal(data, test_size)
        context = (f"test_size={test_size} of {total} interactions gives "
                   f"round({test_size * total:g}) = {round(test_size * total)} test interactions")
    elif strategy == "last_n":
        mask = _last_n(data, n_last)
        context = (f"no user has more than n={n_last} interactions, and 'last_n' keeps such "
                   "users wholly in train")
    else:
        axis = "user" if strategy == "cold_users" else "item"
        count = data.n_users if axis == "user" else data.n_items
        mask = _cold(data, test_size, random_state, axis)
        context = (f"test_size={test_size} of {count} {axis}s gives "
                   f"round({test_size * count:g}) = {round(test_size * count)} held-out {axis}s")
    return _make_split(data, mask, f"strategy={strategy!r}: {context}")


def kfold(data: Interactions, n_splits: int = 5, random_state: int | None = 0) -> list[Split]:
    """K-fold cross-validation splits over interactions.

    ``perm = numpy.random.default_rng(random_state).permutation(n_int)`` and
    ``chunks = numpy.array_split(perm, n_splits)``; fold ``f`` tests on
    ``chunks[f]`` and trains on the other chunks. Each :class:`Split` is built
    as in :func:`train_test_split` (ascending positions, test expressed in the
    training vocabulary extended by unseen ids).

    Parameters
    ----------
    data : Interactions
        The interactions (``n_int`` of them).
    n_splits : int, default=5
        Number of folds, an int in ``[2, n_int]``.
    random_state : int or None, default=0
        Seed (an int ≥ 0) of :func:`numpy.random.default_rng`; ``None`` draws
        fresh entropy.

    Returns
    -------
    list of Split
        ``n_splits`` splits whose test sets partition the interactions.

    Raises
    ------
    ParameterError
        If ``n_splits`` or ``random_state`` is invalid.
    DataError
        If the data has fewer than 2 interactions.
    """
    data = _check_data(data)
    total = data.nnz
    if total < 2:
        raise DataError(f"k-fold needs at least 2 interactions, the data has {total}")
    n_splits = _check_int(n_splits, "n_splits", 2, total,
                          what=f" (at most the {total} interactions)")
    random_state = _check_random_state(random_state)
    perm = np.random.default_rng(random_state).permutation(total)
    chunks = np.array_split(perm, n_splits)
    return [
        _make_split(data, _mask_of(chunk, total), f"fold {fold} of {n_splits}")
        for fold, chunk in enumerate(chunks)
    ]
