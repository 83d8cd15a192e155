"""Exact top-k for the service: the model's scores of one user, seen items masked.

Scores come from the model's public interface
(:meth:`~matfact.models.base.Recommender.score_users`, the formula ``recommend``
uses), read at each call, so a user just updated by
:meth:`~matfact.models.base.Recommender.apply_ratings` is scored with the new
vector; ranking is the one top-n of :mod:`matfact.models.ranking`.

:meth:`TopKIndex.precompute` ranks the catalogue for every known user in
batches (one matrix product per batch instead of one matrix–vector product per
request, so the item matrix is read once per batch) and keeps each user's top
:data:`DEPTH`; a request for ``n ≤ DEPTH`` with seen items excluded is then a
slice. Updating a user drops their list (it is recomputed on demand), adding
items drops all of them. The search is exact: a list is only kept when no tie
crosses its cut-off, so a cached answer is always the one a full sort gives.

Catalogues of millions (issue 21): ``mode="approximate"`` takes each on-demand
list from the model's approximate index (:mod:`matfact.models.ann`: exact scores,
exact exclusions, recall calibrated at build time), and ``"auto"`` chooses it from
:data:`AUTO_APPROXIMATE_ITEMS` items up, where one exact request stops meeting the
latency goal. Kept lists are bounded (``max_kept`` users, the most active first):
they only save time, never decide an answer.

The warm-up runs on a thread of its own while ratings change the model on the
event loop: each batch is scored under :attr:`TopKIndex.changing`, the lock the
service holds while it changes the model, so the warm-up never reads arrays
caught half-way through a change (new items growing the factors and the seen
matrix; a ``ValueError: operands could not be broadcast`` once), and a batch
that starts after the item side changed stops the run.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from matfact.exceptions import ParameterError
from matfact.models.base import UserVector
from matfact.models.ranking import top_n, top_n_rows

__all__ = ["TopKIndex", "DEPTH", "INDEX_MODES", "AUTO_APPROXIMATE_ITEMS", "DEFAULT_MAX_KEPT",
           "resolve_mode"]

#: How many items :meth:`TopKIndex.precompute` keeps per user.
DEPTH = 100
#: ``--index``: score every item, search the approximate index, or choose by size.
INDEX_MODES = ("exact", "approximate", "auto")
#: From this many items on, ``"auto"`` searches the approximate index: one exact
#: request reads every item vector (200,000 × 64 float32 = 51 MB, about 2 ms here),
#: past the 1 ms goal, while the index answers in a fraction of a millisecond at any
#: size (docs/serving.md, "Exact or approximate").
AUTO_APPROXIMATE_ITEMS = 200_000
#: Users whose lists the exact mode keeps by default, the most active first (a list is
#: ``DEPTH`` × 12 bytes plus a dictionary entry: about 1.3 KB, so 130 MB at most).
DEFAULT_MAX_KEPT = 100_000
#: Scores held at once while lists are precomputed (a batch of users × the catalogue).
_SCORE_BUDGET = 64 * 2**20


def resolve_mode(model: Any, mode: str) -> str:
    """``"exact"`` or ``"approximate"`` for ``mode`` (one of :data:`INDEX_MODES`).

    ``"auto"`` is approximate for models with item vectors from
    :data:`AUTO_APPROXIMATE_ITEMS` items on when faiss is installed; ``"approximate"``
    for a model that cannot have an index is an error.
    """
    if mode not in INDEX_MODES:
        raise ParameterError(f"index must be one of {INDEX_MODES}, got {mode!r}")
    if mode == "exact":
        return mode
    side = model.item_side(np.zeros(0, np.int64))
    searchable = side is not None and side.factors is not None and side.factors.shape[1] > 0
    if mode == "auto":
        if not searchable or model.n_items_ < AUTO_APPROXIMATE_ITEMS:
            return "exact"
        try:
            import faiss  # noqa: F401
        except ImportError:
            return "exact"
        return "approximate"
    if not searchable:
        raise ParameterError(f"{type(model).__name__} has no item vectors to index; serve it "
                             f"with --index exact")
    return mode


def _batch_top(scores: np.ndarray, seen_indptr: np.ndarray, seen_indices: np.ndarray,
               depth: int) -> list:
    """Per row, ``(codes, scores)`` of the top ``depth`` unseen items, or None.

    A row whose ``depth``-th score is tied with the next one (or that has fewer
    than ``depth`` eligible items) gets ``None``: a kept list must be exactly
    what a full ranking gives for every ``n ≤ depth``, so that row is ranked on
    demand.
    """
    if depth <= 0:
        return [None] * len(scores)
    idx, val = top_n_rows(scores, depth + 1, seen_indptr, seen_indices)
    out = []
    for codes, values in zip(idx, val, strict=True):
        exact = codes[depth - 1] >= 0 and np.isfinite(values[depth - 1]) and (
            codes[depth] < 0 or values[depth] < values[depth - 1])
        out.append((codes[:depth].copy(), values[:depth].copy()) if exact else None)
    return out


class TopKIndex:
    """Score and rank the catalogue for one user at a time.

    Parameters
    ----------
    model : fitted matfact model
    mode : {"exact", "approximate", "auto"}, default="exact"
        How a list not kept is found (see :func:`resolve_mode`).
    max_kept : int, default=None
        Users whose lists :meth:`precompute` keeps, the most active first; None:
        :data:`DEFAULT_MAX_KEPT` in exact mode, none in approximate mode (a search is
        already fast there).
    """

    def __init__(self, model: Any, mode: str = "exact", max_kept: int | None = None) -> None:
        self.model = model
        self.mode = resolve_mode(model, mode)
        if max_kept is not None and (not isinstance(max_kept, (int, np.integer))
                                     or isinstance(max_kept, bool) or max_kept < 0):
            raise ParameterError(f"max_kept must be a non-negative integer, got {max_kept!r}")
        self.max_kept = (max_kept if max_kept is not None else
                         0 if self.mode == "approximate" else DEFAULT_MAX_KEPT)
        self._lock = threading.Lock()
        #: Held by whoever changes the model (:meth:`ModelService.apply`) and by
        #: :meth:`precompute` while it scores a batch: a batch never sees half a change.
        self.changing = threading.Lock()
        self._generation = 0
        self._stamps = np.zeros(model.n_users_, dtype=np.int64)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the item side (after items were added or the model replaced)."""
        model = self.model
        with self._lock:
            # Every kept list may now miss a new item: start over.
            self._generation += 1
            self._cache.clear()
        self.popularity = model.item_popularity()

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    @property
    def n_kept(self) -> int:
        """How many users' lists are kept (see :meth:`precompute`)."""
        return len(self._cache)

    def user_scores(self, code: int) -> np.ndarray:
        """Scores of every item for the known user ``code`` (the model's ranking scores)."""
        return self.model.score_users(np.array([code]))[0]

    def vector_scores(self, vector: UserVector) -> np.ndarray:
        """Scores of every item for a folded-in user."""
        return self.model.score_vector(vector)

    def seen(self, code: int) -> np.ndarray:
        return self.model.history(code)[0]

    @property
    def approximate(self) -> bool:
        """Whether on-demand lists come from the model's approximate index."""
        return self.mode == "approximate"

    @property
    def approximate_similar(self) -> bool:
        """Whether similar items come from the model's ``"similar"`` index: in approximate
        mode, when the model file holds one (``model.build_index("similar")`` before
        saving). Built on a request it would stall that request for the whole build
        (tens of seconds at 10⁶ items); without it, similar items are exact."""
        return self.approximate and getattr(self.model, "ann_similar_centroids_", None) \
            is not None

    def prepare(self) -> None:
        """Have the approximate index ready (built, or rebuilt from the model file's
        arrays, with every item in it) before the first request needs it."""
        if self.approximate:
            from matfact.models.ann import model_index

            model_index(self.model, "recommend")

    def describe(self) -> dict[str, Any]:
        """The mode and, when approximate, the index's settings (for ``/health``)."""
        out: dict[str, Any] = {"mode": self.mode, "max_kept": self.max_kept}
        settings = getattr(self.model, "ann_settings_", None) if self.approximate else None
        if settings:
            out.update(lists=settings.get("n_lists"), probe=settings.get("n_probe"),
                       recall=settings.get("measured_recall"))
        return out

    def recommend(self, code: int, n: int, exclude_seen: bool = True) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """``(item codes, scores)`` of the top ``n`` for the known user ``code``."""
        if exclude_seen and n <= DEPTH:
            kept = self._cache.get(code)
            if kept is not None:
                return kept[0][:n], kept[1][:n]
        if self.approximate:
            from matfact.models.ann import approximate_recommend

            codes, scores = approximate_recommend(self.model, np.array([code]), n, exclude_seen)
            keep = codes[0] >= 0
            return codes[0][keep], scores[0][keep]
        return top_n(self.user_scores(code), n, self.seen(code) if exclude_seen else None)

    # ------------------------------------------------------------------ kept lists
    def invalidate(self, codes: Any) -> None:
        """Forget the kept lists of users ``codes`` (their vectors or histories changed)."""
        codes = np.asarray(codes, dtype=np.int64)
        with self._lock:
            if len(codes) and codes.max() >= len(self._stamps):
                grown = np.zeros(int(codes.max()) + 1, dtype=np.int64)
                grown[:len(self._stamps)] = self._stamps
                self._stamps = grown
            self._stamps[codes] += 1
            for code in codes.tolist():
                self._cache.pop(code, None)

    def precompute(self, batch: int = 512, stop: threading.Event | None = None) -> int:
        """Rank the catalogue for the :attr:`max_kept` most active users and keep each
        top :data:`DEPTH` (batches shrink so that their scores stay within 64 MB).

        Safe to run in a thread while the index serves: a user updated meanwhile
        keeps no stale list, and a change of the item side abandons the run.

        Returns
        -------
        int
            The number of lists kept.
        """
        model = self.model
        with self._lock:
            generation = self._generation
        n_items = self.n_items
        depth = min(DEPTH, n_items)
        kept = 0
        batch = max(1, min(batch, _SCORE_BUDGET // max(4 * n_items, 1)))
        activity = np.diff(model.seen_.indptr)
        order = np.argsort(-activity, kind="stable")[:min(self.max_kept, model.n_users_)]
        for start in range(0, len(order), batch):
            if stop is not None and stop.is_set():
                break
            with self.changing:
                # The model does not change while this block runs; a change made since
                # the run began (new items: a new generation) ends the run, and the
                # service starts another.
                with self._lock:
                    if generation != self._generation:
                        break
                if model.n_items_ != n_items:
                    break
                codes = np.sort(order[start:start + batch])
                with self._lock:
                    stamps = self._stamps[codes].copy() if codes[-1] < len(self._stamps) \
                        else None
                if stamps is None:
                    break
                scores = model.score_users(codes)
                seen = model.seen_[codes]
            if scores.shape[1] != n_items or seen.shape[1] != n_items:
                break
            lists = _batch_top(scores, seen.indptr, seen.indices, depth)
            with self._lock:
                if generation != self._generation:
                    break
                for row, code in enumerate(codes.tolist()):
                    if lists[row] is not None and self._stamps[code] == stamps[row]:
                        self._cache[code] = lists[row]
                        kept += 1
        return kept

    def popular(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The fallback for an unknown user: the ``n`` items most users interacted with."""
        return top_n(self.popularity, n)
