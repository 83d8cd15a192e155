"""BiasedMF and SVD++: contract, determinism, learning, fold-in, early stopping, ML-100K.

The kernels themselves are checked update by update in ``tests/kernels/test_sgd_kernels.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matfact
from matfact import (
    BiasedMF,
    DataError,
    DivergenceError,
    Interactions,
    ParameterError,
    SVDPlusPlus,
)
from tests.models.contract import ModelContract, planted_interactions

COMMON_BAD = [
    {"n_factors": 0}, {"n_factors": 2.5}, {"max_iter": 0}, {"max_iter": True},
    {"learning_rate": 0}, {"learning_rate": -0.1}, {"learning_rate": float("nan")},
    {"learning_rate": float("inf")}, {"reg": -1.0}, {"reg_bias": -0.5}, {"init_std": -1.0},
    {"schedule": "cosine"}, {"decay": 0.0}, {"decay": 1.5}, {"early_stopping": "yes"},
    {"patience": 0}, {"n_threads": 0}, {"random_state": -1}, {"random_state": 1.5},
]


# ---------------------------------------------------------------------- contract
class TestBiasedMFContract(ModelContract):
    data_kind = "explicit"
    bad_params = [*COMMON_BAD, {"n_blocks": 0}, {"biased": "yes"}, {"biased": 1},
                  {"time_decay": 0.0}, {"time_decay": "30D"}, {"time_bins": 0},
                  {"time_bins": 2.0}, {"reg_time": -0.1}]

    def make_model(self):
        return BiasedMF(n_factors=8, max_iter=15, random_state=0, n_blocks=4)


class TestUnbiasedMFContract(ModelContract):
    data_kind = "explicit"
    bad_params = [*COMMON_BAD, {"n_blocks": -3}]

    def make_model(self):
        return BiasedMF(n_factors=8, max_iter=15, random_state=0, n_blocks=3, biased=False)


class TestSVDPlusPlusContract(ModelContract):
    data_kind = "explicit"
    bad_params = [*COMMON_BAD, {"reg_implicit": -1.0}, {"reg_implicit": float("nan")},
                  {"time_bins": -1}, {"reg_time": float("nan")}]

    def make_model(self):
        return SVDPlusPlus(n_factors=8, max_iter=15, random_state=0)



def without_user(data, code: int):
    """The same vocabulary, with every rating of user ``code`` removed."""
    keep = data.user_codes != code
    return matfact.Interactions(data.user_codes[keep], data.item_codes[keep], data.user_index,
                                data.item_index, ratings=data.ratings[keep],
                                rating_scale=data.rating_scale)


@pytest.mark.parametrize("position", [
    0, 7,
    -1,  # regression: the last user used to crash np.add.reduceat
], ids=["first", "middle", "last"])
def test_svdpp_user_without_ratings_gets_no_implicit_term(position):
    data = planted_interactions(n_users=20, n_items=12)
    code = position % data.n_users
    sub = without_user(data, code)
    assert sub.n_users == data.n_users and code not in set(sub.user_codes.tolist())
    model = SVDPlusPlus(n_factors=4, max_iter=5, random_state=0).fit(sub, progress=False)
    np.testing.assert_array_equal(model.user_factors_[code], model.user_own_factors_[code])
    others = np.setdiff1d(np.arange(sub.n_users), [code])
    np.testing.assert_allclose(model.user_factors_[others],
                               restored_user_factors(model, sub)[others], rtol=1e-5, atol=1e-6)
    raw = sub.user_ids[code]
    assert np.isfinite(model.predict([raw], [sub.item_ids[0]])).all()


# ---------------------------------------------------------------------- helpers
#: Tiny data (every user and item rated) for the divergence and hypothesis tests.
TINY = planted_interactions(n_users=12, n_items=9, density=0.45, seed=7)
TINY_VAL = planted_interactions(n_users=12, n_items=9, density=0.2, seed=8)


def synthetic(n_users=400, n_items=250, n_ratings=12_000, rank=4, noise=0.1, seed=3):
    return matfact.make_synthetic(n_users, n_items, n_ratings, rank=rank, noise=noise,
                                  random_state=seed, return_truth=True)


def state_of(model) -> dict[str, np.ndarray]:
    names = ["user_factors_", "item_factors_", "user_bias_", "item_bias_"]
    if isinstance(model, SVDPlusPlus):
        names += ["user_own_factors_", "implicit_factors_"]
    return {name: getattr(model, name) for name in names if getattr(model, name) is not None}


# ---------------------------------------------------------------------- determinism
def test_biasedmf_identical_whatever_the_number_of_threads():
    data, _ = synthetic(n_ratings=5000)
    fits = [BiasedMF(n_factors=16, max_iter=6, n_blocks=8, random_state=11,
                     n_threads=threads).fit(data, progress=False) for threads in (1, 2, None)]
    assert fits[0].n_threads_ == 1
    reference = state_of(fits[0])
    for other in fits[1:]:
        for name, value in state_of(other).items():
            np.testing.assert_array_equal(value, reference[name], err_msg=name)
        assert other.loss_history_ == fits[0].loss_history_


@pytest.mark.parametrize("make", [
    lambda seed: BiasedMF(n_factors=8, max_iter=4, n_blocks=4, random_state=seed),
    lambda seed: SVDPlusPlus(n_factors=8, max_iter=4, random_state=seed),
], ids=["BiasedMF", "SVD++"])
def test_same_seed_same_model_different_seed_different_model(make):
    data, _ = synthetic(n_ratings=3000)
    a, b, c = (make(seed).fit(data, progress=False) for seed in (5, 5, 6))
    gen_a = make(np.random.default_rng(9)).fit(data, progress=False)
    gen_b = make(np.random.default_rng(9)).fit(data, progress=False)
    for name, value in state_of(a).items():
        np.testing.assert_array_equal(value, state_of(b)[name], err_msg=name)
        np.testing.assert_array_equal(state_of(gen_a)[name], state_of(gen_b)[name])
    assert not np.array_equal(a.user_factors_, c.user_factors_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


def test_predict_is_the_formula_on_the_published_attributes():
    """predict is μ + b_u + b_i + p_u·q_i on the fitted attributes, and those are in the
    original id order (BiasedMF trains renumbered copies): scored from the attributes, the
    training data fit as well as the online loss says (a row mix-up would give RMSE ≳ 1)."""
    data, _ = synthetic(n_ratings=4000)
    for model in (BiasedMF(n_factors=6, max_iter=5, n_blocks=5, random_state=0),
                  BiasedMF(n_factors=6, max_iter=5, n_blocks=5, random_state=0, biased=False),
                  SVDPlusPlus(n_factors=6, max_iter=5, random_state=0)):
        model.fit(data, progress=False)
        u, i = data.user_codes, data.item_codes
        dots = np.einsum("ij,ij->i", model.user_factors_[u].astype(float),
                         model.item_factors_[i].astype(float))
        manual = model.global_mean_ + dots
        if model.user_bias_ is not None:
            manual += model.user_bias_[u] + model.item_bias_[i]
        np.testing.assert_allclose(model.predict(data.users, data.items, clip=False), manual,
                                   rtol=1e-6, atol=1e-6)
        rmse = np.sqrt(np.mean((manual - data.ratings) ** 2))
        assert rmse < model.loss_history_["train_rmse"][-1] + 0.02, type(model).__name__


# ---------------------------------------------------------------------- learning
@pytest.mark.parametrize("model", [
    BiasedMF(n_factors=8, max_iter=60, learning_rate=0.02, reg=0.02, n_blocks=4, random_state=0),
    BiasedMF(n_factors=8, max_iter=60, learning_rate=0.02, reg=0.02, n_blocks=4, random_state=0,
             biased=False),
    SVDPlusPlus(n_factors=8, max_iter=60, learning_rate=0.01, reg=0.02, random_state=0),
], ids=["BiasedMF", "FunkMF", "SVD++"])
def test_recovers_a_planted_low_rank_model(model):
    data, truth = synthetic(n_users=500, n_items=300, n_ratings=20_000, noise=0.1)
    train, test = matfact.train_test_split(data, 0.2, "random", random_state=0)
    model = matfact.clone(model).fit(train, progress=False)
    history = np.array(model.loss_history_["train_rmse"])
    assert len(history) == model.n_iter_ == 60
    assert history[-1] < history[0] / 2
    assert (np.diff(history) <= 2e-3).all(), "train RMSE must decrease (almost) monotonically"
    assert history[-1] < 0.25
    planted = truth.predict(test.users, test.items)
    predicted = model.predict(test.users, test.items, clip=False)
    assert np.corrcoef(predicted, planted)[0, 1] > 0.95
    # Error against the noiseless truth: the data's std is ~1.05, noise 0.1; seen ~0.25.
    assert np.sqrt(np.mean((predicted - planted) ** 2)) < 0.35


# ---------------------------------------------------------------------- fold-in
def ridge(design: np.ndarray, target: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    n = len(target)
    return np.linalg.solve(design.T @ design + n * np.diag(penalty), design.T @ target)


@pytest.fixture(scope="module")
def history_case():
    data = planted_interactions(n_users=50, n_items=30)
    items = data.item_ids[[1, 4, 5, 9, 13, 20, 22]]
    ratings = np.array([5.0, 1.0, 4.0, 2.0, 5.0, 3.0, 4.5])
    return data, items, ratings


@pytest.mark.parametrize("biased", [True, False])
def test_biasedmf_fold_in_is_the_ridge_solution(history_case, biased):
    data, items, ratings = history_case
    model = BiasedMF(n_factors=5, max_iter=20, reg=0.3, reg_bias=0.7, random_state=0,
                     biased=biased, n_blocks=2).fit(data, progress=False)
    codes = data.item_index.get_indexer(items)
    q = model.item_factors_[codes].astype(np.float64)
    target = ratings - model.global_mean_
    penalty = [0.3] * 5
    if biased:
        target = target - model.item_bias_[codes]
        q = np.hstack([q, np.ones((len(items), 1))])
        penalty.append(0.7)
    solution = ridge(q, target, np.array(penalty))
    vector = model.fold_in(items, ratings)
    assert vector.factors.dtype == np.float32 and vector.factors.shape == (5,)
    np.testing.assert_allclose(vector.factors, solution[:5], rtol=1e-4, atol=1e-6)
    assert vector.bias == pytest.approx(solution[5] if biased else 0.0, rel=1e-4, abs=1e-7)
    # Independently: the objective's gradient vanishes at the returned point.
    x = np.r_[vector.factors, vector.bias] if biased else vector.factors.astype(float)
    residual = target - q @ x
    gradient = -q.T @ residual + len(items) * np.array(penalty) * x
    assert np.abs(gradient).max() < 1e-4 * max(1.0, np.abs(q.T @ target).max())


def test_svdpp_fold_in_is_implicit_sum_plus_ridge(history_case):
    data, items, ratings = history_case
    model = SVDPlusPlus(n_factors=5, max_iter=20, reg=0.3, reg_bias=0.7, random_state=0)
    model.fit(data, progress=False)
    codes = data.item_index.get_indexer(items)
    z = model.implicit_factors_[codes].astype(np.float64).sum(axis=0) / np.sqrt(len(codes))
    assert np.abs(z).max() > 1e-3, "the implicit factors must have been learned"
    q = model.item_factors_[codes].astype(np.float64)
    target = ratings - model.global_mean_ - model.item_bias_[codes] - q @ z
    solution = ridge(np.hstack([q, np.ones((len(codes), 1))]), target, np.r_[[0.3] * 5, 0.7])
    vector = model.fold_in(items, ratings)
    np.testing.assert_allclose(vector.factors, solution[:5] + z, rtol=1e-4, atol=1e-6)
    assert vector.bias == pytest.approx(solution[5], rel=1e-4)


@pytest.mark.parametrize("model", [
    BiasedMF(n_factors=5, max_iter=20, random_state=0, n_blocks=2),
    BiasedMF(n_factors=5, max_iter=20, random_state=0, n_blocks=2, biased=False),
    SVDPlusPlus(n_factors=5, max_iter=20, random_state=0),
], ids=["BiasedMF", "FunkMF", "SVD++"])
def test_recommend_for_history_scores_the_folded_vector(history_case, model):
    data, items, ratings = history_case
    model = matfact.clone(model).fit(data, progress=False)
    vector = model.fold_in(items, ratings)
    scores = model.global_mean_ + vector.bias + model.item_factors_.astype(float) @ vector.factors
    if model.item_bias_ is not None:
        scores = scores + model.item_bias_
    history = data.item_index.get_indexer(items)
    ids, got = model.recommend_for_history(items, ratings, n=6)
    codes = data.item_index.get_indexer(ids)
    assert not set(codes) & set(history)
    np.testing.assert_allclose(got, scores[codes], rtol=1e-5, atol=1e-5)
    others = np.setdiff1d(np.arange(data.n_items), np.r_[history, codes])
    assert got.min() >= scores[others].max() - 1e-5
    _, with_seen = model.recommend_for_history(items, ratings, n=6, exclude_seen=False)
    np.testing.assert_allclose(with_seen, np.sort(scores)[::-1][:6], rtol=1e-5, atol=1e-5)
    # An empty history folds to the zero vector.
    empty = model.fold_in(items[:0], ratings[:0])
    assert empty.bias == 0.0 and not empty.factors.any()


# ---------------------------------------------------------------------- early stopping
@pytest.mark.parametrize("model", [
    BiasedMF(n_factors=64, max_iter=300, learning_rate=0.05, reg=0.0, reg_bias=0.0,
             init_std=0.1, n_blocks=4, random_state=0, early_stopping=True, patience=3),
    SVDPlusPlus(n_factors=64, max_iter=300, learning_rate=0.02, reg=0.0, reg_bias=0.0,
                reg_implicit=0.0, init_std=0.1, random_state=0, early_stopping=True,
                patience=3),
], ids=["BiasedMF", "SVD++"])
def test_early_stopping_keeps_the_best_epoch(model):
    data = matfact.make_synthetic(200, 150, 4000, rank=4, noise=0.5, random_state=4)
    train, validation = matfact.train_test_split(data, 0.2, "random", random_state=0)
    model = matfact.clone(model).fit(train, validation=validation, progress=False)
    curve = np.array(model.loss_history_["validation_rmse"])
    assert model.n_iter_ < 300, "an unregularized 64-factor model must overfit and stop"
    assert len(curve) == len(model.loss_history_["train_rmse"]) == model.n_iter_
    assert model.best_iter_ == int(np.argmin(curve)) + 1
    assert model.n_iter_ == model.best_iter_ + model.patience
    assert curve[-1] > curve.min()
    assert matfact.evaluate(model, validation)["rmse"] == pytest.approx(curve.min(), rel=1e-9)
    if isinstance(model, SVDPlusPlus):  # the derived vectors follow the restored state
        implicit = restored_user_factors(model, train)
        np.testing.assert_allclose(model.user_factors_, implicit, rtol=1e-5, atol=1e-6)


def test_early_stopping_restores_best_even_when_max_iter_ends_training():
    data = matfact.make_synthetic(200, 150, 4000, rank=4, noise=0.5, random_state=4)
    train, validation = matfact.train_test_split(data, 0.2, "random", random_state=0)
    model = BiasedMF(n_factors=64, max_iter=20, learning_rate=0.05, reg=0.0, reg_bias=0.0,
                     init_std=0.1, n_blocks=4, random_state=0, early_stopping=True,
                     patience=100).fit(train, validation=validation, progress=False)
    curve = np.array(model.loss_history_["validation_rmse"])
    assert model.n_iter_ == 20 and curve.argmin() < 19
    assert model.best_iter_ == curve.argmin() + 1
    assert matfact.evaluate(model, validation)["rmse"] == pytest.approx(curve.min(), rel=1e-9)


def test_validation_without_early_stopping_only_records():
    data, _ = synthetic(n_ratings=3000)
    train, validation = matfact.train_test_split(data, 0.2, "random", random_state=0)
    model = BiasedMF(n_factors=4, max_iter=7, random_state=0, n_blocks=2)
    model.fit(train, validation=validation, progress=False)
    assert model.n_iter_ == 7 and len(model.loss_history_["validation_rmse"]) == 7
    assert matfact.evaluate(model, validation)["rmse"] == pytest.approx(
        model.loss_history_["validation_rmse"][-1], rel=1e-9)
    no_val = BiasedMF(n_factors=4, max_iter=3, random_state=0).fit(train, progress=False)
    assert no_val.loss_history_["validation_rmse"] == []


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_early_stopping_needs_validation(cls):
    with pytest.raises(ParameterError, match="validation"):
        cls(n_factors=4, max_iter=3, early_stopping=True).fit(planted_interactions(),
                                                              progress=False)


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_implicit_validation_is_refused_cleanly(cls):
    """Implicit validation data has no ratings to compute an RMSE on: a clear error, not an
    AttributeError from ``validation.ratings.astype``."""
    data = planted_interactions()
    with pytest.raises((DataError, ParameterError), match="validation"):
        cls(n_factors=4, max_iter=2).fit(data, validation=data.to_implicit(), progress=False)


# ---------------------------------------------------------------------- callback, schedule
@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_callback_once_per_epoch_with_documented_keys(cls):
    data, _ = synthetic(n_ratings=3000)
    train, validation = matfact.train_test_split(data, 0.2, "random", random_state=0)
    calls = []
    model = cls(n_factors=4, max_iter=6, random_state=0).fit(
        train, validation=validation, progress=False,
        callback=lambda epoch, info: calls.append((epoch, dict(info))))
    assert [epoch for epoch, _ in calls] == list(range(6))
    for epoch, info in calls:
        assert set(info) == {"train_rmse", "validation_rmse", "learning_rate", "seconds"}
        assert info["train_rmse"] == model.loss_history_["train_rmse"][epoch]
        assert info["validation_rmse"] == model.loss_history_["validation_rmse"][epoch]
        assert info["learning_rate"] == model.learning_rate and info["seconds"] >= 0
    calls.clear()
    cls(n_factors=4, max_iter=3, random_state=0).fit(
        train, progress=False, callback=lambda epoch, info: calls.append(info))
    assert [info["validation_rmse"] for info in calls] == [None] * 3


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_callback_returning_true_stops_training(cls):
    data, _ = synthetic(n_ratings=3000)
    seen = []

    def stop_at_three(epoch, info):
        seen.append(epoch)
        return epoch == 3

    model = cls(n_factors=4, max_iter=50, random_state=0).fit(data, progress=False,
                                                               callback=stop_at_three)
    assert seen == [0, 1, 2, 3]
    assert model.n_iter_ == 4 and len(model.loss_history_["train_rmse"]) == 4
    assert np.isfinite(model.predict(data.users[:10], data.items[:10])).all()
    with pytest.raises(ParameterError, match="callback"):
        cls(max_iter=1).fit(data, progress=False, callback="not callable")


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_decay_schedule_learning_rate(cls):
    data, _ = synthetic(n_ratings=2000)
    rates = []
    cls(n_factors=4, max_iter=8, learning_rate=0.02, schedule="decay", decay=0.7,
        random_state=0).fit(data, progress=False,
                            callback=lambda epoch, info: rates.append(info["learning_rate"]))
    np.testing.assert_allclose(rates, 0.02 * 0.7 ** np.arange(8), rtol=1e-12)
    constant = []
    cls(n_factors=4, max_iter=3, learning_rate=0.02, decay=0.7, random_state=0).fit(
        data, progress=False, callback=lambda epoch, info: constant.append(info["learning_rate"]))
    assert constant == [0.02] * 3


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_divergence_raises_and_suggests_smaller_learning_rate(cls):
    data, _ = synthetic(n_ratings=3000)
    with pytest.raises(DivergenceError, match=r"smaller learning_rate") as info:
        cls(n_factors=8, max_iter=20, learning_rate=50.0, random_state=0).fit(
            data, progress=False)
    assert isinstance(info.value, ArithmeticError) and "50" in str(info.value)


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_failed_fit_leaves_model_unfitted(cls):
    data = planted_interactions()
    model = cls(n_factors=4, max_iter=5, learning_rate=50.0, random_state=0)
    with pytest.raises(DivergenceError):
        model.fit(data, progress=False)
    assert not model.is_fitted
    with pytest.raises(matfact.NotFittedError):
        model.predict(data.users[:3], data.items[:3])


def test_divergence_caught_before_the_factors_overflow():
    model = BiasedMF(n_factors=5, max_iter=2, learning_rate=1.0, reg=0.0, biased=False,
                     init_std=1e-6, n_blocks=15, random_state=0)
    with pytest.raises(DivergenceError):
        model.fit(TINY, progress=False)


def test_refit_without_early_stopping_drops_best_iter():
    data = matfact.make_synthetic(200, 150, 4000, rank=4, noise=0.5, random_state=4)
    train, validation = matfact.train_test_split(data, 0.2, "random", random_state=0)
    model = BiasedMF(n_factors=64, max_iter=300, learning_rate=0.05, reg=0.0, reg_bias=0.0,
                     init_std=0.1, n_blocks=4, random_state=0, early_stopping=True, patience=3)
    model.fit(train, validation=validation, progress=False)
    assert model.best_iter_ > 5
    model.set_params(early_stopping=False, max_iter=5).fit(train, progress=False)
    assert getattr(model, "best_iter_", model.n_iter_) <= model.n_iter_


# ---------------------------------------------------------------------- sample weights
def weighted_data(weights=None, seed=0):
    data = planted_interactions(n_users=40, n_items=25, seed=seed)
    if weights is None:
        weights = np.random.default_rng(1).uniform(0.0, 3.0, data.nnz)
        weights[::7] = 0.0
    return matfact.Interactions.from_arrays(data.users, data.items, data.ratings,
                                            weights=weights, rating_scale=(1, 5))


def test_biasedmf_global_mean_is_the_weighted_mean():
    data = weighted_data()
    w = data.weights.astype(np.float64)
    model = BiasedMF(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    expected = float((w * data.ratings).sum() / w.sum())
    assert model.global_mean_ == pytest.approx(expected, rel=1e-6)
    assert abs(expected - float(data.ratings.mean())) > 1e-3  # the weights matter here
    unbiased = BiasedMF(n_factors=4, max_iter=3, random_state=0, biased=False)
    assert unbiased.fit(data, progress=False).global_mean_ == 0.0


def test_biasedmf_train_rmse_is_weighted():
    """Epoch 1 with a tiny learning rate: every prediction is μ, so the online RMSE is the
    weighted RMSE of r - μ (weights 0 excluded, normalized by the total weight)."""
    data = weighted_data()
    w = data.weights.astype(np.float64)
    model = BiasedMF(n_factors=4, max_iter=1, learning_rate=1e-9, init_std=0.0,
                     random_state=0).fit(data, progress=False)
    r = data.ratings.astype(np.float64)
    expected = np.sqrt((w * (r - model.global_mean_) ** 2).sum() / w.sum())
    assert model.loss_history_["train_rmse"][0] == pytest.approx(expected, rel=1e-5)


def test_biasedmf_all_zero_weights_fit_or_are_refused_cleanly():
    data = weighted_data(weights=np.zeros(weighted_data().nnz))
    try:
        model = BiasedMF(n_factors=4, max_iter=2, random_state=0).fit(data, progress=False)
    except (DataError, ParameterError):
        return
    assert np.isfinite(model.predict(data.users, data.items)).all()


def test_svdpp_honours_sample_weights_or_refuses_them():
    data = weighted_data()
    w = data.weights.astype(np.float64)
    try:
        model = SVDPlusPlus(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    except (DataError, ParameterError):
        return
    assert model.global_mean_ == pytest.approx(float((w * data.ratings).sum() / w.sum()),
                                               rel=1e-6)


# ---------------------------------------------------------------------- SVD++ state
def restored_user_factors(model, train) -> np.ndarray:
    """p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j from the training data, in float64."""
    own = model.user_own_factors_.astype(np.float64)
    sums = np.zeros_like(own)
    np.add.at(sums, train.user_codes, model.implicit_factors_[train.item_codes].astype(float))
    counts = np.bincount(train.user_codes, minlength=train.n_users)
    return own + sums / np.sqrt(np.maximum(counts, 1))[:, None]


@pytest.mark.parametrize("suffix", [".zip", ""])
def test_svdpp_save_load_keeps_implicit_state(tmp_path, suffix):
    data = planted_interactions(n_users=50, n_items=30)
    model = SVDPlusPlus(n_factors=6, max_iter=10, random_state=0).fit(data, progress=False)
    assert np.abs(model.implicit_factors_).max() > 1e-3
    np.testing.assert_allclose(model.user_factors_, restored_user_factors(model, data),
                               rtol=1e-5, atol=1e-6)
    assert model.user_factors_.dtype == model.user_own_factors_.dtype == np.float32
    path = tmp_path / f"svdpp{suffix}"
    model.save(path)
    loaded = matfact.load(path)
    assert isinstance(loaded, SVDPlusPlus)
    for name, value in state_of(model).items():
        np.testing.assert_array_equal(getattr(loaded, name), value, err_msg=name)
    assert loaded.global_mean_ == model.global_mean_
    assert loaded.loss_history_ == model.loss_history_ and loaded.n_iter_ == model.n_iter_
    items, ratings = data.item_ids[:4], np.array([5.0, 3.0, 1.0, 4.0])
    a, b = model.fold_in(items, ratings), loaded.fold_in(items, ratings)
    np.testing.assert_array_equal(a.factors, b.factors)
    assert a.bias == b.bias


def test_biasedmf_save_load_keeps_unbiased_state(tmp_path):
    data = planted_interactions(n_users=30, n_items=20)
    model = BiasedMF(n_factors=3, max_iter=4, random_state=0, biased=False).fit(data,
                                                                               progress=False)
    model.save(tmp_path / "m.zip")
    loaded = matfact.load(tmp_path / "m.zip")
    assert loaded.user_bias_ is None and loaded.item_bias_ is None and not loaded.biased
    np.testing.assert_array_equal(loaded.user_factors_, model.user_factors_)


# ---------------------------------------------------------------------- ML-100K
def test_ml100k_first_fold_rmse(ml100k):
    """Fold 0 of kfold(ml100k, 5, random_state=0), defaults with random_state=0.

    Measured here: BiasedMF 0.9047 and SVD++ 0.9021 on this fold (5-fold means 0.9082 and
    0.9050; seeds 0-5 on this fold span 0.9042-0.9053 and 0.9006-0.9032, std ≈ 0.0005 and
    0.0008). Baseline gets 0.9403. The bounds leave ~8 seed-std of room.
    """
    train, test = matfact.kfold(ml100k, 5, random_state=0)[0]
    biased = matfact.evaluate(BiasedMF(random_state=0).fit(train, progress=False), test)
    svdpp = matfact.evaluate(SVDPlusPlus(random_state=0).fit(train, progress=False), test)
    assert biased["rmse"] < 0.911, biased
    assert svdpp["rmse"] < 0.909, svdpp
    baseline = matfact.evaluate(matfact.Baseline().fit(train, progress=False), test)
    assert biased["rmse"] < baseline["rmse"] - 0.025
    assert svdpp["rmse"] < biased["rmse"] + 0.004


# ---------------------------------------------------------------------- hypothesis
positive = st.floats(min_value=1e-6, max_value=1e3, allow_nan=False)
non_negative = st.one_of(st.just(0.0), st.floats(min_value=1e-8, max_value=1e3))
COMMON_VALID = {
    "n_factors": st.integers(1, 6),
    "max_iter": st.integers(1, 5),
    "learning_rate": st.one_of(positive, st.integers(1, 3)),
    "reg": non_negative,
    "reg_bias": non_negative,
    "init_std": st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=10.0)),
    "schedule": st.sampled_from(["constant", "decay"]),
    "decay": st.floats(min_value=1e-3, max_value=1.0),
    "early_stopping": st.booleans(),
    "patience": st.integers(1, 3),
    "random_state": st.integers(0, 2**32 - 1),  # not None: examples must be reproducible
    "n_threads": st.sampled_from([None, 1, 2, 64]),
}
VALID = {
    BiasedMF: st.fixed_dictionaries({**COMMON_VALID, "biased": st.booleans(),
                                     "n_blocks": st.integers(1, 20)}),
    SVDPlusPlus: st.fixed_dictionaries({**COMMON_VALID, "reg_implicit": non_negative}),
}


# derandomize: the same examples every run (a random counter-example, such as the undetected
# divergence above, would otherwise make CI flaky); raise max_examples locally to explore.
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from([BiasedMF, SVDPlusPlus]), data=st.data())
def test_valid_parameters_fit_or_diverge_cleanly(cls, data):
    params = data.draw(VALID[cls])
    model = cls(**params)
    try:
        model.fit(TINY, validation=TINY_VAL if params["early_stopping"] else None,
                  progress=False)
    except DivergenceError as error:
        assert "learning_rate" in str(error)
        return
    assert 1 <= model.n_iter_ <= params["max_iter"]
    assert np.isfinite(model.loss_history_["train_rmse"]).all()
    for name, value in state_of(model).items():
        assert np.isfinite(value).all(), name
    scores = model.predict(TINY.users, TINY.items, clip=False)
    assert np.isfinite(scores).all()
    assert np.isfinite(model.recommend(TINY.user_ids[:3], n=3, exclude_seen=False)[1]).all()


def not_integral():
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                     st.text(max_size=3), st.none())


def bad_int(minimum):
    return st.one_of(st.integers(max_value=minimum - 1), not_integral())


def bad_float(*, strictly_positive=False):
    upper = 0.0 if strictly_positive else -1e-12
    return st.one_of(st.floats(max_value=upper, allow_nan=False, allow_infinity=True),
                     st.just(float("nan")), st.just(float("inf")), st.booleans(),
                     st.text(max_size=3), st.none())


COMMON_INVALID = {
    "n_factors": bad_int(1),
    "max_iter": bad_int(1),
    "learning_rate": bad_float(strictly_positive=True),
    "reg": bad_float(),
    "reg_bias": bad_float(),
    "init_std": bad_float(),
    "schedule": st.one_of(st.text(max_size=8).filter(lambda s: s not in ("constant", "decay")),
                          st.none(), st.integers()),
    "decay": st.one_of(bad_float(strictly_positive=True),
                       st.floats(min_value=1.0, exclude_min=True, allow_nan=False)),
    "early_stopping": st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats()),
    "patience": bad_int(1),
    "random_state": st.one_of(st.integers(max_value=-1), st.floats(), st.text(max_size=3),
                              st.booleans()),
    "n_threads": st.one_of(st.integers(max_value=0), st.floats(), st.text(max_size=3),
                           st.booleans()),
}
#: None is valid for the time options (off); everything else that is not in range is not.
BAD_TIME_BINS = st.one_of(st.integers(max_value=0), st.floats(), st.booleans(),
                          st.text(max_size=3))
BAD_TIME_DECAY = st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=True),
                           st.just(float("nan")), st.just(float("inf")), st.booleans(),
                           st.text(max_size=3))
INVALID = {
    BiasedMF: {**COMMON_INVALID, "biased": st.one_of(st.integers(), st.text(max_size=3),
                                                     st.none()),
               "n_blocks": bad_int(1), "time_decay": BAD_TIME_DECAY,
               "time_bins": BAD_TIME_BINS, "reg_time": bad_float()},
    SVDPlusPlus: {**COMMON_INVALID, "reg_implicit": bad_float(), "time_bins": BAD_TIME_BINS,
                  "reg_time": bad_float()},
}


@settings(max_examples=80, deadline=None, derandomize=True)
@given(cls=st.sampled_from([BiasedMF, SVDPlusPlus]), data=st.data())
def test_invalid_parameters_raise_parameter_error_naming_them(cls, data):
    name = data.draw(st.sampled_from(sorted(INVALID[cls])))
    value = data.draw(INVALID[cls][name])
    model = cls(n_factors=2, max_iter=1, random_state=0).set_params(**{name: value})
    with pytest.raises(ParameterError, match=rf"\b{name} must be"):
        model.fit(TINY, progress=False)


def test_tiny_fixture_rates_every_row():
    """TINY has every user and item rated, so the fits above exercise every row."""
    assert np.bincount(TINY.user_codes).min() >= 1 and np.bincount(TINY.item_codes).min() >= 1


# ---------------------------------------------------------------------- partial_fit
def split_for_partial_fit(seed: int = 1):
    """Synthetic ratings: a 10% random test set; the rest split into an early part A and a
    late part B that holds every rating of 100 users (new users for a model fitted on A)."""
    data = matfact.make_synthetic(600, 300, 30_000, rank=4, noise=0.3, random_state=seed)
    rng = np.random.default_rng(0)
    is_test = rng.random(data.nnz) < 0.1
    in_b = ~is_test & ((data.user_codes < 100) | (np.arange(data.nnz) > 0.6 * data.nnz))
    in_a = ~is_test & ~in_b
    take = data.take
    return (take(np.flatnonzero(in_a)), take(np.flatnonzero(in_b)),
            take(np.flatnonzero(~is_test)), take(np.flatnonzero(is_test)))


@pytest.fixture(scope="module")
def partial_case():
    return split_for_partial_fit()


@pytest.mark.parametrize("make", [
    lambda: BiasedMF(n_factors=8, max_iter=40, random_state=0),
    lambda: SVDPlusPlus(n_factors=8, max_iter=40, random_state=0),
], ids=["BiasedMF", "SVD++"])
def test_partial_fit_on_the_second_half_approaches_fit_on_all(partial_case, make):
    """fit(A).partial_fit(B) against fit(A ∪ B) on held-out ratings: the more epochs, the
    closer. Measured (seed 0): BiasedMF full 0.432, A alone 0.719, partial 5/10/40 epochs
    0.601/0.527/0.459; SVD++ full 0.475, A alone 0.807, partial 0.679/0.565/0.372 (its
    epochs revisit every rating of the users in B, more training than the full fit had)."""
    a, b, both, test = partial_case
    full = matfact.evaluate(make().fit(both, progress=False), test)["rmse"]
    first = make().fit(a, progress=False)
    only_a = matfact.evaluate(first, test)["rmse"]
    rmse = []
    for epochs in (5, 10, 40):
        model = make().fit(a, progress=False).partial_fit(b, max_iter=epochs)
        rmse.append(matfact.evaluate(model, test)["rmse"])
    assert only_a > rmse[0] > rmse[1] > rmse[2]
    assert rmse[2] < full + 0.04
    assert only_a > full + 0.2  # B matters: without it the test is far worse


@pytest.mark.parametrize("make", [
    lambda: BiasedMF(n_factors=4, max_iter=5, n_blocks=3, random_state=0),
    lambda: SVDPlusPlus(n_factors=4, max_iter=5, random_state=0),
], ids=["BiasedMF", "SVD++"])
def test_partial_fit_grows_the_vocabulary_and_keeps_the_rest(make, tmp_path):
    data = planted_interactions(n_users=30, n_items=20)
    model = make().fit(data, progress=False)
    known_user, known_item = data.user_ids[0], data.item_ids[0]
    users = data.user_ids[:10]
    before = model.predict(users, np.repeat(known_item, 10))
    pair_before = model.predict(known_user, known_item)[0]
    new = Interactions.from_arrays([known_user, 5000, 5000], [known_item, known_item, 9999],
                                   [1.0, 5.0, 2.0], rating_scale=(1, 5))
    assert model.partial_fit(new) is model
    assert model.n_users_ == data.n_users + 1 and model.n_items_ == data.n_items + 1
    assert model.user_factors_.shape == (data.n_users + 1, 4)
    assert model.item_bias_.shape == (data.n_items + 1,)
    row = model.user_index_.get_indexer([known_user])[0]
    col = model.item_index_.get_indexer([known_item])[0]
    assert model.seen_[row, col] == 1.0  # a repeated pair takes the new rating
    assert model.seen_.nnz == data.nnz + 2 + int(data.to_scipy()[0, 0] == 0)
    scores = model.predict([5000, 5000, known_user], [known_item, 9999, known_item])
    assert np.isfinite(scores).all()
    assert not np.array_equal(before, model.predict(users, np.repeat(known_item, 10)))
    assert scores[2] < pair_before - 0.02  # pulled towards the new rating of 1 (was 3)
    model.save(tmp_path / "m.zip")
    np.testing.assert_array_equal(matfact.load(tmp_path / "m.zip").predict(data.users,
                                                                           data.items),
                                  model.predict(data.users, data.items))


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_partial_fit_is_deterministic_and_validates(cls):
    data = planted_interactions(n_users=30, n_items=20)
    new = planted_interactions(n_users=10, n_items=20, seed=4)
    fits = [cls(n_factors=3, max_iter=3, random_state=7).fit(data, progress=False)
            .partial_fit(new) for _ in range(2)]
    np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
    with pytest.raises(matfact.NotFittedError):
        cls().partial_fit(new)
    with pytest.raises(ParameterError, match="max_iter"):
        fits[0].partial_fit(new, max_iter=0)
    with pytest.raises(DataError, match="explicit"):
        fits[0].partial_fit(new.to_implicit())
    if cls is BiasedMF:
        with pytest.raises(ParameterError, match="sample_old"):
            fits[0].partial_fit(new, sample_old=-1.0)


def test_biasedmf_partial_fit_without_old_samples_trains_only_new_ratings():
    """sample_old=0: items without a new rating keep their factors and biases exactly."""
    data = planted_interactions(n_users=30, n_items=20)
    model = BiasedMF(n_factors=3, max_iter=3, random_state=0).fit(data, progress=False)
    items_before, bias_before = model.item_factors_.copy(), model.item_bias_.copy()
    target = data.item_ids[:2]
    new = Interactions.from_arrays([data.user_ids[0], data.user_ids[1]], target, [5.0, 1.0],
                                   rating_scale=(1, 5))
    model.partial_fit(new, sample_old=0.0)
    touched = model.item_index_.get_indexer(target)
    others = np.setdiff1d(np.arange(data.n_items), touched)
    np.testing.assert_array_equal(model.item_factors_[others], items_before[others])
    np.testing.assert_array_equal(model.item_bias_[others], bias_before[others])
    assert not np.array_equal(model.item_factors_[touched], items_before[touched])
