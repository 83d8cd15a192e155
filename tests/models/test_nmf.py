"""NMF: scikit-learn parity in whole-matrix mode, the masked recommender, fold-in by NNLS.

Whole-matrix mode is checked against scikit-learn itself (its inits, its loss
formula, its iterates when we run its single sweep), masked mode against dense
NumPy objectives computed in the test and against SciPy's NNLS.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import NMF as SklearnNMF
from sklearn.decomposition._nmf import _beta_divergence, _initialize_nmf

import matfact
from matfact import NMF, ConvergenceWarning, DataError, Interactions, NotFittedError, ParameterError
from matfact.models import nmf as nmf_module
from matfact.models.nmf import nmf_init
from tests.models.contract import ModelContract, planted_interactions

BAD = [{"n_components": 0}, {"n_components": 2.5}, {"solver": "pg"}, {"beta_loss": "itakura"},
       {"tol": -1.0}, {"max_iter": 0}, {"alpha_W": -0.1}, {"alpha_H": -1.0},
       {"l1_ratio": 1.5}, {"shuffle": "no"}, {"inner_sweeps": 0}, {"inner_sweeps": "fast"}, {"biased": 1}, {"weighted_reg": None},
       {"random_state": -1}, {"n_threads": 0}, {"init": "svd"}]


# ---------------------------------------------------------------------- contract
class TestNMFContract(ModelContract):
    data_kind = "explicit"
    bad_params = BAD

    def make_model(self):
        return NMF(n_components=4, max_iter=30, tol=0.0, random_state=0)

    def test_fit_rejects_non_interactions(self):
        # NMF also takes matrices (transformer mode); anything else is refused by name.
        with pytest.raises(DataError, match="Interactions"):
            self.make_model().fit("ratings.csv", progress=False)


class TestUnbiasedNMFContract(ModelContract):
    data_kind = "implicit"
    bad_params = BAD

    def make_model(self):
        return NMF(n_components=4, max_iter=30, tol=0.0, biased=False, random_state=0)

    def test_fit_rejects_non_interactions(self):
        with pytest.raises(DataError, match="Interactions"):
            self.make_model().fit({"a": 1}, progress=False)


class TestMultiplicativeNMFContract(TestUnbiasedNMFContract):
    def make_model(self):
        return NMF(n_components=4, max_iter=30, tol=0.0, biased=False, solver="mu",
                   random_state=0)


# ---------------------------------------------------------------------- data
def low_rank(n: int = 40, m: int = 30, k: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, k)) @ rng.random((k, m))


def sparse_counts(seed: int = 0) -> sp.csr_matrix:
    return sp.random(80, 60, density=0.15, random_state=seed, format="csr",
                     data_rvs=lambda size: np.random.default_rng(seed).integers(1, 6, size))


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------- scikit-learn parity
@pytest.mark.parametrize("init", ["random", "nndsvd", "nndsvda", "nndsvdar"])
def test_init_equals_scikit_learn(init):
    X = sparse_counts()
    W, H = nmf_init(X, 5, init, random_state=3)
    W_ref, H_ref = _initialize_nmf(X, 5, init, random_state=3)
    np.testing.assert_allclose(W, W_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H, H_ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("beta", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("sparse", [False, True])
def test_divergence_equals_scikit_learn_formula(beta, sparse):
    X = sparse_counts()
    X = X if sparse else X.toarray()
    W, H = nmf_init(X, 4, "random", random_state=0)
    model = NMF(4, beta_loss=beta, solver="mu")
    problem = nmf_module._WholeProblem(X, model)
    assert problem.divergence(W, H) == pytest.approx(_beta_divergence(X, W, H, beta), rel=1e-10)


@pytest.mark.parametrize("beta", ["frobenius", "kullback-leibler"])
def test_multiplicative_updates_equal_scikit_learn(beta):
    X = sparse_counts(1)
    ours = NMF(5, solver="mu", beta_loss=beta, init="nndsvda", max_iter=60, tol=1e-4,
               random_state=0)
    ref = SklearnNMF(5, solver="mu", beta_loss=beta, init="nndsvda", max_iter=60, tol=1e-4,
                     random_state=0)
    W, W_ref = quiet(ours.fit_transform, X), quiet(ref.fit_transform, X)
    np.testing.assert_allclose(W, W_ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.components_, ref.components_, rtol=1e-8, atol=1e-10)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.reconstruction_err_ == pytest.approx(ref.reconstruction_err_, rel=1e-10)


def test_coordinate_descent_equals_scikit_learn():
    # With one sweep per update (the default) our cd is scikit-learn's, iterate for iterate.
    X = sparse_counts(2)
    params = dict(n_components=6, init="nndsvda", max_iter=40, tol=1e-4, random_state=0,
                  alpha_W=0.01, l1_ratio=0.3)
    ours, ref = NMF(**params), SklearnNMF(**params)
    W, W_ref = quiet(ours.fit_transform, X), quiet(ref.fit_transform, X)
    np.testing.assert_allclose(W, W_ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ours.components_, ref.components_, rtol=1e-9, atol=1e-11)
    assert ours.n_iter_ == ref.n_iter_


def test_inner_sweeps_reach_scikit_learns_loss_sooner():
    X = low_rank(60, 50, 4) + 0.05 * np.random.default_rng(1).random((60, 50))
    ref = SklearnNMF(4, init="nndsvda", max_iter=300, tol=1e-4).fit(X)
    target = 0.5 * ref.reconstruction_err_**2
    reached = []
    NMF(4, init="nndsvda", max_iter=300, tol=1e-4, inner_sweeps="auto").fit(
        X, callback=lambda it, info: reached.append(it) or info["train_loss"] <= target)
    assert reached[-1] + 1 < ref.n_iter_


def test_transform_matches_scikit_learn():
    X = sparse_counts(3)
    ours = NMF(4, init="nndsvda", max_iter=500, tol=1e-6, random_state=0).fit(X)
    ref = SklearnNMF(4, init="custom", max_iter=500, tol=1e-6)
    ref.fit(X, W=ours.transform(X), H=ours.components_.copy())
    # Same H: the codes solve the same convex problem, so both transforms agree.
    ref.components_ = ours.components_.copy()
    np.testing.assert_allclose(ours.transform(X), quiet(ref.transform, X), rtol=1e-3,
                               atol=1e-5)


# ---------------------------------------------------------------------- whole-matrix behaviour
@pytest.mark.parametrize("solver,beta", [("cd", "frobenius"), ("mu", "frobenius"),
                                         ("mu", "kullback-leibler")])
def test_dense_input_equals_sparse_input(solver, beta):
    X = sparse_counts(4)
    kw = dict(n_components=4, solver=solver, beta_loss=beta, init="nndsvda", max_iter=50,
              tol=1e-4, random_state=0)
    W_sparse = quiet(NMF(**kw).fit_transform, X)
    W_dense = quiet(NMF(**kw).fit_transform, X.toarray())
    np.testing.assert_allclose(W_sparse, W_dense, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("beta", ["frobenius", "kullback-leibler"])
def test_multiplicative_loss_never_increases(beta):
    X = sparse_counts(5)
    losses = []
    quiet(NMF(5, solver="mu", beta_loss=beta, init="random", max_iter=80, tol=0.0,
              random_state=0).fit, X, callback=lambda it, info: losses.append(info["train_loss"]))
    assert len(losses) == 80
    assert np.all(np.diff(losses) <= 1e-9 * losses[0])


def test_coordinate_descent_loss_never_increases():
    X = sparse_counts(6)
    losses = []
    quiet(NMF(5, init="random", max_iter=60, tol=0.0, random_state=0, alpha_W=0.01).fit, X,
          callback=lambda it, info: losses.append(info["train_loss"]))
    assert np.all(np.diff(losses) <= 1e-9 * losses[0])


def test_cd_and_mu_recover_planted_low_rank_data():
    X = low_rank(50, 40, 3, seed=2)
    for solver in ("cd", "mu"):
        model = NMF(3, solver=solver, init="nndsvda", max_iter=3000, tol=1e-9, random_state=0)
        W = quiet(model.fit_transform, X)
        assert model.reconstruction_err_ / np.linalg.norm(X) < 1e-2, solver
        np.testing.assert_allclose(model.inverse_transform(W), X, atol=0.05 * X.max())
        assert (W >= 0).all() and (model.components_ >= 0).all()


def test_reconstruction_error_is_the_frobenius_norm():
    X = sparse_counts(7)
    model = NMF(5, max_iter=20, tol=0.0, random_state=0)
    W = model.fit_transform(X)
    assert model.reconstruction_err_ == pytest.approx(
        np.linalg.norm(X.toarray() - W @ model.components_), rel=1e-9)


def test_float32_input_stays_float32():
    X = sparse_counts(8).astype(np.float32)
    model = NMF(3, max_iter=20, tol=0.0, random_state=0)
    W = model.fit_transform(X)
    assert W.dtype == np.float32 and model.components_.dtype == np.float32


def test_fit_transform_warns_at_max_iter():
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        NMF(4, max_iter=2, random_state=0).fit(sparse_counts(9))


# ---------------------------------------------------------------------- errors
def test_negative_input_error_names_count_and_fix():
    X = np.ones((4, 3))
    X[0, 0] = X[2, 1] = -1.0
    with pytest.raises(DataError, match=r"2 negative values.*shift or clip"):
        NMF(2).fit(X)


@pytest.mark.parametrize("bad,match", [
    (np.array([[1.0, np.nan]]), "NaN or infinite"),
    (np.array([[1.0, np.inf]]), "NaN or infinite"),
    (np.zeros((0, 3)), "empty"),
    (np.ones(5), "2-D"),
])
def test_bad_matrices_are_refused(bad, match):
    with pytest.raises(DataError, match=match):
        NMF(1).fit(bad)


def test_parameter_errors():
    X = sparse_counts()
    with pytest.raises(ParameterError, match="solver='mu'"):
        NMF(2, beta_loss="kullback-leibler").fit(X)
    with pytest.raises(ParameterError, match="needs both W= and H="):
        NMF(2, init="custom").fit(X, W=np.ones((80, 2)))
    with pytest.raises(ParameterError, match=r"shape \(2, 60\)"):
        NMF(2, init="custom").fit(X, W=np.ones((80, 2)), H=np.ones((3, 60)))
    with pytest.raises(ParameterError, match="nndsvda.*min"):
        NMF(70, init="nndsvda").fit(X)


def test_transform_errors():
    model = NMF(3, max_iter=50, tol=1e-3, random_state=0)
    with pytest.raises(NotFittedError):
        model.transform(np.ones((2, 60)))
    quiet(model.fit, sparse_counts())
    with pytest.raises(DataError, match="60"):
        model.transform(np.ones((2, 59)))
    with pytest.raises(DataError, match=r"\(n, 3\)"):
        model.inverse_transform(np.ones((2, 4)))
    with pytest.raises(NotFittedError, match="transformer mode"):
        model.recommend([1])


def test_transformer_mode_saves_and_loads(tmp_path):
    model = quiet(NMF(3, max_iter=30, random_state=0).fit, sparse_counts())
    model.save(tmp_path / "nmf.zip")
    loaded = matfact.load(tmp_path / "nmf.zip")
    np.testing.assert_array_equal(loaded.components_, model.components_)
    X = sparse_counts(1)
    np.testing.assert_allclose(quiet(loaded.transform, X), quiet(model.transform, X))


# ---------------------------------------------------------------------- masked mode
def masked_objective(model: NMF, data: Interactions, alpha: float) -> float:
    """The masked objective computed densely from the model's published attributes."""
    users, items = data.user_codes, data.item_codes
    W, Ht = model.user_factors_.astype(np.float64), model.item_factors_.astype(np.float64)
    pred = np.einsum("ij,ij->i", W[users], Ht[items]) + model.global_mean_
    reg_rows = [(W, np.bincount(users, minlength=data.n_users)),
                (Ht, np.bincount(items, minlength=data.n_items))]
    biases = [model.user_bias_, model.item_bias_]
    if model.user_bias_ is not None:
        pred += model.user_bias_[users] + model.item_bias_[items]
    value = 0.5 * np.sum((data.ratings - pred) ** 2)
    for (factors, counts), bias in zip(reg_rows, biases, strict=True):
        value += 0.5 * alpha * np.sum(counts * np.sum(factors**2, axis=1))
        if bias is not None:  # the biases' ridge is not scaled by the counts
            value += 0.5 * model.reg_bias * np.sum(bias.astype(np.float64) ** 2)
    return value


@pytest.mark.parametrize("biased", [True, False])
def test_masked_objective_is_reported_and_never_increases(biased):
    data = planted_interactions("explicit", seed=3)
    losses = []
    model = NMF(4, max_iter=25, tol=0.0, alpha_W=0.05, biased=biased, random_state=0).fit(
        data, progress=False, callback=lambda it, info: losses.append(info["train_loss"]))
    assert np.all(np.diff(losses) <= 1e-6 * losses[0])
    assert losses[-1] == pytest.approx(masked_objective(model, data, 0.05) / data.nnz, rel=1e-4)


def test_masked_mode_ignores_unobserved_cells():
    rng = np.random.default_rng(0)
    full = rng.integers(1, 6, size=(30, 20)).astype(float)
    mask = rng.random((30, 20)) < 0.4
    mask[:, 0] = mask[0, :] = True
    changed = full.copy()
    changed[~mask] = rng.integers(1, 6, size=(~mask).sum())  # differ only where unobserved
    fits = []
    for matrix in (full, changed):
        rows, cols = np.nonzero(mask)
        data = Interactions.from_arrays(rows, cols, matrix[rows, cols])
        fits.append(NMF(3, max_iter=20, tol=0.0, random_state=0).fit(data, progress=False))
    np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
    np.testing.assert_array_equal(fits[0].item_factors_, fits[1].item_factors_)


def test_masked_mode_differs_from_whole_matrix_mode():
    # Filling the gaps with zeros (what scikit-learn must do) drags predictions to zero.
    data = planted_interactions("explicit", density=0.3, seed=4)
    masked = NMF(3, max_iter=60, tol=0.0, biased=False, random_state=0).fit(data,
                                                                             progress=False)
    whole = quiet(NMF(3, init="nndsvda", max_iter=200, random_state=0).fit,
                  data.to_scipy().toarray())
    observed = data.to_scipy().toarray() > 0
    W = whole.transform(data.to_scipy().toarray())
    whole_rmse = np.sqrt(np.mean(((W @ whole.components_)[observed]
                                  - data.to_scipy().toarray()[observed]) ** 2))
    # Both are training errors on purpose (evaluate() would warn of the overlap, issue 20).
    masked_rmse = np.sqrt(np.mean((masked.predict(data.users, data.items) - data.values) ** 2))
    assert masked_rmse < 0.5 * whole_rmse


def test_factors_stay_non_negative():
    model = NMF(5, max_iter=20, tol=0.0, random_state=0).fit(planted_interactions(),
                                                              progress=False)
    assert (model.user_factors_ >= 0).all() and (model.item_factors_ >= 0).all()


def test_unbiased_masked_mode_refuses_negative_values():
    data = Interactions.from_arrays([0, 1, 1], [0, 0, 1], [1.0, -2.0, 3.0])
    with pytest.raises(DataError, match="1 are negative"):
        NMF(2, biased=False).fit(data, progress=False)
    NMF(2, max_iter=5, tol=0.0).fit(data, progress=False)  # the biases absorb the sign


@pytest.mark.parametrize("params,match", [
    ({"beta_loss": "kullback-leibler", "solver": "mu", "biased": False}, "frobenius"),
    ({"init": "nndsvda"}, "init='random'"),
    ({"solver": "mu"}, "biased=False"),
])
def test_masked_mode_parameter_errors(params, match):
    with pytest.raises(ParameterError, match=match):
        NMF(2, **params).fit(planted_interactions(), progress=False)


def test_masked_fold_in_equals_scipy_nnls():
    data = planted_interactions("implicit", seed=5)
    model = NMF(4, max_iter=30, tol=0.0, biased=False, alpha_W=0.05, weighted_reg=False,
                random_state=0).fit(data, progress=False)
    items = data.item_ids[[1, 4, 7, 9, 12, 20, 25]]
    values = np.array([5.0, 3.0, 4.0, 1.0, 2.0, 5.0, 4.0])
    vector = model.fold_in(items, values)
    H = model.item_factors_[model.item_index_.get_indexer(items)].astype(np.float64)
    # ½‖v − H w‖² + ½ α ‖w‖²  ==  ½‖[v; 0] − [H; √α I] w‖²
    A = np.vstack([H, np.sqrt(0.05) * np.eye(4)])
    expected, _ = scipy.optimize.nnls(A, np.concatenate([values, np.zeros(4)]))
    np.testing.assert_allclose(vector.factors, expected, rtol=1e-4, atol=1e-5)


def test_biased_fold_in_equals_bounded_least_squares():
    data = planted_interactions("explicit", seed=6)
    model = NMF(3, max_iter=30, tol=0.0, alpha_W=0.1, random_state=0).fit(data, progress=False)
    items = data.item_ids[[0, 3, 5, 8, 13]]
    values = np.array([4.0, 2.0, 5.0, 3.0, 1.0])
    vector = model.fold_in(items, values)
    codes = model.item_index_.get_indexer(items)
    target = values - model.global_mean_ - model.item_bias_[codes]
    n, lam = len(values), 0.1 * len(values)  # weighted-λ: the row's count times α
    design = np.hstack([model.item_factors_[codes].astype(np.float64), np.ones((n, 1))])
    A = np.vstack([design, np.diag(np.sqrt([lam, lam, lam, model.reg_bias]))])
    ref = scipy.optimize.lsq_linear(A, np.concatenate([target, np.zeros(4)]),
                                    bounds=([0, 0, 0, -np.inf], np.inf), tol=1e-12)
    np.testing.assert_allclose(vector.factors, ref.x[:3], atol=2e-4)
    assert vector.bias == pytest.approx(ref.x[3], abs=2e-4)


def test_one_thread_equals_two():
    data = planted_interactions(seed=7)
    fits = [NMF(4, max_iter=10, tol=0.0, random_state=0, n_threads=t).fit(data, progress=False)
            for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
    X = sparse_counts(10)
    codes = [quiet(NMF(4, max_iter=10, random_state=0, n_threads=t).fit_transform, X)
             for t in (1, 2)]
    np.testing.assert_array_equal(codes[0], codes[1])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), biased=st.booleans())
def test_masked_half_steps_never_increase_the_objective(seed, k, biased):
    data = planted_interactions("explicit", n_users=12, n_items=9, density=0.5, seed=seed)
    values = [masked_objective(NMF(k, max_iter=n, tol=0.0, alpha_W=0.03, biased=biased,
                                   random_state=seed).fit(data, progress=False), data, 0.03)
              for n in (1, 2, 3)]
    assert values[1] <= values[0] * (1 + 1e-5) and values[2] <= values[1] * (1 + 1e-5)


# ---------------------------------------------------------------------- real data
def test_masked_nmf_beats_baseline_on_ml100k(ml100k):
    train, test = matfact.train_test_split(ml100k, strategy="random", random_state=0)
    nmf = NMF(random_state=0, max_iter=60).fit(train, progress=False)
    baseline = matfact.Baseline().fit(train, progress=False)
    assert matfact.evaluate(nmf, test)["rmse"] < matfact.evaluate(baseline, test)["rmse"] - 0.01


def test_masked_nmf_keeps_the_scale_of_1_to_10_ratings(data_dir):
    # Sparse data (most books rated a few times) wants a stronger ridge than ML-100K's.
    data = matfact.load_dataset("book-crossing", kind="explicit", data_home=data_dir)
    train, test = matfact.train_test_split(data, strategy="random", random_state=0)
    nmf = NMF(alpha_W=0.3, random_state=0, max_iter=60).fit(train, progress=False)
    baseline = matfact.Baseline().fit(train, progress=False)
    assert matfact.evaluate(nmf, test)["rmse"] < matfact.evaluate(baseline, test)["rmse"]


def test_seeds_beyond_32_bits_are_accepted():
    # Found by tests/hardening: the legacy RandomState takes 32-bit seeds only.
    from tests.models.contract import planted_interactions

    data = planted_interactions("explicit")
    a = NMF(random_state=2**40, max_iter=2, tol=0).fit(data, progress=False)
    b = NMF(random_state=2**40, max_iter=2, tol=0).fit(data, progress=False)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
