"""Tests of matfact.evaluation.split: every strategy is pinned to its exact definition."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matfact.data import Interactions
from matfact.evaluation.split import STRATEGIES, Split, kfold, train_test_split
from matfact.exceptions import DataError, ParameterError

# ------------------------------------------------------------------------------ helpers


def make_data(seed: int = 0, n_users: int = 30, n_items: int = 25, nnz: int = 220, *,
              string_ids: bool = False, timestamps: bool = True) -> Interactions:
    """Distinct (user, item) pairs in shuffled order, with a few single-interaction users.

    Raw ids are not contiguous (and, as strings, sort differently from numbers), and
    timestamps come from a small range so that ties occur.
    """
    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, size=nnz, replace=False)
    users = (cells // n_items) * 7 + 3
    items = (cells % n_items) * 5 + 1
    # Three users with exactly one interaction each (ids not otherwise used).
    users = np.concatenate([users, [1, 500, 1000]])
    items = np.concatenate([items, [1, 6, 11]])
    order = rng.permutation(len(users))
    users, items = users[order], items[order]
    ratings = rng.integers(1, 6, size=len(users))
    stamps = rng.integers(0, 40, size=len(users)) if timestamps else None
    if string_ids:
        users = np.array([f"{u}" for u in users])
        items = np.array([f"i{i}" for i in items])
    return Interactions.from_arrays(users, items, ratings, timestamps=stamps)


def pairs(data: Interactions) -> list[tuple]:
    """(raw user, raw item) of each interaction, in the order held."""
    return list(zip(data.users.tolist(), data.items.tolist(), strict=True))


def positions_in(data: Interactions, part: Interactions) -> list[int]:
    """Original positions of ``part``'s interactions (pairs are distinct in ``data``)."""
    where = {pair: pos for pos, pair in enumerate(pairs(data))}
    return [where[pair] for pair in pairs(part)]


def check_partition(data: Interactions, split: Split) -> tuple[list[int], list[int]]:
    """Assert that the split partitions ``data`` with no overlap; return sorted positions."""
    train, test = split
    assert Counter(pairs(train)) + Counter(pairs(test)) == Counter(pairs(data))
    assert train.nnz + test.nnz == data.nnz
    split.check_overlap()
    train_pos, test_pos = positions_in(data, train), positions_in(data, test)
    # Both keep the original relative order.
    assert train_pos == sorted(train_pos)
    assert test_pos == sorted(test_pos)
    # Values travel with their interactions.
    np.testing.assert_array_equal(train.ratings, data.ratings[train_pos])
    np.testing.assert_array_equal(test.ratings, data.ratings[test_pos])
    if data.timestamps is not None:
        np.testing.assert_array_equal(train.timestamps, data.timestamps[train_pos])
        np.testing.assert_array_equal(test.timestamps, data.timestamps[test_pos])
    return train_pos, test_pos


def check_vocabulary(split: Split) -> None:
    """Same raw id → same index; unseen ids after train's; unseen reports match brute force."""
    train, test = split
    # Train vocabularies are compact and sorted.
    assert train.user_ids.tolist() == sorted(set(train.users.tolist()))
    assert train.item_ids.tolist() == sorted(set(train.items.tolist()))
    # Test extends train's vocabulary.
    assert test.user_ids[: train.n_users].tolist() == train.user_ids.tolist()
    assert test.item_ids[: train.n_items].tolist() == train.item_ids.tolist()
    for raw, code in zip(test.users.tolist(), test.user_codes.tolist(), strict=True):
        if raw in set(train.user_ids.tolist()):
            assert train.user_index.get_indexer([raw])[0] == code
        else:
            assert code >= train.n_users
    seen_users, seen_items = set(train.users.tolist()), set(train.items.tolist())
    unseen_users = sorted(set(test.users.tolist()) - seen_users)
    unseen_items = sorted(set(test.items.tolist()) - seen_items)
    assert split.unseen_users.tolist() == unseen_users
    assert split.unseen_items.tolist() == unseen_items
    assert test.user_ids[train.n_users:].tolist() == unseen_users
    assert test.item_ids[train.n_items:].tolist() == unseen_items
    expected_rows = sum(u not in seen_users or i not in seen_items for u, i in pairs(test))
    assert split.n_unseen_rows == expected_rows


# --------------------------------------------------------------- reference implementations


def ref_random(data, test_size, seed):
    perm = np.random.default_rng(seed).permutation(data.nnz)
    return sorted(perm[: round(test_size * data.nnz)].tolist())


def ref_per_user(data, test_size, seed):
    rng = np.random.default_rng(seed)
    by_user: dict = {}
    for pos, (user, item) in enumerate(pairs(data)):
        by_user.setdefault(user, []).append((item, pos))
    test = []
    for user in sorted(by_user):
        rows = [pos for _, pos in sorted(by_user[user])]  # ascending raw item id
        if len(rows) == 1:
            continue  # stays in train, no rng call
        p = rng.permutation(len(rows))
        k = max(1, round(test_size * len(rows)))
        test.extend(rows[j] for j in p[:k])
    return sorted(test)


def ref_temporal(data, test_size):
    stamps = data.timestamps.tolist()
    order = sorted(range(data.nnz), key=lambda pos: (stamps[pos], pos))
    k = round(test_size * data.nnz)
    return sorted(order[len(order) - k:])


def ref_last_n(data, n):
    stamps = data.timestamps.tolist()
    by_user: dict = {}
    for pos, user in enumerate(data.users.tolist()):
        by_user.setdefault(user, []).append(pos)
    test = []
    for rows in by_user.values():
        if len(rows) > n:
            test.extend(sorted(rows, key=lambda pos: (stamps[pos], pos))[-n:])
    return sorted(test)


def ref_cold(data, test_size, seed, axis):
    ids = data.user_ids if axis == "user" else data.item_ids
    chosen = np.random.default_rng(seed).choice(
        ids, size=round(test_size * len(ids)), replace=False
    )
    raw = data.users if axis == "user" else data.items
    return sorted(np.flatnonzero(np.isin(raw, chosen)).tolist()), chosen


def reference(data, strategy, test_size, seed, n=1):
    if strategy == "random":
        return ref_random(data, test_size, seed)
    if strategy == "per_user":
        return ref_per_user(data, test_size, seed)
    if strategy == "temporal":
        return ref_temporal(data, test_size)
    if strategy == "last_n":
        return ref_last_n(data, n)
    return ref_cold(data, test_size, seed, "user" if strategy == "cold_users" else "item")[0]


# ------------------------------------------------------------------------------ strategies


@pytest.mark.parametrize("string_ids", [False, True], ids=["int-ids", "str-ids"])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("test_size,seed", [(0.2, 0), (0.35, 7)])
def test_strategy_matches_definition(strategy, string_ids, test_size, seed):
    data = make_data(seed=seed + 1, string_ids=string_ids)
    split = train_test_split(data, test_size=test_size, strategy=strategy, random_state=seed)
    train_pos, test_pos = check_partition(data, split)
    assert test_pos == reference(data, strategy, test_size, seed)
    assert sorted(train_pos + test_pos) == list(range(data.nnz))
    check_vocabulary(split)


def test_sizes_as_defined():
    data = make_data(seed=3)
    n = data.nnz
    for strategy in ("random", "temporal"):
        train, test = train_test_split(data, 0.2, strategy)
        assert test.nnz == round(0.2 * n)
        assert train.nnz == n - round(0.2 * n)
    counts = Counter(data.users.tolist())
    _, test = train_test_split(data, 0.3, "per_user", random_state=5)
    got = Counter(test.users.tolist())
    for user, n_u in counts.items():
        assert got.get(user, 0) == (0 if n_u == 1 else max(1, round(0.3 * n_u)))
    for k in (1, 2, 3):
        _, test = train_test_split(data, strategy="last_n", n=k)
        got = Counter(test.users.tolist())
        for user, n_u in counts.items():
            assert got.get(user, 0) == (k if n_u > k else 0)
    _, test = train_test_split(data, 0.3, "cold_users", random_state=2)
    assert len(set(test.users.tolist())) <= round(0.3 * data.n_users)
    _, test = train_test_split(data, 0.3, "cold_items", random_state=2)
    assert len(set(test.items.tolist())) <= round(0.3 * data.n_items)


def test_split_is_a_named_tuple():
    data = make_data()
    split = train_test_split(data)
    assert isinstance(split, tuple) and split._fields == ("train", "test")
    train, test = split
    assert train is split.train and test is split.test


def test_rounding_is_builtin_round():
    # 10 interactions, one user: 0.25 * 10 = 2.5 rounds to 2 (half to even).
    users = np.zeros(10, dtype=int)
    items = np.arange(10)
    data = Interactions.from_arrays(users, items, np.ones(10), timestamps=np.arange(10))
    assert train_test_split(data, 0.25, "random").test.nnz == 2
    assert train_test_split(data, 0.25, "temporal").test.nnz == 2
    assert train_test_split(data, 0.25, "per_user").test.nnz == 2
    assert train_test_split(data, 0.35, "random").test.nnz == round(3.5) == 4
    # n_u = 2 and test_size 0.25: round(0.5) = 0, raised to the minimum of 1.
    data2 = Interactions.from_arrays([1, 1, 2, 2], [1, 2, 1, 2], [1, 2, 3, 4])
    assert train_test_split(data2, 0.25, "per_user").test.nnz == 2


def test_per_user_single_interaction_users_draw_no_permutation():
    base = make_data(seed=11)
    users = np.concatenate([base.users, [-5]])  # a new smallest user with one interaction
    items = np.concatenate([base.items, [base.items[0]]])
    ratings = np.concatenate([base.ratings, [3.0]])
    extended = Interactions.from_arrays(users, items, ratings)
    _, test_a = train_test_split(base, 0.3, "per_user", random_state=4)
    train_b, test_b = train_test_split(extended, 0.3, "per_user", random_state=4)
    assert pairs(test_a) == pairs(test_b)
    assert -5 in train_b.user_ids.tolist()


def test_per_user_visits_users_in_sorted_string_order():
    # As strings "10" < "9": the order of rng calls follows the sorted raw ids.
    users = ["9", "9", "9", "10", "10", "10", "2", "2", "2"]
    items = ["b", "a", "c"] * 3
    data = Interactions.from_arrays(users, items, np.arange(9) + 1.0)
    assert data.user_ids.tolist() == ["10", "2", "9"]
    split = train_test_split(data, 0.3, "per_user", random_state=13)
    _, test_pos = check_partition(data, split)
    assert test_pos == ref_per_user(data, 0.3, 13)


def test_temporal_ties_broken_by_position():
    stamps = [5, 1, 5, 5, 1, 0]
    data = Interactions.from_arrays([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 1], np.ones(6),
                                    timestamps=stamps)
    # Sorted by (timestamp, position): 5, 1, 4, 0, 2, 3; the last two are test.
    _, test = train_test_split(data, 0.3, "temporal")
    assert test.users.tolist() == [3, 4]


def test_last_n_ties_broken_by_position_and_small_users_stay_in_train():
    users = [1, 1, 1, 2, 2, 3]
    items = [1, 2, 3, 1, 2, 1]
    stamps = [7, 9, 9, 1, 1, 4]
    data = Interactions.from_arrays(users, items, np.ones(6), timestamps=stamps)
    split = train_test_split(data, strategy="last_n", n=1)
    assert pairs(split.test) == [(1, 3), (2, 2)]  # later position wins the tie
    split = train_test_split(data, strategy="last_n", n=2)
    assert pairs(split.test) == [(1, 2), (1, 3)]  # user 2 has ≤ 2: stays in train
    assert 3 in split.train.user_ids.tolist()


def test_last_n_ignores_test_size():
    data = make_data(seed=4)
    a = train_test_split(data, 0.1, "last_n", n=2)
    b = train_test_split(data, 0.9, "last_n", n=2)
    assert pairs(a.test) == pairs(b.test)


@pytest.mark.parametrize("axis", ["user", "item"])
def test_cold_start_ids_are_unseen(axis):
    data = make_data(seed=9, string_ids=True)
    split = train_test_split(data, 0.25, f"cold_{axis}s", random_state=21)
    check_partition(data, split)
    _, chosen = ref_cold(data, 0.25, 21, axis)
    held = split.test.users if axis == "user" else split.test.items
    seen = split.train.user_ids if axis == "user" else split.train.item_ids
    unseen = split.unseen_users if axis == "user" else split.unseen_items
    assert set(held.tolist()) == set(chosen.tolist()) & set(
        (data.users if axis == "user" else data.items).tolist())
    assert not set(held.tolist()) & set(seen.tolist())
    assert unseen.tolist() == sorted(set(held.tolist()))
    assert split.n_unseen_rows == split.test.nnz


def test_random_keeps_test_rows_with_unseen_ids():
    data = make_data(seed=2)
    split = train_test_split(data, 0.5, "random", random_state=3)
    check_partition(data, split)
    check_vocabulary(split)
    assert split.n_unseen_rows > 0  # single-interaction users/items end up unseen
    assert split.test.n_users == split.train.n_users + len(split.unseen_users)


def test_random_state_none_and_numpy_int():
    data = make_data()
    check_partition(data, train_test_split(data, random_state=None))
    a = train_test_split(data, random_state=np.int64(5))
    b = train_test_split(data, random_state=5)
    assert pairs(a.test) == pairs(b.test)


def test_check_overlap_detects_shared_pairs():
    data = make_data()
    with pytest.raises(DataError, match="both train and test"):
        Split(data, data).check_overlap()
    train, test = train_test_split(data)
    Split(train, test.take(np.arange(test.nnz), compact=True)).check_overlap()


# ------------------------------------------------------------------------------ kfold


@pytest.mark.parametrize("n_splits", [2, 5, 7])
def test_kfold_matches_definition(n_splits):
    data = make_data(seed=6, string_ids=n_splits == 5)
    folds = kfold(data, n_splits=n_splits, random_state=8)
    assert isinstance(folds, list) and len(folds) == n_splits
    chunks = np.array_split(np.random.default_rng(8).permutation(data.nnz), n_splits)
    seen: list[int] = []
    for split, chunk in zip(folds, chunks, strict=True):
        _, test_pos = check_partition(data, split)
        check_vocabulary(split)
        assert test_pos == sorted(chunk.tolist())
        seen += test_pos
    assert sorted(seen) == list(range(data.nnz))


def test_kfold_validation():
    data = make_data()
    for bad in (1, 0, True, 2.0, "3", data.nnz + 1):
        with pytest.raises(ParameterError, match="n_splits"):
            kfold(data, n_splits=bad)
    assert len(kfold(data, n_splits=data.nnz)) == data.nnz
    with pytest.raises(ParameterError, match="random_state"):
        kfold(data, random_state="x")
    one = Interactions.from_arrays([1], [1], [1.0])
    with pytest.raises(DataError, match="at least 2"):
        kfold(one, n_splits=2)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, True, False, float("nan"), "0.2",
                                 None])
def test_bad_test_size(bad):
    with pytest.raises(ParameterError, match="test_size"):
        train_test_split(make_data(), test_size=bad)


@pytest.mark.parametrize("bad", ["Random", "stratified", "", None, 3])
def test_unknown_strategy(bad):
    with pytest.raises(ParameterError, match="strategy") as info:
        train_test_split(make_data(), strategy=bad)
    for name in STRATEGIES:
        assert name in str(info.value)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, np.random.default_rng(0)])
def test_bad_random_state(bad):
    with pytest.raises(ParameterError, match="random_state"):
        train_test_split(make_data(), random_state=bad)


@pytest.mark.parametrize("bad", [0, -2, 1.0, True])
def test_bad_n(bad):
    with pytest.raises(ParameterError, match="n"):
        train_test_split(make_data(), strategy="last_n", n=bad)


def test_bad_data():
    with pytest.raises(ParameterError, match="Interactions"):
        train_test_split([(1, 2, 3.0)])


@pytest.mark.parametrize("strategy", ["temporal", "last_n"])
def test_time_strategies_need_timestamps(strategy):
    with pytest.raises(DataError, match="timestamps"):
        train_test_split(make_data(timestamps=False), strategy=strategy)


def test_empty_sets_are_data_errors():
    data = make_data()  # ~220 interactions
    with pytest.raises(DataError, match="test set would be empty.*test_size"):
        train_test_split(data, test_size=0.001)
    with pytest.raises(DataError, match="test set would be empty"):
        train_test_split(data, test_size=0.001, strategy="temporal")
    singles = Interactions.from_arrays([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0],
                                       timestamps=[1, 2, 3])
    with pytest.raises(DataError, match="single interaction"):
        train_test_split(singles, strategy="per_user")
    with pytest.raises(DataError, match="test set would be empty"):
        train_test_split(singles, strategy="last_n")
    two_users = Interactions.from_arrays([1, 1, 2], [1, 2, 1], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="training set would be empty"):
        train_test_split(two_users, test_size=0.9, strategy="cold_users")
    with pytest.raises(DataError, match="training set would be empty"):
        train_test_split(two_users, test_size=0.9, strategy="random")


# ------------------------------------------------------------------------------ property test


@st.composite
def small_data(draw):
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(2, 6))
    cells = draw(st.lists(st.integers(0, n_users * n_items - 1), min_size=2,
                          max_size=n_users * n_items, unique=True))
    cells = np.array(cells)
    return Interactions.from_arrays(cells // n_items * 3, cells % n_items, np.ones(len(cells)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=small_data(), test_size=st.floats(0.01, 0.99), seed=st.integers(0, 2**32),
       strategy=st.sampled_from(["random", "per_user", "kfold"]), n_splits=st.integers(2, 6))
def test_property_partition_and_no_overlap(data, test_size, seed, strategy, n_splits):
    if strategy == "kfold":
        n_splits = min(n_splits, data.nnz)
        folds = kfold(data, n_splits=n_splits, random_state=seed)
        tested = []
        for split in folds:
            tested += check_partition(data, split)[1]
        assert sorted(tested) == list(range(data.nnz))
        return
    expected = reference(data, strategy, test_size, seed)
    if len(expected) in (0, data.nnz):
        with pytest.raises(DataError):
            train_test_split(data, test_size, strategy, random_state=seed)
        return
    split = train_test_split(data, test_size, strategy, random_state=seed)
    assert check_partition(data, split)[1] == expected
    check_vocabulary(split)


# ------------------------------------------------------------------------------ ML-100K


def _ml100k_path() -> Path:
    root = os.environ.get("MATFACT_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return base / "ml-100k" / "u.data"


@pytest.fixture(scope="module")
def ml100k() -> Interactions:
    path = _ml100k_path()
    if not path.is_file():
        pytest.skip(f"ML-100K not found at {path} (set MATFACT_DATA to the data directory)")
    return Interactions.from_csv(path, user=0, item=1, rating=2, timestamp=3, sep="\t",
                                 header=None, rating_scale=(1, 5))


def test_ml100k_random(ml100k):
    split = train_test_split(ml100k, 0.2, "random", random_state=42)
    assert (split.train.nnz, split.test.nnz) == (80_000, 20_000)
    split.check_overlap()
    perm = np.random.default_rng(42).permutation(100_000)
    test_pos = np.sort(perm[:20_000])
    np.testing.assert_array_equal(split.test.users, ml100k.users[test_pos])
    np.testing.assert_array_equal(split.test.items, ml100k.items[test_pos])


def test_ml100k_per_user(ml100k):
    counts = Counter(ml100k.users.tolist())
    assert min(counts.values()) >= 20
    split = train_test_split(ml100k, 0.2, "per_user", random_state=42)
    split.check_overlap()
    got = Counter(split.test.users.tolist())
    assert all(got[u] == max(1, round(0.2 * n_u)) for u, n_u in counts.items())
    assert split.train.n_users == ml100k.n_users  # every user keeps training data
    assert len(split.unseen_users) == 0
    assert positions_in(ml100k, split.test) == ref_per_user(ml100k, 0.2, 42)
