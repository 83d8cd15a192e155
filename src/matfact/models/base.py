"""The estimator contract every matfact model follows.

``fit(interactions)`` learns from an :class:`~matfact.Interactions`; inference
takes **raw ids** and returns arrays, batch-first:

- ``predict(users, items)`` → scores, clipped to the training rating scale;
- ``recommend(users, n=10)`` → ``(ids, scores)``, both of shape (n_users, n);
- ``recommend_for_history(items, ratings)`` / ``fold_in(items, ratings)`` for a
  user the model never saw, without changing the model;
- ``similar_items`` / ``similar_users`` by cosine similarity of the factors;
- ``save(path)`` / :func:`matfact.load` (no pickle).

Unknown ids
-----------
``predict`` scores an unknown user or item with the best baseline the model
has: the global mean plus whichever bias is known (``unknown="fallback"``,
the default); ``unknown="raise"`` raises :class:`~matfact.UnknownIdError`
naming the ids, and ``unknown="nan"`` returns NaN for them. ``recommend``
ranks items for an unknown user by that same fallback (item biases, or
popularity for models without biases) and excludes nothing.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator

from matfact._kernels.topk import topk_rows
from matfact._threads import single_thread
from matfact.data.interactions import IdIndex, Interactions
from matfact.exceptions import DataError, NotFittedError, ParameterError, UnknownIdError
from matfact.models._params import check_n, validate_params

__all__ = ["Recommender", "FactorModel", "UserVector", "MODEL_REGISTRY"]

#: Every concrete model class by name; :func:`matfact.load` only builds these.
MODEL_REGISTRY: dict[str, type[Recommender]] = {}

_UNKNOWN_POLICIES = ("fallback", "raise", "nan")
_RECOMMEND_BATCH = 2048  # users scored per matrix product; bounds memory at ~n_items × 8 KB


class UserVector(NamedTuple):
    """A user's learned (or folded-in) representation.

    Attributes
    ----------
    factors : ndarray of shape (n_factors,), float32
        Empty for models without factors.
    bias : float
        The user bias (0 for models without one).
    """

    factors: np.ndarray
    bias: float


def _as_id_array(ids: Any) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ParameterError(f"ids must be a scalar or a 1-D sequence, got shape {array.shape}")
    return array


class Recommender(BaseEstimator):
    """Base class of every matfact model: parameters, fitted vocabulary, inference.

    Subclasses declare ``_parameter_constraints`` (checked at :meth:`fit`),
    implement ``_fit`` and the scoring hooks, and keep learned state in
    attributes ending in ``_``. Those attributes are what :meth:`save` writes.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {}
    #: Whether the model learns from ratings, implicit feedback, or both.
    _accepts: ClassVar[tuple[str, ...]] = ("explicit", "implicit")
    #: Whether the model only ranks (its scores are not ratings): evaluated by ranking
    #: metrics by default.
    _ranks_only: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_") and "_fit" in cls.__dict__:
            MODEL_REGISTRY[cls.__name__] = cls

    # ------------------------------------------------------------------ fitting
    def fit(self, interactions: Interactions, *, validation: Interactions | None = None,
            progress: bool = True) -> Recommender:
        """Learn from ``interactions``.

        Parameters
        ----------
        interactions : Interactions
            Training data; side features travel on it.
        validation : Interactions, default=None
            Held-out data some models report (and stop early) on.
        progress : bool, default=True
            Show a progress bar for long fits.

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

    def _merge_new(self, interactions: Interactions) -> tuple[Interactions, int, int]:
        """Extend the id maps with ``interactions``' new ids and merge them into the data.

        Returns the merged training data (a repeated pair takes the new value)
        and the numbers of users and items the model knew before.
        """
        self._check_fitted()
        new = self._check_training_data(interactions)
        if new.is_implicit != self.is_implicit_:
            kind = "implicit" if self.is_implicit_ else "explicit"
            raise DataError(f"the model was fitted on {kind} data; partial_fit needs the same")
        old_users, old_items = self.n_users_, self.n_items_
        user_index = self.user_index_.extend(new.user_ids)
        item_index = self.item_index_.extend(new.item_ids)
        new = new._reindex(user_index, item_index)
        old = self.seen_.tocoo()
        users = np.concatenate([old.row, new.user_codes]).astype(np.int64)
        items = np.concatenate([old.col, new.item_codes]).astype(np.int64)
        values = np.concatenate([old.data, new.values]).astype(np.float32)
        keys = users * len(item_index) + items
        # Keep the last occurrence of each pair: the new value wins.
        _, last = np.unique(keys[::-1], return_index=True)
        keep = np.sort(len(keys) - 1 - last)
        merged = Interactions(
            users[keep], items[keep], user_index, item_index,
            ratings=None if self.is_implicit_ else values[keep],
            weights=values[keep] if self.is_implicit_ else None,
            rating_scale=self.rating_scale_,
        )
        self.user_index_, self.item_index_ = user_index, item_index
        self.seen_ = merged.to_scipy().copy()
        if self.item_titles_ is not None and len(item_index) > old_items:
            extra = item_index.ids[old_items:].astype(str)
            self.item_titles_ = np.concatenate([self.item_titles_.astype(str), extra])
        return merged, old_users, old_items

    def _clear_fitted_state(self) -> None:
        for name in [n for n in vars(self) if n.endswith("_") and not n.startswith("_")]:
            delattr(self, name)

    def _fit_state(self, data: Interactions, validation: Interactions | None,
                   progress: bool) -> None:
        self.user_index_ = data.user_index
        self.item_index_ = data.item_index
        self.is_implicit_ = data.is_implicit
        self.rating_scale_ = None if data.is_implicit else data.rating_scale
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
            return np.full(shape, "", dtype=index.ids.dtype if len(index) else "<U1")
        return np.full(shape, -1, dtype=np.int64)

    def _to_raw(self, codes: np.ndarray, index: IdIndex) -> np.ndarray:
        """Raw ids of a 2-D array of indices; padding (-1) becomes -1 or ''."""
        out = self._empty_ids(index, codes.shape)
        valid = codes >= 0
        out[valid] = index.ids[codes[valid]]
        return out

    # ------------------------------------------------------------------ scoring hooks
    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of (user, item) index pairs; -1 marks an unknown id (use the fallback)."""
        raise NotImplementedError

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Score matrix (len(users), n_items), float32; -1 marks an unknown user."""
        raise NotImplementedError

    def _score_vector(self, vector: UserVector) -> np.ndarray:
        """Scores (n_items,) of a folded-in user."""
        raise NotImplementedError

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
        scores = np.asarray(self._score_pairs(u, i), dtype=np.float64)
        if clip and self.rating_scale_ is not None:
            np.clip(scores, *self.rating_scale_, out=scores)
        if unknown == "nan":
            scores[(u < 0) | (i < 0)] = np.nan
        return scores

    def recommend(self, users: Any, n: int = 10, *, exclude_seen: bool = True,
                  items: Any = None, unknown: str = "fallback") -> tuple[np.ndarray, np.ndarray]:
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
            An unknown user is ranked by the model's fallback (see module doc).

        Returns
        -------
        ids : ndarray of shape (n_users, n)
            Raw item ids, best first. Slots with no eligible item hold -1 (or
            ``""`` for string ids) and score NaN.
        scores : ndarray of shape (n_users, n), float32
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
        idx, val = self._recommend_codes(u, n, exclude_seen, candidates)
        return self._to_raw(idx, self.item_index_), val

    def _recommend_codes(self, users: np.ndarray, n: int, exclude_seen: bool = True,
                         candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` on dense indices: (item indices, scores), -1 / NaN padded."""
        width = min(n, self.n_items_ if candidates is None else len(candidates))
        out_idx = np.full((len(users), width), -1, dtype=np.int64)
        out_val = np.full((len(users), width), np.nan, dtype=np.float32)
        if width == 0:
            return out_idx, out_val
        for start in range(0, len(users), _RECOMMEND_BATCH):
            batch = users[start:start + _RECOMMEND_BATCH]
            scores = np.ascontiguousarray(self._score_users(batch), dtype=np.float32)
            indptr, indices = self._exclusions(batch, exclude_seen)
            if candidates is not None:
                scores, indptr, indices = _restrict(scores, indptr, indices, candidates)
            idx, val = _top_n(scores, indptr, indices, width)
            if candidates is not None:
                idx = np.where(idx >= 0, candidates[np.maximum(idx, 0)], -1)
            out_idx[start:start + len(batch)] = idx
            out_val[start:start + len(batch)] = val
        return out_idx, out_val

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
            if not self.is_implicit_ and self._needs_ratings:
                raise DataError(f"{type(self).__name__} was fitted on ratings; pass ratings= "
                                f"for the history")
            values = np.ones(len(items), dtype=np.float64)
        else:
            values = np.asarray(ratings, dtype=np.float64).reshape(-1)
            if len(values) != len(items):
                raise DataError(f"got {len(items)} items but {len(values)} ratings")
            if not np.isfinite(values).all():
                raise DataError("NaN or infinite values in the ratings of the history")
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
                              exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items for an anonymous history (fold-in; the model is unchanged).

        Returns
        -------
        ids, scores : ndarray of shape (n,)
            As one row of :meth:`recommend`.
        """
        self._check_fitted()
        n = check_n(n)
        codes, values = self._history(items, ratings, "ignore")
        with single_thread():
            vector = self._fold_in(codes, values)
        scores = self._score_vector(vector).astype(np.float32)
        width = min(n, self.n_items_)
        excluded = np.sort(codes).astype(np.int32) if exclude_seen else np.zeros(0, np.int32)
        idx, val = _top_n(scores.reshape(1, -1), np.array([0, len(excluded)], dtype=np.int64),
                          excluded, width)
        return self._to_raw(idx, self.item_index_)[0], val[0]

    def similar_items(self, items: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each given item (cosine of item factors)."""
        raise NotImplementedError(f"{type(self).__name__} has no item vectors to compare")

    def similar_users(self, users: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` users most similar to each given user (cosine of user factors)."""
        raise NotImplementedError(f"{type(self).__name__} has no user vectors to compare")

    # ------------------------------------------------------------------ changing the model
    #: Per-user / per-item state arrays (first axis: users / items) that grow with new ids.
    _user_arrays: ClassVar[tuple[str, ...]] = ()
    _item_arrays: ClassVar[tuple[str, ...]] = ()

    def update_users(self, users: Any, histories: Any) -> Recommender:
        """(Re)compute users' vectors from their whole histories; unseen ids are added.

        Each user is placed by the model's fold-in (the method of
        :meth:`fold_in`) with the items fixed, and their history replaces
        what the model had for them, so ``recommend(..., exclude_seen=True)``
        excludes exactly the new history. Items the model does not know are
        ignored (add them with :meth:`add_items`). Nothing else changes: a
        service calls this on every new rating.

        Parameters
        ----------
        users : array-like of shape (n,)
            Raw user ids, each once.
        histories : sequence of length n
            Per user, the whole history: an ``(items, ratings)`` pair, a mapping
            ``{item: rating}``, or just the items (implicit data).

        Returns
        -------
        self
        """
        self._check_fitted()
        users = _as_id_array(users)
        rows = self._parse_histories(users, histories, "users")
        if len(self.user_index_) and len(users):
            self.user_index_.coerce(users)  # a string id for an integer index is an error
        self._add_rows("user", users)
        codes = self.user_index_.get_indexer(users)
        with single_thread():
            for code, (items, values) in zip(codes, rows, strict=True):
                self._set_user(int(code), self._fold_in(items, values))
        self._set_seen(_replace_rows(self.seen_, codes, rows))
        self._after_user_update(codes)
        return self

    def add_items(self, items: Any, histories: Any = None) -> Recommender:
        """Add items the model has never seen, placed from their first interactions.

        Each item is solved with the users fixed (the mirror of :meth:`fold_in`:
        a ridge solve on the user vectors, or the model's own half-step where
        its objective is symmetric). An item with no history starts at the
        model's baseline (zero factors and bias) until the next fit.

        Parameters
        ----------
        items : array-like of shape (n,)
            Raw ids of new items; an id the model knows is an error.
        histories : sequence of length n, default=None
            Per item, ``(users, ratings)``, a mapping ``{user: rating}``, or just
            the users. Unknown users are ignored.

        Returns
        -------
        self
        """
        self._check_fitted()
        items = _as_id_array(items)
        known = self.item_index_.get_indexer(items) >= 0 if len(self.item_index_) else \
            np.zeros(len(items), bool)
        if known.any():
            raise DataError(f"items {items[known][:10].tolist()} are already in the model; "
                            f"use update_users or partial_fit to add their ratings")
        if histories is None:
            histories = [((), ())] * len(items)
        columns = self._parse_histories(items, histories, "items")
        if len(self.item_index_) and len(items):
            self.item_index_.coerce(items)
        self._add_rows("item", items)
        codes = self.item_index_.get_indexer(items)
        with single_thread():
            for code, (users, values) in zip(codes, columns, strict=True):
                self._set_item(int(code), self._fold_in_item(users, values))
        by_item = _replace_rows(self.seen_.T.tocsr(), codes, columns)
        self._set_seen(by_item.T.tocsr())
        return self

    def _parse_histories(self, ids: np.ndarray, histories: Any,
                         what: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each history as (codes, values) of the other side, checked like fold-in's."""
        if len(np.unique(ids)) != len(ids):
            raise DataError(f"the {what} repeat an id; give each once with its whole history")
        if isinstance(histories, (str, bytes)) or not hasattr(histories, "__len__"):
            raise DataError(f"histories must be a sequence with one history per id, "
                            f"got {type(histories).__name__}")
        if len(histories) != len(ids):
            raise DataError(f"got {len(ids)} {what} but {len(histories)} histories")
        other = self.user_index_ if what == "items" else self.item_index_
        rows = []
        for history in histories:
            keys, ratings = _split_history(history)
            if what == "items":
                codes, values = self._other_history(keys, ratings, other)
            else:
                codes, values = self._history(keys, ratings, "ignore")
            scale = getattr(self, "rating_scale_", None)
            if scale is not None and len(values) and (
                    values.min() < scale[0] or values.max() > scale[1]):
                raise DataError(f"ratings must lie in the training scale [{scale[0]:g}, "
                                f"{scale[1]:g}]; got values in [{values.min():g}, "
                                f"{values.max():g}]")
            rows.append((codes.astype(np.int64), values))
        return rows

    def _other_history(self, users: Any, ratings: Any,
                       index: IdIndex) -> tuple[np.ndarray, np.ndarray]:
        # An item's first interactions, read like a user's history with the roles swapped.
        users = _as_id_array(users)
        if ratings is None:
            if not self.is_implicit_ and self._needs_ratings:
                raise DataError(f"{type(self).__name__} was fitted on ratings; pass ratings "
                                f"with the users")
            values = np.ones(len(users))
        else:
            values = np.asarray(ratings, dtype=np.float64).reshape(-1)
            if len(values) != len(users):
                raise DataError(f"got {len(users)} users but {len(values)} ratings")
            if not np.isfinite(values).all():
                raise DataError("NaN or infinite values in the ratings of the history")
        codes = index.get_indexer(users) if len(users) else np.zeros(0, np.int64)
        keep = codes >= 0
        if len(np.unique(codes[keep])) != keep.sum():
            raise DataError("the history repeats a user; give each user once")
        return codes[keep], values[keep]

    def _add_rows(self, side: str, raw: np.ndarray) -> None:
        """Extend the id map of ``side`` with ``raw``'s new ids and grow its state arrays."""
        index = self.user_index_ if side == "user" else self.item_index_
        grown = index.extend(raw)
        added = len(grown) - len(index)
        if added == 0:
            return
        names = ("user_factors_", "user_bias_", *self._user_arrays) if side == "user" else \
            ("item_factors_", "item_bias_", *self._item_arrays)
        for name in dict.fromkeys(names):
            array = getattr(self, name, None)
            if isinstance(array, np.ndarray) and array.ndim >= 1:
                pad = np.zeros((added, *array.shape[1:]), dtype=array.dtype)
                setattr(self, name, np.concatenate([array, pad]))
        n_users = len(grown) if side == "user" else len(self.user_index_)
        n_items = len(grown) if side == "item" else len(self.item_index_)
        seen = self.seen_.tocsr()
        indptr = np.concatenate([seen.indptr, np.full(n_users - seen.shape[0], seen.indptr[-1])])
        self.seen_ = type(seen)((seen.data, seen.indices, indptr), shape=(n_users, n_items))
        if side == "user":
            self.user_index_ = grown
        else:
            self.item_index_ = grown
            if self.item_titles_ is not None:
                extra = grown.ids[len(index):].astype(str)
                self.item_titles_ = np.concatenate([self.item_titles_.astype(str), extra])

    #: State arrays with one entry per stored interaction, in ``seen_``'s CSR order
    #: (e.g. each rating's time); kept aligned when ``seen_`` is rewritten.
    _entry_arrays: ClassVar[tuple[str, ...]] = ("rating_times_",)

    def _set_seen(self, seen: Any) -> None:
        """Replace ``seen_``, carrying the per-interaction arrays over by (user, item)."""
        old = self.seen_
        for name in self._entry_arrays:
            values = getattr(self, name, None)
            if isinstance(values, np.ndarray) and len(values) == old.nnz:
                setattr(self, name, _carry_entries(old, seen, values,
                                                   self._new_entry_value(name)))
        self.seen_ = seen

    def _new_entry_value(self, name: str) -> Any:
        """What a new interaction gets in the per-interaction array ``name``."""
        return getattr(self, "time_newest_", 0) if name == "rating_times_" else 0

    def _after_user_update(self, codes: np.ndarray) -> None:
        """Called once the users ``codes`` have new vectors and new seen rows."""

    def _set_user(self, code: int, vector: UserVector) -> None:
        """Store a user's new vector (models without user state keep nothing)."""

    def _set_item(self, code: int, vector: UserVector) -> None:
        """Store a new item's vector (models without item state keep nothing)."""

    def _fold_in_item(self, users: np.ndarray, values: np.ndarray) -> UserVector:
        """An item's vector from its first interactions with the users fixed."""
        return UserVector(np.zeros(0, np.float32), 0.0)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Write the fitted model to ``path`` (``.zip``, else a directory); see :func:`matfact.load`."""
        from matfact.io import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path: Any) -> Recommender:
        """Read a model written by :meth:`save`; it must be of this class (or a subclass)."""
        from matfact.io import load_model

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


def _top_n(scores: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
           n: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~matfact._kernels.topk.topk_rows`, with one row done in NumPy.

    A single row (the serving case) is cheaper without a parallel region, and
    avoids numba's threads contending with BLAS threads still spinning after
    the matrix product that made the scores.
    """
    if scores.shape[0] != 1:
        return topk_rows(scores, indptr, indices, n)
    row = scores[0].astype(np.float32, copy=True)
    row[indices[indptr[0]:indptr[1]]] = -np.inf
    row[np.isnan(row)] = -np.inf
    idx = np.full((1, n), -1, dtype=np.int64)
    val = np.full((1, n), np.nan, dtype=np.float32)
    eligible = int(np.count_nonzero(row > -np.inf))
    m = min(n, eligible)
    if m == 0:
        return idx, val
    threshold = -np.partition(-row, m - 1)[m - 1]
    above = np.flatnonzero(row > threshold)
    ties = np.flatnonzero(row == threshold)[: m - len(above)]  # lower index wins a tie
    chosen = np.concatenate([above, ties])
    chosen = chosen[np.lexsort((chosen, -row[chosen]))]
    idx[0, :m] = chosen
    val[0, :m] = row[chosen]
    return idx, val


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


def _split_history(history: Any) -> tuple[Any, Any]:
    """``(keys, values)`` of one history: a pair, a mapping, or keys alone."""
    if isinstance(history, dict):
        return list(history.keys()), list(history.values())
    if isinstance(history, tuple) and len(history) == 2:
        return history
    return history, None


def _carry_entries(old: Any, new: Any, values: np.ndarray, fill: Any) -> np.ndarray:
    """``values`` (aligned with ``old``'s CSR entries) re-aligned to ``new``'s; new pairs → fill."""
    old, new = old.tocoo(), new.tocoo()  # COO of a CSR keeps the CSR order
    width = max(old.shape[1], new.shape[1], 1)
    old_keys = old.row.astype(np.int64) * width + old.col
    new_keys = new.row.astype(np.int64) * width + new.col
    order = np.argsort(old_keys, kind="stable")
    where = np.searchsorted(old_keys[order], new_keys)
    where = np.minimum(where, max(len(order) - 1, 0))
    found = (len(order) > 0) & (old_keys[order][where] == new_keys) if len(order) else \
        np.zeros(len(new_keys), bool)
    out = np.full(len(new_keys), fill, dtype=values.dtype)
    out[found] = values[order[where[found]]]
    return out


def _replace_rows(matrix: Any, codes: np.ndarray,
                  rows: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """``matrix`` (CSR) with rows ``codes`` replaced by the given (columns, values).

    The untouched stretches between replaced rows are copied as whole slices, so
    rewriting one user of a large matrix costs a memory copy, not a pass of
    per-entry masks (the service does this on every rating).
    """
    csr = matrix.tocsr()
    counts = np.diff(csr.indptr)
    index_parts, data_parts = [], []
    done = 0
    for position in np.argsort(codes, kind="stable"):
        code = int(codes[position])
        columns, values = rows[position]
        order = np.argsort(columns, kind="stable")
        index_parts += [csr.indices[done:csr.indptr[code]],
                        np.asarray(columns, dtype=csr.indices.dtype)[order]]
        data_parts += [csr.data[done:csr.indptr[code]],
                       np.asarray(values, dtype=csr.data.dtype)[order]]
        counts[code] = len(columns)
        done = csr.indptr[code + 1]
    index_parts.append(csr.indices[done:])
    data_parts.append(csr.data[done:])
    indptr = np.zeros(csr.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return type(csr)((np.concatenate(data_parts), np.concatenate(index_parts), indptr),
                     shape=csr.shape)


def _store_row(factors: np.ndarray | None, bias: np.ndarray | None, code: int,
               vector: UserVector) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Write one row's factors and bias (copying arrays that are read-only, once)."""
    if factors is not None and factors.shape[1]:
        if not factors.flags.writeable:
            factors = factors.copy()
        factors[code] = vector.factors
    if bias is not None:
        if not bias.flags.writeable:
            bias = bias.copy()
        bias[code] = vector.bias
    return factors, bias


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

    def _item_base(self) -> np.ndarray:
        """μ + b_i for every item (float32): the score of a user with nothing known."""
        base = np.full(self.n_items_, self.global_mean_, dtype=np.float32)
        if self.item_bias_ is not None:
            base += self.item_bias_
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

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        scores = np.repeat(self._item_base()[None, :], len(users), axis=0)
        known = users >= 0
        if self.user_bias_ is not None:
            scores[known] += self.user_bias_[users[known], None]
        if self._has_factors() and known.any():
            scores[known] += self.user_factors_[users[known]] @ self.item_factors_.T
        if self.item_bias_ is None and not known.all():
            # Without item biases the baseline is flat: rank unknown users by popularity.
            popularity = np.bincount(self.seen_.indices, minlength=self.n_items_)
            scores[~known] = popularity.astype(np.float32)
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
        for start in range(0, len(codes), _RECOMMEND_BATCH):
            batch = codes[start:start + _RECOMMEND_BATCH]
            scores = np.ascontiguousarray(unit[batch] @ unit.T, dtype=np.float32)
            indptr = np.arange(len(batch) + 1, dtype=np.int64)  # exclude the item itself
            idx, val = _top_n(scores, indptr, batch.astype(np.int32), width)
            out_idx[start:start + len(batch)] = idx
            out_val[start:start + len(batch)] = val
        return self._to_raw(out_idx, index), out_val

    def similar_items(self, items: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items most similar to each given item, by cosine of item factors.

        Returns
        -------
        ids, scores : ndarray of shape (len(items), n)
            The item itself is never in its own list.
        """
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
