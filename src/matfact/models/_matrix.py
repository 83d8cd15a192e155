"""Matrices as the factorization models take them: checked input, CSR parts, products.

Shared by the whole-matrix models (NMF as a transformer, truncated SVD): the input
checks with their messages, and ``X @ D`` / ``Xᵀ @ D`` on the numba threads for sparse
``X`` (SciPy's sparse product runs on one core), BLAS for dense ``X``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from matfact._kernels.sparse import csr_times_dense
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError

__all__ = ["as_matrix", "csr_parts", "sparse_times", "MatrixProducts", "NonNumericError"]


class NonNumericError(DataError, TypeError):
    """A matrix holds values that are not numbers.

    Also a ``TypeError``, as NumPy's (and scikit-learn's ``check_array``) for the
    same input, so code written against scikit-learn catches it unchanged.
    """


def _first_non_number(X: np.ndarray) -> str:
    """The position and value of the first cell of an object array that is not a number."""
    for position, value in np.ndenumerate(X):
        try:
            float(value)
        except (TypeError, ValueError):
            return f"X[{', '.join(map(str, position))}] = {value!r}"
    return "a cell"


def as_matrix(X: Any, what: str) -> sp.csr_matrix | np.ndarray:
    """``X`` as a float32/float64 CSR matrix or 2-D ndarray, finite and non-empty.

    An :class:`~matfact.Interactions` gives its users × items CSR (ratings, or
    weights for implicit data), shared with its cache: never modified here.
    """
    if isinstance(X, Interactions):
        X = X.to_scipy()
    if sp.issparse(X):
        if X.ndim != 2:
            raise DataError(f"{what} must be 2-D, got shape {X.shape}")
        X = sp.csr_matrix(X) if X.format != "csr" else X
        if not X.has_canonical_format:
            # Repeated entries would count twice in the column variances; the products
            # would not mind. Sum them in a copy: the caller's matrix stays as it is.
            X = X.copy()
            X.sum_duplicates()
        values = X.data
    else:
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as err:
            raise DataError(f"{what} must be a numeric 2-D array or sparse matrix: {err}") from None
        if X.ndim != 2:
            raise DataError(f"{what} must be a 2-D array (n_samples, n_features), got shape "
                            f"{X.shape}. Reshape your data with X.reshape(1, -1) if it is a "
                            f"single sample")
        values = X
    kind = X.dtype.kind
    if kind == "c":
        raise DataError(f"Complex data not supported: {what} is complex, TruncatedSVD works "
                        f"on real matrices")
    if kind not in "biuf":
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as err:
            where = "" if sp.issparse(X) else f" ({_first_non_number(X)})"
            raise NonNumericError(f"{what} must be numeric, got dtype {X.dtype}{where}: "
                                  f"{err}") from None
        values = X.data if sp.issparse(X) else X
    elif X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
        values = X.data if sp.issparse(X) else X
    for axis, name in enumerate(("sample", "feature")):
        if X.shape[axis] == 0:
            # The wording of scikit-learn's check_array, which its users may match on.
            raise DataError(f"{what} is empty: 0 {name}(s) (shape={X.shape}) while a minimum "
                            f"of 1 is required.")
    if not np.isfinite(values).all():
        raise DataError(f"{what} contains NaN or infinite values; drop or impute them first")
    return X


def csr_parts(matrix: sp.csr_matrix,
              dtype: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr int64, indices int32, data)`` of a CSR matrix for the numba kernels.

    No copies when the dtypes already fit: the matrix may be an Interactions' cached
    CSR, and at 30M interactions each copy is 120 MB. ``dtype`` converts the data.
    """
    return (matrix.indptr.astype(np.int64, copy=False),
            matrix.indices.astype(np.int32, copy=False),
            np.ascontiguousarray(matrix.data, dtype=dtype))


def sparse_times(parts: tuple[np.ndarray, np.ndarray, np.ndarray],
                  dense: np.ndarray) -> np.ndarray:
    """``X @ dense`` for ``X`` given by its CSR parts, in X's dtype, on the numba threads."""
    indptr, indices, data = parts
    out = np.empty((len(indptr) - 1, dense.shape[1]), dtype=data.dtype)
    return csr_times_dense(indptr, indices, data, np.ascontiguousarray(dense, dtype=data.dtype),
                           out)


class MatrixProducts:
    """``X @ D`` and ``Xᵀ @ D`` for a dense or CSR ``X``; :meth:`transposed` swaps them.

    For a sparse ``X`` the CSR of ``Xᵀ`` is built once, so both products are
    row-parallel kernel calls. ``rows`` / ``cols`` hold the CSR parts of ``X`` and
    ``Xᵀ`` (sparse) or ``X`` and its transposed view (dense), for kernels of their own.
    """

    def __init__(self, X: sp.csr_matrix | np.ndarray) -> None:
        self.shape = X.shape
        self.dtype = X.dtype
        self.sparse = sp.issparse(X)
        if self.sparse:
            self.rows = csr_parts(X)
            self.cols = csr_parts(X.T.tocsr())
            self.nnz = X.nnz
        else:
            self.rows, self.cols = X, X.T
            self.nnz = X.size

    def dot(self, dense: np.ndarray) -> np.ndarray:
        if self.sparse:
            return sparse_times(self.rows, dense)
        return self.rows @ dense.astype(self.dtype, copy=False)

    def tdot(self, dense: np.ndarray) -> np.ndarray:
        if self.sparse:
            return sparse_times(self.cols, dense)
        return self.cols @ dense.astype(self.dtype, copy=False)

    def transposed(self) -> MatrixProducts:
        other = object.__new__(MatrixProducts)
        other.__dict__.update(self.__dict__)
        other.shape = self.shape[::-1]
        other.rows, other.cols = self.cols, self.rows
        return other
