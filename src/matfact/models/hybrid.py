r"""A feature-aware hybrid factorization: :class:`HybridMF` (LightFM-style).

Users and items are rows of features (their identity, side information from
:attr:`Interactions.user_features` / :attr:`Interactions.item_features`
encoded by :class:`~matfact.data.features.FeatureEncoder`), and each feature
has an embedding and a bias. A user's or item's representation is the
(weighted) sum of its features' embeddings, so an item never seen in training
gets a real score from its genres and year, and a user known only by their
demographics gets real recommendations. The update rules are in
:mod:`matfact._kernels.hybrid`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matfact._kernels.hybrid import bpr_epoch, compose, squared_epoch, warp_epoch
from matfact._params import (
    BOOLEAN,
    N_THREADS,
    RANDOM_STATE,
    Instance,
    Interval,
    Options,
    check_n,
    check_random_state,
)
from matfact._threads import numba_threads
from matfact.data.features import FeatureEncoder
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, ParameterError
from matfact.models._iterative import IterativeModel
from matfact.models._updates import _as_id_array, _replace_rows
from matfact.models.base import UserVector, fold_in_negatives
from matfact.models.ranking import top_n_rows

__all__ = ["HybridMF"]

_ENCODER_OPTIONS = ("columns", "bins", "truncate", "min_count", "max_categories_fraction")


def _encoder_options(value: Any, name: str) -> dict | None:
    """``None`` → defaults, ``False`` → no features, a dict → FeatureEncoder options."""
    if value is False:
        return None
    options = dict(value or {})
    unknown = sorted(set(options) - set(_ENCODER_OPTIONS))
    if unknown:
        raise ParameterError(f"HybridMF: {name} has unknown keys {unknown}; "
                             f"FeatureEncoder takes {list(_ENCODER_OPTIONS)}")
    return options


def _normalize_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row to unit L1 norm (empty rows stay empty)."""
    norms = np.asarray(abs(matrix).sum(axis=1), dtype=np.float64).ravel()
    scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    return sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ matrix, dtype=np.float32)


class HybridMF(IterativeModel):
    r"""Hybrid matrix factorization with user and item features (LightFM, Kula 2015).

    With :math:`x_u` the feature row of user :math:`u` and :math:`y_i` that
    of item :math:`i`,

    .. math::
        p_u = \sum_f x_{uf} E_f,\quad q_i = \sum_g y_{ig} F_g,\quad
        \hat s_{ui} = \mu + \sum_f x_{uf} e_f + \sum_g y_{ig} c_g + p_u\cdot q_i,

    where :math:`E_f, F_g` are feature embeddings and :math:`e_f, c_g`
    feature biases. With ``use_ids=True`` every user and item has its own
    identity feature too, so with no side information this is biased MF.
    Losses: ``"squared"`` fits ratings (:math:`\mu` is their mean),
    ``"bpr"`` and ``"warp"`` rank every interaction above items the user has
    none with (:math:`\mu = 0`; scores are not ratings). Updates are Adagrad
    steps with an L2 penalty; see :mod:`matfact._kernels.hybrid`.

    Parameters
    ----------
    n_factors : int, default=64
    loss : {"auto", "squared", "bpr", "warp"}, default="auto"
        ``"auto"``: squared for explicit ratings, WARP for implicit data.
        Ranking losses also accept explicit data (every rating is a positive).
    learning_rate : float, default=0.1
        Adagrad step size.
    reg : float, default=1e-3
        L2 penalty on the feature embeddings, per update touching them.
    reg_bias : float, default=1e-3
        L2 penalty on the feature biases.
    max_iter : int, default=30
        Epochs.
    init_std : float, default=0.01
        Embeddings start from :math:`\mathcal N(0, \text{init\_std}^2)`; biases from 0.
    use_ids : bool, default=True
        Add an identity feature per user and per item.
    user_features, item_features : dict, None or False, default=None
        How to encode the side features of the training data: ``None`` uses
        :class:`~matfact.data.features.FeatureEncoder`'s defaults, a dict passes
        its options (``columns``, ``bins``, ``truncate``, ``min_count``,
        ``max_categories_fraction``; e.g. ``{"bins": {"year": [1970, 1990]}}``),
        ``False`` ignores the side features.
    normalize : bool, default=True
        Scale each feature row to unit L1 norm (as LightFM does), so a
        representation is an average of its features' embeddings.
    max_sampled : int, default=10
        WARP: negatives drawn per positive before giving up; BPR: draws
        before a positive is skipped for want of a negative.
    random_state : int, Generator or None, default=None
    n_threads : int or None, default=None
        Accepted for the common vocabulary: epochs run on one thread (see Notes).

    Attributes
    ----------
    user_embeddings_ : ndarray of shape (n_user_columns, n_factors), float32
        :math:`E`: the first ``n_user_ids_`` rows are identity features (users
        in fit order), the others the encoded side features.
    item_embeddings_ : ndarray of shape (n_item_columns, n_factors), float32
        :math:`F`, laid out the same way.
    user_feature_bias_, item_feature_bias_ : ndarray, float32
        :math:`e`, :math:`c`.
    user_encoder_state_, item_encoder_state_ : dict or None
        The :meth:`FeatureEncoder.get_state` of each side (None: no side features).
    n_user_ids_, n_item_ids_ : int
        Identity features of each side (0 with ``use_ids=False``).
    user_feature_rows_, item_feature_rows_ : scipy.sparse.csr_matrix, float32
        The (normalized) feature rows :math:`x_u`, :math:`y_i` of every known user
        and item, one column per row of :attr:`user_embeddings_` /
        :attr:`item_embeddings_`: what :meth:`explain` splits a score by. A row
        composes its user's or item's representation; it is empty where the
        representation was placed otherwise (a user recomputed from their history
        by :meth:`update_users` or ``apply_ratings``, an item added from its first
        ratings).
    user_factors_, item_factors_ : ndarray, float32
        The composed representations :math:`p_u`, :math:`q_i` of every known
        user and item (what scoring uses).
    user_bias_, item_bias_ : ndarray, float32
        The composed biases.
    global_mean_ : float
    loss_ : str
        The loss used (``"auto"`` resolved).
    n_iter_, loss_history_
        ``train_rmse`` per epoch for the squared loss, else ``train_loss``
        (mean loss per positive).
    epoch_stats_ : list of float
        Per epoch, for BPR the share of sampled pairs already ordered before
        their update, for WARP the share of positives that found a violating
        negative (both fall as the model learns to rank); empty for squared loss.

    Notes
    -----
    *Cold items.* :meth:`add_items` adds items from their features alone
    (their representation is the composed sum without an identity feature);
    :meth:`add_users` does the same for users, and
    :meth:`recommend_for_features` ranks for users described only by features,
    without changing the model.

    *Fold-in.* :meth:`fold_in` places a new user from a history, with the
    items fixed: for the squared loss by ridge regression of
    :math:`r - \mu - b_i` on the item representations (penalty ``n·reg``);
    for ranking losses by 50 full-batch gradient steps of the BPR objective
    against a fixed sample of 256 negatives, each history item one positive
    (its rating or weight is not read, as in training). The user's features
    are not used there (use :meth:`add_users` for that).

    *Weights.* Sample weights given with explicit ratings scale each pair's
    loss; the weights of implicit data (counts, hours) are not used: every
    interaction is one positive.

    *Threads.* Common features (a genre, an age bucket) occur in most
    training pairs, so no block schedule keeps threads apart and lock-free
    updates would make the model depend on thread timing; epochs run on one
    thread and a seed gives the same model on every run.

    *Unknown ids* follow the base policy: an unknown user is ranked by the
    composed item biases (what the features predict for everyone).

    References
    ----------
    M. Kula. Metadata embeddings for user and item cold-start recommendations.
    CBRecSys workshop, RecSys 2015.
    J. Weston, S. Bengio, N. Usunier. WSABIE: scaling up to large vocabulary
    image annotation. IJCAI 2011.

    Examples
    --------
    >>> import matfact
    >>> import pandas as pd
    >>> genres = pd.DataFrame({"genre": ["x", "y", "x", "x"]}, index=["a", "b", "c", "d"])
    >>> data = matfact.Interactions.from_arrays(
    ...     [1, 1, 2, 2, 3], ["a", "b", "a", "c", "b"], [5, 2, 4, 5, 2],
    ...     rating_scale=(1, 5), item_features=genres)
    >>> model = matfact.HybridMF(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    >>> model.add_items(["d"], features=genres).predict([1, 1], ["d", "b"]).shape
    (2,)
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_factors": [Interval(int, 1, None)],
        "loss": [Options("auto", "squared", "bpr", "warp")],
        "learning_rate": [Interval(float, 0, None, closed="neither")],
        "reg": [Interval(float, 0, None)],
        "reg_bias": [Interval(float, 0, None)],
        "max_iter": [Interval(int, 1, None)],
        "init_std": [Interval(float, 0, None)],
        "use_ids": [BOOLEAN],
        "user_features": [Options(None, False), Instance(dict)],
        "item_features": [Options(None, False), Instance(dict)],
        "normalize": [BOOLEAN],
        "max_sampled": [Interval(int, 1, None)],
        "random_state": RANDOM_STATE,
        "n_threads": N_THREADS,
    }

    def __init__(self, *, n_factors: int = 64, loss: str = "auto", learning_rate: float = 0.1,
                 reg: float = 1e-3, reg_bias: float = 1e-3, max_iter: int = 30,
                 init_std: float = 0.01, use_ids: bool = True, user_features: Any = None,
                 item_features: Any = None, normalize: bool = True, max_sampled: int = 10,
                 random_state: Any = None, n_threads: int | None = None) -> None:
        self.n_factors = n_factors
        self.loss = loss
        self.learning_rate = learning_rate
        self.reg = reg
        self.reg_bias = reg_bias
        self.max_iter = max_iter
        self.init_std = init_std
        self.use_ids = use_ids
        self.user_features = user_features
        self.item_features = item_features
        self.normalize = normalize
        self.max_sampled = max_sampled
        self.random_state = random_state
        self.n_threads = n_threads

    # ------------------------------------------------------------------ loss-dependent traits
    def _resolved_loss(self) -> str:
        loss = getattr(self, "loss_", None)
        if loss is not None:
            return loss
        return "squared" if self.loss == "auto" else self.loss

    @property
    def _step_returns_sse(self) -> bool:  # type: ignore[override]
        return self._resolved_loss() == "squared"

    @property
    def _ranks_only(self) -> bool:  # type: ignore[override]
        return self._resolved_loss() != "squared"

    @property
    def _needs_ratings(self) -> bool:  # type: ignore[override]
        return self._resolved_loss() == "squared"

    def _divergence_hint(self) -> str:
        return f"use a smaller learning_rate than {self.learning_rate:g} or a larger reg"

    # ------------------------------------------------------------------ features
    def _encoder(self, side: str) -> FeatureEncoder | None:
        state = getattr(self, f"{side}_encoder_state_")
        if state is None:
            return None
        # Rebuilt from the JSON state once per state object (a refit or load replaces it).
        cache = self.__dict__.setdefault("_encoders", {})
        cached = cache.get(side)
        if cached is None or cached[0] is not state:
            cached = cache[side] = (state, FeatureEncoder.from_state(state))
        return cached[1]

    def _fit_encoder(self, frame: pd.DataFrame | None, ids: np.ndarray, option: Any,
                     name: str) -> dict | None:
        options = _encoder_options(option, name)
        if options is None or frame is None:
            return None
        # Fit the vocabulary on the training ids' rows only: nothing leaks from
        # ids the model is not trained on (e.g. held-out cold items).
        rows = frame.loc[frame.index.intersection(pd.Index(ids))]
        if len(rows) == 0:
            return None
        encoder = FeatureEncoder(**options).fit(rows)
        if encoder.n_features_ == 0:
            return None
        return encoder.get_state()

    def _side_matrix(self, side: str, frame: pd.DataFrame | None, ids: np.ndarray,
                     id_codes: np.ndarray | None) -> sp.csr_matrix:
        """Feature rows of ``ids``: identity columns (``id_codes``, -1 for none) + encoded."""
        n_ids = getattr(self, f"n_{side}_ids_")
        blocks = []
        if n_ids:
            codes = np.full(len(ids), -1, np.int64) if id_codes is None else id_codes
            has = codes >= 0
            blocks.append(sp.csr_matrix((np.ones(int(has.sum()), np.float32),
                                         (np.flatnonzero(has), codes[has])),
                                        shape=(len(ids), n_ids)))
        encoder = self._encoder(side)
        if encoder is not None:
            blocks.append(encoder.transform(frame, ids))
        if not blocks:
            return sp.csr_matrix((len(ids), 0), dtype=np.float32)
        matrix = sp.hstack(blocks, format="csr", dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        return _normalize_rows(matrix) if self.normalize else matrix

    def _compose(self, matrix: sp.csr_matrix, emb: np.ndarray,
                 bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((matrix.shape[0], emb.shape[1]), np.float32)
        out_bias = np.empty(matrix.shape[0], np.float32)
        compose(matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32),
                matrix.data.astype(np.float32), emb, bias, out, out_bias)
        return out, out_bias

    # ------------------------------------------------------------------ fitting
    def _fit(self, data: Interactions, *, validation, progress: bool) -> None:
        loss = ("squared" if not data.is_implicit else "warp") if self.loss == "auto" \
            else self.loss
        if loss == "squared" and data.is_implicit:
            raise DataError("HybridMF: loss='squared' needs explicit ratings; the data is "
                            "implicit (use loss='warp' or 'bpr')")
        if loss != "squared" and validation is not None:
            raise ParameterError(f"HybridMF: validation= reports an RMSE, which loss={loss!r} "
                                 f"does not predict; score a ranking with evaluate_ranking")
        rng = check_random_state(self.random_state)
        self.loss_ = loss
        if loss != "squared":
            self.rating_scale_ = None  # scores rank; they are not ratings
        self.n_user_ids_ = data.n_users if self.use_ids else 0
        self.n_item_ids_ = data.n_items if self.use_ids else 0
        self.user_encoder_state_ = self._fit_encoder(data.user_features, data.user_ids,
                                                     self.user_features, "user_features")
        self.item_encoder_state_ = self._fit_encoder(data.item_features, data.item_ids,
                                                     self.item_features, "item_features")
        users_x = self._side_matrix("user", data.user_features, data.user_ids,
                                    np.arange(data.n_users))
        items_y = self._side_matrix("item", data.item_features, data.item_ids,
                                    np.arange(data.n_items))
        if users_x.shape[1] == 0 and items_y.shape[1] == 0:
            raise DataError("HybridMF has no feature to learn from: use_ids=False and the "
                            "data has no (encodable) user or item features")
        k = self.n_factors
        std = np.float32(self.init_std)
        self.user_embeddings_ = rng.standard_normal((users_x.shape[1], k), np.float32) * std
        self.item_embeddings_ = rng.standard_normal((items_y.shape[1], k), np.float32) * std
        self.user_feature_bias_ = np.zeros(users_x.shape[1], np.float32)
        self.item_feature_bias_ = np.zeros(items_y.shape[1], np.float32)
        # Adagrad accumulators start at 1 (LightFM's choice): the first steps are lr-sized.
        accumulators = [np.ones_like(a) for a in (self.user_embeddings_, self.user_feature_bias_,
                                                  self.item_embeddings_,
                                                  self.item_feature_bias_)]
        # Weights given with ratings are sample weights; implicit weights are counts or
        # confidences (hours played...), which would scale the steps without bound:
        # ranking losses take every interaction as one positive, as BPR does.
        weights = data.weights if data.has_weights and not data.is_implicit else None
        if weights is not None and float(weights.sum(dtype=np.float64)) <= 0:
            raise DataError("every sample weight is 0: nothing to learn from")
        sample_weights = (np.ascontiguousarray(weights, dtype=np.float32) if weights is not None
                          else np.zeros(0, np.float32))
        if loss == "squared":
            ratings = data.ratings
            self.global_mean_ = (float(np.dot(weights, ratings)) / float(weights.sum())
                                 if weights is not None
                                 else float(ratings.mean(dtype=np.float64)))
        else:
            self.global_mean_ = 0.0
        users = np.ascontiguousarray(data.user_codes, dtype=np.int32)
        items = np.ascontiguousarray(data.item_codes, dtype=np.int32)
        uf = (users_x.indptr.astype(np.int64), users_x.indices.astype(np.int32),
              users_x.data.astype(np.float32))
        itf = (items_y.indptr.astype(np.int64), items_y.indices.astype(np.int32),
               items_y.data.astype(np.float32))
        params = (self.user_embeddings_, accumulators[0], self.user_feature_bias_,
                  accumulators[1], self.item_embeddings_, accumulators[2],
                  self.item_feature_bias_, accumulators[3])
        seen = sp.csr_matrix((np.ones(data.nnz, np.float32), (users, items)), shape=data.shape)
        seen.sum_duplicates()
        seen.sort_indices()
        seen_indptr, seen_indices = seen.indptr.astype(np.int64), seen.indices.astype(np.int64)
        values = np.ascontiguousarray(data.ratings if loss == "squared" else
                                      np.zeros(0), dtype=np.float32)
        total = float(weights.sum()) if weights is not None else float(data.nnz)
        self.epoch_stats_ = []

        def step(iteration: int) -> tuple[float, dict]:
            order = rng.permutation(data.nnz).astype(np.int64)
            if loss == "squared":
                sse = squared_epoch(order, users, items, values, sample_weights, *uf, *itf,
                                    *params, self.global_mean_, self.learning_rate, self.reg,
                                    self.reg_bias)
                return sse, {}
            seed = rng.integers(0, 2**63, dtype=np.uint64)
            kernel = warp_epoch if loss == "warp" else bpr_epoch
            value, updated, visited = kernel(order, users, items, sample_weights, seen_indptr,
                                             seen_indices, *uf, *itf, *params,
                                             self.learning_rate, self.reg, self.reg_bias,
                                             np.uint64(seed), self.max_sampled)
            share = updated / max(visited, 1)
            self.epoch_stats_.append(float(share))
            key = "violations" if loss == "warp" else "pairs_correct"
            return value / max(visited, 1), {key: share}

        # Kept so that explain() splits a score by feature without the frames.
        self.user_feature_rows_, self.item_feature_rows_ = users_x, items_y
        self._training = (users_x, items_y)
        try:
            with numba_threads(1):
                self._run_iterations(step, total, validation, progress, "HybridMF")
        finally:
            self._training = None
        self._finalize_from(users_x, items_y)

    _training: tuple | None = None

    def _finalize_from(self, users_x: sp.csr_matrix, items_y: sp.csr_matrix) -> None:
        self.user_factors_, self.user_bias_ = self._compose(users_x, self.user_embeddings_,
                                                            self.user_feature_bias_)
        self.item_factors_, self.item_bias_ = self._compose(items_y, self.item_embeddings_,
                                                            self.item_feature_bias_)

    def _finalize(self) -> None:
        if self._training is not None:
            self._finalize_from(*self._training)

    def _state_arrays(self) -> list[str]:
        return ["user_embeddings_", "item_embeddings_", "user_feature_bias_",
                "item_feature_bias_", "user_factors_", "item_factors_", "user_bias_",
                "item_bias_"]

    # ------------------------------------------------------------------ cold start
    @staticmethod
    def _check_features_frame(features: Any, what: str) -> pd.DataFrame:
        if not isinstance(features, pd.DataFrame):
            raise DataError(f"{what} must be a pandas DataFrame of features indexed by raw "
                            f"id, got {type(features).__name__}")
        if features.index.has_duplicates:
            raise DataError(f"{what} repeats ids in its index")
        return features

    def _place_by_features(self, side: str, ids: np.ndarray, features: pd.DataFrame) -> None:
        """Overwrite the composed rows of ``ids`` whose features are in ``features``."""
        if self._encoder(side) is None:
            return  # the model learned no features of this side: nothing to place by
        codes = getattr(self, f"{side}_index_").get_indexer(ids)
        present = features.index.get_indexer(pd.Index(ids)) >= 0
        if not present.any():
            return
        matrix = self._side_matrix(side, features, ids[present], None)
        factors, biases = self._compose(matrix, getattr(self, f"{side}_embeddings_"),
                                        getattr(self, f"{side}_feature_bias_"))
        target = getattr(self, f"{side}_factors_")
        bias = getattr(self, f"{side}_bias_")
        target = target if target.flags.writeable else target.copy()
        bias = bias if bias.flags.writeable else bias.copy()
        target[codes[present]] = factors
        bias[codes[present]] = biases
        setattr(self, f"{side}_factors_", target)
        setattr(self, f"{side}_bias_", bias)
        self._set_feature_rows(side, codes[present], matrix)

    # ------------------------------------------------------------------ kept feature rows
    def _set_feature_rows(self, side: str, codes: np.ndarray, matrix: sp.csr_matrix) -> None:
        """Rows ``codes`` of ``{side}_feature_rows_`` become ``matrix``'s rows (a new matrix:
        an update's transaction restores the old one by reference)."""
        kept = getattr(self, f"{side}_feature_rows_", None)
        if kept is None or not len(codes):
            return  # a model file from before the rows were kept
        rows = [(matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]],
                 matrix.data[matrix.indptr[r]:matrix.indptr[r + 1]])
                for r in range(matrix.shape[0])]
        setattr(self, f"{side}_feature_rows_",
                _replace_rows(kept, np.asarray(codes, np.int64), rows))

    def _add_rows(self, side: str, raw: np.ndarray) -> None:
        super()._add_rows(side, raw)
        kept = getattr(self, f"{side}_feature_rows_", None)
        n = len(getattr(self, f"{side}_index_"))
        if kept is not None and kept.shape[0] < n:
            # A new id has no feature row until something places it by features.
            indptr = np.concatenate([kept.indptr, np.full(n - kept.shape[0], kept.indptr[-1],
                                                          kept.indptr.dtype)])
            setattr(self, f"{side}_feature_rows_",
                    sp.csr_matrix((kept.data, kept.indices, indptr), shape=(n, kept.shape[1])))

    def _after_user_update(self, codes: np.ndarray) -> None:
        super()._after_user_update(codes)
        # The fold-in placed these users from their histories: their features no longer
        # compose their vectors (explain splits their scores by history instead).
        empty = sp.csr_matrix((len(codes), self.user_embeddings_.shape[0]), dtype=np.float32)
        self._set_feature_rows("user", np.asarray(codes, np.int64), empty)

    def add_items(self, items: Any, histories: Any = None, *,
                  features: pd.DataFrame | None = None) -> HybridMF:
        r"""Add items the model has never seen, placed by their features (or first interactions).

        Parameters
        ----------
        items : array-like of shape (n,)
            New raw ids (none may be known already).
        histories : sequence of length n, default=None
            Per item, its first interactions, as in the base
            :meth:`~matfact.models.base.Recommender.add_items`: they are recorded
            (``recommend`` excludes them) and place the items that have no row
            in ``features``.
        features : pandas.DataFrame, default=None
            Item features indexed by raw id, with the columns the item features
            had at fit. An item with a row here is placed by its features
            alone, :math:`q_i = \sum_g y_{ig} F_g` (no identity feature), as if
            it had been scored at fit.

        Returns
        -------
        self
            With ``item_index_``, ``item_factors_``, ``item_bias_`` and ``seen_``
            extended.
        """
        if features is not None:
            features = self._check_features_frame(features, "features")
        with self._transaction(user_rows=np.zeros(0, np.int64)):
            super().add_items(items, histories)
            if features is not None:
                self._place_by_features(
                    "item", self.item_index_.parse(_as_id_array(items), "item"), features)
        return self

    def add_users(self, users: Any, features: pd.DataFrame) -> HybridMF:
        """Add users the model has never seen, placed by their features alone.

        Parameters
        ----------
        users : array-like of shape (n,)
            New raw ids (none may be known already).
        features : pandas.DataFrame
            Their user features, indexed by raw id.

        Returns
        -------
        self
            Afterwards :meth:`recommend` and :meth:`predict` take the new ids; a
            user's later ratings go through :meth:`update_users` (fold-in).
        """
        self._check_fitted()
        features = self._check_features_frame(features, "features")
        users = self.user_index_.parse(_as_id_array(users), "user")
        known = self.user_index_.get_indexer(users) >= 0
        if known.any():
            raise DataError(f"users {users[known][:10].tolist()} are already in the model; "
                            f"use update_users to change them")
        if len(np.unique(users)) != len(users):
            raise DataError("the users repeat an id; give each once")
        with self._transaction(user_rows=np.zeros(0, np.int64)):
            self._add_rows("user", users)
            self._place_by_features("user", users, features)
        return self

    def user_vectors_for_features(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Composed representations of users described only by features.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per user (index: anything unique), the user feature columns.

        Returns
        -------
        factors : ndarray of shape (len(features), n_factors), float32
        bias : ndarray of shape (len(features),), float32
        """
        self._check_fitted()
        frame = self._check_features_frame(features, "features")
        matrix = self._side_matrix("user", frame, frame.index.to_numpy(), None)
        return self._compose(matrix, self.user_embeddings_, self.user_feature_bias_)

    def recommend_for_features(self, features: pd.DataFrame, n: int = 10, *,
                               items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for users known only by their features (the model is unchanged).

        Parameters
        ----------
        features : pandas.DataFrame
            One row per anonymous user with the user feature columns (e.g.
            ``age``, ``gender``, ``occupation``); the index is not used as ids.
        n : int, default=10
        items : array-like, default=None
            Restrict to these raw item ids (unknown ones are dropped).

        Returns
        -------
        ids : ndarray of shape (len(features), n)
            Raw item ids, best first (padded with -1 or ``""``).
        scores : ndarray of shape (len(features), n), float32
        """
        n = check_n(n)
        factors, bias = self.user_vectors_for_features(features)
        scores = (self._item_base()[None, :] + bias[:, None]
                  + factors @ self.item_factors_.T).astype(np.float32)
        candidates = None
        if items is not None:
            candidates = self._indices(items, self.item_index_, "item", "fallback")
            candidates = np.unique(candidates[candidates >= 0])
            mask = np.full(self.n_items_, -np.inf, np.float32)
            mask[candidates] = 0.0
            scores = scores + mask
        width = min(n, self.n_items_ if candidates is None else len(candidates))
        idx = np.full((len(scores), width), -1, np.int64)
        val = np.full((len(scores), width), np.nan, np.float32)
        if width and len(scores):
            idx, val = top_n_rows(scores, width)
        return self._to_raw(idx, self.item_index_), val

    # ------------------------------------------------------------------ fold-in
    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        k = self.n_factors
        if len(items) == 0:
            return UserVector(np.zeros(k, np.float32), 0.0)
        q = self.item_factors_[items].astype(np.float64)
        if self._resolved_loss() == "squared":
            # Ridge with the items fixed: Σ (r − μ − b_i − b − p·q_i)² + n(λ‖p‖² + λ_b b²).
            n = len(items)
            target = values - self.global_mean_ - self.item_bias_[items]
            design = np.hstack([q, np.ones((n, 1))])
            penalty = np.diag([self.reg] * k + [self.reg_bias]) * n + 1e-8 * np.eye(k + 1)
            solution = np.linalg.solve(design.T @ design + penalty, design.T @ target)
            return UserVector(solution[:k].astype(np.float32), float(solution[k]))
        # Ranking: full-batch BPR ascent against a fixed sample of negatives (deterministic).
        sample = fold_in_negatives(self.n_items_, items, 256)
        if len(sample) == 0:
            return UserVector(np.zeros(k, np.float32), 0.0)
        diff = q[:, None, :] - self.item_factors_[sample].astype(np.float64)[None, :, :]
        bias_diff = self.item_bias_[items][:, None] - self.item_bias_[sample][None, :]
        # Every interaction is one positive, as the ranking losses train (a raw count as
        # a step weight overshot: Steam hours, NDCG@10 of fold-in 0.172 against 0.241).
        p = np.zeros(k, np.float64)
        for _ in range(50):
            x = bias_diff + diff @ p
            g = 1.0 / (1.0 + np.exp(np.clip(x, -30, 30)))  # σ(−x)
            grad = np.einsum("nm,nmk->k", g, diff) / g.size - self.reg * p
            p += 10.0 * self.learning_rate * grad
        return UserVector(p.astype(np.float32), 0.0)

    # ------------------------------------------------------------------ persistence
    def _validate_state(self) -> None:
        super()._validate_state()
        for side in ("user", "item"):
            emb = getattr(self, f"{side}_embeddings_")
            bias = getattr(self, f"{side}_feature_bias_")
            if emb.ndim != 2 or emb.shape[1] != self.n_factors or bias.shape != emb.shape[:1]:
                raise ValueError(f"{side} embeddings and biases disagree in shape")
            encoder = self._encoder(side)
            width = getattr(self, f"n_{side}_ids_") + (encoder.n_features_ if encoder else 0)
            if width != emb.shape[0]:
                raise ValueError(f"{side}_embeddings_ has {emb.shape[0]} rows, the features "
                                 f"{width}")
            rows = getattr(self, f"{side}_feature_rows_", None)  # absent from older files
            n = len(getattr(self, f"{side}_index_"))
            if rows is not None and (not sp.issparse(rows) or rows.shape != (n, width)
                                     or rows.dtype != np.float32):
                raise ValueError(f"{side}_feature_rows_ must be float32 of shape "
                                 f"({n}, {width}) (ids × features), got "
                                 f"{getattr(rows, 'dtype', '?')} {getattr(rows, 'shape', '?')}")
