"""NMF and sparse-product kernels against NumPy/SciPy/scikit-learn references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition._cdnmf_fast import _update_cdnmf_fast

from matfact._kernels.nmf import cd_rows, kl_ratio_times, masked_cd_rows
from matfact._kernels.sparse import csr_times_dense


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csr_times_dense_equals_scipy(dtype):
    rng = np.random.default_rng(0)
    X = sp.random(50, 40, density=0.2, random_state=0, format="csr", dtype=dtype)
    dense = rng.random((40, 7)).astype(dtype)
    out = np.empty((50, 7), dtype=dtype)
    csr_times_dense(X.indptr.astype(np.int64), X.indices, X.data, dense, out)
    np.testing.assert_allclose(out, X @ dense, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_one_sweep_equals_scikit_learns_update():
    rng = np.random.default_rng(1)
    W = rng.random((30, 5))
    H = rng.random((5, 20))
    X = rng.random((30, 20))
    HHt, XHt = H @ H.T, X @ H.T
    ours, ref = W.copy(), W.copy()
    perm = rng.permutation(5).astype(np.int64)
    violation = cd_rows(ours, HHt, XHt, perm, 1, 0.1)
    ref_violation = _update_cdnmf_fast(ref, HHt, XHt, perm.astype(np.intp))
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert violation == pytest.approx(ref_violation, rel=1e-10)


def test_more_sweeps_solve_the_row_problem():
    # Many sweeps reach the non-negative least-squares solution of each row.
    rng = np.random.default_rng(2)
    H = rng.random((4, 25))
    x = rng.random(25)
    W = np.zeros((1, 4))
    cd_rows(W, H @ H.T, (x @ H.T)[None, :], np.arange(4, dtype=np.int64), 2000, 0.0)
    from scipy.optimize import nnls

    np.testing.assert_allclose(W[0], nnls(H.T, x)[0], atol=1e-6)


def test_kl_ratio_times_equals_numpy():
    rng = np.random.default_rng(3)
    X = sp.random(20, 15, density=0.3, random_state=3, format="csr")
    W, Ht = rng.random((20, 4)), rng.random((15, 4))
    out = np.empty_like(W)
    kl_ratio_times(X.indptr.astype(np.int64), X.indices, X.data, W, Ht, 1e-7, out)
    dense = X.toarray()
    expected = np.where(dense > 0, dense / (W @ Ht.T), 0.0) @ Ht
    np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_masked_sweep_equals_numpy_coordinate_descent():
    rng = np.random.default_rng(4)
    n_items, k = 12, 3
    items = np.array([1, 4, 5, 9, 11], dtype=np.int32)
    values = rng.uniform(1, 5, len(items)).astype(np.float32)
    other = rng.random((n_items, k)).astype(np.float32)
    other_bias = rng.normal(size=n_items).astype(np.float32)
    factors = rng.random((1, k)).astype(np.float32)
    bias = np.array([0.3], dtype=np.float32)
    mu, l1, l2, reg_bias = 3.0, 0.01, 0.2, 2.0
    # NumPy reference: bias first, then each coordinate, on the row's residuals.
    h = other[items].astype(np.float64)
    w, b = factors[0].astype(np.float64).copy(), float(bias[0])
    s = len(items)
    e = values - mu - other_bias[items] - b - h @ w
    new_b = (e.sum() + s * b) / (s + reg_bias)
    e -= new_b - b
    b = new_b
    for f in range(k):
        num = e @ h[:, f] + w[f] * (h[:, f] @ h[:, f])
        new = max(0.0, (num - s * l1) / (h[:, f] @ h[:, f] + s * l2))
        e -= (new - w[f]) * h[:, f]
        w[f] = new
    sse = masked_cd_rows(np.array([0, len(items)], dtype=np.int64), items, values, other,
                         other_bias, mu, factors, bias, True, l1, l2, reg_bias, True, 1)
    np.testing.assert_allclose(factors[0], w, rtol=1e-5)
    assert bias[0] == pytest.approx(b, rel=1e-5)
    assert sse == pytest.approx(float(e @ e), rel=1e-4)
