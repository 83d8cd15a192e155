"""The truncated SVD as a scikit-learn transformer: :class:`TruncatedSVD`.

A drop-in for ``sklearn.decomposition.TruncatedSVD`` in pipelines and searches,
on the solvers of :mod:`matfact.models.svd` (randomized SVD with the sparse
products on the numba threads, or ARPACK). Apart from ``svd.py`` because it
inherits scikit-learn's estimator classes, whose import a ``PureSVD`` (or any
recommender loaded from a file) should not pay.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin

from matfact._params import (
    Interval,
    Options,
    check_random_state,
    validate_params,
)
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError
from matfact.models._matrix import as_matrix
from matfact.models._sklearn import TransformerNotFittedError, check_features
from matfact.models.svd import (
    _NORMALIZERS,
    _check_rank,
    _project,
    _solver_constraints,
    _total_variance,
    _truncated_svd,
)

__all__ = ["TruncatedSVD"]


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
