r"""Gibbs-sampling kernels of :class:`~matfact.BayesianMF` with side information.

The model (a Bayesian factorization machine restricted to user–item
interactions) predicts

.. math::
    \hat r_{ui} = \mu + B_u + B_i + P_u\cdot Q_i,\qquad
    P_u = p_u + \sum_c z_{uc} v_c,\quad B_u = b_u + \sum_c z_{uc} w_c

(likewise :math:`Q_i`, :math:`B_i` from the item's columns), where :math:`z_u` is
the user's row of the user-side design (features, and the implicit
:math:`|N(u)|^{-1/2}` flags of the items they rated). The sampler keeps the
*effective* vectors ``own_eff[u] = [P_u, B_u]`` and the residuals
``resid[p] = r_p − \hat r_p`` (ratings in user-major CSR order, the canonical
order; ``pos`` maps another ordering onto it) up to date after every draw, so
each conditional costs only the ratings it touches.

Every kernel writes disjoint rows in its parallel loops and draws no random
numbers (the caller passes standard normal draws), so results are the same
for any thread count.
"""

from __future__ import annotations

import numba
import numpy as np

from matfact._kernels._common import add_outer, cholesky, solve_lower, solve_upper_t

__all__ = ["residuals", "sample_id_rows", "sweep_columns", "row_sums", "sample_columns",
           "apply_deltas"]


@numba.njit(cache=True, parallel=True)
def residuals(indptr, other_idx, ratings, global_mean, own_eff, other_eff, out):
    """``out[p] = r_p − (μ + B_u + B_i + P_u·Q_i)`` for every rating, user-major order.

    ``own_eff`` / ``other_eff`` are (n, k + 1) float64: factors then the bias.
    Returns the unweighted sum of squares.
    """
    n_rows = indptr.shape[0] - 1
    k = own_eff.shape[1] - 1
    for u in numba.prange(n_rows):
        for p in range(indptr[u], indptr[u + 1]):
            j = other_idx[p]
            pred = global_mean + own_eff[u, k] + other_eff[j, k]
            for f in range(k):
                pred += own_eff[u, f] * other_eff[j, f]
            out[p] = ratings[p] - pred
    total = 0.0
    for p in range(out.shape[0]):  # serial: the same rounding for any thread count
        total += out[p] * out[p]
    return total


@numba.njit(cache=True, parallel=True)
def sample_id_rows(indptr, other_idx, pos, weights, other_eff, d, alpha, prior_precision,
                   prior_term, noise, own_id, own_eff, resid):
    r"""Draw every row's id vector ``[p_u, b_u]`` from its Gaussian conditional.

    With :math:`x_i = [Q_i, 1]` (first ``d`` entries) and the target
    :math:`t_{ui} = e_{ui} + [p_u, b_u]\cdot x_i` (the residual without the
    row's own id term)::

        A = Λ + α Σ_i w_ui x_i x_iᵀ,   m = A⁻¹ (Λ μ₀ + α Σ_i w_ui t_ui x_i)
        [p_u, b_u] = m + L⁻ᵀ ε,  A = L Lᵀ,  ε = noise[u]

    then adds the change to ``own_eff[u]`` and subtracts it from the residuals.

    Parameters
    ----------
    indptr, other_idx : CSR of the rows (int64, int32)
    pos : int64 array of shape (nnz,)
        Canonical position of each CSR entry (``resid`` and ``weights`` order).
    weights : float64 array of shape (nnz,) or (0,)
    other_eff : float64 array of shape (n_other, k + 1)
    d : int
        ``k + 1`` with biases, else ``k``.
    alpha : float
    prior_precision, prior_term : float64 arrays of shape (d, d), (d,)
        ``Λ`` and ``Λ μ₀`` of the rows' Normal–Wishart prior draw.
    noise : float64 array of shape (n_rows, d)
    own_id, own_eff : float64 arrays of shape (n_rows, k + 1), updated in place
    resid : float64 array of shape (nnz,), updated in place

    Returns
    -------
    failed : int
        Rows whose system was not positive definite (left unchanged).
    """
    n_rows = indptr.shape[0] - 1
    k = other_eff.shape[1] - 1
    weighted = weights.shape[0] > 0
    failed = np.zeros(n_rows, dtype=np.int64)
    n_chunks = min(n_rows, 256)
    for chunk in numba.prange(n_chunks):
        a = np.empty((d, d), dtype=np.float64)
        b = np.empty(d, dtype=np.float64)
        x = np.empty(d, dtype=np.float64)
        delta = np.empty(d, dtype=np.float64)
        for u in range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks):
            a[:, :] = 0.0
            b[:] = 0.0
            for p in range(indptr[u], indptr[u + 1]):
                j = other_idx[p]
                q = pos[p]
                for f in range(k):
                    x[f] = other_eff[j, f]
                if d > k:
                    x[k] = 1.0
                t = resid[q]
                for f in range(d):
                    t += own_id[u, f] * x[f]
                aw = alpha * (weights[q] if weighted else 1.0)
                add_outer(a, b, x, aw, t, d)
            for f in range(d):
                b[f] += prior_term[f]
                for g in range(f + 1):
                    a[f, g] += prior_precision[f, g]
            if not cholesky(a, d):
                failed[u] = 1
                continue
            solve_lower(a, b, d)
            solve_upper_t(a, b, d)
            for f in range(d):
                x[f] = noise[u, f]
            solve_upper_t(a, x, d)
            for f in range(d):
                value = b[f] + x[f]
                delta[f] = value - own_id[u, f]
                own_id[u, f] = value
                own_eff[u, f] += delta[f]
            for p in range(indptr[u], indptr[u + 1]):
                j = other_idx[p]
                change = delta[k] if d > k else 0.0
                for f in range(k):
                    change += delta[f] * other_eff[j, f]
                resid[pos[p]] -= change
    total = 0
    for u in range(n_rows):
        total += failed[u]
    return total


@numba.njit(cache=True)
def row_sums(indptr, other_idx, pos, weights, other_eff, f, resid, a_out, b_out):
    """Per row: ``A_u = Σ_i w h_i²`` and ``B_u = Σ_i w h_i e_ui`` for dimension ``f``.

    ``h_i = Q_if`` for a factor (``f < k``) and 1 for the bias (``f == k``):
    the derivative of the prediction with respect to ``P_uf`` (or ``B_u``).
    """
    n_rows = indptr.shape[0] - 1
    k = other_eff.shape[1] - 1
    weighted = weights.shape[0] > 0
    for u in range(n_rows):
        sa = 0.0
        sb = 0.0
        for p in range(indptr[u], indptr[u + 1]):
            q = pos[p]
            h = other_eff[other_idx[p], f] if f < k else 1.0
            w = weights[q] if weighted else 1.0
            sa += w * h * h
            sb += w * h * resid[q]
        a_out[u] = sa
        b_out[u] = sb


@numba.njit(cache=True)
def sample_columns(col_ptr, col_rows, col_vals, col_group, f, hyper_mean, hyper_precision,
                   alpha, noise, params, a_rows, b_rows, delta_rows):
    r"""Draw dimension ``f`` of every side-information column, one column at a time.

    Column ``c`` enters the rows ``u`` with values ``z_uc``; given everything
    else its coefficient :math:`\theta` (``params[c, f]``) has the Gaussian
    conditional (FM coordinate-wise Gibbs, Rendle 2013)::

        prec = λ_g + α Σ_u z_uc² A_u
        mean = (λ_g μ_g + α Σ_u z_uc (B_u + θ_old z_uc A_u)) / prec
        θ = mean + ε / √prec

    with ``A_u``, ``B_u`` from :func:`row_sums`. After a draw the rows'
    ``B_u`` are brought up to date (``B_u −= δ z_uc A_u``, exact: the other
    side is fixed), so the next column sees the new value. ``delta_rows``
    accumulates each row's change of ``P_uf`` for :func:`apply_deltas`.
    Serial: columns share rows.
    """
    for c in range(col_ptr.shape[0] - 1):
        g = col_group[c]
        lam = hyper_precision[g, f]
        old = params[c, f]
        prec = lam
        lin = lam * hyper_mean[g, f]
        for t in range(col_ptr[c], col_ptr[c + 1]):
            u = col_rows[t]
            z = col_vals[t]
            za = z * a_rows[u]
            prec += alpha * z * za
            lin += alpha * (z * b_rows[u] + old * z * za)
        value = lin / prec + noise[c, f] / np.sqrt(prec)
        params[c, f] = value
        delta = value - old
        for t in range(col_ptr[c], col_ptr[c + 1]):
            u = col_rows[t]
            z = col_vals[t]
            b_rows[u] -= delta * z * a_rows[u]
            delta_rows[u] += delta * z


@numba.njit(cache=True)
def apply_deltas(indptr, other_idx, pos, other_eff, f, delta_rows, own_eff, resid):
    """``own_eff[u, f] += δ_u`` and ``e_ui −= δ_u h_i`` for every rating."""
    n_rows = indptr.shape[0] - 1
    k = other_eff.shape[1] - 1
    for u in range(n_rows):
        delta = delta_rows[u]
        if delta == 0.0:
            continue
        own_eff[u, f] += delta
        for p in range(indptr[u], indptr[u + 1]):
            h = other_eff[other_idx[p], f] if f < k else 1.0
            resid[pos[p]] -= delta * h


@numba.njit(cache=True)
def sweep_columns(indptr, other_idx, pos, weights, other_eff, n_dims, col_ptr, col_rows,
                  col_vals, col_group, hyper_mean, hyper_precision, alpha, noise, params,
                  own_eff, resid):
    """One Gibbs sweep over every side-information column of one side, dimension by dimension.

    For each dimension ``f < n_dims`` (the factors, then the bias): :func:`row_sums`,
    :func:`sample_columns`, :func:`apply_deltas`. Serial: a sweep is
    O(nnz + nnz(design)) per dimension, shorter than a parallel launch is worth.

    Parameters
    ----------
    indptr, other_idx, pos, weights, other_eff : the side's ratings, as :func:`sample_id_rows`
    n_dims : int
        ``k + 1`` with biases, else ``k``.
    col_ptr, col_rows, col_vals : CSC of the side's design (int64, int32, float64)
    col_group : int64 array of shape (n_columns,)
    hyper_mean, hyper_precision : float64 arrays of shape (n_groups, k + 1)
    alpha : float
    noise : float64 array of shape (n_columns, k + 1)
    params : float64 array of shape (n_columns, k + 1), updated in place
    own_eff : float64 array of shape (n_rows, k + 1), updated in place
    resid : float64 array of shape (nnz,), updated in place
    """
    n_rows = indptr.shape[0] - 1
    a_rows = np.empty(n_rows)
    b_rows = np.empty(n_rows)
    delta_rows = np.empty(n_rows)
    for f in range(n_dims):
        row_sums(indptr, other_idx, pos, weights, other_eff, f, resid, a_rows, b_rows)
        delta_rows[:] = 0.0
        sample_columns(col_ptr, col_rows, col_vals, col_group, f, hyper_mean, hyper_precision,
                       alpha, noise, params, a_rows, b_rows, delta_rows)
        apply_deltas(indptr, other_idx, pos, other_eff, f, delta_rows, own_eff, resid)
