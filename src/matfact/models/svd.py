r"""Truncated SVD: the solvers, and :class:`PureSVD`; the transformer is in ``truncated_svd``.

Both rest on one randomized SVD (Halko, Martinsson & Tropp 2011): a range finder
with power iterations whose sparse products ``X Ω`` and ``Xᵀ Ω`` run in parallel
over rows (:func:`matfact._kernels.sparse.csr_times_dense`; SciPy's sparse
product uses one core), while the small dense steps (LU, QR and the SVD of the
projected matrix) go to LAPACK through SciPy. ``algorithm="arpack"`` calls
:func:`scipy.sparse.linalg.svds` instead. See ``docs/svd.md``.

:class:`~matfact.models.truncated_svd.TruncatedSVD`, the scikit-learn transformer on
the same solvers, lives in its own module so that loading a ``PureSVD`` does not
import scikit-learn; ``from matfact.models.svd import TruncatedSVD`` still works.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from matfact._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Interval,
    Options,
    check_random_state,
)
from matfact._threads import numba_threads
from matfact.data.interactions import Interactions
from matfact.exceptions import ParameterError
from matfact.models._matrix import (
    MatrixProducts,
    csr_parts,
    sparse_times,
)
from matfact.models.base import FactorModel, UserVector

__all__ = ["PureSVD"]

_ALGORITHMS = ("randomized", "arpack")
_NORMALIZERS = ("auto", "QR", "LU", "none")


# ---------------------------------------------------------------------- input checks
def _check_rank(k: int, shape: tuple[int, int], algorithm: str, owner: str, name: str,
                axes: tuple[str, str] = ("n_samples", "n_features")) -> None:
    """ARPACK needs ``k < min(shape)``; the randomized solver ``k ≤ min(shape)``.

    The message spells each axis out (``n_samples = 1``): scikit-learn's checks, and
    users, look for the axis that is too short.
    """
    limit = min(shape)
    sizes = f"{axes[0]} = {shape[0]}, {axes[1]} = {shape[1]}"
    if algorithm == "arpack" and k >= limit:
        raise ParameterError(f"{owner}: {name}={k} must be < min({axes[0]}, {axes[1]}) = "
                             f"{limit} for algorithm='arpack' ({sizes}); lower {name} or "
                             f"use algorithm='randomized'")
    if k > limit:
        raise ParameterError(f"{owner}: {name}={k} must be ≤ min({axes[0]}, {axes[1]}) = "
                             f"{limit} ({sizes}); lower {name}")


# ---------------------------------------------------------------------- solvers
def _lu(matrix: np.ndarray) -> np.ndarray:
    # P L of the pivoted LU: a well-conditioned basis of the same span, cheaper than QR.
    return scipy.linalg.lu(matrix, permute_l=True, check_finite=False)[0]


def _qr(matrix: np.ndarray) -> np.ndarray:
    return scipy.linalg.qr(matrix, mode="economic", check_finite=False)[0]


def _range_finder(op: MatrixProducts, size: int, n_iter: int, normalizer: str,
                  rng: np.random.Generator) -> np.ndarray:
    """An orthonormal ``Q`` of shape (n_rows, size) with ``X ≈ Q Qᵀ X`` (Halko et al., alg. 4.4).

    ``Q = orth((X Xᵀ)^q X Ω)`` for a Gaussian ``Ω``: each power iteration
    multiplies the weight of the leading singular directions by ``σ²`` relative
    to the tail, and the LU/QR between products keeps the columns from all
    collapsing onto the first one in floating point.
    """
    if normalizer == "auto":
        normalizer = "none" if n_iter <= 2 else "LU"
    normalize = {"LU": _lu, "QR": _qr, "none": lambda m: m}[normalizer]
    # Drawn in float64 whatever X's dtype, so float32 and float64 inputs start alike.
    Q = rng.standard_normal((op.shape[1], size)).astype(op.dtype, copy=False)
    for _ in range(n_iter):
        Q = normalize(op.dot(Q))    # X Q      (n_rows, size)
        Q = normalize(op.tdot(Q))   # Xᵀ Q     (n_columns, size)
    return _qr(op.dot(Q))


def _randomized_svd(op: MatrixProducts, k: int, n_iter: int, n_oversamples: int, normalizer: str,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-``k`` (U, s, Vᵀ) of ``op``'s matrix by the randomized range finder.

    With ``Q`` from :func:`_range_finder` (``k + n_oversamples`` columns), the
    small matrix ``B = Qᵀ X`` has the SVD ``Ẑ S Wᵀ``, and ``X ≈ (Q Ẑ) S Wᵀ``.
    ``B`` is formed as ``Bᵀ = Xᵀ Q`` (one more row-parallel product).
    """
    # Work on the orientation whose random block Ω is the smaller one (as scikit-learn).
    transpose = op.shape[0] < op.shape[1]
    work = op.transposed() if transpose else op
    size = min(k + n_oversamples, min(op.shape))
    Q = _range_finder(work, size, n_iter, normalizer, rng)
    bt = work.tdot(Q)                                           # Bᵀ = Xᵀ Q   (n_columns, size)
    w, s, zt = scipy.linalg.svd(bt, full_matrices=False, check_finite=False)   # Bᵀ = W S Ẑᵀ
    u = Q @ zt.T                                                # U = Q Ẑ
    u, s, v = u[:, :k], s[:k], w[:, :k]
    if transpose:
        u, v = v, u
    return np.ascontiguousarray(u), s, np.ascontiguousarray(v.T)


def _arpack_svd(X: sp.csr_matrix | np.ndarray, k: int, tol: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.sparse.linalg import svds

    # The start vector as scikit-learn draws it (uniform on [-1, 1]), from our generator.
    v0 = rng.uniform(-1.0, 1.0, min(X.shape))
    u, s, vt = svds(X, k=k, tol=tol, v0=v0)
    order = np.argsort(s, kind="stable")[::-1]  # svds returns them ascending
    return np.ascontiguousarray(u[:, order]), s[order], np.ascontiguousarray(vt[order])


def _svd_flip(u: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make each row of ``vt`` have its largest-magnitude entry positive (sklearn's
    ``svd_flip(u, vt, u_based_decision=False)``, used by its ``TruncatedSVD``)."""
    biggest = np.argmax(np.abs(vt), axis=1)
    signs = np.sign(vt[np.arange(len(vt)), biggest])
    signs[signs == 0] = 1
    return u * signs[None, :], vt * signs[:, None]


def _truncated_svd(X: sp.csr_matrix | np.ndarray, k: int, *, algorithm: str, n_iter: int,
                   n_oversamples: int, normalizer: str, tol: float, rng: np.random.Generator,
                   n_threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-``k`` ``(U, s, Vᵀ)`` of a checked matrix, sign-flipped as scikit-learn."""
    if algorithm == "arpack":
        u, s, vt = _arpack_svd(X, k, tol, rng)
    else:
        op = MatrixProducts(X)
        size = min(k + n_oversamples, min(X.shape))
        if op.sparse:
            with numba_threads(n_threads, op.nnz * size):
                u, s, vt = _randomized_svd(op, k, n_iter, n_oversamples, normalizer, rng)
        else:  # dense products are BLAS calls: let BLAS use its own threads
            u, s, vt = _randomized_svd(op, k, n_iter, n_oversamples, normalizer, rng)
    u, vt = _svd_flip(u, vt)
    return u, s, vt


def _project(X: sp.csr_matrix | np.ndarray, components: np.ndarray,
             n_threads: int | None) -> np.ndarray:
    """``X @ componentsᵀ`` (the coordinates of each row on the components)."""
    dtype = np.result_type(X.dtype, components.dtype)
    basis = np.ascontiguousarray(components.T, dtype=dtype)
    if not sp.issparse(X):
        return X.astype(dtype, copy=False) @ basis
    indptr, indices, data = csr_parts(X)
    data = data.astype(dtype, copy=False)
    with numba_threads(n_threads, X.nnz * basis.shape[1]):
        return sparse_times((indptr, indices, data), basis)


def _total_variance(X: sp.csr_matrix | np.ndarray) -> float:
    """Σ_j Var(X[:, j]) (population variance), accumulated in float64."""
    if not sp.issparse(X):
        return float(np.var(X, axis=0, dtype=np.float64).sum())
    n_rows, n_cols = X.shape
    data = X.data.astype(np.float64)
    mean = np.bincount(X.indices, data, minlength=n_cols) / n_rows
    # Two-pass: squared deviations of the stored entries, plus each column's zeros' (0 − mean)².
    squares = np.bincount(X.indices, (data - mean[X.indices]) ** 2, minlength=n_cols)
    zeros = n_rows - np.bincount(X.indices, minlength=n_cols)
    return float(((squares + zeros * mean**2) / n_rows).sum())


def _solver_constraints() -> dict[str, list]:
    return {
        "algorithm": [Options(*_ALGORITHMS)],
        "n_iter": [Interval(int, 0, None)],
        "random_state": RANDOM_STATE,
        "n_threads": N_THREADS,
    }


# ---------------------------------------------------------------------- PureSVD
class PureSVD(FactorModel):
    r"""PureSVD (Cremonesi, Koren & Turrin 2010): a truncated SVD of the user × item matrix.

    Missing cells are zeros, so the model is the best rank-``k`` approximation
    of the whole interaction matrix ``R`` (ratings, or weights for implicit
    data) in the Frobenius norm,

    .. math::
        R \approx U_k \Sigma_k V_k^\top, \qquad
        \hat r_{ui} = (U_k \Sigma_k)_u \cdot (V_k)_i .

    The scores rank items; they are not ratings (unrated cells pull them toward
    0), so :meth:`predict` does not clip them. Because ``U_k Σ_k = R V_k``, a
    user's scores are the projection of their row onto the item space,
    ``r_u V_k V_kᵀ``, and :meth:`fold_in` places a new user the same way:
    ``p = r V_k``, with ``r`` their (sparse) history.

    Parameters
    ----------
    n_factors : int, default=50
        Rank ``k`` (≤ min(n_users, n_items); < for ``"arpack"``).
    normalize : bool, default=False
        Item-norm scaling (EigenRec, Nikolakopoulos et al. 2019, with :math:`d = 1/2`):
        ``V_k`` comes from the SVD of :math:`R D`, :math:`D = \operatorname{diag}(\lVert
        r_i\rVert^{-1/2})`, which damps the popular items that dominate the leading
        singular vectors; the unscaled rows are scored, :math:`r_u V_k V_k^\top`, so
        ``user_factors_`` are :math:`R V_k` (folded-in users alike).
    algorithm : {"randomized", "arpack"}, default="randomized"
    n_iter : int, default=5
        Power iterations of the randomized solver.
    random_state : int, numpy.random.Generator or None, default=None
    n_threads : int or None, default=None
        Threads of the sparse products.

    Attributes
    ----------
    user_factors_ : ndarray of shape (n_users, n_factors), float32
        ``U_k Σ_k`` (``R V_k`` with ``normalize=True``).
    item_factors_ : ndarray of shape (n_items, n_factors), float32
        ``V_k`` (orthonormal columns).
    singular_values_ : ndarray of shape (n_factors,), float32
        Of ``R`` (of ``R D`` with ``normalize=True``).
    global_mean_ : float
        Always 0 (no biases).

    Notes
    -----
    An unknown user is ranked by popularity (the model has no item biases), as
    for every model without them.

    References
    ----------
    P. Cremonesi, Y. Koren, R. Turrin. Performance of recommender algorithms on
    top-N recommendation tasks. RecSys 2010.
    A. N. Nikolakopoulos, V. Kalantzis, E. Gallopoulos, J. D. Garofalakis.
    EigenRec: generalizing PureSVD for effective and efficient top-N
    recommendations. Knowledge and Information Systems 58, 2019.

    Examples
    --------
    >>> import matfact
    >>> from matfact.models.svd import PureSVD
    >>> data = matfact.Interactions.from_arrays([1, 1, 2, 3], [10, 20, 10, 30])
    >>> model = PureSVD(n_factors=2, random_state=0).fit(data, progress=False)
    >>> model.recommend([2], n=1)[0].tolist()
    [[20]]
    """

    _ranks_only = True

    _parameter_constraints: ClassVar[dict] = {
        "n_factors": [Interval(int, 1, None)],
        "normalize": [BOOLEAN],
        **_solver_constraints(),
    }

    def __init__(self, *, n_factors: int = 50, normalize: bool = False,
                 algorithm: str = "randomized", n_iter: int = 5, random_state: Any = None,
                 n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.normalize = normalize
        self.algorithm = algorithm
        self.n_iter = n_iter
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        _check_rank(self.n_factors, data.shape, self.algorithm, type(self).__name__,
                    "n_factors", ("n_users", "n_items"))
        ratings = data.to_scipy()
        matrix = ratings
        if self.normalize:
            # R D with D = diag(‖r_i‖^(-1/2)): EigenRec's item scaling, d = 1/2.
            norms = np.sqrt(np.bincount(ratings.indices, ratings.data.astype(np.float64) ** 2,
                                        minlength=data.n_items))
            scale = 1.0 / np.sqrt(np.where(norms > 0, norms, 1.0))
            matrix = sp.csr_matrix(
                ((ratings.data * scale[ratings.indices]).astype(np.float32), ratings.indices,
                 ratings.indptr), shape=ratings.shape)
        rng = check_random_state(self.random_state)
        u, s, vt = _truncated_svd(matrix, self.n_factors, algorithm=self.algorithm,
                                  n_iter=self.n_iter, n_oversamples=10, normalizer="auto",
                                  tol=0.0, rng=rng, n_threads=self.n_threads)
        if self.normalize:
            # Users are the projections of their unscaled rows, p_u = r_u V (as in fold-in).
            factors = _project(ratings, vt, self.n_threads)
        else:
            factors = u * s  # U Σ, which is R V for an exact SVD
        self.rating_scale_ = None  # scores rank items; they are not ratings
        self.global_mean_ = 0.0
        self.user_factors_ = np.ascontiguousarray(factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)
        self.singular_values_ = s.astype(np.float32)

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        # p = r V_k: the projection that gives the training users their U_k Σ_k = R V_k.
        values = np.asarray(values, dtype=np.float64)
        factors = values @ self.item_factors_[items].astype(np.float64)
        return UserVector(factors.astype(np.float32), 0.0)


def __getattr__(name: str) -> Any:
    # The transformer moved to matfact.models.truncated_svd (it imports scikit-learn,
    # which a PureSVD does not need); its old import path keeps working.
    if name == "TruncatedSVD":
        from matfact.models.truncated_svd import TruncatedSVD

        return TruncatedSVD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
