"""ALS and ImplicitALS: contract, exact half-steps, monotone objectives, fold-in, re-weighting,
ML-100K.

The kernels are checked row by row against NumPy in ``tests/kernels/test_als_kernels.py``;
here the models are checked through what they publish. A fit with ``max_iter=n`` and a
fixed seed reproduces the first ``n`` iterations of any longer fit, so per-iteration
quantities are computed densely in the test from fits of increasing ``max_iter``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import matfact
from matfact import (
    ALS,
    ConvergenceWarning,
    DataError,
    ImplicitALS,
    Interactions,
    ParameterError,
)
from matfact.models.als import bm25_weight, tfidf_weight
from tests.models.contract import ModelContract, planted_interactions

COMMON_BAD = [
    {"n_factors": 0}, {"n_factors": 2.5}, {"reg": -1.0}, {"reg": float("nan")},
    {"max_iter": 0}, {"max_iter": True}, {"init_std": -1.0}, {"random_state": -1},
    {"random_state": 1.5}, {"n_threads": 0},
]


# ---------------------------------------------------------------------- contract
class TestALSContract(ModelContract):
    data_kind = "explicit"
    bad_params = [*COMMON_BAD, {"weighted_reg": "yes"}, {"biased": 1}, {"tol": -1.0},
                  {"early_stopping": "no"}, {"patience": 0}, {"time_decay": 0.0},
                  {"time_decay": -3.0}, {"time_decay": "7D"}]

    def make_model(self):
        return ALS(n_factors=4, max_iter=5, random_state=0)


class TestUnbiasedALSContract(ModelContract):
    data_kind = "explicit"
    bad_params = [*COMMON_BAD, {"weighted_reg": None}]

    def make_model(self):
        return ALS(n_factors=4, max_iter=5, random_state=0, biased=False)


IMPLICIT_BAD = [*COMMON_BAD, {"alpha": -1.0}, {"cg_steps": 0}, {"solver": "lu"},
                {"confidence": "sqrt"}, {"epsilon": 0.0}, {"epsilon": -1.0},
                {"reg_exponent": -0.5}, {"calculate_loss": "yes"}, {"time_decay": 0},
                {"time_decay": float("nan")}]


class TestImplicitALSContract(ModelContract):
    data_kind = "implicit"
    bad_params = IMPLICIT_BAD

    def make_model(self):
        return ImplicitALS(n_factors=4, max_iter=5, random_state=0)


class TestImplicitALSCholeskyContract(ModelContract):
    data_kind = "implicit"
    bad_params = IMPLICIT_BAD

    def make_model(self):
        return ImplicitALS(n_factors=4, max_iter=5, random_state=0, solver="cholesky",
                           confidence="log", reg_exponent=0.0, calculate_loss=True)


# ---------------------------------------------------------------------- helpers
def weighted_ratings(seed: int = 0) -> Interactions:
    data = planted_interactions(n_users=30, n_items=20, density=0.4, seed=seed)
    weights = np.random.default_rng(seed + 1).uniform(0.2, 3.0, data.nnz)
    return Interactions.from_arrays(data.users, data.items, data.ratings, weights=weights,
                                    rating_scale=(1, 5))


def dense_state(model, data: Interactions) -> dict:
    """Everything a dense reference needs, in float64 and training-index order."""
    shape = data.shape
    mask = np.zeros(shape, dtype=bool)
    mask[data.user_codes, data.item_codes] = True
    ratings = np.zeros(shape)
    ratings[data.user_codes, data.item_codes] = data.ratings
    weights = np.zeros(shape)
    weights[data.user_codes, data.item_codes] = data.weights
    biased = model.user_bias_ is not None
    return {
        "mask": mask, "r": ratings, "w": weights, "mu": model.global_mean_,
        "P": model.user_factors_.astype(np.float64), "Q": model.item_factors_.astype(np.float64),
        "bu": model.user_bias_.astype(np.float64) if biased else np.zeros(shape[0]),
        "bi": model.item_bias_.astype(np.float64) if biased else np.zeros(shape[1]),
        "biased": biased,
    }


def als_objective(model, data: Interactions) -> float:
    """The ALS docstring's objective: weighted SSE + λ Σ n (‖p‖² + b²) (n = 1 without WR)."""
    s = dense_state(model, data)
    pred = s["mu"] + s["bu"][:, None] + s["bi"][None, :] + s["P"] @ s["Q"].T
    sse = float((s["w"] * (s["r"] - pred) ** 2)[s["mask"]].sum())
    n_u = s["w"].sum(axis=1) if model.weighted_reg else np.ones(data.n_users)
    n_i = s["w"].sum(axis=0) if model.weighted_reg else np.ones(data.n_items)
    users = (s["P"] ** 2).sum(axis=1) + s["bu"] ** 2
    items = (s["Q"] ** 2).sum(axis=1) + s["bi"] ** 2
    return sse + model.reg * float(n_u @ users + n_i @ items)


def als_row_solution(design: np.ndarray, target: np.ndarray, weights: np.ndarray, reg: float,
                     weighted_reg: bool) -> np.ndarray:
    s = weights.sum() if weighted_reg else 1.0
    a = (design.T * weights) @ design + s * reg * np.eye(design.shape[1])
    return np.linalg.solve(a, design.T @ (weights * target))


def check_items_solve_given_users(model, data: Interactions) -> None:
    """Every item's [q_i, b_i] is the exact weighted ridge solution given the users."""
    s = dense_state(model, data)
    for i in range(data.n_items):
        rows = np.flatnonzero(s["mask"][:, i])
        design = s["P"][rows]
        target = s["r"][rows, i] - s["mu"]
        if s["biased"]:
            design = np.c_[design, np.ones(len(rows))]
            target = target - s["bu"][rows]
        want = als_row_solution(design, target, s["w"][rows, i], model.reg, model.weighted_reg)
        got = np.r_[s["Q"][i], s["bi"][i]] if s["biased"] else s["Q"][i]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"item {i}")


# ---------------------------------------------------------------------- ALS half-steps
ALS_VARIANTS = [
    pytest.param({"biased": True, "weighted_reg": True}, False, id="biased-WR"),
    pytest.param({"biased": False, "weighted_reg": True}, False, id="unbiased-WR"),
    pytest.param({"biased": True, "weighted_reg": False}, False, id="biased-plain"),
    pytest.param({"biased": True, "weighted_reg": True}, True, id="biased-WR-weights"),
    pytest.param({"biased": False, "weighted_reg": False}, True, id="unbiased-plain-weights"),
]


@pytest.mark.parametrize("params,weighted", ALS_VARIANTS)
def test_als_items_are_the_exact_ridge_solution_given_the_users(params, weighted):
    data = weighted_ratings() if weighted else planted_interactions(n_users=30, n_items=20,
                                                                    density=0.4)
    model = ALS(n_factors=3, reg=0.2, max_iter=3, random_state=0, n_threads=1, **params)
    model.fit(data, progress=False)
    check_items_solve_given_users(model, data)


@pytest.mark.parametrize("params,weighted", ALS_VARIANTS)
def test_als_users_are_the_exact_ridge_solution_given_the_previous_items(params, weighted):
    """Iteration n's user half-step solves against iteration n−1's items (a shorter fit
    with the same seed reproduces them)."""
    data = weighted_ratings(1) if weighted else planted_interactions(n_users=30, n_items=20,
                                                                     density=0.4, seed=1)
    before = ALS(n_factors=3, reg=0.2, max_iter=2, random_state=3, n_threads=1, **params).fit(
        data, progress=False)
    after = ALS(n_factors=3, reg=0.2, max_iter=3, random_state=3, n_threads=1, **params).fit(
        data, progress=False)
    prev, s = dense_state(before, data), dense_state(after, data)
    for u in range(data.n_users):
        cols = np.flatnonzero(s["mask"][u])
        design = prev["Q"][cols]
        target = s["r"][u, cols] - s["mu"]
        if s["biased"]:
            design = np.c_[design, np.ones(len(cols))]
            target = target - prev["bi"][cols]
        want = als_row_solution(design, target, s["w"][u, cols], 0.2, params["weighted_reg"])
        got = np.r_[s["P"][u], s["bu"][u]] if s["biased"] else s["P"][u]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"user {u}")


@pytest.mark.parametrize("params,weighted", ALS_VARIANTS)
def test_als_objective_never_increases(params, weighted):
    data = weighted_ratings(2) if weighted else planted_interactions(n_users=30, n_items=20,
                                                                     density=0.4, seed=2)
    objectives, rmses = [], []
    for n in range(1, 7):
        model = ALS(n_factors=4, reg=0.05, max_iter=n, random_state=0, n_threads=1, **params)
        model.fit(data, progress=False)
        objectives.append(als_objective(model, data))
        s = dense_state(model, data)
        pred = s["mu"] + s["bu"][:, None] + s["bi"][None, :] + s["P"] @ s["Q"].T
        rmses.append(np.sqrt((s["w"] * (s["r"] - pred) ** 2)[s["mask"]].sum()
                             / s["w"][s["mask"]].sum()))
    objectives = np.array(objectives)
    assert (np.diff(objectives) <= 1e-6 * objectives[:-1]).all(), objectives
    assert objectives[-1] < objectives[0]
    # The recorded training RMSE is the weighted RMSE of each iteration's factors.
    np.testing.assert_allclose(model.loss_history_["train_rmse"], rmses, rtol=1e-5)


def test_als_global_mean_is_the_weighted_mean():
    data = weighted_ratings()
    w = data.weights.astype(np.float64)
    model = ALS(n_factors=2, max_iter=1, random_state=0, n_threads=1).fit(data, progress=False)
    assert model.global_mean_ == pytest.approx(float(w @ data.ratings / w.sum()), rel=1e-6)
    assert ALS(n_factors=2, max_iter=1, biased=False).fit(data, progress=False).global_mean_ == 0


def test_als_learns_a_planted_model():
    data, truth = matfact.make_synthetic(300, 200, 9000, rank=3, noise=0.1, random_state=1,
                                         return_truth=True)
    train, test = matfact.train_test_split(data, 0.2, "random", random_state=0)
    model = ALS(n_factors=3, reg=0.02, max_iter=10, random_state=0, n_threads=1)
    model.fit(train, progress=False)
    planted = truth.predict(test.users, test.items)
    predicted = model.predict(test.users, test.items, clip=False)
    assert np.corrcoef(predicted, planted)[0, 1] > 0.95
    assert model.loss_history_["train_rmse"][-1] < 0.2


@pytest.mark.parametrize("biased", [True, False])
@pytest.mark.parametrize("weighted_reg", [True, False])
def test_als_fold_in_is_the_user_half_step(biased, weighted_reg):
    data = planted_interactions(n_users=40, n_items=25)
    model = ALS(n_factors=4, reg=0.3, max_iter=4, random_state=0, n_threads=1, biased=biased,
                weighted_reg=weighted_reg).fit(data, progress=False)
    items = data.item_ids[[0, 3, 4, 9, 12, 20]]
    ratings = np.array([5.0, 1.0, 4.0, 2.0, 3.5, 4.0])
    codes = data.item_index.get_indexer(items)
    design = model.item_factors_[codes].astype(np.float64)
    target = ratings - model.global_mean_
    if biased:
        design = np.c_[design, np.ones(len(codes))]
        target = target - model.item_bias_[codes]
    want = als_row_solution(design, target, np.ones(len(codes)), 0.3, weighted_reg)
    vector = model.fold_in(items, ratings)
    assert vector.factors.dtype == np.float32 and vector.factors.shape == (4,)
    np.testing.assert_allclose(vector.factors, want[:4], rtol=1e-4, atol=1e-6)
    assert vector.bias == pytest.approx(want[4] if biased else 0.0, rel=1e-4, abs=1e-7)
    # Folding a training user's own history in reproduces the user's last half-step
    # only up to the item update that followed, but scores must be finite and ordered.
    ids, scores = model.recommend_for_history(items, ratings, n=5)
    assert not set(ids.tolist()) & set(items.tolist()) and (np.diff(scores) <= 0).all()


def test_als_tol_stops_early_or_warns():
    data = planted_interactions(n_users=30, n_items=20, density=0.4)
    model = ALS(n_factors=3, max_iter=50, tol=0.2, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    history = model.loss_history_["train_rmse"]
    assert 2 <= model.n_iter_ < 50 and len(history) == model.n_iter_
    assert abs(history[-2] - history[-1]) <= 0.2 * history[-2]
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        ALS(n_factors=3, max_iter=2, tol=1e-12, random_state=0, n_threads=1).fit(
            data, progress=False)


def test_als_early_stopping_keeps_the_best_iteration():
    data = matfact.make_synthetic(150, 100, 3000, rank=3, noise=0.5, random_state=2)
    train, validation = matfact.train_test_split(data, 0.25, "random", random_state=0)
    model = ALS(n_factors=30, reg=0.001, max_iter=15, random_state=0, n_threads=1,
                early_stopping=True, patience=2)
    model.fit(train, validation=validation, progress=False)
    curve = np.array(model.loss_history_["validation_rmse"])
    assert len(curve) == model.n_iter_
    assert model.best_iter_ == int(np.argmin(curve)) + 1
    assert matfact.evaluate(model, validation)["rmse"] == pytest.approx(curve.min(), rel=1e-9)


def test_als_callback_gets_iteration_and_rmse():
    data = planted_interactions(n_users=30, n_items=20)
    calls = []
    model = ALS(n_factors=3, max_iter=4, random_state=0, n_threads=1).fit(
        data, progress=False, callback=lambda it, info: calls.append((it, info["train_rmse"])))
    assert [it for it, _ in calls] == [0, 1, 2, 3]
    assert [rmse for _, rmse in calls] == model.loss_history_["train_rmse"]


def test_als_is_identical_whatever_the_number_of_threads():
    data = weighted_ratings(3)
    fits = [ALS(n_factors=4, max_iter=4, random_state=5, n_threads=t).fit(data, progress=False)
            for t in (1, 2)]
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_array_equal(getattr(fits[0], name), getattr(fits[1], name))


# ---------------------------------------------------------------------- ImplicitALS
def implicit_data(seed: int = 0) -> Interactions:
    return planted_interactions("implicit", n_users=30, n_items=20, density=0.3, seed=seed)


def confidences(model, data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Dense (observed mask, confidence) with c = 1 on unobserved cells."""
    mask = np.zeros(data.shape, dtype=bool)
    mask[data.user_codes, data.item_codes] = True
    w = np.zeros(data.shape)
    w[data.user_codes, data.item_codes] = data.weights
    if model.confidence == "log":
        c = 1.0 + model.alpha * np.log(1.0 + w / model.epsilon)
    else:
        c = 1.0 + model.alpha * w
    return mask, np.where(mask, c, 1.0)


def implicit_penalties(model, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """λ n^ν per user and per item (a row without interactions counts as n = 1)."""
    n_u = np.maximum(mask.sum(axis=1), 1).astype(np.float64)
    n_i = np.maximum(mask.sum(axis=0), 1).astype(np.float64)
    return model.reg * n_u**model.reg_exponent, model.reg * n_i**model.reg_exponent


def implicit_objective(model, data: Interactions) -> tuple[float, float, float]:
    """(data term, documented objective with λ n^ν, normalizer) computed densely."""
    mask, c = confidences(model, data)
    x = model.user_factors_.astype(np.float64)
    y = model.item_factors_.astype(np.float64)
    data_term = float((c * (mask - x @ y.T) ** 2).sum())
    lam_u, lam_i = implicit_penalties(model, mask)
    penalty = float(lam_u @ (x**2).sum(axis=1) + lam_i @ (y**2).sum(axis=1))
    normalizer = float(c[mask].sum()) + mask.size - int(mask.sum())
    return data_term, data_term + penalty, normalizer


def implicit_row_solution(other: np.ndarray, cols: np.ndarray, c: np.ndarray,
                          lam: float) -> np.ndarray:
    """(YᵀY + λ_u I + Σ (c−1) y yᵀ) x = Σ c y."""
    yu = other[cols]
    a = other.T @ other + lam * np.eye(other.shape[1]) + (yu.T * (c - 1.0)) @ yu
    return np.linalg.solve(a, yu.T @ c)


# k = 4 factors most rows (longer than 0.8 k); k = 16 solves most by Woodbury.
@pytest.mark.parametrize("n_factors", [4, 16])
@pytest.mark.parametrize("confidence", ["linear", "log"])
@pytest.mark.parametrize("reg_exponent", [0.0, 0.5])
def test_implicit_items_are_the_exact_solution_given_the_users(confidence, reg_exponent,
                                                               n_factors):
    data = implicit_data()
    model = ImplicitALS(n_factors=n_factors, reg=0.7, alpha=1.5, epsilon=0.5, confidence=confidence,
                        reg_exponent=reg_exponent, solver="cholesky", max_iter=2,
                        random_state=0, n_threads=1).fit(data, progress=False)
    mask, c = confidences(model, data)
    _, lam_i = implicit_penalties(model, mask)
    users = model.user_factors_.astype(np.float64)
    for i in range(data.n_items):
        rows = np.flatnonzero(mask[:, i])
        want = implicit_row_solution(users, rows, c[rows, i], lam_i[i])
        np.testing.assert_allclose(model.item_factors_[i], want, rtol=1e-4, atol=1e-6,
                                   err_msg=f"item {i}")


def test_implicit_cholesky_without_ridge_and_more_factors_than_items_stays_finite():
    """λ = 0 and k > n_items: G is singular, so no row may go through Λ⁻¹ (Woodbury)."""
    model = ImplicitALS(n_factors=32, reg=0.0, reg_exponent=0.0, solver="cholesky",
                        max_iter=2, random_state=0, n_threads=1).fit(implicit_data(),
                                                                      progress=False)
    assert np.isfinite(model.user_factors_).all() and np.isfinite(model.item_factors_).all()


def test_implicit_log_confidence_is_not_linear():
    """Guard for the test above: the two confidence scalings give different models."""
    data = implicit_data()
    fits = [ImplicitALS(n_factors=4, confidence=conf, solver="cholesky", max_iter=2,
                        random_state=0, n_threads=1).fit(data, progress=False)
            for conf in ("linear", "log")]
    assert np.abs(fits[0].item_factors_ - fits[1].item_factors_).max() > 1e-3


@pytest.mark.parametrize("n_factors", [4, 16])
@pytest.mark.parametrize("reg_exponent", [0.0, 0.5])
def test_implicit_objective_never_increases_with_cholesky(reg_exponent, n_factors):
    data = implicit_data(1)
    objectives = []
    for n in range(1, 7):
        model = ImplicitALS(n_factors=n_factors, reg=0.5, reg_exponent=reg_exponent, alpha=2.0,
                            solver="cholesky", max_iter=n, init_std=0.3, random_state=0,
                            n_threads=1)
        model.fit(data, progress=False)
        objectives.append(implicit_objective(model, data)[1])
    objectives = np.array(objectives)
    assert (np.diff(objectives) <= 1e-6 * objectives[:-1]).all(), objectives
    assert objectives[-1] < objectives[0]


def test_implicit_calculate_loss_is_the_normalized_objective():
    """ν = 0: the history is (data term + λ(‖X‖² + ‖Y‖²)) / (Σ c_observed + #unobserved)."""
    data = implicit_data(2)
    expected = []
    for n in range(1, 5):
        model = ImplicitALS(n_factors=4, reg=0.5, reg_exponent=0.0, solver="cholesky",
                            max_iter=n, init_std=0.3, calculate_loss=True, random_state=0,
                            n_threads=1)
        model.fit(data, progress=False)
        _, objective, normalizer = implicit_objective(model, data)
        expected.append(objective / normalizer)
    np.testing.assert_allclose(model.loss_history_["train_loss"], expected, rtol=1e-5)
    assert model.loss_history_["train_loss"][-1] < model.loss_history_["train_loss"][0]


def test_implicit_calculate_loss_uses_the_frequency_scaled_penalty():
    """ν > 0: the recorded objective has the documented penalty Σ λ n^ν ‖x‖² per row (it
    used to be the plain λ(‖X‖² + ‖Y‖²), off by ~50 here)."""
    data = implicit_data(2)
    model = ImplicitALS(n_factors=4, reg=0.5, reg_exponent=0.5, solver="cholesky", max_iter=1,
                        init_std=0.3, calculate_loss=True, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    _, objective, normalizer = implicit_objective(model, data)
    assert model.loss_history_["train_loss"][0] == pytest.approx(objective / normalizer,
                                                                 rel=1e-5)


@pytest.mark.parametrize("suffix", [".zip", ""])
def test_implicit_als_default_model_can_be_saved(tmp_path, suffix):
    """calculate_loss=False (the default) used to record a list of NaN, which save() could
    not write as JSON."""
    data = implicit_data()
    model = ImplicitALS(n_factors=4, max_iter=2, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    model.save(tmp_path / f"ials{suffix}")
    loaded = matfact.load(tmp_path / f"ials{suffix}")
    np.testing.assert_array_equal(loaded.item_factors_, model.item_factors_)
    assert loaded.n_iter_ == 2 and loaded.loss_history_ == model.loss_history_


def test_implicit_history_is_empty_without_calculate_loss():
    data = implicit_data(3)
    model = ImplicitALS(n_factors=4, reg=0.5, max_iter=3, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    assert model.n_iter_ == 3
    assert model.loss_history_["train_loss"] == []


def test_implicit_cg_with_many_steps_matches_cholesky():
    data = implicit_data(4)
    fits = [ImplicitALS(n_factors=4, solver=solver, cg_steps=50, max_iter=3, random_state=0,
                        n_threads=1).fit(data, progress=False) for solver in ("cg", "cholesky")]
    np.testing.assert_allclose(fits[0].user_factors_, fits[1].user_factors_, rtol=1e-3,
                               atol=1e-4)
    np.testing.assert_allclose(fits[0].item_factors_, fits[1].item_factors_, rtol=1e-3,
                               atol=1e-4)
    few = ImplicitALS(n_factors=4, solver="cg", cg_steps=1, max_iter=3, random_state=0,
                      n_threads=1).fit(data, progress=False)
    assert np.abs(few.item_factors_ - fits[1].item_factors_).max() > 1e-4


@pytest.mark.parametrize("reg_exponent", [0.0, 0.5])
@pytest.mark.parametrize("confidence", ["linear", "log"])
def test_implicit_fold_in_is_an_exact_solve(reg_exponent, confidence):
    data = implicit_data(5)
    model = ImplicitALS(n_factors=4, reg=0.6, reg_exponent=reg_exponent, confidence=confidence,
                        epsilon=2.0, max_iter=4, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    items = data.item_ids[[1, 2, 7, 11, 15]]
    weights = np.array([1.0, 3.0, 0.5, 2.0, 5.0])
    c = (1.0 + model.alpha * (np.log1p(weights / 2.0) if confidence == "log" else weights))
    want = implicit_row_solution(model.item_factors_.astype(np.float64),
                                 data.item_index.get_indexer(items), c,
                                 0.6 * len(items) ** reg_exponent)
    vector = model.fold_in(items, weights)
    assert vector.bias == 0.0 and vector.factors.dtype == np.float32
    np.testing.assert_allclose(vector.factors, want, rtol=1e-4, atol=1e-6)
    ones = model.fold_in(items)  # no weights: confidence 1 + α
    want_ones = implicit_row_solution(model.item_factors_.astype(np.float64),
                                      data.item_index.get_indexer(items),
                                      np.full(5, 1.0 + model.alpha *
                                              (np.log(1.5) if confidence == "log" else 1.0)),
                                      0.6 * 5**reg_exponent)
    np.testing.assert_allclose(ones.factors, want_ones, rtol=1e-4, atol=1e-6)


def test_implicit_als_on_ratings_uses_unit_weights():
    ratings = planted_interactions(n_users=30, n_items=20, density=0.3)
    a = ImplicitALS(n_factors=4, max_iter=3, random_state=0, n_threads=1)
    a.fit(ratings, progress=False)
    b = ImplicitALS(n_factors=4, max_iter=3, random_state=0, n_threads=1)
    b.fit(ratings.to_implicit(), progress=False)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert a.rating_scale_ is None


def test_implicit_als_refuses_validation():
    data = implicit_data()
    with pytest.raises(ParameterError, match="validation"):
        ImplicitALS(max_iter=1).fit(data, validation=planted_interactions(), progress=False)


def test_implicit_als_identical_whatever_the_number_of_threads():
    data = implicit_data(6)
    for solver in ("cg", "cholesky"):
        fits = [ImplicitALS(n_factors=4, max_iter=3, solver=solver, random_state=1,
                            n_threads=t).fit(data, progress=False) for t in (1, 2)]
        np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
        np.testing.assert_array_equal(fits[0].item_factors_, fits[1].item_factors_)


def test_implicit_als_ranks_a_planted_two_group_problem():
    rng = np.random.default_rng(0)
    n_users, n_items = 80, 40
    group_u, group_i = np.arange(n_users) % 2, np.arange(n_items) % 2
    likes = (group_u[:, None] == group_i[None, :]) & (rng.random((n_users, n_items)) < 0.5)
    users, items = np.nonzero(likes)
    data = Interactions.from_arrays(users, items)
    model = ImplicitALS(n_factors=4, max_iter=8, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    ids, _ = model.recommend(np.arange(n_users), n=5)
    assert (group_i[ids] == group_u[:, None]).mean() > 0.95


# ---------------------------------------------------------------------- re-weighting
TINY = np.array([[1.0, 2.0, 0.0, 0.0],
                 [0.0, 3.0, 0.0, 0.0],
                 [4.0, 0.0, 1.0, 0.0]])  # item 3 has no users


def test_tfidf_weight_by_hand():
    got = tfidf_weight(sp.csr_matrix(TINY))
    l15, l3 = np.log(3 / 2), np.log(3)
    want = np.array([[1 * l15, 2 * l15, 0, 0],
                     [0, 3 * l15, 0, 0],
                     [4 * l15, 0, 1 * l3, 0]])
    assert sp.isspmatrix_csr(got) and got.dtype == np.float64
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12)


def test_bm25_weight_by_hand():
    k1, b = 2.0, 0.5
    got = bm25_weight(sp.csr_matrix(TINY), k1=k1, b=b)
    # Row sums 3, 3, 5 (mean 11/3): length norms 0.5 + 0.5 · len / (11/3).
    norm = [10 / 11, 10 / 11, 13 / 11]
    l15, l3 = np.log(3 / 2), np.log(3)

    def w(value, u, idf):
        return value * (k1 + 1) / (k1 * norm[u] + value) * idf

    want = np.array([[w(1, 0, l15), w(2, 0, l15), 0, 0],
                     [0, w(3, 1, l15), 0, 0],
                     [w(4, 2, l15), 0, w(1, 2, l3), 0]])
    np.testing.assert_allclose(got.toarray(), want, rtol=1e-12)
    # e.g. the first cell is 1 · 3 / (20/11 + 1) · ln 1.5 = 33/31 ln 1.5
    assert got[0, 0] == pytest.approx(33 / 31 * l15, rel=1e-12)


def test_reweighting_leaves_the_input_alone_and_accepts_interactions():
    matrix = sp.csr_matrix(TINY)
    before = matrix.toarray().copy()
    bm25_weight(matrix)
    tfidf_weight(matrix)
    np.testing.assert_array_equal(matrix.toarray(), before)
    users, items = np.nonzero(TINY)
    data = Interactions.from_arrays(users, items, weights=TINY[users, items])
    assert data.shape == (3, 3)  # the empty item is not in the vocabulary
    np.testing.assert_allclose(bm25_weight(data).toarray(),
                               bm25_weight(sp.csr_matrix(TINY[:, :3])).toarray(), rtol=1e-6)
    np.testing.assert_allclose(tfidf_weight(data).toarray(),
                               tfidf_weight(sp.csr_matrix(TINY[:, :3])).toarray(), rtol=1e-6)


def test_reweighting_refuses_bad_input():
    for k1, b in ((0.0, 0.5), (-1.0, 0.5), (1.0, -0.1), (1.0, 1.5)):
        with pytest.raises(ParameterError, match="k1"):
            bm25_weight(sp.csr_matrix(TINY), k1=k1, b=b)
    for func in (bm25_weight, tfidf_weight):
        with pytest.raises(DataError, match="sparse"):
            func(TINY)


def test_bm25_weights_train_an_implicit_model():
    data = implicit_data(7)
    weighted = bm25_weight(data).tocoo()
    reweighted = Interactions.from_arrays(data.user_ids[weighted.row],
                                          data.item_ids[weighted.col],
                                          weights=np.maximum(weighted.data, 1e-6))
    model = ImplicitALS(n_factors=4, max_iter=3, random_state=0, n_threads=1).fit(reweighted,
                                                                     progress=False)
    assert np.isfinite(model.user_factors_).all()


# ---------------------------------------------------------------------- ML-100K
def test_ml100k_als_first_fold_rmse(ml100k):
    """Fold 0 of kfold(ml100k, 5, random_state=0), ALS defaults: measured 0.9101 here
    (docs: 5-fold mean 0.9121)."""
    train, test = matfact.kfold(ml100k, 5, random_state=0)[0]
    model = ALS(random_state=0, n_threads=1).fit(train, progress=False)  # any count: same model
    result = matfact.evaluate(model, test)
    assert result["rmse"] < 0.92, result


def test_ml100k_implicit_als_ndcg(ml100k):
    """Per-user 80/20 split (seed 42) of the implicit ML-100K, defaults: measured NDCG@10
    0.4507."""
    train, test = matfact.train_test_split(ml100k.to_implicit(), 0.2, "per_user",
                                           random_state=42)
    model = ImplicitALS(random_state=0, n_threads=1).fit(train, progress=False)
    result = matfact.evaluate_ranking(model, test, metrics=("ndcg",))
    assert result["ndcg@10"] > 0.43, result


def test_unknown_user_gets_popular_items_without_item_biases():
    """ImplicitALS has no item biases: an unknown user is ranked by popularity (documented)."""
    data = matfact.Interactions.from_arrays([1, 2, 3, 3, 4], [10, 20, 20, 30, 20])
    model = matfact.ImplicitALS(n_factors=2, max_iter=2, random_state=0).fit(data, progress=False)
    ids, scores = model.recommend(["nobody"], n=2)
    assert ids[0, 0] == 20 and scores[0, 0] == 3.0


# ---------------------------------------------------------------------- confidence="auto" (issue 20)
def binary_interactions(seed: int = 0) -> Interactions:
    data = implicit_data(seed)
    return Interactions.from_arrays(data.users, data.items)  # no weights: every weight 1


def heavy_tailed_counts(scale: float = 1.0) -> tuple[Interactions, np.ndarray]:
    """101 interactions with weights 2^(j/10), j = 0..100, in a shuffled order.

    With 101 values, numpy's linear-interpolation quantile q_p is the order statistic
    at position 100·p exactly: q_0.01 = 2^0.1, q_0.5 = 2^5, q_0.99 = 2^9.9.
    """
    j = np.random.default_rng(0).permutation(101)
    weights = scale * 2.0 ** (j / 10.0)
    return Interactions.from_arrays(j % 13, j, weights=weights), weights


def test_auto_confidence_on_binary_data_is_the_linear_model():
    data = binary_interactions()
    auto = ImplicitALS(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    linear = ImplicitALS(n_factors=4, max_iter=3, random_state=0,
                         confidence="linear").fit(data, progress=False)
    assert (auto.confidence_, auto.alpha_, auto.epsilon_) == ("linear", 3.0, 1.0)
    np.testing.assert_array_equal(auto.user_factors_, linear.user_factors_)
    np.testing.assert_array_equal(auto.item_factors_, linear.item_factors_)


def test_auto_confidence_keeps_narrow_weights_linear():
    # Ratings 1..5 as weights span 5×, well under two orders of magnitude.
    data = implicit_data()
    model = ImplicitALS(n_factors=4, max_iter=2, alpha=3.0, random_state=0).fit(
        data, progress=False)
    assert (model.confidence_, model.alpha_, model.epsilon_) == ("linear", 3.0, 1.0)
    np.testing.assert_allclose(model.confidence_of(np.array([1.0, 4.0])), [4.0, 13.0])


def test_auto_confidence_on_heavy_tailed_counts_takes_the_log_of_the_quantile_rule():
    import math

    data, weights = heavy_tailed_counts()
    model = ImplicitALS(n_factors=2, max_iter=1, alpha=2.0, random_state=0).fit(
        data, progress=False)
    # ε = q_0.5 = 2^5; α = alpha / log(1 + q_0.99 / q_0.5) = 2 / log(1 + 2^4.9).
    assert model.confidence_ == "log"
    assert model.epsilon_ == pytest.approx(32.0, rel=1e-6)
    assert model.alpha_ == pytest.approx(2.0 / math.log(1.0 + 2.0**4.9), rel=1e-6)
    assert model.alpha_ == pytest.approx(0.583198, rel=1e-5)  # 2 / ln(30.857)
    # The heaviest 1% get 1 + alpha, the confidence of every interaction on binary data.
    np.testing.assert_allclose(model.confidence_of(np.array([2.0**9.9, 32.0])),
                               [3.0, 1.0 + model.alpha_ * math.log(2.0)], rtol=1e-5)
    # The parameters are left as given (get_params / clone see the user's values).
    assert (model.confidence, model.alpha, model.epsilon) == ("auto", 2.0, 1.0)


def test_auto_confidence_does_not_depend_on_the_unit():
    hours, _ = heavy_tailed_counts()
    minutes, _ = heavy_tailed_counts(scale=60.0)
    a = ImplicitALS(n_factors=2, max_iter=2, random_state=0).fit(hours, progress=False)
    b = ImplicitALS(n_factors=2, max_iter=2, random_state=0).fit(minutes, progress=False)
    assert b.alpha_ == pytest.approx(a.alpha_, rel=1e-6)
    assert b.epsilon_ == pytest.approx(60.0 * a.epsilon_, rel=1e-6)
    np.testing.assert_allclose(b.user_factors_, a.user_factors_, rtol=1e-4, atol=1e-6)


def test_explicit_linear_on_heavy_tailed_weights_warns_and_binary_does_not():
    import warnings

    heavy, _ = heavy_tailed_counts()
    with pytest.warns(matfact.ConfidenceWarning, match=r"span .*× .*confidence='auto'"):
        ImplicitALS(n_factors=2, max_iter=1, confidence="linear").fit(heavy, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImplicitALS(n_factors=2, max_iter=1, confidence="linear").fit(
            binary_interactions(), progress=False)
        ImplicitALS(n_factors=2, max_iter=1, confidence="linear").fit(
            implicit_data(), progress=False)
        ImplicitALS(n_factors=2, max_iter=1).fit(heavy, progress=False)
        ImplicitALS(n_factors=2, max_iter=1, confidence="log").fit(heavy, progress=False)


def test_auto_confidence_survives_save_load_and_partial_fit(tmp_path):
    data, weights = heavy_tailed_counts()
    model = ImplicitALS(n_factors=2, max_iter=2, random_state=0).fit(data, progress=False)
    chosen = (model.confidence_, model.alpha_, model.epsilon_)
    model.save(tmp_path / "model.zip")
    loaded = matfact.load(tmp_path / "model.zip")
    assert (loaded.confidence_, loaded.alpha_, loaded.epsilon_) == chosen
    np.testing.assert_array_equal(loaded.confidence_of(weights), model.confidence_of(weights))
    # New, lighter data refines the same objective: the choice is kept.
    loaded.partial_fit(Interactions.from_arrays([0], [3], weights=[1e-3]), max_iter=1)
    assert (loaded.confidence_, loaded.alpha_, loaded.epsilon_) == chosen


def test_auto_confidence_needs_a_fit_before_confidences():
    with pytest.raises(matfact.NotFittedError, match="confidence='auto'"):
        ImplicitALS().confidence_of(np.ones(3))
    np.testing.assert_allclose(ImplicitALS(confidence="log", epsilon=2.0, alpha=1.0)
                               .confidence_of(np.array([2.0])), [1.0 + np.log(2.0)])


def test_implicit_als_defaults_are_a_point_of_its_default_search_space():
    # tune(ImplicitALS(), None, ...) then scores the defaults among its points, so its best
    # is never below the defaults on the tuner's own validation split.
    from matfact.evaluation.tune import default_space

    defaults = ImplicitALS().get_params()
    space = default_space(ImplicitALS)
    assert {"confidence", "n_factors", "alpha", "reg"} <= set(space)
    for name, values in space.items():
        assert defaults[name] in values, name


def test_auto_confidence_at_the_defaults_gives_binary_interactions_one_plus_alpha():
    # Binary data: every confidence is 1 + alpha with the default alpha (3), the heaviest
    # 1 % of long-tailed counts get the same 1 + alpha (hand values: 4.0 both).
    binary = ImplicitALS(n_factors=2, max_iter=1, random_state=0).fit(
        binary_interactions(), progress=False)
    np.testing.assert_allclose(binary.confidence_of(np.ones(2)), [4.0, 4.0])
    data, _ = heavy_tailed_counts()
    heavy = ImplicitALS(n_factors=2, max_iter=1, random_state=0).fit(data, progress=False)
    np.testing.assert_allclose(heavy.confidence_of(np.array([2.0**9.9])), [4.0], rtol=1e-5)
