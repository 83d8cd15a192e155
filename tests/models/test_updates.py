"""update_users / add_items: the generic item placement against closed forms, row rewrites."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import matfact
from matfact.models._updates import _replace_rows
from tests.models.contract import planted_interactions


def test_new_item_from_ratings_is_the_ridge_solution_on_user_vectors():
    data = planted_interactions("explicit")
    model = matfact.SVDPlusPlus(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    users = data.user_ids[:10]
    ratings = np.linspace(1, 5, 10)
    model.add_items([999], [(users, ratings)])
    codes = model.user_index_.get_indexer(users)
    design = np.hstack([model.user_factors_[codes].astype(np.float64), np.ones((10, 1))])
    target = ratings - model.global_mean_ - model.user_bias_[codes]
    solution = np.linalg.solve(design.T @ design + 0.1 * 10 * np.eye(5), design.T @ target)
    code = model.item_index_.get_indexer([999])[0]
    np.testing.assert_allclose(model.item_factors_[code], solution[:4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.item_bias_[code], solution[4], rtol=1e-5, atol=1e-6)
    # SVD++'s own per-item arrays grow with the item.
    assert model.implicit_factors_.shape[0] == model.n_items_


def test_svdpp_update_users_splits_the_vector_into_own_and_implicit_parts():
    data = planted_interactions("explicit")
    model = matfact.SVDPlusPlus(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    items, ratings = data.item_ids[:5], np.array([5.0, 1, 2, 4, 3])
    model.update_users([data.user_ids[0], "new"] if data.user_index.kind == "str" else
                       [data.user_ids[0], 999], [(items, ratings), (items, ratings)])
    codes = model.item_index_.get_indexer(items)
    for code in (0, model.n_users_ - 1):
        np.testing.assert_allclose(model.user_own_factors_[code] + model._implicit_sum(codes),
                                   model.user_factors_[code], rtol=1e-5, atol=1e-6)


def test_per_rating_times_follow_the_rewritten_rows():
    data = planted_interactions("explicit")
    stamped = matfact.Interactions.from_arrays(
        data.users, data.items, data.ratings, rating_scale=(1, 5),
        timestamps=1_600_000_000 + np.arange(data.nnz) * 3600)
    model = matfact.BiasedMF(n_factors=3, max_iter=2, time_decay=30.0,
                             random_state=0).fit(stamped, progress=False)
    before = model.seen_.tocoo()
    times = dict(zip(zip(before.row.tolist(), before.col.tolist(), strict=True),
                     model.rating_times_.tolist(), strict=True))
    user = data.user_ids[0]
    row = model.seen_[0]
    kept = model.item_index_.ids[row.indices[:2]]
    fresh = next(i for i in model.item_index_.ids if i not in set(
        model.item_index_.ids[row.indices].tolist()))
    model.update_users([user], [([*kept, fresh], [5.0, 4.0, 3.0])])
    after = model.seen_.tocoo()
    assert len(model.rating_times_) == model.seen_.nnz
    for r, c, t in zip(after.row, after.col, model.rating_times_, strict=True):
        expected = times.get((r, c), model.time_newest_)
        assert t == expected


def test_new_item_from_implicit_feedback_is_the_weighted_closed_form():
    data = planted_interactions("implicit")
    model = matfact.BPR(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    users = data.user_ids[:6]
    weights = np.arange(1.0, 7.0)
    model.add_items([999], [(users, weights)])
    every = model.user_factors_.astype(np.float64)
    codes = model.user_index_.get_indexer(users)
    dense_c = np.ones(len(every))
    dense_c[codes] += weights
    pref = np.zeros(len(every))
    pref[codes] = 1.0
    gram = (every.T * dense_c) @ every + 0.1 * 6 * np.eye(4)
    expected = np.linalg.solve(gram, (every.T * dense_c) @ pref)
    code = model.item_index_.get_indexer([999])[0]
    np.testing.assert_allclose(model.item_factors_[code], expected, rtol=1e-4, atol=1e-6)


def test_symmetric_models_place_items_with_their_own_half_step():
    data = planted_interactions("explicit")
    model = matfact.ALS(n_factors=3, max_iter=4, random_state=0).fit(data, progress=False)
    transposed = matfact.Interactions.from_arrays(data.items, data.users, data.ratings,
                                                  rating_scale=(1, 5))
    mirror = matfact.ALS(n_factors=3, max_iter=4, random_state=0)
    mirror.fit(transposed, progress=False)
    # The mirror's users are our items: placing an item equals the mirror's user fold-in
    # given our user factors as its item factors.
    mirror.item_factors_, mirror.item_bias_ = model.user_factors_, model.user_bias_
    mirror.global_mean_ = model.global_mean_
    users, ratings = data.user_ids[:7], np.array([5.0, 4, 3, 2, 1, 2, 3])
    expected = mirror.fold_in(users, ratings)
    assert model._symmetric_fold_in
    model.add_items([999], [(users, ratings)])
    code = model.item_index_.get_indexer([999])[0]
    np.testing.assert_allclose(model.item_factors_[code], expected.factors, rtol=1e-5)


def test_update_users_on_a_loaded_model_copies_its_read_only_arrays(tmp_path):
    data = planted_interactions("explicit")
    model = matfact.BiasedMF(n_factors=3, max_iter=3, random_state=0).fit(data, progress=False)
    model.save(tmp_path / "m.zip")
    loaded = matfact.load(tmp_path / "m.zip")
    loaded.update_users([data.user_ids[0]], [(data.item_ids[:3], [5.0, 1.0, 3.0])])
    expected = loaded.fold_in(data.item_ids[:3], [5.0, 1.0, 3.0])
    np.testing.assert_allclose(loaded.user_vector(data.user_ids[0]).factors, expected.factors)
    # The saved file is untouched.
    again = matfact.load(tmp_path / "m.zip")
    np.testing.assert_array_equal(again.user_factors_, model.user_factors_)


@given(st.integers(1, 8), st.integers(1, 6), st.data())
@settings(max_examples=60, deadline=None)
def test_replace_rows_equals_a_dense_rewrite(n_rows, n_cols, draw):
    rng = np.random.default_rng(draw.draw(st.integers(0, 2**31)))
    dense = np.where(rng.random((n_rows, n_cols)) < 0.4, rng.integers(1, 6, (n_rows, n_cols)), 0)
    codes = np.array(sorted(draw.draw(st.sets(st.integers(0, n_rows - 1), max_size=n_rows))),
                     dtype=np.int64)
    rows, expected = [], dense.astype(np.float32).copy()
    for code in codes:
        columns = rng.permutation(n_cols)[: rng.integers(0, n_cols + 1)]
        values = rng.integers(1, 6, len(columns)).astype(np.float64)
        rows.append((columns, values))
        expected[code] = 0
        expected[code, columns] = values
    out = _replace_rows(sp.csr_matrix(dense.astype(np.float32)), codes, rows)
    np.testing.assert_array_equal(out.toarray(), expected)
    assert out.has_sorted_indices


def test_nmf_places_new_items_non_negative_by_the_item_side_nnls():
    from scipy.optimize import nnls

    data = planted_interactions("explicit")
    model = matfact.NMF(n_components=3, biased=False, max_iter=20, tol=0, alpha_W=0.0,
                        alpha_H=0.0, random_state=0).fit(data, progress=False)
    users, ratings = data.user_ids[:9], np.array([5.0, 1, 4, 2, 5, 3, 1, 2, 4])
    model.add_items([999], [(users, ratings)])
    code = model.item_index_.get_indexer([999])[0]
    design = model.user_factors_[model.user_index_.get_indexer(users)].astype(np.float64)
    expected, _ = nnls(design, ratings - model.global_mean_)
    assert (model.item_factors_[code] >= 0).all()
    np.testing.assert_allclose(model.item_factors_[code], expected, rtol=1e-3, atol=1e-3)
