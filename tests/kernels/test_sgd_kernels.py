"""The SGD kernels against slow, loop-for-loop float32 references of the documented updates.

``sgd_epoch`` and ``svdpp_epoch`` are called directly, with the dtypes the models pass
(so numba's on-disk cache is reused). The references apply exactly the update rules of
the kernel docstrings, in the same order, with ``np.float32`` arithmetic; the kernels
are compiled with ``fastmath`` (reassociation, FMA contraction), so agreement is to
~1e-4 relative rather than bitwise.
"""

from __future__ import annotations

import numpy as np
import pytest

from matfact._kernels.sgd import sgd_epoch, sgd_time_epoch, svdpp_epoch, svdpp_time_epoch

F32 = np.float32
RTOL, ATOL = 1e-4, 1e-6


# ---------------------------------------------------------------------- problems
def blocked_problem(seed: int = 0, n_users: int = 23, n_items: int = 17, n_blocks: int = 3,
                    density: float = 0.4, k: int = 5, interleave: bool = False) -> dict:
    """A valid block layout: user group u % B, item group i % B, blocks in row-major order.

    Within a block the ratings are sorted by user (random order within a user), as the
    model lays them out; ``interleave=True`` shuffles each block instead, so a user's
    ratings are not consecutive (the kernel must write back and reload its locals).
    """
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    block = (users % n_blocks) * n_blocks + items % n_blocks
    shuffled = rng.permutation(len(users))
    if interleave:
        order = shuffled[np.argsort(block[shuffled], kind="stable")]
    else:
        key = (block * n_users + users)[shuffled]
        order = shuffled[np.argsort(key, kind="stable")]
    users, items, block = users[order], items[order], block[order]
    block_ptr = np.zeros(n_blocks * n_blocks + 1, dtype=np.int64)
    np.cumsum(np.bincount(block, minlength=n_blocks * n_blocks), out=block_ptr[1:])
    return {
        "block_ptr": block_ptr,
        "users": users.astype(np.int32),
        "items": items.astype(np.int32),
        "ratings": rng.uniform(1, 5, len(users)).astype(np.float32),
        "weights": rng.uniform(0.2, 2.0, len(users)).astype(np.float32),
        "user_factors": (rng.standard_normal((n_users, k)) * 0.3).astype(np.float32),
        "item_factors": (rng.standard_normal((n_items, k)) * 0.3).astype(np.float32),
        "user_bias": (rng.standard_normal(n_users) * 0.1).astype(np.float32),
        "item_bias": (rng.standard_normal(n_items) * 0.1).astype(np.float32),
        "n_blocks": n_blocks,
        "rng": rng,
    }


def sgd_reference(block_ptr, users, items, ratings, weights, P, Q, bu, bi, mu, lr, reg,
                  reg_bias, col_perm, use_bias) -> float:
    """One epoch of the documented biased-MF update, rating by rating, updating in place."""
    n_blocks = len(col_perm)
    lr, lam, lam_b, mu = F32(lr), F32(reg), F32(reg_bias), F32(mu)
    sse = 0.0
    for s in range(n_blocks):
        for b in range(n_blocks):
            c = col_perm[(b + s) % n_blocks]
            block = b * n_blocks + c
            for idx in range(block_ptr[block], block_ptr[block + 1]):
                u, i, r = users[idx], items[idx], ratings[idx]
                pred = mu
                if use_bias:
                    pred = pred + bu[u] + bi[i]
                for f in range(P.shape[1]):
                    pred = pred + P[u, f] * Q[i, f]
                err = F32(r - pred)
                w = weights[idx] if len(weights) else F32(1.0)
                sse += float(w * err * err)
                e = F32(w * err)
                if use_bias:
                    bu[u] = bu[u] + lr * (e - lam_b * bu[u])
                    bi[i] = bi[i] + lr * (e - lam_b * bi[i])
                pu, qi = P[u].copy(), Q[i].copy()  # both updates use the old vectors
                P[u] = pu + lr * (e * qi - lam * pu)
                Q[i] = qi + lr * (e * pu - lam * qi)
    return sse


def run_both(problem: dict, *, weighted: bool, use_bias: bool, epochs: int = 2,
             lr: float = 0.05, reg: float = 0.05, reg_bias: float = 0.02, mu: float = 3.0):
    """Run the kernel and the reference side by side for ``epochs`` epochs."""
    weights = problem["weights"] if weighted else np.zeros(0, np.float32)
    kernel = {name: problem[name].copy() for name in
              ("user_factors", "item_factors", "user_bias", "item_bias")}
    if not use_bias:
        kernel["user_bias"] = np.zeros(0, np.float32)
        kernel["item_bias"] = np.zeros(0, np.float32)
    ref = {name: value.copy() for name, value in kernel.items()}
    losses = []
    for _ in range(epochs):
        col_perm = problem["rng"].permutation(problem["n_blocks"]).astype(np.int64)
        args = (problem["block_ptr"], problem["users"], problem["items"], problem["ratings"],
                weights)
        got = sgd_epoch(*args, kernel["user_factors"], kernel["item_factors"],
                        kernel["user_bias"], kernel["item_bias"], mu, lr, reg, reg_bias,
                        col_perm, use_bias, lr)
        want = sgd_reference(*args, ref["user_factors"], ref["item_factors"], ref["user_bias"],
                             ref["item_bias"], mu, lr, reg, reg_bias, col_perm, use_bias)
        losses.append((got, want))
    return kernel, ref, losses


# ---------------------------------------------------------------------- sgd_epoch
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("use_bias", [True, False], ids=["biased", "unbiased"])
@pytest.mark.parametrize("interleave", [False, True], ids=["by-user", "interleaved"])
def test_sgd_epoch_matches_reference(weighted, use_bias, interleave):
    problem = blocked_problem(seed=1, interleave=interleave)
    kernel, ref, losses = run_both(problem, weighted=weighted, use_bias=use_bias)
    for name in ("user_factors", "item_factors", "user_bias", "item_bias"):
        np.testing.assert_allclose(kernel[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)
    for got, want in losses:
        assert got == pytest.approx(want, rel=1e-4)
    # The run must actually have moved the parameters (guards against a vacuous comparison).
    assert not np.allclose(kernel["user_factors"], problem["user_factors"], atol=1e-3)
    if use_bias:
        assert not np.allclose(kernel["item_bias"], problem["item_bias"], atol=1e-3)
    else:
        assert kernel["user_bias"].size == 0


def test_sgd_epoch_loss_is_online_weighted_sse():
    """The returned loss is Σ w·e² with e measured before each update: check the first epoch
    from a state where every prediction is μ (zero factors and biases)."""
    problem = blocked_problem(seed=2)
    n_users, k = problem["user_factors"].shape
    n_items = problem["item_factors"].shape[0]
    zeros = (np.zeros((n_users, k), np.float32), np.zeros((n_items, k), np.float32),
             np.zeros(n_users, np.float32), np.zeros(n_items, np.float32))
    col_perm = np.arange(problem["n_blocks"], dtype=np.int64)
    # lr tiny: every prediction stays ~μ over the epoch.
    sse = sgd_epoch(problem["block_ptr"], problem["users"], problem["items"],
                    problem["ratings"], problem["weights"], *zeros, 3.0, 1e-12, 0.1, 0.1,
                    col_perm, True, 1e-12)
    w, r = problem["weights"].astype(float), problem["ratings"].astype(float)
    assert sse == pytest.approx(float((w * (r - 3.0) ** 2).sum()), rel=1e-5)


def single_rating_problem(weight: float, k: int = 4, seed: int = 3):
    rng = np.random.default_rng(seed)
    return dict(
        block_ptr=np.array([0, 1], dtype=np.int64),
        users=np.array([1], dtype=np.int32), items=np.array([2], dtype=np.int32),
        ratings=np.array([4.5], dtype=np.float32),
        weights=np.array([weight], dtype=np.float32),
        user_factors=rng.standard_normal((3, k)).astype(np.float32),
        item_factors=rng.standard_normal((4, k)).astype(np.float32),
        user_bias=rng.standard_normal(3).astype(np.float32),
        item_bias=rng.standard_normal(4).astype(np.float32),
    )


def call_single(problem, lr, reg, reg_bias):
    state = {name: problem[name].copy() for name in
             ("user_factors", "item_factors", "user_bias", "item_bias")}
    sse = sgd_epoch(problem["block_ptr"], problem["users"], problem["items"], problem["ratings"],
                    problem["weights"], state["user_factors"], state["item_factors"],
                    state["user_bias"], state["item_bias"], 3.0, lr, reg, reg_bias,
                    np.zeros(1, dtype=np.int64), True, lr)
    return state, sse


def test_bias_learning_rate_moves_only_the_biases():
    """The biases step by lr_b, the factors by lr: one rating, checked by hand."""
    problem = single_rating_problem(1.0)
    state = {name: problem[name].copy() for name in
             ("user_factors", "item_factors", "user_bias", "item_bias")}
    lr, lr_b, mu = 0.1, 0.025, 3.0
    u, i = 1, 2
    p, q = problem["user_factors"][u].astype(float), problem["item_factors"][i].astype(float)
    bu, bi = float(problem["user_bias"][u]), float(problem["item_bias"][i])
    err = 4.5 - (mu + bu + bi + p @ q)
    sgd_epoch(problem["block_ptr"], problem["users"], problem["items"], problem["ratings"],
              np.zeros(0, np.float32), state["user_factors"], state["item_factors"],
              state["user_bias"], state["item_bias"], mu, lr, 0.0, 0.0,
              np.zeros(1, dtype=np.int64), True, lr_b)
    assert state["user_bias"][u] == pytest.approx(bu + lr_b * err, rel=1e-5)
    assert state["item_bias"][i] == pytest.approx(bi + lr_b * err, rel=1e-5)
    np.testing.assert_allclose(state["user_factors"][u], p + lr * err * q, rtol=1e-5)


def test_sgd_epoch_zero_weight_rating_has_no_data_influence():
    """Weight 0: no error term. Without regularization nothing moves at all."""
    problem = single_rating_problem(0.0)
    state, sse = call_single(problem, lr=0.1, reg=0.0, reg_bias=0.0)
    assert sse == 0.0
    for name, value in state.items():
        np.testing.assert_array_equal(value, problem[name], err_msg=name)


def test_sgd_epoch_zero_weight_rating_still_applies_the_per_rating_penalty():
    """The penalty is applied once per rating whatever its weight (the objective of
    ``_ridge_fold_in``): a weight-0 rating shrinks its user's and item's parameters by
    (1 - lr·λ) and touches nothing else."""
    problem = single_rating_problem(0.0)
    lr, reg, reg_bias = 0.1, 0.5, 0.25
    state, _ = call_single(problem, lr=lr, reg=reg, reg_bias=reg_bias)
    expected = {name: problem[name].copy() for name in state}
    expected["user_factors"][1] *= F32(1 - lr * reg)
    expected["item_factors"][2] *= F32(1 - lr * reg)
    expected["user_bias"][1] *= F32(1 - lr * reg_bias)
    expected["item_bias"][2] *= F32(1 - lr * reg_bias)
    for name in state:
        np.testing.assert_allclose(state[name], expected[name], rtol=1e-6, err_msg=name)


def test_sgd_epoch_weight_scales_the_error_step():
    """With λ = 0 the step of a weight-w rating is w times the step of weight 1."""
    lr = 1e-3
    one, _ = call_single(single_rating_problem(1.0), lr=lr, reg=0.0, reg_bias=0.0)
    three, _ = call_single(single_rating_problem(3.0), lr=lr, reg=0.0, reg_bias=0.0)
    start = single_rating_problem(1.0)
    for name in one:
        np.testing.assert_allclose(three[name] - start[name], 3 * (one[name] - start[name]),
                                   rtol=1e-3, atol=1e-7, err_msg=name)


def test_sgd_epoch_empty_blocks_and_users_without_ratings():
    """Blocks with no ratings, rows with no ratings: untouched, no crash."""
    problem = blocked_problem(seed=4, n_users=5, n_items=4, n_blocks=4, density=0.3)
    kernel, ref, _ = run_both(problem, weighted=False, use_bias=True, epochs=1)
    rated_users = np.unique(problem["users"])
    untouched = np.setdiff1d(np.arange(5), rated_users)
    np.testing.assert_array_equal(kernel["user_factors"][untouched],
                                  problem["user_factors"][untouched])
    np.testing.assert_allclose(kernel["user_factors"], ref["user_factors"], rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------- svdpp_epoch
def svdpp_problem(seed: int = 0, n_users: int = 19, n_items: int = 13, density: float = 0.45,
                  k: int = 4, empty_users: tuple[int, ...] = (3,)) -> dict:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[list(empty_users)] = False
    users, items = np.nonzero(mask)
    shuffled = rng.permutation(len(users))
    order = shuffled[np.argsort(users[shuffled], kind="stable")]  # by user, random within
    users, items = users[order], items[order]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return {
        "indptr": indptr,
        "items": items.astype(np.int32),
        "ratings": rng.uniform(1, 5, len(users)).astype(np.float32),
        "user_factors": (rng.standard_normal((n_users, k)) * 0.3).astype(np.float32),
        "item_factors": (rng.standard_normal((n_items, k)) * 0.3).astype(np.float32),
        "implicit": (rng.standard_normal((n_items, k)) * 0.3).astype(np.float32),
        "user_bias": (rng.standard_normal(n_users) * 0.1).astype(np.float32),
        "item_bias": (rng.standard_normal(n_items) * 0.1).astype(np.float32),
        "rng": rng,
    }


def svdpp_reference(indptr, items, ratings, user_order, P, Q, Y, bu, bi, mu, lr, reg,
                    reg_bias, reg_implicit) -> float:
    """One epoch of the documented SVD++ visit rules, in float32."""
    lr, lam, lam_b, lam_y, mu = F32(lr), F32(reg), F32(reg_bias), F32(reg_implicit), F32(mu)
    sse = 0.0
    for u in user_order:
        start, end = indptr[u], indptr[u + 1]
        n_u = end - start
        if n_u == 0:
            continue
        scale = F32(1.0 / np.sqrt(n_u))
        z = np.zeros(P.shape[1], np.float32)
        for idx in range(start, end):
            z = z + Y[items[idx]]
        z = z * scale
        grad = np.zeros(P.shape[1], np.float32)
        for idx in range(start, end):
            i, r = items[idx], ratings[idx]
            pred = mu + bu[u] + bi[i]
            for f in range(P.shape[1]):
                pred = pred + Q[i, f] * (P[u, f] + z[f])
            err = F32(r - pred)
            sse += float(err * err)
            bu[u] = bu[u] + lr * (err - lam_b * bu[u])
            bi[i] = bi[i] + lr * (err - lam_b * bi[i])
            pu, qi = P[u].copy(), Q[i].copy()
            grad = grad + err * qi
            P[u] = pu + lr * (err * qi - lam * pu)
            Q[i] = qi + lr * (err * (pu + z) - lam * qi)
        decay = lam_y * F32(n_u)
        for idx in range(start, end):
            j = items[idx]
            Y[j] = Y[j] + lr * (grad * scale - decay * Y[j])
    return sse


NAMES = ("user_factors", "item_factors", "implicit", "user_bias", "item_bias")


def test_svdpp_epoch_matches_reference():
    problem = svdpp_problem(seed=5)
    kernel = {name: problem[name].copy() for name in NAMES}
    ref = {name: problem[name].copy() for name in NAMES}
    n_users = len(problem["indptr"]) - 1
    args = dict(mu=3.0, lr=0.02, reg=0.05, reg_bias=0.02, reg_implicit=0.03)
    for _ in range(2):
        order = problem["rng"].permutation(n_users).astype(np.int64)
        got = svdpp_epoch(problem["indptr"], problem["items"], problem["ratings"],
                        np.zeros(0, np.float32), order,
                          kernel["user_factors"], kernel["item_factors"], kernel["implicit"],
                          kernel["user_bias"], kernel["item_bias"], args["mu"], args["lr"],
                          args["reg"], args["reg_bias"], args["reg_implicit"])
        want = svdpp_reference(problem["indptr"], problem["items"], problem["ratings"], order,
                               ref["user_factors"], ref["item_factors"], ref["implicit"],
                               ref["user_bias"], ref["item_bias"], args["mu"], args["lr"],
                               args["reg"], args["reg_bias"], args["reg_implicit"])
        assert got == pytest.approx(want, rel=1e-4)
    rated_items = np.unique(problem["items"])
    for name in NAMES:
        np.testing.assert_allclose(kernel[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)
        rows = rated_items if name in ("item_factors", "implicit", "item_bias") else [0, 1]
        assert not np.allclose(kernel[name][rows], problem[name][rows], atol=1e-4), name
    # A user with no ratings is skipped entirely.
    np.testing.assert_array_equal(kernel["user_factors"][3], problem["user_factors"][3])
    assert kernel["user_bias"][3] == problem["user_bias"][3]


def test_svdpp_epoch_implicit_update_is_once_per_visit():
    """One user, one epoch, zero lr on everything but y: with p = q = 0, grad = 0, so each
    y_j of the user's items decays exactly once by (1 - lr·|N|·λ_y), other rows untouched."""
    problem = svdpp_problem(seed=6, n_users=4, n_items=6, density=1.0, empty_users=())
    n_items, k = problem["implicit"].shape
    q = np.zeros((n_items, k), np.float32)
    implicit = problem["implicit"].copy()
    order = np.array([2], dtype=np.int64)  # visit one user only
    svdpp_epoch(problem["indptr"], problem["items"], problem["ratings"],
                        np.zeros(0, np.float32), order,
                problem["user_factors"].copy(), q, implicit, problem["user_bias"].copy(),
                problem["item_bias"].copy(), 3.0, 0.01, 0.0, 0.0, 0.5)
    n_u = int(problem["indptr"][3] - problem["indptr"][2])
    # q starts at 0 but is updated by err·(p + z) during the visit; grad accumulates the
    # *old* q (0 on the first rating of each item, and each item appears once): grad = 0.
    np.testing.assert_allclose(implicit, problem["implicit"] * F32(1 - 0.01 * n_u * 0.5),
                               rtol=1e-6)


# ---------------------------------------------------------------------- time-aware biases
def sgd_time_reference(block_ptr, users, items, ratings, weights, bins, devs, P, Q, bu, bi,
                       bib, alpha, mu, lr, reg, reg_bias, reg_time, col_perm, lr_b) -> float:
    """One epoch of the documented time-aware update (Koren 2009), rating by rating."""
    n_blocks = len(col_perm)
    lr, lr_b, lam, lam_b, lam_t, mu = (F32(lr), F32(lr_b), F32(reg), F32(reg_bias),
                                       F32(reg_time), F32(mu))
    sse = 0.0
    for s in range(n_blocks):
        for b in range(n_blocks):
            c = col_perm[(b + s) % n_blocks]
            block = b * n_blocks + c
            for idx in range(block_ptr[block], block_ptr[block + 1]):
                u, i, r, t, dev = users[idx], items[idx], ratings[idx], bins[idx], devs[idx]
                pred = mu + bu[u] + alpha[u] * dev + bi[i] + bib[i, t]
                for f in range(P.shape[1]):
                    pred = pred + P[u, f] * Q[i, f]
                err = F32(r - pred)
                w = weights[idx] if len(weights) else F32(1.0)
                sse += float(w * err * err)
                e = F32(w * err)
                bu[u] = bu[u] + lr_b * (e - lam_b * bu[u])
                alpha[u] = alpha[u] + lr_b * (e * dev - lam_t * alpha[u])
                bi[i] = bi[i] + lr_b * (e - lam_b * bi[i])
                bib[i, t] = bib[i, t] + lr_b * (e - lam_t * bib[i, t])
                pu, qi = P[u].copy(), Q[i].copy()
                P[u] = pu + lr * (e * qi - lam * pu)
                Q[i] = qi + lr * (e * pu - lam * qi)
    return sse


TIME_NAMES = ("user_factors", "item_factors", "user_bias", "item_bias", "item_bin_bias",
              "user_drift")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("interleave", [False, True], ids=["by-user", "interleaved"])
def test_sgd_time_epoch_matches_reference(weighted, interleave):
    problem = blocked_problem(seed=11, interleave=interleave)
    rng = problem["rng"]
    n_items, n_users = len(problem["item_factors"]), len(problem["user_factors"])
    nnz = len(problem["ratings"])
    problem["item_bin_bias"] = (rng.standard_normal((n_items, 3)) * 0.1).astype(np.float32)
    problem["user_drift"] = (rng.standard_normal(n_users) * 0.1).astype(np.float32)
    bins = rng.integers(0, 3, nnz).astype(np.int32)
    devs = rng.uniform(-2, 2, nnz).astype(np.float32)
    weights = problem["weights"] if weighted else np.zeros(0, np.float32)
    kernel = {name: problem[name].copy() for name in TIME_NAMES}
    ref = {name: problem[name].copy() for name in TIME_NAMES}
    params = dict(mu=3.0, lr=0.05, reg=0.05, reg_bias=0.02, reg_time=0.3)
    for _ in range(2):
        col_perm = rng.permutation(problem["n_blocks"]).astype(np.int64)
        args = (problem["block_ptr"], problem["users"], problem["items"], problem["ratings"],
                weights, bins, devs)
        got = sgd_time_epoch(*args, *(kernel[n] for n in TIME_NAMES), params["mu"],
                             params["lr"], params["reg"], params["reg_bias"],
                             params["reg_time"], col_perm, 0.02)
        want = sgd_time_reference(*args, *(ref[n] for n in TIME_NAMES), params["mu"],
                                  params["lr"], params["reg"], params["reg_bias"],
                                  params["reg_time"], col_perm, 0.02)
        assert got == pytest.approx(want, rel=1e-4)
    for name in TIME_NAMES:
        np.testing.assert_allclose(kernel[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)
        assert not np.allclose(kernel[name], problem[name], atol=1e-4), name


def test_sgd_time_epoch_one_rating_by_hand():
    """One rating: the bin bias of its bin and the user's drift move, other bins do not."""
    problem = single_rating_problem(1.0)
    bib = np.zeros((4, 3), np.float32)
    drift = np.zeros(3, np.float32)
    state = {name: problem[name].copy() for name in
             ("user_factors", "item_factors", "user_bias", "item_bias")}
    u, i, mu, lr, lr_b, dev = 1, 2, 3.0, 0.1, 0.05, 1.5
    p, q = problem["user_factors"][u].astype(float), problem["item_factors"][i].astype(float)
    err = 4.5 - (mu + problem["user_bias"][u] + problem["item_bias"][i] + p @ q)
    sgd_time_epoch(problem["block_ptr"], problem["users"], problem["items"], problem["ratings"],
                   np.zeros(0, np.float32), np.array([2], np.int32), np.array([dev], np.float32),
                   state["user_factors"], state["item_factors"], state["user_bias"],
                   state["item_bias"], bib, drift, mu, lr, 0.0, 0.0, 0.0,
                   np.zeros(1, dtype=np.int64), lr_b)
    assert bib[i, 2] == pytest.approx(lr_b * err, rel=1e-5)
    assert drift[u] == pytest.approx(lr_b * err * dev, rel=1e-5)
    assert np.count_nonzero(bib) == 1 and np.count_nonzero(drift) == 1


def svdpp_time_reference(indptr, items, ratings, bins, devs, user_order, P, Q, Y, bu, bi, bib,
                         alpha, mu, lr, reg, reg_bias, reg_implicit, reg_time) -> float:
    """:func:`svdpp_reference` plus the bin bias and drift terms, in float32."""
    lr, lam, lam_b, lam_y, lam_t, mu = (F32(lr), F32(reg), F32(reg_bias), F32(reg_implicit),
                                        F32(reg_time), F32(mu))
    sse = 0.0
    for u in user_order:
        start, end = indptr[u], indptr[u + 1]
        n_u = end - start
        if n_u == 0:
            continue
        scale = F32(1.0 / np.sqrt(n_u))
        z = np.zeros(P.shape[1], np.float32)
        for idx in range(start, end):
            z = z + Y[items[idx]]
        z = z * scale
        grad = np.zeros(P.shape[1], np.float32)
        for idx in range(start, end):
            i, r, t, dev = items[idx], ratings[idx], bins[idx], devs[idx]
            pred = mu + bu[u] + alpha[u] * dev + bi[i] + bib[i, t]
            for f in range(P.shape[1]):
                pred = pred + Q[i, f] * (P[u, f] + z[f])
            err = F32(r - pred)
            sse += float(err * err)
            bu[u] = bu[u] + lr * (err - lam_b * bu[u])
            alpha[u] = alpha[u] + lr * (err * dev - lam_t * alpha[u])
            bi[i] = bi[i] + lr * (err - lam_b * bi[i])
            bib[i, t] = bib[i, t] + lr * (err - lam_t * bib[i, t])
            pu, qi = P[u].copy(), Q[i].copy()
            grad = grad + err * qi
            P[u] = pu + lr * (err * qi - lam * pu)
            Q[i] = qi + lr * (err * (pu + z) - lam * qi)
        decay = lam_y * F32(n_u)
        for idx in range(start, end):
            j = items[idx]
            Y[j] = Y[j] + lr * (grad * scale - decay * Y[j])
    return sse


def test_svdpp_time_epoch_matches_reference():
    problem = svdpp_problem(seed=12)
    rng = problem["rng"]
    n_users = len(problem["indptr"]) - 1
    n_items = len(problem["item_factors"])
    nnz = len(problem["items"])
    problem["item_bin_bias"] = (rng.standard_normal((n_items, 4)) * 0.1).astype(np.float32)
    problem["user_drift"] = (rng.standard_normal(n_users) * 0.1).astype(np.float32)
    bins = rng.integers(0, 4, nnz).astype(np.int32)
    devs = rng.uniform(-2, 2, nnz).astype(np.float32)
    names = (*NAMES, "item_bin_bias", "user_drift")
    kernel = {name: problem[name].copy() for name in names}
    ref = {name: problem[name].copy() for name in names}
    for _ in range(2):
        order = rng.permutation(n_users).astype(np.int64)
        got = svdpp_time_epoch(problem["indptr"], problem["items"], problem["ratings"],
                               np.zeros(0, np.float32), bins, devs, order,
                               *(kernel[n] for n in names), 3.0, 0.02, 0.05, 0.02, 0.03, 0.2)
        want = svdpp_time_reference(problem["indptr"], problem["items"], problem["ratings"],
                                    bins, devs, order, *(ref[n] for n in names), 3.0, 0.02,
                                    0.05, 0.02, 0.03, 0.2)
        assert got == pytest.approx(want, rel=1e-4)
    for name in names:
        np.testing.assert_allclose(kernel[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)
    assert not np.allclose(kernel["item_bin_bias"], problem["item_bin_bias"], atol=1e-4)
    assert not np.allclose(kernel["user_drift"], problem["user_drift"], atol=1e-4)
