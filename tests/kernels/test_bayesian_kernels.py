"""Kernels of BayesianMF's side-information sampler against closed forms and NumPy references.

Each Gibbs conditional is checked against the Gaussian posterior of a Bayesian
linear regression written out densely (prior N(μ, λ⁻¹) or N(μ₀, Λ⁻¹), likelihood
precision α w per rating), and the cached residuals against a recomputation.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from matfact._kernels.bayesian import (
    residuals,
    sample_columns,
    sample_id_rows,
    sweep_columns,
)


def problem(seed: int, n_users: int = 7, n_items: int = 5, k: int = 3, density: float = 0.6,
            n_columns: int = 4, weighted: bool = False):
    """A tiny random state of the sampler: ratings (user-major), effective vectors, a design."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[0, :] = True  # a busy user, so no problem is empty
    users, items = np.nonzero(mask)  # user-major, items ascending: the canonical order
    nnz = len(users)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])
    ratings = rng.uniform(1, 5, nnz)
    design = sp.random(n_users, n_columns, density=0.5, random_state=seed, format="csr")
    design.data = rng.uniform(0.2, 1.5, design.nnz)
    params = rng.normal(size=(n_columns, k + 1))
    own_id = rng.normal(size=(n_users, k + 1))
    return {
        "users": users.astype(np.int32), "items": items.astype(np.int32),
        "indptr": indptr.astype(np.int64), "pos": np.arange(nnz, dtype=np.int64),
        "ratings": ratings, "mean": 3.0, "k": k,
        "weights": rng.uniform(0.5, 2.0, nnz) if weighted else np.zeros(0),
        "design": design, "params": params, "own_id": own_id,
        "own_eff": own_id + design @ params,
        "other_eff": rng.normal(size=(n_items, k + 1)),
        "groups": rng.integers(0, 2, n_columns).astype(np.int64),
    }


def predictions(pb):
    own, other = pb["own_eff"], pb["other_eff"]
    k = pb["k"]
    u, i = pb["users"], pb["items"]
    return pb["mean"] + own[u, k] + other[i, k] + np.einsum("nf,nf->n", own[u, :k],
                                                            other[i, :k])


def csc(design):
    m = design.tocsc()
    m.sort_indices()
    return m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float64)


def test_residuals_match_numpy():
    pb = problem(0)
    out = np.empty(len(pb["ratings"]))
    sse = residuals(pb["indptr"], pb["items"], pb["ratings"], pb["mean"], pb["own_eff"],
                    pb["other_eff"], out)
    want = pb["ratings"] - predictions(pb)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    assert sse == pytest.approx(float(np.sum(want ** 2)), rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("f", [0, 2, 3])  # factors 0 and 2, and the bias (f == k)
def test_one_column_draw_is_the_closed_form_gaussian_posterior(weighted, f):
    """θ = params[c, f] enters r̂_ui through z_uc h_i (h_i = Q_if, or 1 for the bias).

    With everything else fixed, the posterior of θ under N(μ_g, λ_g⁻¹) and the
    likelihood ∏ N(r | r̂, (α w)⁻¹) is Gaussian with
    prec = λ + α Σ w x², mean = (λμ + α Σ w x t) / prec, x = z_u h_i, t = r − r̂_{−θ}.
    """
    pb = problem(1, weighted=weighted)
    k, c = pb["k"], 2
    alpha, lam, mu = 1.7, 2.5, 0.3
    z = pb["design"][:, c].toarray().ravel()
    u, i = pb["users"], pb["items"]
    h = pb["other_eff"][i, f] if f < k else np.ones(len(u))
    x = z[u] * h
    theta = pb["params"][c, f]
    target = pb["ratings"] - (predictions(pb) - theta * x)  # residual without θ's term
    w = pb["weights"] if weighted else np.ones(len(u))
    prec = lam + alpha * np.sum(w * x * x)
    mean = (lam * mu + alpha * np.sum(w * x * target)) / prec

    resid = pb["ratings"] - predictions(pb)
    a_rows = np.array([np.sum((w * h * h)[u == r]) for r in range(len(z))])
    b_rows = np.array([np.sum((w * h * resid)[u == r]) for r in range(len(z))])
    col_ptr, col_rows, col_vals = csc(pb["design"][:, [c]])
    hyper_mean = np.full((1, k + 1), mu)
    hyper_precision = np.full((1, k + 1), lam)
    for eps in (0.0, 1.3):
        params = pb["params"][[c]].copy()
        noise = np.full((1, k + 1), eps)
        delta_rows = np.zeros(len(z))
        b_copy = b_rows.copy()
        sample_columns(col_ptr, col_rows, col_vals, np.zeros(1, np.int64), f, hyper_mean,
                       hyper_precision, alpha, noise, params, a_rows, b_copy, delta_rows)
        assert params[0, f] == pytest.approx(mean + eps / np.sqrt(prec), rel=1e-10, abs=1e-12)
        # B_u follows the new residuals exactly; δ_u is the change of each row's P_uf.
        delta = params[0, f] - theta
        new_resid = resid - delta * x
        np.testing.assert_allclose(b_copy, [np.sum((w * h * new_resid)[u == r])
                                            for r in range(len(z))], atol=1e-10)
        np.testing.assert_allclose(delta_rows, delta * z, atol=1e-12)


def test_column_draws_follow_the_posterior_over_many_draws():
    """The empirical mean and variance of independent draws match the closed form."""
    pb = problem(2)
    k, f = pb["k"], 1
    col_ptr, col_rows, col_vals = csc(pb["design"][:, [0]])
    z = pb["design"][:, 0].toarray().ravel()
    u, i = pb["users"], pb["items"]
    h = pb["other_eff"][i, f]
    resid = pb["ratings"] - predictions(pb)
    a_rows = np.bincount(u, h * h, minlength=len(z))
    b_rows = np.bincount(u, h * resid, minlength=len(z))
    x = z[u] * h
    prec = 1.0 + 2.0 * np.sum(x * x)
    mean = (1.0 * 0.5 + 2.0 * np.sum(x * (resid + pb["params"][0, f] * x))) / prec
    rng = np.random.default_rng(3)
    draws = []
    for _ in range(4000):
        params = pb["params"][[0]].copy()
        sample_columns(col_ptr, col_rows, col_vals, np.zeros(1, np.int64), f,
                       np.full((1, k + 1), 0.5), np.ones((1, k + 1)), 2.0,
                       rng.standard_normal((1, k + 1)), params, a_rows, b_rows.copy(),
                       np.zeros(len(z)))
        draws.append(params[0, f])
    draws = np.array(draws)
    sd = 1.0 / np.sqrt(prec)
    assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(len(draws))
    assert abs(draws.std() / sd - 1.0) < 0.06


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), weighted=st.booleans(), biased=st.booleans())
def test_sweep_keeps_the_cached_state_exact(seed, weighted, biased):
    """After a sweep, own_eff = own_id + Z θ and the residuals are r − r̂, recomputed."""
    pb = problem(seed, weighted=weighted)
    k = pb["k"]
    resid = pb["ratings"] - predictions(pb)
    col_ptr, col_rows, col_vals = csc(pb["design"])
    rng = np.random.default_rng(seed)
    params = pb["params"].copy()
    own_eff = pb["own_eff"].copy()
    before = params.copy()
    sweep_columns(pb["indptr"], pb["items"], pb["pos"], pb["weights"], pb["other_eff"],
                  k + 1 if biased else k, col_ptr, col_rows, col_vals, pb["groups"],
                  rng.normal(size=(2, k + 1)), rng.uniform(0.5, 2, (2, k + 1)), 1.3,
                  rng.standard_normal((len(params), k + 1)), params, own_eff, resid)
    np.testing.assert_allclose(own_eff, pb["own_id"] + pb["design"] @ params, atol=1e-10)
    pb["own_eff"] = own_eff
    np.testing.assert_allclose(resid, pb["ratings"] - predictions(pb), atol=1e-9)
    if not biased:  # the bias coefficients are left alone
        np.testing.assert_array_equal(params[:, k], before[:, k])
    assert not np.array_equal(params[:, :k], before[:, :k])


@pytest.mark.parametrize("biased", [True, False])
def test_id_rows_draw_the_block_gaussian_posterior(biased):
    """[p_u, b_u] ~ N(A⁻¹ b, A⁻¹), A = Λ + α Σ w x xᵀ, b = Λμ₀ + α Σ w t x; draw m + L⁻ᵀ ε."""
    pb = problem(4, weighted=True)
    k = pb["k"]
    d = k + 1 if biased else k
    if not biased:
        pb["own_id"][:, k] = 0.0
        pb["own_eff"] = pb["own_id"] + pb["design"] @ pb["params"]
    rng = np.random.default_rng(5)
    a0 = rng.normal(size=(d, d))
    precision = a0 @ a0.T + d * np.eye(d)
    mu0 = rng.normal(size=d)
    alpha = 1.4
    noise = rng.standard_normal((len(pb["own_id"]), d))
    resid = pb["ratings"] - predictions(pb)
    own_id, own_eff = pb["own_id"].copy(), pb["own_eff"].copy()
    failed = sample_id_rows(pb["indptr"], pb["items"], pb["pos"], pb["weights"],
                            pb["other_eff"], d, alpha, precision, precision @ mu0, noise,
                            own_id, own_eff, resid)
    assert failed == 0
    u, i, w = pb["users"], pb["items"], pb["weights"]
    for row in range(len(own_id)):
        sel = u == row
        x = pb["other_eff"][i[sel], :d].copy()
        if biased:
            x[:, k] = 1.0
        t = (pb["ratings"] - predictions(pb))[sel] + x @ pb["own_id"][row, :d]
        a = precision + alpha * (x * w[sel, None]).T @ x
        b = precision @ mu0 + alpha * x.T @ (w[sel] * t)
        chol = np.linalg.cholesky(a)
        want = np.linalg.solve(a, b) + np.linalg.solve(chol.T, noise[row])
        np.testing.assert_allclose(own_id[row, :d], want, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(own_eff - own_id, pb["own_eff"] - pb["own_id"], atol=1e-12)
    pb["own_eff"] = own_eff
    np.testing.assert_allclose(resid, pb["ratings"] - predictions(pb), atol=1e-9)
