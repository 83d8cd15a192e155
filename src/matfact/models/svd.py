r"""Truncated SVD: :class:`TruncatedSVD` (a scikit-learn transformer) and :class:`PureSVD`.

Both rest on one randomized SVD (Halko, Martinsson & Tropp 2011): a range finder
with power iterations whose sparse products ``X Ω`` and ``Xᵀ Ω`` run in parallel
over rows (:func:`matfact._kernels.sparse.csr_times_dense`; SciPy's sparse
product uses one core), while the small dense steps (LU, QR and the SVD of the
projected matrix) go to LAPACK through SciPy. ``algorithm="arpack"`` calls
:func:`scipy.sparse.linalg.svds` instead. See ``docs/svd.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from matfact._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Interval,
    Options,
    check_random_state,
    validate_params,
)
from matfact._threads import numba_threads
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, ParameterError
from matfact.models._matrix import (
    MatrixProducts,
    as_matrix,
    csr_parts,
    sparse_times,
)
from matfact.models._sklearn import TransformerNotFittedError, check_features
from matfact.models.base import FactorModel, UserVector

__all__ = ["TruncatedSVD", "PureSVD"]

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


# ---------------------------------------------------------------------- TruncatedSVD
class TruncatedSVD(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""Dimensionality reduction by truncated SVD, a drop-in for scikit-learn's ``TruncatedSVD``.

    Finds the ``n_components`` leading singular triplets of ``X`` (no centring,
    so sparse input stays sparse),

    .. math::
        X \approx U_k \Sigma_k V_k^\top, \qquad
        \text{transform}(X) = X V_k, \qquad
        \text{inverse\_transform}(Z) = Z V_k^\top .

    The randomized solver (Halko et al. 2011) builds an orthonormal basis
    ``Q ≈ orth((X Xᵀ)^q X Ω)`` of ``X``'s leading column space from a Gaussian
    ``Ω`` with ``n_components + n_oversamples`` columns and ``q = n_iter`` power
    iterations, then takes the exact SVD of the small ``Qᵀ X``. For sparse
    input its products ``X Ω`` and ``Xᵀ Ω`` run in parallel over rows on
    ``n_threads`` threads (the CSR of ``Xᵀ`` is built once); the LU/QR/SVD steps
    are LAPACK calls. Results do not depend on the thread count.

    Parameters
    ----------
    n_components : int, default=2
        Number of singular triplets, ≤ min(n_samples, n_features) for
        ``"randomized"`` and < it for ``"arpack"``.
    algorithm : {"randomized", "arpack"}, default="randomized"
        ``"arpack"`` uses :func:`scipy.sparse.linalg.svds` (exact to ``tol``).
    n_iter : int, default=5
        Power iterations of the randomized solver (more: more accurate for slowly
        decaying spectra).
    n_oversamples : int, default=10
        Extra random columns beyond ``n_components`` (capped at min(shape)).
    power_iteration_normalizer : {"auto", "QR", "LU", "none"}, default="auto"
        Re-orthogonalization between power iterations; ``"auto"`` is ``"none"``
        for ``n_iter ≤ 2`` and ``"LU"`` otherwise (as scikit-learn).
    tol : float, default=0.0
        ARPACK's tolerance (0: machine precision); unused by the randomized solver.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the random block ``Ω`` (or ARPACK's start vector).
    n_threads : int or None, default=None
        Threads of the sparse products (``None``: every core numba may use, one for
        small matrices). BLAS is held to one thread meanwhile; dense input runs on
        BLAS's own threads.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        ``V_kᵀ``: the right singular vectors, the largest-magnitude entry of each
        row positive (scikit-learn's sign convention).
    singular_values_ : ndarray of shape (n_components,)
        In decreasing order.
    explained_variance_ : ndarray of shape (n_components,)
        Variance of each column of ``transform(X)`` on the training data.
    explained_variance_ratio_ : ndarray of shape (n_components,)
        ``explained_variance_`` over the total variance of ``X``'s columns.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When ``X`` had column names (a data frame); checked at :meth:`transform`.
    item_index_ : IdIndex or None
        The item vocabulary when fitted on an :class:`~matfact.Interactions`:
        its columns are those items, and a later ``Interactions`` given to
        :meth:`transform` is re-expressed in it.

    Notes
    -----
    Input: a NumPy array, a SciPy sparse matrix (converted to CSR), or an
    :class:`~matfact.Interactions` (its users × items matrix of ratings, or
    weights for implicit data). float32 input is computed in float32, other
    numbers in float64. The singular values and the signs are those of
    scikit-learn's ``TruncatedSVD``; the random numbers are not (NumPy's
    ``Generator`` rather than ``RandomState``), so randomized results agree to
    the accuracy of the method, not bit for bit.

    References
    ----------
    N. Halko, P.-G. Martinsson, J. A. Tropp. Finding structure with randomness:
    probabilistic algorithms for constructing approximate matrix decompositions.
    SIAM Review 53(2), 2011.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from matfact.models.svd import TruncatedSVD
    >>> X = sp.random(50, 20, density=0.3, random_state=0, format="csr")
    >>> svd = TruncatedSVD(n_components=3, random_state=0).fit(X)
    >>> svd.components_.shape, svd.transform(X).shape
    ((3, 20), (50, 3))
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "n_components": [Interval(int, 1, None)],
        **_solver_constraints(),
        "n_oversamples": [Interval(int, 0, None)],
        "power_iteration_normalizer": [Options(*_NORMALIZERS)],
        "tol": [Interval(float, 0, None)],
    }

    def __init__(self, n_components: int = 2, *, algorithm: str = "randomized", n_iter: int = 5,
                 n_oversamples: int = 10, power_iteration_normalizer: str = "auto",
                 tol: float = 0.0, random_state: Any = None, n_threads: int | None = None) -> None:
        self.n_components = n_components
        self.algorithm = algorithm
        self.n_iter = n_iter
        self.n_oversamples = n_oversamples
        self.power_iteration_normalizer = power_iteration_normalizer
        self.tol = tol
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, X: Any, y: Any = None) -> TruncatedSVD:
        """Fit the model on ``X``.

        Parameters
        ----------
        X : {ndarray, sparse matrix, Interactions} of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self
        """
        self.fit_transform(X)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit the model on ``X`` and return its reduced form.

        Parameters
        ----------
        X : {ndarray, sparse matrix, Interactions} of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            ``X V_k`` (``U_k Σ_k`` for exact ARPACK with ``tol=0``).
        """
        validate_params(self)
        item_index = X.item_index if isinstance(X, Interactions) else None
        given = X
        X = as_matrix(X, "X")
        if item_index is None:
            check_features(self, given, reset=True)
        else:  # columns named by the item vocabulary (item_index_), not by a data frame
            self.__dict__.pop("feature_names_in_", None)
        name = type(self).__name__
        _check_rank(self.n_components, X.shape, self.algorithm, name, "n_components")
        rng = check_random_state(self.random_state)
        u, s, vt = _truncated_svd(
            X, self.n_components, algorithm=self.algorithm, n_iter=self.n_iter,
            n_oversamples=self.n_oversamples, normalizer=self.power_iteration_normalizer,
            tol=self.tol, rng=rng, n_threads=self.n_threads)
        if self.algorithm == "arpack" and self.tol == 0:
            transformed = u * s
        else:
            # Approximate factors: U Σ ≠ X V, and transform(X) must be X V.
            transformed = _project(X, vt, self.n_threads)
        variance = np.var(transformed, axis=0, dtype=np.float64)
        total = _total_variance(X)
        self.components_ = vt
        self.singular_values_ = s
        self.explained_variance_ = variance.astype(X.dtype)
        self.explained_variance_ratio_ = (variance / total if total > 0
                                          else np.zeros_like(variance)).astype(X.dtype)
        self.n_features_in_ = X.shape[1]
        self.item_index_ = item_index
        return transformed

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise TransformerNotFittedError(f"this {type(self).__name__} is not fitted yet; "
                                            f"call fit() first")

    def _columns_of(self, X: Any) -> Any:
        """An Interactions' matrix with its items placed at the fitted item columns."""
        if self.item_index_ is None or X.item_index == self.item_index_:
            return X.to_scipy()
        codes = self.item_index_.get_indexer(X.item_ids)
        if (codes < 0).any():
            unknown = X.item_ids[codes < 0]
            raise DataError(f"{len(unknown)} item(s) unknown to the fitted model, e.g. "
                            f"{unknown[:5].tolist()}; keep only the fitted items "
                            f"(data.subset(items=...))")
        csr = X.to_scipy()
        return sp.csr_matrix((csr.data, codes[csr.indices], csr.indptr),
                             shape=(csr.shape[0], len(self.item_index_)))

    def transform(self, X: Any) -> np.ndarray:
        """Project ``X`` on the components: ``X V_k``.

        Parameters
        ----------
        X : {ndarray, sparse matrix, Interactions} of shape (n_samples, n_features)
            An ``Interactions`` is matched to the fitted items by id.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
        """
        self._check_fitted()
        if isinstance(X, Interactions):
            X = as_matrix(self._columns_of(X), "X")
            if X.shape[1] != self.n_features_in_:  # fitted on a matrix, not on these items
                raise DataError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                f"expecting {self.n_features_in_} features as input")
        else:
            given = X
            X = as_matrix(X, "X")
            check_features(self, given, reset=False)
        return _project(X, self.components_, self.n_threads)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map reduced data back to the feature space: ``Z V_kᵀ``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        self._check_fitted()
        Z = as_matrix(X, "X")
        if sp.issparse(Z):
            Z = Z.toarray()
        if Z.shape[1] != len(self.components_):
            raise DataError(f"X has {Z.shape[1]} columns, but inverse_transform needs "
                            f"n_components = {len(self.components_)}")
        return Z @ self.components_

    @property
    def _n_features_out(self) -> int:
        return len(self.components_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


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
