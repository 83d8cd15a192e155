r"""Topics from text: TF-IDF, then non-negative matrix factorization.

A corpus of :math:`n` documents becomes a non-negative matrix
:math:`X \in \mathbb{R}_{\ge 0}^{n \times m}` of TF-IDF weights (rows are
documents, columns the :math:`m` terms of the vocabulary), factorized as

.. math::
    X \approx W H, \qquad W \in \mathbb{R}_{\ge 0}^{n \times k},\;
    H \in \mathbb{R}_{\ge 0}^{k \times m}.

Row :math:`t` of :math:`H` is topic :math:`t`, a weighting of the terms; row
:math:`d` of :math:`W` says how much of each topic document :math:`d` holds.
Because nothing can be subtracted, each document is an additive mixture of
topics and each topic an additive set of words, so the rows of :math:`H` read as
subjects ("parts") rather than as the signed contrasts of an SVD.

:func:`fit_topics` is the library entry point, :func:`read_corpus` reads a
dataset name, a CSV/JSON-lines file or a folder of ``.txt`` files, and
:func:`configure_parser` / :func:`run` back the ``matfact topics`` command.
See ``docs/topics.md`` for a guide and the results on BBC News.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matfact._atomic import atomic_write
from matfact._text import format_table
from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    import pandas as pd

__all__ = [
    "LOSSES",
    "Corpus",
    "TopicModel",
    "fit_topics",
    "read_corpus",
    "nmi_score",
    "purity_score",
    "plot_topics",
    "configure_parser",
    "run",
]

#: The NMF losses :func:`fit_topics` offers, each with the solver that minimizes it:
#: coordinate descent for the Frobenius norm, multiplicative updates for the
#: (generalized) Kullback-Leibler divergence, which coordinate descent cannot handle.
LOSSES = {"frobenius": "cd", "kullback-leibler": "mu"}

#: Column names tried, in order, when no text / label / id column is named
#: (compared case-insensitively).
TEXT_COLUMNS = ("text", "content", "body", "document", "article")
LABEL_COLUMNS = ("label", "category", "class", "topic")
ID_COLUMNS = ("id", "doc_id", "document_id", "docid")

#: Words of two or more letters: numbers ("2004", "£600m") name no topic, yet with
#: scikit-learn's default pattern "2004" ranks among the top words of BBC's business topic.
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"

_CSV_SUFFIXES = (".csv", ".tsv")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_DPI = 110
_INK = "#222222"
_MUTED = "#6B6B6B"
_GRID = "#E4E4E4"


# ------------------------------------------------------------------------------------ NMF
def _make_nmf(**params: Any) -> Any:
    """The NMF estimator, built from scikit-learn's parameter names.

    The one place that chooses the implementation (:class:`matfact.models.nmf.NMF`,
    which takes scikit-learn's names), so swapping it changes nothing else here.
    """
    from matfact.models.nmf import NMF

    return NMF(**params)


# ------------------------------------------------------------------------------------ corpus
@dataclass(frozen=True, eq=False)
class Corpus:
    """Documents read by :func:`read_corpus`, with their ids and, if known, labels.

    Attributes
    ----------
    texts : list of str
        The documents, unchanged.
    ids : ndarray of shape (n_documents,), dtype str
        A stable identifier of each document: the dataset's or file's id
        column, the path of a ``.txt`` file relative to the folder (without
        ``.txt``), else the 0-based row number.
    labels : ndarray of shape (n_documents,), dtype str, or None
        The class of each document, if the source has one.
    source : str
        Where the documents came from (a dataset name or a path).
    """

    texts: list[str]
    ids: np.ndarray
    labels: np.ndarray | None
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        """The distinct labels, sorted (empty without labels)."""
        if self.labels is None:
            return []
        return sorted(set(self.labels.tolist()))


def _find_column(columns: Sequence[str], wanted: str | None, aliases: tuple[str, ...],
                 role: str, where: str, required: bool) -> str | None:
    """The column holding ``role``: ``wanted`` if given (case-insensitive), else an alias."""
    if wanted is not None:
        if wanted in columns:
            return wanted
        folded = [c for c in columns if c.lower() == wanted.lower()]
        if len(folded) == 1:
            return folded[0]
        raise DataError(f"{where}: no {role} column {wanted!r}; its columns are "
                        f"{list(columns)} (choose one with {role}_column=, "
                        f"--{role}-column on the command line)")
    lowered = {c.lower(): c for c in reversed(list(columns))}  # first spelling wins
    for alias in aliases:
        if alias in lowered:
            return lowered[alias]
    if required:
        raise DataError(f"{where}: no {role} column (looked for {', '.join(aliases)}); its "
                        f"columns are {list(columns)}; name it with {role}_column= "
                        f"(--{role}-column on the command line)")
    return None


def _open_text(path: Path, encoding: str):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _encoding_error(path: Path, encoding: str, err: UnicodeDecodeError) -> DataError:
    return DataError(f"{path} is not valid {encoding} text ({err.reason} at byte {err.start}); "
                     f"pass another encoding, e.g. encoding='latin-1' (--encoding latin-1)")


def _base_suffix(path: Path) -> str:
    """``.csv`` for ``a.csv`` and ``a.csv.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


@dataclass
class _Table:
    """Columns of a CSV or JSON-lines file, as lists; ``lines`` numbers JSON records."""

    columns: dict[str, list[Any]]
    lines: list[int] | None = None


_MISSING = object()


def _read_table(path: Path, encoding: str) -> _Table:
    import pandas as pd

    sep = "\t" if _base_suffix(path) == ".tsv" else ","
    try:
        # Everything as text, and "" stays "" (a document called "NA" is a document).
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                            encoding=encoding, compression="infer")
    except UnicodeDecodeError as err:
        raise _encoding_error(path, encoding, err) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: no documents") from None
    except (pd.errors.ParserError, ValueError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{path}: cannot parse it as {'TSV' if sep == chr(9) else 'CSV'}: "
                        f"{' '.join(str(err).split())}") from None
    return _Table({str(column): frame[column].tolist() for column in frame.columns})


def _read_jsonl(path: Path, encoding: str) -> _Table:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    try:
        with _open_text(path, encoding) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as err:
                    raise DataError(f"{path}, line {number}: not valid JSON ({err})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}, line {number}: expected a JSON object per line, "
                                    f"got {type(record).__name__}")
                records.append(record)
                lines.append(number)
    except UnicodeDecodeError as err:
        raise _encoding_error(path, encoding, err) from None
    except (EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if not records:
        raise DataError(f"{path} holds no JSON records: no documents")
    names: dict[str, None] = {}  # every field of any record, in order of appearance
    for record in records:
        names.update(dict.fromkeys(record))
    # Kept as parsed (no DataFrame): an id 7 must not become "7.0" because a record lacks it.
    return _Table({name: [record.get(name, _MISSING) for record in records] for name in names},
                  lines)


def _column_values(table: _Table, column: str, path: Path) -> list[str]:
    """A column as strings; a JSON record without the field (or null) is an error."""
    out = []
    for row, value in enumerate(table.columns[column]):
        if value is _MISSING or value is None:
            where = f"line {table.lines[row]}" if table.lines is not None else f"row {row + 1}"
            raise DataError(f"{path}, {where}: no value for {column!r}")
        out.append(value if isinstance(value, str) else json.dumps(value))
    return out


def _read_table_corpus(path: Path, table: _Table, text_column: str | None,
                       label_column: str | None, id_column: str | None) -> Corpus:
    import numpy as np

    columns = list(table.columns)
    text = _find_column(columns, text_column, TEXT_COLUMNS, "text", str(path), True)
    label = _find_column(columns, label_column, LABEL_COLUMNS, "label", str(path), False)
    ident = _find_column(columns, id_column, ID_COLUMNS, "id", str(path), False)
    used = [c for c in (text, label, ident) if c is not None]
    if len(set(used)) != len(used):
        raise DataError(f"{path}: one column was given two roles (text {text!r}, label "
                        f"{label!r}, id {ident!r})")
    texts = _column_values(table, text, path)
    ids = (np.array(_column_values(table, ident, path), dtype=str) if ident is not None
           else np.arange(len(texts)).astype(str))
    labels = (np.array(_column_values(table, label, path), dtype=str) if label is not None
              else None)
    return Corpus(texts=texts, ids=ids, labels=labels, source=str(path))


def _read_folder(path: Path, encoding: str) -> Corpus:
    import numpy as np

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".txt"
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"{path} holds no .txt files: no documents")
    relative = [p.relative_to(path) for p in files]
    nested = [r for r in relative if len(r.parts) > 1]
    if nested and len(nested) != len(relative):
        top = next(r for r in relative if len(r.parts) == 1)
        raise DataError(f"{path} has .txt files both at its top level (e.g. {top}) and in "
                        f"subfolders (e.g. {nested[0].as_posix()}); put every file in a "
                        f"subfolder named by its label, or none")
    texts = []
    for file in files:
        try:
            texts.append(file.read_text(encoding=encoding))
        except UnicodeDecodeError as err:
            raise _encoding_error(file, encoding, err) from None
    ids = np.array([r.with_suffix("").as_posix() for r in relative], dtype=str)
    labels = np.array([r.parts[0] for r in relative], dtype=str) if nested else None
    return Corpus(texts=texts, ids=ids, labels=labels, source=str(path))


def read_corpus(source: str | os.PathLike, *, text_column: str | None = None,
                label_column: str | None = None, id_column: str | None = None,
                data_home: str | os.PathLike | None = None,
                encoding: str = "utf-8") -> Corpus:
    """Read documents from a dataset name, a CSV/TSV or JSON-lines file, or a folder.

    Parameters
    ----------
    source : str or os.PathLike
        One of:

        - a text dataset of :data:`matfact.datasets.DATASETS` (``"bbc-news"``),
          loaded with :func:`matfact.load_dataset`;
        - a ``.csv`` or ``.tsv`` file with a header line, or a ``.jsonl``
          (``.ndjson``, ``.json``) file of one JSON object per line; either may
          be gzipped (``.csv.gz``);
        - a folder of ``.txt`` files, one document each, searched recursively.
          If the files sit in subfolders, each document's label is the name of
          its top subfolder (``sport/001.txt`` → ``sport``).

        An existing path wins over a dataset of the same name.
    text_column : str, default=None
        The column (or JSON field) holding the text. By default the first of
        :data:`TEXT_COLUMNS` present (``text``, ``content``, ...).
    label_column : str, default=None
        The column holding a known class per document, used only to score the
        topics. By default the first of :data:`LABEL_COLUMNS` present
        (``label``, ``category``, ``class``, ``topic``), else none.
    id_column : str, default=None
        The column holding document ids. By default the first of
        :data:`ID_COLUMNS` present, else the 0-based row number.
    data_home : str or os.PathLike, default=None
        Directory searched first for datasets (see :func:`matfact.load_dataset`).
    encoding : str, default="utf-8"
        Encoding of files.

    Returns
    -------
    Corpus

    Raises
    ------
    FileNotFoundError
        If ``source`` is neither an existing path nor a dataset name.
    DataError
        If the file cannot be parsed, a named column is missing, or there are no
        documents.
    """
    from matfact.data.datasets import DATASETS, TextDataset

    spec = os.fspath(source)
    path = Path(spec).expanduser()
    if not path.exists():
        if spec.lower() not in DATASETS:
            raise FileNotFoundError(
                f"no such file or folder: {spec} (and no dataset of that name; the text "
                f"dataset is bbc-news)")
        if any(c is not None for c in (text_column, label_column, id_column)):
            raise ParameterError(f"text_column, label_column and id_column apply to files, "
                                 f"not to the dataset {spec!r}")
        import matfact

        # download=False: no text dataset is downloadable, and a MovieLens name must not
        # start a download only to be refused below.
        data = matfact.load_dataset(spec, data_home=data_home, download=False)
        if not isinstance(data, TextDataset):
            raise DataError(f"dataset {spec!r} holds {type(data).__name__}, not texts; the "
                            f"text dataset is bbc-news")
        return Corpus(texts=list(data.texts), ids=data.ids, labels=data.labels,
                      source=spec.lower())
    if path.is_dir():
        corpus = _read_folder(path, encoding)
    else:
        suffix = _base_suffix(path)
        if suffix in _CSV_SUFFIXES:
            table = _read_table(path, encoding)
        elif suffix in _JSONL_SUFFIXES:
            table = _read_jsonl(path, encoding)
        else:
            raise DataError(f"{path}: unknown kind of file {suffix!r}; give a .csv, .tsv or "
                            f".jsonl file (optionally .gz), or a folder of .txt files")
        corpus = _read_table_corpus(path, table, text_column, label_column, id_column)
    if len(corpus) == 0:
        raise DataError(f"{path} holds no documents")
    return corpus


# ------------------------------------------------------------------------------------ scores
def _check_pair(labels: Any, assignments: Any) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    labels, assignments = np.asarray(labels), np.asarray(assignments)
    if labels.ndim != 1 or assignments.ndim != 1 or len(labels) != len(assignments):
        raise DataError(f"labels and assignments must be 1-D of the same length, got shapes "
                        f"{labels.shape} and {assignments.shape}")
    if len(labels) == 0:
        raise DataError("labels and assignments are empty: nothing to score")
    return labels, assignments


def purity_score(labels: Any, assignments: Any) -> float:
    r"""The share of documents whose topic's most common label is their own.

    .. math::
        \text{purity} = \frac{1}{n} \sum_{t} \max_{c} \lvert D_t \cap L_c \rvert

    where :math:`D_t` are the documents assigned to topic :math:`t` and
    :math:`L_c` those of label :math:`c`. It is 1 when every topic holds one
    label only, and rewards many small topics (one topic per document scores
    1), so read it next to :func:`nmi_score`.

    Parameters
    ----------
    labels : array-like of shape (n_documents,)
        The true class of each document.
    assignments : array-like of shape (n_documents,)
        The topic (cluster) of each document.

    Returns
    -------
    float
        In (0, 1].

    Examples
    --------
    >>> purity_score(["a", "a", "b", "b", "b"], [0, 0, 0, 1, 1])
    0.8
    """
    from sklearn.metrics.cluster import contingency_matrix

    labels, assignments = _check_pair(labels, assignments)
    table = contingency_matrix(labels, assignments)  # labels x topics
    return float(table.max(axis=0).sum() / len(labels))


def nmi_score(labels: Any, assignments: Any) -> float:
    r"""Normalized mutual information between labels and topics.

    .. math::
        \text{NMI} = \frac{I(L; T)}{\tfrac12 \big(H(L) + H(T)\big)}

    (scikit-learn's :func:`~sklearn.metrics.normalized_mutual_info_score`
    with the arithmetic mean): 1 when topics and labels are the same partition
    up to renaming, near 0 when independent. Unlike purity it penalizes
    splitting a label over several topics.

    Parameters
    ----------
    labels : array-like of shape (n_documents,)
    assignments : array-like of shape (n_documents,)

    Returns
    -------
    float
        In [0, 1].

    Examples
    --------
    >>> nmi_score(["a", "a", "b", "b"], [1, 1, 0, 0])
    1.0
    """
    from sklearn.metrics import normalized_mutual_info_score

    labels, assignments = _check_pair(labels, assignments)
    return float(normalized_mutual_info_score(labels, assignments))


# ------------------------------------------------------------------------------------ model
@dataclass(frozen=True, eq=False)
class TopicModel:
    """The topics :func:`fit_topics` found, and how the documents spread over them.

    Attributes
    ----------
    vectorizer : sklearn.feature_extraction.text.TfidfVectorizer
        The fitted TF-IDF vectorizer.
    model : NMF
        The fitted NMF; ``model.components_`` is :math:`H`, of shape
        (n_topics, n_terms).
    vocabulary : ndarray of shape (n_terms,), dtype str
        The term of each column of :math:`X` and :math:`H`.
    document_topics : ndarray of shape (n_documents, n_topics)
        :math:`W`: the weight of each topic in each document.
    top_words : list of list of str
        For each topic, its ``top_words`` heaviest terms, heaviest first.
    top_word_weights : ndarray of shape (n_topics, top_words)
        Their weights in :math:`H`.
    assignments : ndarray of shape (n_documents,), dtype int
        Each document's topic, the argmax of its row of :math:`W` (0-based); -1
        for a document none of whose terms is in the vocabulary (a zero row).
    shares : ndarray of shape (n_topics,)
        The share of all documents assigned to each topic; sums to 1 unless
        some documents have no topic.
    ids : ndarray of shape (n_documents,), dtype str
        The document ids.
    labels : ndarray of shape (n_documents,), dtype str, or None
        The known class of each document, if given.
    nmi : float or None
        :func:`nmi_score` of ``labels`` and ``assignments`` (None without labels).
    purity : float or None
        :func:`purity_score` of ``labels`` and ``assignments``.
    loss : str
        The NMF loss, a key of :data:`LOSSES`.
    """

    vectorizer: Any
    model: Any
    vocabulary: np.ndarray
    document_topics: np.ndarray
    top_words: list[list[str]]
    top_word_weights: np.ndarray
    assignments: np.ndarray
    shares: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    nmi: float | None
    purity: float | None
    loss: str

    @property
    def n_topics(self) -> int:
        """Number of topics, :math:`k`."""
        return int(self.document_topics.shape[1])

    @property
    def topic_words(self) -> np.ndarray:
        """:math:`H`, of shape (n_topics, n_terms): each topic's weight on each term."""
        return self.model.components_

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Topic weights of new documents, with the vocabulary and topics kept fixed.

        Parameters
        ----------
        texts : sequence of str

        Returns
        -------
        ndarray of shape (n_texts, n_topics)
        """
        texts = _as_texts(texts)
        return self.model.transform(self.vectorizer.transform(texts))

    def topic_labels(self) -> list[tuple[str, float]] | None:
        """For each topic, its most common label and that label's share of the topic.

        Returns
        -------
        list of (str, float), or None
            ``("", 0.0)`` for a topic no document was assigned to; None without
            labels.
        """
        if self.labels is None:
            return None
        from collections import Counter

        found = []
        for topic in range(self.n_topics):
            counts = Counter(self.labels[self.assignments == topic].tolist())
            if not counts:
                found.append(("", 0.0))
                continue
            label, count = counts.most_common(1)[0]
            found.append((label, count / sum(counts.values())))
        return found

    def to_frame(self) -> pd.DataFrame:
        """The document-topic weights as a table: ``id``, ``label`` (if any), ``topic_1``...

        Returns
        -------
        pandas.DataFrame of shape (n_documents, n_topics + 1 or 2)
        """
        import pandas as pd

        columns: dict[str, Any] = {"id": self.ids}
        if self.labels is not None:
            columns["label"] = self.labels
        for topic in range(self.n_topics):
            columns[f"topic_{topic + 1}"] = self.document_topics[:, topic]
        return pd.DataFrame(columns)


def _as_texts(texts: Any) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise DataError("texts must be a sequence of documents, not a single string; wrap it "
                        "in a list")
    try:
        texts = list(texts)
    except TypeError:
        raise DataError(f"texts must be a sequence of str, got {type(texts).__name__}") \
            from None
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"texts must be str; document {bad} is "
                        f"{type(texts[bad]).__name__}")
    return texts


def _check_df(name: str, value: Any) -> None:
    import numbers

    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1) \
        or (isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral))
            and 0.0 <= value <= 1.0)
    if not ok:
        raise ParameterError(f"{name} must be a document count (an integer >= 1) or a "
                             f"proportion (a float in [0, 1]), got {value!r}")


def _check_int(name: str, value: Any, low: int, allow_none: bool = False) -> None:
    import numbers

    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        none = " or None" if allow_none else ""
        raise ParameterError(f"{name} must be an integer >= {low}{none}, got {value!r}")


def fit_topics(texts: Any, n_topics: int = 5, *, loss: str = "frobenius",
               labels: Any = None, ids: Any = None, top_words: int = 10,
               max_features: int | None = None, min_df: int | float = 5,
               max_df: int | float = 0.5, sublinear_tf: bool = True,
               init: str | None = None, max_iter: int | None = None, tol: float = 1e-4,
               alpha_W: float = 0.0, alpha_H: float = 0.0,  # noqa: N803 - scikit-learn's names
               l1_ratio: float = 0.0, random_state: Any = 0) -> TopicModel:
    r"""Find ``n_topics`` topics in documents with TF-IDF and NMF.

    The documents become a TF-IDF matrix :math:`X` of shape
    (n_documents, n_terms): lower-cased words of two or more letters,
    English stop words removed, terms kept if they occur in at least
    ``min_df`` and at most ``max_df`` documents, weighted

    .. math::
        x_{dj} \propto \mathrm{tf}(d, j)\, \Big(1 + \ln\frac{1 + n}{1 + \mathrm{df}(j)}\Big),
        \qquad \lVert x_{d\cdot} \rVert_2 = 1,

    with :math:`\mathrm{tf} = 1 + \ln(\text{count})` when ``sublinear_tf``.
    NMF then finds :math:`W \ge 0, H \ge 0` minimizing

    .. math::
        \tfrac12 \lVert X - WH \rVert_F^2 \quad\text{(loss="frobenius", coordinate descent)}

    or :math:`\sum_{dj} x_{dj} \ln\frac{x_{dj}}{(WH)_{dj}} - x_{dj} + (WH)_{dj}`
    (``loss="kullback-leibler"``, multiplicative updates), plus the optional
    :math:`\alpha`/``l1_ratio`` penalties of scikit-learn's NMF.

    Parameters
    ----------
    texts : sequence of str, or Corpus or TextDataset
        The documents. A :class:`Corpus` or :class:`~matfact.datasets.TextDataset`
        also gives ``labels`` and ``ids`` unless they are passed.
    n_topics : int, default=5
        Number of topics :math:`k`, from 1 to the number of documents (and of
        terms).
    loss : {"frobenius", "kullback-leibler"}, default="frobenius"
        The NMF objective (see :data:`LOSSES`).
    labels : array-like of shape (n_documents,), default=None
        Known classes, used only to score the topics (:func:`nmi_score`,
        :func:`purity_score`).
    ids : array-like of shape (n_documents,), default=None
        Document ids; by default ``"0"``, ``"1"``, ...
    top_words : int, default=10
        How many terms to list per topic.
    max_features : int, default=None
        Keep only the most frequent terms (after the ``min_df``/``max_df`` cut).
    min_df : int or float, default=5
        Drop terms found in fewer documents (an int) or a smaller share of them
        (a float): rare terms are names and typos, no topic.
    max_df : int or float, default=0.5
        Drop terms found in more documents (a float: share): words common to
        every subject ("said", "year") would otherwise rank high in every topic.
    sublinear_tf : bool, default=True
        Use :math:`1 + \ln(\text{count})` for term frequency, so one word
        repeated in a document does not dominate it.
    init : {"nndsvd", "nndsvda", "nndsvdar", "random"}, default=None
        NMF initialization; by default ``"nndsvd"`` for the Frobenius loss and
        ``"nndsvda"`` for Kullback-Leibler (multiplicative updates cannot move
        the exact zeros ``"nndsvd"`` starts with).
    max_iter : int, default=None
        NMF iterations; by default 400 for Frobenius and 1000 for
        Kullback-Leibler.
    tol : float, default=1e-4
        NMF stopping tolerance.
    alpha_W, alpha_H, l1_ratio : float, default=0.0
        Regularization of :math:`W` and :math:`H`, as in scikit-learn's NMF.
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the NMF initialization (used by ``"nndsvdar"`` and ``"random"``;
        the default ``"nndsvd"``/``"nndsvda"`` starts are deterministic).

    Returns
    -------
    TopicModel

    Raises
    ------
    DataError
        If there are no documents, no term survives the vocabulary cuts, or
        ``labels`` / ``ids`` do not have one entry per document.
    ParameterError
        If ``n_topics``, ``loss``, ``min_df``/``max_df`` or another parameter is
        out of range.

    Examples
    --------
    >>> from matfact.apps.topics import fit_topics, read_corpus
    >>> corpus = read_corpus("bbc-news")  # doctest: +SKIP
    >>> result = fit_topics(corpus, n_topics=5)  # doctest: +SKIP
    >>> result.top_words[0][:3], round(result.nmi, 2)  # doctest: +SKIP
    (['people', 'technology', 'users'], 0.85)
    """
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    if hasattr(texts, "texts") and not isinstance(texts, (str, bytes)):
        labels = getattr(texts, "labels", None) if labels is None else labels
        ids = getattr(texts, "ids", None) if ids is None else ids
        texts = texts.texts
    texts = _as_texts(texts)
    n_docs = len(texts)
    if n_docs == 0:
        raise DataError("the corpus is empty: no documents to find topics in")
    if loss not in LOSSES:
        raise ParameterError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got "
                             f"{loss!r}")
    _check_int("n_topics", n_topics, 1)
    if n_topics > n_docs:
        raise ParameterError(f"n_topics={n_topics} exceeds the number of documents "
                             f"({n_docs}); ask for at most {n_docs} topics")
    _check_int("top_words", top_words, 1)
    _check_int("max_features", max_features, 1, allow_none=True)
    _check_int("max_iter", max_iter, 1, allow_none=True)
    _check_df("min_df", min_df)
    _check_df("max_df", max_df)
    if labels is not None:
        labels = np.asarray(labels).astype(str)
        if labels.shape != (n_docs,):
            raise DataError(f"labels must have one entry per document ({n_docs}), got shape "
                            f"{labels.shape}")
    if ids is None:
        ids = np.arange(n_docs).astype(str)
    else:
        ids = np.asarray(ids).astype(str)
        if ids.shape != (n_docs,):
            raise DataError(f"ids must have one entry per document ({n_docs}), got shape "
                            f"{ids.shape}")

    vectorizer = TfidfVectorizer(stop_words="english", token_pattern=TOKEN_PATTERN,
                                 min_df=min_df, max_df=max_df, max_features=max_features,
                                 sublinear_tf=sublinear_tf)
    try:
        X = vectorizer.fit_transform(texts)
    except ValueError as err:  # empty vocabulary, or max_df below min_df
        text = str(err)
        if "empty vocabulary" in text or "no terms remain" in text:
            raise DataError(
                f"no term is left to build topics from ({n_docs} document(s), min_df="
                f"{min_df!r}, max_df={max_df!r}): the documents are empty or only stop "
                f"words, or the cuts remove every term; lower min_df or raise max_df"
            ) from None
        raise ParameterError(f"min_df={min_df!r} and max_df={max_df!r} contradict each other "
                             f"for {n_docs} documents: {text}") from None
    vocabulary = vectorizer.get_feature_names_out().astype(str)
    if n_topics > len(vocabulary):
        raise ParameterError(f"n_topics={n_topics} exceeds the number of terms kept "
                             f"({len(vocabulary)}); ask for fewer topics or lower min_df")

    solver = LOSSES[loss]
    if init is None:
        init = "nndsvd" if solver == "cd" else "nndsvda"
    if max_iter is None:
        max_iter = 400 if solver == "cd" else 1000
    model = _make_nmf(n_components=n_topics, init=init, solver=solver, beta_loss=loss,
                      tol=tol, max_iter=max_iter, alpha_W=alpha_W, alpha_H=alpha_H,
                      l1_ratio=l1_ratio, random_state=random_state)
    W = model.fit_transform(X)
    H = model.components_

    n_top = min(top_words, len(vocabulary))
    order = np.argsort(-H, axis=1, kind="stable")[:, :n_top]
    top = [vocabulary[row].tolist() for row in order]
    top_weights = np.take_along_axis(H, order, axis=1)
    assignments = np.where(W.max(axis=1) > 0, W.argmax(axis=1), -1)
    shares = np.bincount(assignments[assignments >= 0], minlength=n_topics) / n_docs
    nmi = purity = None
    if labels is not None:
        nmi = nmi_score(labels, assignments)
        purity = purity_score(labels, assignments)
    return TopicModel(vectorizer=vectorizer, model=model, vocabulary=vocabulary,
                      document_topics=W, top_words=top, top_word_weights=top_weights,
                      assignments=assignments, shares=shares, ids=ids, labels=labels,
                      nmi=nmi, purity=purity, loss=loss)


# ------------------------------------------------------------------------------------ plot
def plot_topics(result: TopicModel, path: str | os.PathLike, *, title: str | None = None,
                n_words: int | None = None, columns: int | None = None) -> Path:
    """Draw each topic's top words as horizontal bars of their weights, in one figure.

    One panel per topic, heaviest word on top, titled with the topic's share of
    documents and, with labels, its most common label.

    Parameters
    ----------
    result : TopicModel
    path : str or os.PathLike
        Where to write the figure: PNG unless the suffix is ``.svg`` or ``.pdf``.
        Written atomically; the parent directory must exist.
    title : str, default=None
        A title over the panels.
    n_words : int, default=None
        Words per panel; by default all of ``result.top_words``.
    columns : int, default=None
        Panels per row; by default up to 5.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from matfact.plots import MODEL_COLORS

    k = result.n_topics
    n_words = result.top_word_weights.shape[1] if n_words is None else \
        max(1, min(n_words, result.top_word_weights.shape[1]))
    ncols = min(k, 5) if columns is None else max(1, min(columns, k))
    nrows = math.ceil(k / ncols)
    fig = Figure(figsize=(2.5 * ncols, nrows * (0.7 + 0.19 * n_words) + (0.5 if title else 0.1)),
                 dpi=_DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    dominant = result.topic_labels()
    for slot, ax in enumerate(axes.flat):
        if slot >= k:
            ax.set_visible(False)
            continue
        words = result.top_words[slot][:n_words]
        weights = result.top_word_weights[slot, :n_words]
        positions = np.arange(len(words))
        ax.barh(positions, weights, height=0.7, color=MODEL_COLORS[slot % len(MODEL_COLORS)],
                zorder=2)
        ax.set_yticks(positions)
        ax.set_yticklabels(words, fontsize=8.5, color=_INK)
        ax.set_ylim(len(words) - 0.4, -0.6)  # heaviest word on top
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelsize=7, colors=_MUTED, length=0)
        ax.grid(axis="x", color=_GRID, linewidth=0.8, zorder=0)
        ax.set_axisbelow(True)
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
        ax.spines["left"].set_color("#BBBBBB")
        heading = f"Topic {slot + 1} · {100 * result.shares[slot]:.0f}% of docs"
        if dominant is not None and dominant[slot][0]:
            label, share = dominant[slot]
            heading += f"\n{share:.0%} {label}"
        ax.set_title(heading, loc="left", fontsize=9, fontweight="bold", color=_INK)
    fig.supxlabel("weight of the word in the topic (row of H)", fontsize=8, color=_MUTED)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold", color=_INK)
    from matfact.plots import save_figure

    save_figure(fig, path, dpi=_DPI)
    return path


# ------------------------------------------------------------------------------------ CLI
_EXAMPLES = """examples:
  matfact topics --data bbc-news -k 5 --out topics/
  matfact topics --data articles.csv --text-column body --label-column section -k 8
  matfact topics --data corpus/ --loss kullback-leibler --top-words 15"""


def _df_option(text: str) -> int | float:
    """``--min-df``/``--max-df``: ``5`` is a document count, ``0.5`` a proportion."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a document count (e.g. 5) or a proportion (e.g. 0.5), got {text!r}"
        ) from None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``matfact topics`` to ``parser`` (imports nothing heavy).

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser; its handler should call :func:`run`.
    """
    import textwrap

    if parser.description is None:
        parser.description = textwrap.fill(
            "Find topics in documents: TF-IDF, then NMF. Prints each topic's top words and "
            "share of documents (and NMI/purity against known labels), and writes topics.png "
            "(top words per topic) and document_topics.csv (topic weights per document).", 78)
    if parser.epilog is None:
        parser.epilog = _EXAMPLES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    data = parser.add_argument_group("data", textwrap.fill(
        "--data is bbc-news, a .csv/.tsv/.jsonl file (optionally .gz) with a text column, or "
        "a folder of .txt files (labels = subfolder names).", 78, break_on_hyphens=False))
    data.add_argument("--data", required=True, metavar="NAME_OR_PATH",
                      help="the documents")
    data.add_argument("--text-column", metavar="COL",
                      help="column/field with the text (default: text, content, body, ...)")
    data.add_argument("--label-column", metavar="COL",
                      help="column/field with known classes, to score the topics (default: "
                           "label, category, class or topic if present)")
    data.add_argument("--id-column", metavar="COL",
                      help="column/field with document ids (default: id if present, else the "
                           "row number)")
    data.add_argument("--encoding", default="utf-8", help="text encoding (default: utf-8)")
    data.add_argument("--data-home", metavar="DIR",
                      help="directory searched first for datasets")
    model = parser.add_argument_group("topics")
    model.add_argument("-k", "--topics", dest="k", type=int, default=5,
                       help="number of topics (default: 5)")
    model.add_argument("--loss", default="frobenius", choices=tuple(LOSSES),
                       help="NMF loss: frobenius (coordinate descent) or kullback-leibler "
                            "(multiplicative updates) (default: frobenius)")
    model.add_argument("--top-words", type=int, default=10, metavar="N",
                       help="words listed per topic (default: 10)")
    model.add_argument("--min-df", type=_df_option, default=5, metavar="N_OR_SHARE",
                       help="drop terms in fewer documents (count) or a smaller share "
                            "(0..1) (default: 5)")
    model.add_argument("--max-df", type=_df_option, default=0.5, metavar="N_OR_SHARE",
                       help="drop terms in more documents (count) or a larger share (0..1) "
                            "(default: 0.5)")
    model.add_argument("--max-features", type=int, metavar="N",
                       help="keep only the N most frequent terms (default: all)")
    model.add_argument("--init", choices=("nndsvd", "nndsvda", "nndsvdar", "random"),
                       help="NMF initialization (default: nndsvd for frobenius, nndsvda for "
                            "kullback-leibler)")
    model.add_argument("--max-iter", type=int, metavar="N",
                       help="NMF iterations (default: 400 for frobenius, 1000 for "
                            "kullback-leibler)")
    model.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", default="matfact-topics", metavar="DIR",
                        help="directory for topics.png and document_topics.csv, created if "
                             "missing (default: ./matfact-topics)")


def _usage_error(message: str) -> Exception:
    """The CLI's usage error (exit status 2) when it is importable, else a ParameterError."""
    try:
        from matfact.cli import UsageError
    except ImportError:  # pragma: no cover - the CLI ships with the package
        return ParameterError(message)
    return UsageError(message)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g",
                                                 quoting=csv.QUOTE_MINIMAL))


def run(args: argparse.Namespace) -> int:
    """Run ``matfact topics`` with the options :func:`configure_parser` defined.

    Prints the top words and share of documents of each topic (with labels:
    each topic's most common label, NMI and purity) to stdout, and writes
    ``topics.png`` and ``document_topics.csv`` into ``args.out``.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        0 on success; errors are raised (:class:`~matfact.DataError`,
        :class:`~matfact.ParameterError`, ``FileNotFoundError``) for the CLI to
        report.
    """
    if args.k < 1:
        raise _usage_error(f"-k must be at least 1, got {args.k}")
    if args.top_words < 1:
        raise _usage_error(f"--top-words must be at least 1, got {args.top_words}")
    if args.max_features is not None and args.max_features < 1:
        raise _usage_error(f"--max-features must be at least 1, got {args.max_features}")
    for option in ("min_df", "max_df"):
        try:
            _check_df(option, getattr(args, option))
        except ParameterError as err:
            raise _usage_error(str(err).replace(option, "--" + option.replace("_", "-"),
                                                1)) from None
    quiet = bool(getattr(args, "quiet", False))
    corpus = read_corpus(args.data, text_column=args.text_column,
                         label_column=args.label_column, id_column=args.id_column,
                         data_home=args.data_home, encoding=args.encoding)
    if not quiet:
        print(f"Read {len(corpus):,} documents from {corpus.source}", file=sys.stderr)
    result = fit_topics(corpus, args.k, loss=args.loss, top_words=args.top_words,
                        min_df=args.min_df, max_df=args.max_df,
                        max_features=args.max_features, init=args.init,
                        max_iter=args.max_iter, random_state=args.seed)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    print(f"{result.n_topics} NMF topics ({result.loss} loss) of {len(corpus):,} documents "
          f"from {corpus.source}, {len(result.vocabulary):,} terms")
    print()
    dominant = result.topic_labels()
    headers = ["topic", "share"] + (["mostly"] if dominant is not None else []) + ["top words"]
    rows = []
    for topic in range(result.n_topics):
        row = [str(topic + 1), f"{100 * result.shares[topic]:.1f}%"]
        if dominant is not None:
            label, share = dominant[topic]
            row.append(f"{label} ({share:.0%})" if label else "-")
        row.append(", ".join(result.top_words[topic]))
        rows.append(row)
    print(format_table(headers, rows, right={0, 1}))
    unassigned = int((result.assignments < 0).sum())
    if unassigned:
        print(f"{unassigned:,} document(s) have no term in the vocabulary and no topic")
    if result.nmi is not None:
        print()
        print(f"Against the {len(set(result.labels.tolist()))} labels: NMI {result.nmi:.4f}, "
              f"purity {result.purity:.4f}")
    png = plot_topics(result, out / "topics.png",
                      title=f"{result.n_topics} NMF topics of {Path(corpus.source).name}")
    csv_path = out / "document_topics.csv"
    _write_csv(result.to_frame(), csv_path)
    print()
    print(f"Wrote the top words plot to {png} and the document-topic weights to {csv_path}")
    return 0
