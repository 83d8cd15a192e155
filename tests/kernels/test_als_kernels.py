"""The ALS kernels against dense float64 NumPy solves of the documented normal equations.

``solve_rows`` (explicit ALS and the Gibbs sampler), ``implicit_cholesky``,
``implicit_cg`` and ``implicit_loss`` are called directly with the dtypes the models
pass (so numba's on-disk cache is reused). Every reference builds each row's system
densely from the module docstring's formulas and solves it with ``np.linalg``; the
kernels accumulate in float64 (CG in float32) and store float32, so agreement is to
~1e-5 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from matfact._kernels.als import (
    _woodbury_row,
    implicit_cg,
    implicit_cholesky,
    implicit_loss,
    solve_rows,
)

F32 = np.float32
EMPTY = np.zeros(0, dtype=F32)


def exact_solve(indptr, indices, confidence, other, gram, row_reg, factors, n_parts=1,
                short_max=0):
    """``implicit_cholesky`` with the eigenbasis ``ImplicitALS._exact`` passes it.

    ``short_max=0`` factors every row; larger solves rows up to that length by Woodbury.
    """
    eigvals, eigvecs = np.linalg.eigh(gram.astype(np.float64))
    rotated = other @ eigvecs.astype(F32)
    implicit_cholesky(indptr, indices, confidence, other, gram, row_reg, factors, rotated,
                      eigvals, np.ascontiguousarray(eigvecs), short_max, n_parts)


# ---------------------------------------------------------------------- problems
def csr_problem(seed: int = 0, n_rows: int = 300, n_other: int = 40, k: int = 5,
                density: float = 0.15, empty_rows: tuple[int, ...] = (3, 150, 299)) -> dict:
    """Random CSR rows (some empty) against random ``other`` factors, as the models pass them.

    300 rows is more than the kernel's 256 chunks, so chunks of several rows are exercised.
    """
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_other)) < density
    mask[np.arange(n_rows), rng.integers(0, n_other, n_rows)] = True
    mask[list(empty_rows)] = False
    dense = np.where(mask, rng.uniform(1, 5, (n_rows, n_other)), 0.0)
    matrix = sp.csr_matrix(dense)
    matrix.sort_indices()
    return {
        "indptr": matrix.indptr.astype(np.int64),
        "indices": matrix.indices.astype(np.int32),
        "values": matrix.data.astype(F32),
        "weights": rng.uniform(0.2, 2.0, matrix.nnz).astype(F32),
        "other": (rng.standard_normal((n_other, k)) * 0.7).astype(F32),
        "other_bias": (rng.standard_normal(n_other) * 0.3).astype(F32),
        "mask": mask,
        "n_rows": n_rows,
        "k": k,
        "rng": rng,
    }


def random_spd(rng: np.random.Generator, d: int, scale: float = 1.0) -> np.ndarray:
    m = rng.standard_normal((d, d))
    return scale * (m @ m.T / d + 0.5 * np.eye(d))


def row_system(problem: dict, u: int, *, use_bias: bool, weighted: bool, mean: float,
               alpha: float, precision: np.ndarray, term: np.ndarray,
               scale_by_weight: bool) -> tuple[np.ndarray, np.ndarray]:
    """The docstring's NumPy reference: A and b of row ``u``, in float64."""
    lo, hi = problem["indptr"][u], problem["indptr"][u + 1]
    idx = problem["indices"][lo:hi]
    y = problem["other"][idx].astype(np.float64)
    t = problem["values"][lo:hi].astype(np.float64) - mean
    w = problem["weights"][lo:hi].astype(np.float64) if weighted else np.ones(hi - lo)
    if use_bias:
        y = np.c_[y, np.ones(hi - lo)]
        t = t - problem["other_bias"][idx]
    s = w.sum() if scale_by_weight else 1.0
    a = alpha * (y.T * w) @ y + s * precision
    b = alpha * y.T @ (w * t) + s * term
    return a, b


def run_solve_rows(problem: dict, *, use_bias: bool, weighted: bool, mean: float, alpha: float,
                   precision: np.ndarray, term: np.ndarray, scale_by_weight: bool,
                   noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    n, k = problem["n_rows"], problem["k"]
    d = k + 1 if use_bias else k
    out = np.full((n, k), 7.0, dtype=F32)  # garbage: every row must be written
    out_bias = np.full(n if use_bias else 0, 7.0, dtype=F32)
    failed = solve_rows(problem["indptr"], problem["indices"], problem["values"],
                        problem["weights"] if weighted else EMPTY, problem["other"],
                        problem["other_bias"] if use_bias else EMPTY, use_bias, mean, alpha,
                        precision, term, scale_by_weight,
                        np.zeros((0, d)) if noise is None else noise, out, out_bias)
    return out, out_bias, int(failed)


# ---------------------------------------------------------------------- solve_rows
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("weighted", [True, False], ids=["weighted", "unweighted"])
@pytest.mark.parametrize("scale_by_weight", [True, False], ids=["ALS-WR", "plain-reg"])
def test_solve_rows_equals_dense_solve(use_bias, weighted, scale_by_weight):
    problem = csr_problem(seed=1)
    rng = problem["rng"]
    d = problem["k"] + (1 if use_bias else 0)
    precision = random_spd(rng, d, 0.3)  # a full (non-diagonal) prior precision
    term = rng.standard_normal(d)
    settings = {"use_bias": use_bias, "weighted": weighted, "mean": 3.2, "alpha": 1.7,
                "precision": precision, "term": term, "scale_by_weight": scale_by_weight}
    out, out_bias, failed = run_solve_rows(problem, **settings)
    empty = np.diff(problem["indptr"]) == 0
    # Empty rows with ALS-WR have s = 0, so A = 0: not positive definite, left at zero.
    assert failed == (int(empty.sum()) if scale_by_weight else 0)
    for u in range(problem["n_rows"]):
        got = np.r_[out[u], out_bias[u]] if use_bias else out[u]
        if scale_by_weight and empty[u]:
            np.testing.assert_array_equal(got, 0.0)
            continue
        a, b = row_system(problem, u, **settings)
        want = np.linalg.solve(a, b)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * np.abs(want).max(),
                                   err_msg=f"row {u}")
    if not scale_by_weight:  # an empty row is the prior mean Λ₀⁻¹ (Λ₀ m₀)
        u = int(np.flatnonzero(empty)[0])
        got = np.r_[out[u], out_bias[u]] if use_bias else out[u]
        np.testing.assert_allclose(got, np.linalg.solve(precision, term), rtol=1e-5)


def test_solve_rows_ridge_is_the_als_half_step():
    """ALS's prior (λ on the factors and bias, zero mean) gives the weighted ridge solution."""
    problem = csr_problem(seed=2, n_rows=40, empty_rows=())
    k, lam = problem["k"], 0.3
    precision = lam * np.eye(k + 1)
    out, out_bias, failed = run_solve_rows(problem, use_bias=True, weighted=False, mean=3.0,
                                           alpha=1.0, precision=precision,
                                           term=np.zeros(k + 1), scale_by_weight=True)
    assert failed == 0
    for u in range(problem["n_rows"]):
        lo, hi = problem["indptr"][u], problem["indptr"][u + 1]
        idx = problem["indices"][lo:hi]
        x = np.c_[problem["other"][idx].astype(float), np.ones(hi - lo)]
        t = problem["values"][lo:hi] - 3.0 - problem["other_bias"][idx]
        # Independently of the docstring: the gradient of the ALS-WR objective vanishes.
        sol = np.r_[out[u], out_bias[u]].astype(np.float64)
        gradient = -x.T @ (t - x @ sol) + (hi - lo) * lam * sol
        assert np.abs(gradient).max() < 1e-4 * max(1.0, np.abs(x.T @ t).max()), u


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
def test_solve_rows_sampling_adds_cholesky_transformed_noise(use_bias):
    problem = csr_problem(seed=3, empty_rows=(0, 299))
    rng = problem["rng"]
    d = problem["k"] + (1 if use_bias else 0)
    precision = random_spd(rng, d, 2.0)
    term = rng.standard_normal(d)
    noise = rng.standard_normal((problem["n_rows"], d))
    settings = {"use_bias": use_bias, "weighted": False, "mean": 0.5, "alpha": 2.5,
                "precision": precision, "term": term, "scale_by_weight": False}
    out, out_bias, failed = run_solve_rows(problem, **settings, noise=noise)
    assert failed == 0
    for u in range(problem["n_rows"]):
        a, b = row_system(problem, u, **settings)
        low = np.linalg.cholesky(a)
        want = np.linalg.solve(a, b) + np.linalg.solve(low.T, noise[u])
        got = np.r_[out[u], out_bias[u]] if use_bias else out[u]
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * np.abs(want).max(),
                                   err_msg=f"row {u}")


def test_solve_rows_sample_covariance_is_the_inverse_precision():
    """Many noisy draws of one row: mean A⁻¹b, covariance A⁻¹ (L⁻ᵀz has cov (LLᵀ)⁻¹)."""
    problem = csr_problem(seed=4, n_rows=1, empty_rows=())
    n_draws = 20_000
    reps = {key: problem[key] for key in ("values", "weights", "other", "other_bias")}
    nnz = len(problem["indices"])
    indptr = np.arange(n_draws + 1, dtype=np.int64) * nnz
    indices = np.tile(problem["indices"], n_draws)
    k = problem["k"]
    precision, term = np.eye(k) * 0.5, np.full(k, 0.1)
    noise = np.random.default_rng(0).standard_normal((n_draws, k))
    out = np.zeros((n_draws, k), F32)
    solve_rows(indptr, indices, np.tile(reps["values"], n_draws), EMPTY, reps["other"], EMPTY,
               False, 0.0, 1.0, precision, term, False, noise, out, EMPTY)
    a, b = row_system(problem, 0, use_bias=False, weighted=False, mean=0.0, alpha=1.0,
                      precision=precision, term=term, scale_by_weight=False)
    cov = np.linalg.inv(a)
    np.testing.assert_allclose(out.mean(axis=0), np.linalg.solve(a, b),
                               atol=4 * np.sqrt(cov.diagonal().max() / n_draws))
    np.testing.assert_allclose(np.cov(out.T.astype(np.float64)), cov,
                               atol=0.05 * cov.diagonal().max())


def test_solve_rows_reports_rows_that_are_not_positive_definite():
    """Without a prior an empty row has A = 0: counted as failed and left at zero, while
    rows with enough ratings are solved as usual."""
    empty = (0, 7, 19)
    problem = csr_problem(seed=5, n_rows=20, n_other=30, k=4, density=0.6, empty_rows=empty)
    settings = {"use_bias": True, "weighted": False, "mean": 0.0, "alpha": 1.0,
                "precision": np.zeros((5, 5)), "term": np.zeros(5), "scale_by_weight": False}
    out, out_bias, failed = run_solve_rows(problem, **settings)
    assert failed == len(empty)
    np.testing.assert_array_equal(out[list(empty)], 0.0)
    np.testing.assert_array_equal(out_bias[list(empty)], 0.0)
    a, b = row_system(problem, 1, **settings)
    np.testing.assert_allclose(np.r_[out[1], out_bias[1]], np.linalg.solve(a, b), rtol=1e-4)


# ---------------------------------------------------------------------- implicit
def implicit_problem(seed: int = 0, n_rows: int = 30, n_other: int = 25, k: int = 6,
                     density: float = 0.2, reg: float = 0.8) -> dict:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_other)) < density
    mask[5] = False  # an empty row
    confidence = np.where(mask, 1.0 + rng.uniform(0.0, 8.0, (n_rows, n_other)), 0.0)
    matrix = sp.csr_matrix(confidence)
    matrix.sort_indices()
    other = (rng.standard_normal((n_other, k)) * 0.4).astype(F32)
    gram = other.T.astype(np.float64) @ other.astype(np.float64) + reg * np.eye(k)
    return {
        "indptr": matrix.indptr.astype(np.int64),
        "indices": matrix.indices.astype(np.int32),
        "confidence": matrix.data.astype(F32),
        "other": other,
        "gram": gram.astype(F32),
        "row_reg": rng.uniform(0.0, 2.0, n_rows).astype(F32),
        "factors": (rng.standard_normal((n_rows, k)) * 0.1).astype(F32),
        "mask": mask,
        "reg": reg,
        "rng": rng,
    }


def implicit_dense_solution(problem: dict, extra_reg: np.ndarray | None) -> np.ndarray:
    """(YᵀY + λI + r_u I + Σ(c−1) y yᵀ) x = Σ c y for every row, densely in float64."""
    y = problem["other"].astype(np.float64)
    k = y.shape[1]
    out = np.empty((len(problem["indptr"]) - 1, k))
    for u in range(len(out)):
        lo, hi = problem["indptr"][u], problem["indptr"][u + 1]
        yu = y[problem["indices"][lo:hi]]
        c = problem["confidence"][lo:hi].astype(np.float64)
        a = y.T @ y + problem["reg"] * np.eye(k) + (yu.T * (c - 1.0)) @ yu
        if extra_reg is not None:
            a += extra_reg[u] * np.eye(k)
        out[u] = np.linalg.solve(a, yu.T @ c)
    return out


@pytest.mark.parametrize("short_max", [0, 4, 10_000], ids=["cholesky", "mixed", "woodbury"])
@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "row_reg"])
def test_implicit_cholesky_equals_dense_solve(scaled, short_max):
    problem = implicit_problem(seed=1)
    row_reg = problem["row_reg"] if scaled else EMPTY
    factors = problem["factors"].copy()
    exact_solve(problem["indptr"], problem["indices"], problem["confidence"],
                problem["other"], problem["gram"], row_reg, factors, short_max=short_max)
    want = implicit_dense_solution(problem, problem["row_reg"] if scaled else None)
    np.testing.assert_allclose(factors, want, rtol=1e-5, atol=1e-6)
    # The empty row solves (YᵀY + λI) x = 0.
    np.testing.assert_array_equal(factors[5], 0.0)


def test_woodbury_row_solves_the_row_or_refuses():
    """The Woodbury branch itself: the row's exact solution, and False where c − 1 = 0."""
    rng = np.random.default_rng(9)
    n, k, n_other = 5, 12, 9
    g = random_spd(rng, k)
    r = 0.7
    eigvals, eigvecs = np.linalg.eigh(g)
    rotated = rng.standard_normal((n_other, k)).astype(F32)
    indices = np.array([7, 0, 3, 8, 2], dtype=np.int32)
    indptr = np.array([0, n], dtype=np.int64)
    confidence = rng.uniform(1.5, 5.0, n).astype(F32)
    y = rotated[indices].astype(np.float64) @ eigvecs.T  # the vectors the rotated rows stand for
    c = confidence.astype(np.float64)
    want = np.linalg.solve(g + r * np.eye(k) + (y.T * (c - 1)) @ y, y.T @ c)
    scratch = (np.empty((n, k)), np.empty((n, n)), np.empty(n), np.empty(k), np.empty(k))
    root_inv = 1.0 / np.sqrt(eigvals + r)
    args = (indptr, indices, confidence, rotated, 0, root_inv, np.ascontiguousarray(eigvecs))
    assert _woodbury_row(*args, *scratch)
    np.testing.assert_allclose(scratch[4], want, rtol=1e-6, atol=1e-8)
    confidence[2] = 1.0
    assert not _woodbury_row(*args, *scratch)


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "row_reg"])
def test_woodbury_rows_equal_dense_solve_at_a_small_ridge(scaled):
    """Short rows against k = 32, large factors and λ = 0.05 (an ill-conditioned G), and rows
    with a confidence of exactly 1 (c − 1 = 0, where Woodbury cannot divide: factored)."""
    problem = implicit_problem(seed=8, n_rows=60, n_other=80, k=32, density=0.08, reg=0.05)
    problem["other"] = (problem["other"] * 8).astype(F32)
    y = problem["other"].astype(np.float64)
    problem["gram"] = (y.T @ y + 0.05 * np.eye(32)).astype(F32)
    problem["confidence"][::7] = 1.0
    row_reg = problem["row_reg"] if scaled else EMPTY
    want = implicit_dense_solution(problem, problem["row_reg"] if scaled else None)
    for short_max in (0, 32):
        factors = problem["factors"].copy()
        exact_solve(problem["indptr"], problem["indices"], problem["confidence"],
                    problem["other"], problem["gram"], row_reg, factors, short_max=short_max)
        scale = np.abs(want).max(axis=1, keepdims=True) + 1e-12
        assert (np.abs(factors - want) / scale).max() < 1e-4, short_max


@pytest.mark.parametrize("scaled", [False, True], ids=["plain", "row_reg"])
def test_implicit_cg_with_many_steps_equals_cholesky(scaled):
    problem = implicit_problem(seed=2)
    row_reg = problem["row_reg"] if scaled else EMPTY
    args = (problem["indptr"], problem["indices"], problem["confidence"], problem["other"],
            problem["gram"], row_reg)
    exact = problem["factors"].copy()
    exact_solve(*args, exact)
    cg = problem["factors"].copy()
    implicit_cg(*args, cg, 50)
    np.testing.assert_allclose(cg, exact, rtol=1e-4, atol=1e-5)
    want = implicit_dense_solution(problem, problem["row_reg"] if scaled else None)
    np.testing.assert_allclose(cg, want, rtol=1e-4, atol=1e-5)


def test_row_reg_is_added_to_the_diagonal():
    """A constant row_reg r equals plain λ + r in the gram matrix."""
    problem = implicit_problem(seed=3)
    k = problem["other"].shape[1]
    r = 1.3
    args = (problem["indptr"], problem["indices"], problem["confidence"], problem["other"])
    a = problem["factors"].copy()
    exact_solve(*args, problem["gram"], np.full(len(a), r, F32), a)
    b = problem["factors"].copy()
    exact_solve(*args, (problem["gram"] + r * np.eye(k)).astype(F32), EMPTY, b)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    c = problem["factors"].copy()
    implicit_cg(*args, problem["gram"], np.full(len(c), r, F32), c, 50)
    np.testing.assert_allclose(c, b, rtol=1e-4, atol=1e-5)
    plain = problem["factors"].copy()
    exact_solve(*args, problem["gram"], EMPTY, plain)
    assert np.abs(plain - b).max() > 1e-3, "the extra ridge must change the solution"


def test_implicit_cg_steps_reduce_the_error_monotonically():
    """CG from a warm start: the A-norm error never grows with more steps, and k steps
    (the number of unknowns) reach the exact solution."""
    k = 6
    problem = implicit_problem(seed=4, k=k)
    args = (problem["indptr"], problem["indices"], problem["confidence"], problem["other"],
            problem["gram"], EMPTY)
    exact = implicit_dense_solution(problem, None)
    y = problem["other"].astype(np.float64)
    systems = []
    for u in range(len(exact)):
        lo, hi = problem["indptr"][u], problem["indptr"][u + 1]
        yu = y[problem["indices"][lo:hi]]
        c = problem["confidence"][lo:hi].astype(np.float64)
        systems.append(y.T @ y + problem["reg"] * np.eye(k) + (yu.T * (c - 1.0)) @ yu)
    errors = []
    for steps in range(0, k + 1):
        x = problem["factors"].copy()
        if steps:
            implicit_cg(*args, x, steps)
        e = x.astype(np.float64) - exact
        errors.append([np.sqrt(e[u] @ systems[u] @ e[u]) for u in range(len(e))])
    errors = np.array(errors)
    assert errors[0].min() > 1e-2, "the warm start must be away from the solution"
    assert (np.diff(errors, axis=0) <= 1e-5).all()
    assert (errors[1] < errors[0]).all()
    assert errors[-1].max() < 1e-4


def test_implicit_cg_keeps_an_exact_warm_start():
    problem = implicit_problem(seed=5)
    args = (problem["indptr"], problem["indices"], problem["confidence"], problem["other"],
            problem["gram"], EMPTY)
    x = implicit_dense_solution(problem, None).astype(F32)
    before = x.copy()
    implicit_cg(*args, x, 3)
    np.testing.assert_allclose(x, before, rtol=1e-4, atol=1e-6)


def test_implicit_loss_equals_dense_data_term():
    problem = implicit_problem(seed=6)
    rng = problem["rng"]
    users = (rng.standard_normal((len(problem["indptr"]) - 1, 6)) * 0.5).astype(F32)
    items = problem["other"]
    yty = items.T.astype(np.float64) @ items.astype(np.float64)
    got = implicit_loss(problem["indptr"], problem["indices"], problem["confidence"], users,
                        items, yty)
    dense_c = np.ones(problem["mask"].shape)
    dense_c[problem["mask"]] = sp.csr_matrix(
        (problem["confidence"], problem["indices"], problem["indptr"]),
        shape=problem["mask"].shape).toarray()[problem["mask"]]
    pref = problem["mask"].astype(np.float64)
    scores = users.astype(np.float64) @ items.astype(np.float64).T
    want = float((dense_c * (pref - scores) ** 2).sum())
    assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("solver", ["cg", "cholesky", "woodbury"])
def test_implicit_kernels_give_the_same_rows_for_any_number_of_parts(solver):
    """Rows are cut into one part per thread; the cut must not change a single bit."""
    problem = implicit_problem(seed=7)
    args = (problem["indptr"], problem["indices"], problem["confidence"], problem["other"],
            problem["gram"], problem["row_reg"])
    results = []
    for n_parts in (1, 2, 3, 7, 10_000):
        x = problem["factors"].copy()
        if solver == "cg":
            implicit_cg(*args, x, 3, n_parts)
        else:
            exact_solve(*args, x, n_parts, short_max=4 if solver == "woodbury" else 0)
        results.append(x)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    assert np.abs(results[0] - problem["factors"]).max() > 1e-3, "the rows must be solved"
