"""HybridMF: contract (explicit and implicit), ids-only against plain MF, features on cold
items and cold users, persistence of the feature vocabulary, and a cold-item band on ML-100K.

The update rules are checked against references in ``tests/kernels/test_hybrid_kernels.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import matfact
from matfact import DataError, HybridMF, Interactions, ParameterError
from tests.models.contract import ModelContract, planted_interactions


# ---------------------------------------------------------------------- contract
class TestHybridMFContract(ModelContract):
    data_kind = "explicit"
    bad_params = [
        {"n_factors": 0}, {"loss": "hinge"}, {"learning_rate": 0}, {"reg": -1.0},
        {"reg_bias": -0.1}, {"max_iter": 0}, {"init_std": -1.0}, {"use_ids": 1},
        {"user_features": "age"}, {"item_features": True}, {"normalize": None},
        {"max_sampled": 0}, {"random_state": -1}, {"n_threads": 0},
    ]

    def make_model(self):
        return HybridMF(n_factors=8, max_iter=10, random_state=0)


class TestHybridMFWarpContract(ModelContract):
    data_kind = "implicit"
    bad_params = [{"n_factors": -2}, {"loss": "logistic"}]

    def make_model(self):
        return HybridMF(n_factors=8, max_iter=10, random_state=0)

    def test_auto_loss_is_warp_on_implicit_data(self, fitted):
        assert fitted.loss_ == "warp" and fitted.rating_scale_ is None

    def test_squared_loss_refuses_implicit_data(self, data):
        with pytest.raises(DataError, match="loss='squared' needs explicit"):
            HybridMF(loss="squared", max_iter=1).fit(data, progress=False)


class TestHybridMFBPRContract(TestHybridMFWarpContract):
    def make_model(self):
        return HybridMF(n_factors=8, max_iter=10, loss="bpr", random_state=0)

    def test_auto_loss_is_warp_on_implicit_data(self, fitted):
        assert fitted.loss_ == "bpr" and fitted.rating_scale_ is None


# ---------------------------------------------------------------------- ids only = plain MF
def _split(data: Interactions, seed: int) -> tuple[Interactions, Interactions]:
    return matfact.train_test_split(data, 0.2, "random", random_state=seed)


def test_ids_only_composition_is_the_embedding_itself():
    """With only identity features each row is one 1: p_u is user u's embedding."""
    data = planted_interactions("explicit")
    model = HybridMF(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    np.testing.assert_array_equal(model.user_factors_, model.user_embeddings_)
    np.testing.assert_array_equal(model.item_factors_, model.item_embeddings_)
    np.testing.assert_array_equal(model.item_bias_, model.item_feature_bias_)
    assert model.user_encoder_state_ is None and model.item_encoder_state_ is None


def test_ids_only_matches_biased_mf_in_expectation():
    """On a planted rank-3 problem, mean test RMSE over seeds equals BiasedMF's (±0.03).

    BiasedMF is run to convergence (a larger step, more epochs) so both solve the same
    problem; both are far better than the biases alone, so the band is meaningful.
    """
    hybrid, biased, baseline = [], [], []
    for seed in range(3):
        data = planted_interactions("explicit", n_users=150, n_items=100, density=0.3,
                                    seed=seed)
        train, test = _split(data, seed)
        hybrid.append(matfact.evaluate(HybridMF(n_factors=3, max_iter=40, random_state=seed)
                                       .fit(train, progress=False), test)["rmse"])
        biased.append(matfact.evaluate(matfact.BiasedMF(n_factors=3, learning_rate=0.03, max_iter=100,
                                                        reg=0.05, random_state=seed)
                                       .fit(train, progress=False), test)["rmse"])
        baseline.append(matfact.evaluate(matfact.Baseline().fit(train, progress=False),
                                         test)["rmse"])
    assert abs(np.mean(hybrid) - np.mean(biased)) < 0.03, (hybrid, biased)
    assert np.mean(hybrid) < np.mean(baseline) - 0.1, (hybrid, baseline)


# ---------------------------------------------------------------------- features, cold start
def genre_toy(seed: int = 0):
    """Two user groups, two genres: group g rates genre g items high, the other low.

    Returns the training data (warm items only), the cold item ids, their
    features, each user's group and each item's genre.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 60
    group = np.arange(n_users) % 2
    genre = rng.integers(0, 2, n_items)
    items = pd.DataFrame({"genre": np.where(genre == 0, "a", "b")}, index=np.arange(n_items))
    users = pd.DataFrame({"group": np.where(group == 0, "x", "y")}, index=np.arange(n_users))
    cold = np.arange(n_items - 12, n_items)
    rows, cols = np.nonzero(rng.random((n_users, n_items - 12)) < 0.5)
    liked = group[rows] == genre[cols]
    ratings = np.where(liked, 5.0, 1.0)
    data = Interactions.from_arrays(rows, cols, ratings, rating_scale=(1, 5),
                                    user_features=users, item_features=items)
    return data, cold, items, group, genre


@pytest.mark.parametrize("loss", ["squared", "bpr", "warp"])
def test_features_move_cold_item_scores(loss):
    data, cold, items, group, genre = genre_toy()
    if loss != "squared":
        data = data.to_implicit(threshold=4)  # positives: the liked items
    model = HybridMF(n_factors=4, max_iter=30, loss=loss, random_state=0).fit(
        data, progress=False)
    model.add_items(cold, features=items)
    scores = model.predict(np.repeat(np.arange(40), len(cold)), np.tile(cold, 40),
                           clip=False).reshape(40, len(cold))
    likes = group[:, None] == genre[cold][None, :]
    # every user scores each cold item of their genre above each of the other genre
    for u in range(40):
        assert scores[u, likes[u]].min() > scores[u, ~likes[u]].max(), u
    # without item features the cold items are indistinguishable
    blind = HybridMF(n_factors=4, max_iter=30, loss=loss, item_features=False,
                     random_state=0).fit(data, progress=False).add_items(cold, features=items)
    flat = blind.predict(np.repeat(0, len(cold)), cold, clip=False)
    assert np.ptp(flat) == 0.0


def test_add_items_extends_the_model():
    data, cold, items, _, _ = genre_toy()
    model = HybridMF(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    n_items = model.n_items_
    assert model.add_items(cold[::-1], features=items) is model
    assert model.n_items_ == n_items + len(cold)
    assert model.item_factors_.shape == (n_items + len(cold), 4)
    assert model.seen_.shape == (model.n_users_, model.n_items_)
    np.testing.assert_array_equal(model.item_index_.ids[n_items:], cold)
    ids, scores = model.recommend([0, 1], n=5, items=cold)
    assert set(ids.ravel().tolist()) <= set(cold.tolist()) and np.isfinite(scores).all()
    with pytest.raises(DataError, match="already in the model"):
        model.add_items(cold[:2], features=items)
    with pytest.raises(DataError, match="already in the model"):
        model.add_users([0], features=pd.DataFrame({"group": ["x"]}, index=[0]))
    with pytest.raises(DataError, match="DataFrame"):
        model.add_items([999], features={"genre": "a"})
    with pytest.raises(DataError, match="lack column 'genre'"):
        model.add_items([999], features=pd.DataFrame({"other": [1]}, index=[999]))


def test_recommend_for_features_and_add_users():
    data, cold, items, group, genre = genre_toy()
    model = HybridMF(n_factors=4, max_iter=30, random_state=0).fit(data, progress=False)
    people = pd.DataFrame({"group": ["x", "y"]}, index=["new-x", "new-y"])
    ids, scores = model.recommend_for_features(people, n=5)
    assert ids.shape == scores.shape == (2, 5) and (np.diff(scores, axis=1) <= 0).all()
    assert (genre[ids[0]] == 0).all() and (genre[ids[1]] == 1).all()
    only = model.recommend_for_features(people, n=3, items=[0, 1, 2, 3])[0]
    assert set(only.ravel().tolist()) <= {0, 1, 2, 3}
    before = model.predict([0], [0])
    model.add_users([1000, 1001], features=pd.DataFrame({"group": ["x", "y"]},
                                                        index=[1000, 1001]))
    factors, bias = model.user_vectors_for_features(people)
    np.testing.assert_allclose(model.user_factors_[-2:], factors)
    np.testing.assert_allclose(model.user_bias_[-2:], bias)
    np.testing.assert_array_equal(model.recommend([1000, 1001], n=5)[0], ids)
    np.testing.assert_array_equal(model.predict([0], [0]), before)


def test_encoder_vocabulary_is_fitted_on_training_ids_only():
    data, cold, items, _, _ = genre_toy()
    extra = items.copy()
    extra.loc[cold, "genre"] = "c"  # a genre only cold items have
    data = Interactions.from_arrays(data.users, data.items, data.ratings, rating_scale=(1, 5),
                                    item_features=extra, user_features=data.user_features)
    model = HybridMF(n_factors=4, max_iter=2, random_state=0).fit(data, progress=False)
    assert model.item_encoder_state_["groups"][0]["values"] == ["a", "b"]


def test_save_load_keeps_the_encoders(tmp_path):
    data, cold, items, _, _ = genre_toy()
    model = HybridMF(n_factors=4, max_iter=5, random_state=0,
                     item_features={"columns": ["genre"]}).fit(data, progress=False)
    model.save(tmp_path / "m.zip")
    loaded = matfact.load(tmp_path / "m.zip")
    assert loaded.item_encoder_state_ == model.item_encoder_state_
    model.add_items(cold, features=items)
    loaded.add_items(cold, features=items)
    np.testing.assert_array_equal(loaded.item_factors_, model.item_factors_)
    people = pd.DataFrame({"group": ["x"]}, index=[0])
    np.testing.assert_array_equal(loaded.recommend_for_features(people, n=4)[0],
                                  model.recommend_for_features(people, n=4)[0])


def test_no_features_at_all_is_an_error():
    data = planted_interactions("explicit")
    with pytest.raises(DataError, match="no feature to learn from"):
        HybridMF(use_ids=False, max_iter=1).fit(data, progress=False)


def test_unknown_encoder_option_is_a_parameter_error():
    data, *_ = genre_toy()
    with pytest.raises(ParameterError, match="unknown keys"):
        HybridMF(item_features={"bin": {}}, max_iter=1).fit(data, progress=False)


def test_feature_only_model_without_ids():
    data, cold, items, group, genre = genre_toy()
    model = HybridMF(use_ids=False, n_factors=4, max_iter=30, random_state=0).fit(
        data, progress=False)
    assert model.n_user_ids_ == 0 and model.user_embeddings_.shape[0] == 2
    scores = model.predict([0, 0], [int(np.flatnonzero(genre == 0)[0]),
                                    int(np.flatnonzero(genre == 1)[0])])
    assert scores[0] > scores[1]


# ---------------------------------------------------------------------- real data
def test_cold_items_on_ml100k_beat_chance(ml100k_full):
    """Strict cold-item protocol, shortened (5 epochs): AUC well above pure MF's 0.5."""
    from benchmarks.hybrid import (
        ITEM_FEATURES,
        _cold_truth,
        cold_item_auc,
        cold_item_split,
        item_feature_frame,
    )

    data = ml100k_full
    train, cold = cold_item_split(data)
    features = item_feature_frame(data)
    train = Interactions.from_arrays(train.users, train.items, train.ratings,
                                     item_features=features, rating_scale=(1, 5))
    users = np.sort(data.user_ids)
    truth = _cold_truth(data, users, cold)

    def auc(item_features):
        model = HybridMF(loss="bpr", n_factors=16, max_iter=5, item_features=item_features,
                         random_state=0).fit(train, progress=False)
        model.add_items(cold, features=features)
        scores = model.predict(np.repeat(users, len(cold)), np.tile(cold, len(users)),
                               clip=False).reshape(len(users), len(cold))
        return cold_item_auc(scores, truth)

    assert auc(ITEM_FEATURES) > 0.74  # 0.768 measured
    assert auc(False) == 0.5  # without features every cold item scores the same: chance


def test_add_items_with_features_and_histories():
    """Features place the item; its first interactions are recorded (and excluded)."""
    data, cold, items, _, _ = genre_toy()
    model = HybridMF(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    by_features = HybridMF(n_factors=4, max_iter=5, random_state=0).fit(
        data, progress=False).add_items(cold[:2], features=items)
    model.add_items(cold[:2], [([0, 1], [5.0, 1.0]), ((), ())], features=items)
    np.testing.assert_array_equal(model.item_factors_, by_features.item_factors_)
    code = model.item_index_.get_indexer(cold[:1])[0]
    assert code in model.seen_[0].indices
    ids, _ = model.recommend([0], n=model.n_items_)
    assert cold[0] not in ids[0].tolist() and cold[1] in ids[0].tolist()


@pytest.mark.parametrize("loss", ["bpr", "warp"])
def test_ranking_losses_learn(loss):
    data = planted_interactions("implicit", n_users=80, n_items=50, density=0.3)
    model = HybridMF(n_factors=4, max_iter=20, loss=loss, random_state=0).fit(
        data, progress=False)
    losses = model.loss_history_["train_loss"]
    assert losses[-1] < 0.8 * losses[0]
    stats = model.epoch_stats_
    assert len(stats) == 20
    # BPR orders more sampled pairs; WARP finds fewer violators.
    assert (stats[-1] > stats[0]) if loss == "bpr" else (stats[-1] < stats[0])
    assert model._ranks_only and HybridMF(loss=loss)._ranks_only
    assert not HybridMF()._ranks_only


def test_ranking_loss_refuses_rmse_validation():
    data = planted_interactions("explicit")
    train, test = _split(data, 0)
    with pytest.raises(ParameterError, match="validation= reports an RMSE"):
        HybridMF(loss="warp", max_iter=1).fit(train, validation=test, progress=False)


def test_squared_loss_validation_history():
    data = planted_interactions("explicit", n_users=100, n_items=60)
    train, test = _split(data, 0)
    model = HybridMF(n_factors=3, max_iter=15, random_state=0).fit(
        train, validation=test, progress=False)
    history = model.loss_history_
    assert len(history["validation_rmse"]) == 15
    assert history["train_rmse"][-1] < history["train_rmse"][0]
    assert history["validation_rmse"][-1] < history["validation_rmse"][0]


def test_implicit_weights_do_not_scale_ranking_steps():
    """Implicit weights are counts or confidences: every interaction is one positive."""
    data = planted_interactions("implicit")
    ones = Interactions.from_arrays(data.users, data.items)
    a = HybridMF(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    b = HybridMF(n_factors=4, max_iter=5, random_state=0).fit(ones, progress=False)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


def test_explicit_sample_weights_matter():
    data = planted_interactions("explicit")
    weighted = Interactions.from_arrays(data.users, data.items, data.ratings,
                                        weights=np.where(data.ratings > 3, 5.0, 1.0),
                                        rating_scale=(1, 5))
    a = HybridMF(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    b = HybridMF(n_factors=4, max_iter=5, random_state=0).fit(weighted, progress=False)
    assert b.global_mean_ > a.global_mean_
    assert not np.allclose(a.item_factors_, b.item_factors_)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(1, 12), n_cols=st.integers(1, 6),
       density=st.floats(0.0, 1.0))
def test_normalized_rows_sum_to_one_or_stay_empty(seed, n_rows, n_cols, density):
    from matfact.models.hybrid import _normalize_rows

    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_cols)) < density) * rng.normal(size=(n_rows, n_cols))
    out = _normalize_rows(sp.csr_matrix(dense.astype(np.float32))).toarray()
    sums = np.abs(out).sum(axis=1)
    empty = ~dense.any(axis=1)
    np.testing.assert_allclose(sums[~empty], 1.0, rtol=1e-5)
    assert (sums[empty] == 0).all()
    # the direction of each row is kept
    np.testing.assert_allclose(out * np.abs(dense).sum(axis=1, keepdims=True), dense,
                               rtol=1e-5, atol=1e-6)


def test_ranking_fold_in_reads_no_weight():
    """Issue 20: as in training, each history item is one positive whatever its count."""
    data = planted_interactions("implicit")
    model = HybridMF(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    items = data.items[:4]
    plain = model.fold_in(items).factors
    heavy = model.fold_in(items, np.array([1.0, 5e5, 0.2, 30.0])).factors
    np.testing.assert_array_equal(heavy, plain)
