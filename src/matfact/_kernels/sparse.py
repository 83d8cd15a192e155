"""Sparse × dense products, parallel over rows (numba).

SciPy's ``csr_matrix @ ndarray`` runs on one core; NMF and randomized SVD
spend most of their time in these products, so they use these kernels
instead. Pass the CSR of ``Xᵀ`` (``X.T.tocsr()``, built once) for ``Xᵀ D``.
NumPy reference::

    out = X @ dense             # X a scipy.sparse.csr_matrix
"""

from __future__ import annotations

import numba
import numpy as np

from matfact._kernels._common import FASTMATH

__all__ = ["csr_times_dense"]


@numba.njit(cache=True, parallel=True, fastmath=FASTMATH)
def csr_times_dense(indptr, indices, data, dense, out):
    """``out = X @ dense`` for ``X`` in CSR, written into ``out``.

    Parameters
    ----------
    indptr, indices, data : CSR of ``X`` (n_rows × n_cols)
    dense : array of shape (n_cols, k), C-contiguous
    out : array of shape (n_rows, k), overwritten
    """
    n_rows = indptr.shape[0] - 1
    k = dense.shape[1]
    n_chunks = min(n_rows, 256)
    for chunk in numba.prange(n_chunks):
        # A private accumulator: writing through ``out`` on every term would force a
        # store per product (the compiler cannot rule out that ``out`` aliases ``dense``).
        acc = np.empty(k, dtype=out.dtype)
        for u in range(chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks):
            acc[:] = 0.0
            for p in range(indptr[u], indptr[u + 1]):
                value = data[p]
                j = indices[p]
                for f in range(k):
                    acc[f] += value * dense[j, f]
            for f in range(k):
                out[u, f] = acc[f]
    return out
