"""Changing a fitted model: new ratings, new users, new items, all or nothing.

:class:`ModelUpdates` is the half of :class:`~matfact.models.base.Recommender`
that changes a fitted model in place; the other half (fit, scoring, ranking)
reads it. Every change goes through one validation and one transaction:

- :meth:`ModelUpdates.apply_ratings` takes (user, item, rating[, time])
  triples, checks all of them first (ids against the model's id index, values
  against the rating scale) and then places new items, then recomputes every
  user it touched; ``dry_run=True`` stops after the checks.
- :meth:`~ModelUpdates.update_users` and :meth:`~ModelUpdates.add_items` are the
  two steps it is made of, public for callers that hold whole histories.
- Each runs inside :meth:`ModelUpdates._transaction`: if any step fails, the
  model is restored to exactly what it was.

``partial_fit`` (the models that refine their factors with more epochs) merges
through :meth:`ModelUpdates._merge_new` inside the same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import numpy as np

from matfact._linalg import forget_gram
from matfact._threads import single_thread
from matfact.data.interactions import MAX_TIMESTAMP, IdIndex, Interactions, off_scale
from matfact.exceptions import DataError, ParameterError

__all__ = ["ModelUpdates", "RatingBatch", "UserVector", "all_or_nothing"]



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


class RatingBatch(NamedTuple):
    """New ratings as a model accepted them (:meth:`ModelUpdates.apply_ratings`).

    Attributes
    ----------
    users, items : ndarray of shape (n,)
        Raw ids in the model's id types (``"42"`` became 42 for integer ids).
    ratings : ndarray of shape (n,), float64
    times : ndarray of shape (n,), float64, or None
    new_users, new_items : ndarray
        The ids the model did not know before, in the order they are added.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    times: np.ndarray | None
    new_users: np.ndarray
    new_items: np.ndarray


def _as_id_array(ids: Any) -> np.ndarray:
    array = np.asarray(ids)
    if isinstance(ids, (list, tuple)) and array.dtype.kind != "O" and any(
            isinstance(x, (bool, np.bool_)) for x in ids):
        # np.asarray reads [5, True] as [5, 1] and ["a", True] as ["a", "True"]: keep the
        # booleans, so they are refused.
        array = np.empty(len(ids), dtype=object)
        array[:] = list(ids)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ParameterError(f"ids must be a scalar or a 1-D sequence, got shape {array.shape}")
    return array

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
        forget_gram(factors)  # a Gram kept for fold-in (ImplicitALS) is now stale
    if bias is not None:
        if not bias.flags.writeable:
            bias = bias.copy()
        bias[code] = vector.bias
    return factors, bias


def _as_number_array(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numbers") from None
    return array


def _new_in_order(ids: np.ndarray, index: IdIndex) -> np.ndarray:
    """The distinct ids of ``ids`` not in ``index``, in order of first appearance."""
    unknown = ids[index.get_indexer(ids) < 0]
    _, first = np.unique(unknown, return_index=True)
    return unknown[np.sort(first)]


def all_or_nothing(method: Any) -> Any:
    """Run a model-changing method in :meth:`ModelUpdates._transaction` (whole arrays kept)."""
    import functools

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._transaction():
            out = method(self, *args, **kwargs)
        # Every item may have moved: an approximate index of the old vectors would
        # miss them. Dropped (its settings kept); the next approximate search rebuilds.
        from matfact.models.ann import forget_model_index

        forget_model_index(self)
        return out

    return wrapper


class ModelUpdates:
    """Changing a fitted model in place; mixed into :class:`~matfact.models.base.Recommender`."""

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
        if not self.is_implicit_:
            self._check_values(np.asarray(new.values, dtype=np.float64), "new ratings")
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
            rating_scale=self._scale(),
        )
        self.user_index_, self.item_index_ = user_index, item_index
        self.seen_ = merged.to_scipy().copy()
        if self.item_titles_ is not None and len(item_index) > old_items:
            extra = item_index.ids[old_items:].astype(str)
            self.item_titles_ = np.concatenate([self.item_titles_.astype(str), extra])
        return merged, old_users, old_items

    # ------------------------------------------------------------------ changing the model
    #: Per-user / per-item state arrays (first axis: users / items) that grow with new ids.
    _user_arrays: ClassVar[tuple[str, ...]] = ()
    _item_arrays: ClassVar[tuple[str, ...]] = ()

    def apply_ratings(self, users: Any, items: Any, ratings: Any = None, times: Any = None, *,
                      dry_run: bool = False) -> RatingBatch:
        """Fold new (user, item, rating[, time]) triples into the model, all or nothing.

        Everything is checked before anything changes: each id is read in the
        type of the model's ids (:meth:`~matfact.data.interactions.IdIndex.parse`;
        an id that cannot be one is an error), every rating must be finite and
        within the training ``rating_scale_`` (> 0 for implicit feedback), and
        times finite Unix seconds. Then new items are placed from the ratings of
        users the model knows (:meth:`add_items`), and every user in the batch is
        recomputed from their whole history with these ratings on top
        (:meth:`update_users`); the latest rating of a pair wins, so applying
        the same batch twice changes nothing the second time. If any step
        fails, the model is left exactly as it was.

        Parameters
        ----------
        users, items : array-like of shape (n,)
            Raw ids, paired element-wise; new ids are added.
        ratings : array-like of shape (n,), default=None
            The ratings (weights for implicit feedback, default 1).
        times : array-like of shape (n,), default=None
            When each rating was given (Unix seconds; None or NaN where not
            known). Checked and returned so a log can keep them; the fold-in
            itself does not use them.
        dry_run : bool, default=False
            Only check: return what would be applied and change nothing.

        Returns
        -------
        RatingBatch
            The triples in the model's id types, and the new users and items.

        Raises
        ------
        DataError
            Naming the first problem found; the model is unchanged.
        """
        self._check_fitted()
        users = self.user_index_.parse(_as_id_array(users), "user")
        items = self.item_index_.parse(_as_id_array(items), "item")
        if len(users) != len(items):
            raise DataError(f"got {len(users)} users but {len(items)} items")
        if ratings is None:
            self._check_can_skip_ratings("ratings")
            values = np.ones(len(users), dtype=np.float64)
        else:
            values = self._check_values(_as_number_array(ratings, "ratings"), "ratings")
            if len(values) != len(users):
                raise DataError(f"got {len(users)} users but {len(values)} ratings")
        stamps = None
        if times is not None:
            if isinstance(times, (list, tuple)):
                times = [np.nan if t is None else t for t in times]
            stamps = _as_number_array(times, "times")
            if len(stamps) != len(users):
                raise DataError(f"got {len(users)} users but {len(stamps)} times")
            given = ~np.isnan(stamps)
            bad = given & (~np.isfinite(stamps) | (np.abs(stamps) > MAX_TIMESTAMP))
            if bad.any():
                raise DataError(f"times must be finite Unix seconds within ±{MAX_TIMESTAMP}; "
                                f"got {stamps[bad][:5].tolist()}")
        batch = RatingBatch(users, items, values, stamps,
                            _new_in_order(users, self.user_index_),
                            _new_in_order(items, self.item_index_))
        if dry_run or len(users) == 0:
            return batch
        touched = self.user_index_.get_indexer(np.unique(users))
        with self._transaction(user_rows=touched[touched >= 0]):
            self._apply_batch(batch)
        return batch

    def _apply_batch(self, batch: RatingBatch) -> None:
        latest: dict[Any, dict[Any, float]] = {}
        for user, item, value in zip(batch.users.tolist(), batch.items.tolist(),
                                     batch.ratings.tolist(), strict=True):
            latest.setdefault(user, {})[item] = value
        if len(batch.new_items):
            # New items are placed from the ratings of the users the model knows.
            known_users = {user for user in latest if self.user_index_.code(user) >= 0}
            columns = []
            for item in batch.new_items.tolist():
                raters = [user for user in latest if item in latest[user] and user in known_users]
                codes = self.user_index_.get_indexer(np.array(raters, dtype=batch.users.dtype)) \
                    if raters else np.zeros(0, np.int64)
                columns.append((codes.astype(np.int64),
                                np.array([latest[u][item] for u in raters], dtype=np.float64)))
            self._add_item_rows(batch.new_items, columns)
        seen = self.seen_
        raw_users = np.array(list(latest), dtype=batch.users.dtype)
        codes = self.user_index_.get_indexer(raw_users)
        rows = []
        for user, code in zip(latest, codes.tolist(), strict=True):
            merged: dict[int, float] = {}
            if code >= 0:
                start, end = seen.indptr[code], seen.indptr[code + 1]
                merged.update(zip(seen.indices[start:end].tolist(),
                                  seen.data[start:end].tolist(), strict=True))
            new = latest[user]
            new_codes = self.item_index_.get_indexer(np.array(list(new), dtype=batch.items.dtype))
            merged.update(zip(new_codes.tolist(), new.values(), strict=True))
            rows.append((np.fromiter(merged, dtype=np.int64, count=len(merged)),
                         np.fromiter(merged.values(), dtype=np.float64, count=len(merged))))
        self._update_user_rows(raw_users, rows)

    def update_users(self, users: Any, histories: Any) -> ModelUpdates:
        """(Re)compute users' vectors from their whole histories; unseen ids are added.

        Each user is placed by the model's fold-in (the method of
        :meth:`fold_in`) with the items fixed, and their history replaces
        what the model had for them, so ``recommend(..., exclude_seen=True)``
        excludes exactly the new history. Items the model does not know are
        ignored (add them with :meth:`add_items`). Nothing else changes, and a
        history that fails the checks changes nothing (see :meth:`apply_ratings`,
        which adds new ratings on top of what the model has).

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
        users = self.user_index_.parse(_as_id_array(users), "user")
        rows = self._parse_histories(users, histories, "users")
        touched = self.user_index_.get_indexer(users)
        with self._transaction(user_rows=touched[touched >= 0]):
            self._update_user_rows(users, rows)
        return self

    def _update_user_rows(self, users: np.ndarray,
                          rows: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Users ``users`` (canonical raw ids) get the histories ``rows`` (item codes, values)."""
        self._add_rows("user", users)
        codes = self.user_index_.get_indexer(users)
        with single_thread():
            for code, (items, values) in zip(codes, rows, strict=True):
                self._set_user(int(code), self._fold_in(items, values))
        self._set_seen(_replace_rows(self.seen_, codes, rows))
        self._after_user_update(codes)

    def add_items(self, items: Any, histories: Any = None) -> ModelUpdates:
        """Add items the model has never seen, placed from their first interactions.

        Each item is solved with the users fixed (the mirror of :meth:`fold_in`:
        a ridge solve on the user vectors, or the model's own half-step where
        its objective is symmetric). An item with no history starts at the
        model's baseline (zero factors and bias) until the next fit. Nothing
        changes if any item or history fails the checks.

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
        items = self.item_index_.parse(_as_id_array(items), "item")
        known = self.item_index_.get_indexer(items) >= 0
        if known.any():
            raise DataError(f"items {items[known][:10].tolist()} are already in the model; "
                            f"use update_users or partial_fit to add their ratings")
        if histories is None:
            histories = [((), ())] * len(items)
        columns = self._parse_histories(items, histories, "items")
        with self._transaction(user_rows=np.zeros(0, np.int64)):
            self._add_item_rows(items, columns)
        return self

    def _add_item_rows(self, items: np.ndarray,
                       columns: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """New items ``items`` (canonical raw ids) placed from ``columns`` (user codes, values)."""
        self._add_rows("item", items)
        codes = self.item_index_.get_indexer(items)
        with single_thread():
            for code, (users, values) in zip(codes, columns, strict=True):
                self._set_item(int(code), self._fold_in_item(users, values))
        by_item = _replace_rows(self.seen_.T.tocsr(), codes, columns)
        self._set_seen(by_item.T.tocsr())

    @contextlib.contextmanager
    def _transaction(self, user_rows: np.ndarray | None = None) -> Iterator[None]:
        """Restore the model exactly if the block raises.

        Attributes that are replaced come back by reference. Arrays changed in
        place come back by content: with ``user_rows``, only those rows of the
        per-user arrays (what a fold-in writes; new ids grow arrays into new
        objects); without, a copy of every writeable array (``partial_fit``'s
        epochs update factors in place).
        """
        state = dict(vars(self))
        saved: dict[str, Any] = {}
        for name, value in state.items():
            if not isinstance(value, np.ndarray) or not value.flags.writeable:
                continue  # read-only arrays are copied before any write
            if user_rows is None:
                saved[name] = value.copy()
            elif name in self._user_state() and len(user_rows):
                saved[name] = value[user_rows].copy()
        try:
            yield
        except BaseException:
            vars(self).clear()
            vars(self).update(state)
            for name, kept in saved.items():
                if user_rows is None:
                    np.copyto(state[name], kept)
                else:
                    state[name][user_rows] = kept
                forget_gram(state[name])  # written in place again: a kept Gram may be stale
            raise

    def _user_state(self) -> tuple[str, ...]:
        return ("user_factors_", "user_bias_", *self._user_arrays)

    def _check_can_skip_ratings(self, what: str) -> None:
        if not self.is_implicit_ and self._needs_ratings:
            raise DataError(f"{type(self).__name__} was fitted on ratings; pass {what}")

    def _scale(self) -> tuple[float, ...] | None:
        """The training scale as ``(min, max)`` or ``(min, max, step)``; None without one."""
        scale = getattr(self, "rating_scale_", None)
        if scale is None:
            return None
        step = getattr(self, "rating_step_", None)
        return (*map(float, scale), *(() if step is None else (float(step),)))

    def _check_values(self, values: np.ndarray, what: str) -> np.ndarray:
        """The one rule for new values: finite, on the training scale (> 0 if implicit).

        On the scale is :func:`~matfact.data.interactions.off_scale`'s rule, the one
        :class:`~matfact.data.Interactions` applies to data: within ``rating_scale_``
        and, when the model keeps a ``rating_step_``, on its steps. ``apply_ratings``,
        ``partial_fit``, ``fold_in``, ``recommend_for_history`` and the service all
        check through here.
        """
        if not np.isfinite(values).all():
            raise DataError(f"NaN or infinite values in the {what}")
        if not len(values):
            return values
        scale = self._scale()
        refused = None if scale is None else off_scale(values, scale)
        if refused is not None:
            bad, problem = refused
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"ratings must lie on the model's scale: {what} hold "
                            f"{float(values[first]):g} (position {first}), {problem}; "
                            f"got values in [{values.min():g}, {values.max():g}]")
        if self.is_implicit_ and values.min() <= 0:
            raise DataError(f"implicit feedback must be > 0, got {values.min():g} in the {what}")
        return values

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
            rows.append((codes.astype(np.int64), values))
        return rows

    def _other_history(self, users: Any, ratings: Any,
                       index: IdIndex) -> tuple[np.ndarray, np.ndarray]:
        # An item's first interactions, read like a user's history with the roles swapped.
        users = _as_id_array(users)
        if ratings is None:
            self._check_can_skip_ratings("ratings with the users")
            values = np.ones(len(users))
        else:
            values = _as_number_array(ratings, "ratings")
            if len(values) != len(users):
                raise DataError(f"got {len(users)} users but {len(values)} ratings")
            self._check_values(values, "ratings of the history")
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

