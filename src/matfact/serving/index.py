"""Exact top-k for the service: one matrix–vector product per user, seen items masked.

The item side (``μ + b_i`` and the item factors, float32, contiguous) is taken
from the model once and refreshed when items are added; the user side is read
from the model at each call, so a user just updated by
:meth:`~matfact.models.base.Recommender.update_users` is scored with the new
vector. Ranking is a partition of the scores followed by a sort of the top
``n`` only: O(n_items) per request.

:meth:`TopKIndex.precompute` ranks the catalogue for every known user in
batches (one matrix product per batch instead of one matrix–vector product per
request, so the item matrix is read once per batch) and keeps each user's top
:data:`DEPTH`; a request for ``n ≤ DEPTH`` with seen items excluded is then a
slice. Updating a user drops their list (it is recomputed on demand), adding
items drops all of them. The search is exact: a list is only kept when no tie
crosses its cut-off, so a cached answer is always the one a full sort gives.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from matfact.models.base import FactorModel, UserVector

__all__ = ["TopKIndex", "top_n", "DEPTH"]

#: How many items :meth:`TopKIndex.precompute` keeps per user.
DEPTH = 100


def top_n(scores: np.ndarray, n: int, excluded: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``n`` highest scores, best first, skipping ``excluded`` indices.

    Ties keep the lower index first (a stable sort on the candidates).
    """
    scores = np.asarray(scores, dtype=np.float32)
    if excluded is not None and len(excluded):
        scores = scores.copy()
        scores[excluded] = -np.inf
    available = len(scores) - (0 if excluded is None else len(np.unique(excluded)))
    n = max(0, min(n, available))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n < len(scores):
        # Everything tied with the n-th best is a candidate, so ties resolve by index.
        kth = -np.partition(-scores, n - 1)[n - 1]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(len(scores))
    # Sort the candidates by score, then by index, so equal scores rank the lower index first.
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:n]


def _batch_top(scores: np.ndarray, depth: int) -> list:
    """Per row, ``(codes, scores)`` of the top ``depth`` as :func:`top_n` orders them.

    A row whose ``depth``-th score is tied with the next one (or that has fewer
    than ``depth`` finite scores) gets ``None``: its list is computed on demand.
    """
    if depth <= 0:
        return [None] * len(scores)
    part = np.argpartition(-scores, depth, axis=1)[:, :depth + 1] if depth < scores.shape[1] \
        else np.argsort(-scores, axis=1)
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=-1)
    part = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    out = []
    for codes, vals in zip(part, values, strict=True):
        exact = np.isfinite(vals[depth - 1]) and (len(vals) == depth or vals[depth] < vals[depth - 1])
        out.append((codes[:depth].astype(np.int64), vals[:depth].copy()) if exact else None)
    return out


class TopKIndex:
    """Score and rank the catalogue for one user at a time.

    Parameters
    ----------
    model : fitted matfact model
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._lock = threading.Lock()
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
        self._factor_model = isinstance(model, FactorModel) and \
            type(model)._score_vector is FactorModel._score_vector
        if self._factor_model:
            self._base = np.ascontiguousarray(model._item_base(), dtype=np.float32)
            factors = model.item_factors_
            self._items = None if factors is None or factors.shape[1] == 0 else \
                np.ascontiguousarray(factors, dtype=np.float32)
        popularity = np.diff(model.seen_.tocsc().indptr).astype(np.float32)
        self.popularity = popularity

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    @property
    def n_kept(self) -> int:
        """How many users' lists are kept (see :meth:`precompute`)."""
        return len(self._cache)

    def user_scores(self, code: int) -> np.ndarray:
        """Scores of every item for the known user ``code`` (as ``predict`` without clipping)."""
        model = self.model
        if not self._factor_model:
            return np.asarray(model._score_users(np.array([code]))[0], dtype=np.float32)
        scores = self._base.copy()
        if model.user_bias_ is not None:
            scores += np.float32(model.user_bias_[code])
        if self._items is not None:
            scores += self._items @ model.user_factors_[code].astype(np.float32, copy=False)
        return scores

    def vector_scores(self, vector: UserVector) -> np.ndarray:
        """Scores of every item for a folded-in user."""
        return np.asarray(self.model._score_vector(vector), dtype=np.float32)

    def seen(self, code: int) -> np.ndarray:
        seen = self.model.seen_
        return seen.indices[seen.indptr[code]:seen.indptr[code + 1]]

    def recommend(self, code: int, n: int, exclude_seen: bool = True) -> tuple[np.ndarray,
                                                                              np.ndarray]:
        """``(item codes, scores)`` of the top ``n`` for the known user ``code``."""
        if exclude_seen and n <= DEPTH:
            kept = self._cache.get(code)
            if kept is not None:
                return kept[0][:n], kept[1][:n]
        scores = self.user_scores(code)
        best = top_n(scores, n, self.seen(code) if exclude_seen else None)
        return best, scores[best]

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
        """Rank the catalogue for every known user and keep each top :data:`DEPTH`.

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
        depth = min(DEPTH, self.n_items)
        kept = 0
        for start in range(0, model.n_users_, batch):
            if stop is not None and stop.is_set():
                break
            codes = np.arange(start, min(start + batch, model.n_users_))
            with self._lock:
                if generation != self._generation:
                    break
                stamps = self._stamps[codes].copy() if codes[-1] < len(self._stamps) else None
            if stamps is None:
                break
            scores = self._batch_scores(codes)
            seen = model.seen_[codes[0]:codes[-1] + 1]
            rows = np.repeat(np.arange(len(codes)), np.diff(seen.indptr))
            scores[rows, seen.indices] = -np.inf
            lists = _batch_top(scores, depth)
            with self._lock:
                if generation != self._generation:
                    break
                for row, code in enumerate(codes.tolist()):
                    if lists[row] is not None and self._stamps[code] == stamps[row]:
                        self._cache[code] = lists[row]
                        kept += 1
        return kept

    def _batch_scores(self, codes: np.ndarray) -> np.ndarray:
        model = self.model
        if not self._factor_model:
            return np.array(model._score_users(codes), dtype=np.float32)
        scores = np.repeat(self._base[None, :], len(codes), axis=0)
        if model.user_bias_ is not None:
            scores += model.user_bias_[codes, None].astype(np.float32)
        if self._items is not None:
            scores += model.user_factors_[codes].astype(np.float32) @ self._items.T
        return scores

    def popular(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The fallback for an unknown user: the ``n`` items most users interacted with."""
        best = top_n(self.popularity, n)
        return best, self.popularity[best]
