r"""Why a model gives a user an item: the score split into the user's history items.

Every factor model places a user from a history by a linear solve (its fold-in): for
the user's history items :math:`j` with design rows :math:`a_j` (the item vector, with
a 1 appended for a user bias), weights :math:`\omega_j` and targets :math:`t_j` (the
rating less the baselines, or Hu et al.'s preference 1), the user is

.. math::
    x_u = W_u \Big(\sum_j a_j\,\omega_j t_j + b_0\Big),
    \qquad W_u = \Big(P + G_0 + \sum_j \omega_j a_j a_j^\top\Big)^{-1},

with :math:`P` the model's ridge (scaled as its fold-in scales it), :math:`G_0` the
Gram matrix of the cells that are not in the history (ImplicitALS' :math:`Y^\top Y`) and
:math:`b_0` a constant (BayesianMF's prior mean, NMF's L1 shrinkage). The score of item
:math:`i` is then

.. math::
    \hat s_{ui} = \text{base}_i + b_u + e_i^\top x_u
    = \text{base}_i + b_u + \sum_j \underbrace{(e_i^\top W_u a_j)}_{s_{ij}}\,\omega_j t_j
      + e_i^\top W_u b_0,

with :math:`e_i = [q_i, 0]` the item's vector (its factor part only: the user bias
:math:`b_u` is reported as its own term, since it moves every item alike). This is
Hu, Koren & Volinsky (2008, §5)'s :math:`s_{ij} c_{uj}` for ImplicitALS, and the same
algebra for every other model's fold-in: the parts sum to the score the model gives
the user placed from that history. A part of the user vector the fold-in adds without
solving (SVD++'s :math:`|N(u)|^{-1/2}\sum_m y_m`, BayesianMF's implicit columns) is an
offset :math:`o = \sum_c z_c V_c`: it reaches the score directly and through the
targets it changes, and each column's share
:math:`z_c (e_i - \sum_j s_{ij}\omega_j a_j)^\top V_c` goes to its history item.

Models without such a solve (BPR and ranking-loss HybridMF, whose fold-in is gradient
ascent) get a documented approximation instead (``exact=False``): the user's vector
projected on the history's item vectors, the rest reported as ``"unexplained"``.

A HybridMF user whose kept feature row composes their vector (every user of the fit or
of ``add_users``, whatever the loss) is not placed by a fold-in at all: their trained
score is split into the user's and the item's features instead (:func:`explain_features`),
exactly. A HybridMF user the fold-in placed (``update_users``, live ratings) and an
anonymous history are split by history items, the item's bias by its features.

The public door is :meth:`Recommender.explain <matfact.models.base.Recommender.explain>`
and the ``explain=`` keyword of ``recommend`` / ``recommend_for_history``; see
docs/explanations.md for the math of each model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from matfact._linalg import ridge_gram
from matfact._threads import single_thread
from matfact.exceptions import ParameterError
from matfact.models._updates import UserVector

__all__ = ["Explanation", "Contribution", "because_list", "explain_codes", "explain_features",
           "EXACT_TOLERANCE"]

#: Relative tolerance (of the largest of |score| and the parts) within which the parts
#: of an exact decomposition must sum to the model's score; beyond it the difference is
#: reported as ``"unexplained"`` and ``exact`` is False.
EXACT_TOLERANCE = 1e-4


class Contribution(NamedTuple):
    """One history item's (or, for HybridMF, one feature's) share of a score.

    Attributes
    ----------
    item : int or str
        The raw item id; for a feature, its name (``"user: age=25-34"``,
        ``"item: genre=Comedy"``, ``"user id"``, ``"item id"``).
    contribution : float
        What the item adds to the score (negative: it pulls the score down).
    value : float
        The rating (or interaction weight) of the history the model read; for a
        feature, its weight in the user's or item's (normalized) feature row.
    feature : bool, default=False
        Whether this names a feature of a :class:`~matfact.HybridMF` rather than a
        history item.
    """

    item: Any
    contribution: float
    value: float
    feature: bool = False


@dataclasses.dataclass(frozen=True)
class Explanation:
    """A score split into the user's history items (or features) and the other terms.

    ``sum(c.contribution for c in contributions) + rest + sum(other_terms.values())``
    equals ``score`` (to float32 precision when ``exact``).

    Attributes
    ----------
    user : int, str or None
        The raw user id; None for an anonymous history.
    item : int or str
        The raw item id explained.
    score : float
        The score explained: the model's score (not clipped to the rating scale) for
        the user as placed from the history. With ``folded_in=False`` (an
        approximation of a known user), the trained score.
    contributions : tuple of Contribution
        The ``n`` history items that add most to the score, largest first. For a
        :class:`~matfact.HybridMF` user placed by their features (every user of the
        fit or of ``add_users``), the ``n`` features of the user and the item that
        add most instead (``feature`` True).
    rest : float
        The summed contributions of the history items (or features) not listed.
    other_terms : dict of str to float
        The parts that are not history items: ``"global mean"``, ``"item bias"``,
        ``"item time bias"``, ``"user bias"`` (a folded-in user's bias, itself
        placed from the history), ``"prior mean"`` (BayesianMF), ``"l1 penalty"``
        (NMF), ``"unexplained"`` (what an approximation leaves); for HybridMF the
        item's features' shares of its bias (``"item: genre=Comedy"``) in place of
        ``"item bias"`` when history items explain the rest, ...
    exact : bool
        Whether the parts are an exact decomposition (within :data:`EXACT_TOLERANCE`).
    folded_in : bool
        Whether the score is that of the user re-placed from their history by the
        model's fold-in (every exact explanation), rather than the trained vector.
    trained_score : float or None
        The known user's score with the trained vector (None for an anonymous history).
    vector_gap : float or None
        ``‖x_fold − x_trained‖ / ‖x_trained‖`` of a known user's folded-in vector (0 if
        they agree; None for an anonymous history or without fold-in).
    method : str
        How the score was split (e.g. ``"ridge fold-in"``, ``"projection (approximate)"``).
    """

    user: Any
    item: Any
    score: float
    contributions: tuple[Contribution, ...]
    rest: float
    other_terms: dict[str, float]
    exact: bool
    folded_in: bool
    trained_score: float | None
    vector_gap: float | None
    method: str

    def total(self) -> float:
        """The sum of the parts (equal to ``score`` when ``exact``)."""
        return float(sum(c.contribution for c in self.contributions) + self.rest
                     + sum(self.other_terms.values()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: ids as int or str, numbers as float, contributions as dicts."""
        return {
            "user": _plain(self.user),
            "item": _plain(self.item),
            "score": float(self.score),
            "contributions": [_entry(c, {"item": _plain(c.item),
                                         "contribution": float(c.contribution),
                                         "value": float(c.value)})
                              for c in self.contributions],
            "rest": float(self.rest),
            "other_terms": {k: float(v) for k, v in self.other_terms.items()},
            "exact": bool(self.exact),
            "folded_in": bool(self.folded_in),
            "trained_score": None if self.trained_score is None else float(self.trained_score),
            "vector_gap": None if self.vector_gap is None else float(self.vector_gap),
            "method": self.method,
        }


def because_list(explanation: Explanation, titles: Any = None, *,
                 index: Any = None) -> list[dict[str, Any]]:
    """The "because you rated ..." list of an explanation, as plain JSON types.

    The one shape of an explanation shown to a user (``matfact recommend --explain
    --json`` and the service's ``because``): the listed contributions, largest first,
    without the terms that are not history.

    Parameters
    ----------
    explanation : Explanation
    titles : mapping or ndarray of str, default=None
        Display titles: a mapping of raw item id to title (e.g. ``--item-titles``), or
        an array in item-code order (a model's ``item_titles_``), which needs
        ``index``. None: every ``title`` is None.
    index : IdIndex, default=None
        The model's ``item_index_``, to find an id's row of an array of ``titles``.

    Returns
    -------
    list of dict
        One per listed contribution: ``{"item": id, "title": str or None,
        "contribution": float, "value": float}`` (``value`` is the rating or
        interaction weight the model read). A HybridMF feature's dict names it in
        ``item`` (``"item: genre=Comedy"``), has no title, its weight in its feature
        row as ``value``, and ``"feature": true`` (an item's dict has no such key).
        A missing or empty title is None.

    Examples
    --------
    >>> why = Explanation(user=1, item=12, score=4.0,
    ...                   contributions=(Contribution(10, 0.5, 5.0),), rest=0.0,
    ...                   other_terms={"global mean": 3.5}, exact=True, folded_in=True,
    ...                   trained_score=4.0, vector_gap=0.0, method="ridge fold-in (ALS)")
    >>> because_list(why, {10: "Heat (1995)"})
    [{'item': 10, 'title': 'Heat (1995)', 'contribution': 0.5, 'value': 5.0}]
    """
    items = [_plain(c.item) for c in explanation.contributions]
    if titles is None:
        names: list[Any] = [None] * len(items)
    elif isinstance(titles, np.ndarray):
        if index is None:
            raise ParameterError("because_list: an array of titles is in item-code order; "
                                 "pass index=model.item_index_ to look ids up in it")
        # One id at a time: for the 3-10 ids of a list, IdIndex.code is ~20x faster than
        # a pandas lookup (this runs per recommended item in the service). Feature names
        # of explain_features are not item ids: they find no row (-1).
        codes = [index.code(item) for item in items]
        names = [titles[code] if 0 <= code < len(titles) else None for code in codes]
    else:
        names = [titles.get(item) for item in items]
    return [_entry(c, {"item": item,
                       "title": (str(name) if name is not None and str(name) and not c.feature
                                 else None),
                       "contribution": float(c.contribution), "value": float(c.value)})
            for item, name, c in zip(items, names, explanation.contributions, strict=True)]


def _entry(contribution: Contribution, entry: dict[str, Any]) -> dict[str, Any]:
    """A contribution's JSON dict; a feature's says so (an item's keeps its four keys)."""
    if contribution.feature:
        entry["feature"] = True
    return entry


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return str(value)


# ---------------------------------------------------------------------- the fold-in system
class _System(NamedTuple):
    r"""One model's fold-in as the linear system of the module doc, per sample ``s``.

    ``S`` is 1 except for BayesianMF (one solve per kept posterior sample).
    """

    design: np.ndarray          # (S, n, d): a_j
    matrix: np.ndarray          # (S, d, d): P + G_0 + Σ ω a aᵀ
    weight: np.ndarray          # (n,): ω_j
    target: np.ndarray          # (S, n): t_j before the offset's share is taken out
    readout: Callable[[np.ndarray], np.ndarray]  # item codes (m,) → e_i of shape (S, m, d)
    constants: dict[str, np.ndarray]  # label → b_0 of shape (S, d)
    offset_rows: np.ndarray     # (n, S, d): V of each history item's offset column (or empty)
    offset_scale: float         # z of every offset column (1/√n)
    method: str


def _solve_many(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``matrix[s]⁻¹ rhs[s]`` for each sample, by Cholesky (the systems are symmetric
    positive definite); LU for one that is only semi-definite, as the models' own solves."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    out = np.empty_like(rhs)
    for s in range(len(matrix)):
        try:
            out[s] = cho_solve(cho_factor(matrix[s], lower=True, check_finite=False),
                               rhs[s], check_finite=False)
        except LinAlgError:
            out[s] = np.linalg.solve(matrix[s], rhs[s])
    return out


def _decompose(system: _System, items: np.ndarray, solve: bool = False
               ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """Each history item's share of the factor part of each item's score.

    Returns
    -------
    shares : ndarray of shape (m, n)
        Item ``i``'s score share of history item ``j``: Σ_s s_ij ω_j t_j plus its
        offset column's share.
    constants : dict of str to ndarray of shape (m,)
    solution : ndarray of shape (d,) or None
        With ``solve`` (one sample, no offset or constant), the system's solution
        ``W Σ_j a_j ω_j t_j``: the fold-in itself, from the same factorization.
    """
    readout = system.readout(items)                                  # (S, m, d)
    rhs = np.swapaxes(readout, 1, 2)                                 # (S, d, m)
    if solve:
        own = system.design[0].T @ (system.weight * system.target[0])
        rhs = np.concatenate([rhs, own[None, :, None]], axis=2)
    h = _solve_many(system.matrix, rhs)
    solution = None
    if solve:
        solution, h = h[0, :, -1], h[:, :, :-1]
    similarity = system.design @ h                                   # (S, n, m) = s_ij
    weighted = similarity * (system.weight[None, :, None])           # s_ij ω_j
    shares = np.einsum("snm,sn->mn", weighted, system.target)
    constants = {label: np.einsum("sd,sdm->m", b0, h)
                 for label, b0 in system.constants.items()}
    if system.offset_rows.size:
        # The offset reaches the score directly (e_i) and through the targets it lowers
        # (− Σ_j s_ij ω_j a_j): u_i = e_i − Σ_j s_ij ω_j a_j, column c's share z_c u_i·V_c.
        through = np.einsum("snm,snd->smd", weighted, system.design)
        u = readout - through                                        # (S, m, d)
        shares = shares + system.offset_scale * np.einsum("smd,nsd->mn", u,
                                                          system.offset_rows)
    return shares, constants, solution


def _with_bias(q: np.ndarray, biased: bool) -> np.ndarray:
    return np.hstack([q, np.ones((len(q), 1))]) if biased else q


def _factor_readout(model: Any, d: int) -> Callable[[np.ndarray], np.ndarray]:
    """``e_i = [q_i, 0]``: the item's vector against the factor part of the solution."""
    k = model.item_factors_.shape[1]

    def readout(items: np.ndarray) -> np.ndarray:
        out = np.zeros((1, len(items), d))
        out[0, :, :k] = model.item_factors_[items]
        return out

    return readout


def _no_offsets(n: int, s: int, d: int) -> np.ndarray:
    return np.zeros((0, s, d))


def _als_system(model: Any, items: np.ndarray, values: np.ndarray) -> _System:
    # ALS' fold-in (solve_rows): (Σ a aᵀ + s·λ I) x = Σ a (r − μ − b_j), s = n with
    # weighted_reg (the history carries no sample weights), λ on the bias too.
    q = model.item_factors_[items].astype(np.float64)
    biased = bool(model.biased)
    design = _with_bias(q, biased)
    d = design.shape[1]
    target = np.asarray(values, np.float64) - model.global_mean_
    if biased:
        target = target - model.item_bias_[items]
    scale = float(len(items)) if model.weighted_reg else 1.0
    matrix = design.T @ design + scale * model.reg * np.eye(d)
    return _System(design[None], matrix[None], np.ones(len(items)), target[None],
                   _factor_readout(model, d), {}, _no_offsets(0, 1, d), 0.0,
                   "ridge fold-in (ALS)")


def _implicit_als_system(model: Any, items: np.ndarray, values: np.ndarray) -> _System:
    # Hu et al.: (YᵀY + λ n^ν I + Σ (c_j − 1) y_j y_jᵀ) x = Σ c_j y_j; with G_0 + Σ c y yᵀ
    # written as YᵀY − Σ y yᵀ + Σ c y yᵀ, each history item has weight c_j and target 1.
    y = model.item_factors_[items].astype(np.float64)
    k = y.shape[1]
    confidence = np.asarray(model.confidence_of(np.asarray(values, np.float64)), np.float64)
    # The fold-in's own kept YᵀY + λI (float32; asking for another would evict it), and
    # its extra ridge λ(n^ν − 1) of the frequency-scaled regularization.
    gram = np.asarray(ridge_gram(model.item_factors_, model.reg, np.float32), np.float64)
    extra = model.reg * (max(len(items), 1) ** model.reg_exponent - 1.0)
    matrix = gram + (y.T * (confidence - 1.0)) @ y + np.float32(extra) * np.eye(k)
    return _System(y[None], matrix[None], confidence, np.ones((1, len(items))),
                   _factor_readout(model, k), {}, _no_offsets(0, 1, k), 0.0,
                   "Hu et al. (2008) s_ij·c_j")


def _sgd_target(model: Any, items: np.ndarray, values: np.ndarray) -> np.ndarray:
    target = np.asarray(values, np.float64) - model.global_mean_
    if model.item_bias_ is not None:
        target = target - model.item_bias_[items]
    return target - model._now_bin_bias(items)


def _ridge_matrix(design: np.ndarray, n: int, k: int, reg: float, reg_bias: float,
                  jitter: float = 0.0) -> np.ndarray:
    penalty = [reg] * k + [reg_bias] * (design.shape[1] - k)
    return design.T @ design + n * np.diag(penalty) + jitter * np.eye(design.shape[1])


def _biased_mf_system(model: Any, items: np.ndarray, values: np.ndarray) -> _System:
    # _ridge_fold_in: Σ (t − b − p·q)² + n(λ‖p‖² + λ_b b²), t = r − μ − b_j − b_j,bin(now).
    q = model.item_factors_[items].astype(np.float64)
    k = q.shape[1]
    design = _with_bias(q, bool(model.biased))
    matrix = _ridge_matrix(design, len(items), k, model.reg, model.reg_bias)
    target = _sgd_target(model, items, values)
    return _System(design[None], matrix[None], np.ones(len(items)), target[None],
                   _factor_readout(model, design.shape[1]), {},
                   _no_offsets(0, 1, design.shape[1]), 0.0, "ridge fold-in (BiasedMF)")


def _svdpp_system(model: Any, items: np.ndarray, values: np.ndarray) -> _System:
    # p = own + z, z = |N|^(-1/2) Σ y_m; own solves the BiasedMF ridge on t − q_j·z. The
    # offset o = [z, 0] has one column per history item (z_c = 1/√n, V_c = [y_c, 0]).
    q = model.item_factors_[items].astype(np.float64)
    k = q.shape[1]
    design = _with_bias(q, True)
    matrix = _ridge_matrix(design, len(items), k, model.reg, model.reg_bias)
    target = _sgd_target(model, items, values)
    rows = np.zeros((len(items), 1, k + 1))
    rows[:, 0, :k] = model.implicit_factors_[items]
    scale = 1.0 / math.sqrt(len(items)) if len(items) else 0.0
    return _System(design[None], matrix[None], np.ones(len(items)), target[None],
                   _factor_readout(model, k + 1), {}, rows, scale,
                   "ridge fold-in with implicit term (SVD++)")


def _pure_svd_system(model: Any, items: np.ndarray, values: np.ndarray) -> _System:
    # p = r V_k: no solve (W = I), s_ij = v_i·v_j.
    v = model.item_factors_[items].astype(np.float64)
    k = v.shape[1]
    return _System(v[None], np.eye(k)[None], np.ones(len(items)),
                   np.asarray(values, np.float64)[None], _factor_readout(model, k), {},
                   _no_offsets(0, 1, k), 0.0, "projection r V_k (PureSVD)")


def _nmf_system(model: Any, items: np.ndarray, values: np.ndarray,
                vector: UserVector) -> _System:
    # The NNLS fold-in's optimum solves, on its active set S = {f: p_f > 0} (and the
    # bias), the stationarity equations (A_SᵀA_S + diag(s·l2, λ_b)) x = A_Sᵀ t − s·l1·[1, 0]:
    # a ridge system with the L1 shrinkage as a constant term.
    active = np.flatnonzero(np.asarray(vector.factors) > 0)
    biased = model.user_bias_ is not None
    q = model.item_factors_[items][:, active].astype(np.float64)
    design = _with_bias(q, biased)
    d = design.shape[1]
    (l1, l2), _ = model._masked_penalties()
    scale = float(len(items)) if model.weighted_reg else 1.0
    penalty = [scale * l2] * len(active) + ([model.reg_bias] if biased else [])
    matrix = design.T @ design + np.diag(penalty)
    target = np.asarray(values, np.float64) - model.global_mean_
    if biased:
        target = target - model.item_bias_[items]
    shrink = np.zeros(d)
    shrink[:len(active)] = -scale * l1


    def readout(codes: np.ndarray) -> np.ndarray:
        out = np.zeros((1, len(codes), d))
        out[0, :, :len(active)] = model.item_factors_[codes][:, active]
        return out

    constants = {"l1 penalty": shrink[None]} if l1 > 0 and len(active) else {}
    return _System(design[None], matrix[None], np.ones(len(items)), target[None], readout,
                   constants, _no_offsets(0, 1, d), 0.0, "NNLS fold-in, active set (NMF)")


def _bayesian_system(model: Any, items: np.ndarray, values: np.ndarray) -> _System:
    # Per kept sample s: (Λ_s + α A_sᵀA_s) x_s = Λ_s m_s + α A_sᵀ t_s; the user vector is
    # the samples' x_s (plus the implicit columns' offset) side by side, scaled by 1/√S,
    # against item vectors scaled the same: e_is = [q_is / S, 0].
    k, n_kept = model.n_factors, model.n_kept_
    n = len(items)
    biased = bool(model.biased)
    q = (model.item_factors_[items].astype(np.float64) * np.sqrt(n_kept)).reshape(n, n_kept, k)
    design = np.concatenate([q, np.ones((n, n_kept, 1))], axis=2) if biased else q
    design = np.swapaxes(design, 0, 1)                                # (S, n, d)
    d = design.shape[2]
    target = np.repeat((np.asarray(values, np.float64) - model.global_mean_)[None, :],
                       n_kept, axis=0)
    if biased:
        target = target - model.item_bias_samples_[items].T
    alpha = float(model.alpha_)
    precision = model.user_prior_precision_.astype(np.float64)
    matrix = precision + alpha * np.einsum("snd,sne->sde", design, design)
    prior = np.einsum("sde,se->sd", precision, model.user_prior_mean_.astype(np.float64))
    offset_rows = np.zeros((0, n_kept, d))
    scale = 0.0
    columns = getattr(model, "user_columns_", None)
    if columns is not None and n and columns.shape[0] > model.n_user_features_:
        # Implicit-feedback columns: each history item m has z = 1/√n and V = its rows.
        offset_rows = columns[model.n_user_features_ + items].astype(np.float64).reshape(
            n, n_kept, k + 1)[:, :, :d]
        scale = 1.0 / math.sqrt(n)

    def readout(codes: np.ndarray) -> np.ndarray:
        out = np.zeros((n_kept, len(codes), d))
        qi = model.item_factors_[codes].astype(np.float64).reshape(len(codes), n_kept, k)
        out[:, :, :k] = np.swapaxes(qi, 0, 1) / np.sqrt(n_kept)
        return out

    return _System(design, matrix, np.full(n, alpha), target, readout,
                   {"prior mean": prior}, offset_rows, scale,
                   f"posterior-mean fold-in "
                   f"{f'over {n_kept} samples' if n_kept > 1 else 'from the samples summary'}"
                   f" (BayesianMF)")


def _hybrid_system(model: Any, items: np.ndarray, values: np.ndarray) -> _System:
    # The squared loss' fold-in: BiasedMF's ridge on the composed item vectors, with the
    # model's 1e-8 jitter (ranking losses are approximated, see explain_codes).
    q = model.item_factors_[items].astype(np.float64)
    k = q.shape[1]
    design = _with_bias(q, True)
    matrix = _ridge_matrix(design, len(items), k, model.reg, model.reg_bias, jitter=1e-8)
    target = (np.asarray(values, np.float64) - model.global_mean_
              - model.item_bias_[items])
    return _System(design[None], matrix[None], np.ones(len(items)), target[None],
                   _factor_readout(model, k + 1), {}, _no_offsets(0, 1, k + 1), 0.0,
                   "ridge fold-in (HybridMF, squared loss)")


#: Class name → builder of its fold-in system (looked up along the MRO, so subclasses
#: inherit their parent's; NMF's also needs the folded-in vector for its active set).
_BUILDERS: dict[str, Callable] = {
    "ALS": _als_system,
    "ImplicitALS": _implicit_als_system,
    "BiasedMF": _biased_mf_system,
    "SVDPlusPlus": _svdpp_system,
    "PureSVD": _pure_svd_system,
    "NMF": _nmf_system,
    "BayesianMF": _bayesian_system,
    "HybridMF": _hybrid_system,
}


def _no_factors(model: Any, items: np.ndarray, values: np.ndarray) -> None:
    """A model without factors: the history reaches the score through the user bias only."""
    return None


#: The builders whose system's solution is the model's fold-in (one sample, no offset).
_SOLVES_FOLD_IN = (_als_system, _implicit_als_system)


def _builder(model: Any) -> Callable | None:
    for cls in type(model).__mro__:
        if cls.__name__ in _BUILDERS and cls.__module__.startswith("matfact.models"):
            return _BUILDERS[cls.__name__]
    return None


# ---------------------------------------------------------------------- the terms
def _base_terms(model: Any, items: np.ndarray) -> dict[str, np.ndarray]:
    """The item's own part of the score, split into μ, b_i and the time bin's bias."""
    m = len(items)
    terms: dict[str, np.ndarray] = {}
    mean = float(getattr(model, "global_mean_", 0.0) or 0.0)
    if mean:
        terms["global mean"] = np.full(m, mean)
    item_bias = getattr(model, "item_bias_", None)
    if item_bias is not None:
        terms["item bias"] = item_bias[items].astype(np.float64)
    if hasattr(model, "_now_bin_bias") and model._has_time_bias():
        terms["item time bias"] = np.asarray(model._now_bin_bias(items), np.float64)
    return terms


def _item_scores(side: Any, vector: UserVector, items: np.ndarray) -> np.ndarray:
    """``score_vector(vector)[items]`` without scoring the whole catalogue.

    The same float32 formula (``base_i + b_u + q_i·p``, what ``item_side`` promises):
    at k = 256 and 20,000 items scoring every item was a third of an explanation.
    """
    scores = side.base[items] + np.float32(vector.bias)
    if side.factors is not None:
        scores = scores + side.factors[items] @ np.asarray(vector.factors, np.float32)
    return scores.astype(np.float64)


def _fold(model: Any, items: np.ndarray, values: np.ndarray) -> UserVector:
    with single_thread():
        return model._fold_in(items, values)


def _gap(folded: np.ndarray, trained: np.ndarray) -> float:
    norm = float(np.linalg.norm(trained))
    diff = float(np.linalg.norm(np.asarray(folded, np.float64) - trained))
    return diff / norm if norm > 0 else diff


def explain_codes(model: Any, user: int, history: tuple[np.ndarray, np.ndarray],
                  items: np.ndarray, n: int, *, user_id: Any = None,
                  vector: UserVector | None = None) -> list[Explanation]:
    """Explanations of the scores of item codes ``items`` for one user (a code, or -1).

    Parameters
    ----------
    model : FactorModel
    user : int
        The user's code, or -1 for an anonymous history (no trained vector).
    history : (item codes, values)
        What the user is placed from (checked by the caller).
    items : ndarray of int
        Item codes to explain (any, seen or not).
    n : int
        Contributions listed per explanation (the rest summed in ``rest``).
    user_id : raw id, default=None
    vector : UserVector, default=None
        The model's fold-in of ``history``, if the caller has it already.

    Returns
    -------
    list of Explanation, one per item.
    """
    codes, values = (np.asarray(history[0], np.int64), np.asarray(history[1], np.float64))
    items = np.asarray(items, np.int64).reshape(-1)
    side = model.item_side()
    if side is None:
        raise ParameterError(f"{type(model).__name__} does not score by user and item "
                             f"vectors (its scores are not a user's): it has no explanation")
    if user >= 0 and vector is None:
        row = _composing_row(model, "user", user)
        if row is not None:  # a HybridMF user placed by their features: split by feature
            return _feature_explanations(model, user, items, row, n, user_id, check=True)
    builder = _builder(model)
    if side.factors is None:
        builder = _no_factors  # Baseline: μ + b_u + b_i, the history only in b_u
    if builder is _hybrid_system and model._resolved_loss() != "squared":
        builder = None  # ranking losses fold in by gradient ascent: no linear system
    # ALS' and ImplicitALS' fold-in *is* this system's solve (the same matrix, float32
    # Gram included): solve it once, beside the explanation, rather than twice (at
    # k = 256 the two factorizations were most of the time). A singular system (λ = 0)
    # keeps the model's own answer (its kernel returns zeros there).
    solved = (vector is None and len(codes) > 0 and builder in _SOLVES_FOLD_IN
              and model.reg > 0)
    if vector is None and not solved and (builder is not None or user < 0):
        # (An approximation of a known user explains the trained vector: no fold-in.)
        vector = _fold(model, codes, values)
    system = None
    if builder is not None and builder is not _no_factors and len(codes):
        system = (builder(model, codes, values, vector) if builder is _nmf_system
                  else builder(model, codes, values))
    trained_scores = trained_vector = None
    if user >= 0:
        trained_scores = model.score_pairs(np.full(len(items), user), items, clip=False)
        trained_vector, _ = model.user_side(np.array([user]))
        trained_vector = trained_vector[0].astype(np.float64)
    if builder is None:
        return _approximate(model, user, codes, values, items, n, user_id, vector,
                            trained_scores, trained_vector, side)
    if system is not None:
        shares, constants, solution = _decompose(system, items, solve=solved)
        if solved:
            k = model.item_factors_.shape[1]
            vector = UserVector(solution[:k].astype(np.float32),
                                float(solution[k]) if len(solution) > k else 0.0)
        method = system.method
    scores = _item_scores(side, vector, items)
    terms = _base_terms(model, items)
    if vector.bias:
        terms["user bias"] = np.full(len(items), float(vector.bias))
    if system is not None:
        terms.update(constants)
    else:  # no factors, or an empty history (the fold-in places the user at zero)
        shares = np.zeros((len(items), len(codes)))
        method = "biases only" if builder is _no_factors else "empty history"
    gap = None if trained_vector is None else _gap(vector.factors, trained_vector)
    method += _features_note(model, folded=True)
    return [_assemble(model, user_id, items[r], scores[r], shares[r], codes, values,
                      {k: float(v[r]) for k, v in terms.items()}, n, True, True,
                      None if trained_scores is None else float(trained_scores[r]), gap, method)
            for r in range(len(items))]


def _approximate(model: Any, user: int, codes: np.ndarray, values: np.ndarray,
                 items: np.ndarray, n: int, user_id: Any, vector: UserVector,
                 trained_scores: np.ndarray | None, trained_vector: np.ndarray | None,
                 side: Any) -> list[Explanation]:
    r"""No linear fold-in: project the user's vector on the history's item vectors.

    With :math:`Q` the history's item vectors (rows) and :math:`p` the user's vector
    (trained, or folded in for an anonymous history), :math:`\alpha = Q (Q^\top Q +
    \epsilon I)^{-1} p` is the ridge-least-squares combination of history vectors
    closest to :math:`p`; item :math:`j` gets :math:`\alpha_j\,(q_i\cdot q_j)` and
    :math:`q_i\cdot(p - Q^\top\alpha)` is reported as ``"unexplained"``.
    """
    if user >= 0:
        p = trained_vector
        _, offsets = model.user_side(np.array([user]))
        offset = float(offsets[0])
        scores = trained_scores
        folded = False
    else:
        p = np.asarray(vector.factors, np.float64)
        offset = float(vector.bias)
        scores = _item_scores(side, vector, items)
        folded = True
    qi = side.factors[items].astype(np.float64)
    shares = np.zeros((len(items), len(codes)))
    explained = np.zeros(len(p))
    if len(codes):
        q = side.factors[codes].astype(np.float64)
        gram = q.T @ q
        eps = 1e-6 * max(float(np.trace(gram)) / len(p), 1e-12)
        alpha = q @ np.linalg.solve(gram + eps * np.eye(len(p)), p)
        explained = q.T @ alpha
        shares = (qi @ q.T) * alpha[None, :]
    terms = _base_terms(model, items)
    if offset:
        terms["user bias" if user < 0 else "user offset"] = np.full(len(items), offset)
    terms["unexplained"] = qi @ (p - explained)
    method = ("projection on the history's item vectors (approximate)"
              + _features_note(model, folded=folded))
    return [_assemble(model, user_id, items[r], scores[r], shares[r], codes, values,
                      {k: float(v[r]) for k, v in terms.items()}, n, False, folded,
                      None if trained_scores is None else float(trained_scores[r]), None,
                      method)
            for r in range(len(items))]


def _features_note(model: Any, folded: bool) -> str:
    """What an explanation by history says of a HybridMF's features ("" otherwise).

    A HybridMF explained by history is a user placed from their history (a fold-in
    reads no user feature) or, for a model file from before the feature rows were
    kept, any user: ``method`` says where the features are rather than leave them out
    silently.
    """
    if not hasattr(model, "user_embeddings_"):
        return ""
    if getattr(model, "item_feature_rows_", None) is not None:
        return ("; the user's features are not in this score (the user is placed from "
                "the history, which reads none); the item's split its bias")
    if (getattr(model, "user_encoder_state_", None) is None
            and getattr(model, "item_encoder_state_", None) is None):
        return ""  # no side features (identity features only): nothing is left out
    user = ("the user's are not read by the fold-in" if folded
            else "the user's are inside the trained user vector")
    return ("; features not split: the item's are inside its vector and \"item bias\", "
            f"{user}; explain_features(model, user, item, user_features=..., "
            "item_features=...) splits the trained score by feature")


def _assemble(model: Any, user_id: Any, item: int, score: float, shares: np.ndarray,
              codes: np.ndarray, values: np.ndarray, terms: dict[str, float], n: int,
              exact: bool, folded_in: bool, trained_score: float | None,
              vector_gap: float | None, method: str) -> Explanation:
    names = [_raw(model, int(code)) for code in codes]
    return _finish(model, user_id, item, score, shares, names, values, _split_item_bias(
        model, item, terms), n, exact, folded_in, trained_score, vector_gap, method)


def _finish(model: Any, user_id: Any, item: int, score: float, shares: np.ndarray,
            names: list[Any], values: np.ndarray, terms: dict[str, float], n: int,
            exact: bool, folded_in: bool, trained_score: float | None,
            vector_gap: float | None, method: str, feature: bool = False) -> Explanation:
    """The ``n`` largest of ``shares`` listed, the others summed in ``rest``, and the sum of
    the parts checked against ``score`` (the difference reported if it is not exact)."""
    order = np.argsort(-shares, kind="stable")[:n]
    listed = tuple(Contribution(names[j], float(shares[j]), float(values[j]), feature)
                   for j in order)
    unlisted = np.ones(len(shares), bool)
    unlisted[order] = False
    rest = float(shares[unlisted].sum())
    total = float(shares.sum()) + sum(terms.values())
    # Exact up to float32 scoring: otherwise say so and keep the parts summing to the score.
    scale = max(abs(score), abs(total), float(np.abs(shares).sum()),
                *(abs(v) for v in terms.values()), 1e-12)
    if exact and abs(total - score) > EXACT_TOLERANCE * scale:
        exact = False
        terms = {**terms, "unexplained": float(score - total)}
    return Explanation(user=user_id, item=_raw(model, item), score=float(score),
                       contributions=listed, rest=rest, other_terms=terms, exact=exact,
                       folded_in=folded_in, trained_score=trained_score,
                       vector_gap=vector_gap, method=method)


def _raw(model: Any, code: int) -> Any:
    raw = model.item_index_.ids[code]
    return raw.item() if hasattr(raw, "item") else raw


# ---------------------------------------------------------------------- HybridMF's features
#: How a split by feature is labelled (explain and explain_features).
_FEATURE_METHOD = "user and item features, interaction shared half and half (HybridMF)"


def _kept_row(model: Any, side: str, code: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Columns and weights of a HybridMF's kept feature row (None: it keeps none)."""
    rows = getattr(model, f"{side}_feature_rows_", None)
    if rows is None or not hasattr(model, f"{side}_embeddings_"):
        return None
    # The CSR arrays directly: scipy's row slicing costs ~50 µs, a tenth of the budget.
    start, end = rows.indptr[code], rows.indptr[code + 1]
    return rows.indices[start:end], rows.data[start:end].astype(np.float64)


def _composes(model: Any, side: str, code: int, row: tuple[np.ndarray, np.ndarray],
              factors: bool = True) -> bool:
    """Whether ``row`` composes the stored representation (bias, and vector with
    ``factors``) of ``code``, to the float32 rounding of the composition."""
    cols, vals = row
    bias = float(vals @ getattr(model, f"{side}_feature_bias_")[cols].astype(np.float64))
    stored_bias = float(getattr(model, f"{side}_bias_")[code])
    scale = 1e-5 * (1.0 + float(np.abs(vals).sum()))
    if abs(bias - stored_bias) > scale * (1.0 + abs(stored_bias)):
        return False
    if not factors:
        return True
    emb = getattr(model, f"{side}_embeddings_")[cols].astype(np.float64)
    stored = getattr(model, f"{side}_factors_")[code].astype(np.float64)
    size = 1.0 + float(np.abs(stored).max(initial=0.0))
    return bool(np.abs(vals @ emb - stored).max(initial=0.0) <= scale * size)


def _composing_row(model: Any, side: str, code: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The kept feature row of ``code`` if it composes its representation, else None
    (another model; a model file without kept rows; a user the fold-in placed)."""
    row = _kept_row(model, side, code)
    return row if row is not None and _composes(model, side, code, row) else None


def _feature_names(model: Any, side: str, cols: np.ndarray) -> list[str]:
    n_ids = getattr(model, f"n_{side}_ids_")
    encoder = model._encoder(side)
    labels = [] if encoder is None else encoder.feature_names_
    return [f"{side} id" if c < n_ids else f"{side}: {labels[c - n_ids]}" for c in cols.tolist()]


def _split_item_bias(model: Any, item: int, terms: dict[str, float]) -> dict[str, float]:
    """``terms`` with a HybridMF item's ``"item bias"`` split into its features' shares
    :math:`y_{ig} c_g`, when its kept row composes that bias (unchanged otherwise)."""
    if "item bias" not in terms:
        return terms
    row = _kept_row(model, "item", item)
    if row is None or not len(row[0]) or not _composes(model, "item", item, row, factors=False):
        return terms
    cols, vals = row
    shares = vals * model.item_feature_bias_[cols].astype(np.float64)
    split = dict(zip(_feature_names(model, "item", cols), shares.tolist(), strict=True))
    out = {}
    for label, value in terms.items():
        if label == "item bias":
            out.update(split)
        else:
            out[label] = value
    return out


def _feature_explanations(model: Any, user: int, items: np.ndarray,
                          user_row: tuple[np.ndarray, np.ndarray], n: int, user_id: Any, *,
                          check: bool, item_rows: list | None = None) -> list[Explanation]:
    r"""The trained scores of ``items`` for ``user`` split into features (module doc of
    :func:`explain_features`): user feature :math:`f` gets :math:`x_{uf}(e_f + \tfrac12
    E_f\cdot q_i)`, item feature :math:`g` gets :math:`y_{ig}(c_g + \tfrac12 F_g\cdot p_u)`.

    ``item_rows`` (one per item) default to the kept rows; with ``check``, an item whose
    kept row does not compose its vector (an item added from its first ratings) is one
    term, ``"item vector (from its ratings)"``: its bias and half the interaction.
    """
    items = np.asarray(items, np.int64)
    p = model.user_factors_[user].astype(np.float64)
    q = model.item_factors_[items].astype(np.float64)
    ucols, uvals = user_row
    user_names = _feature_names(model, "user", ucols)
    user_shares = uvals[:, None] * (
        model.user_feature_bias_[ucols].astype(np.float64)[:, None]
        + 0.5 * model.user_embeddings_[ucols].astype(np.float64) @ q.T)     # (features, m)
    scores = model.score_pairs(np.full(len(items), user), items, clip=False)
    mean = float(model.global_mean_ or 0.0)
    out = []
    for r, code in enumerate(items.tolist()):
        terms = {"global mean": mean} if mean else {}
        row = item_rows[r] if item_rows is not None else _kept_row(model, "item", code)
        if check and row is not None and not _composes(model, "item", code, row):
            row = None
        if row is None:
            icols, ivals = np.zeros(0, np.int64), np.zeros(0)
            terms["item vector (from its ratings)"] = (float(model.item_bias_[code])
                                                       + 0.5 * float(p @ q[r]))
        else:
            icols, ivals = row
        item_shares = ivals * (model.item_feature_bias_[icols].astype(np.float64)
                               + 0.5 * model.item_embeddings_[icols].astype(np.float64) @ p)
        score = float(scores[r])
        out.append(_finish(model, user_id, code, score,
                           np.concatenate([user_shares[:, r], item_shares]),
                           user_names + _feature_names(model, "item", icols),
                           np.concatenate([uvals, ivals]), terms, n, True, False, score,
                           None, _FEATURE_METHOD, feature=True))
    return out


def explain_features(model: Any, user: Any, item: Any, *, user_features: Any = None,
                     item_features: Any = None, n: int = 5) -> Explanation:
    r"""A :class:`~matfact.HybridMF` score split into the user's and the item's features.

    With :math:`x_u` and :math:`y_i` the (normalized) feature rows, identity features
    included, :math:`p_u = \sum_f x_{uf} E_f` and :math:`q_i = \sum_g y_{ig} F_g`, the
    trained score is :math:`\mu + \sum_f x_{uf} e_f + \sum_g y_{ig} c_g + p_u\cdot q_i`.
    Each user feature gets :math:`x_{uf}(e_f + \tfrac12 E_f\cdot q_i)` and each item
    feature :math:`y_{ig}(c_g + \tfrac12 F_g\cdot p_u)`: the interaction
    :math:`\sum_{f,g} x_{uf} y_{ig} E_f\cdot F_g` is shared half and half by the two
    features of each pair, so the parts sum to the score. :meth:`explain
    <matfact.models.base.Recommender.explain>` gives the same split for every user the
    model placed by features, and the history split for a user it placed from ratings.

    Parameters
    ----------
    model : HybridMF
        Fitted.
    user, item : raw ids
        Known to the model.
    user_features, item_features : pandas.DataFrame, default=None
        Side features indexed by raw id, to split by instead of the rows the model
        keeps (``user_feature_rows_``, ``item_feature_rows_``): e.g. to ask what the
        score would be made of with these features. None: the kept rows (for a
        model file written before they were kept, the identity features only).
    n : int, default=5
        Features listed (largest share first); the others are summed in ``rest``.

    Returns
    -------
    Explanation
        ``contributions`` name features (``"user id"``, ``"user: age=25-34"``,
        ``"item: genre=Comedy"``, ...), ``value`` the feature's weight in its row;
        ``folded_in`` is False (the trained vectors). If the user's or item's vector is
        not its features' composition (e.g. replaced by ``update_users``), the
        difference is ``"unexplained"`` and ``exact`` is False.
    """
    from matfact._params import check_n

    n = check_n(n)
    if not hasattr(model, "_side_matrix") or not hasattr(model, "user_embeddings_"):
        raise ParameterError(f"explain_features takes a fitted HybridMF, got "
                             f"{type(model).__name__}")
    u = int(model._indices(user, model.user_index_, "user", "raise")[0])
    i = int(model._indices(item, model.item_index_, "item", "raise")[0])
    rows = []
    for side, code, frame in (("user", u, user_features), ("item", i, item_features)):
        kept = _kept_row(model, side, code)
        if frame is None and kept is not None:
            rows.append(kept)
            continue
        raw = getattr(model, f"{side}_index_").ids[code:code + 1]
        # Identity columns exist for the ids of the fit only (later ids have none).
        id_codes = np.array([code if code < getattr(model, f"n_{side}_ids_") else -1])
        if frame is not None:
            frame = model._check_features_frame(frame, f"{side}_features")
        if model._encoder(side) is None:
            frame = None
        row = model._side_matrix(side, frame, raw, id_codes)
        rows.append((row.indices, row.data.astype(np.float64)))
    user_raw = model.user_index_.ids[u]
    user_raw = user_raw.item() if hasattr(user_raw, "item") else user_raw
    return _feature_explanations(model, u, np.array([i]), rows[0], n, user_raw, check=False,
                                 item_rows=[rows[1]])[0]
