"""Reading the data of a command: a dataset name or a file, its layout guessed.

:func:`read_interactions` turns ``--data``/``--test`` and the column options
into :class:`~matfact.data.Interactions`: a dataset through
:func:`matfact.load_dataset`, a file through :mod:`matfact.data.readers` (the
one reader of delimited and Parquet files, which sniffs the layout) and
:meth:`Interactions.from_csv <matfact.data.Interactions.from_csv>` /
:meth:`~matfact.data.Interactions.from_parquet`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from matfact.cli.output import Output
from matfact.exceptions import ParameterError, UsageError

__all__ = [
    "COLUMN_NAMES",  # noqa: F822 - loaded lazily by __getattr__
    "read_data",
    "read_interactions",
]


def __getattr__(name: str) -> Any:
    # matfact.data.readers is light, but importing it runs matfact/data/__init__.py,
    # which imports pandas: keep `matfact --help` from paying for it.
    if name == "COLUMN_NAMES":
        from matfact.data.readers import COLUMN_NAMES

        return COLUMN_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_interactions(path_or_name: str | os.PathLike, *, sep: str | None = None,
                      header: bool | None = None, user_col: str | None = None,
                      item_col: str | None = None, rating_col: str | None = None,
                      timestamp_col: str | None = None, weight_col: str | None = None,
                      implicit: bool = False, data_home: str | os.PathLike | None = None,
                      encoding: str = "utf-8", duplicates: str = "error",
                      extra_fields: str = "error", download: bool = True) -> Any:
    """Load interactions from a dataset name or a CSV/TSV/Parquet file, guessing its layout.

    Parameters
    ----------
    path_or_name : str or os.PathLike
        A name of :data:`matfact.datasets.DATASETS` (optionally ``name:kind``,
        e.g. ``steam:purchase``), or a path to a delimited text file (``.gz``,
        ``.bz2`` and ``.xz`` are decompressed) or a Parquet file. An existing
        file wins over a dataset of the same name.
    sep : str, default=None
        Field separator of a text file. By default sniffed from the first
        line among tab, ``,``, ``;`` and ``|`` (``.tsv`` files: tab; none of
        them: whitespace).
    header : bool, default=None
        Whether a text file starts with a header line. By default it does
        unless every field of its first line is a number.
    user_col, item_col, rating_col, timestamp_col, weight_col : str, default=None
        Columns by header name (case-insensitive) or 0-based position. Roles
        not given are detected by header name (see
        :data:`matfact.data.readers.COLUMN_NAMES`) or,
        in a headerless file where no column was given, by position: user,
        item, rating, timestamp.
    implicit : bool, default=False
        Treat the data as implicit feedback: no rating column is detected,
        and a dataset with ratings is converted with ``to_implicit()``.
    data_home : str or os.PathLike, default=None
        Directory searched first for datasets (see :func:`matfact.load_dataset`).
    encoding : str, default="utf-8"
        Encoding of a text file.
    duplicates : {"error", "last", "sum", "mean"}, default="error"
        What to do with repeated (user, item) pairs in a file.
    extra_fields : {"error", "drop"}, default="error"
        What a line of a text file with more fields than the header is: an
        error naming the line, or read with its extra fields dropped.
    download : bool, default=True
        Whether a missing MovieLens dataset may be downloaded.

    Returns
    -------
    Interactions

    Raises
    ------
    FileNotFoundError
        If ``path_or_name`` is neither an existing file nor a dataset name.
    UsageError
        If the columns cannot be determined or conflict.
    DataError
        If the file cannot be parsed or its contents are invalid.
    """
    from matfact.data import readers
    from matfact.data.interactions import Interactions
    from matfact.exceptions import DataError

    spec = os.fspath(path_or_name)
    path = Path(spec).expanduser()
    given = {"user": user_col, "item": item_col, "rating": rating_col,
             "timestamp": timestamp_col, "weight": weight_col}
    if implicit and rating_col is not None:
        raise UsageError("--implicit and --rating-col contradict each other; give one")
    if not path.exists():
        names = _dataset_names()
        dataset = _split_dataset_name(spec, names)
        if dataset is None:
            raise FileNotFoundError(
                f"no such file: {spec} (and no dataset of that name; datasets are "
                f"{', '.join(names)})"
            )
        if any(value is not None for value in given.values()):
            raise UsageError("column options (--user-col, ...) apply to files, not to the "
                             f"dataset {dataset[0]!r}")
        return _load_named(*dataset, implicit=implicit, data_home=data_home, download=download)
    if readers.is_parquet(path):
        columns = readers.parquet_columns(path)
        roles = _roles(path, columns, len(columns), given, implicit)
        try:
            return Interactions.from_parquet(path, roles["user"], roles["item"],
                                             roles["rating"], roles["weight"],
                                             roles["timestamp"], duplicates=duplicates)
        except DataError as err:
            raise _naming(err, path) from None
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a CSV, TSV or Parquet file")
    layout = readers.sniff(path, sep=sep, header=header, encoding=encoding)
    roles = _roles(path, layout.names, layout.n_fields, given, implicit)
    try:
        return Interactions.from_csv(
            path, roles["user"], roles["item"], roles["rating"], roles["weight"],
            roles["timestamp"], sep=layout.sep, header=0 if layout.header else None,
            encoding=encoding, duplicates=duplicates, extra_fields=extra_fields,
        )
    except DataError as err:
        raise _naming(err, path) from None


def _roles(path: Path, names: list[str] | None, n_fields: int,
           given: dict[str, str | None], implicit: bool) -> dict[str, str | int | None]:
    """The column of each role (user, item, rating, timestamp, weight), or a usage error."""
    from matfact.data import readers

    try:
        roles = readers.detect_columns(path, names, n_fields, given,
                                       skip=("rating",) if implicit else ())
    except ParameterError as err:  # a --*-col that names no column, or one used twice
        raise UsageError(str(err)) from None
    missing = [role for role in ("user", "item") if roles[role] is None]
    if missing:
        if names is not None:
            raise UsageError(
                f"cannot tell which column of {path} holds the {' and '.join(missing)} ids "
                f"(its columns are {names}); pass --user-col/--item-col (and --rating-col), "
                f"or --no-header if the file has no header line"
            )
        raise UsageError(f"{path} has {n_fields} column(s); pass --user-col and --item-col "
                         f"(0-based column numbers)")
    return roles


def _naming(err: Exception, path: Path) -> Exception:
    """A :class:`DataError` naming the file (``err`` itself if it already does)."""
    from matfact.exceptions import DataError

    text = str(err)
    if str(path) in text:
        return err
    hint = ""
    if "duplicate" in text.lower() or "repeated" in text.lower():
        hint = " (--duplicates last|sum|mean combines repeated pairs)"
    return DataError(f"{path}: {text}{hint}")


def _dataset_names() -> dict[str, str]:
    from matfact.datasets import DATASETS

    return dict(DATASETS)


def _split_dataset_name(spec: str, names: dict[str, str]) -> tuple[str, str | None] | None:
    """Split ``name[:kind]`` (e.g. ``steam:purchase``); None if ``name`` is no dataset."""
    name, _, kind = spec.partition(":")
    if name.lower() in names:
        return name.lower(), (kind or None)
    return None


def _load_named(name: str, kind: str | None, *, implicit: bool,
                data_home: str | os.PathLike | None, download: bool) -> Any:
    import matfact
    from matfact.data.interactions import Interactions
    from matfact.exceptions import DataError

    data = matfact.load_dataset(name, data_home=data_home, download=download, kind=kind)
    if not isinstance(data, Interactions):
        raise DataError(f"dataset {name!r} holds {type(data).__name__}, not user-item "
                        f"interactions")
    if implicit and not data.is_implicit:
        data = data.to_implicit()
    return data


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "sep": args.sep, "header": False if args.no_header else None,
        "user_col": args.user_col, "item_col": args.item_col, "rating_col": args.rating_col,
        "timestamp_col": args.timestamp_col, "weight_col": args.weight_col,
        "implicit": args.implicit, "data_home": args.data_home, "encoding": args.encoding,
        "duplicates": args.duplicates, "extra_fields": getattr(args, "extra_fields", "error"),
    }


def read_data(args: argparse.Namespace, spec: str, out: Output) -> Any:
    """:func:`read_interactions` of ``spec`` (``--data`` or ``--test``) with the data options."""
    start = time.perf_counter()
    data = read_interactions(spec, **_data_options(args))
    out.info(f"Loaded {spec}: {data!r} ({time.perf_counter() - start:.2f} s)")
    return data
