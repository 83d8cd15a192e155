"""The contract every matfact model must pass: subclass :class:`ModelContract`.

A subclass sets ``make_model`` (a fresh, small, fast model), ``data_kind``
("explicit" or "implicit") and ``bad_params`` (keyword sets that ``fit`` must
refuse with :class:`~matfact.ParameterError`), and ``saved_class`` if a saved
model loads as another class than its own (the Dask models save as the local one).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import matfact
from matfact import (
    DataError,
    Interactions,
    ModelFormatError,
    NotFittedError,
    ParameterError,
    UnknownIdError,
)


def planted_interactions(kind: str = "explicit", n_users: int = 60, n_items: int = 40,
                         density: float = 0.3, seed: int = 0, string_ids: bool = False,
                         empty_user: bool = False) -> Interactions:
    """A small planted rank-3 problem with known structure (ratings on 1..5)."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_users, 3))
    q = rng.normal(size=(n_items, 3))
    scores = 3.0 + 0.6 * (p @ q.T) + rng.normal(scale=0.3, size=(n_users, n_items))
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user rates
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True  # every item rated
    if empty_user:
        mask[-1] = False
    rows, cols = np.nonzero(mask)
    order = rng.permutation(len(rows))
    rows, cols = rows[order], cols[order]
    user_ids = np.array([f"u{u:03d}" for u in range(n_users)]) if string_ids else np.arange(
        100, 100 + n_users)
    item_ids = np.array([f"i{i:03d}" for i in range(n_items)]) if string_ids else np.arange(
        n_items) * 7
    values = np.clip(np.round(scores[rows, cols]), 1, 5)
    if kind == "implicit":
        data = Interactions.from_arrays(user_ids[rows], item_ids[cols], weights=values)
    else:
        data = Interactions.from_arrays(user_ids[rows], item_ids[cols], values,
                                        rating_scale=(1, 5))
    if empty_user:
        data = data._reindex(data.user_index.extend([user_ids[-1]]), data.item_index)
    return data


class ModelContract:
    """Mixin of contract tests; see the module docstring."""

    data_kind = "explicit"
    bad_params: list[dict] = []
    #: The class a saved model loads as; None: the model's own class.
    saved_class: type | None = None

    def make_model(self):  # pragma: no cover - overridden
        raise NotImplementedError

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):
        return planted_interactions(cls.data_kind)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data):
        return cls().make_model().fit(data, progress=False)

    # ------------------------------------------------------------------ fitting
    def test_fit_returns_self_and_sets_state(self, data):
        model = self.make_model()
        assert not model.is_fitted
        assert model.fit(data, progress=False) is model
        assert model.is_fitted
        assert model.n_users_ == data.n_users and model.n_items_ == data.n_items

    def test_unfitted_model_raises(self):
        model = self.make_model()
        with pytest.raises(NotFittedError, match="not fitted"):
            model.predict([1], [1])
        with pytest.raises(NotFittedError):
            model.recommend([1])

    def test_fit_rejects_non_interactions(self):
        with pytest.raises(DataError, match="Interactions"):
            self.make_model().fit(np.ones((3, 3)), progress=False)

    def test_bad_parameters_are_refused_at_fit(self, data):
        for params in self.bad_params:
            model = self.make_model().set_params(**params)
            with pytest.raises(ParameterError, match=next(iter(params))):
                model.fit(data, progress=False)

    def test_fit_is_deterministic(self, data, fitted):
        again = self.make_model().fit(data, progress=False)
        users, items = data.users[:50], data.items[:50]
        np.testing.assert_array_equal(again.predict(users, items), fitted.predict(users, items))

    def test_params_clone(self, fitted):
        copy = matfact.clone(fitted)
        assert copy.get_params() == fitted.get_params()
        assert not copy.is_fitted

    # ------------------------------------------------------------------ predict
    def test_predict_batch_equals_single(self, data, fitted):
        users, items = data.users[:20], data.items[:20]
        batch = fitted.predict(users, items)
        single = np.array([fitted.predict(u, i)[0] for u, i in zip(users, items, strict=True)])
        np.testing.assert_allclose(batch, single, rtol=1e-6)
        assert batch.shape == (20,) and batch.dtype == np.float64
        assert np.isfinite(batch).all()

    def test_predictions_within_rating_scale(self, data, fitted):
        scores = fitted.predict(data.users, data.items)
        if fitted.rating_scale_ is not None:
            lo, hi = fitted.rating_scale_
            assert scores.min() >= lo and scores.max() <= hi

    def test_predict_length_mismatch(self, fitted, data):
        with pytest.raises(ParameterError, match="pair"):
            fitted.predict(data.users[:3], data.items[:2])

    def test_unknown_ids(self, data, fitted):
        known_user, known_item = data.users[0], data.items[0]
        unknown = "nobody" if data.user_index.kind == "int" else -12345
        fallback = fitted.predict([unknown, known_user], [known_item, unknown])
        assert np.isfinite(fallback).all()
        with pytest.raises(UnknownIdError, match="unknown user"):
            fitted.predict([unknown], [known_item], unknown="raise")
        with pytest.raises(UnknownIdError, match="unknown item"):
            fitted.predict([known_user], [unknown], unknown="raise")
        nan = fitted.predict([unknown, known_user], [known_item, known_item], unknown="nan")
        assert np.isnan(nan[0]) and np.isfinite(nan[1])
        ids, scores = fitted.recommend([unknown], n=5)
        assert ids.shape == (1, 5) and np.isfinite(scores).all()
        with pytest.raises(UnknownIdError):
            fitted.recommend([unknown], n=5, unknown="raise")

    # ------------------------------------------------------------------ recommend
    def test_recommend_shapes_order_and_exclusion(self, data, fitted):
        users = data.user_ids[:7]
        ids, scores = fitted.recommend(users, n=5)
        assert ids.shape == scores.shape == (7, 5)
        assert scores.dtype == np.float32
        assert (np.diff(scores, axis=1) <= 0).all(), "scores must be sorted, best first"
        seen = data.to_scipy()
        for row, user in enumerate(users):
            code = data.user_index.get_indexer([user])[0]
            seen_items = set(data.item_ids[seen[code].indices].tolist())
            assert not seen_items & set(ids[row].tolist())

    def test_recommend_batch_equals_single(self, data, fitted):
        users = data.user_ids[:6]
        ids, scores = fitted.recommend(users, n=4)
        for row, user in enumerate(users):
            one_ids, one_scores = fitted.recommend(user, n=4)
            np.testing.assert_array_equal(one_ids[0], ids[row])
            np.testing.assert_allclose(one_scores[0], scores[row], rtol=1e-6)

    def test_recommend_include_seen_and_candidates(self, data, fitted):
        user = data.user_ids[0]
        ids, _ = fitted.recommend(user, n=data.n_items, exclude_seen=False)
        assert sorted(ids[0].tolist()) == sorted(data.item_ids.tolist())
        candidates = data.item_ids[::3]
        ids, _ = fitted.recommend(user, n=3, items=candidates, exclude_seen=False)
        assert set(ids[0].tolist()) <= set(candidates.tolist())

    def test_recommend_scores_agree_with_predict(self, data, fitted):
        user = data.user_ids[1]
        ids, scores = fitted.recommend(user, n=5)
        direct = fitted.predict(np.repeat(user, 5), ids[0], clip=False)
        np.testing.assert_allclose(scores[0], direct, rtol=1e-4, atol=1e-4)

    def test_recommend_bad_n(self, data, fitted):
        for n in (0, -1, 2.5, True):
            with pytest.raises(ParameterError, match="n must be"):
                fitted.recommend(data.user_ids[:1], n=n)

    def test_recommend_pads_when_too_few_items(self, data, fitted):
        user = data.user_ids[0]
        n_seen = np.diff(data.to_scipy().indptr)[0]
        ids, scores = fitted.recommend(user, n=data.n_items)
        assert ids.shape == (1, data.n_items)
        assert np.isnan(scores[0, data.n_items - n_seen:]).all()

    def test_empty_user_in_vocabulary(self):
        data = planted_interactions(self.data_kind, empty_user=True)
        model = self.make_model().fit(data, progress=False)
        empty = data.user_ids[-1]
        ids, scores = model.recommend([empty], n=3)
        assert ids.shape == (1, 3) and np.isfinite(scores).all()
        assert np.isfinite(model.predict([empty], [data.item_ids[0]])).all()

    def test_string_ids(self):
        data = planted_interactions(self.data_kind, string_ids=True)
        model = self.make_model().fit(data, progress=False)
        ids, _ = model.recommend(["u001"], n=3)
        assert ids.dtype.kind == "U" and all(x.startswith("i") for x in ids[0])

    # ------------------------------------------------------------------ cold start
    def test_fold_in_and_recommend_for_history(self, data, fitted):
        items = data.item_ids[:5]
        ratings = np.array([5.0, 4.0, 1.0, 2.0, 5.0])
        vector = fitted.fold_in(items, ratings)
        assert vector.factors.dtype == np.float32 and np.isfinite(vector.bias)
        ids, scores = fitted.recommend_for_history(items, ratings, n=4)
        assert ids.shape == (4,) and not set(ids.tolist()) & set(items.tolist())
        assert (np.diff(scores) <= 0).all()
        with pytest.raises(UnknownIdError):
            fitted.fold_in(np.append(items, "zzz" if data.item_index.kind == "int" else -5),
                           np.append(ratings, 3.0), unknown="raise")

    def test_fold_in_does_not_change_model(self, data, fitted):
        before = fitted.predict(data.users[:30], data.items[:30])
        fitted.fold_in(data.item_ids[:5], np.full(5, 4.0))
        np.testing.assert_array_equal(before, fitted.predict(data.users[:30], data.items[:30]))

    def test_update_users_equals_fold_in_and_adds_new_ids(self, data):
        model = self.make_model().fit(data, progress=False)
        items = data.item_ids[:6]
        ratings = np.array([5.0, 4.0, 1.0, 2.0, 5.0, 3.0])
        known, new = data.user_ids[0], ("zz" if data.user_index.kind == "str" else 10_000)
        other = data.user_ids[1]
        before_other = model.predict(np.repeat(other, 6), items)
        expected = model.fold_in(items, ratings)
        assert model.update_users([known, new], [(items, ratings), dict(zip(items, ratings,
                                                                           strict=True))]) is model
        assert model.n_users_ == data.n_users + 1
        direct = model.predict(np.repeat(new, 6), items, clip=False)
        np.testing.assert_allclose(direct, model.predict(np.repeat(known, 6), items, clip=False),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(direct, model._score_vector(expected)[
            model.item_index_.get_indexer(items)], rtol=1e-4, atol=1e-4)
        # Other users are untouched, the new history is what recommend excludes.
        np.testing.assert_array_equal(model.predict(np.repeat(other, 6), items), before_other)
        ids, _ = model.recommend([known, new], n=data.n_items)
        for row in ids:
            assert set(row[row != model._empty_ids(model.item_index_, (1,))[0]].tolist()) == \
                set(data.item_ids.tolist()) - set(items.tolist())

    def test_update_users_bad_input(self, data, fitted):
        with pytest.raises(DataError, match="histories"):
            fitted.update_users(data.user_ids[:2], [(data.item_ids[:2], [4.0, 5.0])])
        with pytest.raises(DataError, match="repeat"):
            fitted.update_users([data.user_ids[0]] * 2, [(data.item_ids[:1], [4.0])] * 2)
        with pytest.raises(DataError, match="NaN"):
            fitted.update_users(data.user_ids[:1], [(data.item_ids[:1], [np.nan])])
        if fitted.rating_scale_ is not None:
            with pytest.raises(DataError, match="scale"):
                fitted.update_users(data.user_ids[:1], [(data.item_ids[:1], [99.0])])

    def test_add_items_places_items_and_refuses_known_ones(self, data):
        model = self.make_model().fit(data, progress=False)
        new = ["n1", "n2"] if data.item_index.kind == "str" else [10_001, 10_002]
        users = data.user_ids[:8]
        model.add_items(new, [(users, np.full(8, 5.0)), ((), ())])
        assert model.n_items_ == data.n_items + 2
        assert model.seen_.shape == (data.n_users, data.n_items + 2)
        scores = model.predict(np.repeat(users, 2), np.tile(new, 8), unknown="raise")
        assert np.isfinite(scores).all()
        ids, _ = model.recommend(users[:1], n=data.n_items + 2, exclude_seen=True)
        assert new[0] not in ids[0].tolist() and new[1] in ids[0].tolist()
        with pytest.raises(DataError, match="already"):
            model.add_items(data.item_ids[:1])

    # ------------------------------------------------------------------ persistence
    @pytest.mark.parametrize("suffix", [".zip", ""])
    def test_save_load_round_trip(self, data, fitted, tmp_path, suffix):
        path = tmp_path / f"model{suffix}"
        fitted.save(path)
        loaded = matfact.load(path)
        assert type(loaded) is (self.saved_class or type(fitted))
        assert loaded.get_params() == fitted.get_params()
        np.testing.assert_array_equal(loaded.predict(data.users, data.items),
                                      fitted.predict(data.users, data.items))
        a = fitted.recommend(data.user_ids[:5], n=5)
        b = loaded.recommend(data.user_ids[:5], n=5)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert type(fitted).load(path).get_params() == fitted.get_params()

    def test_load_as_wrong_class(self, fitted, tmp_path):
        path = tmp_path / "m.zip"
        fitted.save(path)
        other = matfact.Popularity if not isinstance(fitted, matfact.Popularity) \
            else matfact.Baseline
        with pytest.raises(ModelFormatError, match="not a"):
            other.load(path)

    def test_learned_arrays_are_float32(self, fitted):
        for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
            value = getattr(fitted, name, None)
            if value is not None:
                assert value.dtype == np.float32, name

    def test_from_scipy_matrix(self):
        dense = np.zeros((8, 6))
        dense[np.arange(8), np.arange(8) % 6] = 4
        dense[np.arange(8), (np.arange(8) + 1) % 6] = 2
        data = Interactions.from_scipy(sp.csr_matrix(dense), implicit=self.data_kind == "implicit")
        model = self.make_model().fit(data, progress=False)
        assert model.recommend([0], n=2)[0].shape == (1, 2)
