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
    "parse_rating_scale",
    "read_data",
    "read_features",
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
                      extra_fields: str = "error", download: bool = True,
                      rating_scale: tuple[float, ...] | None = None,
                      user_features: str | os.PathLike | None = None,
                      item_features: str | os.PathLike | None = None) -> Any:
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
    user_features, item_features : str or os.PathLike, default=None
        Files of side information (``--user-features``, ``--item-features``),
        read by :func:`read_features`: one row per id; a ``title`` column names
        the items in recommendations.
    rating_scale : (min, max) or (min, max, step), default=None
        The scale of the ratings (``--rating-scale``): a rating off it is an
        error naming its line. By default a file's scale is inferred from its
        ratings and a dataset's is the one it documents.

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
        if user_features is not None or item_features is not None:
            raise UsageError(f"--user-features and --item-features apply to files; the "
                             f"dataset {dataset[0]!r} carries its own side information")
        data = _load_named(*dataset, implicit=implicit, data_home=data_home, download=download)
        return data if rating_scale is None else _on_scale(data, rating_scale, spec)
    sides = {f"{role}_features": read_features(side, role, encoding=encoding)
             for role, side in (("user", user_features), ("item", item_features))
             if side is not None}
    if readers.is_parquet(path):
        columns = readers.parquet_columns(path)
        roles = _roles(path, columns, len(columns), given, implicit)
        try:
            return Interactions.from_parquet(path, roles["user"], roles["item"],
                                             roles["rating"], roles["weight"],
                                             roles["timestamp"], duplicates=duplicates,
                                             **_scale_option(rating_scale, roles), **sides)
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
            **_scale_option(rating_scale, roles), **sides,
        )
    except DataError as err:
        raise _naming(err, path) from None


#: Header names of the column of a features file that holds display titles.
TITLE_NAMES = ("title", "name", "movie_title", "item_title")


def read_features(path: str | os.PathLike, role: str, *, encoding: str = "utf-8") -> Any:
    """A file of side information (CSV/TSV/Parquet) as the frame ``Interactions`` takes.

    One row per id. The id column is the one named like a ``role`` id (see
    :data:`matfact.data.readers.COLUMN_NAMES`, e.g. ``item``, ``movieId``),
    else the first; every other column is a feature. A column named ``title``
    (or ``name``) gives the items' display titles (it is renamed ``title``,
    what :meth:`Interactions.item_titles <matfact.data.Interactions.item_titles>`
    reads). A file without a header is read as ``id, title`` (two columns) or
    ``id, feature...``.

    Parameters
    ----------
    path : str or os.PathLike
    role : {"user", "item"}
    encoding : str, default="utf-8"

    Returns
    -------
    pandas.DataFrame
        Indexed by raw id.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    DataError
        If it cannot be read or repeats an id (the message names the file).
    """
    from matfact.data import readers
    from matfact.exceptions import DataError

    where = readers.check_file(Path(path).expanduser())
    if readers.is_parquet(where):
        frame = readers.read_parquet(where)
        if frame.index.name is not None:  # a frame saved with its ids as the index
            frame = frame.reset_index()
    else:
        layout = readers.sniff(where, encoding=encoding)
        if layout.header and readers.is_number(layout.names[0]):
            # "1<TAB>Toy Story (1995)": an id first is data, whatever the title looks like.
            layout = readers.sniff(where, sep=layout.sep, header=False, encoding=encoding)
        frame = readers.read_delimited(where, sep=layout.sep, encoding=encoding,
                                       header=0 if layout.header else None)
        if not layout.header:
            frame.columns = ["id", "title"] if frame.shape[1] == 2 else \
                ["id", *(f"feature_{n}" for n in range(1, frame.shape[1]))]
    if frame.shape[1] < 2:
        raise DataError(f"{where}: a {role} features file needs an id column and at least one "
                        f"more (e.g. {role},title); it has {list(map(str, frame.columns))}")
    aliases = {readers.normalized_name(alias) for alias in readers.COLUMN_NAMES[role]}
    named = [column for column in frame.columns if readers.normalized_name(column) in aliases]
    frame = frame.set_index(named[0] if named else frame.columns[0])
    if frame.index.has_duplicates:
        repeated = frame.index[frame.index.duplicated()].unique()[:5].tolist()
        raise DataError(f"{where}: {role} ids repeated in the features file: {repeated}")
    if role == "item" and "title" not in frame.columns:
        titles = [column for column in frame.columns
                  if readers.normalized_name(column) in {readers.normalized_name(n) for n in TITLE_NAMES}]
        if titles:
            frame = frame.rename(columns={titles[0]: "title"})
    return frame


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
    explicit = any(spec is not None for spec in given.values())
    if explicit and not implicit and roles["rating"] is None and roles["weight"] is None:
        # Columns were named, no rating was found, yet a column is left over: it may
        # hold the ratings, and reading the file as implicit would drop them silently.
        used = {column for column in roles.values() if column is not None}
        left = [column for column in (names if names is not None else range(n_fields))
                if column not in used]
        if left:
            shown = ", ".join(repr(column) if names is not None else str(column)
                              for column in left[:5])
            raise UsageError(
                f"{path}: no rating column found, and column(s) {shown} have no role; pass "
                f"--rating-col COL (or --weight-col COL) if one holds ratings (or counts), "
                f"or --implicit to read the file as implicit feedback"
            )
    return roles


def parse_rating_scale(text: str) -> tuple[float, ...]:
    """``--rating-scale MIN,MAX[,STEP]`` as numbers (``Interactions`` checks the scale).

    Examples
    --------
    >>> parse_rating_scale("0.5,5,0.5")
    (0.5, 5.0, 0.5)
    """
    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"expected MIN,MAX or MIN,MAX,STEP (e.g. 1,5 or 0.5,5,0.5), got {text!r}")
    return values


def _scale_option(rating_scale: tuple[float, ...] | None,
                  roles: dict[str, Any]) -> dict[str, Any]:
    """``rating_scale=`` for a reader, or a usage error when the file has no ratings."""
    if rating_scale is None:
        return {}
    if roles["rating"] is None:
        raise UsageError("--rating-scale applies to ratings, but no rating column was found "
                         "(pass --rating-col COL)")
    return {"rating_scale": rating_scale}


def _on_scale(data: Any, rating_scale: tuple[float, ...], spec: str) -> Any:
    """A dataset's ratings on the declared scale (checked), or a usage error if it has none."""
    if data.is_implicit:
        raise UsageError(f"--rating-scale applies to ratings, but {spec} is implicit feedback")
    return data.with_rating_scale(rating_scale)


def _naming(err: Exception, path: Path) -> Exception:
    """A :class:`DataError` naming the file (``err`` itself if it already does)."""
    from matfact.exceptions import DataError

    text = str(err)
    hint = ""
    if "duplicate" in text.lower() or "repeated" in text.lower():
        hint = " (--duplicates last|sum|mean combines repeated pairs)"
    if str(path) in text:
        return DataError(f"{text}{hint}") if hint else err
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
        "rating_scale": getattr(args, "rating_scale", None),
        "user_features": getattr(args, "user_features", None),
        "item_features": getattr(args, "item_features", None),
    }


def read_data(args: argparse.Namespace, spec: str, out: Output) -> Any:
    """:func:`read_interactions` of ``spec`` (``--data`` or ``--test``) with the data options."""
    start = time.perf_counter()
    data = read_interactions(spec, **_data_options(args))
    out.info(f"Loaded {spec}: {data!r} ({time.perf_counter() - start:.2f} s)")
    if getattr(args, "rating_scale", None) is None and not data.is_implicit:
        from matfact.data.interactions import implausible_scale

        reason = implausible_scale(data.rating_scale)
        if reason is not None:
            lo, hi = data.rating_scale
            out.note(f"the rating scale of {spec} was inferred as [{lo:g}, {hi:g}] from its "
                     f"ratings, and {reason}; predictions are clipped to it. If that is not "
                     f"the scale, fix the data or give --rating-scale MIN,MAX[,STEP]")
    return data
