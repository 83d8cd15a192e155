"""The estimator contract every matfact model follows.

``fit(interactions)`` learns from an :class:`~matfact.Interactions`; inference
takes **raw ids** and returns arrays, batch-first:

- ``predict(users, items)`` → scores, clipped to the training rating scale;
- ``recommend(users, n=10)`` → ``(ids, scores)``, both of shape (n_users, n);
- ``recommend_for_history(items, ratings)`` / ``fold_in(items, ratings)`` for a
  user the model never saw, without changing the model;
- ``similar_items`` / ``similar_users`` by cosine similarity of the factors;
- ``apply_ratings(users, items, ratings)`` / ``update_users`` / ``add_items``
  change a fitted model, all or nothing (:mod:`matfact.models._updates`);
- ``save(path)`` / :func:`matfact.load` (no pickle).

The layers that work in dense codes (evaluation, onboarding, serving,
distributed) use the index-level methods instead (``score_pairs``,
``score_users``, ``score_vector``, ``item_side`` / ``user_side``,
``fold_in_codes``, ``recommend_codes``, ``history``, ``item_popularity``):
the same scoring formula and the same top-n (:mod:`matfact.models.ranking`)
as the raw-id methods. Nothing outside ``models`` calls a private method.

Unknown ids
-----------
``predict`` scores an unknown user or item with the best baseline the model
has: the global mean plus whichever bias is known (``unknown="fallback"``,
the default); ``unknown="raise"`` raises :class:`~matfact.UnknownIdError`
naming the ids, and ``unknown="nan"`` returns NaN for them.

``recommend`` has one policy for a user it cannot place, the same in Python,
the CLI and the service: the :data:`FALLBACK` ``"popularity"`` ranking, the
items most users interacted with (:meth:`~Recommender.item_popularity`),
excluding nothing. It applies to an unknown user and to a history with no
item the model knows (``recommend_for_history``). Their scores are then those
counts (how many training users had the item), not ratings:
``recommend(..., return_fallback=True)`` says which users fell back.

Scores
------
What a known user's scores mean is :attr:`Recommender.score_kind`: predicted
ratings (``"rating"``: models fitted on ratings, scores clipped to the
training ``rating_scale_`` by ``predict``, ``recommend`` and
``recommend_for_history`` alike; the ranking uses the unclipped scores, so
items beyond the top of the scale keep their order) or ranking scores
(``"ranking"``: implicit feedback and ranking losses, not on any scale).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, NamedTuple

import numpy as np

from matfact._params import HasParams, check_n, validate_params
from matfact._threads import blas_single_thread_for, single_thread
from matfact.data.interactions import IdIndex, Interactions
from matfact.exceptions import DataError, NotFittedError, ParameterError, UnknownIdError
from matfact.models._updates import (
    ModelUpdates,
    RatingBatch,
    UserVector,
    _as_id_array,
    _as_number_array,
    _store_row,
)
from matfact.models.ranking import top_n_rows

__all__ = ["Recommender", "FactorModel", "UserVector", "RatingBatch", "ItemSide",
           "MODEL_REGISTRY", "FALLBACK"]

#: Every concrete model class by name; :func:`matfact.load` only builds these.
MODEL_REGISTRY: dict[str, type[Recommender]] = {}

_UNKNOWN_POLICIES = ("fallback", "raise", "nan")
#: How ``recommend`` ranks a user it cannot place (see the module doc).
FALLBACK = "popularity"
_RECOMMEND_BATCH = 2048  # users scored per matrix product, at most ...
#: ... and at most this many bytes of float32 scores per product (a catalogue of
#: 10⁶ items: 64 users at a time, not 2,048 × 4 MB = 8 GB).
_SCORE_BUDGET = 256 * 2**20


def _rows_per_batch(n_columns: int) -> int:
    """Rows scored per matrix product against ``n_columns`` items (see :data:`_SCORE_BUDGET`)."""
    return max(1, min(_RECOMMEND_BATCH, _SCORE_BUDGET // max(4 * n_columns, 1)))


class ItemSide(NamedTuple):
    r"""What a top-k index needs of a model whose scores are a dot product.

    For such a model the score of known user ``u`` and item ``i`` is
    :math:`\text{base}_i + \text{offset}_u + p_u \cdot q_i`, with ``base`` and
    ``factors`` (:math:`q`) here and the user's offset and vector from
    :meth:`Recommender.user_side`.

    Attributes
    ----------
    base : ndarray of shape (n_items,), float32
        What every user gets for the item (global mean, item bias, ...).
    factors : ndarray of shape (n_items, n_factors), float32, or None
        Contiguous item vectors; None for a model without factors.
    """

    base: np.ndarray
    factors: np.ndarray | None


class Recommender(ModelUpdates, HasParams):
    """Base class of every matfact model: parameters, fitted vocabulary, inference.

    Subclasses declare ``_parameter_constraints`` (checked at :meth:`fit`),
    implement ``_fit`` and the scoring hooks, and keep learned state in
    attributes ending in ``_``. Those attributes are what :meth:`save` writes.

    Two doors lead in. Users call the raw-id methods (``predict``,
    ``recommend``, ``fold_in``, ...). The layers that work in dense codes
    (evaluation, onboarding, serving, distributed) call the index-level
    interface: :meth:`score_pairs`, :meth:`score_users`, :meth:`score_vector`,
    :meth:`item_side` / :meth:`user_side`, :meth:`fold_in_codes`,
    :meth:`recommend_codes`, :meth:`history`, :meth:`item_popularity` and
    :meth:`apply_ratings`. Both doors reach the same scoring formula and the
    same top-n (:mod:`matfact.models.ranking`).
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {}
    #: Whether the model learns from ratings, implicit feedback, or both.
    _accepts: ClassVar[tuple[str, ...]] = ("explicit", "implicit")
    #: Whether the model only ranks (its scores are not ratings): evaluated by ranking
    #: metrics by default.
    _ranks_only: ClassVar[bool] = False
    #: The step between ratings of the training scale (``rating_scale=(min, max, step)``),
    #: or None: set by ``fit``; None for files saved before steps were kept.
    rating_step_: float | None = None

    @classmethod
    def learns_from(cls, kind: str) -> bool:
        """Whether the model learns from ``kind``: ``"explicit"`` ratings or ``"implicit"`` feedback."""
        return kind in cls._accepts

    @property
    def ranks_only(self) -> bool:
        """Whether the scores only rank items (they are not ratings): ranking metrics apply."""
        return self._ranks_only

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_") and "_fit" in cls.__dict__:
            MODEL_REGISTRY[cls.__name__] = cls

    # ------------------------------------------------------------------ fitting
    def fit(self, interactions: Interactions, *, validation: Interactions | None = None,
            progress: bool | str | None = None) -> Recommender:
        """Learn from ``interactions``.

        Parameters
        ----------
        interactions : Interactions
            Training data; side features travel on it.
        validation : Interactions, default=None
            Held-out data some models report (and stop early) on.
        progress : bool, "bar", "lines" or None, default=None
            Progress of long fits: None, a bar only when stderr is a terminal;
            True, always a bar; ``"lines"``, plain lines for logs; False, nothing
            (see :func:`matfact._progress.progress_bar`).

        Returns
        -------
        self
        """
        validate_params(self)
        data = self._check_training_data(interactions)
        if validation is not None:
            self._check_interactions(validation, "validation")
        self._clear_fitted_state()
        try:
            self._fit_state(data, validation, progress)
        except BaseException:
            # A failed fit must not leave a half-fitted model that looks fitted.
            self._clear_fitted_state()
            raise
        return self

    def _clear_fitted_state(self) -> None:
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("_")]:
            delattr(self, name)

    def _fit_state(self, data: Interactions, validation: Interactions | None,
                   progress: bool) -> None:
        self.user_index_ = data.user_index
        self.item_index_ = data.item_index
        self.is_implicit_ = data.is_implicit
        self.rating_scale_ = None if data.is_implicit else data.rating_scale
        self.rating_step_ = None if data.is_implicit else data.rating_step
        # The training values ride along (ratings, or weights for implicit data):
        # recommend only reads the pattern, partial_fit continues from the values.
        self.seen_ = data.to_scipy()  # shared with the data's cache; never modified in place
        self.item_titles_ = data.item_titles()
        self._fit(data, validation=validation, progress=progress)

    def _fit(self, data: Interactions, *, validation: Interactions | None,
             progress: bool) -> None:
        raise NotImplementedError

    def _check_interactions(self, data: Any, what: str) -> Interactions:
        if not isinstance(data, Interactions):
            raise DataError(
                f"{what} must be a matfact.Interactions, got {type(data).__name__}; "
                f"build one with Interactions.from_pandas(df, user=..., item=..., rating=...)"
            )
        return data

    def _check_training_data(self, data: Any) -> Interactions:
        data = self._check_interactions(data, "fit data")
        kind = "implicit" if data.is_implicit else "explicit"
        if kind not in self._accepts:
            other = "explicit ratings" if kind == "implicit" else "implicit feedback"
            raise DataError(
                f"{type(self).__name__} learns from {other}, but the data is {kind}"
                + (" (pass rating=... when building it)" if kind == "implicit" else
                   " (use data.to_implicit())")
            )
        return data

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "user_index_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def _check_savable(self) -> None:
        """Raise unless the model holds something :meth:`save` can write."""
        self._check_fitted()

    @property
    def score_kind(self) -> str:
        """What a known user's scores are: ``"rating"`` or ``"ranking"``.

        ``"rating"`` when the model predicts ratings (it keeps a ``rating_scale_``;
        scores are clipped to it), ``"ranking"`` when its scores only order items
        (implicit feedback, ranking losses). Fallback answers for unknown users
        are item popularity counts instead (see the module doc).
        """
        self._check_fitted()
        return "rating" if self.rating_scale_ is not None else "ranking"

    def clip_scores(self, scores: np.ndarray) -> np.ndarray:
        """``scores`` clipped in place to the training ``rating_scale_`` (rating models only).

        The one clip of predicted ratings: ``predict``, ``recommend``,
        ``recommend_for_history`` and the service report scores through it.
        Ranking scores (:attr:`score_kind` ``"ranking"``) are returned unchanged.
        """
        if getattr(self, "rating_scale_", None) is not None:
            np.clip(scores, *self.rating_scale_, out=scores)
        return scores

    @property
    def n_users_(self) -> int:
        self._check_fitted()
        return len(self.user_index_)

    @property
    def n_items_(self) -> int:
        self._check_fitted()
        return len(self.item_index_)

    # ------------------------------------------------------------------ id handling
    def _indices(self, raw: Any, index: IdIndex, kind: str, unknown: str) -> np.ndarray:
        if unknown not in _UNKNOWN_POLICIES:
            raise ParameterError(f"unknown must be one of {_UNKNOWN_POLICIES}, got {unknown!r}")
        raw = _as_id_array(raw)
        codes = index.get_indexer(raw)
        if unknown == "raise" and (codes < 0).any():
            raise UnknownIdError(kind, raw[codes < 0].tolist())
        return codes

    def _empty_ids(self, index: IdIndex, shape: tuple[int, ...]) -> np.ndarray:
        if index.kind == "str":
            return np.full(shape, "", dtype="<U1")
        return np.full(shape, -1, dtype=np.int64)

    def _to_raw(self, codes: np.ndarray, index: IdIndex) -> np.ndarray:
        """Raw ids of a 2-D array of indices; padding (-1) becomes -1 or ''."""
        valid = codes >= 0
        if valid.all() and codes.size:
            return index.to_ids(codes)
        out = self._empty_ids(index, codes.shape)
        if index.kind == "str":
            out = out.astype(object)
        out[valid] = index.ids[codes[valid]]
        return out.astype(str) if index.kind == "str" else out

    # ------------------------------------------------------------------ scoring hooks
    # Subclasses implement these three; everything else scores through them.
    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of (user, item) index pairs; -1 marks an unknown id (use the fallback)."""
        raise NotImplementedError

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Score matrix (len(users), n_items), float32; -1 marks an unknown user."""
        raise NotImplementedError

    def _score_vector(self, vector: UserVector) -> np.ndarray:
        """Scores (n_items,) of a folded-in user."""
        raise NotImplementedError

    # ------------------------------------------------------------------ index-level interface
    def score_pairs(self, users: np.ndarray, items: np.ndarray, *,
                    clip: bool = True) -> np.ndarray:
        """Scores of (user, item) pairs given as dense codes.

        Parameters
        ----------
        users, items : ndarray of shape (n,), int
            Codes (positions in ``user_index_`` / ``item_index_``); -1 marks an
            unknown id, which gets the model's fallback (see the module doc).
        clip : bool, default=True
            Clip to the training ``rating_scale_`` (explicit data only), as
            :meth:`predict` does.

        Returns
        -------
        scores : ndarray of shape (n,), float64
        """
        self._check_fitted()
        scores = np.asarray(self._score_pairs(np.asarray(users, dtype=np.int64),
                                              np.asarray(items, dtype=np.int64)),
                            dtype=np.float64)
        return self.clip_scores(scores) if clip else scores

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores of every item for users given as codes (-1: the baseline ``predict`` gives).

        The ranking scores ``recommend`` sorts for known users: not clipped, so the
        order of items beyond the top of the scale is kept. (``recommend`` ranks an
        unknown user by popularity instead: :data:`FALLBACK`.)

        Returns
        -------
        scores : ndarray of shape (len(users), n_items), float32
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        # One user (a request): BLAS on one thread, whose waking costs more than the
        # product (a median of 8 ms against 0.07 ms at 17,632 items, loaded 2 cores).
        with blas_single_thread_for(users.size):
            return np.asarray(self._score_users(users), dtype=np.float32)

    def score_vector(self, vector: UserVector) -> np.ndarray:
        """Scores of every item for a user placed by :meth:`fold_in` / :meth:`fold_in_codes`.

        Returns
        -------
        scores : ndarray of shape (n_items,), float32
        """
        self._check_fitted()
        with blas_single_thread_for(1):  # one user's scores: as score_users for one
            return np.asarray(self._score_vector(vector), dtype=np.float32)

    def item_side(self, items: np.ndarray | None = None) -> ItemSide | None:
        """The item half of a dot-product score, or None when the score is not one.

        A top-k index (exact or approximate) may score users itself from this and
        :meth:`user_side`; a model that returns None must be scored through
        :meth:`score_users`.

        Parameters
        ----------
        items : ndarray of item codes, default=None
            Only these items' rows (None: every item).
        """
        return None

    def user_side(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The user half of a dot-product score: ``(vectors, offsets)`` of known user codes.

        Returns
        -------
        vectors : ndarray of shape (len(users), n_factors), float32
        offsets : ndarray of shape (len(users),), float32
            What the user adds to every item's score (bias, time drift, ...).
        """
        raise NotImplementedError(f"{type(self).__name__} does not score by a dot product")

    def fold_in_codes(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        """:meth:`fold_in` for a history given as item codes and values (checked alike)."""
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        values = self._check_values(_as_number_array(values, "ratings"), "ratings of the history")
        if len(items) != len(values):
            raise DataError(f"got {len(items)} items but {len(values)} ratings")
        if len(items) and (items.min() < 0 or items.max() >= self.n_items_):
            raise DataError(f"item codes must lie in [0, {self.n_items_})")
        if len(np.unique(items)) != len(items):
            raise DataError("the history repeats an item; give each item once")
        with single_thread():
            return self._fold_in(items, values)

    def history(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """What the model holds of known user ``user`` (a code): item codes and their values.

        Returns views of ``seen_``; the values are ratings, or weights for
        implicit feedback.
        """
        seen = self.seen_
        start, end = seen.indptr[user], seen.indptr[user + 1]
        return seen.indices[start:end], seen.data[start:end]

    def seen_pairs_mask(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        """Which (user, item) pairs, given as codes, the model holds from training.

        The batch form of :meth:`history`, for checking that test pairs were held
        out: a pair is seen when it is stored in ``seen_`` (whatever its value,
        including pairs added later by ``partial_fit`` or :meth:`apply_ratings`).

        Parameters
        ----------
        users, items : ndarray of shape (n,), int
            Codes, paired element-wise; -1 (an id the model does not know) is never seen.

        Returns
        -------
        mask : ndarray of shape (n,), bool, or None
            None when the model keeps no training interactions, so it cannot tell.
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if len(users) != len(items):
            raise ParameterError(f"got {len(users)} users but {len(items)} items to pair")
        seen = getattr(self, "seen_", None)
        if seen is None:
            return None
        n_users, n_items = seen.shape
        if (users >= n_users).any() or (items >= n_items).any():
            raise DataError(f"codes must lie below ({n_users}, {n_items}), the model's "
                            f"users and items")
        mask = np.zeros(len(users), dtype=bool)
        known = np.flatnonzero((users >= 0) & (items >= 0))
        if len(known) == 0 or seen.nnz == 0:
            return mask
        # One row-major key per stored pair; sorted as they stand when every row's indices
        # are, so a binary search answers all the pairs at once.
        rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(seen.indptr))
        keys = rows * n_items + seen.indices
        if not seen.has_sorted_indices:
            keys.sort()
        query = users[known] * n_items + items[known]
        found = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        mask[known] = keys[found] == query
        return mask

    def item_popularity(self) -> np.ndarray:
        """How many users interacted with each item in the data the model holds.

        Returns
        -------
        counts : ndarray of shape (n_items,), float32
        """
        self._check_fitted()
        return self._popularity().copy()

    def _popularity(self) -> np.ndarray:
        # Counted once per seen_ matrix (which is replaced, never changed in place, when
        # ratings arrive), so the fallback of a request costs no pass over the data.
        kept = getattr(self, "_popularity_of", None)
        if kept is None or kept[0] is not self.seen_:
            counts = np.bincount(self.seen_.indices, minlength=self.n_items_).astype(np.float32)
            kept = self._popularity_of = (self.seen_, counts)
        return kept[1]

    #: How many of the most popular items the top-n reads first (see ``_first_columns``).
    _FIRST_COLUMNS: ClassVar[int] = 32

    def _first_columns(self) -> np.ndarray:
        """The most popular items (codes, sorted), which the top-n of a batch reads first.

        Most users rank some of them high, so the top-n's heap starts near its final
        worst score and the scan skips almost every run of items (batch scoring of
        ImplicitALS, 209 users × 20,000 items a block: 1.27 → 0.78 ms; the same lists).
        Kept per ``seen_`` matrix, as the popularity is.
        """
        kept = getattr(self, "_first_of", None)
        if kept is None or kept[0] is not self.seen_:
            counts = self._popularity()
            k = min(self._FIRST_COLUMNS, len(counts))
            first = np.sort(np.argpartition(-counts, k - 1)[:k]) if k else \
                np.zeros(0, np.int64)
            kept = self._first_of = (self.seen_, first.astype(np.int64))
        return kept[1]

    # ------------------------------------------------------------------ inference
    def predict(self, users: Any, items: Any, *, unknown: str = "fallback",
                clip: bool = True) -> np.ndarray:
        """Predicted scores of (user, item) pairs given as raw ids.

        Parameters
        ----------
        users, items : array-like of shape (n,) or scalars
            Raw ids, paired element-wise.
        unknown : {"fallback", "raise", "nan"}, default="fallback"
            Unknown ids get the baseline fallback (global mean plus the known
            bias), raise :class:`~matfact.UnknownIdError`, or get NaN.
        clip : bool, default=True
            Clip to the training ``rating_scale`` (explicit data only).

        Returns
        -------
        scores : ndarray of shape (n,), float64
        """
        self._check_fitted()
        users, items = _as_id_array(users), _as_id_array(items)
        if len(users) != len(items):
            raise ParameterError(f"got {len(users)} users but {len(items)} items to pair")
        u = self._indices(users, self.user_index_, "user", unknown)
        i = self._indices(items, self.item_index_, "item", unknown)
        scores = self.score_pairs(u, i, clip=clip)
        if unknown == "nan":
            scores[(u < 0) | (i < 0)] = np.nan
        return scores

    def recommend(self, users: Any, n: int = 10, *, exclude_seen: bool = True,
                  items: Any = None, unknown: str = "fallback",
                  return_fallback: bool = False, explain: int | None = None,
                  approximate: bool = False) -> tuple[Any, ...]:
        """Top-``n`` items for each user.

        Parameters
        ----------
        users : array-like of shape (n_users,) or scalar
            Raw user ids.
        n : int, default=10
            List length; capped at the number of candidate items.
        exclude_seen : bool, default=True
            Never recommend items the user interacted with in ``fit``.
        items : array-like, default=None
            Restrict to these raw item ids (unknown ones are dropped, or raise
            with ``unknown="raise"``).
        unknown : {"fallback", "raise"}, default="fallback"
            An unknown user gets the :data:`FALLBACK` ranking (the most popular
            items; see the module doc), or raises :class:`~matfact.UnknownIdError`.
        return_fallback : bool, default=False
            Also return which users got the fallback ranking.
        explain : int or None, default=None
            Also return, for each recommended item, its :meth:`explain` with the
            ``explain`` history items that contribute most (None: no explanations,
            and the return value is as without this keyword).
        approximate : bool, default=False
            Take the candidates from the model's approximate index
            (:meth:`build_index`; built on demand with its defaults): a query reads a
            few of its lists instead of scoring the whole catalogue. Scores are exact
            and ``exclude_seen`` is honoured exactly; only an item the lists missed
            can be absent (recall is calibrated at build time, 0.95 by default).
            Users the model cannot place and ``items=`` restrictions are ranked
            exactly. Needs faiss (``pip install "matfact[ann]"``).

        Returns
        -------
        ids : ndarray of shape (n_users, n)
            Raw item ids, best first. Slots with no eligible item hold -1 (or
            ``""`` for string ids) and score NaN.
        scores : ndarray of shape (n_users, n), float32
            Known users: what :attr:`score_kind` says (predicted ratings, clipped
            to the scale, or ranking scores). Users who fell back: how many
            training users interacted with each item.
        fallback : ndarray of shape (n_users,), bool
            Only with ``return_fallback=True``: True for the users ranked by
            popularity because the model does not know them.
        explanations : list of (list of Explanation or None)
            Only with ``explain=k``: per user, one
            :class:`~matfact.models.explain.Explanation` per recommended item (the
            padding slots have none); None for a user who fell back, since a
            popularity ranking has no explanation.

        Examples
        --------
        >>> import matfact
        >>> data = matfact.Interactions.from_arrays([1, 1, 2, 3], [10, 11, 10, 12],
        ...                                          [4, 5, 3, 1], rating_scale=(1, 5, 1))
        >>> model = matfact.Baseline().fit(data, progress=False)
        >>> ids, scores, fallback = model.recommend([1, 99], n=2, return_fallback=True)
        >>> ids[1].tolist(), scores[1].tolist(), fallback.tolist()
        ([10, 11], [2.0, 1.0], [False, True])
        """
        self._check_fitted()
        n = check_n(n)
        if unknown == "nan":
            raise ParameterError("recommend takes unknown='fallback' or 'raise'")
        u = self._indices(users, self.user_index_, "user", unknown)
        candidates = None
        if items is not None:
            candidates = self._indices(items, self.item_index_, "item", unknown)
            candidates = np.unique(candidates[candidates >= 0])
        if explain is not None:
            explain = check_n(explain, "explain")
        idx, val, fell_back = self._ranked_codes(u, n, exclude_seen, candidates, approximate)
        out: tuple[Any, ...] = (self._to_raw(idx, self.item_index_), val)
        if return_fallback:
            out += (fell_back,)
        if explain is not None:
            raw_users = _as_id_array(users)
            out += ([None if fallback else
                     self._explain_codes(int(code), self.history(int(code)),
                                         row[row >= 0], explain, user_id=raw_users[r])
                     for r, (code, row, fallback) in enumerate(zip(u, idx, fell_back,
                                                                    strict=True))],)
        return out

    def recommend_codes(self, users: np.ndarray, n: int, *, exclude_seen: bool = True,
                        candidates: np.ndarray | None = None,
                        approximate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` on dense codes.

        Parameters
        ----------
        users : ndarray of shape (n_users,), int
            User codes; -1 gets the :data:`FALLBACK` ranking (popularity) and
            excludes nothing.
        n : int
        exclude_seen : bool, default=True
        candidates : ndarray of item codes, default=None
            Rank only these items (sorted, distinct).
        approximate : bool, default=False
            Candidates from the approximate index (see :meth:`recommend`).

        Returns
        -------
        codes : ndarray of shape (n_users, min(n, n_candidates)), int64
            Item codes, best first; -1 where fewer items are eligible.
        scores : ndarray of the same shape, float32
            Their scores (:meth:`score_users`, clipped by :meth:`clip_scores` after
            ranking), or popularity counts for -1; NaN in the padding.
        """
        return self._ranked_codes(users, n, exclude_seen, candidates, approximate)[:2]

    def _ranked_codes(self, users: np.ndarray, n: int, exclude_seen: bool = True,
                      candidates: np.ndarray | None = None, approximate: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`recommend_codes` plus which users got the :data:`FALLBACK` ranking."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        width = min(n, self.n_items_ if candidates is None else len(candidates))
        out_idx = np.full((len(users), width), -1, dtype=np.int64)
        out_val = np.full((len(users), width), np.nan, dtype=np.float32)
        fell_back = users < 0
        if width == 0:
            return out_idx, out_val, fell_back
        if approximate and candidates is None:
            from matfact.models.ann import approximate_recommend, flat_users

            # Users the index cannot rank (unknown, or placed nowhere) take the exact
            # path below, which gives them the fallback.
            ranked = ~fell_back
            ranked[ranked] = ~flat_users(self, users[ranked])
            if ranked.any():
                idx, val = approximate_recommend(self, users[ranked], width, exclude_seen)
                out_idx[ranked], out_val[ranked] = idx, self.clip_scores(val)
            if ranked.all():
                return out_idx, out_val, fell_back
            rest = ~ranked
            out_idx[rest], out_val[rest], fell_back[rest] = self._ranked_codes(
                users[rest], n, exclude_seen)
            return out_idx, out_val, fell_back
        step = _rows_per_batch(self.n_items_)
        for start in range(0, len(users), step):
            batch = users[start:start + step]
            unknown = batch < 0
            if unknown.all():
                scores = np.broadcast_to(self._popularity(), (len(batch), self.n_items_))
            else:
                scores = self.score_users(batch)
                # A known user whose every item scores the same carries no information
                # (see unplaced): ranked as an unknown user, not in index order.
                if self.n_items_ > 1:
                    unknown = unknown | _flat_rows(scores)
                if unknown.any():
                    scores = np.array(scores)  # score_users may give a read-only view
                    scores[unknown] = self._popularity()
            indptr, indices = self._exclusions(batch, exclude_seen)
            if candidates is not None:
                scores, indptr, indices = _restrict(scores, indptr, indices, candidates)
            idx, val = top_n_rows(scores, width, indptr, indices,
                                  None if candidates is not None else self._first_columns())
            if candidates is not None:
                idx = np.where(idx >= 0, candidates[np.maximum(idx, 0)], -1)
            if not unknown.all():
                # Ranked on the raw scores; reported on the scale (popularity counts stay).
                val[~unknown] = self.clip_scores(val[~unknown])
            out_idx[start:start + len(batch)] = idx
            out_val[start:start + len(batch)] = val
            fell_back[start:start + len(batch)] = unknown
        return out_idx, out_val, fell_back

    def unplaced(self, users: np.ndarray) -> np.ndarray:
        """Which users, given as codes, the model cannot rank for (-1, unknown, included).

        A known user is unplaced when every item gets the same score: their vector
        carries no information, e.g. a user whose only ratings are of items new to
        the model, added in the same batch (both start from zero). ``recommend``
        gives such users the :data:`FALLBACK` ranking and says so, as for an
        unknown user, rather than a list in index order.

        Returns
        -------
        mask : ndarray of shape (n_users,), bool
        """
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        out = users < 0
        if not out.all() and self.n_items_ > 1:
            out[~out] = _flat_rows(self.score_users(users[~out]))
        return out

    def _exclusions(self, users: np.ndarray, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """CSR-style seen-item lists of ``users`` (empty for unknown users or when off)."""
        if not exclude_seen:
            return np.zeros(len(users) + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
        seen = self.seen_
        counts = np.where(users >= 0, np.diff(seen.indptr)[np.maximum(users, 0)], 0)
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        if indptr[-1] == 0:
            return indptr, np.zeros(0, dtype=np.int32)
        known = users[users >= 0]
        starts = seen.indptr[known]
        # Gather each known user's slice of seen.indices without a Python loop.
        lengths = counts[users >= 0]
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        indices = seen.indices[np.arange(indptr[-1]) + offsets].astype(np.int32)
        return indptr, indices

    def fold_in(self, items: Any, ratings: Any = None, *, unknown: str = "ignore") -> UserVector:
        """Place a new user from their history without changing the model.

        Parameters
        ----------
        items : array-like of shape (n,)
            Raw ids of the items the user interacted with.
        ratings : array-like of shape (n,), default=None
            Their ratings (explicit models need them; implicit models read them
            as confidences, default 1).
        unknown : {"ignore", "raise"}, default="ignore"
            What to do with items the model does not know.

        Returns
        -------
        UserVector
        """
        self._check_fitted()
        codes, values = self._history(items, ratings, unknown)
        with single_thread():
            return self._fold_in(codes, values)

    def _history(self, items: Any, ratings: Any, unknown: str) -> tuple[np.ndarray, np.ndarray]:
        if unknown not in ("ignore", "raise"):
            raise ParameterError(f"unknown must be 'ignore' or 'raise', got {unknown!r}")
        items = _as_id_array(items)
        if ratings is None:
            self._check_can_skip_ratings("ratings= for the history")
            values = np.ones(len(items), dtype=np.float64)
        else:
            values = _as_number_array(ratings, "ratings")
            if len(values) != len(items):
                raise DataError(f"got {len(items)} items but {len(values)} ratings")
            self._check_values(values, "ratings of the history")
        codes = self._indices(items, self.item_index_, "item",
                              "raise" if unknown == "raise" else "fallback")
        known = codes >= 0
        codes, values = codes[known], values[known]
        if len(np.unique(codes)) != len(codes):
            raise DataError("the history repeats an item; give each item once")
        return codes, values

    _needs_ratings: ClassVar[bool] = True

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> UserVector:
        raise NotImplementedError

    def recommend_for_history(self, items: Any, ratings: Any = None, n: int = 10, *,
                              exclude_seen: bool = True, return_fallback: bool = False,
                              explain: int | None = None,
                              approximate: bool = False) -> tuple[Any, ...]:
        """Top-``n`` items for an anonymous history (fold-in; the model is unchanged).

        The history is checked as :meth:`apply_ratings` checks ratings (finite, on
        the training scale); items the model does not know are ignored. A history
        with no known item places no one: it gets the :data:`FALLBACK` ranking,
        as an unknown user does in :meth:`recommend`.

        Parameters
        ----------
        items, ratings : array-like of shape (n_items,)
            As :meth:`fold_in`.
        n : int, default=10
        exclude_seen : bool, default=True
            Never recommend an item of the history.
        return_fallback : bool, default=False
            Also return whether the answer is the fallback ranking.
        explain : int or None, default=None
            Also return each recommended item's explanation by this history, with the
            ``explain`` items that contribute most (see :meth:`explain`).
        approximate : bool, default=False
            Candidates from the approximate index, as in :meth:`recommend`.

        Returns
        -------
        ids, scores : ndarray of shape (n,)
            As one row of :meth:`recommend` (scores clipped to the rating scale
            for a rating model; popularity counts for the fallback).
        fallback : bool
            Only with ``return_fallback=True``.
        explanations : list of Explanation, or None
            Only with ``explain=k``: one per recommended item (``user`` is None); None
            for the fallback ranking, which has no explanation.
        """
        self._check_fitted()
        n = check_n(n)
        if explain is not None:
            explain = check_n(explain, "explain")
        codes, values = self._history(items, ratings, "ignore")
        fallback = len(codes) == 0
        width = min(n, self.n_items_)
        excluded = np.sort(codes).astype(np.int32) if exclude_seen else np.zeros(0, np.int32)
        if not fallback:
            with single_thread():
                vector = self._fold_in(codes, values)
        if approximate and not fallback:
            from matfact.models.ann import approximate_vector

            idx, val = approximate_vector(self, vector, width, excluded)
        else:
            scores = self._popularity() if fallback else self.score_vector(vector)
            idx, val = top_n_rows(scores.reshape(1, -1), width,
                                  np.array([0, len(excluded)], dtype=np.int64), excluded)
        if not fallback:
            self.clip_scores(val)
        ids = self._to_raw(idx, self.item_index_)[0]
        out: tuple[Any, ...] = (ids, val[0], fallback) if return_fallback else (ids, val[0])
        if explain is not None:
            out += (None if fallback else
                    self._explain_codes(-1, (codes, values), idx[0][idx[0] >= 0], explain,
                                        vector=vector),)
        return out

    # ------------------------------------------------------------------ batch scoring
    def recommend_all(self, n: int = 10, *, exclude_seen: bool = True, users: Any = None,
                      unknown: str = "fallback", block_size: int | None = None,
                      n_threads: int | None = None, progress: bool | str | None = None,
                      approximate: bool = False) -> Any:
        """Top-``n`` items for every user (or ``users``), yielded a block of users at a time.

        Each block's lists are what :meth:`recommend` gives for those users (ids, scores,
        fallback, padding), one block of users per matrix product, blocks side by side,
        so memory holds a few blocks' scores; see
        :func:`matfact.models.batch.recommend_all` for the parameters, and
        :func:`matfact.io.write_recommendations` to stream them to Parquet or CSV.

        Returns
        -------
        iterator of RecommendationBlock
            ``(users, ids, scores, fallback)`` of consecutive users.
        """
        from matfact.models.batch import recommend_all

        return recommend_all(self, n, exclude_seen=exclude_seen, users=users, unknown=unknown,
                             block_size=block_size, n_threads=n_threads, progress=progress,
                             approximate=approximate)

    # ------------------------------------------------------------------ explanations
    def explain(self, user: Any, item: Any, n: int = 5) -> Any:
        """Why ``user`` gets ``item``: the score split into the user's history items.

        The user is placed from their history by the model's own fold-in, whose
        linear solve makes the score a sum over the history items (Hu, Koren &
        Volinsky 2008, §5, for every model) plus the terms that are not history
        (global mean, item bias, the user's bias, a prior): the parts sum to the
        score the model gives the user so placed, which ``trained_score`` and
        ``vector_gap`` compare with the trained user. Models without a linear
        fold-in (BPR, HybridMF with a ranking loss) get an approximation, labelled
        ``exact=False``. A HybridMF user placed by their features (at fit or by
        ``add_users``) gets their trained score split into the user's and the item's
        features instead, exactly. The math of each model is in docs/explanations.md.

        Parameters
        ----------
        user : int or str
            A raw user id the model knows.
        item : raw item id, or a sequence of them
            Any known item, seen by the user or not.
        n : int, default=5
            History items listed (largest contribution first); the others are
            summed in ``rest``.

        Returns
        -------
        Explanation, or a list of them for a sequence of items
            See :class:`~matfact.models.explain.Explanation` (``to_dict()`` gives JSON).

        Raises
        ------
        UnknownIdError
            For a user or item the model does not know (an unknown user is ranked by
            popularity, which has no explanation).
        ParameterError
            For a model whose scores are not a user's (``Popularity``).

        Examples
        --------
        >>> import matfact
        >>> data = matfact.Interactions.from_arrays([1, 1, 2, 2, 3], [10, 11, 10, 12, 11],
        ...                                          [5, 3, 4, 1, 2], rating_scale=(1, 5, 1))
        >>> model = matfact.ALS(n_factors=2, random_state=0).fit(data, progress=False)
        >>> why = model.explain(1, 12, n=2)
        >>> abs(why.total() - why.score) < 1e-4, why.exact
        (True, True)
        """
        self._check_fitted()
        n = check_n(n)
        if _as_id_array(user).shape != (1,):
            raise ParameterError(f"explain takes one user id, got {user!r}")
        code = int(self._indices(user, self.user_index_, "user", "raise")[0])
        items = self._indices(item, self.item_index_, "item", "raise")
        explanations = self._explain_codes(code, self.history(code), items, n,
                                           user_id=_as_id_array(user)[0])
        return explanations if np.ndim(item) else explanations[0]

    def _explain_codes(self, user: int, history: tuple[np.ndarray, np.ndarray],
                       items: np.ndarray, n: int, *, user_id: Any = None,
                       vector: UserVector | None = None) -> list:
        from matfact.models.explain import explain_codes

        if user_id is not None:
            user_id = self.user_index_.ids[user]
            user_id = user_id.item() if hasattr(user_id, "item") else user_id
        return explain_codes(self, user, history, items, n, user_id=user_id, vector=vector)

    def similar_items(self, items: Any, n: int = 10, *,
                      approximate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each given item (cosine of item factors)."""
        raise NotImplementedError(f"{type(self).__name__} has no item vectors to compare")

    def build_index(self, kind: str = "recommend", *, n_lists: int | None = None,
                    n_probe: int | None = None, recall: float = 0.95, n: int = 10,
                    random_state: int = 0) -> Recommender:
        """Build the approximate top-k index of ``recommend(..., approximate=True)``.

        An inverted-file index (faiss ``IndexIVFFlat``, inner product) over the item
        vectors, augmented with the item base (``[q_i, μ + b_i]``) so that its order
        is ``recommend``'s; ``kind="similar"`` indexes the unit item vectors for
        ``similar_items(..., approximate=True)``. The index is kept in the model and
        saved with it (as its centroids and each item's list, rebuilt from the item
        vectors at load), new items join it at the next search, and ``partial_fit``
        or ``fit`` drop it (the next approximate search rebuilds it with the same
        settings). See :mod:`matfact.models.ann`.

        Parameters
        ----------
        kind : {"recommend", "similar"}, default="recommend"
        n_lists : int, default=None
            Lists (k-means clusters); None: about √n_items, a power of two.
        n_probe : int, default=None
            Lists read per query; None: the smallest power of two whose recall@``n``
            on up to 1,000 trained users (items, for ``"similar"``) reaches ``recall``.
        recall : float, default=0.95
            The calibration's target mean recall against the exact answer.
        n : int, default=10
            The list length the recall is measured at.
        random_state : int, default=0
            Seeds the k-means sample and the calibration sample.

        Returns
        -------
        self

        Examples
        --------
        >>> import matfact
        >>> data = matfact.make_synthetic(300, 400, 6000, implicit=True, random_state=0)
        >>> model = matfact.ImplicitALS(n_factors=8, random_state=0).fit(data, progress=False)
        >>> settings = model.build_index(recall=0.9).ann_settings_
        >>> settings["measured_recall"] >= 0.9
        True
        >>> ids, scores = model.recommend([0, 1], n=5, approximate=True)
        >>> ids.shape
        (2, 5)
        """
        from matfact.models.ann import build_model_index

        self._check_fitted()
        build_model_index(self, kind, n_lists=n_lists, n_probe=n_probe, recall=recall,
                          n=check_n(n), random_state=random_state)
        return self

    def similar_users(self, users: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` users most similar to each given user (cosine of user factors)."""
        raise NotImplementedError(f"{type(self).__name__} has no user vectors to compare")

    def __deepcopy__(self, memo: dict) -> Recommender:
        # The live approximate index (faiss, and a lock) is a cache of the kept arrays,
        # rebuilt on demand: a copy gets the arrays, not the cache.
        out = copy.copy(self)
        memo[id(self)] = out
        out.__dict__ = {key: copy.deepcopy(value, memo) for key, value in vars(self).items()
                        if key != "_ann_live"}
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Write the fitted model to ``path`` (``.zip``, else a directory); see :func:`matfact.load`."""
        from matfact.models.persistence import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path: Any) -> Recommender:
        """Read a model written by :meth:`save`; it must be of this class (or a subclass)."""
        from matfact.models.persistence import load_model

        model = load_model(path)
        if not isinstance(model, cls):
            from matfact.exceptions import ModelFormatError

            raise ModelFormatError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def _validate_state(self) -> None:
        """Check loaded arrays agree with each other (subclasses extend)."""
        if self.seen_.shape != (len(self.user_index_), len(self.item_index_)):
            raise ValueError("seen matrix does not match the id maps")
        if self.item_titles_ is not None and len(self.item_titles_) != len(self.item_index_):
            raise ValueError("item titles do not match the item ids")


def fold_in_negatives(n_items: int, history: np.ndarray, size: int) -> np.ndarray:
    """The fixed sample of negatives a ranking fold-in (BPR, HybridMF) ascends against.

    ``size`` distinct item codes outside ``history`` (fewer only if the catalogue has
    no more), drawn with seed 0 so fold-in is deterministic. Drawn as
    ``size + len(history)`` distinct codes of the whole catalogue, less those in the
    history: O(size) rather than the O(n_items log n_items) of building the
    complement, which alone took 1.2 ms at 17,632 items.
    """
    history = np.asarray(history)
    draw = np.random.default_rng(0).choice(n_items, min(size + len(history), n_items),
                                           replace=False)
    return draw[~np.isin(draw, history)][:size]


def _flat_rows(scores: np.ndarray) -> np.ndarray:
    """Which rows of a score block (≥ 2 columns) hold one value throughout (unplaced users).

    Only rows whose first two scores tie are read in full: the rest cannot be flat, and
    two passes over every row (its max and min) cost as much as the top-n of batch
    scoring. A row with NaN is not flat.
    """
    flat = scores[:, 0] == scores[:, 1]
    if flat.any():
        rows = np.flatnonzero(flat)
        tied = scores[rows]
        flat[rows] = tied.max(axis=1) == tied.min(axis=1)
    return flat


def _restrict(scores, indptr, indices, candidates):
    """Keep only candidate columns; remap the exclusion lists to candidate positions."""
    position = np.full(scores.shape[1], -1, dtype=np.int64)
    position[candidates] = np.arange(len(candidates))
    mapped = position[indices] if len(indices) else np.zeros(0, dtype=np.int64)
    keep = mapped >= 0
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))[keep]
    new_indptr = np.zeros_like(indptr)
    np.cumsum(np.bincount(rows, minlength=len(indptr) - 1), out=new_indptr[1:])
    return (np.ascontiguousarray(scores[:, candidates]), new_indptr,
            mapped[keep].astype(np.int32))


class FactorModel(Recommender):
    """A model scoring ``μ + b_u + b_i + p_u·q_i`` (any of the terms may be absent).

    Fitted attributes (set by subclasses): ``global_mean_`` (float),
    ``user_bias_`` / ``item_bias_`` (float32 arrays or None),
    ``user_factors_`` / ``item_factors_`` (float32 arrays of shape
    (n_users, n_factors) / (n_items, n_factors), or None).
    """

    global_mean_: float = 0.0
    user_bias_: np.ndarray | None = None
    item_bias_: np.ndarray | None = None
    user_factors_: np.ndarray | None = None
    item_factors_: np.ndarray | None = None

    def _item_base(self, items: np.ndarray | None = None) -> np.ndarray:
        """μ + b_i for every item, or for ``items`` (float32): the score of a user with
        nothing known."""
        bias = self.item_bias_
        if bias is not None and items is not None:
            bias = bias[items]
        if bias is not None and bias.dtype == np.float32:
            return bias + np.float32(self.global_mean_)  # a new array, one pass
        base = np.full(self.n_items_ if items is None else len(items), self.global_mean_,
                       dtype=np.float32)
        if bias is not None:
            base += bias
        return base

    def _has_factors(self) -> bool:
        return self.item_factors_ is not None and self.item_factors_.shape[1] > 0

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        scores = np.full(len(users), self.global_mean_, dtype=np.float64)
        ku, ki = users >= 0, items >= 0
        if self.user_bias_ is not None:
            scores[ku] += self.user_bias_[users[ku]]
        if self.item_bias_ is not None:
            scores[ki] += self.item_bias_[items[ki]]
        if self._has_factors():
            both = ku & ki
            scores[both] += np.einsum(
                "ij,ij->i", self.user_factors_[users[both]].astype(np.float64),
                self.item_factors_[items[both]].astype(np.float64),
            )
        return scores

    #: Whether the score is ``item_side().base + user_side().offsets + p_u · q_i``; a
    #: subclass whose ``_score_users`` adds anything else sets this to False.
    _dot_product_scores: ClassVar[bool] = True

    def item_side(self, items: np.ndarray | None = None) -> ItemSide | None:
        if not self._dot_product_scores:
            return None
        self._check_fitted()
        factors = self.item_factors_ if self._has_factors() else None
        if factors is not None and items is not None:
            factors = factors[items]
        return ItemSide(np.ascontiguousarray(self._item_base(items), dtype=np.float32),
                        None if factors is None else
                        np.ascontiguousarray(factors, dtype=np.float32))

    def user_side(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        offsets = (np.zeros(len(users), np.float32) if self.user_bias_ is None
                   else self.user_bias_[users].astype(np.float32))
        k = self.item_factors_.shape[1] if self._has_factors() else 0
        vectors = (self.user_factors_[users].astype(np.float32, copy=False) if k
                   else np.zeros((len(users), 0), np.float32))
        return vectors, offsets

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        # The one formula: base_i + offset_u + p_u · q_i (unknown users: the base).
        known = users >= 0
        base = self._item_base().astype(np.float32, copy=False)
        if known.all() and self._has_factors():
            # The common case, without a gather and scatter of the whole score block; one
            # user (a request) as a matrix-vector product (score_users holds BLAS to one
            # thread for it).
            vectors, offsets = self.user_side(users)
            scores = (self.item_factors_ @ vectors[0])[None, :] if len(users) == 1 else \
                vectors @ self.item_factors_.T
            # Terms that are all zero (implicit ALS: no biases) are not added (x + 0 is x):
            # each is a pass over the whole block, in batch scoring as long as the top-n's.
            if base.any():
                scores += base[None, :]
            if offsets.any():
                scores += offsets[:, None]
            return scores
        scores = np.repeat(base[None, :], len(users), axis=0)
        if known.any():
            vectors, offsets = self.user_side(users[known])
            scores[known] += offsets[:, None]
            if self._has_factors():
                scores[known] += vectors @ self.item_factors_.T
        if self.item_bias_ is None and not known.all():
            # Without item biases the baseline is flat: rank unknown users by popularity.
            scores[~known] = self.item_popularity()
        return scores

    def _score_vector(self, vector: UserVector) -> np.ndarray:
        scores = self._item_base() + np.float32(vector.bias)
        if self._has_factors():
            scores += self.item_factors_ @ np.asarray(vector.factors, dtype=np.float32)
        return scores

    #: Whether the objective is symmetric in users and items, so an item is placed
    #: by the user fold-in with the roles swapped (:meth:`_fold_in_item`).
    _symmetric_fold_in: ClassVar[bool] = False
    #: Ridge penalty per interaction of the generic item placement.
    _item_fold_in_reg: ClassVar[float] = 0.1

    def _set_user(self, code: int, vector: UserVector) -> None:
        self.user_factors_, self.user_bias_ = _store_row(
            self.user_factors_, self.user_bias_, code, vector)

    def _set_item(self, code: int, vector: UserVector) -> None:
        self.item_factors_, self.item_bias_ = _store_row(
            self.item_factors_, self.item_bias_, code, vector)

    def _fold_in_item(self, users: np.ndarray, values: np.ndarray) -> UserVector:
        r"""Place a new item from the users who interacted with it, users fixed.

        Symmetric models mirror their own fold-in. Otherwise, for ratings, a
        ridge solve of :math:`r_{ui} - \mu - b_u \approx b_i + p_u \cdot q_i`
        with penalty ``n · 0.1`` (as SGD's per-rating penalty); for implicit
        data, Hu et al.'s closed form with confidence ``1 + r`` and the
        Gram matrix of all user vectors.
        """
        if self._symmetric_fold_in:
            mirror = copy.copy(self)
            mirror.user_factors_, mirror.item_factors_ = self.item_factors_, self.user_factors_
            mirror.user_bias_, mirror.item_bias_ = self.item_bias_, self.user_bias_
            return mirror._fold_in(users, values)
        k = 0 if self.user_factors_ is None else self.user_factors_.shape[1]
        n = len(users)
        use_bias = self.item_bias_ is not None
        if n == 0 or (k == 0 and not use_bias):
            return UserVector(np.zeros(k, np.float32), 0.0)
        design = (self.user_factors_[users].astype(np.float64) if k
                  else np.zeros((n, 0)))
        if self.is_implicit_:
            # min Σ_all c_u (p_u - x·q_u)² + λ n ‖x‖², p = 1 on the history, 0 elsewhere.
            every = self.user_factors_.astype(np.float64)
            confidence = 1.0 + np.asarray(values, np.float64)
            gram = every.T @ every + (design.T * (confidence - 1.0)) @ design
            gram += self._item_fold_in_reg * n * np.eye(k)
            factors = np.linalg.solve(gram, design.T @ confidence)
            return UserVector(factors.astype(np.float32), 0.0)
        target = np.asarray(values, np.float64) - self.global_mean_
        if self.user_bias_ is not None:
            target = target - self.user_bias_[users]
        if use_bias:
            design = np.hstack([design, np.ones((n, 1))])
        gram = design.T @ design + self._item_fold_in_reg * n * np.eye(design.shape[1])
        solution = np.linalg.solve(gram, design.T @ target)
        return UserVector(solution[:k].astype(np.float32),
                          float(solution[k]) if use_bias else 0.0)

    def user_vector(self, user: Any) -> UserVector:
        """The learned representation of one known user (raw id)."""
        self._check_fitted()
        code = int(self._indices(user, self.user_index_, "user", "raise")[0])
        factors = (np.zeros(0, np.float32) if self.user_factors_ is None
                   else self.user_factors_[code].copy())
        bias = 0.0 if self.user_bias_ is None else float(self.user_bias_[code])
        return UserVector(factors, bias)

    def _similar(self, raw: Any, n: int, index: IdIndex, factors: np.ndarray | None,
                 kind: str) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        n = check_n(n)
        if factors is None or factors.shape[1] == 0:
            raise NotImplementedError(f"{type(self).__name__} has no {kind} vectors to compare")
        codes = self._indices(raw, index, kind, "raise")
        norms = np.linalg.norm(factors, axis=1)
        unit = factors / np.where(norms > 0, norms, 1.0)[:, None]
        width = min(n, len(index) - 1)
        out_idx = np.full((len(codes), max(width, 0)), -1, dtype=np.int64)
        out_val = np.full(out_idx.shape, np.nan, dtype=np.float32)
        if width <= 0:
            return self._to_raw(out_idx, index), out_val
        step = _rows_per_batch(len(index))
        for start in range(0, len(codes), step):
            batch = codes[start:start + step]
            scores = np.ascontiguousarray(unit[batch] @ unit.T, dtype=np.float32)
            indptr = np.arange(len(batch) + 1, dtype=np.int64)  # exclude the item itself
            idx, val = top_n_rows(scores, width, indptr, batch.astype(np.int32))
            out_idx[start:start + len(batch)] = idx
            out_val[start:start + len(batch)] = val
        return self._to_raw(out_idx, index), out_val

    def similar_items(self, items: Any, n: int = 10, *,
                      approximate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each given item, by cosine of item factors.

        Parameters
        ----------
        items : raw item ids
        n : int, default=10
        approximate : bool, default=False
            Candidates from the ``"similar"`` index (:meth:`build_index`, built on
            demand): exact cosines, the item itself excluded exactly, an item the
            probed lists missed possibly absent.

        Returns
        -------
        ids, scores : ndarray of shape (len(items), n)
            The item itself is never in its own list.
        """
        if approximate:
            from matfact.models.ann import approximate_similar

            self._check_fitted()
            n = check_n(n)
            if not self._has_factors():
                raise NotImplementedError(f"{type(self).__name__} has no item vectors to "
                                          f"compare")
            codes = self._indices(items, self.item_index_, "item", "raise")
            idx, val = approximate_similar(self, codes, n)
            return self._to_raw(idx, self.item_index_), val
        return self._similar(items, n, self.item_index_, self.item_factors_, "item")

    def similar_users(self, users: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` users most similar to each given user, by cosine of user factors."""
        return self._similar(users, n, self.user_index_, self.user_factors_, "user")

    def _validate_state(self) -> None:
        super()._validate_state()
        n_users, n_items = len(self.user_index_), len(self.item_index_)
        for name, size in (("user_bias_", n_users), ("item_bias_", n_items)):
            value = getattr(self, name)
            if value is not None and value.shape != (size,):
                raise ValueError(f"{name} has shape {value.shape}, expected ({size},)")
        for name, size in (("user_factors_", n_users), ("item_factors_", n_items)):
            value = getattr(self, name)
            if value is not None and (value.ndim != 2 or value.shape[0] != size):
                raise ValueError(f"{name} has shape {value.shape}, expected ({size}, k)")
        if (self.user_factors_ is not None and self.item_factors_ is not None
                and self.user_factors_.shape[1] != self.item_factors_.shape[1]):
            raise ValueError("user and item factors differ in rank")
        if any(name.startswith("ann_") for name in vars(self)):
            from matfact.models.ann import check_index_state

            check_index_state(self)
