r"""Bayesian probabilistic matrix factorization by Gibbs sampling: :class:`BayesianMF`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from scipy.stats import wishart

from matfact._kernels.als import solve_rows
from matfact._kernels.sgd import predict_pairs
from matfact._threads import numba_threads
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError
from matfact.models._iterative import IterativeModel
from matfact.models._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Interval,
    check_random_state,
)
from matfact.models.base import UserVector

__all__ = ["BayesianMF"]

_EMPTY = np.zeros(0, dtype=np.float32)


def _sample_hyper(vectors: np.ndarray, beta0: float, nu0: float, w0_inv: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (μ, Λ) from the Normal–Wishart posterior given the row vectors.

    Salakhutdinov & Mnih (2008), eq. 14 with μ₀ = 0::

        β* = β₀ + N,  ν* = ν₀ + N,  μ* = N x̄ / (β₀ + N)
        W*⁻¹ = W₀⁻¹ + N S + β₀ N / (β₀ + N) · x̄ x̄ᵀ
        Λ ~ Wishart(W*, ν*),  μ ~ N(μ*, (β* Λ)⁻¹)
    """
    n, d = vectors.shape
    x = vectors.astype(np.float64)
    mean = x.mean(axis=0)
    centered = x - mean
    scatter = centered.T @ centered
    w_inv = w0_inv + scatter + (beta0 * n / (beta0 + n)) * np.outer(mean, mean)
    w = np.linalg.inv(w_inv)
    w = (w + w.T) / 2
    precision = wishart.rvs(df=nu0 + n, scale=w, random_state=rng)
    precision = np.atleast_2d(precision)
    mu_star = n * mean / (beta0 + n)
    cov = np.linalg.inv((beta0 + n) * precision)
    mu = rng.multivariate_normal(mu_star, (cov + cov.T) / 2)
    return mu, precision


class BayesianMF(IterativeModel):
    r"""Bayesian MF (Salakhutdinov & Mnih 2008) with biases, by Gibbs sampling.

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
    the fitted model stores exactly that: ``user_factors_`` and
    ``item_factors_`` have ``n_factors × n_kept`` columns and the biases are
    the sample means, so scoring, recommending and saving work as for any
    factor model.

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
    beta0 : float, default=2.0
        Prior strength of the hyper-mean.
    alpha_shape, alpha_rate : float, default=1.0, 1.0
        Gamma prior of the noise precision :math:`\alpha`.
    init_std : float, default=0.1
    random_state : int, Generator or None, default=None
    n_threads : int or None, default=None
        The same seed gives the same samples for any thread count: all random
        draws come from one generator in a fixed order.

    Attributes
    ----------
    user_factors_, item_factors_ : ndarray of shape (n, n_factors · n_kept), float32
    user_bias_, item_bias_ : ndarray, float32, or None
        Posterior means of the biases.
    global_mean_ : float
    n_kept_ : int
        Samples averaged.
    alpha_ : float
        The last sampled noise precision.
    loss_history_ : dict
        ``train_rmse`` of each iteration's sample; ``validation_rmse`` of the
        running average.

    Notes
    -----
    :meth:`fold_in` places a new user in every kept sample by the mean of
    their Gaussian conditional (the sample's user hyper-prior and item
    vectors), side by side as the fitted users are.

    References
    ----------
    R. Salakhutdinov, A. Mnih. Bayesian probabilistic matrix factorization
    using Markov chain Monte Carlo. ICML 2008.
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
        "random_state": RANDOM_STATE,
        "n_threads": N_THREADS,
    }
    _accepts: ClassVar[tuple[str, ...]] = ("explicit",)

    def __init__(self, *, n_factors: int = 10, max_iter: int = 200, burn_in: int = 20,
                 thin: int = 1, biased: bool = True, beta0: float = 2.0,
                 alpha_shape: float = 1.0, alpha_rate: float = 1.0, init_std: float = 0.1,
                 random_state: Any = None, n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.max_iter = max_iter
        self.burn_in = burn_in
        self.thin = thin
        self.biased = biased
        self.beta0 = beta0
        self.alpha_shape = alpha_shape
        self.alpha_rate = alpha_rate
        self.init_std = init_std
        self.random_state = random_state
        self.n_threads = n_threads

    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        if self.burn_in >= self.max_iter:
            from matfact.exceptions import ParameterError

            raise ParameterError(f"BayesianMF: burn_in={self.burn_in} leaves no sample to "
                                 f"average with max_iter={self.max_iter}")
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

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        k, n_kept = self.n_factors, self.n_kept_
        # Per kept sample s: the mean of p_u's Gaussian conditional given that sample.
        q = (self.item_factors_[items].astype(np.float64) * np.sqrt(n_kept)).reshape(
            len(items), n_kept, k)
        design = np.concatenate([q, np.ones((len(items), n_kept, 1))], axis=2) if self.biased \
            else q
        target = np.repeat((values - self.global_mean_)[:, None], n_kept, axis=1)
        if self.biased:
            target = target - self.item_bias_samples_[items]
        precision = self.user_prior_precision_.astype(np.float64)
        mean = self.user_prior_mean_.astype(np.float64)
        alpha = self.alpha_
        gram = precision + alpha * np.einsum("nsd,nse->sde", design, design)
        rhs = np.einsum("sde,se->sd", precision, mean) + alpha * np.einsum("nsd,ns->sd", design,
                                                                           target)
        solution = np.linalg.solve(gram, rhs[..., None])[..., 0]          # (S, d)
        factors = (solution[:, :k] / np.sqrt(n_kept)).reshape(-1).astype(np.float32)
        bias = float(solution[:, k].mean()) if self.biased else 0.0
        return UserVector(factors, bias)
