"""Side information as a sparse feature matrix: :class:`FeatureEncoder`.

Users and items carry metadata on :attr:`Interactions.user_features` /
:attr:`Interactions.item_features` (a DataFrame indexed by raw id). Models that
use it (:class:`~matfact.HybridMF`, :class:`~matfact.BayesianMF`) need one
sparse row per user or item, and the same columns for users and items they
meet later; the encoder learns that vocabulary once and keeps it as plain
JSON-able state, so a saved model can encode new rows without pickle.

Each DataFrame column becomes a *group* of features:

- ``bool`` columns: one flag (genres in ML-100K).
- text columns: one-hot categories (occupation, gender); values containing
  ``"|"`` are multi-valued (ml-latest-small's genres and tags), split on it
  by scikit-learn's :class:`~sklearn.feature_extraction.text.CountVectorizer`.
- numeric columns: one-hot buckets when ``bins`` names edges for them (age
  buckets, release-year buckets; a missing value is its own bucket), else one
  standardized value.
- columns that identify rather than describe (titles, URLs, dates: text with
  more distinct values than ``max_categories_fraction`` of the rows, or
  datetimes) are skipped unless ``columns`` names them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matfact.exceptions import DataError, NotFittedError, ParameterError

__all__ = ["FeatureEncoder"]

_SEPARATOR = "|"
_MISSING = "<missing>"
_FEW_CATEGORIES = 50


def _split_values(text: str) -> list[str]:
    return [token for token in (part.strip() for part in text.split(_SEPARATOR)) if token]


def _vectorizer(vocabulary: list[str] | None = None) -> Any:
    # Imported here: scikit-learn (and the scipy.stats it loads) costs ~0.5 s, which
    # every `import matfact.data` (so `matfact recommend`) would pay for nothing.
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(tokenizer=_split_values, token_pattern=None, lowercase=False,
                           binary=True, vocabulary=vocabulary, dtype=np.float32)


def _text(column: pd.Series) -> pd.Series:
    return column.astype(object).where(column.notna(), None)


class FeatureEncoder:
    """Encode a features DataFrame into a sparse matrix with a fixed vocabulary.

    Parameters
    ----------
    columns : list of str, default=None
        The columns to encode; by default every column that describes (see
        the module notes for what is skipped).
    bins : dict of str to list of float, default=None
        Bucket edges for numeric columns, e.g. ``{"age": [18, 25, 35, 45, 50, 56]}``:
        bucket ``i`` holds ``edges[i-1] <= x < edges[i]``.
    truncate : dict of str to int, default=None
        Keep only the first ``n`` characters of a text column before encoding
        (``{"zip": 1}``: the zip code's region).
    min_count : int, default=1
        Categories seen fewer times are dropped.
    max_categories_fraction : float, default=0.5
        Text columns (not named in ``columns``) with more distinct values than
        this fraction of the rows (and more than 50) are identifiers and are skipped.

    Attributes
    ----------
    groups_ : list of dict
        One entry per encoded column: its name, kind (``"flag"``,
        ``"category"``, ``"multi"``, ``"bucket"``, ``"numeric"``) and vocabulary.
    feature_names_ : ndarray of str
        ``"column=value"`` per output column.
    feature_groups_ : ndarray of int
        The group (index into ``groups_``) of each output column.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"job": ["a", "b", "a"], "age": [17, 30, 60]}, index=[1, 2, 3])
    >>> encoder = FeatureEncoder(bins={"age": [18, 50]}).fit(frame)
    >>> encoder.feature_names_.tolist()
    ['job=a', 'job=b', 'age<18', 'age=[18,50)', 'age>=50', 'age=<missing>']
    >>> encoder.transform(frame, [3, 9]).toarray().astype(int).tolist()
    [[1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]]
    """

    def __init__(self, *, columns: list[str] | None = None,
                 bins: dict[str, list[float]] | None = None,
                 truncate: dict[str, int] | None = None, min_count: int = 1,
                 max_categories_fraction: float = 0.5) -> None:
        self.columns = columns
        self.bins = bins
        self.truncate = truncate
        self.min_count = min_count
        self.max_categories_fraction = max_categories_fraction

    # ------------------------------------------------------------------ fitting
    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Learn each column's vocabulary from ``frame`` (one row per id)."""
        frame = self._check_frame(frame)
        if not isinstance(self.min_count, (int, np.integer)) or self.min_count < 1:
            raise ParameterError(f"min_count must be an integer >= 1, got {self.min_count!r}")
        bins = dict(self.bins or {})
        names = list(frame.columns) if self.columns is None else list(self.columns)
        missing = [name for name in [*names, *bins, *(self.truncate or {})]
                   if name not in frame.columns]
        if missing:
            raise DataError(f"feature columns {missing} are not in the features "
                            f"(have {list(frame.columns)})")
        groups = []
        for name in names:
            group = self._fit_column(frame[name], name, bins.get(name),
                                     explicit=self.columns is not None)
            if group is not None:
                groups.append(group)
        self._set_groups(groups)
        return self

    def _fit_column(self, column: pd.Series, name: str, edges: list[float] | None,
                    explicit: bool) -> dict | None:
        if edges is not None:
            edges = [float(e) for e in edges]
            if not pd.api.types.is_numeric_dtype(column):
                raise DataError(f"bins given for {name!r}, but the column is not numeric")
            if len(edges) == 0 or np.any(np.diff(edges) <= 0) or not np.isfinite(edges).all():
                raise ParameterError(f"bins for {name!r} must be finite and increasing, "
                                     f"got {edges}")
            return {"name": name, "kind": "bucket", "edges": edges}
        if pd.api.types.is_bool_dtype(column):
            return {"name": name, "kind": "flag"}
        if pd.api.types.is_datetime64_any_dtype(column):
            if explicit:
                raise DataError(f"column {name!r} holds dates; derive a number (a year) "
                                f"or bucket it first")
            return None
        if pd.api.types.is_numeric_dtype(column):
            values = column.to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            if len(finite) == 0:
                return None
            std = float(finite.std())
            return {"name": name, "kind": "numeric", "mean": float(finite.mean()),
                    "scale": std if std > 0 else 1.0}
        text = self._prepared_text(column, name)
        present = text.dropna()
        if len(present) == 0:
            return None
        if present.str.contains(_SEPARATOR, regex=False).any():
            vectorizer = _vectorizer()
            counts = np.asarray(vectorizer.fit_transform(present).sum(axis=0))[0]
            vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
            kept = [v for v, c in zip(vocabulary, counts, strict=True) if c >= self.min_count]
            return {"name": name, "kind": "multi", "values": kept} if kept else None
        counts = present.value_counts()
        # A few distinct values are categories however few the rows.
        limit = max(self.max_categories_fraction * len(column), _FEW_CATEGORIES)
        if not explicit and len(counts) > limit:
            return None
        kept = sorted(str(v) for v, c in counts.items() if c >= self.min_count)
        return {"name": name, "kind": "category", "values": kept} if kept else None

    def _prepared_text(self, column: pd.Series, name: str) -> pd.Series:
        text = _text(column)
        text = text.map(lambda v: v if v is None else str(v).strip())
        text = text.where(text != "", None)
        width = (self.truncate or {}).get(name)
        if width is not None:
            if not isinstance(width, (int, np.integer)) or width < 1:
                raise ParameterError(f"truncate[{name!r}] must be an integer >= 1, got {width!r}")
            text = text.map(lambda v: v if v is None else v[:width])
        return text

    def _set_groups(self, groups: list[dict]) -> None:
        names, owners = [], []
        for g, group in enumerate(groups):
            labels = self._labels(group)
            names.extend(labels)
            owners.extend([g] * len(labels))
        self.groups_ = groups
        self.feature_names_ = np.array(names, dtype=str)
        self.feature_groups_ = np.array(owners, dtype=np.int32)

    @staticmethod
    def _labels(group: dict) -> list[str]:
        name, kind = group["name"], group["kind"]
        if kind in ("flag", "numeric"):
            return [name]
        if kind in ("category", "multi"):
            return [f"{name}={value}" for value in group["values"]]
        edges = group["edges"]
        inner = [f"{name}=[{a:g},{b:g})" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        return [f"{name}<{edges[0]:g}", *inner, f"{name}>={edges[-1]:g}", f"{name}={_MISSING}"]

    # ---------------------------------------------------------------- transform
    @property
    def n_features_(self) -> int:
        self._check_fitted()
        return len(self.feature_names_)

    def transform(self, frame: pd.DataFrame | None, ids: Any) -> sp.csr_matrix:
        """One row per id (in the order given), zero rows for ids absent from ``frame``.

        Parameters
        ----------
        frame : pandas.DataFrame or None
            Features indexed by raw id; ``None`` gives all-zero rows.
        ids : array-like of shape (n,)
            Raw ids, e.g. ``interactions.item_ids``.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n, n_features_), float32
        """
        self._check_fitted()
        ids = np.asarray(ids)
        if frame is None:
            return sp.csr_matrix((len(ids), self.n_features_), dtype=np.float32)
        frame = self._check_frame(frame)
        rows = frame.reindex(pd.Index(ids))
        present = np.asarray(frame.index.get_indexer(pd.Index(ids)) >= 0)
        blocks = []
        for group in self.groups_:
            if group["name"] not in rows.columns:
                raise DataError(f"the features lack column {group['name']!r}, which the "
                                f"encoder was fitted with")
            block = self._transform_column(rows[group["name"]], group)
            blocks.append(sp.csr_matrix(block.multiply(present[:, None])))
        if not blocks:
            return sp.csr_matrix((len(ids), 0), dtype=np.float32)
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def _transform_column(self, column: pd.Series, group: dict) -> sp.spmatrix:
        kind, n = group["kind"], len(column)
        if kind == "flag":
            values = column.fillna(False).astype(bool).to_numpy(np.float32)
            return sp.csr_matrix(values.reshape(-1, 1))
        if kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
            scaled = np.where(np.isfinite(values), (values - group["mean"]) / group["scale"], 0.0)
            return sp.csr_matrix(scaled.astype(np.float32).reshape(-1, 1))
        if kind == "bucket":
            values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
            edges = np.asarray(group["edges"])
            bucket = np.searchsorted(edges, values, side="right")
            bucket[~np.isfinite(values)] = len(edges) + 1
            return sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), bucket)),
                                 shape=(n, len(edges) + 2))
        text = self._prepared_text(column, group["name"])
        if kind == "multi":
            return _vectorizer(group["values"]).transform(text.fillna(""))
        lookup = {value: i for i, value in enumerate(group["values"])}
        codes = np.array([lookup.get(v, -1) if v is not None else -1 for v in text], np.int64)
        known = codes >= 0
        return sp.csr_matrix((np.ones(known.sum(), np.float32),
                              (np.flatnonzero(known), codes[known])),
                             shape=(n, len(group["values"])))

    def fit_transform(self, frame: pd.DataFrame, ids: Any = None) -> sp.csr_matrix:
        """:meth:`fit` then :meth:`transform` (rows in ``frame``'s order by default)."""
        self.fit(frame)
        return self.transform(frame, frame.index if ids is None else ids)

    # -------------------------------------------------------------- persistence
    def get_state(self) -> dict:
        """JSON-able state: the parameters and the learned groups."""
        self._check_fitted()
        return {"params": {"columns": self.columns, "bins": self.bins,
                           "truncate": self.truncate, "min_count": int(self.min_count),
                           "max_categories_fraction": float(self.max_categories_fraction)},
                "groups": self.groups_}

    @classmethod
    def from_state(cls, state: dict) -> FeatureEncoder:
        """Rebuild an encoder from :meth:`get_state`'s output (no code is run)."""
        try:
            encoder = cls(**state["params"])
            groups = [dict(g) for g in state["groups"]]
            for group in groups:
                if group["kind"] not in ("flag", "numeric", "bucket", "category", "multi"):
                    raise DataError(f"unknown feature group kind {group['kind']!r}")
        except (KeyError, TypeError) as exc:
            raise DataError(f"not a FeatureEncoder state: {exc}") from exc
        encoder._set_groups(groups)
        return encoder

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "groups_"):
            raise NotFittedError("this FeatureEncoder is not fitted yet; call fit(frame) first")

    @staticmethod
    def _check_frame(frame: Any) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"features must be a pandas DataFrame indexed by raw id, "
                            f"got {type(frame).__name__}")
        if frame.index.has_duplicates:
            raise DataError("the features' index repeats ids")
        return frame
