r"""Bayesian probabilistic matrix factorization by Gibbs sampling: :class:`BayesianMF`.

Without side information this is BPMF (Salakhutdinov & Mnih 2008) with biases.
With ``user_features``, ``item_features`` or ``implicit`` it becomes a Bayesian
factorization machine over user–item interactions (Freudenthaler, Schmidt-Thieme
& Rendle 2011; Rendle 2013): every side-information column gets a bias and a
factor vector drawn coordinate-wise from its Gaussian conditional, with a
Normal–Gamma hyper-prior per feature group; see :class:`BayesianMF`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import wishart

from matfact._kernels import bayesian as kernels
from matfact._kernels._common import predict_pairs
from matfact._kernels.als import solve_rows
from matfact._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Instance,
    Interval,
    Options,
    check_random_state,
)
from matfact._threads import numba_threads, single_thread
from matfact.data.features import FeatureEncoder
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, ParameterError
from matfact.models._iterative import IterativeModel
from matfact.models.base import UserVector

__all__ = ["BayesianMF", "ML100K_BINS"]

_EMPTY = np.zeros(0, dtype=np.float32)

#: Bucket edges giving MovieLens 100K's usual feature set (the one myFM's examples
#: use): age buckets <18, 18–24, 25–34, 35–44, 45–49, 50–55, 56+, and release-year
#: buckets with edges 1940, 1950, …, 1990, 1995, 1996, 1997 (unknown year its own).
ML100K_BINS: dict[str, list[float]] = {
    "age": [18, 25, 35, 45, 50, 56],
    "year": [1940, 1950, 1960, 1970, 1980, 1990, 1995, 1996, 1997],
}
#: Normal–Gamma hyper-prior of the side-information groups (libFM's and myFM's
#: defaults): λ ~ Gamma(a₀/2, b₀/2), μ | λ ~ N(0, (γ₀ λ)⁻¹).
_GROUP_A0 = 1.0
_GROUP_B0 = 1.0
_GROUP_GAMMA0 = 1.0


def _sample_hyper(vectors: np.ndarray, beta0: float, nu0: float, w0_inv: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (μ, Λ) from the Normal–Wishart posterior given the row vectors.

    Salakhutdinov & Mnih (2008), eq. 14 with μ₀ = 0::

        β* = β₀ + N,  ν* = ν₀ + N,  μ* = N x̄ / (β₀ + N)
        W*⁻¹ = W₀⁻¹ + N S + β₀ N / (β₀ + N) · x̄ x̄ᵀ
        Λ ~ Wishart(W*, ν*),  μ ~ N(μ*, (β* Λ)⁻¹)
    """
    n = len(vectors)
    mu_star, w = _hyper_posterior(vectors, beta0, w0_inv)
    precision = wishart.rvs(df=nu0 + n, scale=w, random_state=rng)
    precision = np.atleast_2d(precision)
    cov = np.linalg.inv((beta0 + n) * precision)
    mu = rng.multivariate_normal(mu_star, (cov + cov.T) / 2)
    return mu, precision


def _hyper_posterior(vectors: np.ndarray, beta0: float,
                     w0_inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(μ*, W*)`` of the Normal–Wishart posterior given the row vectors (μ₀ = 0).

    The draw of :func:`_sample_hyper` and the summary of a fitted model
    (:func:`_summarize_samples`: ``E[μ] = μ*``, ``E[Λ] = ν* W*``) share it.
    """
    n = len(vectors)
    x = vectors.astype(np.float64)
    mean = x.mean(axis=0)
    centered = x - mean
    scatter = centered.T @ centered
    w_inv = w0_inv + scatter + (beta0 * n / (beta0 + n)) * np.outer(mean, mean)
    w = np.linalg.inv(w_inv)
    return n * mean / (beta0 + n), (w + w.T) / 2


#: Power iterations of the randomized SVD that summarizes the kept samples: the
#: spectrum of the averaged product falls off fast past rank k (ML-100K, k = 10:
#: σ₁₀ ≈ 2 σ₁₁), so a few iterations give the rank-k subspace to float32 accuracy.
_SUMMARY_POWER_ITERATIONS = 6
_SUMMARY_OVERSAMPLES = 10


def _rank_k_basis(left: np.ndarray, right: np.ndarray, k: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` right singular vectors ``V`` and values ``σ`` of ``M = left rightᵀ``.

    A randomized range finder (Halko et al. 2011) on the product, never formed:
    ``M x = left (rightᵀ x)``, so the cost is O((n_users + n_items) · S k · (k + 10))
    per pass instead of a dense SVD of the S k columns.
    """
    size = min(k + _SUMMARY_OVERSAMPLES, min(len(left), len(right)))
    basis = rng.standard_normal((len(right), size))
    for _ in range(_SUMMARY_POWER_ITERATIONS):
        basis = np.linalg.qr(left @ (right.T @ basis))[0]      # range of M
        basis = np.linalg.qr(right @ (left.T @ basis))[0]      # range of Mᵀ
    basis = np.linalg.qr(left @ (right.T @ basis))[0]
    mt_basis = right @ (left.T @ basis)                         # Mᵀ Q = W Σ Zᵀ
    w, sigma, _ = np.linalg.svd(mt_basis, full_matrices=False)
    # A product of rank < k (tiny data) keeps only its non-zero directions.
    rank = int(np.count_nonzero(sigma > 1e-12 * sigma[0])) if len(sigma) and sigma[0] > 0 else 0
    k = min(k, rank)
    return w[:, :k], sigma[:k]


def _summarize_samples(model: BayesianMF, user_design: sp.csr_matrix | None,
                       rng: np.random.Generator) -> None:
    """Replace the kept samples by one summary "sample": what predicting and fold-in need.

    The posterior mean of the scores, ``M = (1/S) Σ_s P_s Q_sᵀ`` (the samples side by side,
    ``user_factors_ item_factors_ᵀ``), is replaced by its projection on its top ``k``
    right singular vectors ``V``, ``M V Vᵀ = (M V Σ^-½)(V Σ^½)ᵀ``: ``user_factors_`` and
    ``item_factors_`` become ``n_factors`` wide, as any factor model's. The user side is a
    linear map of the samples, ``M V Σ^-½ = [P_1 … P_S]/√S · T``, so the same ``T`` carries
    each side-information column's per-sample vectors ``v_c`` into the summary space. The
    biases (and the column biases ``w_c``) are posterior means, exactly. Fold-in's prior
    is the Normal–Wishart posterior mean given the summarized id vectors
    (``E[μ] = μ*``, ``E[Λ] = ν* W*``), with ``alpha_`` as before.
    """
    k, n_kept = model.n_factors, model.n_kept_
    d = k + 1 if model.biased else k
    left = model.user_factors_.astype(np.float64)
    right = model.item_factors_.astype(np.float64)
    v, sigma = _rank_k_basis(left, right, k, rng)
    # Columns beyond the product's rank (tiny data) stay zero: still n_factors wide.
    transform = np.zeros((left.shape[1], k))
    transform[:, :len(sigma)] = (right.T @ v) / np.sqrt(sigma)          # T
    item = np.zeros((len(right), k))
    item[:, :len(sigma)] = v * np.sqrt(sigma)
    user = left @ transform
    ids = user.copy()                        # the id part [p_u, b_u] of each user's vector
    bias = model.user_bias_.astype(np.float64) if model.biased else None
    columns = getattr(model, "user_columns_", None)
    if columns is not None:
        per_sample = columns.astype(np.float64).reshape(len(columns), n_kept, k + 1)
        column_factors = (per_sample[:, :, :k].reshape(len(columns), -1) / np.sqrt(n_kept)
                          ) @ transform
        column_bias = per_sample[:, :, k].mean(axis=1)
        model.user_columns_ = np.hstack([column_factors, column_bias[:, None]]).astype(
            np.float32)
        if user_design is not None and user_design.shape[1]:
            ids -= user_design @ column_factors
            if bias is not None:
                bias = bias - user_design @ column_bias
    vectors = np.hstack([ids, bias[:, None]]) if bias is not None else ids
    mu, w = _hyper_posterior(vectors, model.beta0, np.eye(d))
    model.user_prior_mean_ = mu[None, :].astype(np.float32)
    model.user_prior_precision_ = ((d + len(vectors)) * w)[None].astype(np.float32)
    model.user_factors_ = user.astype(np.float32)
    model.item_factors_ = item.astype(np.float32)
    if model.biased:
        model.item_bias_samples_ = model.item_bias_[:, None].copy()
    model.n_kept_ = 1



def _sample_group_hyper(params: np.ndarray, groups: np.ndarray, n_groups: int,
                        precision: np.ndarray, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
    r"""Draw each group's (μ_g, λ_g), per dimension, from the Normal–Gamma posterior.

    For the :math:`n_g` coefficients :math:`\theta_c` of group :math:`g` (one
    dimension at a time; the bias is the last column)::

        μ_g | λ_g ~ N(Σ θ_c / (n_g + γ₀), ((n_g + γ₀) λ_g)⁻¹)
        λ_g | μ_g ~ Gamma((a₀ + n_g + 1) / 2, rate = (b₀ + Σ (θ_c − μ_g)² + γ₀ μ_g²) / 2)

    μ is drawn given the previous λ, then λ given the new μ (as libFM does).
    """
    counts = np.bincount(groups, minlength=n_groups).astype(np.float64)[:, None]
    sums = np.zeros((n_groups, params.shape[1]))
    np.add.at(sums, groups, params)
    post = counts + _GROUP_GAMMA0
    mean = sums / post + rng.standard_normal(sums.shape) / np.sqrt(post * precision)
    squares = np.zeros_like(sums)
    np.add.at(squares, groups, np.square(params - mean[groups]))
    rate = (_GROUP_B0 + squares + _GROUP_GAMMA0 * np.square(mean)) / 2.0
    precision = rng.gamma(np.broadcast_to((_GROUP_A0 + counts + 1.0) / 2.0, rate.shape),
                          1.0 / rate)
    return mean, precision


def _prior_groups(encoder: FeatureEncoder) -> tuple[np.ndarray, int]:
    """The hyper-prior group of each encoded column, and the number of groups.

    One group per source column, except that the boolean flag columns of a side
    (ML-100K's 19 genres) share one: a group of a single coefficient cannot tell
    its prior's mean and precision apart from that coefficient.
    """
    kinds = np.array([group["kind"] for group in encoder.groups_])
    merged = np.arange(len(kinds))
    flags = np.flatnonzero(kinds == "flag")
    if len(flags):
        merged[flags] = flags[0]
    _, dense = np.unique(merged, return_inverse=True)
    owners = dense[encoder.feature_groups_]
    return owners.astype(np.int64), int(dense.max()) + 1 if len(dense) else 0


class _Side:
    """One side (users or items) of the feature sampler: its ratings, design and draws."""

    def __init__(self, indptr, other_idx, pos, design: sp.csr_matrix, groups: np.ndarray,
                 n_groups: int, own_id: np.ndarray, init: np.ndarray) -> None:
        self.indptr, self.other_idx, self.pos = indptr, other_idx, pos
        csc = design.tocsc()
        csc.sort_indices()
        self.col_ptr = csc.indptr.astype(np.int64)
        self.col_rows = csc.indices.astype(np.int32)
        self.col_vals = csc.data.astype(np.float64)
        self.design = design.astype(np.float64).tocsr()
        self.groups = groups.astype(np.int64)
        self.n_groups = n_groups
        self.params = init                        # (n_columns, k + 1): factors, then bias
        self.hyper_precision = np.ones((n_groups, init.shape[1]))
        self.own_id = own_id                      # (n_rows, k + 1): [p_u, b_u]
        self.own_eff = own_id + self.design @ self.params

    @property
    def n_columns(self) -> int:
        return self.params.shape[0]


def _frame_for_one(features: Any, encoder: FeatureEncoder) -> pd.DataFrame:
    """A new user's raw features (mapping, Series or one-row DataFrame) as a one-row frame."""
    if isinstance(features, pd.DataFrame):
        if len(features) != 1:
            raise DataError(f"features= must describe one user, got {len(features)} rows")
        row = features.iloc[0].to_dict()
    elif isinstance(features, (dict, pd.Series)):
        row = dict(features)
    else:
        raise DataError(f"features= must be a dict, a pandas Series or a one-row DataFrame, "
                        f"got {type(features).__name__}")
    known = [group["name"] for group in encoder.groups_]
    extra = sorted(str(key) for key in row if key not in known)
    if extra:
        raise DataError(f"features= has columns {extra} the model was not fitted with "
                        f"(it uses {known})")
    # Absent columns stay missing: the user simply has no feature in that group.
    frame = pd.DataFrame([row], index=[0]).reindex(columns=known)
    return frame


class BayesianMF(IterativeModel):
    r"""Bayesian MF (Salakhutdinov & Mnih 2008) with biases and side information, by Gibbs sampling.

    .. math::
        r_{ui} \sim \mathcal N(\mu + b_u + b_i + p_u\cdot q_i,\ \alpha^{-1})

    The user vectors :math:`[p_u, b_u]` share a Gaussian prior
    :math:`\mathcal N(\mu_U, \Lambda_U^{-1})` whose mean and precision have a
    Normal–Wishart hyper-prior (likewise for items), and the noise precision
    :math:`\alpha` a Gamma prior. Each Gibbs iteration samples the user
    hyper-parameters, then every user vector from its Gaussian conditional —
    the same per-row normal equations as :class:`~matfact.ALS`, solved by the
    same kernel, plus a draw — then the same for items, then :math:`\alpha`.
    Predictions average the model's output over the samples after
    ``burn_in``. Since :math:`\frac1S\sum_s p_u^{(s)}\cdot q_i^{(s)}` is the dot
    product of the samples laid side by side (divided by :math:`\sqrt S` each),
    ``keep_samples=True`` stores exactly that: ``user_factors_`` and
    ``item_factors_`` have ``n_factors × n_kept`` columns (ML-100K: a 21.6 MB
    file, 14× a ``BiasedMF(n_factors=10)``'s). By default the fit then summarizes the
    samples into one: the posterior-mean score matrix
    :math:`M = \frac1S\sum_s P_s Q_s^\top` projected on its top ``n_factors``
    right singular vectors (:math:`M V V^\top`, the best rank-``n_factors``
    approximation of the averaged scores; ML-100K 5-fold RMSE 0.8936 against
    0.8933), so the factors are ``n_factors`` wide and a saved model is about
    the size of a ``BiasedMF`` of the same ``n_factors``. The biases are the sample means
    either way, and scoring, recommending and saving work as for any factor
    model.

    **Side information** (``user_features``, ``item_features``, ``implicit``)
    turns the model into a Bayesian factorization machine over user–item
    interactions (Freudenthaler et al. 2011):

    .. math::
        \hat r_{ui} = \mu + b_u + b_i + \sum_{c} z_{uc} w_c + \sum_{c'} z_{ic'} w_{c'}
        + \Big(p_u + \sum_c z_{uc} v_c\Big)\cdot\Big(q_i + \sum_{c'} z_{ic'} v_{c'}\Big)

    where :math:`z_u` is the user's encoded features (one-hot categories,
    buckets, flags; see :class:`~matfact.data.features.FeatureEncoder`) and, with
    ``implicit``, :math:`|N(u)|^{-1/2}` for each item :math:`j\in N(u)` the
    user rated in training (SVD++'s :math:`y_j`); :math:`z_i` likewise. Every
    column :math:`c` has a bias :math:`w_c` and a vector :math:`v_c`, with a
    Normal–Gamma hyper-prior :math:`w_c \sim \mathcal N(\mu_g, \lambda_g^{-1})`
    per feature group :math:`g` and per dimension: a group is a source column
    of the features (all boolean flag columns of a side, such as genres, form
    one group) and the implicit items are one more. The id vectors keep their
    Normal–Wishart prior and block draw (given the other side's effective
    vectors); each column's coefficients are then drawn one dimension at a
    time from their Gaussian conditional (the FM coordinate-wise sampler),
    keeping residuals cached so a sweep costs :math:`O(\mathrm{nnz}\cdot k)`.
    The stored factors and biases are the *effective* ones
    (:math:`p_u + \sum_c z_{uc}v_c`, :math:`b_u + \sum_c z_{uc}w_c`), so
    scoring is unchanged; users or items in the training vocabulary without
    any rating are scored from their features alone.

    Parameters
    ----------
    n_factors : int, default=10
    max_iter : int, default=200
        Gibbs iterations in all, burn-in included.
    burn_in : int, default=20
        Iterations discarded before averaging.
    thin : int, default=1
        Keep every ``thin``-th sample after burn-in (bounds the model's size).
    biased : bool, default=True
        Without biases the side-information columns have no bias :math:`w_c` either.
    beta0 : float, default=2.0
        Prior strength of the hyper-mean.
    alpha_shape, alpha_rate : float, default=1.0, 1.0
        Gamma prior of the noise precision :math:`\alpha`.
    init_std : float, default=0.1
    user_features, item_features : bool, list of str or None, default=None
        Use the training data's ``user_features`` / ``item_features``: ``True``
        for every describing column (identifiers such as titles, URLs and dates
        are skipped), or a list of column names. The data must carry them.
    implicit : {False, True, "both"}, default=False
        ``True`` adds the group "items this user rated" (weights
        :math:`|N(u)|^{-1/2}`, from the training data only); ``"both"`` also
        "users who rated this item" on the item side.
    bins : dict of str to list of float, or None, default=None
        Bucket edges of numeric feature columns (either side), e.g.
        :data:`ML100K_BINS`; a column without edges enters standardized.
    keep_samples : bool, default=False
        Keep every kept sample side by side (exact posterior averages, per-sample
        fold-in; memory and file size grow with the samples) instead of the
        ``n_factors``-wide summary. See Notes.
    random_state : int, Generator or None, default=None
    n_threads : int or None, default=None
        The same seed gives the same samples for any thread count: all random
        draws come from one generator in a fixed order.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray of shape (n, n_factors · n_kept), float32
        The summary (``n_kept_ = 1``), or the samples side by side.
    user_bias_, item_bias_ : ndarray, float32, or None
        Posterior means of the biases.
    global_mean_ : float
    n_kept_ : int
        Samples stored: 1 (the summary) by default; with ``keep_samples=True`` the
        samples averaged, ``len(range(burn_in, n_iter_, thin))``.
    alpha_ : float
        The last sampled noise precision.
    loss_history_ : dict
        ``train_rmse`` of each iteration's sample; ``validation_rmse`` of the
        running average.
    user_encoder_, item_encoder_ : dict or None
        :meth:`FeatureEncoder.get_state` of the encoders used (plain JSON).
    user_columns_ : ndarray of shape (n_user_columns, n_kept · (n_factors + 1)), float32
        Each kept sample's :math:`[v_c, w_c]` of the user-side columns (features
        then implicit items), for :meth:`fold_in` (the summary: :math:`v_c` mapped
        into the summary's space, :math:`w_c` averaged); absent without side
        information.
    user_prior_mean_, user_prior_precision_ : ndarray of shape (n_kept, d), (n_kept, d, d)
        The user hyper-prior :math:`(\mu_U, \Lambda_U)` of each kept sample, for
        :meth:`fold_in` (the summary: its Normal–Wishart posterior mean given the
        summarized users); ``d = n_factors + 1`` with biases.
    n_user_features_ : int
        How many of the user-side columns are encoded features (the rest are
        implicit items).

    Notes
    -----
    :meth:`fold_in` places a new user in every kept sample by the mean of
    their Gaussian conditional (the sample's user hyper-prior and item
    vectors), side by side as the fitted users are; the summary is one such
    "sample" (its prior the posterior mean of the user hyper-prior, its item
    vectors the summarized ones), an approximation of the per-sample average.
    With side information the new user's implicit items are their history,
    and their features (``fold_in(..., features=...)``) are optional.

    Nothing else needs the samples: the model has no predictive-variance
    method. Models saved before ``keep_samples`` existed hold their samples
    and load, predict and fold in as with ``keep_samples=True``.

    References
    ----------
    R. Salakhutdinov, A. Mnih. Bayesian probabilistic matrix factorization
    using Markov chain Monte Carlo. ICML 2008.

    C. Freudenthaler, L. Schmidt-Thieme, S. Rendle. Bayesian factorization
    machines. NIPS workshop on sparse representation and low-rank approximation, 2011.

    S. Rendle. Scaling factorization machines to relational data. VLDB 2013.

    Examples
    --------
    >>> import pandas as pd
    >>> import matfact
    >>> ratings = matfact.make_synthetic(60, 30, 600, rank=3, random_state=0)
    >>> users = pd.DataFrame({"age": range(len(ratings.user_ids))}, index=ratings.user_ids)
    >>> data = matfact.Interactions.from_arrays(ratings.users, ratings.items, ratings.ratings,
    ...                                         user_features=users, rating_scale=(1, 5))
    >>> model = matfact.BayesianMF(n_factors=2, max_iter=8, burn_in=2, user_features=True,
    ...                            implicit=True, bins={"age": [18, 40]}, random_state=0)
    >>> model.fit(data, progress=False).user_factors_.shape  # the 6 samples, summarized
    (60, 2)
    >>> [group["name"] for group in model.user_encoder_["groups"]]
    ['age']
    >>> model.user_columns_.shape  # 4 age buckets + 30 implicit items, (2 + 1) each
    (34, 3)
    >>> model.set_params(keep_samples=True).fit(data, progress=False).user_columns_.shape
    (34, 18)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_factors": [Interval(int, 1, None)],
        "max_iter": [Interval(int, 1, None)],
        "burn_in": [Interval(int, 0, None)],
        "thin": [Interval(int, 1, None)],
        "biased": [BOOLEAN],
        "beta0": [Interval(float, 0, None, closed="neither")],
        "alpha_shape": [Interval(float, 0, None, closed="neither")],
        "alpha_rate": [Interval(float, 0, None, closed="neither")],
        "init_std": [Interval(float, 0, None)],
        "user_features": [Options(None, True, False), Instance(list, tuple)],
        "item_features": [Options(None, True, False), Instance(list, tuple)],
        "implicit": [Options(False, True, "both")],
        "bins": [Options(None), Instance(dict)],
        "keep_samples": [BOOLEAN],
        "random_state": RANDOM_STATE,
        "n_threads": N_THREADS,
    }
    _accepts: ClassVar[tuple[str, ...]] = ("explicit",)

    def __init__(self, *, n_factors: int = 10, max_iter: int = 200, burn_in: int = 20,
                 thin: int = 1, biased: bool = True, beta0: float = 2.0,
                 alpha_shape: float = 1.0, alpha_rate: float = 1.0, init_std: float = 0.1,
                 user_features: bool | list[str] | None = None,
                 item_features: bool | list[str] | None = None,
                 implicit: bool | str = False, bins: dict[str, list[float]] | None = None,
                 keep_samples: bool = False, random_state: Any = None,
                 n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.max_iter = max_iter
        self.burn_in = burn_in
        self.thin = thin
        self.biased = biased
        self.beta0 = beta0
        self.alpha_shape = alpha_shape
        self.alpha_rate = alpha_rate
        self.init_std = init_std
        self.user_features = user_features
        self.item_features = item_features
        self.implicit = implicit
        self.bins = bins
        self.keep_samples = keep_samples
        self.random_state = random_state
        self.n_threads = n_threads

    @property
    def _uses_side_information(self) -> bool:
        requested = [r for r in (self.user_features, self.item_features)
                     if r is not None and r is not False]
        return bool(requested) or self.implicit is not False

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        if self.burn_in >= self.max_iter:
            raise ParameterError(f"BayesianMF: burn_in={self.burn_in} leaves no sample to "
                                 f"average with max_iter={self.max_iter}")
        if self._uses_side_information:
            self._fit_side_information(data, validation, progress)
            return
        rng = check_random_state(self.random_state)
        k = self.n_factors
        d = k + 1 if self.biased else k
        by_user = data.to_scipy()
        by_item = by_user.T.tocsr()
        parts = [(m.indptr.astype(np.int64), m.indices.astype(np.int32),
                  np.ascontiguousarray(m.data, dtype=np.float32)) for m in (by_user, by_item)]
        if data.has_weights:
            # Sample weights scale each rating's precision: w α instead of α.
            w = sp.csr_matrix((data.weights, (data.user_codes, data.item_codes)),
                              shape=data.shape)
            w.sort_indices()
            row_weights = [np.ascontiguousarray(w.data, dtype=np.float32),
                           np.ascontiguousarray(w.T.tocsr().data, dtype=np.float32)]
            pair_weights = data.weights.astype(np.float64)
            n_eff = float(pair_weights.sum())
            if n_eff <= 0:
                raise DataError("every sample weight is 0: nothing to learn from")
            mean = float(np.dot(pair_weights, data.ratings)) / n_eff
        else:
            row_weights = [_EMPTY, _EMPTY]
            pair_weights = None
            n_eff = float(data.nnz)
            mean = float(data.ratings.mean(dtype=np.float64))
        mean = mean if self.biased else 0.0
        self.global_mean_ = mean
        user = rng.standard_normal((data.n_users, k), dtype=np.float32) * np.float32(self.init_std)
        item = rng.standard_normal((data.n_items, k), dtype=np.float32) * np.float32(self.init_std)
        user_b = np.zeros(data.n_users if self.biased else 0, np.float32)
        item_b = np.zeros(data.n_items if self.biased else 0, np.float32)
        w0_inv = np.eye(d)
        alpha = 2.0
        pairs = (data.user_codes, data.item_codes, data.ratings.astype(np.float64))
        kept: dict[str, list] = {"user": [], "item": [], "user_b": [], "item_b": [],
                                 "hyper": []}

        def vectors(factors, bias):
            return np.hstack([factors, bias[:, None]]) if self.biased else factors

        def step(iteration: int) -> tuple[float, dict]:
            nonlocal alpha
            hyper = []
            for rows, weights, own, own_b, other, other_b in (
                    (parts[0], row_weights[0], user, user_b, item, item_b),
                    (parts[1], row_weights[1], item, item_b, user, user_b)):
                mu, precision = _sample_hyper(vectors(own, own_b), self.beta0, d, w0_inv, rng)
                hyper.append((mu, precision))
                noise = rng.standard_normal((own.shape[0], d))
                indptr, indices, values = rows
                solve_rows(indptr, indices, values, weights, other, other_b, self.biased, mean,
                           alpha, precision, precision @ mu, False, noise, own, own_b)
            pred = predict_pairs(pairs[0], pairs[1], user, item, user_b, item_b, mean,
                                 self.biased)
            errors = np.square(pairs[2] - pred)
            sse = float(errors.sum() if pair_weights is None else np.dot(pair_weights, errors))
            alpha = rng.gamma(self.alpha_shape + n_eff / 2.0,
                              1.0 / (self.alpha_rate + sse / 2.0))
            if iteration >= self.burn_in and (iteration - self.burn_in) % self.thin == 0:
                kept["user"].append(user.copy())
                kept["item"].append(item.copy())
                kept["user_b"].append(user_b.copy())
                kept["item_b"].append(item_b.copy())
                kept["hyper"].append(hyper[0])
            return sse, {"alpha": alpha}

        self._publisher = lambda: self._publish(kept)
        try:
            with numba_threads(self.n_threads, data.nnz * (self.n_factors + 1) ** 2 // 2):
                self._run_iterations(step, n_eff, validation, progress, "BayesianMF")
        finally:
            self._publisher = None
        self.alpha_ = float(alpha)
        if not self.keep_samples:
            _summarize_samples(self, None, rng)

    # ------------------------------------------------------------ side information
    def _encoder(self, side: str, request: Any, frame: pd.DataFrame | None,
                 bins: dict[str, list[float]]) -> FeatureEncoder | None:
        if request is None or request is False:
            return None
        columns = None
        if request is not True:
            columns = list(request)
            if not columns or not all(isinstance(c, str) for c in columns):
                raise ParameterError(f"BayesianMF: {side}_features must be True or a non-empty "
                                     f"list of column names; got {request!r}")
        if frame is None:
            raise DataError(f"BayesianMF: {side}_features={request!r}, but the training data "
                            f"carries no {side} features; pass {side}_features=<DataFrame "
                            f"indexed by {side} id> when building the Interactions, or set "
                            f"{side}_features=None")
        if columns is not None:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise DataError(f"BayesianMF: {side}_features names columns {missing} that the "
                                f"{side} features lack (they have {list(frame.columns)})")
        wanted = frame.columns if columns is None else columns
        own_bins = {name: edges for name, edges in bins.items() if name in wanted}
        encoder = FeatureEncoder(columns=columns, bins=own_bins or None).fit(frame)
        if encoder.n_features_ == 0:
            raise DataError(f"BayesianMF: no usable {side} feature column (identifiers, dates "
                            f"and empty columns are skipped); name the columns in "
                            f"{side}_features=[...]")
        return encoder

    def _encoders(self, data: Interactions) -> tuple[FeatureEncoder | None, FeatureEncoder | None]:
        bins = dict(self.bins or {})
        for name, edges in bins.items():
            if not isinstance(name, str) or not isinstance(edges, (list, tuple, np.ndarray)):
                raise ParameterError(f"BayesianMF: bins must map column names to lists of "
                                     f"edges; got {name!r}: {edges!r}")
        user = self._encoder("user", self.user_features, data.user_features, bins)
        item = self._encoder("item", self.item_features, data.item_features, bins)
        used = set()
        for encoder in (user, item):
            if encoder is not None:
                used |= {g["name"] for g in encoder.groups_ if g["kind"] == "bucket"}
        unused = sorted(set(bins) - used)
        if unused:
            raise ParameterError(f"BayesianMF: bins given for {unused}, which no requested "
                                 f"feature column uses; drop them or request those columns")
        return user, item

    def _fit_side_information(self, data: Interactions, validation, progress: bool) -> None:
        rng = check_random_state(self.random_state)
        k = self.n_factors
        d = k + 1 if self.biased else k
        n_dims = d  # dimensions swept per column: the k factors, then the bias
        user_encoder, item_encoder = self._encoders(data)
        n_users, n_items, nnz = data.n_users, data.n_items, data.nnz
        if nnz == 0:
            raise DataError("BayesianMF: the training data holds no rating")
        # Canonical order of the ratings: user-major, items ascending (as to_scipy()).
        order = np.lexsort((data.item_codes, data.user_codes))
        users = data.user_codes[order].astype(np.int32)
        items = data.item_codes[order].astype(np.int32)
        ratings = data.ratings[order].astype(np.float64)
        if data.has_weights:
            weights = data.weights[order].astype(np.float64)
            n_eff = float(weights.sum())
            if n_eff <= 0:
                raise DataError("every sample weight is 0: nothing to learn from")
            mean = float(np.dot(weights, ratings)) / n_eff
        else:
            weights = np.zeros(0, dtype=np.float64)
            n_eff = float(nnz)
            mean = float(ratings.mean())
        mean = mean if self.biased else 0.0
        self.global_mean_ = mean
        user_counts = np.bincount(users, minlength=n_users)
        item_counts = np.bincount(items, minlength=n_items)
        user_indptr = np.concatenate([[0], np.cumsum(user_counts)]).astype(np.int64)
        item_indptr = np.concatenate([[0], np.cumsum(item_counts)]).astype(np.int64)
        by_item = np.lexsort((users, items)).astype(np.int64)  # canonical position per entry

        def design(encoder, frame, ids, n_rows, implicit_rows, implicit_cols, n_implicit,
                   counts):
            blocks, groups, n_groups = [], [], 0
            if encoder is not None:
                blocks.append(encoder.transform(frame, ids))
                owners, n_groups = _prior_groups(encoder)
                groups.append(owners)
            if n_implicit:
                # z_uj = |N(u)|^{-1/2} for each item j the user rated in training.
                scale = 1.0 / np.sqrt(np.maximum(counts, 1))
                blocks.append(sp.csr_matrix((scale[implicit_rows], (implicit_rows,
                                                                    implicit_cols)),
                                            shape=(n_rows, n_implicit)))
                groups.append(np.full(n_implicit, n_groups))
                n_groups += 1
            if not blocks:
                return sp.csr_matrix((n_rows, 0)), np.zeros(0, np.int64), 0
            return (sp.hstack(blocks, format="csr", dtype=np.float64),
                    np.concatenate(groups).astype(np.int64), n_groups)

        user_design = design(user_encoder, data.user_features, data.user_ids, n_users, users,
                             items, n_items if self.implicit else 0, user_counts)
        item_design = design(item_encoder, data.item_features, data.item_ids, n_items, items,
                             users, n_users if self.implicit == "both" else 0, item_counts)
        # Random draws, in this order: user id factors, item id factors, user column
        # factors, item column factors (biases start at 0).
        user_id = np.zeros((n_users, k + 1))
        item_id = np.zeros((n_items, k + 1))
        user_id[:, :k] = rng.standard_normal((n_users, k), dtype=np.float32) * np.float32(
            self.init_std)
        item_id[:, :k] = rng.standard_normal((n_items, k), dtype=np.float32) * np.float32(
            self.init_std)
        sides = []
        for (matrix, groups, n_groups), own_id, indptr, other_idx, pos in (
                (user_design, user_id, user_indptr, items, np.arange(nnz, dtype=np.int64)),
                (item_design, item_id, item_indptr, users[by_item], by_item)):
            init = np.zeros((matrix.shape[1], k + 1))
            init[:, :k] = rng.standard_normal((matrix.shape[1], k)) * self.init_std
            sides.append(_Side(indptr, other_idx, pos, matrix, groups, n_groups, own_id, init))
        user_side, item_side = sides
        self.user_encoder_ = None if user_encoder is None else user_encoder.get_state()
        self.item_encoder_ = None if item_encoder is None else item_encoder.get_state()
        self.n_user_features_ = 0 if user_encoder is None else user_encoder.n_features_
        resid = np.empty(nnz)
        kernels.residuals(user_indptr, items, ratings, mean, user_side.own_eff,
                          item_side.own_eff, resid)
        w0_inv = np.eye(d)
        alpha = 2.0
        kept: dict[str, list] = {"user": [], "item": [], "hyper": [], "columns": []}

        def step(iteration: int) -> tuple[float, dict]:
            nonlocal alpha
            hyper = None
            for own, other in ((user_side, item_side), (item_side, user_side)):
                mu, precision = _sample_hyper(own.own_id[:, :d], self.beta0, d, w0_inv, rng)
                if own is user_side:
                    hyper = (mu, precision)
                noise = rng.standard_normal((own.own_id.shape[0], d))
                kernels.sample_id_rows(own.indptr, own.other_idx, own.pos, weights,
                                       other.own_eff, d, alpha, precision, precision @ mu,
                                       noise, own.own_id, own.own_eff, resid)
                if own.n_columns == 0:
                    continue
                group_mean, own.hyper_precision = _sample_group_hyper(
                    own.params, own.groups, own.n_groups, own.hyper_precision, rng)
                noise = rng.standard_normal((own.n_columns, k + 1))
                kernels.sweep_columns(own.indptr, own.other_idx, own.pos, weights, other.own_eff,
                                      n_dims, own.col_ptr, own.col_rows, own.col_vals,
                                      own.groups, group_mean, own.hyper_precision, alpha, noise,
                                      own.params, own.own_eff, resid)
            # Recomputed from the vectors each iteration, so rounding never accumulates.
            sse = kernels.residuals(user_indptr, items, ratings, mean, user_side.own_eff,
                                    item_side.own_eff, resid)
            if len(weights):
                sse = float(np.dot(weights, np.square(resid)))
            alpha = rng.gamma(self.alpha_shape + n_eff / 2.0,
                              1.0 / (self.alpha_rate + sse / 2.0))
            if iteration >= self.burn_in and (iteration - self.burn_in) % self.thin == 0:
                kept["user"].append(user_side.own_eff.astype(np.float32))
                kept["item"].append(item_side.own_eff.astype(np.float32))
                kept["hyper"].append(hyper)
                kept["columns"].append(user_side.params.astype(np.float32))
            return sse, {"alpha": alpha}

        self._publisher = lambda: self._publish_side_information(kept)
        try:
            with numba_threads(self.n_threads, nnz * (self.n_factors + 1) ** 2 // 2):
                self._run_iterations(step, n_eff, validation, progress, "BayesianMF")
        finally:
            self._publisher = None
        self.alpha_ = float(alpha)
        if not self.keep_samples:
            _summarize_samples(self, user_side.design, rng)

    def _publish_side_information(self, kept: dict[str, list]) -> None:
        n = len(kept["user"])
        if n == 0:
            return
        k = self.n_factors
        scale = np.float32(1.0 / np.sqrt(n))
        self.n_kept_ = n
        self.user_factors_ = np.hstack([s[:, :k] for s in kept["user"]]) * scale
        self.item_factors_ = np.hstack([s[:, :k] for s in kept["item"]]) * scale
        if self.biased:
            self.user_bias_ = np.mean([s[:, k] for s in kept["user"]], axis=0).astype(np.float32)
            self.item_bias_ = np.mean([s[:, k] for s in kept["item"]], axis=0).astype(np.float32)
            self.item_bias_samples_ = np.stack([s[:, k] for s in kept["item"]], axis=1)
        else:
            self.user_bias_ = self.item_bias_ = None
        self.user_prior_mean_ = np.stack([h[0] for h in kept["hyper"]]).astype(np.float32)
        self.user_prior_precision_ = np.stack([h[1] for h in kept["hyper"]]).astype(np.float32)
        self.user_columns_ = np.hstack(kept["columns"])

    _publisher = None

    def _finalize(self) -> None:
        if self._publisher is not None:
            self._publisher()

    def _publish(self, kept: dict[str, list]) -> None:
        n = len(kept["user"])
        if n == 0:  # still burning in: nothing to average yet
            return
        scale = np.float32(1.0 / np.sqrt(n))
        self.n_kept_ = n
        self.user_factors_ = np.hstack(kept["user"]) * scale
        self.item_factors_ = np.hstack(kept["item"]) * scale
        if self.biased:
            self.user_bias_ = np.mean(kept["user_b"], axis=0).astype(np.float32)
            self.item_bias_ = np.mean(kept["item_b"], axis=0).astype(np.float32)
            self.item_bias_samples_ = np.stack(kept["item_b"], axis=1)
        else:
            self.user_bias_ = self.item_bias_ = None
        self.user_prior_mean_ = np.stack([h[0] for h in kept["hyper"]]).astype(np.float32)
        self.user_prior_precision_ = np.stack([h[1] for h in kept["hyper"]]).astype(np.float32)


    # Each item's bias in every kept sample grows with the items (fold-in subtracts it).
    _item_arrays: ClassVar[tuple[str, ...]] = ("item_bias_samples_",)

    def _set_item(self, code: int, vector: UserVector) -> None:
        super()._set_item(code, vector)
        samples = getattr(self, "item_bias_samples_", None)
        if samples is not None:
            if not samples.flags.writeable:
                samples = self.item_bias_samples_ = samples.copy()
            samples[code] = vector.bias

    def _add_rows(self, side: str, raw: np.ndarray) -> None:
        n_items = self.n_items_
        super()._add_rows(side, raw)
        columns = getattr(self, "user_columns_", None)
        if side == "item" and columns is not None and \
                columns.shape[0] == self.n_user_features_ + n_items:
            # The user-side design has a column per item (implicit feedback): a new item
            # starts with no side information, a zero row.
            pad = np.zeros((self.n_items_ - n_items, columns.shape[1]), columns.dtype)
            self.user_columns_ = np.concatenate([columns, pad])

    def _validate_state(self) -> None:
        super()._validate_state()
        samples = getattr(self, "item_bias_samples_", None)
        if samples is not None and samples.shape != (self.n_items_, self.n_kept_):
            raise ValueError(f"item_bias_samples_ has shape {samples.shape}, expected "
                             f"({self.n_items_}, {self.n_kept_})")
        columns = getattr(self, "user_columns_", None)
        if columns is not None:
            if columns.ndim != 2 or columns.shape[1] != self.n_kept_ * (self.n_factors + 1):
                raise ValueError(f"user_columns_ has shape {columns.shape}, expected (n, "
                                 f"{self.n_kept_ * (self.n_factors + 1)})")
            if not 0 <= self.n_user_features_ <= columns.shape[0]:
                raise ValueError("n_user_features_ does not match user_columns_")
            if (self.user_encoder_ is None) != (self.n_user_features_ == 0):
                raise ValueError("user_encoder_ does not match n_user_features_")

    def fold_in(self, items: Any, ratings: Any = None, *, unknown: str = "ignore",
                features: Any = None) -> UserVector:
        """Place a new user from their history without changing the model.

        Parameters
        ----------
        items : array-like of shape (n,)
            Raw ids of the items the user rated.
        ratings : array-like of shape (n,)
            Their ratings.
        unknown : {"ignore", "raise"}, default="ignore"
            What to do with items the model does not know.
        features : dict, pandas.Series or one-row DataFrame, default=None
            The new user's raw features (the columns of the training
            ``user_features``; absent ones count as missing), for a model
            fitted with ``user_features``. Optional.

        Returns
        -------
        UserVector
        """
        self._check_fitted()
        codes, values = self._history(items, ratings, unknown)
        with single_thread():  # as every model's fold-in: numba and BLAS on this thread
            return self._fold_in(codes, values, features)

    def _new_user_columns(self, items: np.ndarray, features: Any) -> np.ndarray:
        """The new user's row ``z`` of the user-side design (features, implicit items)."""
        n_columns = self.user_columns_.shape[0]
        z = np.zeros(n_columns)
        n_features = self.n_user_features_
        if features is not None:
            encoder = FeatureEncoder.from_state(self.user_encoder_)
            z[:n_features] = encoder.transform(_frame_for_one(features, encoder),
                                               [0]).toarray()[0]
        if n_columns > n_features and len(items):
            z[n_features + items] = 1.0 / np.sqrt(len(items))
        return z

    def _fold_in(self, items: np.ndarray, values: np.ndarray, features: Any = None) -> UserVector:
        k, n_kept = self.n_factors, self.n_kept_
        columns = getattr(self, "user_columns_", None)
        if features is not None and getattr(self, "user_encoder_", None) is None:
            raise DataError("features= needs a BayesianMF fitted with user_features; this one "
                            "was not")
        # offset[s] = Σ_c z_c [v_c, w_c] of sample s: what the new user's side information
        # adds to their id vector [p_u, b_u] (zero without side information).
        offset = np.zeros((n_kept, k + 1))
        if columns is not None:
            z = self._new_user_columns(items, features)
            offset = np.einsum("c,csd->sd", z,
                               columns.astype(np.float64).reshape(len(z), n_kept, k + 1))
        # Per kept sample s: the mean of p_u's Gaussian conditional given that sample.
        q = (self.item_factors_[items].astype(np.float64) * np.sqrt(n_kept)).reshape(
            len(items), n_kept, k)
        design = np.concatenate([q, np.ones((len(items), n_kept, 1))], axis=2) if self.biased \
            else q
        target = np.repeat((values - self.global_mean_)[:, None], n_kept, axis=1)
        if self.biased:
            target = target - self.item_bias_samples_[items]
        if columns is not None:
            target = target - offset[None, :, k] - np.einsum("nsd,sd->ns", q, offset[:, :k])
        precision = self.user_prior_precision_.astype(np.float64)
        mean = self.user_prior_mean_.astype(np.float64)
        alpha = self.alpha_
        gram = precision + alpha * np.einsum("nsd,nse->sde", design, design)
        rhs = np.einsum("sde,se->sd", precision, mean) + alpha * np.einsum("nsd,ns->sd", design,
                                                                           target)
        solution = np.linalg.solve(gram, rhs[..., None])[..., 0]          # (S, d)
        factors = ((solution[:, :k] + offset[:, :k]) / np.sqrt(n_kept)).reshape(-1)
        bias = float((solution[:, k] + offset[:, k]).mean()) if self.biased else 0.0
        return UserVector(factors.astype(np.float32), bias)
