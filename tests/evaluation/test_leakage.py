"""Test pairs the model saw in training are counted and warned about (issue 20, finding 2).

``matfact evaluate --model trained_on_everything.zip --data same_file`` reported RMSE 0.719
against the honest 0.796, silently. The model keeps the pairs it was trained on
(``seen_``); ``Recommender.seen_pairs_mask`` reads them, ``count_overlap`` counts a test
set's, and ``evaluate`` / ``evaluate_ranking`` / ``cross_validate`` / the report report the
count and warn (:class:`~matfact.LeakageWarning`) when it is not zero.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import matfact
from matfact import Interactions, LeakageWarning, MatfactWarning
from matfact.evaluation import count_overlap
from matfact.evaluation.report import _overlap_text
from tests.models.contract import planted_interactions

#: Hand-built training ratings: 3 users, 4 items, 7 pairs.
TRAIN = [("a", "x", 4.0), ("a", "y", 3.0), ("a", "z", 5.0), ("b", "x", 2.0), ("b", "w", 4.0),
         ("c", "y", 1.0), ("c", "w", 3.0)]


def _interactions(rows, **kwargs) -> Interactions:
    users, items, ratings = zip(*rows, strict=True)
    return Interactions.from_arrays(list(users), list(items), list(ratings), **kwargs)


@pytest.fixture(scope="module")
def train() -> Interactions:
    return _interactions(TRAIN, rating_scale=(1, 5))


@pytest.fixture(scope="module")
def model(train):
    return matfact.Baseline().fit(train, progress=False)


def _leaky_test(k: int) -> Interactions:
    """Exactly ``k`` training pairs, plus 4 pairs the model never saw (new pairs of known
    ids, an unknown user, an unknown item)."""
    fresh = [("a", "w", 3.0), ("b", "y", 4.0), ("new", "x", 5.0), ("c", "new", 2.0)]
    return _interactions(TRAIN[:k] + fresh, rating_scale=(1, 5))


def test_seen_pairs_mask_marks_exactly_the_training_pairs(model):
    u = model.user_index_.get_indexer(np.array(["a", "a", "b", "c", "c", "b", "a"]))
    i = model.item_index_.get_indexer(np.array(["x", "w", "w", "y", "x", "x", "z"]))
    # (a,x) (b,w) (c,y) (b,x) (a,z) were trained on; (a,w) and (c,x) were not.
    expected = [True, False, True, True, False, True, True]
    np.testing.assert_array_equal(model.seen_pairs_mask(u, i), expected)
    # An unknown id (-1) is never seen, on either side.
    np.testing.assert_array_equal(model.seen_pairs_mask(np.array([-1, 0, -1]),
                                                        np.array([0, -1, -1])), [False] * 3)
    assert model.seen_pairs_mask(np.zeros(0, int), np.zeros(0, int)).shape == (0,)


def test_seen_pairs_mask_rejects_bad_codes(model):
    with pytest.raises(matfact.ParameterError, match="2 users but 1 items"):
        model.seen_pairs_mask(np.array([0, 1]), np.array([0]))
    with pytest.raises(matfact.DataError, match="codes must lie below"):
        model.seen_pairs_mask(np.array([0]), np.array([model.n_items_]))
    with pytest.raises(matfact.NotFittedError):
        matfact.Baseline().seen_pairs_mask(np.array([0]), np.array([0]))


def test_seen_pairs_mask_does_not_rely_on_sorted_indices(model):
    # A CSR whose rows list their items out of order (scipy allows it) answers the same.
    seen = model.seen_.tocsr()
    indices = seen.indices.copy()
    for row in range(seen.shape[0]):
        start, end = seen.indptr[row], seen.indptr[row + 1]
        indices[start:end] = indices[start:end][::-1]
    shuffled = sp.csr_matrix((seen.data, indices, seen.indptr.copy()), shape=seen.shape)
    shuffled.has_sorted_indices = False
    users, items = np.divmod(np.arange(seen.shape[0] * seen.shape[1]), seen.shape[1])
    expected = model.seen_pairs_mask(users, items)
    other = matfact.clone(model).fit(_interactions(TRAIN, rating_scale=(1, 5)), progress=False)
    other.seen_ = shuffled
    np.testing.assert_array_equal(other.seen_pairs_mask(users, items), expected)
    assert expected.sum() == len(TRAIN)


@pytest.mark.parametrize("k", [0, 1, 3, len(TRAIN)])
def test_evaluate_counts_and_warns_about_exactly_k_training_pairs(model, k):
    test = _leaky_test(k)
    n = len(TRAIN[:k]) + 4
    if k == 0:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = matfact.evaluate(model, test)
    else:
        share = f"{k / n:.1%}"
        with pytest.warns(LeakageWarning, match=rf"^{k} of {n} test pairs \({share}\) were in "
                                                rf"Baseline's training data: their errors"):
            result = matfact.evaluate(model, test)
    assert result["n_overlap"] == k == count_overlap(model, test)
    assert result["n"] == n


@pytest.mark.parametrize("k", [0, 2, len(TRAIN)])
def test_evaluate_ranking_counts_and_warns_about_exactly_k_training_pairs(model, k):
    test = _leaky_test(k)
    n = len(TRAIN[:k]) + 4
    if k == 0:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            summary = matfact.evaluate_ranking(model, test, k=2, metrics=["ndcg", "recall"])
    else:
        with pytest.warns(LeakageWarning, match=rf"^{k} of {n} test pairs .* never recommended"):
            summary = matfact.evaluate_ranking(model, test, k=2, metrics=["ndcg", "recall"])
    assert summary["n_overlap"] == k


def test_the_warning_points_at_the_caller(model):
    with pytest.warns(LeakageWarning) as record:
        matfact.evaluate(model, _leaky_test(2))
    assert record[0].filename == __file__


def test_leakage_warning_is_a_user_warning_exported_at_the_top():
    assert issubclass(LeakageWarning, MatfactWarning)
    assert issubclass(LeakageWarning, UserWarning)
    assert "LeakageWarning" in matfact.__all__


@pytest.mark.parametrize("strategy", ["random", "per_user", "temporal", "last_n", "cold_users",
                                      "cold_items"])
def test_honest_splits_have_no_overlap_and_no_warning(strategy):
    data = planted_interactions("explicit", n_users=40, n_items=30, density=0.3, seed=2)
    data = Interactions.from_arrays(data.users, data.items, data.ratings, rating_scale=(1, 5),
                                    timestamps=np.arange(data.nnz))
    train, test = matfact.train_test_split(data, 0.25, strategy, random_state=1)
    model = matfact.Baseline().fit(train, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert matfact.evaluate(model, test)["n_overlap"] == 0
        assert matfact.evaluate_ranking(model, test, metrics=["ndcg"])["n_overlap"] == 0


def test_cross_validation_folds_have_no_overlap_and_no_warning():
    data = planted_interactions("explicit", n_users=40, n_items=30, density=0.3, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = matfact.cross_validate(matfact.Baseline(), data, cv=3,
                                       metrics=["rmse", "ndcg@5"])
    assert (frame.loc[[0, 1, 2], "n_overlap"] == 0).all()


def test_cross_validation_on_its_own_training_pairs_is_caught():
    # A hand-made "fold" whose test part is a slice of its training part.
    data = planted_interactions("explicit", n_users=40, n_items=30, density=0.3, seed=3)
    leaky = data.take(np.arange(25))
    with pytest.warns(LeakageWarning, match="^25 of 25 test pairs"):
        frame = matfact.cross_validate(matfact.Baseline(), data, cv=[(data, leaky)],
                                       metrics=["rmse"])
    assert frame.loc[0, "n_overlap"] == 25


def test_a_model_that_keeps_no_pairs_cannot_tell_and_says_so(model, train):
    blind = matfact.clone(model).fit(train, progress=False)
    blind.seen_ = None
    test = _leaky_test(3)
    assert blind.seen_pairs_mask(np.array([0]), np.array([0])) is None
    assert count_overlap(blind, test) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert matfact.evaluate(blind, test)["n_overlap"] is None


@pytest.mark.parametrize("make", [
    lambda: matfact.Popularity(),
    lambda: matfact.PureSVD(n_factors=2),
    lambda: matfact.ALS(n_factors=2, max_iter=2, random_state=0),
    lambda: matfact.ImplicitALS(n_factors=2, max_iter=2, random_state=0),
], ids=["Popularity", "PureSVD", "ALS", "ImplicitALS"])
def test_every_kind_of_model_counts_from_its_training_pairs(make):
    data = planted_interactions("explicit", n_users=30, n_items=20, density=0.3, seed=4)
    model = make()
    if not model.learns_from("explicit"):
        data = data.to_implicit()
    train, test = matfact.train_test_split(data, 0.3, "random", random_state=0)
    model.fit(train, progress=False)
    assert count_overlap(model, test) == 0
    assert count_overlap(model, train) == train.nnz
    both = data.take(np.arange(data.nnz))  # all of it: exactly the training part overlaps
    assert count_overlap(model, both) == train.nnz


# Small vocabularies so that random train and test sets share many pairs.
pairs = st.lists(st.tuples(st.integers(0, 6), st.sampled_from("abcdef")), min_size=1,
                 max_size=30, unique=True)


@settings(max_examples=60, deadline=None)
@given(train_pairs=pairs, test_pairs=pairs, string_users=st.booleans())
def test_count_equals_the_set_intersection(train_pairs, test_pairs, string_users):
    def build(chosen):
        users = [f"u{u}" if string_users else u for u, _ in chosen]
        return Interactions.from_arrays(users, [i for _, i in chosen],
                                        weights=np.ones(len(chosen)))

    model = matfact.Popularity().fit(build(train_pairs), progress=False)
    test = build(test_pairs)
    assert count_overlap(model, test) == len(set(train_pairs) & set(test_pairs))
    users = model.user_index_.get_indexer(test.user_ids)[test.user_codes]
    items = model.item_index_.get_indexer(test.item_ids)[test.item_codes]
    raw = zip(test.user_ids[test.user_codes], test.item_ids[test.item_codes], strict=True)
    trained = {(f"u{u}" if string_users else u, i) for u, i in train_pairs}
    np.testing.assert_array_equal(model.seen_pairs_mask(users, items),
                                  [(u, i) in trained for u, i in raw])


def test_report_line_shows_the_count():
    honest = pd.DataFrame({"model": ["A", "A", "B", "B"], "n_test": [10, 10, 10, 10],
                           "n_overlap": [0, 0, 0, 0]})
    assert _overlap_text(honest).startswith("Test pairs seen in training: 0 in every fold")
    leaky = honest.assign(n_overlap=[0, 0, 3, 4])
    text = _overlap_text(leaky)
    assert "B: 7 of 20 (35.0%)" in text and "A:" not in text
    blind = honest.assign(n_overlap=[0, 0, None, None])
    assert "B keep(s) no training pairs" in _overlap_text(blind)
