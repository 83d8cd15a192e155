"""Exact top-k for the service: one matrix–vector product per user, seen items masked.

The item side (``μ + b_i`` and the item factors, float32, contiguous) is taken
from the model once and refreshed when items are added; the user side is read
from the model at each call, so a user just updated by
:meth:`~matfact.models.base.Recommender.update_users` is scored with the new
vector. Ranking is a partition of the scores followed by a sort of the top
``n`` only: O(n_items) per request.

Exact search is the default and, measured on this project's machine, fast
enough for catalogues of tens of thousands of items (see ``docs/serving.md``);
no approximate index is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matfact.models.base import FactorModel, UserVector

__all__ = ["TopKIndex", "top_n"]


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


class TopKIndex:
    """Score and rank the catalogue for one user at a time.

    Parameters
    ----------
    model : fitted matfact model
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        """Re-read the item side (after items were added or the model replaced)."""
        model = self.model
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
        scores = self.user_scores(code)
        best = top_n(scores, n, self.seen(code) if exclude_seen else None)
        return best, scores[best]

    def popular(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The fallback for an unknown user: the ``n`` items most users interacted with."""
        best = top_n(self.popularity, n)
        return best, self.popularity[best]
