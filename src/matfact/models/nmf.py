"""Non-negative matrix factorization: a scikit-learn transformer and a masked recommender.

One class, two modes, chosen by what :meth:`NMF.fit` is given:

- a NumPy array or SciPy sparse matrix ``X`` (n_samples × n_features): every
  cell counts, zeros included, as in scikit-learn's ``NMF`` — same parameter
  names, same algorithms (coordinate descent ``"cd"``, multiplicative updates
  ``"mu"``), same objective and regularization scaling, same attributes
  (``components_``, ``reconstruction_err_``, ``n_iter_``), so it drops in.
- an :class:`~matfact.Interactions`: only the **observed** cells count
  (scikit-learn cannot do this, scikit-learn#8447), optionally with a global
  mean and user/item biases, and the model is a recommender under the
  contract of :class:`~matfact.models.base.Recommender`.

Whole-matrix objective (β = 2 Frobenius, β = 1 Kullback–Leibler)::

    D_β(X ‖ WH) + α_W l1 m ‖W‖₁ + ½ α_W (1 − l1) m ‖W‖²
                + α_H l1 n ‖H‖₁ + ½ α_H (1 − l1) n ‖H‖²      (n × m = X.shape)

Masked objective, ``R(u)`` the items user ``u`` rated, ``s_u = |R(u)|`` with
``weighted_reg`` (else 1)::

    ½ Σ_u Σ_{i∈R(u)} (r_ui − μ − b_u − b_i − w_u·h_i)²
      + Σ_u [s_u (α l1 ‖w_u‖₁ + ½ α (1 − l1) ‖w_u‖²) + ½ λ_b b_u²] + the same for items,  w, h ≥ 0
"""

from __future__ import annotations

import os
import time
import warnings
from functools import update_wrapper
from types import MethodType
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.extmath import randomized_svd

from matfact._kernels.nmf import (
    cd_rows,
    kl_divergence_sparse,
    kl_ratio_times,
    masked_cd_rows,
    masked_mu_rows,
)
from matfact._linalg import dot64, gram64
from matfact._params import (
    N_THREADS,
    RANDOM_STATE,
    Instance,
    Interval,
    Options,
    validate_params,
)
from matfact._progress import progress_bar
from matfact._threads import numba_threads
from matfact.data.interactions import Interactions
from matfact.exceptions import ConvergenceWarning, DataError, NotFittedError, ParameterError
from matfact.models._iterative import IterativeModel
from matfact.models._matrix import (
    MatrixProducts,
    as_matrix,
    csr_parts,
)
from matfact.models._sklearn import TransformerNotFittedError, check_features
from matfact.models.base import UserVector

__all__ = ["NMF"]

#: ``n_components="auto"`` in masked mode (the whole-matrix mode follows scikit-learn).
MASKED_COMPONENTS = 30
#: ``alpha_W="auto"`` in masked mode: weighted-λ ridge per observed cell.
MASKED_ALPHA = 0.08
#: scikit-learn's floor for divisions in the multiplicative updates.
_EPS = float(np.finfo(np.float32).eps)
#: Coordinate sweeps per row and masked half-step.
_MASKED_SWEEPS = 1
#: Sweeps of a fold-in (one row, solved to convergence).
_FOLD_IN_SWEEPS = 500
#: scikit-learn checks the multiplicative updates' loss every this many iterations.
_MU_CHECK_EVERY = 10
#: ``inner_sweeps="auto"`` (Gillis & Glineur): sweeps ≤ 1 + ρ/2 (ρ = cost of the products
#: over the cost of a sweep), a row stopping once a sweep moves it by < 10% of its first move.
_INNER_FACTOR, _INNER_TOL, _INNER_MAX = 0.5, 0.1, 10

_BETA = {"frobenius": 2, "kullback-leibler": 1, 2: 2, 1: 1}


class _MaskedOnly:
    """A recommender method that exists only on an NMF fitted on Interactions.

    scikit-learn reads ``hasattr(estimator, "predict")`` as "this is a predictor"
    and calls ``predict(X)`` (its pipelines, its estimator checks); an NMF fitted on
    a matrix, or not yet fitted, is a transformer. Until a masked-mode fit, getting
    the method raises NotFittedError, an AttributeError: ``hasattr`` is False, and a
    call says why.
    """

    def __init__(self, method: Any) -> None:
        self.method = method
        update_wrapper(self, method)

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self.method  # the class attribute, for help() and the API docs
        if not hasattr(obj, "user_index_"):
            mode = ("was fitted on a matrix (transformer mode)" if hasattr(obj, "components_")
                    else "is not fitted yet")
            raise NotFittedError(f"this NMF {mode}; {self.method.__name__}() needs a fit on "
                                 f"Interactions (masked mode)")
        return MethodType(self.method, obj)


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator, IterativeModel):
    """Non-negative matrix factorization, whole-matrix (transformer) or masked (recommender).

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Rank ``k``. ``"auto"``: in whole-matrix mode as scikit-learn (the shape
        of a custom ``W``/``H``, else ``n_features``); in masked mode 30.
    init : {"random", "nndsvd", "nndsvda", "nndsvdar", "custom"} or None, default=None
        Whole-matrix mode: as scikit-learn (``None`` → ``"nndsvda"`` if
        ``k ≤ min(X.shape)`` else ``"random"``; random factors scaled by
        ``sqrt(X.mean() / k)``). Masked mode accepts ``None`` / ``"random"``
        (scaled to the residual ratings).
    solver : {"cd", "mu"}, default="cd"
        Coordinate descent (HALS) or multiplicative updates. Kullback–Leibler
        needs ``"mu"``.
    beta_loss : {"frobenius", "kullback-leibler"}, default="frobenius"
        Masked mode supports ``"frobenius"`` only.
    tol : float, default=1e-4
        Whole-matrix mode: scikit-learn's rules (``cd``: projected-gradient
        ratio; ``mu``: relative loss decrease every 10 iterations). Masked
        mode: relative change of the objective between iterations.
    max_iter : int, default=200
    random_state : int, RandomState or None, default=None
    alpha_W : float or "auto", default="auto"
        Penalty weight of ``W`` (users in masked mode). ``"auto"``: 0 in
        whole-matrix mode (scikit-learn's default), 0.06 in masked mode.
    alpha_H : float or "same", default="same"
    l1_ratio : float in [0, 1], default=0.0
        L1 share of the penalty.
    verbose : int, default=0
        Whole-matrix mode: show a progress bar when > 0 (masked mode: the
        ``progress`` argument of :meth:`fit`).
    shuffle : bool, default=False
        Visit coordinates in a random order (``cd``).
    inner_sweeps : int or "auto", default=1
        ``cd``: sweeps over a row's coordinates per update while the data
        products stay fixed. 1 is scikit-learn's algorithm, iterate for
        iterate. ``"auto"`` repeats the cheap sweeps up to ``1 + ρ/2`` times
        (ρ = cost of the products over a sweep; Gillis & Glineur 2012), a row
        stopping once a sweep moves it by < 10% of its first move: fewer
        passes over ``X`` per unit of progress, though it may settle in a
        different (not always lower) stationary point.
    biased : bool, default=True
        Masked mode: learn ``μ + b_u + b_i`` beside the non-negative product
        (the ratings need not then be ≥ 0). Needs ``solver="cd"``.
    reg_bias : float, default=5.0
        Masked mode: ridge ``½ reg_bias b²`` on each bias, not scaled by the
        row's count, so the bias of a row with few ratings shrinks to zero.
    weighted_reg : bool, default=True
        Masked mode: scale each row's penalty by its number of ratings.
    n_threads : int or None, default=None
        Threads of the numba kernels (``None``: all cores on large data).

    Attributes
    ----------
    components_ : ndarray of shape (k, n_features)
        ``H`` (whole-matrix mode).
    reconstruction_err_ : float
        ``‖X − WH‖_F`` (Frobenius) or ``sqrt(2 D_KL)``, as scikit-learn.
    n_components_, n_features_in_, n_iter_ : int
    feature_names_in_ : ndarray of str
        Whole-matrix mode, when ``X`` had column names (a data frame); checked at
        :meth:`transform`, as in scikit-learn.
    loss_history_ : dict
        ``train_loss`` per iteration: the objective (whole-matrix mode:
        β-divergence + penalties; masked mode: divided by the number of
        ratings); ``validation_rmse`` in masked mode with ``validation=``.
    user_factors_, item_factors_ : ndarray (masked mode)
        ``W`` and ``Hᵀ``, float32, ≥ 0.
    global_mean_, user_bias_, item_bias_ : masked mode with ``biased=True``.

    Notes
    -----
    In whole-matrix mode the class passes scikit-learn's estimator checks and keeps
    its input and error conventions (``tests/models/test_sklearn_compat.py``):
    negative input raises "Negative values in data passed to NMF (input X)." and
    ``transform`` before ``fit`` an error that is also scikit-learn's
    ``NotFittedError``. ``predict`` exists only after a fit on ``Interactions``
    (``hasattr(NMF(), "predict")`` is False), so scikit-learn never mistakes the
    transformer for a predictor.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "n_components": [Interval(int, 1, None), Options("auto")],
        "init": [Options(None, "random", "nndsvd", "nndsvda", "nndsvdar", "custom")],
        "solver": [Options("cd", "mu")],
        "beta_loss": [Options("frobenius", "kullback-leibler", 1, 2, 1.0, 2.0)],
        "tol": [Interval(float, 0, None)],
        "max_iter": [Interval(int, 1, None)],
        "random_state": [*RANDOM_STATE, Instance(np.random.RandomState)],
        "alpha_W": [Interval(float, 0, None), Options("auto")],
        "alpha_H": [Interval(float, 0, None), Options("same")],
        "l1_ratio": [Interval(float, 0, 1)],
        "verbose": [Interval(int, 0, None), Instance(bool)],
        "shuffle": [Instance(bool)],
        "inner_sweeps": [Interval(int, 1, None), Options("auto")],
        "biased": [Instance(bool)],
        "reg_bias": [Interval(float, 0, None)],
        "weighted_reg": [Instance(bool)],
        "n_threads": N_THREADS,
    }
    _step_returns_sse = False

    def __init__(self, n_components: int | str = "auto", *, init: str | None = None,
                 solver: str = "cd", beta_loss: str | float = "frobenius", tol: float = 1e-4,
                 max_iter: int = 200, random_state: Any = None, alpha_W: float | str = "auto",
                 alpha_H: float | str = "same", l1_ratio: float = 0.0, verbose: int = 0,
                 shuffle: bool = False, inner_sweeps: int | str = 1, biased: bool = True,
                 reg_bias: float = 5.0,
                 weighted_reg: bool = True, n_threads: int | None = None) -> None:
        self.n_components = n_components
        self.init = init
        self.solver = solver
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.verbose = verbose
        self.shuffle = shuffle
        self.inner_sweeps = inner_sweeps
        self.biased = biased
        self.reg_bias = reg_bias
        self.weighted_reg = weighted_reg
        self.n_threads = n_threads

    # ------------------------------------------------------------------ entry points
    def fit(self, X: Any, y: Any = None, *, W: np.ndarray | None = None,
            H: np.ndarray | None = None, validation: Interactions | None = None,
            progress: bool | None = None, callback: Any = None) -> NMF:
        """Factor a matrix (whole-matrix mode) or observed ratings (masked mode).

        Parameters
        ----------
        X : ndarray, scipy.sparse matrix or Interactions
            Non-negative data; an ``Interactions`` selects masked mode.
        y : ignored
        W, H : ndarray, default=None
            Starting factors with ``init="custom"`` (whole-matrix mode).
        validation : Interactions, default=None
            Masked mode: held-out ratings whose RMSE is recorded per iteration.
        progress : bool, default=None
            Progress; ``None`` means a bar when stderr is a terminal in masked mode
            (see :meth:`IterativeModel.fit <matfact.models._iterative.IterativeModel.fit>`),
            ``verbose > 0`` otherwise.
        callback : callable, default=None
            ``callback(iteration, info)`` after each iteration with ``info``
            holding ``train_loss`` and ``seconds``; returning ``True`` stops.

        Returns
        -------
        self
        """
        if isinstance(X, Interactions):
            if W is not None or H is not None:
                raise ParameterError("NMF: W= and H= are for whole-matrix mode; masked mode "
                                     "(Interactions) starts from init='random'")
            return super().fit(X, validation=validation, progress=progress,
                               callback=callback)
        if validation is not None:
            raise ParameterError("NMF: validation= needs Interactions (masked mode)")
        self.fit_transform(X, W=W, H=H, progress=progress, callback=callback)
        return self

    def fit_transform(self, X: Any, y: Any = None, W: np.ndarray | None = None,
                      H: np.ndarray | None = None, *, progress: bool | None = None,
                      callback: Any = None) -> np.ndarray:
        """Factor ``X ≈ W H`` (every cell counts) and return ``W``.

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)
            Non-negative, finite.
        y : ignored
        W, H : ndarray, default=None
            Starting factors for ``init="custom"``.
        progress, callback : see :meth:`fit`

        Returns
        -------
        W : ndarray of shape (n_samples, n_components)
        """
        validate_params(self)
        if isinstance(X, Interactions):
            raise DataError("NMF.fit_transform factors a matrix; for Interactions call fit() "
                            "(masked mode) and use the model as a recommender")
        self._check_whole_params()
        matrix = _check_matrix(X)
        self._clear_fitted_state()
        check_features(self, X, reset=True)
        k = self._whole_components(matrix.shape, W, H)
        W, H = self._initial_factors(matrix, k, W, H)
        problem = _WholeProblem(matrix, self)
        show = bool(self.verbose) if progress is None else progress
        self._callback = callback
        try:
            W, H, n_iter, history = problem.solve(W, H, update_H=True, progress=show)
        finally:
            self._callback = None
        self.components_ = H
        self.n_components_ = k
        self.n_features_in_ = matrix.shape[1]
        self.n_iter_ = n_iter
        self.reconstruction_err_ = problem.reconstruction_error(W, H)
        self.loss_history_ = {"train_loss": history}
        return W

    def transform(self, X: Any) -> np.ndarray:
        """Codes ``W`` of new samples for the fitted ``components_`` (H fixed).

        Parameters
        ----------
        X : array-like or scipy.sparse matrix of shape (n_samples, n_features)

        Returns
        -------
        W : ndarray of shape (n_samples, n_components)
        """
        H = self._components()
        matrix = _check_matrix(X)
        check_features(self, X, reset=False)
        problem = _WholeProblem(matrix, self)
        W = problem.start_codes(H.astype(matrix.dtype, copy=False))
        W, _, _, _ = problem.solve(W, H.astype(matrix.dtype, copy=False), update_H=False,
                                   progress=False)
        return W

    def inverse_transform(self, X: Any = None) -> np.ndarray:
        """The reconstruction ``W @ components_`` of codes ``W``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_components)
            Codes, e.g. from :meth:`transform`.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        H = self._components()
        codes = np.asarray(X)
        if codes.ndim != 2 or codes.shape[1] != H.shape[0]:
            raise DataError(f"NMF.inverse_transform: codes must have shape (n, {H.shape[0]}), "
                            f"got {codes.shape}")
        return codes @ H

    predict = _MaskedOnly(IterativeModel.predict)

    @property
    def _n_features_out(self) -> int:
        return len(self._components())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # As scikit-learn's NMF: its estimator checks then feed non-negative data.
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ fitted state
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "user_index_") or hasattr(self, "components_")

    def _check_savable(self) -> None:
        if not hasattr(self, "components_"):
            super()._check_savable()

    def _check_fitted(self) -> None:
        if hasattr(self, "components_") and not hasattr(self, "user_index_"):
            raise NotFittedError("this NMF was fitted on a matrix (transformer mode); fit it on "
                                 "Interactions to predict or recommend")
        super()._check_fitted()

    def _components(self) -> np.ndarray:
        if not hasattr(self, "components_"):
            if hasattr(self, "user_index_"):
                raise TransformerNotFittedError("this NMF was fitted on Interactions (masked "
                                                "mode); transform needs a fit on a matrix")
            raise TransformerNotFittedError("this NMF is not fitted yet; call fit() first")
        return self.components_

    def _validate_state(self) -> None:
        if hasattr(self, "user_index_"):
            super()._validate_state()
        elif self.components_.ndim != 2:
            raise ValueError(f"components_ has shape {self.components_.shape}")

    # ------------------------------------------------------------------ whole-matrix mode
    def _beta(self) -> int:
        return _BETA[self.beta_loss]

    def _check_whole_params(self) -> None:
        if self._beta() == 1 and self.solver == "cd":
            raise ParameterError("NMF: beta_loss='kullback-leibler' needs solver='mu' "
                                 "(coordinate descent minimizes the Frobenius loss)")

    def _penalties(self, shape: tuple[int, int]) -> tuple[float, float, float, float]:
        """(l1_W, l2_W, l1_H, l2_H) scaled as scikit-learn ≥ 1.2 (by n_features / n_samples)."""
        n_samples, n_features = shape
        alpha_W = 0.0 if self.alpha_W == "auto" else float(self.alpha_W)
        alpha_H = alpha_W if self.alpha_H == "same" else float(self.alpha_H)
        l1 = self.l1_ratio
        return (n_features * alpha_W * l1, n_features * alpha_W * (1 - l1),
                n_samples * alpha_H * l1, n_samples * alpha_H * (1 - l1))

    def _whole_components(self, shape: tuple[int, int], W: Any, H: Any) -> int:
        if self.n_components != "auto":
            k = int(self.n_components)
        elif self.init == "custom" and H is not None:
            k = np.shape(H)[0]
        elif self.init == "custom" and W is not None:
            k = np.shape(W)[1]
        else:
            k = shape[1]
        return k

    def _initial_factors(self, X: Any, k: int, W: Any, H: Any) -> tuple[np.ndarray, np.ndarray]:
        n_samples, n_features = X.shape
        init = self.init
        if init is None:
            init = "nndsvda" if k <= min(n_samples, n_features) else "random"
        if init == "custom":
            if W is None or H is None:
                raise ParameterError("NMF: init='custom' needs both W= and H=")
            return (_check_factor(W, (n_samples, k), "W", X.dtype),
                    _check_factor(H, (k, n_features), "H", X.dtype))
        if W is not None or H is not None:
            raise ParameterError(f"NMF: W= and H= are only used with init='custom', not "
                                 f"init={init!r}")
        if init.startswith("nndsvd") and k > min(n_samples, n_features):
            raise ParameterError(f"NMF: init={init!r} needs n_components ≤ min(n_samples, "
                                 f"n_features) = {min(n_samples, n_features)}, got {k}; use "
                                 f"init='random'")
        return nmf_init(X, k, init, random_state=self.random_state)

    # ------------------------------------------------------------------ masked mode
    def _masked_setup(self) -> int:
        """Check the parameters masked mode cannot take; return its rank."""
        if self._beta() != 2:
            raise ParameterError("NMF: masked mode (Interactions) minimizes the Frobenius loss; "
                                 "use beta_loss='frobenius'")
        if self.init not in (None, "random"):
            raise ParameterError(f"NMF: masked mode (Interactions) starts from init='random', "
                                 f"got init={self.init!r}")
        if self.biased and self.solver == "mu":
            raise ParameterError("NMF: biased=True needs solver='cd' (multiplicative updates "
                                 "cannot fit biases of either sign); pass biased=False")
        return MASKED_COMPONENTS if self.n_components == "auto" else int(self.n_components)

    def _masked_penalties(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """((l1, l2) of users, (l1, l2) of items) of masked mode, before count scaling."""
        alpha_W = MASKED_ALPHA if self.alpha_W == "auto" else float(self.alpha_W)
        alpha_H = alpha_W if self.alpha_H == "same" else float(self.alpha_H)
        l1 = float(self.l1_ratio)
        return (l1 * alpha_W, (1 - l1) * alpha_W), (l1 * alpha_H, (1 - l1) * alpha_H)

    def _fit(self, data: Interactions, *, validation: Interactions | None,
             progress: bool) -> None:
        k = self._masked_setup()
        values = data.values.astype(np.float32)
        if not self.biased and (values < 0).any():
            raise DataError(f"NMF(biased=False) needs non-negative values; "
                            f"{int((values < 0).sum())} are negative. Shift them, or use "
                            f"biased=True (the biases absorb the sign)")
        self.n_components_ = k
        self.global_mean_ = float(values.mean(dtype=np.float64)) if self.biased else 0.0
        rng = sklearn_random_state(self.random_state)
        # Scaled so the initial products are a fraction of the residual spread: the
        # factors start on the data's scale whatever it is (1–5 stars or 1–10).
        spread = (float(np.abs(values - self.global_mean_).mean()) if self.biased
                  else float(values.mean()))
        scale = np.sqrt(max(spread, 1e-12) / k) * (0.3 if self.biased else 1.0)
        self.user_factors_ = np.abs(rng.standard_normal((data.n_users, k))).astype(
            np.float32) * np.float32(scale)
        self.item_factors_ = np.abs(rng.standard_normal((data.n_items, k))).astype(
            np.float32) * np.float32(scale)
        self.user_bias_ = np.zeros(data.n_users, np.float32) if self.biased else None
        self.item_bias_ = np.zeros(data.n_items, np.float32) if self.biased else None
        csr = data.to_scipy()  # the values (ratings, or weights) in CSR order
        by_user = sp.csr_matrix((csr.data.astype(np.float32), csr.indices, csr.indptr),
                                shape=csr.shape)
        by_item = by_user.T.tocsr()
        users, items = csr_parts(by_user, np.float32), csr_parts(by_item, np.float32)
        penalties = self._masked_penalties()

        def step(iteration: int) -> tuple[float, dict]:
            self._masked_half(users, self.item_factors_, self.item_bias_, self.user_factors_,
                              self.user_bias_, penalties[0], _MASKED_SWEEPS)
            sse = self._masked_half(items, self.user_factors_, self.user_bias_,
                                    self.item_factors_, self.item_bias_, penalties[1],
                                    _MASKED_SWEEPS)
            objective = 0.5 * sse + self._masked_penalty(users, items, penalties)
            return objective / data.nnz, {}

        with numba_threads(self.n_threads, data.nnz * k * 2):
            self._run_iterations(step, 1.0, validation, progress, "NMF")

    def _masked_half(self, rows: tuple, other: np.ndarray, other_bias: np.ndarray | None,
                     factors: np.ndarray, bias: np.ndarray | None,
                     penalty: tuple[float, float], sweeps: int) -> float:
        indptr, indices, values = rows
        l1, l2 = penalty
        if self.solver == "mu":
            return masked_mu_rows(indptr, indices, values, other, factors, l1, l2,
                                  self.weighted_reg, _EPS)
        return masked_cd_rows(indptr, indices, values, other,
                              _EMPTY if other_bias is None else other_bias, self.global_mean_,
                              factors, _EMPTY if bias is None else bias, bias is not None,
                              l1, l2, self.reg_bias, self.weighted_reg, sweeps)

    def _masked_penalty(self, users: tuple, items: tuple,
                        penalties: tuple[tuple[float, float], ...]) -> float:
        total = 0.0
        for (indptr, _, _), factors, bias, (l1, l2) in (
                (users, self.user_factors_, self.user_bias_, penalties[0]),
                (items, self.item_factors_, self.item_bias_, penalties[1])):
            scale = np.diff(indptr).astype(np.float64) if self.weighted_reg else 1.0
            row = l1 * factors.sum(axis=1, dtype=np.float64) + 0.5 * l2 * np.einsum(
                "ij,ij->i", factors, factors).astype(np.float64)
            total += float(np.sum(scale * row))
            if bias is not None:
                total += 0.5 * self.reg_bias * float(np.dot(bias, bias))
        return total

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        """Non-negative least squares of the history on the item factors (bias free)."""
        return self._nnls_row(items, values, self.item_factors_, self.item_bias_,
                              self.user_bias_ is not None, self._masked_penalties()[0])

    def _fold_in_item(self, users: np.ndarray, values: np.ndarray) -> UserVector:
        """A new item by the same NNLS with the user factors fixed (item penalties)."""
        return self._nnls_row(users, values, self.user_factors_, self.user_bias_,
                              self.item_bias_ is not None, self._masked_penalties()[1])

    def _nnls_row(self, others: np.ndarray, values: np.ndarray, other_factors: np.ndarray,
                  other_bias: np.ndarray | None, use_bias: bool,
                  penalties: tuple[float, float]) -> UserVector:
        k = other_factors.shape[1]
        factors = np.zeros((1, k), np.float32)
        bias = np.zeros(1, np.float32) if use_bias else _EMPTY
        indptr = np.array([0, len(others)], dtype=np.int64)
        masked_cd_rows(indptr, others.astype(np.int32), values.astype(np.float32),
                       other_factors, _EMPTY if other_bias is None else other_bias,
                       self.global_mean_, factors, bias, use_bias, penalties[0], penalties[1],
                       self.reg_bias, self.weighted_reg, _FOLD_IN_SWEEPS)
        return UserVector(factors[0], float(bias[0]) if len(bias) else 0.0)


_EMPTY = np.zeros(0, dtype=np.float32)


# ---------------------------------------------------------------------- helpers
def sklearn_random_state(random_state: Any) -> np.random.RandomState:
    """scikit-learn's legacy ``RandomState`` (so random inits equal scikit-learn's for a seed)."""
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(int(random_state.integers(2**32)))
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, (int, np.integer)) and not 0 <= random_state < 2**32:
        # Legacy seeding takes 32 bits; a larger seed maps to one through SeedSequence.
        random_state = int(np.random.SeedSequence(int(random_state)).generate_state(1)[0])
    return np.random.RandomState(random_state)


def _check_matrix(X: Any) -> Any:
    """A finite, non-negative, non-empty float32/float64 CSR matrix or array.

    Takes what scikit-learn's ``NMF`` takes: arrays, sparse matrices, lists, data
    frames, object arrays of numbers. The negative-values message starts with
    scikit-learn's own words (``check_non_negative(X, "NMF (input X)")``), which
    users and their tests match on.
    """
    if isinstance(X, (str, bytes, dict, os.PathLike)):
        # Not array-like at all (a file name, a mapping): name both modes rather than
        # let NumPy make a 0-d array of it.
        raise DataError(f"NMF: X must be a matrix (NumPy array, SciPy sparse matrix, data "
                        f"frame) or, for masked mode, matfact.Interactions; got "
                        f"{type(X).__name__}")
    X = as_matrix(X, "NMF: X")
    if not sp.issparse(X):
        X = np.ascontiguousarray(X)
    values = X.data if sp.issparse(X) else X
    negative = int((values < 0).sum())
    if negative:
        raise DataError(f"Negative values in data passed to NMF (input X). X has {negative} "
                        f"negative values (min {values.min():g}); shift or clip them, or "
                        f"factor the observed ratings with Interactions and biased=True")
    return X


def _check_factor(value: Any, shape: tuple[int, int], name: str, dtype: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != shape:
        raise ParameterError(f"NMF: custom {name} must have shape {shape}, got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ParameterError(f"NMF: custom {name} must be finite and non-negative")
    return np.array(array, dtype=dtype, order="C", copy=True)


def nmf_init(X: Any, k: int, init: str, *, random_state: Any = None,
             eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Starting ``W``, ``H`` for whole-matrix NMF, as scikit-learn computes them.

    ``"random"``: ``|N(0, 1)| · sqrt(mean(X) / k)``. ``"nndsvd"`` (Boutsidis &
    Gallopoulos 2008): from a truncated SVD, each singular pair split into its
    positive and negative parts and the larger kept; ``"nndsvda"`` fills its
    zeros with ``mean(X)``, ``"nndsvdar"`` with small random values.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix, non-negative
    k : int
    init : {"random", "nndsvd", "nndsvda", "nndsvdar"}
    random_state : int, RandomState or None
    eps : float, default=1e-6
        Entries below this are zeroed in NNDSVD.

    Returns
    -------
    W : ndarray of shape (n_samples, k)
    H : ndarray of shape (k, n_features)
    """
    n_samples, n_features = X.shape
    mean = float(X.mean())
    rng = sklearn_random_state(random_state)
    if init == "random":
        avg = np.sqrt(mean / k)
        H = np.abs(avg * rng.standard_normal(size=(k, n_features)).astype(X.dtype, copy=False))
        W = np.abs(avg * rng.standard_normal(size=(n_samples, k)).astype(X.dtype, copy=False))
        return W, H
    U, S, V = randomized_svd(X, k, random_state=sklearn_random_state(random_state))
    W = np.zeros_like(U)
    H = np.zeros_like(V)
    # The leading singular pair of a non-negative matrix can be taken non-negative.
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0, :] = np.sqrt(S[0]) * np.abs(V[0, :])
    for j in range(1, k):
        x, y = U[:, j], V[j, :]
        x_p, y_p = np.maximum(x, 0), np.maximum(y, 0)
        x_n, y_n = np.abs(np.minimum(x, 0)), np.abs(np.minimum(y, 0))
        x_p_nrm, y_p_nrm = np.linalg.norm(x_p), np.linalg.norm(y_p)
        x_n_nrm, y_n_nrm = np.linalg.norm(x_n), np.linalg.norm(y_n)
        m_p, m_n = x_p_nrm * y_p_nrm, x_n_nrm * y_n_nrm
        # Keep whichever sign carries more of the pair's mass.
        if m_p > m_n:
            u, v, sigma = x_p / x_p_nrm, y_p / y_p_nrm, m_p
        else:
            u, v, sigma = x_n / x_n_nrm, y_n / y_n_nrm, m_n
        lbd = np.sqrt(S[j] * sigma)
        W[:, j] = lbd * u
        H[j, :] = lbd * v
    W[W < eps] = 0
    H[H < eps] = 0
    if init == "nndsvda":
        W[W == 0] = mean
        H[H == 0] = mean
    elif init == "nndsvdar":
        rng = sklearn_random_state(random_state)
        avg = mean
        W[W == 0] = abs(avg * rng.standard_normal(size=len(W[W == 0])) / 100)
        H[H == 0] = abs(avg * rng.standard_normal(size=len(H[H == 0])) / 100)
    return W.astype(X.dtype, copy=False), H.astype(X.dtype, copy=False)


class _WholeProblem:
    """The data-side products of one whole-matrix NMF, and its iteration loop."""

    def __init__(self, X: Any, model: NMF) -> None:
        self.model = model
        self.X = X
        self.sparse = sp.issparse(X)
        self.dtype = X.dtype
        self.products = MatrixProducts(X)
        values = X.data if self.sparse else X
        self.squared_norm = dot64(values, values)
        self.total = float(values.sum(dtype=np.float64))
        # Counted the same for dense input, so the sweep rule (and the result) is the same.
        self.nnz = X.nnz if self.sparse else int(np.count_nonzero(X))
        self.beta = model._beta()
        self.penalties = model._penalties(X.shape)

    # products ---------------------------------------------------------------
    def x_times(self, dense: np.ndarray) -> np.ndarray:
        """``X @ dense`` (dense: n_features × k)."""
        return self.products.dot(dense)

    def xt_times(self, dense: np.ndarray) -> np.ndarray:
        """``Xᵀ @ dense`` (dense: n_samples × k)."""
        return self.products.tdot(dense)

    def kl_ratio(self, W: np.ndarray, Ht: np.ndarray, transposed: bool) -> np.ndarray:
        """``(X / WH) Hᵀ`` (or ``(X / WH)ᵀ W`` when ``transposed``, W and Ht swapped)."""
        if self.sparse:
            parts = self.products.cols if transposed else self.products.rows
            out = np.empty_like(W)
            return kl_ratio_times(*parts, W, Ht, _EPS, out)
        X = self.X.T if transposed else self.X
        WH = W @ Ht.T
        np.maximum(WH, _EPS, out=WH)
        return np.divide(X, WH, out=WH) @ Ht

    # loss -------------------------------------------------------------------
    def divergence(self, W: np.ndarray, H: np.ndarray) -> float:
        """The β-divergence ``D_β(X ‖ WH)`` (½‖X − WH‖² for β = 2)."""
        if self.beta == 2:
            Ht = np.ascontiguousarray(H.T)
            return self._frobenius(dot64(self.x_times(Ht), W), gram64(W), gram64(Ht))
        if self.sparse:
            nonzero = kl_divergence_sparse(*self.products.rows, W, np.ascontiguousarray(H.T),
                                           _EPS)
        else:
            WH = np.maximum(W @ H, _EPS)
            X = self.X
            positive = X > 0
            nonzero = float(np.sum(X[positive] * np.log(X[positive] / WH[positive]))
                            - self.total)
        return nonzero + float(W.sum(axis=0, dtype=np.float64) @ H.sum(axis=1,
                                                                         dtype=np.float64))

    def _frobenius(self, cross: float, WtW: np.ndarray, HHt: np.ndarray) -> float:
        value = 0.5 * (self.squared_norm - 2.0 * cross + float(np.vdot(WtW, HHt)))
        return max(value, 0.0)

    def objective(self, divergence: float, W: np.ndarray, H: np.ndarray) -> float:
        l1_W, l2_W, l1_H, l2_H = self.penalties
        value = divergence
        if l1_W or l2_W:
            value += l1_W * float(W.sum(dtype=np.float64)) + 0.5 * l2_W * dot64(W, W)
        if l1_H or l2_H:
            value += l1_H * float(H.sum(dtype=np.float64)) + 0.5 * l2_H * dot64(H, H)
        return value

    def reconstruction_error(self, W: np.ndarray, H: np.ndarray) -> float:
        return float(np.sqrt(2.0 * self.divergence(W, H)))

    def start_codes(self, H: np.ndarray) -> np.ndarray:
        """Codes to start ``transform`` from (zeros for cd; the data's scale for mu)."""
        k = H.shape[0]
        if self.model.solver == "mu":
            avg = np.sqrt(self.total / (self.X.shape[0] * self.X.shape[1]) / k)
            return np.full((self.X.shape[0], k), avg, dtype=self.dtype)
        return np.zeros((self.X.shape[0], k), dtype=self.dtype)

    # loop -------------------------------------------------------------------
    def solve(self, W: np.ndarray, H: np.ndarray, *, update_H: bool,
              progress: bool) -> tuple[np.ndarray, np.ndarray, int, list[float]]:
        model = self.model
        k = W.shape[1]
        work = self.nnz * k * 2
        with numba_threads(model.n_threads, work):
            if model.solver == "cd":
                return self._solve_cd(W, H, update_H, progress)
            return self._solve_mu(W, H, update_H, progress)

    def _sweeps(self, n_rows: int, n_other: int, k: int) -> int:
        """Sweeps per update: ``inner_sweeps``, or Gillis & Glineur's ``1 + ρ/2`` for "auto".

        ρ is the cost of the data products over the cost of one sweep.
        """
        if self.model.inner_sweeps != "auto":
            return int(self.model.inner_sweeps)
        rho = (self.nnz * k + n_other * k * k) / max(n_rows * k * k, 1)
        return int(min(max(1 + _INNER_FACTOR * rho, 1), _INNER_MAX))

    def _solve_cd(self, W: np.ndarray, H: np.ndarray, update_H: bool,
                  progress: bool) -> tuple[np.ndarray, np.ndarray, int, list[float]]:
        model = self.model
        rng = sklearn_random_state(model.random_state)
        l1_W, l2_W, l1_H, l2_H = self.penalties
        n_samples, n_features = self.X.shape
        k = W.shape[1]
        W = np.ascontiguousarray(W)
        Ht = np.ascontiguousarray(H.T)
        order = np.arange(k, dtype=np.int64)
        sweeps_W = self._sweeps(n_samples, n_features, k) if update_H else 1
        sweeps_H = self._sweeps(n_features, n_samples, k)
        history: list[float] = []
        fixed = None
        if not update_H:  # transform: the products with H never change
            HHt = Ht.T @ Ht
            HHt.flat[::k + 1] += l2_W
            XHt = self.x_times(Ht) - l1_W
            fixed = (HHt, XHt)
        violation_init = None
        gram_H = None
        n_iter = 0
        bar = progress_bar(range(model.max_iter), progress=progress, desc="NMF")
        for n_iter in bar:
            start = time.perf_counter()
            perm = rng.permutation(k).astype(np.int64) if model.shuffle else order
            if fixed is None:
                # The last iteration's loss already needed HHᵀ of the current H.
                HHt = Ht.T @ Ht if gram_H is None else gram_H
                HHt.flat[::k + 1] += l2_W
                XHt = self.x_times(Ht)
                if l1_W:
                    XHt -= l1_W
            else:
                HHt, XHt = fixed
            violation = cd_rows(W, HHt, XHt, perm, sweeps_W, _INNER_TOL)
            loss = None
            if update_H:
                perm = rng.permutation(k).astype(np.int64) if model.shuffle else order
                raw_WtW = gram64(W)  # float64: the loss compares to a target to many digits
                WtW = raw_WtW.astype(W.dtype)
                XtW = self.xt_times(W)
                WtW.flat[::k + 1] += l2_H
                if l1_H:
                    XtW -= l1_H
                violation += cd_rows(Ht, WtW, XtW, perm, sweeps_H, _INNER_TOL)
                cross = dot64(XtW, Ht) + l1_H * float(Ht.sum(dtype=np.float64))
                gram_H64 = gram64(Ht)
                gram_H = gram_H64.astype(Ht.dtype)
                loss = self.objective(self._frobenius(cross, raw_WtW, gram_H64), W, Ht.T)
                history.append(loss)
            seconds = time.perf_counter() - start
            if loss is not None:
                bar.set_postfix(loss=f"{loss:.6g}")
                if model._callback is not None and model._callback(
                        n_iter, {"train_loss": loss, "seconds": seconds,
                                 "violation": violation}):
                    break
            if violation_init is None:
                violation_init = violation
            if violation_init == 0 or violation / violation_init <= model.tol:
                break
        else:
            _warn_max_iter(model, update_H)
        bar.close()
        return W, np.ascontiguousarray(Ht.T), n_iter + 1, history

    def _solve_mu(self, W: np.ndarray, H: np.ndarray, update_H: bool,
                  progress: bool) -> tuple[np.ndarray, np.ndarray, int, list[float]]:
        model = self.model
        l1_W, l2_W, l1_H, l2_H = self.penalties
        W = np.ascontiguousarray(W)
        Ht = np.ascontiguousarray(H.T)
        kl = self.beta == 1
        error_at_init = self.reconstruction_error(W, Ht.T) if model.tol > 0 else 0.0
        previous = error_at_init
        history: list[float] = []
        want_loss = model._callback is not None and update_H
        n_iter = 0
        converged = False
        bar = progress_bar(range(model.max_iter), progress=progress, desc="NMF")
        for n_iter in bar:
            start = time.perf_counter()
            self._mu_update(W, Ht, l1_W, l2_W, kl, transposed=False)
            if update_H:
                self._mu_update(Ht, W, l1_H, l2_H, kl, transposed=True)
                if kl:
                    Ht[Ht < np.finfo(np.float64).eps] = 0.0
            check = model.tol > 0 and (n_iter + 1) % _MU_CHECK_EVERY == 0
            divergence = None
            if check or want_loss:
                divergence = self.divergence(W, Ht.T)
                loss = self.objective(divergence, W, Ht.T)
                history.append(loss)
                bar.set_postfix(loss=f"{loss:.6g}")
            seconds = time.perf_counter() - start
            if want_loss and model._callback(n_iter, {"train_loss": loss, "seconds": seconds}):
                break
            if check:
                error = float(np.sqrt(2.0 * divergence))
                if (previous - error) / error_at_init < model.tol:
                    converged = True
                    break
                previous = error
        if not converged and model.tol > 0 and n_iter + 1 == model.max_iter:
            _warn_max_iter(model, update_H)
        bar.close()
        return W, np.ascontiguousarray(Ht.T), n_iter + 1, history

    def _mu_update(self, A: np.ndarray, Bt: np.ndarray, l1: float, l2: float, kl: bool,
                   transposed: bool) -> None:
        """One multiplicative update of ``A`` (W, or Hᵀ when ``transposed``) in place."""
        if kl:
            numerator = self.kl_ratio(A, Bt, transposed)
            denominator = np.broadcast_to(Bt.sum(axis=0), A.shape).copy()
        else:
            numerator = self.xt_times(Bt) if transposed else self.x_times(Bt)
            denominator = A @ (Bt.T @ Bt)
        if l1:
            denominator += l1
        if l2:
            denominator += l2 * A
        denominator[denominator == 0] = _EPS
        A *= numerator / denominator


def _warn_max_iter(model: NMF, update_H: bool) -> None:
    if model.tol > 0:
        what = "fit" if update_H else "transform"
        warnings.warn(f"NMF {what} stopped at max_iter={model.max_iter} before meeting "
                      f"tol={model.tol:g}; raise max_iter or tol", ConvergenceWarning,
                      stacklevel=4)
