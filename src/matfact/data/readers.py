"""The one reader of data files: delimited text (plain, ``.gz``, ``.bz2``, ``.xz``) and Parquet.

Everything that reads a table from disk goes through here, so a file behaves
the same whether it reaches matfact through :meth:`Interactions.from_csv
<matfact.data.Interactions.from_csv>`, :meth:`~matfact.data.Interactions.from_parquet`,
the ``matfact`` command line or :func:`matfact.apps.topics.read_corpus`:

- :func:`check_file`, :func:`check_encoding`: the path exists, the encoding is known;
- :func:`open_text`, :func:`base_suffix`, :func:`is_parquet`: compressed files
  are decompressed by suffix (``ratings.csv.gz`` is a ``.csv``);
- :func:`sniff`: the layout of a delimited file from its first non-empty line
  (separator among tab, ``,``, ``;``, ``|``, else whitespace; a header unless
  every field is a number), as a :class:`Layout`;
- :func:`resolve_column`, :func:`detect_columns`: columns by header name
  (case-insensitive), by 0-based position, or by the usual names of each role
  (:data:`COLUMN_NAMES`);
- :func:`read_delimited`, :func:`read_parquet`, :func:`parquet_columns`: the
  pandas readers, with every failure turned into a one-line
  :class:`~matfact.DataError` that names the file (and, for text, the encoding fix).

Only the standard library is imported here; pandas and pyarrow are imported by
the functions that read.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import pandas as pd

__all__ = [
    "COLUMN_NAMES",
    "COMPRESSIONS",
    "PARQUET_SUFFIXES",
    "SEPARATORS",
    "WHITESPACE",
    "Layout",
    "base_suffix",
    "check_encoding",
    "check_file",
    "detect_columns",
    "encoding_error",
    "first_line",
    "is_parquet",
    "open_text",
    "parquet_columns",
    "read_delimited",
    "read_parquet",
    "resolve_column",
    "sniff",
    "sniff_separator",
    "split_fields",
]

#: Compressed text files, decompressed by suffix.
COMPRESSIONS = (".gz", ".bz2", ".xz")
#: Suffixes of Parquet files (or of a folder holding a Parquet dataset).
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Separators :func:`sniff_separator` chooses from, in order of preference on ties.
SEPARATORS = ("\t", ",", ";", "|")
#: The separator of a file whose fields are separated by runs of spaces or tabs.
WHITESPACE = r"\s+"

#: Header names recognised for each column role of interaction data (compared
#: case-insensitively, ignoring ``_``, ``-`` and spaces).
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "userid", "user_id", "visitorid", "visitor", "customer", "customerid"),
    "item": ("item", "itemid", "item_id", "movieid", "movie_id", "movie", "product",
             "productid", "game", "gameid", "book", "bookid", "isbn", "track", "trackid",
             "song", "songid", "artist", "artistid"),
    "rating": ("rating", "score", "stars"),
    "timestamp": ("timestamp", "time", "ts"),
    "weight": ("weight", "count", "plays", "hours"),
}
#: Position of each role in a headerless file when no column is named (MovieLens' u.data).
ROLE_POSITIONS = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}


# ------------------------------------------------------------------------------ files
def check_file(path: str | os.PathLike, *, allow_dir: bool = False) -> str:
    """``path`` as a string, after checking it exists (and is no folder, unless allowed).

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path``.
    DataError
        If ``path`` is a folder and ``allow_dir`` is false.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path) and not allow_dir:
        raise DataError(f"{path} is a directory, not a file")
    return path


def check_encoding(encoding: Any) -> str:
    """``encoding`` if Python knows it, else a :class:`~matfact.ParameterError`."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):  # pandas and open() would raise a bare LookupError
        raise ParameterError(f"encoding={encoding!r} is not a known text encoding; use "
                             f"e.g. 'utf-8' or 'latin-1'") from None
    return encoding


def base_suffix(path: str | os.PathLike) -> str:
    """The lower-case suffix under any compression: ``.csv`` for ``a.csv`` and ``a.CSV.gz``."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def is_parquet(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Parquet file or dataset (by its suffix)."""
    return Path(path).suffix.lower() in PARQUET_SUFFIXES


def open_text(path: str | os.PathLike, encoding: str) -> IO[str]:
    """Open a text file for reading, decompressing ``.gz``, ``.bz2`` and ``.xz``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding=encoding, newline="")
    if suffix == ".bz2":
        import bz2

        return bz2.open(path, "rt", encoding=encoding, newline="")
    if suffix == ".xz":
        import lzma

        return lzma.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def encoding_error(path: str | os.PathLike, encoding: str,
                   err: UnicodeDecodeError) -> DataError:
    """The error for a file that is not text in ``encoding``, with the fix in both spellings."""
    return DataError(f"{os.fspath(path)} is not valid {encoding} text ({err.reason} at byte "
                     f"{err.start}); pass another encoding, e.g. encoding='latin-1' "
                     f"(--encoding latin-1)")


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a broken or truncated (compressed) file raises while it is read."""
    import lzma
    import zlib

    return (OSError, EOFError, lzma.LZMAError, zlib.error)


# ------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class Layout:
    """How a delimited file is laid out, as :func:`sniff` found it.

    Attributes
    ----------
    sep : str
        The field separator (:data:`WHITESPACE` for runs of blanks).
    names : list of str or None
        The header's column names, or None for a file without a header line.
    n_fields : int
        Fields on the first line.
    """

    sep: str
    names: list[str] | None
    n_fields: int

    @property
    def header(self) -> bool:
        """Whether the file starts with a header line."""
        return self.names is not None


def first_line(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The first non-blank line of a text file, without its line end.

    Raises
    ------
    DataError
        If the file is empty, binary (NUL bytes), not valid ``encoding`` text or
        a broken compressed file.
    """
    check_encoding(encoding)
    try:
        with open_text(path, encoding) as handle:
            for line in handle:
                if line.strip():
                    if "\x00" in line:
                        raise DataError(f"{os.fspath(path)} does not look like a text file "
                                        f"(NUL bytes)")
                    return line.rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise encoding_error(path, encoding, err) from None
    except _read_errors() as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"cannot read {os.fspath(path)}: {err}") from None
    raise DataError(f"{os.fspath(path)} is empty")


def sniff_separator(path: str | os.PathLike, line: str) -> str:
    """The separator of ``line``: tab for ``.tsv``, else the most frequent of :data:`SEPARATORS`.

    Ties go to the earlier candidate; a line with none of them is split on
    whitespace if that gives several fields, else read as one ``,`` column.
    """
    if base_suffix(path) == ".tsv":
        return "\t"
    counts = {sep: line.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])
    if counts[best]:
        return best
    return WHITESPACE if len(line.split()) > 1 else ","


def split_fields(line: str, sep: str) -> list[str]:
    """The fields of one line (CSV quoting understood), stripped of blanks."""
    if sep == WHITESPACE:
        return line.split()
    if len(sep) == 1:
        import csv

        return [field.strip() for field in next(csv.reader([line], delimiter=sep))]
    import re

    return [field.strip() for field in re.split(sep, line)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def sniff(path: str | os.PathLike, *, sep: str | None = None, header: bool | None = None,
          encoding: str = "utf-8") -> Layout:
    """Find the layout of a delimited text file from its first non-blank line.

    Parameters
    ----------
    path : str or os.PathLike
    sep : str, default=None
        The separator if known (``"\\t"``, ``"tab"`` and ``"TAB"`` mean a tab);
        by default :func:`sniff_separator`.
    header : bool, default=None
        Whether the file has a header line; by default it has one unless every
        field of the first line is a number.
    encoding : str, default="utf-8"

    Returns
    -------
    Layout

    Raises
    ------
    DataError
        If the first line cannot be read (see :func:`first_line`) or the header
        repeats a column name.
    """
    line = first_line(path, encoding)
    if sep is None:
        sep = sniff_separator(path, line)
    elif sep in ("\\t", "tab", "TAB"):
        sep = "\t"
    fields = split_fields(line, sep)
    if header is None:
        header = not all(_is_number(field) for field in fields)
    names = fields if header else None
    if names is not None and len(set(names)) != len(names):
        raise DataError(f"{os.fspath(path)}: repeated column names in the header {names}")
    return Layout(sep=sep, names=names, n_fields=len(fields))


# ------------------------------------------------------------------------------ columns
def _normalized(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch not in "_- ")


def resolve_column(spec: str | int, names: list[str] | None, n_fields: int,
                   path: str | os.PathLike, *, option: str) -> str | int:
    """A column given by a user → a header name, or a 0-based position when headerless.

    ``spec`` matches a header name exactly, then case-insensitively, then as a
    0-based position. ``option`` is how the caller spells the parameter in
    messages (``"--user-col"``, ``"user="``).

    Raises
    ------
    ParameterError
        If no column matches.
    """
    where = os.fspath(path)
    text = str(spec)
    if names is None:
        if not text.strip().lstrip("-").isdigit():
            raise ParameterError(f"{where} has no header, so {option} must be a column number "
                                 f"(0-based), got {text!r}")
        position = int(text)
        if not 0 <= position < n_fields:
            raise ParameterError(f"{option} {position} is out of range: {where} has "
                                 f"{n_fields} column(s), numbered from 0")
        return position
    if text in names:
        return text
    folded = [name for name in names if name.lower() == text.lower()]
    if len(folded) == 1:
        return folded[0]
    if text.isdigit() and int(text) < len(names):
        return names[int(text)]
    raise ParameterError(f"{option}: no column {text!r} in {where}; its columns are {names}")


def detect_columns(path: str | os.PathLike, names: list[str] | None, n_fields: int,
                   given: Mapping[str, str | int | None], *, skip: tuple[str, ...] = (),
                   option: str = "--{role}-col") -> dict[str, str | int | None]:
    """Map each role of :data:`COLUMN_NAMES` to a column, or to None if the file has none.

    A role in ``given`` is resolved with :func:`resolve_column`; the others are
    found by their usual header names, or, in a headerless file where no column
    was given, by position (:data:`ROLE_POSITIONS`). Roles in ``skip`` are left
    out unless given.

    Raises
    ------
    ParameterError
        If a given column does not exist or one column would play two roles.
    """
    roles: dict[str, str | int | None] = {}
    for role in COLUMN_NAMES:
        spec = given.get(role)
        roles[role] = None if spec is None else resolve_column(
            spec, names, n_fields, path, option=option.format(role=role))
    explicit = any(spec is not None for spec in given.values())
    for role in COLUMN_NAMES:
        if roles[role] is not None or role in skip:
            continue
        if names is not None:
            aliases = {_normalized(alias) for alias in COLUMN_NAMES[role]}
            matches = [name for name in names if _normalized(name) in aliases]
            roles[role] = matches[0] if matches else None
        elif not explicit and role in ROLE_POSITIONS and ROLE_POSITIONS[role] < n_fields:
            roles[role] = ROLE_POSITIONS[role]
    taken = [column for column in roles.values() if column is not None]
    if len(taken) != len(set(taken)):
        raise ParameterError(f"one column of {os.fspath(path)} was given two roles: {roles}")
    return roles


# ------------------------------------------------------------------------------ reading
def _describe(sep: Any) -> str:
    return {",": "CSV", "\t": "TSV"}.get(sep, f"{sep!r}-separated data")


def read_delimited(path: str | os.PathLike, *, sep: str = ",", header: int | None | str = "infer",
                   names: list[str] | None = None, usecols: list[str | int] | None = None,
                   encoding: str = "utf-8", comment: str | None = None,
                   as_text: bool = False) -> pd.DataFrame:
    """Read a delimited text file (compressed by suffix) with pandas' C parser.

    Parameters
    ----------
    path : str or os.PathLike
    sep, header, names, usecols, encoding, comment
        As in :func:`pandas.read_csv` (``usecols`` by name or position).
    as_text : bool, default=False
        Keep every field as text, and an empty field as ``""`` (not NaN), as
        for documents; by default numbers are parsed and blanks after a
        separator skipped.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ParameterError
        If ``encoding`` is unknown.
    DataError
        If the file is empty, not valid ``encoding`` text, broken, or cannot be
        parsed (including a ``usecols`` column it lacks).
    """
    import pandas as pd

    check_encoding(encoding)
    options: dict[str, Any] = ({"dtype": str, "keep_default_na": False} if as_text
                               else {"skipinitialspace": True})
    where = os.fspath(path)
    try:
        return pd.read_csv(path, sep=sep, header=header, names=names, usecols=usecols,
                           encoding=encoding, comment=comment, compression="infer",
                           low_memory=False, **options)
    except UnicodeDecodeError as err:
        raise encoding_error(path, encoding, err) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: cannot read it as {_describe(sep)}: the file is "
                        f"empty") from None
    except (ValueError, *_read_errors()) as err:  # parser errors, bad usecols, broken files
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{where}: cannot read it as {_describe(sep)}: "
                        f"{' '.join(str(err).split())}") from None


def _pyarrow_missing(err: ImportError) -> DataError:
    return DataError(f"reading Parquet needs pyarrow: pip install pyarrow ({err})")


def read_parquet(path: str | os.PathLike,
                 columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file or dataset folder (needs ``pyarrow``); column names as strings.

    Raises
    ------
    DataError
        If pyarrow is missing, the file is no Parquet, or a column is missing.
    """
    import pandas as pd

    try:
        frame = pd.read_parquet(path, columns=columns)
    except ImportError as err:
        raise _pyarrow_missing(err) from None
    except (OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{os.fspath(path)}: cannot read it as Parquet: {err}") from None
    frame.columns = [str(column) for column in frame.columns]
    return frame


def parquet_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a Parquet file or dataset, read from its schema (no data).

    The columns pandas stored as the index are left out, as
    :func:`read_parquet` restores them as the index.

    Raises
    ------
    DataError
        If pyarrow is missing or the file is no Parquet.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise _pyarrow_missing(err) from None
    try:
        schema = pq.ParquetDataset(path).schema
    except (OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{os.fspath(path)}: cannot read it as Parquet: {err}") from None
    index = {column for column in (schema.pandas_metadata or {}).get("index_columns", [])
             if isinstance(column, str)}
    return [str(name) for name in schema.names if name not in index]
