"""The BPR kernel against a slow, loop-for-loop float32 reference of the documented epoch.

``bpr_epoch`` is called directly with the dtypes :class:`~matfact.BPR` passes. The
reference re-implements the splitmix64 generator with Python integers, the sampling rule
(``item_bounds[c] + draw % width``, rejected while seen, at most ``max_tries`` draws) and
the update equations of the kernel docstring, in the same block order. Sampling does not
depend on the factors, so both pick the same negatives; the kernel is compiled with
``fastmath``, so factors agree to ~1e-4 relative rather than bitwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from matfact._kernels._common import splitmix64_next
from matfact._kernels.bpr import bpr_epoch

F32 = np.float32
MASK = (1 << 64) - 1
RTOL, ATOL = 1e-4, 1e-6


# ---------------------------------------------------------------------- splitmix64
def splitmix64(state: int) -> tuple[int, int]:
    """Vigna's splitmix64 (the public-domain C code), with Python integers."""
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def test_splitmix64_reference_known_values():
    """The reference itself against published outputs for seed 1234567."""
    state, outputs = 1234567, []
    for _ in range(3):
        state, out = splitmix64(state)
        outputs.append(out)
    assert outputs == [6457827717110365317, 3203168211198807973, 9817491932198370423]


@pytest.mark.parametrize("seed", [0, 1, 1234567, 2**63 - 1, 2**64 - 1, 0x9E3779B97F4A7C15])
def test_splitmix64_next_is_splitmix64(seed):
    state = ref = seed
    for _ in range(5):
        state, out = splitmix64_next(np.uint64(state))  # a Python int > 2**63 would be typed int64
        ref, want = splitmix64(ref)
        assert (int(state), int(out)) == (ref, want)


# ---------------------------------------------------------------------- reference epoch
def bpr_reference(block_ptr, users, items, item_bounds, seen_indptr, seen_indices, P, Q, b,
                  lr, reg, reg_bias, col_perm, seeds, max_tries, negatives=None):
    """One epoch as the kernel docstring says, updating P, Q, b in place (float32)."""
    n_blocks = len(col_perm)
    lr, lam, lam_b = F32(lr), F32(reg), F32(reg_bias)
    seen = [set(seen_indices[seen_indptr[u]:seen_indptr[u + 1]].tolist())
            for u in range(len(seen_indptr) - 1)]
    loss, correct = 0.0, 0
    for s in range(n_blocks):
        for row in range(n_blocks):
            c = col_perm[(row + s) % n_blocks]
            block = row * n_blocks + c
            state = int(seeds[block])
            lo, width = int(item_bounds[c]), int(item_bounds[c + 1] - item_bounds[c])
            if width <= 1:
                continue
            for idx in range(block_ptr[block], block_ptr[block + 1]):
                u, i = int(users[idx]), int(items[idx])
                j = -1
                for _ in range(max_tries):
                    state, draw = splitmix64(state)
                    cand = lo + draw % width
                    if cand not in seen[u]:
                        j = cand
                        break
                if negatives is not None:
                    negatives.append((u, i, j))
                if j < 0:
                    continue
                x = F32(b[i] - b[j]) + F32(np.dot(P[u], Q[i] - Q[j]))
                if x > 0:
                    correct += 1
                g = F32(1.0 / (1.0 + math.exp(float(x))))
                loss += math.log1p(math.exp(-float(x))) if x >= 0 else (
                    -float(x) + math.log1p(math.exp(float(x))))
                b[i] = b[i] + lr * (g - lam_b * b[i])
                b[j] = b[j] + lr * (-g - lam_b * b[j])
                pu, qi, qj = P[u].copy(), Q[i].copy(), Q[j].copy()
                P[u] = pu + lr * (g * (qi - qj) - lam * pu)
                Q[i] = qi + lr * (g * pu - lam * qi)
                Q[j] = qj + lr * (-g * pu - lam * qj)
    return loss, correct


def blocked_positives(seed: int = 0, n_users: int = 19, n_items: int = 23, n_blocks: int = 3,
                      density: float = 0.3, k: int = 4) -> dict:
    """A valid layout: user group u % B and item group i % B, renumbered to be contiguous."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    # Renumber so that group g owns a contiguous range, as the model's layout does.
    user_order = np.argsort(np.arange(n_users) % n_blocks, kind="stable")
    item_order = np.argsort(np.arange(n_items) % n_blocks, kind="stable")
    mask = mask[user_order][:, item_order]
    item_bounds = np.zeros(n_blocks + 1, dtype=np.int64)
    np.cumsum(np.bincount(np.arange(n_items) % n_blocks, minlength=n_blocks),
              out=item_bounds[1:])
    user_bounds = np.zeros(n_blocks + 1, dtype=np.int64)
    np.cumsum(np.bincount(np.arange(n_users) % n_blocks, minlength=n_blocks),
              out=user_bounds[1:])
    users, items = np.nonzero(mask)
    row = np.searchsorted(user_bounds, users, side="right") - 1
    col = np.searchsorted(item_bounds, items, side="right") - 1
    block = row * n_blocks + col
    shuffled = rng.permutation(len(users))
    order = shuffled[np.argsort((block * n_users + users)[shuffled], kind="stable")]
    users, items, block = users[order], items[order], block[order]
    block_ptr = np.zeros(n_blocks * n_blocks + 1, dtype=np.int64)
    np.cumsum(np.bincount(block, minlength=n_blocks * n_blocks), out=block_ptr[1:])
    seen_u, seen_i = np.nonzero(mask)
    seen_indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(seen_u, minlength=n_users), out=seen_indptr[1:])
    return {
        "block_ptr": block_ptr,
        "users": users.astype(np.int32),
        "items": items.astype(np.int32),
        "item_bounds": item_bounds,
        "seen_indptr": seen_indptr,
        "seen_indices": seen_i.astype(np.int64),
        "user_factors": (rng.standard_normal((n_users, k)) * 0.3).astype(F32),
        "item_factors": (rng.standard_normal((n_items, k)) * 0.3).astype(F32),
        "item_bias": (rng.standard_normal(n_items) * 0.1).astype(F32),
        "n_blocks": n_blocks,
        "mask": mask,
        "rng": rng,
    }


def run_both(problem: dict, *, epochs: int = 3, lr: float = 0.1, reg: float = 0.01,
             reg_bias: float = 0.02, max_tries: int = 20):
    layout = tuple(problem[name] for name in ("block_ptr", "users", "items", "item_bounds",
                                              "seen_indptr", "seen_indices"))
    kernel = [problem[name].copy() for name in ("user_factors", "item_factors", "item_bias")]
    ref = [value.copy() for value in kernel]
    results, negatives = [], []
    for _ in range(epochs):
        col_perm = problem["rng"].permutation(problem["n_blocks"]).astype(np.int64)
        seeds = problem["rng"].integers(0, 2**63, problem["n_blocks"] ** 2, dtype=np.uint64)
        got = bpr_epoch(*layout, *kernel, lr, reg, reg_bias, col_perm, seeds, max_tries)
        want = bpr_reference(*layout, *ref, lr, reg, reg_bias, col_perm, seeds, max_tries,
                             negatives)
        results.append((got, want))
    return kernel, ref, results, negatives


# ---------------------------------------------------------------------- bpr_epoch
@pytest.mark.parametrize("seed,n_blocks", [(0, 1), (1, 3), (2, 4)])
def test_bpr_epoch_matches_reference(seed, n_blocks):
    problem = blocked_positives(seed=seed, n_blocks=n_blocks)
    kernel, ref, results, negatives = run_both(problem)
    for name, got, want in zip(("user_factors", "item_factors", "item_bias"), kernel, ref,
                               strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)
        assert np.abs(got - problem[name]).max() > 1e-3, f"{name} must have been updated"
    for (loss, correct, _updates), (ref_loss, ref_correct) in results:
        assert loss == pytest.approx(ref_loss, rel=1e-4)
        assert correct == ref_correct
    made_per_epoch = sum(j >= 0 for _, _, j in negatives) / len(results)
    assert sum(r[0][2] for r in results) / len(results) == made_per_epoch
    # The reference's negatives: never seen, always from the positive's own item group.
    bounds = problem["item_bounds"]
    assert len(negatives) == 3 * len(problem["users"])
    made = [(u, i, j) for u, i, j in negatives if j >= 0]
    assert len(made) > 0.9 * len(negatives)
    for u, i, j in made:
        assert not problem["mask"][u, j]
        assert np.searchsorted(bounds, i, side="right") == np.searchsorted(bounds, j,
                                                                           side="right")


def test_bpr_epoch_loss_and_correct_count_at_zero_learning_rate():
    """All scores 0 and nothing moves: every pair is a tie (not correct) and costs ln 2."""
    problem = blocked_positives(seed=3, n_blocks=2)
    for name in ("user_factors", "item_factors", "item_bias"):
        problem[name][:] = 0.0
    kernel, ref, results, negatives = run_both(problem, epochs=1, lr=0.0)
    (loss, correct, updates), _ = results[0]
    made = sum(j >= 0 for _, _, j in negatives)
    assert updates == made
    assert made > 0.9 * len(negatives)
    assert correct == 0
    assert loss == pytest.approx(made * math.log(2.0), rel=1e-6)
    for value in kernel:
        np.testing.assert_array_equal(value, 0.0)


def one_user_problem(n_items: int, seen: list[int]) -> dict:
    """One user, one block: positives ``seen`` among ``n_items`` items, all factors zero."""
    seen = sorted(seen)
    return {
        "block_ptr": np.array([0, len(seen)], dtype=np.int64),
        "users": np.zeros(len(seen), dtype=np.int32),
        "items": np.array(seen, dtype=np.int32),
        "item_bounds": np.array([0, n_items], dtype=np.int64),
        "seen_indptr": np.array([0, len(seen)], dtype=np.int64),
        "seen_indices": np.array(seen, dtype=np.int64),
        "user_factors": np.zeros((1, 3), F32),
        "item_factors": np.zeros((n_items, 3), F32),
        "item_bias": np.zeros(n_items, F32),
    }


@pytest.mark.parametrize("seed", range(5))
def test_bpr_epoch_negative_is_the_only_unseen_item(seed):
    """The user has seen every item but #4: each negative must be item 4. With zero factors
    and no regularization only biases move, by +lr·g for each positive and −lr·g for its
    negative, so a seen item drawn as a negative would show as a missing increment."""
    p = one_user_problem(8, [0, 1, 2, 3, 5, 6, 7])
    seeds = np.array([seed * 977 + 1], dtype=np.uint64)
    loss, correct, _ = bpr_epoch(p["block_ptr"], p["users"], p["items"], p["item_bounds"],
                              p["seen_indptr"], p["seen_indices"], p["user_factors"],
                              p["item_factors"], p["item_bias"], 0.1, 0.0, 0.0,
                              np.zeros(1, np.int64), seeds, 1000)
    bias = p["item_bias"].astype(np.float64)
    assert (bias[[0, 1, 2, 3, 5, 6, 7]] > 0).all()
    assert bias[4] < 0
    assert bias.sum() == pytest.approx(0.0, abs=1e-6)
    # Replay: b_4 goes down by exactly the sum of the positives' increments, each lr·σ(−x).
    b4, total = 0.0, 0.0
    for i in p["items"]:
        x = 0.0 - b4
        g = 1.0 / (1.0 + math.exp(x))
        assert bias[i] == pytest.approx(0.1 * g, rel=1e-5)
        total += math.log1p(math.exp(-x))
        b4 -= 0.1 * g
    assert bias[4] == pytest.approx(b4, rel=1e-5)
    assert loss == pytest.approx(total, rel=1e-5)
    assert correct == 6  # all but the first pair, which is a tie at zero


def test_bpr_epoch_skips_a_positive_without_unseen_items():
    """A user who has seen the whole catalogue gets no update after max_tries draws."""
    p = one_user_problem(5, [0, 1, 2, 3, 4])
    p["user_factors"][:] = 0.5
    p["item_factors"][:] = 0.25
    before = [p[name].copy() for name in ("user_factors", "item_factors", "item_bias")]
    loss, correct, _ = bpr_epoch(p["block_ptr"], p["users"], p["items"], p["item_bounds"],
                              p["seen_indptr"], p["seen_indices"], p["user_factors"],
                              p["item_factors"], p["item_bias"], 0.1, 0.01, 0.01,
                              np.zeros(1, np.int64), np.array([7], np.uint64), 3)
    assert loss == 0.0 and correct == 0
    for name, value in zip(("user_factors", "item_factors", "item_bias"), before, strict=True):
        np.testing.assert_array_equal(p[name], value, err_msg=name)


def test_bpr_epoch_max_tries_limits_the_draws():
    """Half the catalogue unseen and max_tries=1: a positive is updated only when its single
    draw is unseen; the reference, drawing the same numbers, says which ones."""
    seen = list(range(0, 40, 2))
    p, ref = one_user_problem(40, seen), one_user_problem(40, seen)
    layout = [p[name] for name in ("block_ptr", "users", "items", "item_bounds",
                                   "seen_indptr", "seen_indices")]
    seeds = np.array([12345], np.uint64)
    negatives: list = []
    bpr_epoch(*layout, p["user_factors"], p["item_factors"], p["item_bias"], 0.1, 0.0, 0.0,
              np.zeros(1, np.int64), seeds, 1)
    bpr_reference(*layout, ref["user_factors"], ref["item_factors"], ref["item_bias"], 0.1,
                  0.0, 0.0, np.zeros(1, np.int64), seeds, 1, negatives)
    hits = sorted(i for _, i, j in negatives if j >= 0)
    assert 0 < len(hits) < len(seen)
    assert np.flatnonzero(p["item_bias"][seen] > 0).tolist() == [seen.index(i) for i in hits]
    np.testing.assert_allclose(p["item_bias"], ref["item_bias"], rtol=1e-5, atol=1e-7)
    with_retries = one_user_problem(40, seen)
    bpr_epoch(*layout, with_retries["user_factors"], with_retries["item_factors"],
              with_retries["item_bias"], 0.1, 0.0, 0.0, np.zeros(1, np.int64), seeds, 100)
    assert (with_retries["item_bias"][seen] > 0).all()


def test_bpr_fold_in_equals_the_pairwise_gradient_ascent():
    from matfact._kernels.bpr import bpr_fold_in

    rng = np.random.default_rng(3)
    positive, negative = rng.normal(size=(5, 4)), rng.normal(size=(9, 4))
    bias_diff, weights = rng.normal(size=(5, 9)), rng.uniform(0.5, 2.0, 5)
    p = np.zeros(4)
    diff = positive[:, None, :] - negative[None, :, :]            # every pair, explicitly
    for _ in range(30):
        x = bias_diff + diff @ p
        g = weights[:, None] / (1.0 + np.exp(x))
        p = p + 0.3 * (np.einsum("nm,nmk->k", g, diff) / g.size - 0.01 * p)
    np.testing.assert_allclose(bpr_fold_in(positive, negative, bias_diff, weights, 0.01, 0.3, 30),
                               p, rtol=1e-10, atol=1e-12)
