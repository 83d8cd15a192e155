"""Per-row least-squares kernels for ALS, implicit ALS and Gibbs sampling (numba).

Every row ``u`` of one side is solved with the other side's factors ``Y``
fixed. Explicit ALS and the Gibbs sampler of Bayesian MF share one kernel,
:func:`solve_rows`, which builds for each row the normal equations

    A = α Σ_{i∈R(u)} w_ui x_i x_iᵀ + s · Λ₀          x_i = [y_i, 1] with a bias column
    b = α Σ_{i∈R(u)} w_ui t_ui x_i + s · Λ₀ m₀       t_ui = r_ui − μ − b_i (bias of the other side)

(``s`` = Σ w for ALS-WR's weighted-λ, else 1), factors ``A = L Lᵀ`` and
returns ``A⁻¹ b``, plus ``L⁻ᵀ z`` for a given standard normal ``z`` when
sampling (then ``A⁻¹ b + L⁻ᵀ z ~ N(A⁻¹ b, A⁻¹)``). NumPy reference for one
row::

    X = np.c_[Y[idx], np.ones(n)] if bias else Y[idx]
    A = alpha * (X.T * w) @ X + s * prior_precision
    b = alpha * X.T @ (w * t) + s * prior_term
    x = np.linalg.solve(A, b)           # + solve(cholesky(A).T, z) when sampling

Implicit feedback (Hu, Koren & Volinsky 2008) has a dense objective over all
cells with confidence ``c_ui`` (1 where nothing was observed); with
``G = YᵀY + λI`` computed once per half-step, a row solves

    (G + Σ_{i∈R(u)} (c_ui − 1) y_i y_iᵀ) x = Σ_{i∈R(u)} c_ui y_i

either exactly (:func:`implicit_cholesky`) or by a few conjugate-gradient
steps warm-started from the current ``x`` (:func:`implicit_cg`, Takács et
al. 2011), which never forms the matrix: ``A v = G v + Σ (c−1)(y_i·v) y_i``.
"""

from __future__ import annotations

import numba
import numpy as np

from matfact._kernels._common import (
    FASTMATH,
    add_outer,
    balanced_row_bounds,
    cholesky,
    longest_row,
    ordered_sum,
    solve_lower,
    solve_upper_t,
)

__all__ = ["solve_rows", "implicit_cg", "implicit_cholesky", "implicit_loss"]


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def solve_rows(indptr, indices, values, weights, other, other_bias, use_bias, global_mean,
               alpha, prior_precision, prior_term, scale_by_weight, noise, out_factors,
               out_bias):
    """Solve (or sample) every row's regularized least squares with the other side fixed.

    Parameters
    ----------
    indptr, indices, values : CSR of the rows (int64, int32, float32)
    weights : float32 array of shape (nnz,) or (0,)
        Sample weights (empty means ones).
    other : float32 array of shape (n_other, k)
    other_bias : float32 array of shape (n_other,) or (0,)
    use_bias : bool
        Solve for a bias too (d = k + 1 unknowns) and subtract ``other_bias``.
    global_mean, alpha : float
        ``μ`` subtracted from the values; ``α`` scales the data terms.
    prior_precision : float64 array of shape (d, d)
    prior_term : float64 array of shape (d,)
        ``Λ₀`` and ``Λ₀ m₀``.
    scale_by_weight : bool
        Multiply the prior by the row's total weight (ALS-WR).
    noise : float64 array of shape (n_rows, d) or (0, d)
        Standard normal draws: present means sample from the row's posterior.
    out_factors : float32 array of shape (n_rows, k)
    out_bias : float32 array of shape (n_rows,) or (0,)

    Returns
    -------
    failed : int
        Rows whose system was not positive definite (left at zero).
    """
    n_rows = indptr.shape[0] - 1
    k = other.shape[1]
    d = k + 1 if use_bias else k
    weighted = weights.shape[0] > 0
    sampling = noise.shape[0] > 0
    failed = np.zeros(n_rows, dtype=np.int64)
    # Rows go in chunks so each chunk allocates its scratch once, not once per row.
    n_chunks = min(n_rows, 256)
    for chunk in numba.prange(n_chunks):
        a = np.empty((d, d), dtype=np.float64)
        b = np.empty(d, dtype=np.float64)
        x = np.empty(d, dtype=np.float64)
        for u in range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks):
            a[:, :] = 0.0
            b[:] = 0.0
            total = 0.0
            for p in range(indptr[u], indptr[u + 1]):
                j = indices[p]
                w = weights[p] if weighted else 1.0
                t = values[p] - global_mean
                if use_bias:
                    t -= other_bias[j]
                for f in range(k):
                    x[f] = other[j, f]
                if use_bias:
                    x[k] = 1.0
                total += w
                aw = alpha * w
                add_outer(a, b, x, aw, t, d)
            s = total if scale_by_weight else 1.0
            for f in range(d):
                b[f] += s * prior_term[f]
                for g in range(f + 1):
                    a[f, g] += s * prior_precision[f, g]
            if not cholesky(a, d):
                failed[u] = 1
                for f in range(k):
                    out_factors[u, f] = 0.0
                if use_bias:
                    out_bias[u] = 0.0
                continue
            solve_lower(a, b, d)
            solve_upper_t(a, b, d)
            if sampling:
                for f in range(d):
                    x[f] = noise[u, f]
                solve_upper_t(a, x, d)
                for f in range(d):
                    b[f] += x[f]
            for f in range(k):
                out_factors[u, f] = b[f]
            if use_bias:
                out_bias[u] = b[k]
    return ordered_sum(failed)


@numba.njit(cache=True, fastmath=FASTMATH)
def _gather(indptr, indices, confidence, other, u, block, extra):
    """Copy row ``u``'s item vectors into ``block[:n]`` (contiguous), ``c − 1`` into ``extra``.

    CG then streams this block (hot in cache) instead of chasing scattered
    rows of ``other`` on every step: 2-3× faster than reading in place.
    Returns ``n``, the row's number of interactions.
    """
    start = indptr[u]
    n = indptr[u + 1] - start
    k = other.shape[1]
    for q in range(n):
        i = indices[start + q]
        extra[q] = confidence[start + q] - np.float32(1.0)
        for f in range(k):
            block[q, f] = other[i, f]
    return n


# The implicit kernels cut the rows into one part per thread (about equal numbers of
# interactions) and allocate each part's scratch once, sized for its longest row, never
# per row: a popular item's gathered block is hundreds of KB, which glibc serves by a
# fresh mmap once M_TRIM_THRESHOLD is set (Dask's workers set
# MALLOC_TRIM_THRESHOLD_=65536), and mapping and faulting it row after row made a
# half-step 1.6-2x slower there. Each row's arithmetic does not depend on the cut, so
# the result is the same for any number of threads.


@numba.njit(cache=True, fastmath=FASTMATH, inline="always")
def _add_rows(block, extra, n, v, out, residual):
    """``out += Σ_q coef_q · block[q]`` over the row's gathered block, four rows at a time.

    ``coef_q = (1 + d_q) − d_q (block[q]·v)`` for the residual ``b − Σ d y yᵀ v``
    (``residual=True``, with ``b = Σ c y``), else ``d_q (block[q]·v)`` for
    ``Σ d y yᵀ v`` (``d = extra = c − 1``). Four rows share each load of ``v`` and
    each read-modify-write of ``out``: 1.2x faster CG than one row at a time.
    """
    k = v.shape[0]
    q = 0
    while q + 4 <= n:
        d0 = np.float32(0.0)
        d1 = np.float32(0.0)
        d2 = np.float32(0.0)
        d3 = np.float32(0.0)
        for f in range(k):
            vf = v[f]
            d0 += block[q, f] * vf
            d1 += block[q + 1, f] * vf
            d2 += block[q + 2, f] * vf
            d3 += block[q + 3, f] * vf
        c0 = extra[q] * d0
        c1 = extra[q + 1] * d1
        c2 = extra[q + 2] * d2
        c3 = extra[q + 3] * d3
        if residual:
            c0 = extra[q] + np.float32(1.0) - c0
            c1 = extra[q + 1] + np.float32(1.0) - c1
            c2 = extra[q + 2] + np.float32(1.0) - c2
            c3 = extra[q + 3] + np.float32(1.0) - c3
        for f in range(k):
            out[f] += (c0 * block[q, f] + c1 * block[q + 1, f] + c2 * block[q + 2, f]
                       + c3 * block[q + 3, f])
        q += 4
    while q < n:
        d0 = np.float32(0.0)
        for f in range(k):
            d0 += block[q, f] * v[f]
        c0 = extra[q] * d0
        if residual:
            c0 = extra[q] + np.float32(1.0) - c0
        for f in range(k):
            out[f] += c0 * block[q, f]
        q += 1


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def implicit_cg(indptr, indices, confidence, other, gram, row_reg, factors, cg_steps,
                n_parts=1):
    """Conjugate-gradient half-step of implicit ALS, warm-started from ``factors``.

    Parameters
    ----------
    indptr, indices : CSR of the rows' interactions
    confidence : float32 array of shape (nnz,)
        ``c_ui`` (≥ 1 in Hu et al.'s scaling).
    other : float32 array of shape (n_other, k)
    gram : float32 array of shape (k, k)
        ``YᵀY + λI``.
    row_reg : float32 array of shape (n_rows,) or (0,)
        Extra ridge added to each row's diagonal (frequency-scaled λ).
    factors : float32 array of shape (n_rows, k), updated in place
    cg_steps : int
    n_parts : int, default=1
        Row ranges solved in parallel: pass ``numba.get_num_threads()`` (calling it
        in here would stop numba caching the kernel). The result does not depend on it.
    """
    k = factors.shape[1]
    scaled = row_reg.shape[0] > 0
    bounds = balanced_row_bounds(indptr, max(n_parts, 1))
    for part in numba.prange(bounds.shape[0] - 1):
        lo, hi = bounds[part], bounds[part + 1]
        longest = longest_row(indptr[lo:hi + 1])
        block = np.empty((longest, k), dtype=np.float32)
        extra = np.empty(longest, dtype=np.float32)
        x = np.empty(k, dtype=np.float32)
        r = np.empty(k, dtype=np.float32)
        p = np.empty(k, dtype=np.float32)
        ap = np.empty(k, dtype=np.float32)
        for u in range(lo, hi):
            extra_reg = row_reg[u] if scaled else np.float32(0.0)
            n = _gather(indptr, indices, confidence, other, u, block, extra)
            for f in range(k):
                x[f] = factors[u, f]
            # r = b − A x, with b = Σ c y_i and A x = G x + Σ (c − 1)(y_i·x) y_i
            for f in range(k):
                s = -extra_reg * x[f]
                for g in range(k):
                    s -= gram[f, g] * x[g]
                r[f] = s
            _add_rows(block, extra, n, x, r, True)
            rs_old = np.float32(0.0)
            for f in range(k):
                p[f] = r[f]
                rs_old += r[f] * r[f]
            for _ in range(cg_steps):
                if rs_old < 1e-20:
                    break
                for f in range(k):
                    s = extra_reg * p[f]
                    for g in range(k):
                        s += gram[f, g] * p[g]
                    ap[f] = s
                _add_rows(block, extra, n, p, ap, False)
                pap = np.float32(0.0)
                for f in range(k):
                    pap += p[f] * ap[f]
                if pap <= 0.0:
                    break
                step = rs_old / pap
                rs_new = np.float32(0.0)
                for f in range(k):
                    x[f] += step * p[f]
                    r[f] -= step * ap[f]
                    rs_new += r[f] * r[f]
                beta = rs_new / rs_old
                for f in range(k):
                    p[f] = r[f] + beta * p[f]
                rs_old = rs_new
            for f in range(k):
                factors[u, f] = x[f]


@numba.njit(cache=True, fastmath=FASTMATH)
def _woodbury_row(indptr, indices, confidence, rotated, u, root_inv, eigvecs, scaled_block,
                  m, w, xt, out_row):
    """Exact solve of row ``u`` from the rotated item vectors; False if it cannot be used.

    With ``G + r I = V Λ Vᵀ`` and the row's rotated item vectors ``Ỹ = Y_u V``, the
    system ``(Λ + Ỹᵀ D Ỹ) x̃ = Ỹᵀ c`` (``D = diag(c − 1)``) has, by the Woodbury
    identity, the solution ``x̃ = Λ⁻¹ Ỹᵀ M⁻¹ (c / (c − 1))`` with the n × n matrix
    ``M = D⁻¹ + Ỹ Λ⁻¹ Ỹᵀ``; then ``x = V x̃``. That is O(n²k + n³) for the row
    against O(nk² + k³) for forming and factoring the k × k system; it needs every
    ``c − 1 > 0``. ``root_inv`` is ``Λ^(-1/2)``; ``scaled_block`` receives ``Ỹ Λ^(-1/2)``.
    """
    k = root_inv.shape[0]
    start = indptr[u]
    n = indptr[u + 1] - start
    for q in range(n):
        if confidence[start + q] <= np.float32(1.0):
            return False
    for q in range(n):
        i = indices[start + q]
        for f in range(k):
            scaled_block[q, f] = rotated[i, f] * root_inv[f]
    for q in range(n):
        d = np.float64(confidence[start + q]) - 1.0
        for j in range(q + 1):
            s = 0.0
            for f in range(k):
                s += scaled_block[q, f] * scaled_block[j, f]
            m[q, j] = s
        m[q, q] += 1.0 / d
        w[q] = (d + 1.0) / d
    if not cholesky(m, n):
        return False
    solve_lower(m, w, n)
    solve_upper_t(m, w, n)
    for f in range(k):
        xt[f] = 0.0
    for q in range(n):
        for f in range(k):
            xt[f] += scaled_block[q, f] * w[q]
    for f in range(k):
        xt[f] *= root_inv[f]
    for g in range(k):
        s = 0.0
        for f in range(k):
            s += eigvecs[g, f] * xt[f]
        out_row[g] = s
    return True


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def implicit_cholesky(indptr, indices, confidence, other, gram, row_reg, factors, rotated,
                      eigvals, eigvecs, short_max, n_parts=1):
    """Exact half-step of implicit ALS: form each row's system and solve it.

    ``A = G + B_uᵀ D B_u`` is one small matrix product per row on the gathered
    block ``B_u`` (BLAS through ``np.dot``), then a float64 Cholesky solve. Rows
    with at most ``short_max`` interactions are solved instead through the
    Woodbury identity in the eigenbasis of ``G`` (:func:`_woodbury_row`), which
    never forms the k × k matrix: on sparse data most rows are much shorter than
    k, and factoring k × k per row was most of the half-step.

    Parameters
    ----------
    indptr, indices, confidence, other, gram, row_reg, factors, n_parts
        As :func:`implicit_cg`.
    rotated : float32 array of shape (n_other, k)
        ``other @ eigvecs`` (may be of shape (0, k) when ``short_max`` is 0).
    eigvals, eigvecs : float64 arrays of shapes (k,) and (k, k)
        ``G = V diag(eigvals) Vᵀ`` (``np.linalg.eigh`` of ``gram`` in float64).
    short_max : int
        The longest row solved by Woodbury; 0 solves every row by Cholesky.
    """
    k = factors.shape[1]
    scaled = row_reg.shape[0] > 0
    bounds = balanced_row_bounds(indptr, max(n_parts, 1))
    for part in numba.prange(bounds.shape[0] - 1):
        lo, hi = bounds[part], bounds[part + 1]
        longest = longest_row(indptr[lo:hi + 1])
        block = np.empty((longest, k), dtype=np.float32)
        weighted = np.empty((longest, k), dtype=np.float32)
        extra = np.empty(longest, dtype=np.float32)
        a = np.empty((k, k), dtype=np.float64)
        rhs = np.empty(k, dtype=np.float64)
        short = min(short_max, longest)
        m = np.empty((short, short), dtype=np.float64)
        w = np.empty(short, dtype=np.float64)
        scaled_block = np.empty((short, k), dtype=np.float64)
        root_inv = np.empty(k, dtype=np.float64)
        for f in range(k):
            root_inv[f] = 1.0 / np.sqrt(eigvals[f])
        for u in range(lo, hi):
            n = indptr[u + 1] - indptr[u]
            if 0 < n <= short:
                if scaled:
                    for f in range(k):
                        root_inv[f] = 1.0 / np.sqrt(eigvals[f] + row_reg[u])
                if _woodbury_row(indptr, indices, confidence, rotated, u, root_inv, eigvecs,
                                 scaled_block, m, w, rhs, a[0]):
                    for f in range(k):
                        factors[u, f] = a[0, f]
                    continue
            n = _gather(indptr, indices, confidence, other, u, block, extra)
            rhs[:] = 0.0
            for q in range(n):
                c = extra[q] + np.float32(1.0)
                for f in range(k):
                    weighted[q, f] = extra[q] * block[q, f]
                    rhs[f] += c * block[q, f]
            if n > 0:
                # (np.dot's out= form would stop numba caching this kernel: "dynamic globals")
                product = np.dot(weighted[:n].T, block[:n])
                for f in range(k):
                    for g in range(k):
                        a[f, g] = product[f, g]
            else:
                a[:, :] = 0.0
            for f in range(k):
                for g in range(f + 1):
                    a[f, g] += gram[f, g]
                if scaled:
                    a[f, f] += row_reg[u]
            if cholesky(a, k):
                solve_lower(a, rhs, k)
                solve_upper_t(a, rhs, k)
                for f in range(k):
                    factors[u, f] = rhs[f]
            else:
                for f in range(k):
                    factors[u, f] = 0.0


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def implicit_loss(indptr, indices, confidence, user_factors, item_factors, gram_items):
    """``Σ_{u,i} c_ui (p_ui − x_u·y_i)² `` over every cell, without visiting the zeros.

    Uses ``Σ_i (x_u·y_i)² = x_uᵀ (YᵀY) x_u`` for the unobserved cells (c = 1, p = 0)
    and corrects the observed ones. ``gram_items`` is ``YᵀY`` (no λ).
    """
    n_users = user_factors.shape[0]
    k = user_factors.shape[1]
    per_user = np.zeros(n_users, dtype=np.float64)
    for u in numba.prange(n_users):
        total = 0.0
        for f in range(k):
            s = 0.0
            for g in range(k):
                s += gram_items[f, g] * user_factors[u, g]
            total += s * user_factors[u, f]
        for q in range(indptr[u], indptr[u + 1]):
            i = indices[q]
            c = confidence[q]
            dot = 0.0
            for f in range(k):
                dot += user_factors[u, f] * item_factors[i, f]
            total += c * (1.0 - dot) ** 2 - dot * dot
        per_user[u] = total
    return ordered_sum(per_user)
