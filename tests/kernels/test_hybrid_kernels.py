"""The hybrid kernels against slow, loop-for-loop references of the documented updates.

Each reference re-implements the module docstring of :mod:`matfact._kernels.hybrid`
in plain Python with float64 arithmetic (the kernels run in float32), including the
splitmix64 draws of the ranking losses, so both visit the same negatives; the parameters
then agree to ~1e-4 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from matfact._kernels.hybrid import bpr_epoch, compose, squared_epoch, warp_epoch
from tests.kernels.test_bpr_kernels import splitmix64

RTOL, ATOL = 2e-4, 1e-5


def _features(rng, n_rows, n_cols, density=0.3, identity=True):
    dense = (rng.random((n_rows, n_cols)) < density) * rng.uniform(0.2, 1.0, (n_rows, n_cols))
    if identity:
        dense = np.hstack([np.eye(n_rows), dense])
    return sp.csr_matrix(dense.astype(np.float32))


def _problem(seed, n_users=7, n_items=9, k=3, nnz=30):
    rng = np.random.default_rng(seed)
    X = _features(rng, n_users, 4)
    Y = _features(rng, n_items, 5)
    pairs = rng.choice(n_users * n_items, nnz, replace=False)
    users, items = (pairs // n_items).astype(np.int32), (pairs % n_items).astype(np.int32)
    params = [rng.normal(0, 0.3, (X.shape[1], k)).astype(np.float32),
              rng.normal(0, 0.1, X.shape[1]).astype(np.float32),
              rng.normal(0, 0.3, (Y.shape[1], k)).astype(np.float32),
              rng.normal(0, 0.1, Y.shape[1]).astype(np.float32)]
    accs = [np.ones_like(p) for p in params]
    return rng, X, Y, users, items, params, accs


def _csr(m):
    return m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32)


def _kernel_params(params, accs):
    return (params[0], accs[0], params[1], accs[1], params[2], accs[2], params[3], accs[3])


# ---------------------------------------------------------------------- reference
def _rep(M, row, emb, bias):
    start, end = M.indptr[row], M.indptr[row + 1]
    cols, vals = M.indices[start:end], M.data[start:end].astype(np.float64)
    return vals @ emb[cols].astype(np.float64), float(vals @ bias[cols].astype(np.float64))


def _step(M, row, emb, acc, bias, bias_acc, grad, grad_bias, lr, reg, reg_bias):
    for p in range(M.indptr[row], M.indptr[row + 1]):
        f, x = M.indices[p], float(M.data[p])
        g = x * grad_bias + reg_bias * bias[f]
        bias_acc[f] += g * g
        bias[f] -= lr * g / math.sqrt(bias_acc[f])
        g = x * grad + reg * emb[f]
        acc[f] += g * g
        emb[f] -= lr * g / np.sqrt(acc[f])


def squared_reference(order, users, items, values, weights, X, Y, P, A, mean, lr, reg, reg_b):
    E, e, F, c = P
    GE, Ge, GF, Gc = A
    sse = 0.0
    for s in order:
        u, i = users[s], items[s]
        w = 1.0 if len(weights) == 0 else float(weights[s])
        p, bu = _rep(X, u, E, e)
        q, bi = _rep(Y, i, F, c)
        err = values[s] - (mean + bu + bi + p @ q)
        sse += w * err * err
        d = -w * err
        _step(X, u, E, GE, e, Ge, d * q, d, lr, reg, reg_b)
        _step(Y, i, F, GF, c, Gc, d * p, d, lr, reg, reg_b)
    return sse


def ranking_reference(kind, order, users, items, seen, X, Y, P, A, lr, reg, reg_b, seed,
                      tries, drawn):
    """BPR or WARP epoch as documented; ``drawn`` collects (s, j or -1)."""
    E, e, F, c = P
    GE, Ge, GF, Gc = A
    n_items = Y.shape[0]
    state, loss, count = seed, 0.0, 0
    for s in order:
        u, i = users[s], items[s]
        p, _ = _rep(X, u, E, e)
        qi, bi = _rep(Y, i, F, c)
        chosen = -1
        if kind == "bpr":
            for _ in range(tries):
                state, draw = splitmix64(state)
                if draw % n_items not in seen[u]:
                    chosen = draw % n_items
                    break
            if chosen < 0:
                drawn.append((s, -1))
                continue
            qj, bj = _rep(Y, chosen, F, c)
            x = bi - bj + p @ (qi - qj)
            count += x > 0
            loss += math.log1p(math.exp(-x))
            d = -1.0 / (1.0 + math.exp(x))
            grads = (d * (qi - qj), 0.0, d * p, d, -d * p, -d)
        else:
            s_i = bi + p @ qi
            for n in range(1, tries + 1):
                state, draw = splitmix64(state)
                j = draw % n_items
                if j in seen[u]:
                    continue
                qj, bj = _rep(Y, j, F, c)
                s_j = bj + p @ qj
                if s_j > s_i - 1.0:
                    chosen = j
                    weight = min(math.log(max(math.floor((n_items - 1) / n), 1.0)), 10.0)
                    loss += weight * (1.0 - s_i + s_j)
                    count += 1
                    d = weight
                    grads = (d * (qj - qi), 0.0, -d * p, -d, d * p, d)
                    break
            if chosen < 0:
                drawn.append((s, -1))
                continue
        drawn.append((s, chosen))
        _step(X, u, E, GE, e, Ge, grads[0], grads[1], lr, reg, reg_b)
        _step(Y, i, F, GF, c, Gc, grads[2], grads[3], lr, reg, reg_b)
        _step(Y, chosen, F, GF, c, Gc, grads[4], grads[5], lr, reg, reg_b)
    return loss, count


def _as64(arrays):
    return [a.astype(np.float64) for a in arrays]


def _assert_close(kernel, reference):
    for got, want in zip(kernel, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_squared_epoch_equals_reference(seed, weighted):
    rng, X, Y, users, items, params, accs = _problem(seed)
    values = rng.integers(1, 6, len(users)).astype(np.float32)
    weights = (rng.uniform(0.5, 2.0, len(users)).astype(np.float32) if weighted
               else np.zeros(0, np.float32))
    order = rng.permutation(len(users)).astype(np.int64)
    P, A = _as64(params), _as64(accs)
    want = squared_reference(order, users, items, values, weights, X, Y, P, A, 3.2, 0.05,
                             0.01, 0.02)
    got = squared_epoch(order, users, items, values, weights, *_csr(X), *_csr(Y),
                        *_kernel_params(params, accs), 3.2, 0.05, 0.01, 0.02)
    assert got == pytest.approx(want, rel=1e-4)
    _assert_close(params + accs, P + A)


@pytest.mark.parametrize("kind,kernel", [("bpr", bpr_epoch), ("warp", warp_epoch)])
@pytest.mark.parametrize("seed", [0, 3])
def test_ranking_epochs_equal_reference(kind, kernel, seed):
    rng, X, Y, users, items, params, accs = _problem(seed, nnz=25)
    order = rng.permutation(len(users)).astype(np.int64)
    seen_m = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(X.shape[0], Y.shape[0]))
    seen_m.sort_indices()
    seen = [set(seen_m.indices[seen_m.indptr[u]:seen_m.indptr[u + 1]].tolist())
            for u in range(X.shape[0])]
    P, A = _as64(params), _as64(accs)
    drawn: list = []
    want_loss, want_count = ranking_reference(kind, order, users, items, seen, X, Y, P, A,
                                              0.1, 0.01, 0.02, 12345, 10, drawn)
    loss, count, total = kernel(order, users, items, np.zeros(0, np.float32),
                                seen_m.indptr.astype(np.int64), seen_m.indices.astype(np.int64),
                                *_csr(X), *_csr(Y), *_kernel_params(params, accs), 0.1, 0.01,
                                0.02, np.uint64(12345), 10)
    assert sum(j >= 0 for _, j in drawn) > len(users) // 2, "the test must exercise updates"
    assert count == want_count
    assert loss == pytest.approx(want_loss, rel=1e-4)
    _assert_close(params + accs, P + A)
    if kind == "warp":
        assert total == len(users)


def test_user_bias_untouched_by_ranking_losses():
    """Pairwise losses do not depend on the user bias: it must stay at its start."""
    _, X, Y, users, items, params, accs = _problem(5)
    params[1][:] = 0.0
    seen_m = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(X.shape[0], Y.shape[0]))
    seen_m.sort_indices()
    for kernel in (bpr_epoch, warp_epoch):
        kernel(np.arange(len(users), dtype=np.int64), users, items, np.zeros(0, np.float32),
               seen_m.indptr.astype(np.int64), seen_m.indices.astype(np.int64), *_csr(X),
               *_csr(Y), *_kernel_params(params, accs), 0.1, 0.0, 0.0, np.uint64(1), 10)
    assert not params[1].any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 15), n_cols=st.integers(1, 8),
       k=st.integers(1, 6), density=st.floats(0.0, 1.0), identity=st.booleans())
def test_compose_is_the_sparse_product(seed, n_rows, n_cols, k, density, identity):
    rng = np.random.default_rng(seed)
    X = _features(rng, n_rows, n_cols, density, identity)
    emb = rng.normal(size=(X.shape[1], k)).astype(np.float32)
    bias = rng.normal(size=X.shape[1]).astype(np.float32)
    out = np.empty((n_rows, k), np.float32)
    out_bias = np.empty(n_rows, np.float32)
    compose(*_csr(X), emb, bias, out, out_bias)
    np.testing.assert_allclose(out, X @ emb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_bias, X @ bias, rtol=1e-5, atol=1e-5)


def test_squared_loss_goes_down_each_epoch():
    rng, X, Y, users, items, params, accs = _problem(4, nnz=50)
    values = (3 + np.sign(rng.normal(size=len(users)))).astype(np.float32)
    losses = [squared_epoch(rng.permutation(len(users)).astype(np.int64), users, items, values,
                            np.zeros(0, np.float32), *_csr(X), *_csr(Y),
                            *_kernel_params(params, accs), 3.0, 0.1, 0.0, 0.0)
              for _ in range(15)]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
