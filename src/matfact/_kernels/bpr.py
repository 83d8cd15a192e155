"""BPR kernel: pairwise ranking SGD on the deterministic block schedule (numba).

Bayesian personalized ranking (Rendle et al. 2009) maximizes
``Σ ln σ(x_ui − x_uj)`` over positives ``i`` and sampled negatives ``j`` of each
user, with ``x_ui = b_i + p_u·q_i``. One update, with ``g = σ(−(x_ui − x_uj))``::

    p_u += lr (g (q_i − q_j) − λ p_u)
    q_i += lr (g p_u − λ q_i)
    q_j += lr (−g p_u − λ q_j)
    b_i += lr (g − λ_b b_i);   b_j += lr (−g − λ_b b_j)

Positives are laid out in the same user-group × item-group blocks as
:func:`matfact._kernels.sgd.sgd_epoch`, and a positive's negative is drawn
from the items of its own item group, so the blocks of a stratum still share
no row: threads never race, and a small counter-based generator seeded per
block and epoch makes the result identical for any thread count.
"""

from __future__ import annotations

import numba
import numpy as np

from matfact._kernels._common import FASTMATH, draw_unseen, ordered_sum

__all__ = ["bpr_epoch"]


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def bpr_epoch(block_ptr, users, items, item_bounds, seen_indptr, seen_indices, user_factors,
              item_factors, item_bias, learning_rate, reg, reg_bias, col_perm, seeds,
              max_tries):
    """One epoch of BPR over the blocked positives.

    Parameters
    ----------
    block_ptr : int64 array of shape (B*B + 1,)
    users, items : int32 arrays of shape (nnz,)
        Positives in the renumbered layout, ordered by block then user.
    item_bounds : int64 array of shape (B + 1,)
        Item group g owns renumbered items ``item_bounds[g]:item_bounds[g+1]``.
    seen_indptr, seen_indices : CSR (renumbered, sorted) of every user's positives
    user_factors, item_factors : float32, updated in place
    item_bias : float32 array of shape (n_items,)
    learning_rate, reg, reg_bias : float
    col_perm : int64 array of shape (B,)
    seeds : uint64 array of shape (B*B,)
        One generator seed per block for this epoch.
    max_tries : int
        Draws before giving up on finding an item the user has not seen.

    Returns
    -------
    loss : float
        Σ −ln σ(x_ui − x_uj) over the updates made (measured before each).
    correct : int
        Pairs already ranked correctly (x_ui > x_uj) before their update.
    updates : int
        Pairs updated (positives whose user had seen every item drawn are skipped).
    """
    n_blocks = col_perm.shape[0]
    k = user_factors.shape[1]
    lr = np.float32(learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    block_loss = np.zeros(n_blocks, dtype=np.float64)
    block_correct = np.zeros(n_blocks, dtype=np.int64)
    block_updates = np.zeros(n_blocks, dtype=np.int64)
    for s in range(n_blocks):
        for b in numba.prange(n_blocks):
            c = col_perm[(b + s) % n_blocks]
            block = b * n_blocks + c
            state = seeds[block]
            lo = item_bounds[c]
            width = item_bounds[c + 1] - lo
            loss = 0.0
            correct = 0
            updates = 0
            if width <= 1:
                continue
            for idx in range(block_ptr[block], block_ptr[block + 1]):
                u = users[idx]
                i = items[idx]
                state, j = draw_unseen(state, lo, width, seen_indptr, seen_indices, u,
                                       max_tries)
                if j < 0:
                    continue
                x = item_bias[i] - item_bias[j]
                for f in range(k):
                    x += user_factors[u, f] * (item_factors[i, f] - item_factors[j, f])
                updates += 1
                if x > 0:
                    correct += 1
                # g = σ(−x) = 1 / (1 + e^x); −ln σ(x) = ln(1 + e^−x), computed stably
                if x >= 0:
                    e = np.exp(-x)
                    g = e / (np.float32(1.0) + e)
                    loss += np.log1p(e)
                else:
                    e = np.exp(x)
                    g = np.float32(1.0) / (np.float32(1.0) + e)
                    loss += -x + np.log1p(e)
                item_bias[i] += lr * (g - lam_b * item_bias[i])
                item_bias[j] += lr * (-g - lam_b * item_bias[j])
                for f in range(k):
                    pu = user_factors[u, f]
                    qi = item_factors[i, f]
                    qj = item_factors[j, f]
                    user_factors[u, f] = pu + lr * (g * (qi - qj) - lam * pu)
                    item_factors[i, f] = qi + lr * (g * pu - lam * qi)
                    item_factors[j, f] = qj + lr * (-g * pu - lam * qj)
            block_loss[b] += loss
            block_correct[b] += correct
            block_updates[b] += updates
    return ordered_sum(block_loss), ordered_sum(block_correct), ordered_sum(block_updates)


@numba.njit(cache=True, fastmath=FASTMATH)
def bpr_fold_in(positive, negative, bias_diff, weights, reg, step, n_steps):
    """Gradient ascent on one user's mean BPR log-likelihood against fixed negatives.

    ``x_ij = bias_diff_ij + p·(q_i - q_j)``; each step adds
    ``step · (mean_ij w_i σ(-x_ij)(q_i - q_j) - reg · p)``, starting from ``p = 0``.
    Scores are taken once per item and the sigmoid sums per row and column, so
    a step costs O(n·m + (n + m)·k) rather than O(n·m·k).
    """
    n, k = positive.shape
    m = negative.shape[0]
    p = np.zeros(k)
    pos_score = np.empty(n)
    neg_score = np.empty(m)
    row_sum = np.empty(n)
    col_sum = np.empty(m)
    for _ in range(n_steps):
        for i in range(n):
            pos_score[i] = np.dot(positive[i], p)
        for j in range(m):
            neg_score[j] = np.dot(negative[j], p)
            col_sum[j] = 0.0
        for i in range(n):
            total = 0.0
            for j in range(m):
                x = min(max(bias_diff[i, j] + pos_score[i] - neg_score[j], -30.0), 30.0)
                g = weights[i] / (1.0 + np.exp(x))
                total += g
                col_sum[j] += g
            row_sum[i] = total
        grad = (row_sum @ positive - col_sum @ negative) / (n * m) - reg * p
        p += step * grad
    return p
