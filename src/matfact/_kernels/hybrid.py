r"""Kernels of the feature-aware hybrid (LightFM-style) model, :class:`~matfact.HybridMF`.

A user ``u`` and an item ``i`` are sparse rows of features, ``x_u`` and ``y_i``
(their identity, if used, is one of the features). Their representations are
sums of feature embeddings, and their biases sums of feature biases::

    p_u = Σ_f x_uf E[f]        b_u = Σ_f x_uf e[f]       (user features: E, e)
    q_i = Σ_g y_ig F[g]        b_i = Σ_g y_ig c[g]       (item features: F, c)
    s_ui = μ + b_u + b_i + p_u·q_i

Each update computes a gradient ``d`` of the loss with respect to the composed
terms (``∂/∂p_u``, ``∂/∂q_i`` and ``∂/∂b``) and hands it to every feature of
the row, scaled by the feature's value, with an L2 penalty on the feature's
parameters (applied each time the feature is touched), through Adagrad
(Duchi et al. 2011, as LightFM does): for a parameter ``θ`` with gradient ``g``::

    G_θ += g²;    θ -= lr · g / √G_θ                (G starts at 1)

Losses, per training pair (``w``: the sample weight):

- squared: ``½ w (r - s_ui)²``; ``∂/∂s = -w (r - s_ui)``.
- BPR: ``-w ln σ(s_ui - s_uj)`` with ``j`` drawn uniformly among the items
  ``u`` has no interaction with; ``∂/∂s_ui = -w σ(-(s_ui - s_uj))``.
- WARP (Weston et al. 2011): draw ``j`` until ``s_uj > s_ui - 1`` (at most
  ``max_sampled`` draws; no update if none violates); with ``n`` draws made,
  the hinge ``L · (1 - s_ui + s_uj)`` is stepped with
  ``L = ln ⌊(n_items - 1) / n⌋`` (capped at 10), LightFM's rank estimate.

NumPy reference of one squared-loss update (what :func:`squared_epoch` does
per rating; the ranking kernels follow the same pattern)::

    p, bu = X[u] @ E, X[u] @ e                       # X, Y: CSR feature rows
    q, bi = Y[i] @ F, Y[i] @ c
    d = -w * (r - (mu + bu + bi + p @ q))
    for f, x in zip(X[u].indices, X[u].data):
        g = x * d * q + reg * E[f];   GE[f] += g**2;  E[f] -= lr * g / sqrt(GE[f])
        g = x * d + reg_bias * e[f];  Ge[f] += g**2;  e[f] -= lr * g / sqrt(Ge[f])
    ...the same for the item's features with p in place of q...

The kernels are compiled with ``fastmath`` (no NaN/inf assumptions, so a
diverging fit still shows as NaN); they agree with the float64 reference of
``tests/kernels/test_hybrid_kernels.py`` to ~1e-4 relative.

Training is sequential: common features (a genre, an age bucket) appear in
most rows, so no block schedule keeps two threads off the same parameters,
and lock-free (Hogwild) updates would make the model depend on thread
timing. One thread gives the same model for a seed on every run.
"""

from __future__ import annotations

import numba
import numpy as np

from matfact._kernels._common import FASTMATH, draw_unseen, is_seen, splitmix64_next

__all__ = ["squared_epoch", "bpr_epoch", "warp_epoch", "compose"]

MAX_WARP_LOSS = 10.0


@numba.njit(cache=True, inline="always", fastmath=FASTMATH)
def _compose_row(indptr, indices, data, row, emb, bias, out):
    """``out = Σ_f x_f emb[f]``; returns ``Σ_f x_f bias[f]`` (float64 accumulation)."""
    k = emb.shape[1]
    for f in range(k):
        out[f] = 0.0
    total = 0.0
    for p in range(indptr[row], indptr[row + 1]):
        j = indices[p]
        x = data[p]
        total += x * bias[j]
        for f in range(k):
            out[f] += x * emb[j, f]
    return total


@numba.njit(cache=True, inline="always", fastmath=FASTMATH)
def _step_row(indptr, indices, data, row, emb, emb_acc, bias, bias_acc, grad, grad_bias,
              lr, reg, reg_bias):
    """Adagrad step of every feature of ``row`` (see the module docstring)."""
    k = emb.shape[1]
    for p in range(indptr[row], indptr[row + 1]):
        j = indices[p]
        x = data[p]
        g = x * grad_bias + reg_bias * bias[j]
        bias_acc[j] += g * g
        bias[j] -= lr * g / np.sqrt(bias_acc[j])
        for f in range(k):
            g = x * grad[f] + reg * emb[j, f]
            emb_acc[j, f] += g * g
            emb[j, f] -= lr * g / np.sqrt(emb_acc[j, f])


@numba.njit(cache=True, inline="always", fastmath=FASTMATH)
def _step_pair(u, i, j, d, p, qi, qj, gp, gi, gj, u_indptr, u_indices, u_data, i_indptr,
               i_indices, i_data, user_emb, user_emb_acc, user_bias, user_bias_acc, item_emb,
               item_emb_acc, item_bias, item_bias_acc, lr, reg, reg_bias):
    """Adagrad step of a ranking pair ``(u, i, j)`` given ``d = ∂loss/∂(s_ui − s_uj)``.

    With ``p = p_u``, ``qi = q_i``, ``qj = q_j`` composed before the update, the
    gradients are ``d (q_i − q_j)`` for ``p_u``, ``d p_u`` and ``d`` for item
    ``i``'s vector and bias, ``−d p_u`` and ``−d`` for item ``j``'s (the user's
    bias cancels in the difference). ``gp``, ``gi``, ``gj`` are scratch.
    """
    k = p.shape[0]
    for f in range(k):
        gp[f] = d * (qi[f] - qj[f])
        gi[f] = d * p[f]
        gj[f] = -d * p[f]
    _step_row(u_indptr, u_indices, u_data, u, user_emb, user_emb_acc, user_bias,
              user_bias_acc, gp, np.float32(0.0), lr, reg, reg_bias)
    _step_row(i_indptr, i_indices, i_data, i, item_emb, item_emb_acc, item_bias,
              item_bias_acc, gi, d, lr, reg, reg_bias)
    _step_row(i_indptr, i_indices, i_data, j, item_emb, item_emb_acc, item_bias,
              item_bias_acc, gj, -d, lr, reg, reg_bias)


@numba.njit(cache=True, fastmath=FASTMATH)
def compose(indptr, indices, data, emb, bias, out, out_bias):
    """Every row's representation and bias: ``out = X @ emb``, ``out_bias = X @ bias``."""
    for row in range(indptr.shape[0] - 1):
        out_bias[row] = _compose_row(indptr, indices, data, row, emb, bias, out[row])


@numba.njit(cache=True, fastmath=FASTMATH)
def squared_epoch(order, users, items, values, weights, u_indptr, u_indices, u_data,
                  i_indptr, i_indices, i_data, user_emb, user_emb_acc, user_bias,
                  user_bias_acc, item_emb, item_emb_acc, item_bias, item_bias_acc, mean,
                  learning_rate, reg, reg_bias):
    """One epoch of squared-loss updates, in ``order``; returns the weighted SSE.

    Parameters
    ----------
    order : int64 array
        Positions of the ratings to visit, in order.
    users, items : int32 arrays of shape (nnz,)
    values : float32 array of shape (nnz,)
        Ratings.
    weights : float32 array of shape (nnz,) or (0,)
        Sample weights (empty: all 1).
    u_indptr, u_indices, u_data : CSR of the user feature rows
    i_indptr, i_indices, i_data : CSR of the item feature rows
    user_emb, item_emb : float32 arrays of shape (n_features, k), updated in place
    user_bias, item_bias : float32 arrays of shape (n_features,), updated in place
    *_acc : float32 Adagrad accumulators of the same shapes
    mean : float
        μ, fixed.
    learning_rate, reg, reg_bias : float
    """
    k = user_emb.shape[1]
    p = np.empty(k, np.float32)
    q = np.empty(k, np.float32)
    gp = np.empty(k, np.float32)
    gq = np.empty(k, np.float32)
    lr = np.float32(learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    has_weights = weights.shape[0] > 0
    sse = 0.0
    for t in range(order.shape[0]):
        s = order[t]
        u = users[s]
        i = items[s]
        w = weights[s] if has_weights else np.float32(1.0)
        bu = _compose_row(u_indptr, u_indices, u_data, u, user_emb, user_bias, p)
        bi = _compose_row(i_indptr, i_indices, i_data, i, item_emb, item_bias, q)
        pred = mean + bu + bi
        for f in range(k):
            pred += p[f] * q[f]
        e = values[s] - pred
        sse += w * e * e
        d = np.float32(-w * e)
        for f in range(k):
            gp[f] = d * q[f]
            gq[f] = d * p[f]
        _step_row(u_indptr, u_indices, u_data, u, user_emb, user_emb_acc, user_bias,
                  user_bias_acc, gp, d, lr, lam, lam_b)
        _step_row(i_indptr, i_indices, i_data, i, item_emb, item_emb_acc, item_bias,
                  item_bias_acc, gq, d, lr, lam, lam_b)
    return sse


@numba.njit(cache=True, fastmath=FASTMATH)
def bpr_epoch(order, users, items, weights, seen_indptr, seen_indices, u_indptr, u_indices,
              u_data, i_indptr, i_indices, i_data, user_emb, user_emb_acc, user_bias,
              user_bias_acc, item_emb, item_emb_acc, item_bias, item_bias_acc, learning_rate,
              reg, reg_bias, seed, max_tries):
    """One epoch of BPR updates, one per positive in ``order``.

    The negative of each positive is drawn by splitmix64 from ``seed``
    (uniform over the catalogue, rejected while the user has interacted with
    it, at most ``max_tries`` draws); ``seen_*`` is the sorted CSR of every
    user's positives. Other parameters as :func:`squared_epoch`.

    Returns
    -------
    loss : float
        Σ −w ln σ(s_ui − s_uj) over the updates (measured before each).
    correct : int
        Pairs already ordered (s_ui > s_uj) before their update.
    updates : int
    """
    k = user_emb.shape[1]
    n_items = i_indptr.shape[0] - 1
    p = np.empty(k, np.float32)
    qi = np.empty(k, np.float32)
    qj = np.empty(k, np.float32)
    gp = np.empty(k, np.float32)
    gi = np.empty(k, np.float32)
    gj = np.empty(k, np.float32)
    lr = np.float32(learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    has_weights = weights.shape[0] > 0
    state = seed
    loss = 0.0
    correct = 0
    updates = 0
    for t in range(order.shape[0]):
        s = order[t]
        u = users[s]
        i = items[s]
        state, j = draw_unseen(state, 0, n_items, seen_indptr, seen_indices, u, max_tries)
        if j < 0:
            continue
        w = weights[s] if has_weights else np.float32(1.0)
        _compose_row(u_indptr, u_indices, u_data, u, user_emb, user_bias, p)
        bi = _compose_row(i_indptr, i_indices, i_data, i, item_emb, item_bias, qi)
        bj = _compose_row(i_indptr, i_indices, i_data, j, item_emb, item_bias, qj)
        x = bi - bj
        for f in range(k):
            x += p[f] * (qi[f] - qj[f])
        updates += 1
        if x > 0:
            correct += 1
        # σ(−x) and −ln σ(x) = ln(1 + e^−x), computed stably
        if x >= 0:
            z = np.exp(-x)
            g = z / (1.0 + z)
            loss += w * np.log1p(z)
        else:
            z = np.exp(x)
            g = 1.0 / (1.0 + z)
            loss += w * (-x + np.log1p(z))
        d = np.float32(-w * g)  # ∂loss/∂x
        _step_pair(u, i, j, d, p, qi, qj, gp, gi, gj, u_indptr, u_indices, u_data, i_indptr,
                   i_indices, i_data, user_emb, user_emb_acc, user_bias, user_bias_acc,
                   item_emb, item_emb_acc, item_bias, item_bias_acc, lr, lam, lam_b)
    return loss, correct, updates


@numba.njit(cache=True, fastmath=FASTMATH)
def warp_epoch(order, users, items, weights, seen_indptr, seen_indices, u_indptr, u_indices,
               u_data, i_indptr, i_indices, i_data, user_emb, user_emb_acc, user_bias,
               user_bias_acc, item_emb, item_emb_acc, item_bias, item_bias_acc, learning_rate,
               reg, reg_bias, seed, max_sampled):
    """One epoch of WARP updates, one per positive in ``order`` that finds a violator.

    Draws (splitmix64 from ``seed``, uniform over the catalogue) skip the
    user's positives but count towards ``max_sampled``, as in LightFM. Other
    parameters as :func:`bpr_epoch`.

    Returns
    -------
    loss : float
        Σ w L (1 − s_ui + s_uj) over the updates (measured before each).
    violations : int
        Positives that found a violating negative (and were updated).
    positives : int
        Positives visited.
    """
    k = user_emb.shape[1]
    n_items = i_indptr.shape[0] - 1
    p = np.empty(k, np.float32)
    qi = np.empty(k, np.float32)
    qj = np.empty(k, np.float32)
    gp = np.empty(k, np.float32)
    gi = np.empty(k, np.float32)
    gj = np.empty(k, np.float32)
    lr = np.float32(learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    has_weights = weights.shape[0] > 0
    state = seed
    loss = 0.0
    violations = 0
    for t in range(order.shape[0]):
        s = order[t]
        u = users[s]
        i = items[s]
        w = weights[s] if has_weights else np.float32(1.0)
        _compose_row(u_indptr, u_indices, u_data, u, user_emb, user_bias, p)
        bi = _compose_row(i_indptr, i_indices, i_data, i, item_emb, item_bias, qi)
        s_i = bi
        for f in range(k):
            s_i += p[f] * qi[f]
        for n in range(1, max_sampled + 1):
            state, draw = splitmix64_next(state)
            j = np.int64(draw % np.uint64(n_items))
            if is_seen(seen_indptr, seen_indices, u, j):
                continue
            s_j = _compose_row(i_indptr, i_indices, i_data, j, item_emb, item_bias, qj)
            for f in range(k):
                s_j += p[f] * qj[f]
            if s_j > s_i - 1.0:
                rank = np.floor((n_items - 1) / n)
                weight = min(np.log(max(rank, 1.0)), MAX_WARP_LOSS)
                loss += w * weight * (1.0 - s_i + s_j)
                violations += 1
                # ∂loss/∂(s_ui − s_uj) = −w L
                d = -np.float32(w * weight)
                _step_pair(u, i, j, d, p, qi, qj, gp, gi, gj, u_indptr, u_indices, u_data,
                           i_indptr, i_indices, i_data, user_emb, user_emb_acc, user_bias,
                           user_bias_acc, item_emb, item_emb_acc, item_bias, item_bias_acc, lr,
                           lam, lam_b)
                break
    return loss, violations, order.shape[0]
