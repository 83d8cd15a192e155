"""Kernels of non-negative matrix factorization (numba).

Whole-matrix mode (every cell counts, zeros included) factors ``X ≈ W H``:

- :func:`cd_rows` — coordinate descent (HALS) on the rows of ``W`` given
  ``HHᵀ`` and ``XHᵀ``, the update of scikit-learn's ``solver="cd"``, rows in
  parallel and optionally repeated while cheap (Gillis & Glineur 2012). The
  ``H`` update is the same call on the transposed problem.
- :func:`kl_ratio_times` — ``(X / WH) Hᵀ`` evaluated at the non-zeros of a
  sparse ``X`` only, the expensive part of the Kullback–Leibler
  multiplicative update; :func:`kl_divergence_sparse` its loss.

Masked mode (only observed cells count, as for ratings) uses
:func:`masked_cd_rows`: each row's non-negative least squares
``min_{w ≥ 0, b} ½ Σ_{i∈R(u)} (r_ui − μ − b − b_i − w·h_i)² + penalties``
by coordinate descent on the row's residuals, and :func:`masked_mu_rows`,
the weighted multiplicative update of Zhang et al. (2006). NumPy reference
of one masked coordinate update (``e`` the row's residuals, ``h`` the
gathered item factors)::

    num = e @ h[:, f] + w[f] * (h[:, f] @ h[:, f])
    new = max(0, (num - s * l1) / (h[:, f] @ h[:, f] + s * l2))
    e -= (new - w[f]) * h[:, f]; w[f] = new
"""

from __future__ import annotations

import numba
import numpy as np

from matfact._kernels._common import FASTMATH, longest_row, ordered_sum

__all__ = ["cd_rows", "kl_ratio_times", "kl_divergence_sparse", "masked_cd_rows",
           "masked_mu_rows"]

#: Rows gathered per tile before being transposed into a factor-major block.
_TILE = 16
#: Rows of ``W`` updated together by :func:`cd_rows` (two AVX-512 registers of float32: two chains in flight).
_LANES = 32
#: Work units of a parallel half-step (fixed, so results do not depend on the thread count).
_CHUNKS = 256


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def cd_rows(W, HHt, XHt, permutation, max_sweeps, inner_tol):
    """Coordinate descent on every row of ``W`` for ``½‖X − W H‖²`` (+ penalties).

    The penalties are already folded in by the caller: the L2 weight on the
    diagonal of ``HHt`` and the L1 weight subtracted from ``XHt``. Rows are
    independent given ``HHt`` and ``XHt``; the first sweep is exactly
    scikit-learn's ``_update_cdnmf_fast``. Rows go in groups of
    :data:`_LANES`, stored transposed, so each coordinate's gradient is
    computed for the whole group in SIMD lanes: one row alone is a chain of
    dependent dot products and divisions that leaves the core idle.

    Parameters
    ----------
    W : array of shape (n_rows, k), updated in place
    HHt : array of shape (k, k)
    XHt : array of shape (n_rows, k)
    permutation : int64 array of shape (k,)
        The order the coordinates are visited in.
    max_sweeps : int
        Sweeps over the coordinates; a group stops early once a sweep moves each
        of its rows by at most ``inner_tol`` times that row's first move.
    inner_tol : float

    Returns
    -------
    violation : float
        Σ |projected gradient| before each coordinate's first update, the
        quantity scikit-learn's stopping rule compares across iterations.
    """
    n_rows, k = W.shape
    n_groups = (n_rows + _LANES - 1) // _LANES
    violation = np.zeros(n_groups, dtype=np.float64)
    for group in numba.prange(n_groups):
        r0 = group * _LANES
        width = min(_LANES, n_rows - r0)
        rows = np.zeros((k, _LANES), dtype=W.dtype)
        grad = np.empty(_LANES, dtype=W.dtype)
        first_move = np.zeros(_LANES, dtype=np.float64)
        move = np.empty(_LANES, dtype=np.float64)
        for lane in range(width):
            for f in range(k):
                rows[f, lane] = W[r0 + lane, f]
        total = 0.0
        for sweep in range(max_sweeps):
            move[:] = 0.0
            for s in range(k):
                t = permutation[s]
                for lane in range(width):
                    grad[lane] = -XHt[r0 + lane, t]
                for r in range(k):
                    h = HHt[t, r]
                    for lane in range(width):
                        grad[lane] += h * rows[r, lane]
                hess = HHt[t, t]
                for lane in range(width):
                    old = rows[t, lane]
                    if sweep == 0:
                        total += abs(min(0.0, grad[lane]) if old == 0 else grad[lane])
                    if hess != 0:
                        new = max(old - grad[lane] / hess, 0.0)
                        move[lane] += (new - old) * (new - old)
                        rows[t, lane] = new
            if sweep == 0:
                first_move[:] = move
            done = True
            for lane in range(width):
                if move[lane] > inner_tol * inner_tol * first_move[lane]:
                    done = False
            if done and sweep > 0 or sweep == 0 and move.max() == 0.0:
                break
        for lane in range(width):
            for f in range(k):
                W[r0 + lane, f] = rows[f, lane]
        violation[group] = total
    return ordered_sum(violation)


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def kl_ratio_times(indptr, indices, data, W, Ht, floor, out):
    """``out = (X / (W H)) Hᵀ`` with the quotient taken at ``X``'s non-zeros only.

    ``X`` is CSR (n_rows × n_cols), ``Ht`` is ``Hᵀ`` (n_cols × k); products
    below ``floor`` count as ``floor`` (scikit-learn's guard against 0/0).
    For the ``H`` update pass the CSR of ``Xᵀ`` with ``W`` and ``Ht`` swapped.
    """
    n_rows, k = W.shape
    for u in numba.prange(n_rows):
        for f in range(k):
            out[u, f] = 0.0
        for p in range(indptr[u], indptr[u + 1]):
            j = indices[p]
            dot = 0.0
            for f in range(k):
                dot += W[u, f] * Ht[j, f]
            ratio = data[p] / max(dot, floor)
            for f in range(k):
                out[u, f] += ratio * Ht[j, f]
    return out


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def kl_divergence_sparse(indptr, indices, data, W, Ht, floor):
    """``Σ_{x>0} x log(x / wh) − Σ x``: the non-zero part of the generalized KL divergence.

    The caller adds ``Σ_{all cells} wh = Σ_f (Σ_i W_if)(Σ_j H_fj)``.
    """
    n_rows, k = W.shape
    per_row = np.zeros(n_rows, dtype=np.float64)
    for u in numba.prange(n_rows):
        total = 0.0
        for p in range(indptr[u], indptr[u + 1]):
            j = indices[p]
            dot = 0.0
            for f in range(k):
                dot += W[u, f] * Ht[j, f]
            x = float(data[p])
            if x > 0:
                total += x * np.log(x / max(dot, floor)) - x
        per_row[u] = total
    return ordered_sum(per_row)


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def masked_cd_rows(indptr, indices, values, other, other_bias, global_mean, factors, bias,
                   use_bias, l1, l2, reg_bias, scale_by_count, sweeps):
    """One masked half-step: each row's non-negative least squares by coordinate descent.

    Parameters
    ----------
    indptr, indices, values : CSR of the observed cells of the rows
    other : float32 array of shape (n_other, k)
        The other side's factors, fixed.
    other_bias : float32 array of shape (n_other,) or (0,)
    global_mean : float
    factors : float32 array of shape (n_rows, k), updated in place (kept ≥ 0)
    bias : float32 array of shape (n_rows,) or (0,), updated in place
    use_bias : bool
    l1, l2 : float
        Penalty ``l1‖w‖₁ + ½ l2‖w‖²`` per row, times the row's count when
        ``scale_by_count`` (weighted-λ).
    reg_bias : float
        Penalty ``½ reg_bias b²`` per row, never scaled: a rare row's bias
        shrinks towards zero, as in the classic baseline estimates.
    sweeps : int
        Coordinate sweeps per row (the row's residuals stay in cache).

    Returns
    -------
    sse : float
        ``Σ e²`` over the observed cells after the update.
    """
    n_rows, k = factors.shape
    sse = np.zeros(_CHUNKS, dtype=np.float64)
    for chunk in numba.prange(_CHUNKS):
        lo = chunk * n_rows // _CHUNKS
        hi = (chunk + 1) * n_rows // _CHUNKS
        # Scratch once per chunk, sized for its longest row; items stored by factor (k × n)
        # so that a coordinate's pass reads one contiguous row.
        longest = longest_row(indptr[lo:hi + 1])
        block = np.empty((k, longest), dtype=np.float32)
        resid = np.empty(longest, dtype=np.float32)
        diag = np.empty(k, dtype=np.float32)
        tile = np.empty((_TILE, k), dtype=np.float32)
        chunk_sse = 0.0
        for u in range(lo, hi):
            start = indptr[u]
            n = indptr[u + 1] - start
            if n == 0:
                for f in range(k):
                    factors[u, f] = 0.0
                if use_bias:
                    bias[u] = 0.0
                continue
            own_bias = bias[u] if use_bias else np.float32(0.0)
            diag[:] = 0.0
            # Gathered a tile of rows at a time, then written out transposed: whole cache
            # lines per factor instead of k scattered stores per rating (3× faster).
            for t0 in range(0, n, _TILE):
                width = min(_TILE, n - t0)
                # A plain copy first: its loads are independent, so many rows are in flight.
                for t in range(width):
                    j = indices[start + t0 + t]
                    for f in range(k):
                        tile[t, f] = other[j, f]
                for t in range(width):
                    q = t0 + t
                    e = values[start + q] - global_mean - own_bias
                    if use_bias:
                        e -= other_bias[indices[start + q]]
                    for f in range(k):
                        y = tile[t, f]
                        diag[f] += y * y
                        e -= factors[u, f] * y
                    resid[q] = e
                for f in range(k):
                    for t in range(width):
                        block[f, t0 + t] = tile[t, f]
            scale = float(n) if scale_by_count else 1.0
            for _ in range(sweeps):
                # Each pass applies one coordinate's change to the residuals and, in the
                # same loop, takes the next coordinate's dot product: one pass per coordinate.
                delta = np.float32(0.0)
                if use_bias:
                    total = 0.0
                    for q in range(n):
                        total += resid[q]
                    new = (total + n * own_bias) / (n + reg_bias)
                    delta = np.float32(new - own_bias)
                    own_bias += delta
                dot = 0.0
                for q in range(n):
                    resid[q] -= delta
                    dot += resid[q] * block[0, q]
                for f in range(k):
                    old = factors[u, f]
                    denom = diag[f] + scale * l2
                    new = (dot + old * diag[f] - scale * l1) / denom if denom > 0 else 0.0
                    change = np.float32(max(new, 0.0) - old)
                    factors[u, f] = old + change
                    dot = 0.0
                    if f + 1 < k:
                        for q in range(n):
                            resid[q] -= change * block[f, q]
                            dot += resid[q] * block[f + 1, q]
                    elif change != 0:
                        for q in range(n):
                            resid[q] -= change * block[f, q]
            if use_bias:
                bias[u] = own_bias
            for q in range(n):
                chunk_sse += resid[q] * resid[q]
        sse[chunk] = chunk_sse
    return ordered_sum(sse)


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def masked_mu_rows(indptr, indices, values, other, factors, l1, l2, scale_by_count, floor):
    """One weighted multiplicative update of every row (Zhang et al. 2006), observed cells only.

    ``w ← w ∘ (Σ r h) / (Σ (w·h) h + s (l1 + l2 w))`` with ``s`` the row's count
    when ``scale_by_count``; values must be ≥ 0. Returns ``Σ e²`` before the update.
    """
    n_rows, k = factors.shape
    sse = np.zeros(n_rows, dtype=np.float64)
    for u in numba.prange(n_rows):
        num = np.zeros(k, dtype=np.float64)
        den = np.zeros(k, dtype=np.float64)
        total = 0.0
        n = indptr[u + 1] - indptr[u]
        for p in range(indptr[u], indptr[u + 1]):
            j = indices[p]
            dot = 0.0
            for f in range(k):
                dot += factors[u, f] * other[j, f]
            r = values[p]
            total += (r - dot) * (r - dot)
            for f in range(k):
                num[f] += r * other[j, f]
                den[f] += dot * other[j, f]
        scale = float(n) if scale_by_count else 1.0
        for f in range(k):
            d = den[f] + scale * (l1 + l2 * factors[u, f])
            factors[u, f] = factors[u, f] * num[f] / max(d, floor)
        sse[u] = total
    return ordered_sum(sse)
