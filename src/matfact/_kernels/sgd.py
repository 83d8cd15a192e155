"""SGD kernels for biased matrix factorization and SVD++ (numba, float32 factors).

Biased MF, one update per rating (Funk 2006; Koren, Bell & Volinsky 2009)::

    e    = w · (r - (μ + b_u + b_i + p_u·q_i))
    b_u += lr_b · (e - λ_b · b_u)
    b_i += lr_b · (e - λ_b · b_i)
    p_u += lr · (e · q_i - λ · p_u)          # both with the *old* p_u, q_i
    q_i += lr · (e · p_u - λ · q_i)

NumPy reference of one epoch (what :func:`sgd_epoch` computes, block by block)::

    for s in range(B):                               # strata
        for b in range(B):                           # independent: run in parallel
            c = col_perm[(b + s) % B]
            for idx in range(block_ptr[b*B + c], block_ptr[b*B + c + 1]):
                u, i, r = users[idx], items[idx], ratings[idx]
                ...the update above...

Ratings are grouped into a B × B grid of (user group, item group) blocks.
In stratum ``s``, row group ``b`` is paired with column group
``col_perm[(b + s) % B]``: the B blocks of a stratum share no user and no
item, so threads never touch the same row (no races, no locks), and since
each block is processed in a fixed order by one thread, the result is
bitwise identical whatever the number of threads (LIBMF's FPSGD / DSGD,
Gemulla et al. 2011).

Time-aware biases (Koren 2009, "timeSVD") have their own kernels,
:func:`sgd_time_epoch` and :func:`svdpp_time_epoch`, so the default kernels
keep their inner loop untouched. They add, per rating, an item bias of the
rating's time bin and a user drift term::

    pred = μ + b_u + α_u·dev + b_i + b_{i,bin} + p_u·q_i
    b_{i,bin} += lr_b · (e - λ_t · b_{i,bin})
    α_u       += lr_b · (e · dev - λ_t · α_u)

with ``dev`` = dev_u(t) (precomputed per rating, scaled by its mean
magnitude) and ``bin`` = Bin(t). Both are per user or per item, so the block
schedule still keeps threads apart.
"""

from __future__ import annotations

import numba
import numpy as np

from matfact._kernels._common import FASTMATH, ordered_sum

__all__ = ["sgd_epoch", "sgd_time_epoch", "svdpp_epoch", "svdpp_time_epoch"]


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def sgd_epoch(block_ptr, users, items, ratings, weights, user_factors, item_factors,
              user_bias, item_bias, global_mean, learning_rate, reg, reg_bias,
              col_perm, use_bias, bias_learning_rate):
    """One epoch of biased-MF SGD over the blocked ratings; returns the weighted SSE.

    Parameters
    ----------
    block_ptr : int64 array of shape (B*B + 1,)
        Start of each (row group, column group) block in the rating arrays.
    users, items : int32 arrays of shape (nnz,)
    ratings : float32 array of shape (nnz,)
    weights : float32 array of shape (nnz,) or (0,)
        Per-rating sample weights; empty means all ones.
    user_factors, item_factors : float32 arrays of shape (n, k), updated in place
    user_bias, item_bias : float32 arrays, updated in place (untouched if not use_bias)
    global_mean, learning_rate, reg, reg_bias : float
    col_perm : int64 array of shape (B,)
        This epoch's pairing of row groups with column groups.
    use_bias : bool
    bias_learning_rate : float
        Step size of the bias updates (``lr_b`` below; the factors use ``lr``).

    Returns
    -------
    sse : float
        Σ w·e² over the epoch, measured before each update (the online loss).
    """
    n_blocks = col_perm.shape[0]
    k = user_factors.shape[1]
    lr = np.float32(learning_rate)
    lr_b = np.float32(bias_learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    mu = np.float32(global_mean)
    weighted = weights.shape[0] > 0
    block_sse = np.zeros(n_blocks, dtype=np.float64)
    for s in range(n_blocks):
        for b in numba.prange(n_blocks):
            c = col_perm[(b + s) % n_blocks]
            block = b * n_blocks + c
            # Ratings are sorted by user inside a block: keep p_u and b_u in locals
            # while the user lasts (no aliasing with q_i, so the loops vectorize).
            pu = np.empty(k, dtype=np.float32)
            bu = np.float32(0.0)
            current = -1
            sse = 0.0
            for idx in range(block_ptr[block], block_ptr[block + 1]):
                u = users[idx]
                if u != current:
                    if current >= 0:
                        user_factors[current, :] = pu
                        if use_bias:
                            user_bias[current] = bu
                    current = u
                    pu[:] = user_factors[u, :]
                    if use_bias:
                        bu = user_bias[u]
                i = items[idx]
                qi = item_factors[i]
                pred = mu
                if use_bias:
                    pred += bu + item_bias[i]
                for f in range(k):
                    pred += pu[f] * qi[f]
                err = ratings[idx] - pred
                w = weights[idx] if weighted else np.float32(1.0)
                sse += w * err * err
                err *= w
                if use_bias:
                    bu += lr_b * (err - lam_b * bu)
                    item_bias[i] += lr_b * (err - lam_b * item_bias[i])
                for f in range(k):
                    puf = pu[f]
                    qif = qi[f]
                    pu[f] = puf + lr * (err * qif - lam * puf)
                    qi[f] = qif + lr * (err * puf - lam * qif)
            if current >= 0:
                user_factors[current, :] = pu
                if use_bias:
                    user_bias[current] = bu
            block_sse[b] += sse
    return ordered_sum(block_sse)


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def sgd_time_epoch(block_ptr, users, items, ratings, weights, bins, devs, user_factors,
                   item_factors, user_bias, item_bias, item_bin_bias, user_drift, global_mean,
                   learning_rate, reg, reg_bias, reg_time, col_perm, bias_learning_rate):
    """:func:`sgd_epoch` (always biased) plus time-bin item biases and user drift.

    Parameters
    ----------
    bins : int32 array of shape (nnz,)
        Time bin of each rating (column of ``item_bin_bias``).
    devs : float32 array of shape (nnz,)
        Scaled drift dev_u(t) of each rating.
    item_bin_bias : float32 array of shape (n_items, n_bins), updated in place
    user_drift : float32 array of shape (n_users,), updated in place
        α_u.
    reg_time : float
        λ_t, the penalty of the bin biases and the drift.
    Other parameters as in :func:`sgd_epoch` (with ``use_bias=True``).

    Returns
    -------
    sse : float
    """
    n_blocks = col_perm.shape[0]
    k = user_factors.shape[1]
    lr = np.float32(learning_rate)
    lr_b = np.float32(bias_learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    lam_t = np.float32(reg_time)
    mu = np.float32(global_mean)
    weighted = weights.shape[0] > 0
    block_sse = np.zeros(n_blocks, dtype=np.float64)
    for s in range(n_blocks):
        for b in numba.prange(n_blocks):
            c = col_perm[(b + s) % n_blocks]
            block = b * n_blocks + c
            pu = np.empty(k, dtype=np.float32)
            bu = np.float32(0.0)
            au = np.float32(0.0)
            current = -1
            sse = 0.0
            for idx in range(block_ptr[block], block_ptr[block + 1]):
                u = users[idx]
                if u != current:
                    if current >= 0:
                        user_factors[current, :] = pu
                        user_bias[current] = bu
                        user_drift[current] = au
                    current = u
                    pu[:] = user_factors[u, :]
                    bu = user_bias[u]
                    au = user_drift[u]
                i = items[idx]
                t = bins[idx]
                dev = devs[idx]
                qi = item_factors[i]
                pred = mu + bu + au * dev + item_bias[i] + item_bin_bias[i, t]
                for f in range(k):
                    pred += pu[f] * qi[f]
                err = ratings[idx] - pred
                w = weights[idx] if weighted else np.float32(1.0)
                sse += w * err * err
                err *= w
                bu += lr_b * (err - lam_b * bu)
                au += lr_b * (err * dev - lam_t * au)
                item_bias[i] += lr_b * (err - lam_b * item_bias[i])
                item_bin_bias[i, t] += lr_b * (err - lam_t * item_bin_bias[i, t])
                for f in range(k):
                    puf = pu[f]
                    qif = qi[f]
                    pu[f] = puf + lr * (err * qif - lam * puf)
                    qi[f] = qif + lr * (err * puf - lam * qif)
            if current >= 0:
                user_factors[current, :] = pu
                user_bias[current] = bu
                user_drift[current] = au
            block_sse[b] += sse
    return ordered_sum(block_sse)


@numba.njit(cache=True, inline="always", fastmath=FASTMATH)
def _implicit_sum(items, start, end, implicit, scale, z, grad):
    """SVD++'s ``z = |N|^-½ Σ_{j∈N(u)} y_j`` over ``items[start:end]``; zeroes ``grad``."""
    k = z.shape[0]
    for f in range(k):
        z[f] = 0.0
        grad[f] = 0.0
    for idx in range(start, end):
        j = items[idx]
        for f in range(k):
            z[f] += implicit[j, f]
    for f in range(k):
        z[f] *= scale


@numba.njit(cache=True, inline="always", fastmath=FASTMATH)
def _implicit_step(items, start, end, implicit, grad, scale, decay, lr):
    """``y_j += lr (|N|^-½ g − |N| λ_y y_j)`` for every ``j`` of ``items[start:end]``."""
    k = grad.shape[0]
    for idx in range(start, end):
        j = items[idx]
        for f in range(k):
            implicit[j, f] += lr * (grad[f] * scale - decay * implicit[j, f])


@numba.njit(cache=True, fastmath=FASTMATH)
def svdpp_epoch(indptr, items, ratings, weights, user_order, user_factors, item_factors,
                implicit, user_bias, item_bias, global_mean, learning_rate, reg, reg_bias,
                reg_implicit):
    """One epoch of SVD++ (Koren 2008) visiting each user's ratings together.

    The prediction is ``μ + b_u + b_i + q_i·(p_u + z_u)`` with
    ``z_u = |N(u)|^-½ Σ_{j∈N(u)} y_j`` over the items u rated. Per user visit
    (cost O(|N(u)|·k) for z, then O(k) per rating)::

        z  = |N|^-½ Σ_j y_j                   # once per visit
        for each rating (u, i, r), in order:
            e    = w (r - (μ + b_u + b_i + q_i·(p_u + z)))
            b_u += lr (e - λ_b b_u);   b_i += lr (e - λ_b b_i)
            g   += e · q_i                     # old q_i
            p_u += lr (e q_i - λ p_u);  q_i += lr (e (p_u + z) - λ q_i)
        y_j += lr (|N|^-½ g - |N| λ_y y_j)    for j in N(u), once per visit

    Surprise updates every y_j after every rating (O(|N(u)|²·k) per user);
    accumulating the same per-rating gradients over the visit and applying
    their sum once keeps an epoch at O(nnz·k) and the objective unchanged.

    Returns
    -------
    sse : float
    """
    k = user_factors.shape[1]
    lr = np.float32(learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    lam_y = np.float32(reg_implicit)
    mu = np.float32(global_mean)
    weighted = weights.shape[0] > 0
    z = np.empty(k, dtype=np.float32)
    grad = np.empty(k, dtype=np.float32)
    sse = 0.0
    for u in user_order:
        start, end = indptr[u], indptr[u + 1]
        n_u = end - start
        if n_u == 0:
            continue
        scale = np.float32(1.0 / np.sqrt(n_u))
        _implicit_sum(items, start, end, implicit, scale, z, grad)
        for idx in range(start, end):
            i = items[idx]
            pred = mu + user_bias[u] + item_bias[i]
            for f in range(k):
                pred += item_factors[i, f] * (user_factors[u, f] + z[f])
            err = ratings[idx] - pred
            w = weights[idx] if weighted else np.float32(1.0)
            sse += w * err * err
            err *= w
            user_bias[u] += lr * (err - lam_b * user_bias[u])
            item_bias[i] += lr * (err - lam_b * item_bias[i])
            for f in range(k):
                puf = user_factors[u, f]
                qif = item_factors[i, f]
                grad[f] += err * qif
                user_factors[u, f] = puf + lr * (err * qif - lam * puf)
                item_factors[i, f] = qif + lr * (err * (puf + z[f]) - lam * qif)
        _implicit_step(items, start, end, implicit, grad, scale, lam_y * np.float32(n_u), lr)
    return sse


@numba.njit(cache=True, fastmath=FASTMATH)
def svdpp_time_epoch(indptr, items, ratings, weights, bins, devs, user_order, user_factors,
                     item_factors, implicit, user_bias, item_bias, item_bin_bias, user_drift,
                     global_mean, learning_rate, reg, reg_bias, reg_implicit, reg_time):
    """:func:`svdpp_epoch` plus time-bin item biases and user drift (see the module doc).

    ``bins``, ``devs`` are per rating, in the order of ``items``; bin biases
    and drift take the step size ``learning_rate`` (as SVD++'s static
    biases do) and the penalty ``reg_time``.

    Returns
    -------
    sse : float
    """
    k = user_factors.shape[1]
    lr = np.float32(learning_rate)
    lam = np.float32(reg)
    lam_b = np.float32(reg_bias)
    lam_t = np.float32(reg_time)
    lam_y = np.float32(reg_implicit)
    mu = np.float32(global_mean)
    weighted = weights.shape[0] > 0
    z = np.empty(k, dtype=np.float32)
    grad = np.empty(k, dtype=np.float32)
    sse = 0.0
    for u in user_order:
        start, end = indptr[u], indptr[u + 1]
        n_u = end - start
        if n_u == 0:
            continue
        scale = np.float32(1.0 / np.sqrt(n_u))
        _implicit_sum(items, start, end, implicit, scale, z, grad)
        for idx in range(start, end):
            i = items[idx]
            t = bins[idx]
            dev = devs[idx]
            pred = (mu + user_bias[u] + user_drift[u] * dev + item_bias[i]
                    + item_bin_bias[i, t])
            for f in range(k):
                pred += item_factors[i, f] * (user_factors[u, f] + z[f])
            err = ratings[idx] - pred
            w = weights[idx] if weighted else np.float32(1.0)
            sse += w * err * err
            err *= w
            user_bias[u] += lr * (err - lam_b * user_bias[u])
            user_drift[u] += lr * (err * dev - lam_t * user_drift[u])
            item_bias[i] += lr * (err - lam_b * item_bias[i])
            item_bin_bias[i, t] += lr * (err - lam_t * item_bin_bias[i, t])
            for f in range(k):
                puf = user_factors[u, f]
                qif = item_factors[i, f]
                grad[f] += err * qif
                user_factors[u, f] = puf + lr * (err * qif - lam * puf)
                item_factors[i, f] = qif + lr * (err * (puf + z[f]) - lam * qif)
        _implicit_step(items, start, end, implicit, grad, scale, lam_y * np.float32(n_u), lr)
    return sse

