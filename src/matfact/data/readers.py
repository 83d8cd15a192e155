"""The one reader of data files: delimited text (plain, ``.gz``, ``.bz2``, ``.xz``) and Parquet.

Everything that reads a table from disk goes through here, so a file behaves
the same whether it reaches matfact through :meth:`Interactions.from_csv
<matfact.data.Interactions.from_csv>`, :meth:`~matfact.data.Interactions.from_parquet`,
the ``matfact`` command line or :func:`matfact.apps.topics.read_corpus`:

- :func:`check_file`, :func:`check_encoding`: the path exists, the encoding is known;
  :func:`resolve_encoding`, :func:`guess_wide_encoding`: ``utf-16`` works on a file
  without a byte-order mark, and a UTF-16 file read as UTF-8 gets the right hint;
- :func:`open_binary`, :func:`open_text`, :func:`base_suffix`, :func:`is_parquet`:
  compressed files are decompressed by suffix (``ratings.csv.gz`` is a ``.csv``),
  and a UTF-8 byte-order mark at the start of a file is skipped;
- :func:`sniff`: the layout of a delimited file from its first non-empty line
  (separator among tab, ``,``, ``;``, ``|``, else whitespace; a header unless
  every field is a number), as a :class:`Layout`;
- :func:`resolve_column`, :func:`detect_columns`: columns by header name
  (case-insensitive), by 0-based position, or by the usual names of each role
  (:data:`COLUMN_NAMES`);
- :func:`scan_delimited`: one streaming pass over a delimited file, in blocks,
  before pandas sees it (see *Hostile files* below), giving a :class:`Table`;
- :func:`read_delimited`, :func:`read_parquet`, :func:`parquet_columns`: the
  pandas readers, with every failure turned into a one-line
  :class:`~matfact.DataError` that names the file (and, for text, the encoding fix);
- :func:`iter_lines`: the lines of a text file (JSON lines), bounded the same way.

Hostile files
-------------
A data file may come from anyone, so reading one costs memory bounded by a small
multiple of its (decompressed) size, and every way a file can be wrong is a
:class:`~matfact.DataError` naming the file line (1-based, counting the header
and blank lines). :func:`scan_delimited` checks, with constant memory per block:

- every field has at most :data:`MAX_FIELD_SIZE` characters (``max_field_size=``);
- every line has at most :data:`MAX_COLUMNS` fields (``max_columns=``);
- every data line has as many fields as the header (or ``names=``, or the first
  line of a headerless file): a missing field is an error, and so is an extra
  one unless ``extra_fields="drop"`` (``--extra-fields drop``) asks to drop it;
- quotes are closed, and a compressed file expands to at most
  :data:`MAX_EXPANSION` times its size (plus 64 MiB).

The common case (one-character separator, fields quoted only whole) is scanned
with NumPy, with no Python loop over lines; anything else (a comment character,
quotes inside fields, a regular-expression separator) by the :mod:`csv` module.
Only then does pandas' C parser read the file, which it now can without
surprises: its silent ways (an extra field turning the first column into the
index, a short line padded with NaN) never happen.

Only the standard library is imported here; NumPy, pandas and pyarrow are
imported by the functions that read.
"""

from __future__ import annotations

import codecs
import functools
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from matfact.exceptions import DataError, ParameterError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np
    import pandas as pd

__all__ = [
    "COLUMN_NAMES",
    "COMPRESSIONS",
    "EXTRA_FIELDS",
    "MAX_COLUMNS",
    "MAX_EXPANSION",
    "MAX_FIELD_SIZE",
    "MAX_LINE_SIZE",
    "PARQUET_SUFFIXES",
    "SEPARATORS",
    "WHITESPACE",
    "Layout",
    "Table",
    "base_suffix",
    "check_encoding",
    "check_file",
    "detect_columns",
    "encoding_error",
    "first_line",
    "guess_wide_encoding",
    "is_number",
    "is_parquet",
    "iter_lines",
    "normalized_name",
    "open_binary",
    "open_text",
    "parquet_columns",
    "read_delimited",
    "read_parquet",
    "resolve_column",
    "resolve_encoding",
    "scan_delimited",
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
#: The longest field of a delimited file, in characters (1 MiB): generous for ids,
#: numbers, titles and documents, and a bound on what one line can make pandas hold.
MAX_FIELD_SIZE = 1 << 20
#: The most fields a line of a delimited file may have.
MAX_COLUMNS = 10_000
#: The longest line of a line-oriented file (JSON lines, a header line), in characters.
MAX_LINE_SIZE = 16 << 20
#: How many times its size a compressed file may grow when decompressed (tables
#: compress 3 to 20 times), on top of :data:`_EXPANSION_SLACK` characters.
MAX_EXPANSION = 100
_EXPANSION_SLACK = 64 << 20
#: What to do with a line that has more fields than the header: refuse it, or drop them.
EXTRA_FIELDS = ("error", "drop")

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

_UTF8_BOM = b"\xef\xbb\xbf"
#: Characters per block of the streaming scan (a few MiB of NumPy arrays per block).
_BLOCK = 1 << 19


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


@functools.lru_cache(maxsize=32)
def _ascii_compatible(encoding: str) -> bool:
    """Whether ``encoding`` writes ASCII as ASCII (so a UTF-8 BOM can only be a BOM)."""
    probe = "\n\r,;|\t\" #azAZ09"
    try:
        if codecs.lookup(encoding).name == "utf-8-sig":  # which writes a BOM first
            return True
        return probe.encode(encoding) == probe.encode("ascii")
    except (LookupError, UnicodeError, TypeError):
        return False


def open_binary(path: str | os.PathLike, encoding: str = "utf-8") -> IO[bytes]:
    """Open a file for reading bytes, decompressing ``.gz``, ``.bz2`` and ``.xz``.

    A UTF-8 byte-order mark at the start is skipped when ``encoding`` writes
    ASCII as ASCII (UTF-8, Latin-1, cp1252, ...), so a header reads the same
    with and without one; UTF-16 and UTF-32 decoders handle their own.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".gz":
        import gzip

        handle: IO[bytes] = gzip.open(path, "rb")
    elif suffix == ".bz2":
        import bz2

        handle = bz2.open(path, "rb")
    elif suffix == ".xz":
        import lzma

        handle = lzma.open(path, "rb")
    else:
        handle = open(path, "rb")  # noqa: SIM115 - returned to the caller
    try:
        if not (handle.read(len(_UTF8_BOM)) == _UTF8_BOM and _ascii_compatible(encoding)):
            handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle


def open_text(path: str | os.PathLike, encoding: str) -> IO[str]:
    """Open a text file for reading (see :func:`open_binary`), line ends untranslated."""
    return io.TextIOWrapper(open_binary(path, encoding), encoding=encoding, newline="")


def guess_wide_encoding(path: str | os.PathLike) -> str | None:
    """``"utf-16"``/``"utf-32"`` if the file starts with their byte-order mark, else
    ``"utf-16-le"``/``"utf-16-be"`` if its first bytes have the NUL pattern of UTF-16
    text without one (mostly ASCII: every other byte NUL), else None.

    Only the first 4 KiB (decompressed) are read; an unreadable file gives None.
    """
    try:
        with open_binary(path, "utf-16") as handle:  # a UTF-16 codec: no BOM is skipped
            head = handle.read(4096)
    except (UnicodeError, *_read_errors()):
        return None
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    pairs = len(head) // 2
    if pairs < 2:
        return None
    even, odd = head[0:2 * pairs:2].count(0), head[1:2 * pairs:2].count(0)
    # ASCII in UTF-16 puts a NUL in the high byte of each character: in more than
    # half of the pairs on one side, and (almost) never on the other.
    if odd > pairs // 2 and even <= pairs // 50:
        return "utf-16-le"
    if even > pairs // 2 and odd <= pairs // 50:
        return "utf-16-be"
    return None


def _wide_codec(encoding: str) -> str | None:
    """``"utf-16"`` or ``"utf-32"`` if ``encoding`` is either, endianness unsaid; else None."""
    try:
        name = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        return None
    return name if name in ("utf-16", "utf-32") else None


def resolve_encoding(path: str | os.PathLike, encoding: str) -> str:
    """``encoding``, or for ``utf-16`` of a file with no byte-order mark, ``utf-16-le``
    or ``-be`` as its NUL bytes show (Python's ``utf-16`` codec needs the mark)."""
    if _wide_codec(encoding) == "utf-16":
        guess = guess_wide_encoding(path)
        if guess in ("utf-16-le", "utf-16-be"):
            return guess
    return encoding


def _encoding_hint(path: str | os.PathLike, encoding: str) -> str:
    """The fix to suggest for a file that does not decode as ``encoding``."""
    guess = guess_wide_encoding(path)
    if guess is not None and codecs.lookup(guess).name != codecs.lookup(encoding).name \
            and not (guess.startswith("utf-16") and _wide_codec(encoding) == "utf-16"):
        why = "a byte-order mark" if guess in ("utf-16", "utf-32") else "its NUL bytes"
        # "utf-16" reads both byte orders (resolve_encoding): one spelling to remember.
        fix = "utf-16" if guess.startswith("utf-16") else guess
        return (f"it looks like {guess.upper()} text ({why}): pass encoding={fix!r} "
                f"(--encoding {fix})")
    return "pass another encoding, e.g. encoding='latin-1' (--encoding latin-1)"


def encoding_error(path: str | os.PathLike, encoding: str, err: UnicodeError) -> DataError:
    """The error for a file that is not text in ``encoding``, with the fix in both spellings.

    The fix is ``utf-16`` (or ``utf-16-le``/``-be``, ``utf-32``) when the file's
    first bytes say so (:func:`guess_wide_encoding`), else ``latin-1``.
    """
    reason = (f"{err.reason} at byte {err.start}" if isinstance(err, UnicodeDecodeError)
              else str(err))  # e.g. a UTF-16 stream cut before its byte-order mark
    return DataError(f"{os.fspath(path)} is not valid {encoding} text ({reason}); "
                     f"{_encoding_hint(path, encoding)}")


def _read_errors() -> tuple[type[BaseException], ...]:
    """What a broken or truncated (compressed) file raises while it is read."""
    import lzma
    import zlib

    return (OSError, EOFError, lzma.LZMAError, zlib.error)


def _expansion_budget(path: str | os.PathLike) -> int | None:
    """The most characters a compressed file may decompress to (None: not compressed)."""
    if Path(path).suffix.lower() not in COMPRESSIONS:
        return None
    return MAX_EXPANSION * os.path.getsize(path) + _EXPANSION_SLACK


def _too_expanded(path: str | os.PathLike, budget: int) -> DataError:
    return DataError(f"{os.fspath(path)} decompresses to more than {budget:,} characters "
                     f"({MAX_EXPANSION} times its size, plus 64 MiB): refused as a "
                     f"compression bomb; decompress it first if it really is that large")


def iter_lines(path: str | os.PathLike, encoding: str = "utf-8", *,
               max_line_size: int = MAX_LINE_SIZE) -> Iterator[tuple[int, str]]:
    """The lines of a text file as ``(line number, line)``, 1-based, line ends kept.

    Memory is bounded: a line longer than ``max_line_size`` characters, or a
    compressed file that expands more than :data:`MAX_EXPANSION` times, is a
    :class:`~matfact.DataError` naming the line.

    Raises
    ------
    DataError
        As above, or if the file is not valid ``encoding`` text or is broken.
    """
    encoding = resolve_encoding(path, check_encoding(encoding))
    budget = _expansion_budget(path)
    total = 0
    try:
        with open_text(path, encoding) as handle:
            number = 0
            while True:
                line = handle.readline(max_line_size + 1)
                if not line:
                    return
                number += 1
                if len(line) > max_line_size:
                    raise DataError(f"{os.fspath(path)}, line {number}: longer than "
                                    f"{max_line_size:,} characters")
                total += len(line)
                if budget is not None and total > budget:
                    raise _too_expanded(path, budget)
                yield number, line
    except UnicodeError as err:
        raise encoding_error(path, encoding, err) from None
    except _read_errors() as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"cannot read {os.fspath(path)}: {err}") from None


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


def _first_line(path: str | os.PathLike, encoding: str,
                max_line_size: int = MAX_LINE_SIZE) -> tuple[int, str]:
    """The first non-blank line and its 1-based number (see :func:`first_line`)."""
    for number, line in iter_lines(path, encoding, max_line_size=max_line_size):
        if line.strip():
            if "\x00" in line:
                guess = guess_wide_encoding(path)
                fix = "utf-16" if guess is not None and guess.startswith("utf-16") else guess
                hint = (f"; if it is {guess.upper()} text, pass encoding={fix!r} "
                        f"(--encoding {fix})" if guess is not None else "")
                raise DataError(f"{os.fspath(path)} does not look like a text file (NUL "
                                f"bytes){hint}")
            return number, line.rstrip("\r\n")
    raise DataError(f"{os.fspath(path)} is empty")


def first_line(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The first non-blank line of a text file, without its line end (or a byte-order mark).

    Raises
    ------
    DataError
        If the file is empty, binary (NUL bytes), not valid ``encoding`` text,
        a broken compressed file, or its first line is longer than
        :data:`MAX_LINE_SIZE` characters.
    """
    check_encoding(encoding)
    return _first_line(path, encoding)[1]


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
    return WHITESPACE if re.search(r"\S\s+\S", line) else ","


def split_fields(line: str, sep: str) -> list[str]:
    """The fields of one line (CSV quoting understood), stripped of blanks."""
    if sep == WHITESPACE:
        return line.split()
    if len(sep) == 1:
        import csv

        return [field.strip() for field in next(csv.reader([line], delimiter=sep))]
    return [field.strip() for field in re.split(sep, line)]


def _count_fields_at_most(line: str, sep: str) -> int:
    """An upper bound of the fields of ``line``, found without splitting it."""
    if sep == WHITESPACE:
        bound = line.count(" ") + line.count("\t") + 1
        if bound <= MAX_COLUMNS:
            return bound
        import numpy as np

        codes = _codes(line)  # a long line: count the starts of runs of non-blanks
        nonblank = (codes != _SPACE) & (codes != _TAB)
        return int(nonblank[0]) + int(np.count_nonzero(nonblank[1:] & ~nonblank[:-1]))
    if len(sep) == 1:
        return line.count(sep) + 1
    return sum(1 for _ in re.finditer(sep, line)) + 1


def is_number(text: str) -> bool:
    """Whether ``float()`` reads ``text`` (a header line holds names, not numbers)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def sniff(path: str | os.PathLike, *, sep: str | None = None, header: bool | None = None,
          encoding: str = "utf-8", max_columns: int = MAX_COLUMNS) -> Layout:
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
    max_columns : int, default=MAX_COLUMNS
        The most fields the line may have.

    Returns
    -------
    Layout

    Raises
    ------
    DataError
        If the first line cannot be read (see :func:`first_line`), has more
        than ``max_columns`` fields, or the header repeats a column name.
    """
    check_encoding(encoding)
    number, line = _first_line(path, encoding)
    if sep is None:
        sep = sniff_separator(path, line)
    elif sep in ("\\t", "tab", "TAB"):
        sep = "\t"
    # Counted before splitting: a million-column header must not become a million strings.
    count = _count_fields_at_most(line, sep)
    if count > max_columns and (len(sep) != 1 or '"' not in line):
        raise _too_many_fields(path, number, count, max_columns)
    fields = split_fields(line, sep)
    if len(fields) > max_columns:
        raise _too_many_fields(path, number, len(fields), max_columns)
    if header is None:
        header = not all(is_number(field) for field in fields)
    names = fields if header else None
    if names is not None and len(set(names)) != len(names):
        raise DataError(f"{os.fspath(path)}: repeated column names in the header "
                        f"{_shown_names(names)}")
    return Layout(sep=sep, names=names, n_fields=len(fields))


def _shown_names(names: list[str], limit: int = 30) -> str:
    """Column names for a message: all of a usual header, a few of a huge one."""
    shown = [name if len(name) <= 60 else f"{name[:30]}…({len(name):,} characters)"
             for name in names[:limit]]
    more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
    return f"{shown}{more}"


def _too_many_fields(path: str | os.PathLike, line: int, count: int | None,
                     limit: int) -> DataError:
    many = f"{count:,} fields, more than" if count is not None else "more fields than"
    return DataError(f"{os.fspath(path)}, line {line}: {many} the limit of {limit:,} "
                     f"(max_columns)")


# ------------------------------------------------------------------------------ columns
def normalized_name(name: Any) -> str:
    """A header name as :data:`COLUMN_NAMES` compares it: lower case, no ``_``, ``-``, spaces."""
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
    raise ParameterError(f"{option}: no column {text!r} in {where}; its columns are "
                         f"{_shown_names(names)}")


def detect_columns(path: str | os.PathLike, names: list[str] | None, n_fields: int,
                   given: Mapping[str, str | int | None], *, skip: tuple[str, ...] = (),
                   option: str = "--{role}-col") -> dict[str, str | int | None]:
    """Map each role of :data:`COLUMN_NAMES` to a column, or to None if the file has none.

    A role in ``given`` is resolved with :func:`resolve_column`; the others are
    found by their usual header names, or, in a headerless file, by position
    (:data:`ROLE_POSITIONS`: user, item, rating, timestamp) unless a given role
    took that column. Roles in ``skip`` are left out unless given.

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
    given_columns = {column for column in roles.values() if column is not None}
    for role in COLUMN_NAMES:
        if roles[role] is not None or role in skip:
            continue
        if names is not None:
            aliases = {normalized_name(alias) for alias in COLUMN_NAMES[role]}
            matches = [name for name in names if normalized_name(name) in aliases]
            roles[role] = matches[0] if matches else None
        elif role in ROLE_POSITIONS and ROLE_POSITIONS[role] < n_fields \
                and ROLE_POSITIONS[role] not in given_columns:
            # The same layout as with no column given (u.data's), around the given ones:
            # `--item-col 1` alone must not drop the ratings in column 2 (issue 20).
            roles[role] = ROLE_POSITIONS[role]
    taken = [column for column in roles.values() if column is not None]
    if len(taken) != len(set(taken)):
        raise ParameterError(f"one column of {os.fspath(path)} was given two roles: {roles}")
    return roles


# ------------------------------------------------------------------------------ scanning
def _describe(sep: Any) -> str:
    return {",": "CSV", "\t": "TSV"}.get(sep, f"{sep!r}-separated data")


def _field_too_long(path: str | os.PathLike, line: int, limit: int) -> DataError:
    return DataError(f"{os.fspath(path)}, line {line}: a field is longer than {limit:,} "
                     f"characters, the limit (max_field_size)")


@dataclass(frozen=True)
class _ScanOptions:
    sep: str
    encoding: str
    comment: str | None
    skipinitialspace: bool
    extra_fields: str
    max_field_size: int
    max_columns: int
    n_names: int | None


class _Records:
    """Checks the field count of each non-blank line as the scan finds them, in batches."""

    def __init__(self, path: str, options: _ScanOptions, header: int | None,
                 want: np.ndarray | None = None) -> None:
        self.path, self.options, self.header, self.want = path, options, header, want
        self.expected = options.n_names
        self.reference = "names=" if options.n_names is not None else ""
        self.seen = 0  # non-blank lines so far, the header and lines above it included
        self.n_data = 0  # data lines so far
        self.has_extra = False
        self.found: dict[int, int] = {}  # data line position -> file line (for `want`)

    def fresh(self) -> _Records:
        return _Records(self.path, self.options, self.header, self.want)

    def feed(self, counts: np.ndarray, lines: np.ndarray) -> None:
        """The next non-blank lines: their numbers of fields, and their file line numbers."""
        import numpy as np

        if len(counts) == 0:
            return
        over = counts > self.options.max_columns
        if over.any():
            first = int(np.argmax(over))
            raise _too_many_fields(self.path, int(lines[first]), int(counts[first]),
                                   self.options.max_columns)
        lead = 0 if self.header is None else self.header + 1 - self.seen
        if lead > 0:  # the header, and the lines pandas skips above it
            taken = min(lead, len(counts))
            at = self.header - self.seen
            if at < taken and self.expected is None:
                self.expected = int(counts[at])
                self.reference = f"the header (line {int(lines[at])})"
            self.seen += taken
            counts, lines = counts[taken:], lines[taken:]
            if len(counts) == 0:
                return
        if self.expected is None:  # a headerless file: its first line sets the width
            self.expected = int(counts[0])
            self.reference = f"the first line (line {int(lines[0])})"
        wrong = counts != self.expected
        if wrong.any() and self.options.extra_fields == "drop":
            self.has_extra = self.has_extra or bool((counts > self.expected).any())
            wrong = counts < self.expected
        if wrong.any():
            first = int(np.argmax(wrong))
            raise self._wrong_width(int(lines[first]), int(counts[first]))
        if self.want is not None:
            low, high = self.n_data, self.n_data + len(counts)
            for position in self.want[(self.want >= low) & (self.want < high)].tolist():
                self.found[position] = int(lines[position - low])
        self.n_data += len(counts)
        self.seen += len(counts)

    def _wrong_width(self, line: int, count: int) -> DataError:
        where = f"{self.path}, line {line} has {count} field(s) but {self.reference} has " \
                f"{self.expected}"
        if count > self.expected:
            return DataError(f"{where}: extra fields are not dropped silently; fix the line, "
                             f"or pass extra_fields='drop' (--extra-fields drop) to drop them")
        return DataError(f"{where}: a field is missing")

    def finish(self) -> _Records:
        if self.seen == 0:
            raise DataError(f"{self.path}: cannot read it as {_describe(self.options.sep)}: "
                            f"the file is empty")
        if self.header is not None and self.seen <= self.header:
            raise DataError(f"{self.path}: header={self.header} but the file has only "
                            f"{self.seen} non-blank line(s)")
        return self


def _codes(block: str) -> np.ndarray:
    """The characters of ``block`` as an array of code points (bytes if all ASCII)."""
    import numpy as np

    if block.isascii():
        return np.frombuffer(block.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(block.encode("utf-32-le", "surrogatepass"), dtype="<u4")


_NL, _CR, _TAB, _SPACE, _QUOTE = 10, 13, 9, 32, 34


def _per_segment(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """How many of ``mask`` are set from each start to the next (the last: to the end)."""
    import numpy as np

    counts = np.zeros(len(starts), dtype=np.int64)
    inside = starts < len(mask)  # a block ending on a line end: an empty last segment
    if inside.any():
        counts[inside] = np.add.reduceat(mask.view(np.uint8), starts[inside], dtype=np.int64)
    return counts


class _FastScan:
    """The NumPy scan: separators and line ends counted per block, no loop over lines.

    It handles a one-character separator (or runs of whitespace) and quotes that
    enclose whole fields (``"a, b",c``; ``""`` inside them). It gives up (returns
    False, and the :mod:`csv` scan starts over) on anything else: a quote inside
    a field, a comment character. State carried from block to block is a few
    numbers, so a line of any length costs one block of memory.
    """

    def __init__(self, path: str, options: _ScanOptions, records: _Records,
                 budget: int | None) -> None:
        self.path, self.options, self.records, self.budget = path, options, records, budget
        self.sep = None if options.sep == WHITESPACE else ord(options.sep)
        self.comment = None if options.comment is None else ord(options.comment)
        self.wide = max(self.sep or 0, self.comment or 0) > 127
        self.line = 1  # file line of the next character
        self.open_line = 1  # file line where the unfinished line started
        self.open_marks = 0  # separators (whitespace: field starts) in the unfinished line
        self.open_nonblank = False
        self.open_len = 0  # characters of the unfinished field
        self.in_quote = False
        self.prev = _NL  # the previous character
        self.prev_nonblank = False

    def run(self) -> bool:
        import numpy as np

        total = 0
        with open_text(self.path, self.options.encoding) as handle:
            block = handle.read(_BLOCK)
            while block:
                following = handle.read(_BLOCK)
                # A block never ends between "\r" and "\n", nor on a quote (whose
                # neighbours tell whether it opens or closes a field).
                while following and block[-1] in '\r"':
                    block += following[0]
                    following = following[1:] or handle.read(_BLOCK)
                total += len(block)
                if self.budget is not None and total > self.budget:
                    raise _too_expanded(self.path, self.budget)
                codes = (np.frombuffer(block.encode("utf-32-le", "surrogatepass"), dtype="<u4")
                         if self.wide else _codes(block))
                if not self._block(codes):
                    return False
                block = following
        if self.in_quote:
            raise DataError(f"{self.path}, line {self.open_line}: a quoted field is never "
                            f"closed")
        if self.open_nonblank:
            fields = self.open_marks + (0 if self.sep is None else 1)
            self.records.feed(np.array([fields]), np.array([self.open_line]))
        return True

    def _block(self, a: np.ndarray) -> bool:
        """Scan one block (its last character is no "\\r" and no quote, unless the file
        ends there); False if the csv scan must take over."""
        import numpy as np

        size = len(a)
        if self.comment is not None and (a == self.comment).any():
            return False
        is_nl = a == _NL
        is_cr = a == _CR
        term = is_nl | is_cr
        quotes = a == _QUOTE
        any_quote = bool(quotes.any())
        in_quote = False
        if self.sep is None:  # fields are runs of non-blanks
            if any_quote:
                return False
            blank = term | (a == _SPACE) | (a == _TAB)
            nonblank = ~blank
            before = np.empty(size, dtype=bool)
            before[0] = self.prev_nonblank
            before[1:] = nonblank[:-1]
            marks = nonblank & ~before  # the first character of each field
            ends = term
            bounds = blank
        else:
            sep = self.sep
            marks = a == sep
            ends = term
            if any_quote or self.in_quote:
                parity = np.cumsum(quotes, dtype=np.int32)
                if self.in_quote:
                    parity += 1
                inside = (parity & 1).astype(bool)  # after an odd number of quotes
                if any_quote and not self._quotes_enclose_fields(a, quotes, inside):
                    return False
                marks &= ~inside
                ends = term & ~inside
                in_quote = bool(inside[-1])
            blank = term.copy()
            if sep != _SPACE:
                blank |= a == _SPACE
            if sep != _TAB:
                blank |= a == _TAB
            nonblank = ~blank
            bounds = marks | ends
        # Segments: the text between line ends; the last one is unfinished.
        stops = np.flatnonzero(ends)
        n_segments = len(stops) + 1
        starts = np.empty(n_segments, dtype=np.int64)
        starts[0] = 0
        starts[1:] = stops + 1
        finishes = np.empty(n_segments, dtype=np.int64)
        finishes[:-1] = stops
        finishes[-1] = size
        seg_marks = _per_segment(marks, starts)
        seg_marks[0] += self.open_marks
        inner_blank = blank & ~ends
        if inner_blank.any():
            seg_nonblank = (finishes - starts) > _per_segment(inner_blank, starts)
        else:
            seg_nonblank = finishes > starts
        seg_nonblank[0] |= self.open_nonblank
        fields = seg_marks if self.sep is None else seg_marks + 1
        # File lines: "\n", "\r\n" and a lone "\r" each end one.
        n_breaks = int(np.count_nonzero(is_nl))
        if n_breaks == len(stops) and not is_cr.any():  # each "\n" ends a segment: usual
            seg_lines = self.line + np.arange(n_segments, dtype=np.int64)
        else:
            next_nl = np.zeros(size, dtype=bool)
            next_nl[:-1] = is_nl[1:]
            breaks = np.flatnonzero(is_nl | (is_cr & ~next_nl))
            n_breaks = len(breaks)
            seg_lines = self.line + np.searchsorted(breaks, starts)
        seg_lines[0] = self.open_line
        # Errors are raised for the first line that has one: the lines above it go first.
        failed, error = n_segments, None
        over = fields > self.options.max_columns
        if over.any():
            failed = int(np.argmax(over))
            error = _too_many_fields(self.path, int(seg_lines[failed]), None,
                                     self.options.max_columns)
        # Field lengths: only a block longer than the limit can hold a field too long.
        limit = self.options.max_field_size
        tail = np.flatnonzero(bounds[starts[-1]:])  # the unfinished segment's field ends
        if len(tail):
            open_len = size - 1 - int(starts[-1] + tail[-1])
        elif len(stops):
            open_len = size - 1 - int(stops[-1])
        else:
            open_len = self.open_len + size
        if self.open_len + size > limit:
            positions = np.flatnonzero(bounds)
            if len(positions):
                lengths = np.diff(positions, prepend=-1) - 1
                lengths[0] += self.open_len
                too_long = lengths > limit
                if too_long.any():
                    segment = int(np.searchsorted(stops, positions[int(np.argmax(too_long))]))
                    if segment < failed:
                        failed = segment
                        error = _field_too_long(self.path, int(seg_lines[segment]), limit)
            if open_len > limit and n_segments - 1 < failed:
                failed = n_segments - 1
                error = _field_too_long(self.path, int(seg_lines[-1]), limit)
        if error is not None:
            keep = seg_nonblank[:failed]
            self.records.feed(fields[:failed][keep], seg_lines[:failed][keep])
            raise error
        keep = seg_nonblank[:-1]
        self.records.feed(fields[:-1][keep], seg_lines[:-1][keep])
        self.open_marks = int(seg_marks[-1])
        self.open_nonblank = bool(seg_nonblank[-1])
        self.open_line = int(seg_lines[-1])
        self.open_len = open_len
        self.in_quote = in_quote
        self.prev = int(a[-1])
        self.prev_nonblank = bool(nonblank[-1])
        self.line += n_breaks
        return True

    def _quotes_enclose_fields(self, a: np.ndarray, quotes: np.ndarray,
                               inside: np.ndarray) -> bool:
        """Whether every quote opens a field (after a separator, a line end or a quote)
        or closes one (before them): then parity tells what is inside quotes."""
        import numpy as np

        at = np.flatnonzero(quotes)
        before = a[at - 1].astype(np.int64)
        if at[0] == 0:
            before[0] = self.prev
        after = a[np.minimum(at + 1, len(a) - 1)].astype(np.int64)
        if at[-1] == len(a) - 1:
            after[-1] = _NL  # the end of the file
        allowed = (self.sep, _NL, _CR, _QUOTE)
        opening = inside[at]
        ok_before = np.isin(before[opening], allowed)
        ok_after = np.isin(after[~opening], allowed)
        return bool(ok_before.all() and ok_after.all())


#: A line given to :mod:`csv` after the file's last one: read as a row of its own, unless
#: a quoted field is still open, which swallows it (pandas: "EOF inside string").
_SENTINEL = "\ufdd0\ufdd1\ufdd2\ufdd3\n"
_LINE_END = re.compile(r"\r\n|\r|\n")


class _PhysicalLines:
    r"""The lines of a text handle for :mod:`csv`: counted, bounded, comments cut.

    Lines end at ``"\n"``, ``"\r\n"`` or a lone ``"\r"``, as for pandas; the
    handle is read in blocks, so a compressed file is stopped at its budget
    even inside one endless line.
    """

    def __init__(self, handle: IO[str], path: str, options: _ScanOptions,
                 budget: int | None) -> None:
        self.handle, self.path, self.budget = handle, path, budget
        self.comment = options.comment
        self.whitespace = options.sep == WHITESPACE
        self.count = 0  # lines given out (the sentinel not counted)
        self.total = 0  # characters read
        self.last = ""  # the last line given out
        self.sentinel = False  # give out _SENTINEL after the last line
        self.buffer = ""
        self.position = 0

    def __iter__(self) -> _PhysicalLines:
        return self

    def __next__(self) -> str:
        parts: list[str] = []
        while True:
            if self.position >= len(self.buffer):
                self.buffer, self.position = self.handle.read(_BLOCK), 0
                if not self.buffer:
                    if parts:
                        return self._given("".join(parts))
                    if self.sentinel:
                        self.sentinel = False
                        return _SENTINEL
                    raise StopIteration
                self.total += len(self.buffer)
                if self.budget is not None and self.total > self.budget:
                    raise _too_expanded(self.path, self.budget)
                if parts and parts[-1].endswith("\r"):  # the last block ended on "\r"
                    if self.buffer.startswith("\n"):
                        parts.append("\n")
                        self.position = 1
                    return self._given("".join(parts))
            found = _LINE_END.search(self.buffer, self.position)
            if found is None:
                parts.append(self.buffer[self.position:])
                self.position = len(self.buffer)
                continue
            parts.append(self.buffer[self.position:found.end()])
            self.position = found.end()
            if found.group() == "\r" and self.position == len(self.buffer):
                continue  # a "\n" may start the next block
            return self._given("".join(parts))

    def _given(self, line: str) -> str:
        self.count += 1
        if self.comment is not None and self.comment in line:
            line = _cut_comment(line, self.comment)
        if self.whitespace:
            body = line.rstrip("\r\n")
            line = body.replace("\t", " ").strip(" ") + line[len(body):]
        self.last = line
        return line


def _cut_comment(line: str, comment: str) -> str:
    """``line`` up to its first ``comment`` character outside quotes (as pandas reads it)."""
    if '"' not in line:
        return line[:line.index(comment)] + "\n"
    quoted = False
    for position, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == comment and not quoted:
            return line[:position] + "\n"
    return line


def _csv_records(handle: IO[str], path: str, options: _ScanOptions,
                 budget: int | None) -> Iterator[tuple[int, list[str]]]:
    """``(file line, fields)`` of each non-blank line, read by :mod:`csv` (or a regex)."""
    import csv
    import sys

    lines = _PhysicalLines(handle, path, options, budget)
    if options.sep != WHITESPACE and len(options.sep) > 1:  # pandas' python engine
        pattern = re.compile(options.sep)
        for line in lines:
            stripped = line.strip()
            if stripped:
                yield lines.count, pattern.split(stripped)
        return
    if csv.field_size_limit() < options.max_field_size + 2:
        csv.field_size_limit(min(options.max_field_size + 2, sys.maxsize))
    whitespace = options.sep == WHITESPACE
    lines.sentinel = True
    reader = csv.reader(lines, delimiter=" " if whitespace else options.sep, quotechar='"',
                        doublequote=True, strict=False,
                        skipinitialspace=whitespace or options.skipinitialspace)
    while True:
        start = lines.count + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "field larger than field limit" in str(err):
                raise _field_too_long(path, lines.count, options.max_field_size) from None
            raise DataError(f"{path}, line {lines.count}: cannot read it as "
                            f"{_describe(options.sep)}: {err}") from None
        if row and _SENTINEL[:-1] in row[-1]:
            if len(row) == 1 and row[0] == _SENTINEL[:-1]:
                return
            raise DataError(f"{path}, line {start}: a quoted field is never closed")
        # Blank as pandas sees it: nothing but blanks on the line (a quoted "" is a field).
        if not row or (len(row) == 1 and lines.count == start and not lines.last.strip()):
            continue
        yield start, row


def _csv_scan(path: str, options: _ScanOptions, records: _Records,
              budget: int | None) -> None:
    import numpy as np

    counts: list[int] = []
    lines: list[int] = []
    limit = options.max_field_size
    try:
        with open_text(path, options.encoding) as handle:
            for line, row in _csv_records(handle, path, options, budget):
                if len(row) > options.max_columns:
                    raise _too_many_fields(path, line, len(row), options.max_columns)
                if max(map(len, row)) > limit:
                    raise _field_too_long(path, line, limit)
                counts.append(len(row))
                lines.append(line)
                if len(counts) >= 8192:
                    records.feed(np.array(counts), np.array(lines))
                    counts.clear()
                    lines.clear()
    except DataError:  # the lines above the one that failed go first
        records.feed(np.array(counts, dtype=np.int64), np.array(lines, dtype=np.int64))
        raise
    records.feed(np.array(counts, dtype=np.int64), np.array(lines, dtype=np.int64))


def _scan(path: str, options: _ScanOptions, header: int | None,
          want: np.ndarray | None = None) -> _Records:
    """One pass over the file (two if the NumPy scan gives up), checking every line."""
    records = _Records(path, options, header, want)
    budget = _expansion_budget(path)
    try:
        if options.sep == WHITESPACE or len(options.sep) == 1:
            if _FastScan(path, options, records, budget).run():
                return records.finish()
            records = records.fresh()
        _csv_scan(path, options, records, budget)
        return records.finish()
    except UnicodeError as err:
        raise encoding_error(path, options.encoding, err) from None
    except _read_errors() as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"cannot read {path}: {err}") from None


def _pandas_labels(fields: list[str]) -> list[str]:
    """Header fields as pandas labels them: ``Unnamed: 2`` for a blank, ``a.1`` for a repeat."""
    labels: list[str] = []
    seen: dict[str, int] = {}
    for position, name in enumerate(fields):
        label = name if name != "" else f"Unnamed: {position}"
        if label in seen:
            base = label
            while label in seen:
                seen[base] += 1
                label = f"{base}.{seen[base]}"
        seen[label] = 0
        labels.append(label)
    return labels


@dataclass(frozen=True)
class Table:
    """A delimited file as :func:`scan_delimited` found it: checked, and how to read it.

    Attributes
    ----------
    path : str
    sep : str
        The separator, as pandas takes it.
    header : int or None
        Which non-blank line holds the column names (0: the first), or None.
    names : list or None
        The column labels of the data: ``names=`` if given, else the header's
        fields, else None (columns are numbered from 0).
    n_fields : int
        Fields of a data line.
    n_records : int
        Data lines (non-blank lines below the header).
    has_extra : bool
        Whether a line has more than ``n_fields`` fields (with ``extra_fields="drop"``).
    """

    path: str
    sep: str
    header: int | None
    names: list[Any] | None
    n_fields: int
    n_records: int
    has_extra: bool
    options: _ScanOptions = field(repr=False)

    def column(self, spec: str | int, *, option: str = "") -> str | int:
        """The label of a column given by name (exact, then ignoring blanks around it)
        or by 0-based position; a :class:`~matfact.DataError` naming the columns if none."""
        import numbers

        role = f" ({option})" if option else ""
        is_position = isinstance(spec, numbers.Integral) and not isinstance(spec, bool)
        if self.names is not None:
            if spec in self.names:
                return spec
            if isinstance(spec, str):
                loose = [name for name in self.names
                         if isinstance(name, str) and name.strip() == spec.strip()]
                if len(loose) == 1:
                    return loose[0]
            if is_position and 0 <= spec < len(self.names):
                return self.names[int(spec)]
            folded = [name for name in self.names if isinstance(spec, str)
                      and normalized_name(name) == normalized_name(spec)]
            guess = f"; did you mean {folded[0]!r}?" if len(folded) == 1 else ""
            raise DataError(f"{self.path}: no column {spec!r}{role}; its columns are "
                            f"{_shown_names([str(name) for name in self.names])}{guess}")
        if isinstance(spec, str) and spec.strip().isdigit():
            spec, is_position = int(spec), True
        if is_position and 0 <= spec < self.n_fields:
            return int(spec)
        raise DataError(f"{self.path}: no column {spec!r}{role}: it has no header line, so "
                        f"its {self.n_fields} column(s) are numbered 0 to {self.n_fields - 1}")

    def lines(self, positions: Iterable[int]) -> list[int]:
        """The file line (1-based) of each data line position (0-based), by a new scan."""
        import numpy as np

        positions = [int(p) for p in positions]
        want = np.unique(np.asarray(positions, dtype=np.int64))
        found = _scan(self.path, self.options, self.header, want=want).found
        return [found.get(position, -1) for position in positions]


def _header_fields(path: str, options: _ScanOptions, header: int) -> list[str]:
    """The fields of the ``header``-th non-blank line (after the scan checked the file)."""
    try:
        with open_text(path, options.encoding) as handle:
            for index, (_, row) in enumerate(_csv_records(handle, path, options, None)):
                if index == header:
                    return row
    except UnicodeError as err:  # pragma: no cover - the scan decoded it already
        raise encoding_error(path, options.encoding, err) from None
    raise DataError(f"{path}: no header line")  # pragma: no cover - the scan found it


def _positive(value: Any, name: str) -> int:
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def scan_delimited(path: str | os.PathLike, *, sep: str | None = ",",
                   header: int | None | str = "infer", names: Iterable[Any] | None = None,
                   encoding: str = "utf-8", comment: str | None = None, as_text: bool = False,
                   extra_fields: str = "error", max_field_size: int = MAX_FIELD_SIZE,
                   max_columns: int = MAX_COLUMNS) -> Table:
    """Check a delimited file in one streaming pass, before anything is parsed.

    Memory is a few MiB whatever the file holds; see *Hostile files* in this
    module's documentation for what is checked.

    Parameters
    ----------
    path : str or os.PathLike
    sep : str, default=","
        One character, :data:`WHITESPACE`, or a regular expression (read by
        pandas' python engine); None sniffs it (:func:`sniff_separator`).
    header : int, None or "infer", default="infer"
        Which non-blank line holds the column names; "infer": the first, unless
        ``names`` is given.
    names : list, default=None
        Column labels to use instead of the header's.
    encoding : str, default="utf-8"
    comment : str, default=None
        A character that ends the useful part of a line.
    as_text : bool, default=False
        As in :func:`read_delimited` (spaces after a separator are kept).
    extra_fields : {"error", "drop"}, default="error"
        What a line with more fields than the header is: an error, or read
        with the extra fields dropped.
    max_field_size : int, default=MAX_FIELD_SIZE
        The most characters of one field.
    max_columns : int, default=MAX_COLUMNS
        The most fields of one line.

    Returns
    -------
    Table

    Raises
    ------
    ParameterError
        If an option is invalid.
    DataError
        If the file is empty, not valid ``encoding`` text, broken, or breaks a
        rule above; the message names the file line.
    """
    encoding = resolve_encoding(path, check_encoding(encoding))
    where = os.fspath(path)
    if sep is None:
        sep = sniff(path, encoding=encoding, max_columns=max_columns).sep
    if sep == "\\t":
        sep = "\t"
    if not isinstance(sep, str) or not sep:
        raise ParameterError(f"sep must be a non-empty string, got {sep!r}")
    if len(sep) > 1 and sep != WHITESPACE:
        try:
            re.compile(sep)
        except re.error as err:
            raise ParameterError(f"sep={sep!r} is not a valid regular expression: {err}") \
                from None
    if comment is not None and (not isinstance(comment, str) or len(comment) != 1):
        raise ParameterError(f"comment must be one character, got {comment!r}")
    if extra_fields not in EXTRA_FIELDS:
        raise ParameterError(f"extra_fields must be one of {EXTRA_FIELDS}, got {extra_fields!r}")
    max_field_size = _positive(max_field_size, "max_field_size")
    max_columns = _positive(max_columns, "max_columns")
    labels = None if names is None else list(names)
    if labels is not None and not labels:
        raise ParameterError("names must name at least one column")
    if header == "infer":
        header = 0 if labels is None else None
    elif header is not None and (isinstance(header, bool) or not isinstance(header, int)
                                 or header < 0):
        raise ParameterError(f"header must be the number of the header line (0: the first), "
                             f"None or 'infer', got {header!r}")
    options = _ScanOptions(sep=sep, encoding=encoding, comment=comment,
                           skipinitialspace=not as_text, extra_fields=extra_fields,
                           max_field_size=max_field_size, max_columns=max_columns,
                           n_names=None if labels is None else len(labels))
    records = _scan(where, options, header)
    if labels is None and header is not None:
        labels = _pandas_labels(_header_fields(where, options, header))
    return Table(path=where, sep=sep, header=header, names=labels,
                 n_fields=int(records.expected), n_records=records.n_data,
                 has_extra=records.has_extra, options=options)


# ------------------------------------------------------------------------------ reading
def _c_engine(sep: str) -> bool:
    return len(sep) == 1 or sep == WHITESPACE


def read_delimited(path: str | os.PathLike, *, sep: str | None = ",",
                   header: int | None | str = "infer", names: list[Any] | None = None,
                   usecols: list[str | int] | None = None, encoding: str = "utf-8",
                   comment: str | None = None, as_text: bool = False,
                   extra_fields: str = "error", max_field_size: int = MAX_FIELD_SIZE,
                   max_columns: int = MAX_COLUMNS, table: Table | None = None) -> pd.DataFrame:
    """Read a delimited text file (compressed by suffix) with pandas' C parser.

    The file is first checked by :func:`scan_delimited` (unless its ``table``
    is given), so a hostile file ends in a :class:`~matfact.DataError` naming
    its line, with memory bounded by a small multiple of the file's size.

    Parameters
    ----------
    path : str or os.PathLike
    sep, header, names, encoding, comment
        As in :func:`pandas.read_csv` (and :func:`scan_delimited`).
    usecols : list, default=None
        The columns to read, by label or 0-based position.
    as_text : bool, default=False
        Keep every field as text, and an empty field as ``""`` (not NaN), as
        for documents; by default numbers are parsed and blanks after a
        separator skipped.
    extra_fields, max_field_size, max_columns
        As in :func:`scan_delimited`.
    table : Table, default=None
        What :func:`scan_delimited` found in this file with these options.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ParameterError
        If ``encoding`` is unknown or an option is invalid.
    DataError
        If the file is empty, not valid ``encoding`` text, broken, breaks a rule
        of :func:`scan_delimited`, or lacks a column of ``usecols`` (the message
        names it and the columns the file has).
    """
    import pandas as pd

    check_encoding(encoding)
    where = os.fspath(path)
    if table is None:
        table = scan_delimited(path, sep=sep, header=header, names=names, encoding=encoding,
                               comment=comment, as_text=as_text, extra_fields=extra_fields,
                               max_field_size=max_field_size, max_columns=max_columns)
    if usecols is not None:
        usecols = list(dict.fromkeys(table.column(spec) for spec in usecols))
    encoding, comment = table.options.encoding, table.options.comment
    labels = table.names if table.options.n_names is not None else None
    if table.has_extra:  # name the columns to read, so pandas drops the rest
        if labels is None:
            labels = table.names if table.names is not None else list(range(table.n_fields))
        if usecols is None:
            usecols = list(labels)
    options: dict[str, Any] = ({"dtype": str, "keep_default_na": False} if as_text
                               else {"skipinitialspace": True})
    if _c_engine(table.sep):
        options["low_memory"] = False
    else:
        options["engine"] = "python"
    try:
        with open_binary(path, encoding) as handle:
            if not table.has_extra:
                return pd.read_csv(handle, sep=table.sep, header=table.header, names=labels,
                                   usecols=usecols, encoding=encoding, comment=comment,
                                   compression=None, index_col=False, **options)
            import warnings

            with warnings.catch_warnings():  # "a loss of data": the extra fields, as asked
                warnings.simplefilter("ignore", pd.errors.ParserWarning)
                return pd.read_csv(handle, sep=table.sep, header=table.header, names=labels,
                                   usecols=usecols, encoding=encoding, comment=comment,
                                   compression=None, index_col=False, **options)
    except UnicodeError as err:
        raise encoding_error(path, encoding, err) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{where}: cannot read it as {_describe(table.sep)}: the file is "
                        f"empty") from None
    except (ValueError, *_read_errors()) as err:  # parser errors, broken files
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{where}: cannot read it as {_describe(table.sep)}: "
                        f"{' '.join(str(err).split())}") from None


def _pyarrow_missing(err: ImportError) -> DataError:
    return DataError(f"reading Parquet needs pyarrow: pip install pyarrow ({err})")


def _parquet_schema(path: str | os.PathLike) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise _pyarrow_missing(err) from None
    try:
        return pq.ParquetDataset(path).schema
    except (OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"{os.fspath(path)}: cannot read it as Parquet: {err}") from None


def _check_parquet_size(path: str | os.PathLike, n_columns: int) -> None:
    """Refuse a Parquet file whose rows would take far more memory than the file's size."""
    if not os.path.isfile(path):
        return  # a dataset folder: its files are checked by pyarrow as it reads them
    import pyarrow.parquet as pq

    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as err:
        raise DataError(f"{os.fspath(path)}: cannot read it as Parquet: {err}") from None
    budget = MAX_EXPANSION * os.path.getsize(path) + _EXPANSION_SLACK
    if rows * max(n_columns, 1) * 8 > budget:
        raise DataError(f"{os.fspath(path)} declares {rows:,} rows, which would take more than "
                        f"{MAX_EXPANSION} times its size in memory: refused as a compression "
                        f"bomb")


def read_parquet(path: str | os.PathLike,
                 columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file or dataset folder (needs ``pyarrow``); column names as strings.

    Raises
    ------
    DataError
        If pyarrow is missing, the file is no Parquet, a column is missing (the
        message names it and the file's columns), or the file declares far
        more rows than its size can hold (:data:`MAX_EXPANSION`).
    """
    import pandas as pd

    schema = _parquet_schema(path)
    if columns is not None:
        missing = [column for column in columns if column not in schema.names]
        if missing:
            raise DataError(f"{os.fspath(path)}: no column {', '.join(map(repr, missing))}; "
                            f"its columns are {_shown_names(parquet_columns(path))}")
    _check_parquet_size(path, len(schema.names) if columns is None else len(columns))
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
    schema = _parquet_schema(path)
    index = {column for column in (schema.pandas_metadata or {}).get("index_columns", [])
             if isinstance(column, str)}
    return [str(name) for name in schema.names if name not in index]
