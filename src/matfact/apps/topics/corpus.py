"""Reading a corpus: a text dataset, a CSV/TSV or JSON-lines file, or a folder of ``.txt`` files."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np

__all__ = ["Corpus", "ID_COLUMNS", "LABEL_COLUMNS", "TEXT_COLUMNS", "read_corpus"]

#: Column names tried, in order, when no text / label / id column is named
#: (compared case-insensitively).
TEXT_COLUMNS = ("text", "content", "body", "document", "article")
LABEL_COLUMNS = ("label", "category", "class", "topic")
ID_COLUMNS = ("id", "doc_id", "document_id", "docid")

_CSV_SUFFIXES = (".csv", ".tsv")
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


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


@dataclass
class _Table:
    """Columns of a CSV or JSON-lines file, as lists; ``lines`` numbers JSON records."""

    columns: dict[str, list[Any]]
    lines: list[int] | None = None


_MISSING = object()


def _read_table(path: Path, encoding: str) -> _Table:
    from matfact.data.readers import base_suffix, read_delimited

    sep = "\t" if base_suffix(path) == ".tsv" else ","
    # Everything as text, and "" stays "" (a document called "NA" is a document).
    frame = read_delimited(path, sep=sep, encoding=encoding, as_text=True)
    return _Table({str(column): frame[column].tolist() for column in frame.columns})


def _read_jsonl(path: Path, encoding: str) -> _Table:
    from matfact.data.readers import iter_lines

    records: list[dict[str, Any]] = []
    lines: list[int] = []
    # iter_lines bounds memory (line length, decompressed size), skips a byte-order mark
    # and turns decoding errors and broken .gz files into DataErrors naming the file.
    for number, line in iter_lines(path, encoding):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as err:  # RecursionError: [[[[... nested deep
            raise DataError(f"{path}, line {number}: not valid JSON "
                            f"({type(err).__name__}: {str(err)[:200]})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object per line, "
                            f"got {type(record).__name__}")
        records.append(record)
        lines.append(number)
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

    from matfact.data.readers import encoding_error

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
            texts.append(file.read_text(encoding=encoding).removeprefix("\ufeff"))
        except UnicodeError as err:
            raise encoding_error(file, encoding, err) from None
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
    from matfact.data.readers import base_suffix

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
        suffix = base_suffix(path)
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
