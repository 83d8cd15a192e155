"""Baseline and Popularity: contract, closed forms, and the ML-100K figures."""

from __future__ import annotations

import numpy as np
import pytest

import matfact
from matfact import Baseline, DataError, Popularity
from tests.models.contract import ModelContract, planted_interactions


class TestBaselineContract(ModelContract):
    data_kind = "explicit"
    bad_params = [{"reg_user": -1.0}, {"reg_item": float("nan")}, {"max_iter": 0},
                  {"max_iter": 2.5}, {"tol": -1e-3}, {"max_iter": True}]

    def make_model(self):
        return Baseline()


class TestPopularityContract(ModelContract):
    data_kind = "implicit"
    bad_params = [{"weighted": "yes"}, {"weighted": 1}]

    def make_model(self):
        return Popularity()


def surprise_baseline_als(users, items, ratings, n_users, n_items, reg_u, reg_i, n_epochs):
    """Surprise's BaselineOnly ALS, transcribed loop for loop (the reference)."""
    mu = ratings.mean()
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    by_item = [np.flatnonzero(items == i) for i in range(n_items)]
    by_user = [np.flatnonzero(users == u) for u in range(n_users)]
    for _ in range(n_epochs):
        for i in range(n_items):
            rows = by_item[i]
            bi[i] = sum(ratings[r] - mu - bu[users[r]] for r in rows) / (reg_i + len(rows))
        for u in range(n_users):
            rows = by_user[u]
            bu[u] = sum(ratings[r] - mu - bi[items[r]] for r in rows) / (reg_u + len(rows))
    return mu, bu, bi


def test_baseline_matches_surprise_loop():
    data = planted_interactions(n_users=30, n_items=20)
    model = Baseline(reg_user=3.0, reg_item=2.0, max_iter=7, tol=0).fit(data, progress=False)
    mu, bu, bi = surprise_baseline_als(data.user_codes, data.item_codes,
                                       data.ratings.astype(float), data.n_users,
                                       data.n_items, 3.0, 2.0, 7)
    assert model.global_mean_ == pytest.approx(mu)
    np.testing.assert_allclose(model.user_bias_, bu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.item_bias_, bi, rtol=1e-5, atol=1e-6)
    assert model.n_iter_ == 7 and len(model.loss_history_) == 7


def test_baseline_converges_to_ridge_solution():
    """Run to convergence, the biases solve the regularized least squares exactly."""
    data = planted_interactions(n_users=25, n_items=15)
    reg_u, reg_i = 2.0, 5.0
    model = Baseline(reg_user=reg_u, reg_item=reg_i, max_iter=5000, tol=1e-10)
    model.fit(data, progress=False)
    n = data.nnz
    design = np.zeros((n, data.n_users + data.n_items))
    design[np.arange(n), data.user_codes] = 1
    design[np.arange(n), data.n_users + data.item_codes] = 1
    target = data.ratings - model.global_mean_
    penalty = np.diag(np.r_[np.full(data.n_users, reg_u), np.full(data.n_items, reg_i)])
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ target)
    np.testing.assert_allclose(model.user_bias_, solution[: data.n_users], atol=1e-4)
    np.testing.assert_allclose(model.item_bias_, solution[data.n_users:], atol=1e-4)
    history = np.array(model.loss_history_)
    assert history[-1] <= history[0]


def test_baseline_sample_weights_solve_weighted_ridge():
    """With weights, the converged biases solve the *weighted* regularized least squares."""
    data = planted_interactions(n_users=20, n_items=12)
    weights = np.random.default_rng(3).uniform(0.2, 3.0, data.nnz)
    weighted = matfact.Interactions.from_arrays(data.users, data.items, data.ratings,
                                                weights=weights)
    model = Baseline(reg_user=1.5, reg_item=2.5, max_iter=5000, tol=1e-10)
    model.fit(weighted, progress=False)
    w = weighted.weights.astype(float)
    assert model.global_mean_ == pytest.approx((w * weighted.ratings).sum() / w.sum())
    n = weighted.nnz
    design = np.zeros((n, weighted.n_users + weighted.n_items))
    design[np.arange(n), weighted.user_codes] = 1
    design[np.arange(n), weighted.n_users + weighted.item_codes] = 1
    penalty = np.diag(np.r_[np.full(weighted.n_users, 1.5), np.full(weighted.n_items, 2.5)])
    target = weighted.ratings - model.global_mean_
    solution = np.linalg.solve(design.T @ (w[:, None] * design) + penalty, design.T @ (w * target))
    np.testing.assert_allclose(model.user_bias_, solution[: weighted.n_users], atol=1e-4)
    np.testing.assert_allclose(model.item_bias_, solution[weighted.n_users:], atol=1e-4)


def test_baseline_fold_in_matches_closed_form():
    data = planted_interactions()
    model = Baseline().fit(data, progress=False)
    items, ratings = data.item_ids[:6], np.array([5, 4, 5, 1, 2, 3.0])
    codes = data.item_index.get_indexer(items)
    expected = (ratings - model.global_mean_ - model.item_bias_[codes]).sum() / (
        model.reg_user + len(items))
    assert model.fold_in(items, ratings).bias == pytest.approx(expected, rel=1e-5)
    with pytest.raises(DataError, match="ratings"):
        model.fold_in(items)


def test_baseline_refuses_implicit_data():
    with pytest.raises(DataError, match="explicit"):
        Baseline().fit(planted_interactions("implicit"), progress=False)


def test_popularity_counts_and_weighted():
    data = matfact.Interactions.from_arrays(["a", "b", "b", "c"], [1, 1, 2, 2],
                                            weights=[1.0, 1.0, 10.0, 1.0])
    counts = Popularity().fit(data, progress=False)
    np.testing.assert_array_equal(counts.item_popularity_, [2, 2])
    assert counts.recommend(["zz"], n=2)[0].tolist() == [[1, 2]]  # tie → lower id first
    weighted = Popularity(weighted=True).fit(data, progress=False)
    assert weighted.recommend(["a"], n=2, exclude_seen=False)[0].tolist() == [[2, 1]]
    # An unknown user gets the one fallback of every model (issue 20): the count of users.
    assert weighted.recommend(["zz"], n=2)[0].tolist() == [[1, 2]]
    assert weighted.predict(["a"], [2])[0] == pytest.approx(11.0)


# ---------------------------------------------------------------------- real data
def test_baseline_rmse_on_ml100k(ml100k):
    train, test = matfact.train_test_split(ml100k, 0.2, "random", random_state=42)
    result = matfact.evaluate(Baseline().fit(train, progress=False), test)
    # Surprise BaselineOnly gives 0.9395 on this split; the bar is 0.945.
    assert result["rmse"] <= 0.945
    assert result["rmse"] == pytest.approx(0.9395, abs=0.002)


def test_popularity_ndcg_on_ml100k(ml100k):
    train, test = matfact.train_test_split(ml100k, 0.2, "per_user", random_state=42)
    result = matfact.evaluate_ranking(Popularity().fit(train, progress=False), test, k=10,
                                      metrics=("ndcg",))
    # Measured independently for the issue: 0.2142 (a check of the split and the metric).
    assert round(result["ndcg@10"], 3) == round(0.2142, 3)
