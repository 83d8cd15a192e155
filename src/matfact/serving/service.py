"""The service's model side, without HTTP: answer queries and fold in logged ratings.

:class:`ModelService` holds one loaded model and its :class:`~matfact.serving.index.TopKIndex`
and turns requests into arrays and back. It is what :mod:`matfact.serving.app` calls,
and is tested on its own. Every method runs on one thread (the server's event loop),
so a query never sees a half-applied rating.

It keeps no rule of its own: ids are read by the model's
:class:`~matfact.data.interactions.IdIndex` (an id that cannot be one of the model's
is unknown, and ids go back in the model's type: ``"user": 196``, not ``"196"``),
scores, their clipping to the rating scale and the rating-scale check come from the
model, an unknown user (or a history with no known item) gets the model's one fallback
(:data:`~matfact.models.base.FALLBACK`, the most popular items), and every list says
what its scores are (``"score_kind"``: ``"rating"``, ``"ranking"`` or
``"popularity"``; ``"fallback"``: ``"popularity"`` or null). A batch of
ratings is checked by the model (:meth:`~matfact.models.base.Recommender.apply_ratings`
with ``dry_run=True``) before it is logged, then applied by the same method.

Replaying the log never fails on a row: a batch the model refuses is checked
row by row (:func:`screen`), and each row the model cannot take is moved to the
log's quarantine table with its reason, so the service starts whatever the log
holds.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import gc
import hashlib
import logging
import os
import queue
import sys
import threading
import traceback
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matfact.exceptions import DataError, MatfactError, UnknownIdError
from matfact.models.base import FALLBACK, RatingBatch
from matfact.models.explain import because_list
from matfact.serving.index import TopKIndex
from matfact.serving.store import Rating, RatingStore, _reason

__all__ = ["ModelService", "MAX_N", "MAX_EXPLAIN", "screen"]

#: The longest list a request may ask for.
MAX_N = 1000
#: The most history items a request may ask to be listed per recommended item
#: (``explain=k``): a "because you rated ..." line, not a dump of the history.
MAX_EXPLAIN = 20
logger = logging.getLogger("matfact.serving")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _load_malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_malloc_trim = _load_malloc_trim()


def release_memory() -> None:
    """Collect cyclic garbage, then give the allocator's free pages back to the system.

    glibc keeps freed memory in its arenas (one per thread that allocated); a
    replaced model's arrays and index leave holes there that RSS goes on
    counting. ``malloc_trim(0)`` returns the free pages of every arena. A no-op
    beyond ``gc.collect()`` without glibc.
    """
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


class _Worker:
    """The one long-lived thread that runs the service's background work, in order.

    Warming the top-k lists of each new model (:meth:`ModelService.warm`) and the
    memory release after a replaced model is gone (:func:`release_memory`) run
    here: one thread, and so one allocator arena, for every model's warm-up
    rather than a new thread per hot swap, and a release that runs after the
    warm-up that may still hold the old model. Restarted after a fork, where the
    parent's thread does not exist.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue | None = None
        self._pid = -1

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, args=(self._queue,),
                                                name="matfact-serving-worker", daemon=True)
                self._thread.start()
                self._pid = os.getpid()
            self._queue.put((future, fn, args, kwargs))
        return future

    @staticmethod
    def _run(tasks: queue.SimpleQueue) -> None:
        while True:
            future, fn, args, kwargs = tasks.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                future.set_exception(exc)
                # Reported as a thread's uncaught exception would be: nobody may wait.
                print(f"Exception in thread {threading.current_thread().name}:",
                      file=sys.stderr)
                traceback.print_exception(exc)
            del future, fn, args, kwargs  # hold no model between tasks


_worker = _Worker()


def _released() -> None:
    """A service was let go: release its memory once it is really gone.

    Runs from the service's finalizer, before its model and index are freed;
    the worker (which needs the interpreter lock the freeing holds) runs the
    release after them.
    """
    _worker.submit(release_memory)


class ModelService:
    """A loaded model, its top-k index and what the service needs around them.

    Parameters
    ----------
    model : fitted matfact model
    version : str
        Shown in responses and metrics (``<sequence>-<sha256 prefix of the file>``).
    index : {"exact", "approximate", "auto"}, default="exact"
        How lists are searched (:class:`~matfact.serving.index.TopKIndex`); an
        approximate index is made ready here, before any request.
    max_kept : int, default=None
        Users whose lists are precomputed (see :class:`TopKIndex`).
    """

    def __init__(self, model: Any, version: str = "0", *, index: str = "exact",
                 max_kept: int | None = None) -> None:
        self.model = model
        self.version = version
        self.index = TopKIndex(model, index, max_kept)
        self.index.prepare()
        self.applied_seq = 0  # the last log entry folded into this model
        self.refused = 0  # logged rows this model could not take (moved to the quarantine)
        self._warming: concurrent.futures.Future | None = None
        self._stop: threading.Event | None = None
        self._explains: bool | None = None
        # After a hot swap, the replaced service's memory goes back to the system.
        weakref.finalize(self, _released).atexit = False

    @classmethod
    def from_file(cls, path: Any, sequence: int = 0, **options: Any) -> ModelService:
        """Load ``path`` (never unpickles; see :func:`matfact.load`); ``options`` as
        the constructor's."""
        from matfact.models.persistence import load_model

        path = Path(path)
        return cls(load_model(path), f"{sequence}-{_file_digest(path)}", **options)

    # ------------------------------------------------------------------ ids
    def user_code(self, raw: Any) -> int:
        """The model's code of a client's user id, or -1 (:meth:`IdIndex.code`)."""
        return self.model.user_index_.code(raw)

    def item_code(self, raw: Any) -> int:
        """The model's code of a client's item id, or -1 (:meth:`IdIndex.code`)."""
        return self.model.item_index_.code(raw)

    def user_out(self, raw: Any) -> Any:
        """A client's user id as answers give it: in the model's type when it can be one.

        ``"196"`` is the integer 196 for a model with integer ids; an id that cannot
        be one of the model's (``"abc"`` there) is echoed as it came.
        """
        return self.model.user_index_.coerce([raw])[0]

    def _items_out(self, codes: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
        ids = self.model.item_index_.ids[codes]
        out: dict[str, Any] = {"items": ids.tolist(),
                               "scores": [round(float(s), 6) for s in scores]}
        titles = self.model.item_titles_
        if titles is not None:
            out["titles"] = titles[codes].tolist()
        return out

    @property
    def explains(self) -> bool:
        """Whether the model explains its scores (``explain=k``; not ``Popularity``).

        The model's own answer, asked once: one explanation of its first user's score
        of its first item (under a millisecond), so the rule of which models have
        explanations stays in :mod:`matfact.models.explain`.
        """
        if self._explains is None:
            try:
                self.model.explain(self.model.user_index_.ids[0], self.model.item_index_.ids[0],
                                   n=1)
                self._explains = True
            except (MatfactError, IndexError):
                self._explains = False
        return self._explains

    # ------------------------------------------------------------------ queries
    def _because(self, explanations: Sequence[Any]) -> dict[str, Any]:
        """``because`` (one list per item) and ``because_exact`` of an answer's explanations.

        The list is :func:`~matfact.models.explain.because_list`'s, with the model's
        titles; ``because_exact`` says which are exact decompositions and which the
        model could only approximate (BPR, ranking-loss HybridMF).
        """
        titles = self.model.item_titles_
        return {"because": [because_list(e, titles, index=self.model.item_index_)
                            for e in explanations],
                "because_exact": [bool(e.exact) for e in explanations]}

    def recommend(self, user: Any, n: int, exclude_seen: bool = True,
                  explain: int | None = None) -> dict[str, Any]:
        """The top ``n`` of a user; an unknown or unplaced user gets the model's fallback.

        A known user's list comes from the top-k index (the model's ranking scores),
        its scores clipped as the model reports them (:meth:`clip_scores`); an unknown
        user's from the model's own fallback (``recommend_codes`` of -1), so the
        library, the CLI and the service give the same list.

        With ``explain=k``, the answer also holds ``because``: for each listed item,
        the ``k`` history items that contribute most to its score
        (:meth:`~matfact.models.base.Recommender.explain` of exactly the listed items,
        with the history the model holds now, live ratings included), and
        ``because_exact``; both are null for the fallback, which no history explains.
        The model is read on the service's one thread, as the list is, so the
        explanations are of the model that ranked it.
        """
        if explain is not None:
            explain = self.explain_for(explain)
        code = self.user_code(user)
        codes, scores = self.index.recommend(code, n, exclude_seen) if code >= 0 else ((), ())
        # A known user whose list is flat may be one the model cannot place (unplaced:
        # e.g. their only ratings are of items new in the same batch): the fallback too.
        if code < 0 or (len(scores) > 1 and scores[0] == scores[-1]
                        and self.model.unplaced(np.array([code]))[0]):
            codes, scores = self.model.recommend_codes(np.array([code]), n,
                                                       exclude_seen=exclude_seen)
            keep = codes[0] >= 0
            return {"user": self.user_out(user), **self._items_out(codes[0][keep],
                                                                   scores[0][keep]),
                    **({} if explain is None else {"because": None, "because_exact": None}),
                    "fallback": FALLBACK, "score_kind": FALLBACK,
                    "model_version": self.version}
        # A copy: the index keeps its lists, and clipping works in place.
        scores = self.model.clip_scores(np.array(scores, dtype=np.float32))
        out = {"user": self.user_out(user), **self._items_out(codes, scores)}
        if explain is not None:
            # Exactly the listed items, for the user as the model holds them now.
            explained = self.model.explain(self.model.user_index_.ids[code],
                                           self.model.item_index_.ids[codes],
                                           n=explain) if len(codes) else []
            out.update(self._because(explained))
        return {**out, "fallback": None, "score_kind": self.model.score_kind,
                "model_version": self.version}

    def similar(self, item: Any, n: int) -> dict[str, Any]:
        code = self.item_code(item)
        if code < 0:
            raise UnknownIdError("item", [item])
        ids, scores = self.model.similar_items(self.model.item_index_.ids[code:code + 1], n=n,
                                               approximate=self.index.approximate_similar)
        ids, scores = ids[0], scores[0]
        keep = ~np.isnan(scores)
        codes = self.model.item_index_.get_indexer(ids[keep])  # back to codes, for titles
        return {"item": self.model.item_index_.ids[code:code + 1].tolist()[0],
                **self._items_out(codes, scores[keep]), "score_kind": "similarity",
                "model_version": self.version}

    def predict(self, users: Sequence[Any], items: Sequence[Any]) -> dict[str, Any]:
        if len(users) != len(items):
            raise DataError(f"got {len(users)} users but {len(items)} items")
        user_codes = self.model.user_index_.get_indexer(list(users))
        item_codes = self.model.item_index_.get_indexer(list(items))
        scores = self.model.score_pairs(user_codes, item_codes)
        fallback = (user_codes < 0) | (item_codes < 0)
        return {"predictions": [round(float(s), 6) for s in scores],
                "fallback": fallback.tolist(), "score_kind": self.model.score_kind,
                "model_version": self.version}

    def recommend_for_history(self, items: Sequence[Any], ratings: Sequence[float] | None,
                              n: int, explain: int | None = None) -> dict[str, Any]:
        """The top ``n`` for an anonymous history (folded in; nothing is stored).

        With ``explain=k``, ``because`` lists for each item the ``k`` items of this
        history that contribute most to its score (null for the fallback ranking of
        a history with no known item), as :meth:`recommend` does.
        """
        if explain is not None:
            explain = self.explain_for(explain)
        codes = self.model.item_index_.get_indexer(list(items)) if len(items) else \
            np.zeros(0, np.int64)
        # The model checks the history (values, scale) as its fold_in always does, and
        # answers a history with no known item by its fallback, as for an unknown user.
        answer = self.model.recommend_for_history(list(items), ratings, n,
                                                  return_fallback=True, explain=explain,
                                                  approximate=self.index.approximate)
        ids, scores, fallback = answer[:3]
        keep = ~np.isnan(scores)
        best = self.model.item_index_.get_indexer(ids[keep])
        unknown = [raw for raw, code in zip(items, codes.tolist(), strict=True) if code < 0]
        out = {**self._items_out(best, scores[keep]), "used": int((codes >= 0).sum()),
               "unknown_items": unknown}
        if explain is not None:
            if answer[3] is None:
                out.update(because=None, because_exact=None)
            else:
                # The model explains its listed items; matched by id to the kept ones.
                by_item = {e.item: e for e in answer[3]}
                out.update(self._because([by_item[raw] for raw in
                                          self.model.item_index_.ids[best].tolist()]))
        return {**out, "fallback": FALLBACK if fallback else None,
                "score_kind": FALLBACK if fallback else self.model.score_kind,
                "model_version": self.version}

    # ------------------------------------------------------------------ live ratings
    def check_ratings(self, ratings: Sequence[Rating]) -> list[Rating]:
        """The batch as the model would accept it, or :class:`DataError`; nothing changes.

        Returns the ratings with ids in the model's types (``"42"`` → 42 for integer
        ids): what the log records, so a replay meets exactly what was accepted.
        """
        batch = self.model.apply_ratings(*_columns(ratings), dry_run=True)
        return _ratings(batch)

    def apply(self, ratings: Sequence[Rating]) -> dict[str, list]:
        """Fold logged ratings into the model (all or nothing; see ``apply_ratings``).

        New items are placed, then each user is recomputed from what the model
        had for them with these ratings on top (the latest rating of an item
        wins), so applying the same ratings twice changes nothing the second time.
        The background warm-up does not read the model while it changes
        (:attr:`TopKIndex.changing`).
        """
        with self.index.changing:
            batch = self.model.apply_ratings(*_columns(ratings))
            self.index.invalidate(self.model.user_index_.get_indexer(np.unique(batch.users)))
            if len(batch.new_items):
                self.index.refresh()
        if len(batch.new_items):
            self.warm()  # the lists were dropped: rank again (outside the lock it waits on)
        return {"new_users": batch.new_users.tolist(), "new_items": batch.new_items.tolist()}

    def warm(self, background: bool = True) -> None:
        """Rank the catalogue for every user ahead of requests (:meth:`TopKIndex.precompute`).

        In the background by default, on the service's one worker thread (see
        :class:`_Worker`): requests are served meanwhile, from the lists kept so
        far or computed on demand.
        """
        self.stop_warming()
        if not background:
            self.index.precompute()
            return
        self._stop = threading.Event()
        self._warming = _worker.submit(self.index.precompute, stop=self._stop)

    def stop_warming(self) -> None:
        """Stop a background warm-up and wait for it (at most one batch of users)."""
        stop, warming = self._stop, self._warming
        if stop is not None and warming is not None:
            stop.set()
            if not warming.cancel():  # started: let it see the stop
                concurrent.futures.wait([warming])
        self._stop = self._warming = None

    def replay(self, store: RatingStore) -> int:
        """Apply the logged ratings the model has not seen; return how many.

        Those after :attr:`applied_seq`, and after the position ``matfact retrain``
        recorded in the model file when the file was fitted from this same log
        (:meth:`~matfact.serving.store.RatingStore.logged_through`): a reload after a
        retrain replays only the ratings that came in since, not the whole log again.

        Never fails on a row: when the model refuses the batch, each row is checked
        on its own (``apply_ratings(..., dry_run=True)``), and the rows it cannot
        take (or that fail to apply even alone) are moved to the log's quarantine
        table with the reason (:meth:`~matfact.serving.store.RatingStore.quarantine`);
        the others are applied in log order. :attr:`refused` counts them.
        """
        self.applied_seq = max(self.applied_seq, store.logged_through(self.model))
        unreadable: list[tuple[int, str]] = []
        entries = list(store.entries(self.applied_seq, unreadable))
        applied, refused = self._apply_entries(entries)
        refused = unreadable + refused
        # The last row kept: the moved ones are gone from the log, and SQLite may give
        # their numbers (the largest) to the next ratings, which must not be skipped.
        gone = {seq for seq, _ in refused}
        last = max([self.applied_seq, *(seq for seq, _ in entries if seq not in gone)])
        if refused:
            self.refused += len(refused)
            logger.warning("%d logged ratings cannot be applied to this model; moving them "
                           "to the quarantine (first: seq %d, %s)", len(refused),
                           *refused[0])
            try:
                store.quarantine(refused)
            except Exception:  # noqa: BLE001 - skipped this time; a start must not fail
                logger.exception("could not move %d rows to the quarantine; they are "
                                 "skipped", len(refused))
        self.applied_seq = last
        return applied

    def _apply_entries(self, entries: list[tuple[int, Rating]]
                       ) -> tuple[int, list[tuple[int, str]]]:
        """Apply ``entries`` in log order; ``(how many applied, [(seq, reason), ...] refused)``."""
        if not entries:
            return 0, []
        try:
            self.apply([rating for _, rating in entries])
            return len(entries), []
        except Exception:  # noqa: BLE001 - one of the rows: find which below
            pass
        accepted, refused = screen(self.model, entries)
        return self._apply_halves(accepted, refused), refused

    def _apply_halves(self, entries: list[tuple[int, Rating]],
                      refused: list[tuple[int, str]]) -> int:
        """Apply ``entries``, halving a chunk that fails until the failing rows are found.

        Each call of :meth:`apply` is all or nothing, so a failed chunk left the
        model as it was; a single row that fails is refused with its reason.
        """
        if not entries:
            return 0
        try:
            self.apply([rating for _, rating in entries])
            return len(entries)
        except Exception as exc:  # noqa: BLE001 - a model that cannot take a row
            if len(entries) == 1:
                refused.append((entries[0][0], _reason(exc)))
                return 0
        middle = len(entries) // 2
        return (self._apply_halves(entries[:middle], refused)
                + self._apply_halves(entries[middle:], refused))

    def n_for(self, n: int) -> int:
        """``n`` checked against :data:`MAX_N`."""
        if not 1 <= n <= MAX_N:
            raise DataError(f"n must be between 1 and {MAX_N}, got {n}")
        return n

    def explain_for(self, explain: Any) -> int:
        """``explain`` checked: an integer from 1 to :data:`MAX_EXPLAIN`."""
        if isinstance(explain, bool) or not isinstance(explain, (int, np.integer)) \
                or not 1 <= explain <= MAX_EXPLAIN:
            raise DataError(f"explain must be an integer between 1 and {MAX_EXPLAIN} "
                            f"(history items listed per recommendation), got {explain!r}")
        return int(explain)


def screen(model: Any, entries: Sequence[tuple[int, Rating]]
           ) -> tuple[list[tuple[int, Rating]], list[tuple[int, str]]]:
    """Split logged ``(seq, rating)`` entries into those ``model`` can take and the others.

    The model decides, through ``apply_ratings(..., dry_run=True)``: the whole batch
    first, and row by row only when the batch is refused. Returns the accepted
    entries (ratings as the model reads them: ``"42"`` → 42 for integer ids) and
    ``(seq, reason)`` of each refused row, both in log order. Nothing changes.
    """
    if not entries:
        return [], []
    try:
        batch = model.apply_ratings(*_columns([r for _, r in entries]), dry_run=True)
        return list(zip([seq for seq, _ in entries], _ratings(batch), strict=True)), []
    except Exception:  # noqa: BLE001 - one of the rows: find which below
        pass
    accepted, refused = [], []
    for seq, rating in entries:
        try:
            batch = model.apply_ratings(*_columns([rating]), dry_run=True)
        except Exception as exc:  # noqa: BLE001 - this row is refused, with the reason
            refused.append((seq, _reason(exc)))
            continue
        accepted.append((seq, _ratings(batch)[0]))
    return accepted, refused


def _columns(ratings: Sequence[Rating]) -> tuple[list, list, list, list]:
    """Users, items, ratings and times (None where a rating has none) of a batch."""
    times = [r.timestamp for r in ratings]
    return ([r.user for r in ratings], [r.item for r in ratings],
            [r.rating for r in ratings], times)


def _ratings(batch: RatingBatch) -> list[Rating]:
    times = [None] * len(batch.users) if batch.times is None else \
        [None if t != t else t for t in batch.times.tolist()]  # NaN: no time given
    return [Rating(u, i, r, t) for u, i, r, t in zip(
        batch.users.tolist(), batch.items.tolist(), batch.ratings.tolist(), times, strict=True)]
