r"""Approximate top-k over item vectors: an inverted-file (IVF) index, searched by faiss.

A factor model scores item :math:`i` for user :math:`u` as
:math:`\text{base}_i + o_u + p_u\cdot q_i` (:meth:`~matfact.models.base.Recommender.item_side`):
with the item vectors augmented to :math:`a_i = [q_i, \text{base}_i]` and the user's
query to :math:`[p_u, 1]`, the ranking is a maximum-inner-product search over the
:math:`a_i` (the user's offset :math:`o_u` moves every item alike). ``similar_items``
searches the unit item vectors (cosine). Inner product is not a distance, and
clustering it directly lists items badly (large-norm items pull every centroid; on
a fitted ImplicitALS, recall@10 0.48 at 16 of 512 lists, against 0.94 below), so the
index searches the equivalent nearest-neighbour problem of Bachrach et al. (2014):
each item gets one more coordinate :math:`\sqrt{M^2 - \lVert a_i\rVert^2}` (``M`` the
largest norm at build time) and each query a 0, and then
:math:`\lVert x - \tilde a_i\rVert^2 = \lVert x\rVert^2 + M^2 - 2\,x\cdot a_i`:
the nearest items in L2 are those of largest inner product. The index clusters the
vectors into ``n_lists`` lists (k-means on a sample); a query reads the ``n_probe``
lists whose centroids are nearest, so it touches about ``n_probe / n_lists`` of the
catalogue.

What makes the answers trustworthy rather than merely fast:

- **Exact scores, exact exclusions.** The lists only propose candidates; each is
  re-scored with the model's current vectors (the formula ``recommend`` uses), and
  excluded items (the user's history, the item itself) are filtered inside the
  search, so a list never comes back short because excluded items filled it: when
  the probed lists hold fewer than ``n`` eligible items the search doubles
  ``n_probe`` until they do (at worst, every list: the exact answer).
- **Calibrated, not guessed.** :func:`build_item_index` measures recall against
  the exact top-``n`` on a sample of trained users and keeps the smallest
  ``n_probe`` that reaches the target (``recall``), recorded with what it measured.
- **Plain arrays in the model file.** The index is saved as its centroids and each
  item's list number, checked at load like every array; the lists are rebuilt from
  the model's own item vectors (no serialized faiss blob is ever read from a file).
- **Kept current.** Items added since the index was built (``add_items``,
  ``apply_ratings``) are inserted into their nearest list at the next search; a
  change that moves every item (``partial_fit``, a refit) drops the index, and the
  next approximate search rebuilds it with the same settings.

faiss (``pip install "matfact[ann]"``) was chosen on measured merit; see
docs/serving.md ("Exact or approximate") for the comparison with hnswlib, usearch
and voyager.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from matfact.exceptions import ParameterError

__all__ = ["ItemVectorIndex", "build_item_index", "default_n_lists", "KINDS"]

#: The two searches a model can index: ``"recommend"`` (max inner product of the
#: augmented vectors) and ``"similar"`` (cosine of the item factors).
KINDS = ("recommend", "similar")

#: Training points per list for the k-means: a sample (10⁶ items, 4,096 lists: 131,072
#: points, 10 iterations, ~26 s on this loaded 2-core machine; 64 points and 20
#: iterations took 93 s for the same recall).
_TRAIN_PER_LIST = 32
#: Items inserted after the build that every query also scores exactly (the newest);
#: 20,000 × 64 factors add about 0.1 ms to a query. Past that, rebuild the index.
FRESH_LIMIT = 20_000
#: Recall is measured against the exact top-n of this many trained users.
CALIBRATION_USERS = 1000


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test venv
        raise ImportError(
            "approximate search needs faiss: pip install 'matfact[ann]' (or faiss-cpu)"
        ) from exc
    return faiss


@contextlib.contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """Hold faiss' OpenMP team at ``n`` threads (one query: one thread, no team start-up)."""
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def default_n_lists(n_items: int) -> int:
    """About √n lists, a power of two, at most n / 39.

    faiss suggests 4·√n to 16·√n; on the 10⁶-item benchmark model √n (1,024 lists) built
    in 10 s against 46 s for 4,096, with the same recall at a calibrated ``n_probe`` and
    the same latency (a query reads about as many vectors either way)."""
    if n_items < 2:
        return 1
    lists = 2 ** round(math.log2(math.sqrt(n_items)))
    return int(max(1, min(lists, n_items // 39 or 1)))


class ItemVectorIndex:
    """The faiss IVF index of one kind of item vectors, built from plain arrays.

    Parameters
    ----------
    centroids : ndarray of shape (n_lists, d + 1), float32
        The lists' centroids, in the augmented space (see the module doc).
    lists : ndarray of shape (n_indexed,), int32
        The list of items ``0 .. n_indexed - 1``.
    vectors : ndarray of shape (n_indexed, d), float32
        Those items' vectors, as :func:`item_vectors` makes them.
    n_probe : int
        Lists read per query.
    max_norm : float
        ``M`` of the augmentation: the largest item norm when the index was built.
    """

    def __init__(self, centroids: np.ndarray, lists: np.ndarray, vectors: np.ndarray,
                 n_probe: int, max_norm: float) -> None:
        faiss = _faiss()
        #: The lists' centroids, as given (what the model file keeps).
        self.centroids = centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.n_lists, self.dim = centroids.shape
        self.n_probe = int(n_probe)
        self.max_norm = float(max_norm)
        #: Items ``0 .. built_items - 1`` were placed by the k-means that made the lists;
        #: later ones (inserted live) are also proposed to every query (``fresh_codes``).
        self.built_items = len(lists)
        #: Whether every item has the same base score, and whether every item vector is
        #: zero (set by :func:`model_index`): together, every item scores the same.
        self.flat_base: bool | None = None
        self.zero_items: bool | None = None
        self._quantizer = faiss.IndexFlatL2(self.dim)
        self._quantizer.add(centroids)
        self._index = faiss.IndexIVFFlat(self._quantizer, self.dim, self.n_lists,
                                         faiss.METRIC_L2)
        self._index.is_trained = True
        #: Serialises inserts with searches: faiss' lists are not safe to read while
        #: they grow.
        self.lock = threading.Lock()
        self._add(np.asarray(lists, dtype=np.int64), vectors, start=0)

    @property
    def n_indexed(self) -> int:
        """How many items (codes ``0 .. n_indexed - 1``) the lists hold."""
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        """Memory of the lists and centroids: vectors, ids and centroids."""
        return self.n_indexed * (self.dim * 4 + 8) + self.n_lists * self.dim * 4

    def augment(self, vectors: np.ndarray) -> np.ndarray:
        """Item vectors with the coordinate that turns inner product into L2 order.

        An item longer than ``M`` (added after the build) gets 0 there: still found by
        its direction, only ranked by the lists a little too low.
        """
        return augment(vectors, self.max_norm)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The list of each item vector (the nearest centroid once augmented), int32."""
        if len(vectors) == 0:
            return np.zeros(0, np.int32)
        _, lists = self._quantizer.search(self.augment(vectors), 1)
        return lists[:, 0].astype(np.int32)

    def _add(self, lists: np.ndarray, vectors: np.ndarray, start: int) -> None:
        faiss = _faiss()
        vectors = self.augment(vectors)
        lists = np.ascontiguousarray(lists, dtype=np.int64)
        if len(vectors) != len(lists) or vectors.shape[1] != self.dim:
            raise ValueError(f"{len(lists)} list numbers for vectors of shape {vectors.shape}")
        if len(lists) and (lists.min() < 0 or lists.max() >= self.n_lists):
            raise ValueError(f"list numbers must lie in [0, {self.n_lists})")
        ids = np.arange(start, start + len(vectors), dtype=np.int64)
        if len(ids):
            self._index.add_core(len(ids), faiss.swig_ptr(vectors), faiss.swig_ptr(ids),
                                 faiss.swig_ptr(lists))

    def fresh_codes(self) -> np.ndarray:
        """The items inserted since the build (at most :data:`FRESH_LIMIT`, the newest)."""
        return np.arange(max(self.built_items, self.n_indexed - FRESH_LIMIT), self.n_indexed)

    def insert(self, vectors: np.ndarray) -> np.ndarray:
        """Append items ``n_indexed ..`` to their nearest lists; return their list numbers."""
        lists = self.assign(vectors)
        self._add(lists, vectors, start=self.n_indexed)
        return lists

    def search(self, query: np.ndarray, n: int, exclude: np.ndarray | None = None,
               n_probe: int | None = None) -> np.ndarray:
        """Candidate item codes for one query: the best ``n`` the probed lists hold.

        Excluded codes never come back. When the probed lists hold fewer than ``n``
        eligible items, ``n_probe`` doubles until they do or every list is read.

        Returns
        -------
        codes : ndarray of shape (m,), int64
            ``m ≤ n`` distinct codes in ``[0, n_indexed)``, best first by the
            indexed vectors (the caller re-scores them with the current ones).
        """
        faiss = _faiss()
        augmented = np.zeros((1, self.dim), dtype=np.float32)
        augmented[0, :-1] = query
        query = augmented
        probe = max(1, min(self.n_probe if n_probe is None else n_probe, self.n_lists))
        excluded = None if exclude is None or len(exclude) == 0 else \
            np.ascontiguousarray(exclude, dtype=np.int64)
        eligible = self.n_indexed - (0 if excluded is None else len(np.unique(excluded)))
        want = max(0, min(n, eligible))
        while True:
            params = faiss.SearchParametersIVF()
            params.nprobe = probe
            if excluded is not None:
                # The selectors are referenced, not owned, by params: keep them alive here.
                batch = faiss.IDSelectorBatch(len(excluded), faiss.swig_ptr(excluded))
                not_excluded = faiss.IDSelectorNot(batch)
                params.sel = not_excluded
            with self.lock:
                _, found = self._index.search(query, max(n, 1), params=params)
            codes = found[0][found[0] >= 0]
            if len(codes) >= want or probe >= self.n_lists:
                return codes[:n].astype(np.int64)
            probe = min(2 * probe, self.n_lists)


def _unit(factors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(factors, axis=-1, keepdims=True)
    return np.ascontiguousarray(factors / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def _item_side(model: Any, items: np.ndarray | None = None) -> Any:
    """``model.item_side(items)``, or a clear error for a model an index cannot serve."""
    side = model.item_side(items)
    if side is None:
        raise ParameterError(f"{type(model).__name__} does not score by a dot product of "
                             f"item vectors; an approximate index cannot rank for it")
    if side.factors is None:
        raise ParameterError(
            f"{type(model).__name__} has no item vectors an approximate index can search; "
            f"use approximate=False")
    return side


def item_vectors(model: Any, kind: str, start: int = 0) -> np.ndarray:
    """The vectors of items ``start ..`` that the index of ``kind`` searches (float32).

    ``"recommend"``: ``[q_i, base_i]`` (base: global mean and item bias), so that
    ``[p_u, 1]`` scores them as ``recommend`` ranks them; ``"similar"``: unit ``q_i``.
    """
    side = _item_side(model, np.arange(start, model.n_items_))
    if kind == "similar":
        return _unit(side.factors)
    out = np.empty((len(side.factors), side.factors.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = side.factors
    out[:, -1] = side.base
    return out


def augment(vectors: np.ndarray, max_norm: float) -> np.ndarray:
    """``[v, sqrt(M² - ‖v‖²)]`` per row (0 where ‖v‖ > M), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    out = np.empty((len(vectors), vectors.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = vectors
    squares = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    out[:, -1] = np.sqrt(np.maximum(max_norm * max_norm - squares, 0.0))
    return out


def _kmeans_lists(vectors: np.ndarray, n_lists: int, random_state: int) -> np.ndarray:
    """Centroids of ``n_lists`` lists, k-means on at most 64 (augmented) vectors per list."""
    faiss = _faiss()
    rng = np.random.default_rng(random_state)
    sample = vectors
    if len(vectors) > _TRAIN_PER_LIST * n_lists:
        sample = vectors[np.sort(rng.choice(len(vectors), _TRAIN_PER_LIST * n_lists,
                                            replace=False))]
    clustering = faiss.Clustering(vectors.shape[1], n_lists)
    clustering.seed = int(random_state)
    clustering.niter = 10  # faiss' own default for IVF training
    clustering.min_points_per_centroid = 1  # small catalogues: no warning, no refusal
    clustering.max_points_per_centroid = _TRAIN_PER_LIST
    quantizer = faiss.IndexFlatL2(vectors.shape[1])
    clustering.train(np.ascontiguousarray(sample), quantizer)
    return faiss.vector_to_array(clustering.centroids).reshape(n_lists, vectors.shape[1])


def build_item_index(model: Any, kind: str = "recommend", *, n_lists: int | None = None,
                     n_probe: int | None = None, recall: float = 0.95, n: int = 10,
                     random_state: int = 0) -> tuple[ItemVectorIndex, np.ndarray,
                                                     dict[str, Any]]:
    """Train an index over ``model``'s item vectors and calibrate its ``n_probe``.

    Returns
    -------
    index : ItemVectorIndex
    lists : ndarray of shape (n_items,), int32
        Each item's list (what the model file keeps, with ``index.centroids``).
    settings : dict
        ``n_lists``, ``n_probe``, the ``recall`` target, the ``measured_recall`` of
        the calibration (None when ``n_probe`` was given) and ``n`` it was measured at.
    """
    if kind not in KINDS:
        raise ParameterError(f"kind must be one of {KINDS}, got {kind!r}")
    vectors = item_vectors(model, kind)
    if n_lists is None:
        n_lists = default_n_lists(len(vectors))
    if not isinstance(n_lists, (int, np.integer)) or isinstance(n_lists, bool) \
            or not 1 <= n_lists <= max(len(vectors), 1):
        raise ParameterError(f"n_lists must be an integer in [1, n_items={len(vectors)}], "
                             f"got {n_lists!r}")
    if not 0 < recall <= 1:
        raise ParameterError(f"recall must lie in (0, 1], got {recall!r}")
    if n_probe is not None and (not isinstance(n_probe, (int, np.integer))
                                or isinstance(n_probe, bool) or n_probe < 1):
        raise ParameterError(f"n_probe must be a positive integer, got {n_probe!r}")
    max_norm = float(np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64).max(
        initial=0.0)))
    with _omp_threads(_faiss().omp_get_max_threads()):
        centroids = _kmeans_lists(augment(vectors, max_norm), int(n_lists), random_state)
        index = ItemVectorIndex(centroids, np.zeros(0, np.int32), vectors[:0], 1, max_norm)
        lists = index.insert(vectors)
    measured = None
    if n_probe is None:
        n_probe, measured = _calibrate(model, index, kind, recall, n, random_state)
    index.n_probe = int(min(n_probe, index.n_lists))
    index.built_items = index.n_indexed
    return index, lists, {"n_lists": int(index.n_lists), "n_probe": index.n_probe,
                   "built_items": index.n_indexed,
                   "max_norm": max_norm, "recall": float(recall),
                   "measured_recall": measured, "n": int(n)}


def _calibration_queries(model: Any, kind: str, random_state: int) -> np.ndarray:
    """Codes of the users (``recommend``) or items (``similar``) recall is measured on."""
    rng = np.random.default_rng(random_state)
    if kind == "recommend":
        pool = np.flatnonzero(np.diff(model.seen_.indptr) > 0)
    else:
        pool = np.arange(model.n_items_)
    size = min(CALIBRATION_USERS, len(pool))
    return np.sort(rng.choice(pool, size, replace=False)) if size else pool


def _calibrate(model: Any, index: ItemVectorIndex, kind: str, target: float, n: int,
               random_state: int) -> tuple[int, float]:
    """The smallest ``n_probe`` whose mean recall@n on the calibration sample reaches
    ``target`` by two standard errors (so that users outside the sample get it too):
    doubling until it does, then halving the gap to the last miss."""
    queries = _calibration_queries(model, kind, random_state)
    if len(queries) == 0:
        return 1, 1.0
    exact = [set(row[row >= 0].tolist()) for row in exact_codes(model, kind, queries, n)]

    def recall_at(probe: int) -> tuple[float, bool]:
        found = approximate_codes(model, index, kind, queries, n, n_probe=probe)
        # A query with nothing left to find (every item seen) is answered perfectly.
        hits = np.array([len(truth & set(row[row >= 0].tolist())) / len(truth) if truth
                         else 1.0 for truth, row in zip(exact, found, strict=True)])
        margin = 2 * hits.std() / math.sqrt(len(hits))
        return float(hits.mean()), bool(hits.mean() - margin >= target)

    low, high = 0, 1  # recall at low misses the target (0: nothing read)
    measured, enough = recall_at(high)
    while not enough and high < index.n_lists:
        low, high = high, min(2 * high, index.n_lists)
        measured, enough = recall_at(high)
    while high - low > max(1, high // 16):  # within about 6 % of the smallest
        middle = (low + high) // 2
        at_middle, enough = recall_at(middle)
        if enough:
            high, measured = middle, at_middle
        else:
            low = middle
    return high, measured


def exact_codes(model: Any, kind: str, codes: np.ndarray, n: int) -> np.ndarray:
    """The exact answer the index approximates (for calibration and tests)."""
    if kind == "recommend":
        return model.recommend_codes(codes, n, exclude_seen=True)[0]
    vectors = item_vectors(model, "similar")
    from matfact.models.ranking import top_n_rows

    scores = vectors[codes] @ vectors.T
    return top_n_rows(scores, n, np.arange(len(codes) + 1, dtype=np.int64),
                      codes.astype(np.int32))[0]


def _seen_lists(model: Any, users: np.ndarray, exclude_seen: bool) -> list:
    seen = model.seen_
    return [seen.indices[seen.indptr[code]:seen.indptr[code + 1]] if exclude_seen else None
            for code in users.tolist()]


def _queries(model: Any, kind: str, codes: np.ndarray, exclude_seen: bool = True
             ) -> tuple[np.ndarray, np.ndarray, list]:
    """``(vectors, offsets, exclusions)`` of user codes (``recommend``: the user's
    vector, bias and history) or item codes (``similar``: the unit vector, the item)."""
    if kind == "recommend":
        vectors, offsets = model.user_side(codes)
        return vectors, offsets, _seen_lists(model, codes, exclude_seen)
    vectors = _unit(_item_side(model, codes).factors)
    return vectors, np.zeros(len(codes), np.float32), [np.array([c]) for c in codes.tolist()]


def search_candidates(index: ItemVectorIndex, kind: str, vectors: np.ndarray, n: int,
                      exclusions: list, n_probe: int | None = None) -> np.ndarray:
    """Per query vector, the index's ``n`` best eligible codes, padded with -1
    (proposals, not yet re-scored; see :func:`rescore`)."""
    if kind == "recommend":  # [p_u, 1] meets [q_i, base_i]
        vectors = np.hstack([vectors, np.ones((len(vectors), 1), vectors.dtype)])
    out = np.full((len(vectors), n), -1, dtype=np.int64)
    with _omp_threads(1):
        for row, exclude in enumerate(exclusions):
            found = index.search(vectors[row], n, exclude, n_probe)
            out[row, :len(found)] = found
    return out


def approximate_codes(model: Any, index: ItemVectorIndex, kind: str, codes: np.ndarray,
                      n: int, *, exclude_seen: bool = True,
                      n_probe: int | None = None) -> np.ndarray:
    """Candidate codes per query (users for ``recommend``, items for ``similar``)."""
    vectors, _, exclusions = _queries(model, kind, codes, exclude_seen)
    return search_candidates(index, kind, vectors, n, exclusions, n_probe)


# ---------------------------------------------------------------------- the model's index
#: The attributes each kind keeps in the model (and its file): centroids, each item's
#: list, and the settings (JSON).
_ATTRS = {"recommend": ("ann_centroids_", "ann_lists_", "ann_settings_"),
          "similar": ("ann_similar_centroids_", "ann_similar_lists_", "ann_similar_settings_")}
_LIVE = "_ann_live"  # {kind: ItemVectorIndex}: not state, never saved
_BUILD_LOCK = threading.Lock()


def _settings_for_build(settings: dict[str, Any] | None) -> dict[str, Any]:
    """What a rebuild keeps of earlier settings: the choices, not the measurements."""
    if not settings:
        return {}
    kept = {key: settings[key] for key in ("recall", "n") if key in settings}
    if settings.get("fixed_lists"):
        kept["n_lists"] = settings["n_lists"]
    if settings.get("fixed_probe"):
        kept["n_probe"] = settings["n_probe"]
    return kept


def build_model_index(model: Any, kind: str = "recommend", **settings: Any) -> ItemVectorIndex:
    """Build ``model``'s index of ``kind`` and keep it in the model (see ``build_index``)."""
    index, lists, chosen = build_item_index(model, kind, **settings)  # checks kind
    centroids_attr, lists_attr, settings_attr = _ATTRS[kind]
    chosen["fixed_lists"] = settings.get("n_lists") is not None
    chosen["fixed_probe"] = settings.get("n_probe") is not None
    setattr(model, centroids_attr, index.centroids)
    setattr(model, lists_attr, lists)
    setattr(model, settings_attr, chosen)
    model.__dict__.setdefault(_LIVE, {})[kind] = index
    return index


def forget_model_index(model: Any) -> None:
    """Drop the indexes after a change that moved every item (``partial_fit``).

    The settings stay, so the next approximate search rebuilds with the same ones.
    """
    for centroids_attr, lists_attr, _ in _ATTRS.values():
        for name in (centroids_attr, lists_attr):
            if name in vars(model):
                delattr(model, name)
    model.__dict__.pop(_LIVE, None)


def rebuild_indexes(model: Any, like: Any = None) -> list[str]:
    """Build the indexes ``like`` (default: ``model`` itself) had settings for and
    ``model`` lacks, with those settings: what a refit or ``partial_fit`` of a served
    model does before it is saved, so the file keeps its index.

    Returns
    -------
    list of str
        The kinds built.
    """
    like = model if like is None else like
    built = []
    for kind, (centroids_attr, _, settings_attr) in _ATTRS.items():
        settings = getattr(like, settings_attr, None)
        if settings and getattr(model, centroids_attr, None) is None:
            build_model_index(model, kind, **_settings_for_build(settings))
            built.append(kind)
    return built


def model_index(model: Any, kind: str) -> ItemVectorIndex:
    """``model``'s live index of ``kind``: built on demand, rebuilt from the kept
    arrays after a load, and holding every item (new ones inserted here)."""
    centroids_attr, lists_attr, settings_attr = _ATTRS[kind]
    with _BUILD_LOCK:
        live = model.__dict__.get(_LIVE, {}).get(kind)
        centroids = getattr(model, centroids_attr, None)
        lists = getattr(model, lists_attr, None)
        n_items = model.n_items_
        if centroids is None or lists is None:
            return build_model_index(model, kind,
                                     **_settings_for_build(getattr(model, settings_attr, None)))
        if live is None or live.n_indexed != min(len(lists), n_items) \
                or live.n_lists != len(centroids):
            # After a load, or a rollback that shortened the lists: from the plain arrays.
            lists = lists[:n_items]
            settings = getattr(model, settings_attr, None) or {}
            live = ItemVectorIndex(centroids, lists, item_vectors(model, kind)[:len(lists)],
                                   settings.get("n_probe", 1), settings.get("max_norm", 0.0))
            live.built_items = min(settings.get("built_items", len(lists)), len(lists))
            setattr(model, lists_attr, lists)
            model.__dict__.setdefault(_LIVE, {})[kind] = live
        if live.n_indexed < n_items:
            start = live.n_indexed
            with live.lock:
                added = live.insert(item_vectors(model, kind, start=start))
            setattr(model, lists_attr, np.concatenate([getattr(model, lists_attr), added]))
            live.flat_base = None
            if live.zero_items:  # only the new rows can change it
                live.zero_items = not _item_side(model, np.arange(start, n_items)).factors.any()
        if live.flat_base is None:
            # Read once per change of the catalogue, not per query (a pass over every item).
            side = _item_side(model)
            live.flat_base = bool(side.base.size == 0 or side.base.min() == side.base.max())
            if live.zero_items is None:
                live.zero_items = not side.factors.any()
        return live


def rescore(model: Any, kind: str, vectors: np.ndarray, offsets: np.ndarray,
            candidates: list, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Score each row's candidates (an array of codes per row, -1 ignored) exactly (the
    formula ``recommend`` ranks by, or the cosine) and order them as ``top_n`` would:
    best first, ties to the lower code."""
    from matfact.models.ranking import top_n

    width = min(n, max((len(row) for row in candidates), default=0))
    out_idx = np.full((len(vectors), width), -1, dtype=np.int64)
    out_val = np.full(out_idx.shape, np.nan, dtype=np.float32)
    for row in range(len(vectors)):
        found = np.unique(candidates[row][candidates[row] >= 0])  # sorted: ties to the lower
        if len(found) == 0:
            continue
        side = _item_side(model, found)
        if kind == "recommend":
            scores = side.base + offsets[row] + side.factors @ vectors[row]
        else:
            scores = _unit(side.factors) @ vectors[row]
        order, values = top_n(np.asarray(scores, dtype=np.float32), width)
        out_idx[row, :len(order)] = found[order]
        out_val[row, :len(order)] = values
    return out_idx, out_val


def _approximate(model: Any, kind: str, vectors: np.ndarray, offsets: np.ndarray,
                 exclusions: list, width: int) -> tuple[np.ndarray, np.ndarray]:
    index = model_index(model, kind)
    candidates = list(search_candidates(index, kind, vectors, width, exclusions))
    fresh = index.fresh_codes()
    if len(fresh):
        # Items that arrived since the build are proposed to every query, scored exactly:
        # their lists were chosen by centroids that never saw them (measured: a live item
        # in the exact top 10 of 9 of 2,000 users sat in the 9th-16th nearest list of all
        # 9, and 8 lists were read).
        for row, exclude in enumerate(exclusions):
            extra = fresh if exclude is None or len(exclude) == 0 else \
                fresh[~np.isin(fresh, exclude)]
            candidates[row] = np.concatenate([candidates[row], extra])
    return rescore(model, kind, vectors, offsets, candidates, width)


def approximate_recommend(model: Any, users: np.ndarray, n: int,
                          exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The top ``n`` of known user codes through the index (unclipped ranking scores)."""
    vectors, offsets, exclusions = _queries(model, "recommend", users, exclude_seen)
    return _approximate(model, "recommend", vectors, offsets, exclusions,
                        min(n, model.n_items_))


def approximate_vector(model: Any, vector: Any, n: int,
                       exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The top ``n`` of a folded-in user (a :class:`UserVector`), ``exclude`` skipped."""
    factors = np.asarray(vector.factors, dtype=np.float32).reshape(1, -1)
    return _approximate(model, "recommend", factors, np.array([vector.bias], np.float32),
                        [exclude], min(n, model.n_items_))


def approximate_similar(model: Any, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` items of largest cosine to each item code, through the ``similar`` index."""
    vectors, offsets, exclusions = _queries(model, "similar", items)
    return _approximate(model, "similar", vectors, offsets, exclusions,
                        max(min(n, model.n_items_ - 1), 0))


def flat_users(model: Any, users: np.ndarray) -> np.ndarray:
    """Which known users every item scores the same for, read from the vectors alone:
    a zero user vector over a flat item base (``unplaced`` without scoring the catalogue).

    The base's flatness is read when the index last took items in (a time-aware model's
    base moves with time, but it is flat only without item biases, which time does not
    change)."""
    index = model_index(model, "recommend")
    if not index.flat_base:
        return np.zeros(len(users), bool)
    if index.zero_items:
        return np.ones(len(users), bool)
    vectors, _ = model.user_side(users)
    return ~np.any(vectors, axis=1)


def check_index_state(model: Any) -> None:
    """Refuse kept index arrays that disagree with the model (a crafted or foreign file).

    Raises
    ------
    ValueError
        Naming the attribute and what is wrong.
    """
    k = model.item_factors_.shape[1] if getattr(model, "item_factors_", None) is not None else 0
    for kind, (centroids_attr, lists_attr, settings_attr) in _ATTRS.items():
        centroids = getattr(model, centroids_attr, None)
        lists = getattr(model, lists_attr, None)
        settings = getattr(model, settings_attr, None)
        if centroids is None and lists is None:
            continue
        if centroids is None or lists is None or not isinstance(settings, dict):
            raise ValueError(f"the {kind} index needs {centroids_attr}, {lists_attr} and "
                             f"{settings_attr} together")
        dim = k + (2 if kind == "recommend" else 1)
        if centroids.ndim != 2 or centroids.shape[1] != dim or len(centroids) < 1:
            raise ValueError(f"{centroids_attr} has shape {centroids.shape}; this model's "
                             f"{kind} index has {dim} columns")
        if not np.isfinite(centroids).all():
            raise ValueError(f"{centroids_attr} holds NaN or infinity")
        if lists.ndim != 1 or len(lists) > model.n_items_ or (
                len(lists) and (lists.min() < 0 or lists.max() >= len(centroids))):
            raise ValueError(f"{lists_attr} must give each of at most {model.n_items_} items "
                             f"a list in [0, {len(centroids)})")
        probe, norm = settings.get("n_probe"), settings.get("max_norm")
        built = settings.get("built_items", 0)
        if not isinstance(built, int) or isinstance(built, bool) or built < 0:
            raise ValueError(f"{settings_attr}['built_items'] must be a count, got "
                             f"{str(built)[:40]!r}")
        if not isinstance(probe, int) or isinstance(probe, bool) \
                or not 1 <= probe <= len(centroids):
            raise ValueError(f"{settings_attr}['n_probe'] must be an integer in "
                             f"[1, {len(centroids)}], got {str(probe)[:40]!r}")
        if not isinstance(norm, (int, float)) or isinstance(norm, bool) \
                or not 0 <= norm < float("inf"):
            raise ValueError(f"{settings_attr}['max_norm'] must be a finite non-negative "
                             f"number, got {str(norm)[:40]!r}")
