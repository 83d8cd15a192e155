"""The ``matfact`` command: ``demo``, ``train``, ``evaluate`` and ``recommend``.

Run ``matfact --help`` or ``matfact <command> --help``. Everything heavy
(pandas, numba, scikit-learn, matplotlib) is imported inside the command
functions, so building the parser and printing help stay fast.

Errors never show a traceback: each prints one line ``matfact: error: ...``
to stderr and exits with status 2 (bad usage) or 1 (anything that failed at
run time), or 130 after Ctrl-C. Set ``MATFACT_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

from matfact._text import format_table
from matfact._version import __version__
from matfact.exceptions import MatfactError, MatfactWarning, ParameterError

__all__ = ["main", "read_interactions", "parse_params", "DEMO_MODELS"]

PROG = "matfact"

#: Models ``matfact demo`` trains, in table order: (class name in MODEL_REGISTRY, parameters).
#: Add a row to show a new model, e.g. ``("BiasedMF", {"n_factors": 64, "random_state": 0})``;
#: a row whose class does not exist (yet) is skipped with a note.
DEMO_MODELS: list[tuple[str, dict[str, Any]]] = [
    ("Baseline", {}),
    ("Popularity", {}),
    ("BiasedMF", {"random_state": 0}),
    ("SVDPlusPlus", {"random_state": 0}),
    ("ALS", {"random_state": 0}),
    ("BayesianMF", {"random_state": 0}),
    ("ImplicitALS", {"random_state": 0}),
    ("BPR", {"random_state": 0}),
    ("NMF", {"random_state": 0}),
    ("PureSVD", {"random_state": 0}),
]

#: Header names recognised for each column role (compared case-insensitively, ignoring
#: ``_``, ``-`` and spaces), and the position of each role in a headerless file.
COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "userid", "user_id", "visitorid", "visitor", "customer", "customerid"),
    "item": ("item", "itemid", "item_id", "movieid", "movie_id", "movie", "product",
             "productid", "game", "gameid", "book", "bookid", "isbn", "track", "trackid",
             "song", "songid", "artist", "artistid"),
    "rating": ("rating", "score", "stars"),
    "timestamp": ("timestamp", "time", "ts"),
    "weight": ("weight", "count", "plays", "hours"),
}
_POSITIONS = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}
_SEPARATORS = ("\t", ",", ";", "|")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_COMPRESSIONS = (".gz", ".bz2", ".xz")
_DEMO_SEED = 42
_DEMO_K = 10
_DEMO_USER = 1
_EXIT_RUNTIME = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


class UsageError(ParameterError):
    """A command line that cannot be run as given (exit status 2).

    A :class:`~matfact.ParameterError` (so a ``ValueError``), for callers of
    :func:`read_interactions` and :func:`parse_params` from Python.
    """


# ------------------------------------------------------------------------------------ output
class _Output:
    """Where a command writes: results to stdout, chatter (suppressed by --quiet) to stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    @property
    def progress(self) -> bool:
        """Whether to draw progress bars: not quiet, and stderr is a terminal."""
        isatty = getattr(sys.stderr, "isatty", None)
        return not self.quiet and bool(isatty and isatty())

    def result(self, text: str = "") -> None:
        print(text, file=sys.stdout)

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def note(self, text: str) -> None:
        print(f"{PROG}: note: {text}", file=sys.stderr)


def _number(value: Any, decimals: int = 4) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    if value != value:  # NaN
        return "-"
    return f"{value:.{decimals}f}"


def _shorten(text: str, width: int = 48) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _boxed(lines: list[str], width: int = 76) -> str:
    """Wrap ``lines`` in an ASCII box (readable in any terminal encoding)."""
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(textwrap.wrap(line, width - 4, break_on_hyphens=False) or [""])
    border = "+" + "-" * (width - 2) + "+"
    body = [f"| {line.ljust(width - 4)} |" for line in wrapped]
    return "\n".join([border, *body, border])


# ------------------------------------------------------------------------------------ data
def _dataset_names() -> dict[str, str]:
    from matfact.datasets import DATASETS

    return dict(DATASETS)


def _split_dataset_name(spec: str, names: dict[str, str]) -> tuple[str, str | None] | None:
    """Split ``name[:kind]`` (e.g. ``steam:purchase``); None if ``name`` is no dataset."""
    name, _, kind = spec.partition(":")
    if name.lower() in names:
        return name.lower(), (kind or None)
    return None


def _open_text(path: Path, encoding: str):
    suffix = path.suffix.lower()
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


def _first_line(path: Path, encoding: str) -> str:
    from matfact.exceptions import DataError

    try:
        with _open_text(path, encoding) as handle:
            for line in handle:
                if line.strip():
                    if "\x00" in line:
                        raise DataError(f"{path} does not look like a text file (NUL bytes)")
                    return line.rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not valid {encoding} text ({err.reason} at byte {err.start}); "
            f"pass --encoding, e.g. --encoding latin-1"
        ) from None
    except (OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DataError(f"cannot read {path}: {err}") from None
    raise DataError(f"{path} is empty")


def _sniff_sep(path: Path, line: str) -> str:
    name = path.name.lower()
    for suffix in _COMPRESSIONS:
        name = name.removesuffix(suffix)
    if name.endswith(".tsv"):
        return "\t"
    counts = {sep: line.count(sep) for sep in _SEPARATORS}
    best = max(_SEPARATORS, key=lambda sep: counts[sep])  # ties: the earlier candidate
    if counts[best]:
        return best
    return r"\s+" if len(line.split()) > 1 else ","


def _split_line(line: str, sep: str) -> list[str]:
    if sep == r"\s+":
        return line.split()
    import csv

    if len(sep) == 1:
        return [field.strip() for field in next(csv.reader([line], delimiter=sep))]
    import re

    return [field.strip() for field in re.split(sep, line)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalized(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch not in "_- ")


def _resolve_column(spec: str, role: str, names: list[str] | None, n_fields: int,
                    path: Path) -> str | int:
    """A column given on the command line → a header name, or a position when headerless."""
    option = f"--{role}-col"
    if names is None:
        if not spec.strip().lstrip("-").isdigit():
            raise UsageError(f"{path} has no header, so {option} must be a column number "
                             f"(0-based), got {spec!r}")
        position = int(spec)
        if not 0 <= position < n_fields:
            raise UsageError(f"{option} {position} is out of range: {path} has {n_fields} "
                             f"column(s), numbered from 0")
        return position
    if spec in names:
        return spec
    folded = [name for name in names if name.lower() == spec.lower()]
    if len(folded) == 1:
        return folded[0]
    if spec.isdigit() and int(spec) < len(names):
        return names[int(spec)]
    raise UsageError(f"{option}: no column {spec!r} in {path}; its columns are {names}")


def _detect_columns(path: Path, names: list[str] | None, n_fields: int,
                    given: dict[str, str | None], implicit: bool) -> dict[str, str | int | None]:
    """Map each role (user, item, rating, timestamp, weight) to a column, or None."""
    roles: dict[str, str | int | None] = {}
    for role, spec in given.items():
        roles[role] = None if spec is None else _resolve_column(spec, role, names, n_fields, path)
    explicit_columns = any(spec is not None for spec in given.values())
    for role in COLUMN_NAMES:
        if roles[role] is not None:
            continue
        if role == "rating" and implicit:
            continue
        if names is not None:
            aliases = {_normalized(alias) for alias in COLUMN_NAMES[role]}
            matches = [name for name in names if _normalized(name) in aliases]
            roles[role] = matches[0] if matches else None
        elif not explicit_columns and role in _POSITIONS and _POSITIONS[role] < n_fields:
            roles[role] = _POSITIONS[role]
    taken = [col for col in roles.values() if col is not None]
    if len(taken) != len(set(taken)):
        raise UsageError(f"one column of {path} was given two roles: {roles}")
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


def read_interactions(path_or_name: str | os.PathLike, *, sep: str | None = None,
                      header: bool | None = None, user_col: str | None = None,
                      item_col: str | None = None, rating_col: str | None = None,
                      timestamp_col: str | None = None, weight_col: str | None = None,
                      implicit: bool = False, data_home: str | os.PathLike | None = None,
                      encoding: str = "utf-8", duplicates: str = "error",
                      download: bool = True) -> Any:
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
        not given are detected by header name (see :data:`COLUMN_NAMES`) or,
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
    if path.is_dir() and path.suffix.lower() not in _PARQUET_SUFFIXES:
        raise DataError(f"{path} is a directory; give a CSV, TSV or Parquet file")
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except ImportError as err:
            raise DataError(f"reading Parquet needs pyarrow: pip install pyarrow ({err})") \
                from None
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot read it as Parquet: {err}") from None
        columns = [str(c) for c in frame.columns]
        frame.columns = columns
        roles = _detect_columns(path, columns, len(columns), given, implicit)
        try:
            return Interactions.from_pandas(frame, roles["user"], roles["item"],
                                            roles["rating"], roles["weight"],
                                            roles["timestamp"], duplicates=duplicates)
        except DataError as err:
            raise _naming(err, path) from None
    line = _first_line(path, encoding)
    if sep is None:
        sep = _sniff_sep(path, line)
    elif sep in ("\\t", "tab", "TAB"):
        sep = "\t"
    fields = _split_line(line, sep)
    if header is None:
        header = not all(_is_number(field) for field in fields)
    names = fields if header else None
    if names is not None and len(set(names)) != len(names):
        raise DataError(f"{path}: repeated column names in the header {names}")
    roles = _detect_columns(path, names, len(fields), given, implicit)
    try:
        return Interactions.from_csv(
            path, roles["user"], roles["item"], roles["rating"], roles["weight"],
            roles["timestamp"], sep=sep, header=0 if header else None, encoding=encoding,
            duplicates=duplicates,
        )
    except DataError as err:
        raise _naming(err, path) from None


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
        "duplicates": args.duplicates,
    }


def _read(args: argparse.Namespace, spec: str, out: _Output) -> Any:
    start = time.perf_counter()
    data = read_interactions(spec, **_data_options(args))
    out.info(f"Loaded {spec}: {data!r} ({time.perf_counter() - start:.2f} s)")
    return data


# ------------------------------------------------------------------------------------ models
def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are JSON (numbers, true/false/null, lists) or text.

    ``True``/``False``/``None`` are accepted as Python spells them. Nothing is
    evaluated as code.

    Parameters
    ----------
    pairs : list of str or None

    Returns
    -------
    dict

    Raises
    ------
    UsageError
        For a pair without ``=``, an empty or invalid key, or a key given twice.

    Examples
    --------
    >>> parse_params(["reg=0.05", "max_iter=20", "verbose=true", "init=svd", "a=null"])
    {'reg': 0.05, 'max_iter': 20, 'verbose': True, 'init': 'svd', 'a': None}
    """
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, eq, text = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--param expects key=value, got {pair!r}")
        if not key.isidentifier():
            raise UsageError(f"--param: {key!r} is not a valid parameter name")
        if key in params:
            raise UsageError(f"--param {key} given twice")
        text = text.strip()
        python_words = {"True": True, "False": False, "None": None}
        if text in python_words:
            params[key] = python_words[text]
            continue
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if isinstance(value, float) and value != value:  # JSON "NaN" → keep the text
            value = text
        params[key] = value
    return params


def _registry() -> dict[str, type]:
    from matfact.models.base import MODEL_REGISTRY

    return MODEL_REGISTRY


def _model_key(name: str) -> str:
    return _normalized(name)


def _model_class(name: str) -> type:
    """The model class for a ``--model`` name (case-insensitive; ``_``/``-`` ignored)."""
    registry = _registry()
    by_key = {_model_key(cls_name): cls for cls_name, cls in registry.items()}
    cls = by_key.get(_model_key(name))
    if cls is None:
        known = ", ".join(sorted(n.lower() for n in registry))
        raise UsageError(f"unknown model {name!r}; choose one of: {known}")
    return cls


def _build_model(name: str, params: dict[str, Any]) -> Any:
    from matfact.models._params import validate_params

    cls = _model_class(name)
    valid = cls._get_param_names()
    unknown = [key for key in params if key not in valid]
    if unknown:
        raise UsageError(
            f"{cls.__name__} has no parameter {unknown[0]!r}; its parameters are "
            f"{', '.join(valid) or '(none)'}"
        )
    model = cls(**params)
    validate_params(model)  # fail before loading any data
    return model


def _fit_data(model: Any, data: Any, out: _Output) -> Any:
    """``data``, converted to implicit feedback if the model learns only from that."""
    from matfact.exceptions import DataError

    accepts = getattr(model, "_accepts", ("explicit", "implicit"))
    if data.is_implicit and "implicit" not in accepts:
        raise DataError(f"{type(model).__name__} learns from explicit ratings, but the data is "
                        f"implicit: give the rating column with --rating-col (and no "
                        f"--implicit)")
    if not data.is_implicit and "explicit" not in accepts:
        out.info(f"{type(model).__name__} learns from implicit feedback: using every rating "
                 f"as an interaction")
        return data.to_implicit()
    return data


def _fit(model: Any, data: Any, out: _Output) -> float:
    data = _fit_data(model, data, out)
    start = time.perf_counter()
    model.fit(data, progress=out.progress)
    return time.perf_counter() - start


def _is_model_file(spec: str) -> bool:
    path = Path(spec).expanduser()
    if path.is_dir():
        return (path / "meta.json").is_file()
    return path.is_file()


def _predicts_ratings(model: Any) -> bool:
    """Whether a fitted model's ``predict`` gives ratings (it learned a rating scale)."""
    return getattr(model, "rating_scale_", None) is not None


# ------------------------------------------------------------------------------------ train
def _cmd_train(args: argparse.Namespace, out: _Output) -> int:
    model = _build_model(args.model, parse_params(args.param))
    on_cluster = args.scheduler is not None or args.local_cluster is not None
    if on_cluster and type(model).__name__ not in ("ALS", "ImplicitALS"):
        raise UsageError(f"--scheduler and --local-cluster fit als and implicit_als only, not "
                         f"{type(model).__name__}; drop them to fit locally")
    if args.local_cluster is not None and args.local_cluster < 1:
        raise UsageError(f"--local-cluster needs N >= 1 worker processes, got {args.local_cluster}")
    # A URL or a glob (s3://bucket/ratings/*.parquet) is read by the workers, not here.
    remote = on_cluster and ("://" in args.data or any(ch in args.data for ch in "*?"))
    data = None if remote else _read(args, args.data, out)
    if on_cluster:
        from matfact.distributed.dask_als import fit_on_cluster

        source = args.data if remote else _fit_data(model, data, out)
        start = time.perf_counter()
        model = fit_on_cluster(model, source, scheduler=args.scheduler,
                               local_cluster=args.local_cluster, progress=out.progress,
                               columns=(args.user_col, args.item_col, args.rating_col,
                                        args.weight_col))
        seconds = time.perf_counter() - start
    else:
        seconds = _fit(model, data, out)
    target = Path(args.out).expanduser()
    model.save(target)
    counts = ((data.nnz, data.n_users, data.n_items) if data is not None
              else (model.seen_.nnz, model.n_users_, model.n_items_))
    out.result(f"Trained {type(model).__name__} on {counts[0]:,} interactions "
               f"({counts[1]:,} users x {counts[2]:,} items) in {seconds:.2f} s")
    out.result(f"Saved the model to {target}")
    return 0


# ------------------------------------------------------------------------------------ serving
def _cmd_serve(args: argparse.Namespace, out: _Output) -> int:
    model_path = Path(args.model).expanduser()
    if not _is_model_file(str(model_path)):
        raise UsageError(f"--model {model_path} is not a model file; write one with "
                         f"'matfact train ... --out {model_path}'")
    try:
        import uvicorn

        from matfact.serving.app import create_app
    except ImportError as exc:
        raise UsageError(f"serving needs the 'serve' extra: pip install 'matfact[serve]' "
                         f"({exc})") from None
    from threadpoolctl import threadpool_limits

    # One request is scored at a time on the event loop: a BLAS pool would only spin
    # against the other threads (measured: 374 instead of ~2,000 scored requests/s).
    threadpool_limits(limits=1, user_api="blas")
    app = create_app(model_path, args.db, api_key_file=args.api_key_file,
                     require_key=args.require_key)
    service = app.state.services["service"]
    out.result(f"Serving {type(service.model).__name__} ({service.model.n_users_:,} users x "
               f"{service.model.n_items_:,} items, version {service.version}) on "
               f"http://{args.host}:{args.port} (API docs at /docs, page at /)")
    options: dict[str, Any] = {"log_level": "warning", "access_log": False}
    for option, module in (("loop", "uvloop"), ("http", "httptools")):
        try:
            __import__(module)
            options[option] = module
        except ImportError:  # pragma: no cover - the serve extra installs both
            pass
    uvicorn.run(app, host=args.host, port=args.port, **options)
    return 0


def _log_interactions(ratings: list, implicit: bool) -> Any:
    import numpy as np

    from matfact import Interactions

    users = np.array([r.user for r in ratings], dtype=object)
    items = np.array([r.item for r in ratings], dtype=object)
    values = np.array([r.rating for r in ratings], dtype=np.float64)
    if implicit:
        return Interactions.from_arrays(users, items, weights=values, duplicates="last")
    return Interactions.from_arrays(users, items, values, duplicates="last")


def _cmd_retrain(args: argparse.Namespace, out: _Output) -> int:
    import matfact
    from matfact.serving.store import RatingStore

    target = Path(args.model).expanduser()
    previous = matfact.load(target) if _is_model_file(str(target)) else None
    with RatingStore(args.db) as store:
        # --partial refines with what the file has not seen yet; a refit takes the whole log.
        after = store.logged_through(previous) if args.partial else 0
        entries = list(store.entries(after))
        position = store.position(*entries[-1]) if entries else store.position(0, None)
    logged = [rating for _, rating in entries]
    if args.partial:
        if previous is None or not hasattr(previous, "partial_fit"):
            raise UsageError("--partial needs an existing model file of a model with "
                             "partial_fit (ALS, ImplicitALS, BiasedMF, SVDPlusPlus)")
        if not logged:
            out.result("No ratings logged since the model file was made: nothing to add; "
                       "the model is unchanged")
            return 0
        start = time.perf_counter()
        previous.partial_fit(_log_interactions(logged, previous.is_implicit_))
        previous.rating_log_ = position
        previous.save(target)
        out.result(f"Refined {type(previous).__name__} with {len(logged):,} logged ratings "
                   f"(partial_fit) in {time.perf_counter() - start:.2f} s; saved {target}")
        return 0
    if args.data is None:
        raise UsageError("--data is needed for a full refit (or use --partial)")
    data = _read(args, args.data, out)
    model = (matfact.clone(previous) if previous is not None and args.model_name is None
             else _build_model(args.model_name or "biased_mf", {}))
    if logged:
        data = _with_log(data, logged)
    if data.item_titles() is None and previous is not None and previous.item_titles_ is not None:
        data = _with_titles(data, previous)
    seconds = _fit(model, data, out)
    model.rating_log_ = position
    model.save(target)  # written beside, then renamed over the old file
    out.result(f"Refitted {type(model).__name__} on {data.nnz:,} interactions "
               f"({len(logged):,} from the log) in {seconds:.2f} s; saved {target}")
    return 0


def _with_titles(data: Any, previous: Any) -> Any:
    """``data`` with the previous model's item titles (a ratings file carries none)."""
    import pandas as pd

    from matfact import Interactions

    titles = pd.DataFrame({"title": previous.item_titles_}, index=previous.item_index_.ids)
    kind = {"weights": data.values} if data.is_implicit else {"ratings": data.values}
    return Interactions.from_arrays(data.users, data.items, timestamps=data.timestamps,
                                    user_features=data.user_features, item_features=titles,
                                    rating_scale=data.rating_scale, **kind)


def _with_log(data: Any, logged: list) -> Any:
    """``data`` plus the logged ratings (a logged rating replaces the data's for that pair)."""
    import numpy as np

    from matfact import Interactions

    # Every logged rating in log order, repeats included, so the timestamps below line up;
    # from_arrays(duplicates="last") keeps the latest of each pair (a repeated pair in the
    # log once made the lengths differ: found by benchmarks/soak.py).
    users = np.concatenate([data.users.astype(object),
                            np.array([r.user for r in logged], dtype=object)])
    items = np.concatenate([data.items.astype(object),
                            np.array([r.item for r in logged], dtype=object)])
    values = np.concatenate([data.values, np.array([r.rating for r in logged], np.float64)])
    stamps = None
    if data.timestamps is not None:
        latest = float(np.max(data.timestamps))
        stamps = np.concatenate([data.timestamps,
                                 [r.timestamp if r.timestamp is not None else latest
                                  for r in logged]])
    kind = {"weights": values} if data.is_implicit else {"ratings": values}
    return Interactions.from_arrays(users, items, timestamps=stamps, duplicates="last",
                                    user_features=data.user_features,
                                    item_features=data.item_features,
                                    rating_scale=data.rating_scale, **kind)


# ------------------------------------------------------------------------------------ evaluate
def _metric_plan(metrics: str | None, k: int, test: Any, model: Any
                 ) -> tuple[list[str], list[str]]:
    """(rating metrics, ranking metrics) to compute."""
    from matfact.evaluation.metrics import RATING_METRICS, parse_metric
    from matfact.exceptions import ParameterError

    if metrics is None:
        rating = ["rmse", "mae"] if (not test.is_implicit and _predicts_ratings(model)) else []
        return rating, [f"ndcg@{k}", f"precision@{k}"]
    rating, ranking = [], []
    for name in (part.strip() for part in metrics.split(",")):
        if not name:
            continue
        base, _ = parse_metric(name)
        if base in RATING_METRICS:
            if not _predicts_ratings(model):
                raise ParameterError(f"{type(model).__name__} does not predict ratings, so "
                                     f"{base} means nothing; ask for ranking metrics such as "
                                     f"ndcg@{k}")
            rating.append(base)
        else:
            ranking.append(name.lower())
    if not rating and not ranking:
        raise UsageError("--metrics is empty")
    return rating, ranking


def _evaluate(model: Any, test: Any, metrics: str | None, k: int) -> tuple[dict, dict]:
    """(metric → value, counts) of a fitted model on ``test``."""
    import matfact

    rating, ranking = _metric_plan(metrics, k, test, model)
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    if rating:
        result = matfact.evaluate(model, test, metrics=rating)
        values.update({name: float(result[name]) for name in rating})
        counts.update(n_ratings=int(result["n"]), n_unknown_ratings=int(result["n_unknown"]))
    if ranking:
        result = matfact.evaluate_ranking(model, test, k=k, metrics=ranking)
        values.update({key: float(value) for key, value in result.items()
                       if key not in ("n_users", "n_unknown_users")})
        counts.update(n_users=int(result["n_users"]),
                      n_unknown_users=int(result["n_unknown_users"]))
    return values, counts


def _check_evaluate_options(args: argparse.Namespace) -> None:
    """Reject bad metric names, k and split strategies before any data is read."""
    from matfact.evaluation.metrics import parse_metric
    from matfact.evaluation.split import STRATEGIES

    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    if args.test is None and args.split not in STRATEGIES:
        raise UsageError(f"unknown --split {args.split!r}; choose one of {', '.join(STRATEGIES)}")
    for name in (args.metrics or "").split(","):
        if name.strip():
            parse_metric(name.strip())


def _cmd_compare(args: argparse.Namespace, out: _Output) -> int:
    """``evaluate --models``: cross-validate several models and write a report."""
    import pandas as pd

    from matfact.evaluation.report import build_report, summary_rows

    if args.model is not None:
        raise UsageError("give --model (one model) or --models (a comparison), not both")
    if args.param:
        raise UsageError("--param is not supported with --models (it would not say which "
                         "model it is for); compare models with their default parameters, "
                         "or evaluate one with --model NAME --param KEY=VALUE")
    if args.test is not None:
        raise UsageError("--test does not apply to --models, which cross-validates --data")
    if args.data is None:
        raise UsageError("--models needs --data")
    cv = 5 if args.cv is None else args.cv
    if cv < 2:
        raise UsageError(f"--cv must be at least 2, got {cv}")
    _check_evaluate_options(args)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if not names:
        raise UsageError("--models is empty; give comma-separated model names")
    models: dict[str, Any] = {}
    for name in names:
        model = _build_model(name, {})  # an unknown name fails before the data is read
        label = type(model).__name__
        if label in models:
            raise UsageError(f"--models names {label} twice")
        models[label] = model
    metrics = [part.strip().lower() for part in (args.metrics or "").split(",") if part.strip()]
    data = _read(args, args.data, out)
    if args.tune < 0:
        raise UsageError(f"--tune must be 0 (no tuning) or a number of trials, got {args.tune}")
    target = build_report(models, data, cv=cv, metrics=metrics or None, k=args.k,
                          out=Path(args.out or "report").expanduser(), random_state=args.seed,
                          tune=args.tune > 0, tune_trials=max(args.tune, 1),
                          progress=out.progress)
    summary = pd.read_csv(target / "summary.csv")
    columns = [c for c in summary.columns
               if c not in ("model", "fit_time") and not c.endswith("_std")]
    if args.json:
        records = summary.astype(object).where(summary.notna(), None).to_dict("records")
        out.result(json.dumps({"models": records, "cv": cv, "seed": args.seed,
                               "report": str(target)}, indent=2))
        return 0
    out.result(f"{len(models)} models, {cv}-fold cross-validation of {args.data} "
               f"(seed {args.seed}); mean ± std over the folds")
    headers, rows = summary_rows(summary, columns)
    out.result(format_table(headers, rows, right=set(range(1, len(headers)))))
    out.result()
    out.result(f"Wrote the report to {target / 'index.html'} (and index.md)")
    return 0


def _cmd_evaluate(args: argparse.Namespace, out: _Output) -> int:
    import matfact

    if args.models is not None:
        return _cmd_compare(args, out)
    if args.model is None:
        raise UsageError("give --model NAME_OR_FILE (or --models NAME,NAME,... to compare "
                         "models)")
    if args.cv is not None or args.out is not None:
        raise UsageError("--cv and --out apply to --models, not to --model")
    from_file = _is_model_file(args.model)
    if not from_file and (args.model.lower().endswith(".zip") or os.sep in args.model
                          or "/" in args.model):
        raise FileNotFoundError(f"no model file at {args.model}")
    if from_file and args.param:
        raise UsageError("--param applies to a model name, not to a saved model")
    if args.data is None and (not from_file or args.test is None):
        raise UsageError("give --data (or, with a saved model, --test)")
    _check_evaluate_options(args)
    info: dict[str, Any] = {}
    fit_seconds = None
    if from_file:
        model = matfact.load(Path(args.model).expanduser())
        info["model_file"] = str(args.model)
    else:
        model = _build_model(args.model, parse_params(args.param))
    if args.test is not None:
        test = _read(args, args.test, out)
        info["test"] = args.test
        train = None if from_file else _read(args, args.data, out)
    else:
        data = _read(args, args.data, out)
        train, test = matfact.train_test_split(data, test_size=args.test_size,
                                               strategy=args.split, random_state=args.seed)
        info["split"] = {"strategy": args.split, "test_size": args.test_size,
                         "seed": args.seed}
        out.info(f"Split {args.split} (test size {args.test_size:g}, seed {args.seed}): "
                 f"{train.nnz:,} train, {test.nnz:,} test interactions")
    if not from_file:
        fit_seconds = _fit(model, train, out)
    values, counts = _evaluate(model, test, args.metrics, args.k)
    name = type(model).__name__
    if args.json:
        report = {"model": name, **info, "fit_time_s": fit_seconds,
                  "metrics": {key: (None if value != value else value)
                              for key, value in values.items()},
                  "counts": counts}
        out.result(json.dumps(report, indent=2))
        return 0
    where = (f"{args.split} split of {args.data}" if "split" in info else args.test)
    fitted = f", fit in {fit_seconds:.2f} s" if fit_seconds is not None else ""
    out.result(f"{name} on {where}{fitted}")
    rows = [[key, _number(value)] for key, value in values.items()]
    out.result(format_table(["metric", "value"], rows, right={1}))
    if counts.get("n_unknown_ratings"):
        out.info(f"{counts['n_unknown_ratings']:,} of {counts['n_ratings']:,} test ratings have "
                 f"a user or item the model never saw; its fallback scored them")
    if counts.get("n_unknown_users"):
        out.info(f"{counts['n_unknown_users']:,} of {counts['n_users']:,} test users are new to "
                 f"the model; they got its fallback ranking")
    return 0


# ------------------------------------------------------------------------------------ recommend
def _titles_of(model: Any, ids: Any) -> list[str] | None:
    titles = getattr(model, "item_titles_", None)
    if titles is None:
        return None
    codes = model.item_index_.get_indexer(ids)
    return [str(titles[code]) if code >= 0 else "" for code in codes]


def _recommendation_rows(model: Any, ids: Any, scores: Any) -> list[dict[str, Any]]:
    import numpy as np

    keep = np.isfinite(scores)
    ids, scores = ids[keep], scores[keep]
    titles = _titles_of(model, ids)
    rows = []
    for rank, (item, score) in enumerate(zip(ids.tolist(), scores.tolist(), strict=True), 1):
        row = {"rank": rank, "item": item, "score": float(score)}
        if titles is not None:
            row["title"] = titles[rank - 1]
        rows.append(row)
    return rows


def _print_recommendations(out: _Output, heading: str, rows: list[dict[str, Any]]) -> None:
    out.result(heading)
    if not rows:
        out.result("  (no item left to recommend)")
        return
    scores = [row["score"] for row in rows]
    decimals = 0 if all(float(s).is_integer() for s in scores) else 3
    headers = ["rank", "item"] + (["title"] if "title" in rows[0] else []) + ["score"]
    table = []
    for row in rows:
        cells = [str(row["rank"]), str(row["item"])]
        if "title" in row:
            cells.append(_shorten(row["title"]))
        cells.append(f"{row['score']:.{decimals}f}")
        table.append(cells)
    right = {0, len(headers) - 1}
    out.result(textwrap.indent(format_table(headers, table, right), "  "))


def _cmd_recommend(args: argparse.Namespace, out: _Output) -> int:
    import matfact

    if args.n < 1:
        raise UsageError(f"-n must be at least 1, got {args.n}")
    model = matfact.load(Path(args.model).expanduser())
    users = model.user_index_.coerce(args.user)
    known = model.user_index_.get_indexer(users) >= 0
    ids, scores = model.recommend(users, n=args.n, exclude_seen=not args.include_seen,
                                  unknown="raise" if args.strict else "fallback")
    report = []
    for pos, user in enumerate(users.tolist()):
        rows = _recommendation_rows(model, ids[pos], scores[pos])
        report.append({"user": user, "known": bool(known[pos]), "items": rows})
    if args.json:
        out.result(json.dumps(report, indent=2, default=str))
        return 0
    for pos, entry in enumerate(report):
        if pos:
            out.result()
        heading = f"Top {len(entry['items'])} for user {entry['user']}"
        if not entry["known"]:
            heading += (f" (unknown to the model: {type(model).__name__}'s fallback ranking "
                        f"for new users)")
        _print_recommendations(out, heading + ":", entry["items"])
    return 0


# ------------------------------------------------------------------------------------ demo
def _demo_data(data_home: str | None, out: _Output) -> tuple[Any, str]:
    import matfact
    from matfact.exceptions import DatasetNotFoundError

    try:
        data = matfact.load_dataset("ml-100k", data_home=data_home, download=False)
        return data, "MovieLens 100K"
    except DatasetNotFoundError as err:
        reason = str(err)
    env = os.environ.get("MATFACT_DATA")
    print(_boxed([
        "WARNING: the MovieLens 100K dataset (ml-100k) is absent, so this demo runs on "
        "SYNTHETIC ratings and its numbers say nothing about real data.",
        "",
        "To use it, put the unzipped ml-100k/ folder (u.data, u.item, u.user, u.genre) "
        "inside a directory DIR and run `matfact demo --data-home DIR`, or set "
        "MATFACT_DATA=DIR" + (f" (now {env})" if env else "") + ". The archive is "
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip (research use only; "
        "see its README).",
        "",
        f"Details: {reason}",
    ]), file=sys.stderr)
    data = matfact.make_synthetic(2000, 1000, 100_000, random_state=0)
    return data, "synthetic ratings (make_synthetic, 2,000 users x 1,000 items)"


def _demo_models(out: _Output) -> list[Any]:
    models = []
    registry = _registry()
    for name, params in DEMO_MODELS:
        if name not in registry:
            out.note(f"demo model {name} is not available in this matfact; skipped")
            continue
        models.append(registry[name](**params))
    return models


def _demo_top(model_name: str, params: dict[str, Any], data: Any, out: _Output) -> None:
    """Refit the best model on all the data and show one user's top 10 with titles."""
    import numpy as np

    model = _registry()[model_name](**params)
    _fit(model, data, out)
    user = _DEMO_USER if _DEMO_USER in data.user_index else data.user_ids[0]
    ids, scores = model.recommend([user], n=_DEMO_K)
    titles = data.item_titles()
    if not data.is_implicit:
        code = data.user_index.get_indexer([user])[0]
        mine = np.flatnonzero(data.user_codes == code)
        best = mine[np.argsort(-data.ratings[mine], kind="stable")][:3]
        liked = [(titles[data.item_codes[i]] if titles is not None
                  else f"item {data.item_ids[data.item_codes[i]]}") for i in best]
        out.result(f"User {user} rated highly: " + "; ".join(_shorten(t, 40) for t in liked))
    heading = f"Top {_DEMO_K} for user {user} from {model_name} (refit on all the data):"
    _print_recommendations(out, heading, _recommendation_rows(model, ids[0], scores[0]))


def _write_csv(table: Any, path: Path) -> None:
    import uuid

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        table.to_csv(tmp, index=False, float_format="%.6g")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cmd_demo(args: argparse.Namespace, out: _Output) -> int:
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    import matfact
    from matfact.plots import plot_model_comparison

    target = Path(args.out).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    data, label = _demo_data(args.data_home, out)
    out.info(f"Data: {label}: {data!r}")
    models = _demo_models(out)
    random_split = matfact.train_test_split(data, test_size=0.2, strategy="random",
                                            random_state=_DEMO_SEED)
    user_split = matfact.train_test_split(data, test_size=0.2, strategy="per_user",
                                          random_state=_DEMO_SEED)
    rows = []
    for model in tqdm(models, desc="Training", unit="model", disable=not out.progress,
                      leave=False):
        name = type(model).__name__
        row = {"model": name, "RMSE": np.nan, "MAE": np.nan}
        explicit_model = not data.is_implicit and "explicit" in model._accepts
        if explicit_model:
            _fit(model, random_split.train, out)
            if _predicts_ratings(model):
                scores = matfact.evaluate(model, random_split.test)
                row.update(RMSE=scores["rmse"], MAE=scores["mae"])
            model = matfact.clone(model)
        seconds = _fit(model, user_split.train, out)
        ranking = matfact.evaluate_ranking(model, user_split.test, k=_DEMO_K,
                                           metrics=("ndcg", "precision"))
        row.update({f"NDCG@{_DEMO_K}": ranking[f"ndcg@{_DEMO_K}"],
                    f"P@{_DEMO_K}": ranking[f"precision@{_DEMO_K}"],
                    "fit time (s)": seconds})
        rows.append(row)
    if not rows:
        raise UsageError("DEMO_MODELS names no available model")
    table = pd.DataFrame(rows, columns=["model", "RMSE", "MAE", f"NDCG@{_DEMO_K}",
                                        f"P@{_DEMO_K}", "fit time (s)"])
    out.result(f"matfact {__version__} demo on {label}")
    out.result(f"{data.n_users:,} users x {data.n_items:,} items, {data.nnz:,} ratings.")
    out.result(f"RMSE, MAE: random 80/20 split. NDCG@{_DEMO_K}, P@{_DEMO_K} and fit time: "
               f"per-user 80/20 split. Seed {_DEMO_SEED}.")
    out.result()
    printable = [[row["model"], _number(row["RMSE"]), _number(row["MAE"]),
                  _number(row[f"NDCG@{_DEMO_K}"]), _number(row[f"P@{_DEMO_K}"]),
                  _number(row["fit time (s)"], 4)] for row in table.to_dict("records")]
    out.result(format_table(list(table.columns), printable, right={1, 2, 3, 4, 5}))
    out.result()
    # Show a personalized list: the best rating model if any, else the best ranker.
    rmse = table["RMSE"].to_numpy(dtype=float)
    best = (int(np.nanargmin(rmse)) if np.isfinite(rmse).any()
            else int(np.nanargmax(table[f"NDCG@{_DEMO_K}"].to_numpy(dtype=float))))
    best_name = table["model"].iloc[best]
    params = dict(next(p for n, p in DEMO_MODELS if n == best_name))
    _demo_top(best_name, params, data, out)
    png = plot_model_comparison(table, target / "demo.png", title=f"matfact demo: {label}")
    csv_path = target / "demo.csv"
    _write_csv(table, csv_path)
    out.result()
    out.result(f"Wrote the comparison plot to {png} and the table to {csv_path}")
    return 0


# ------------------------------------------------------------------------------------ parser
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_data_options(parser: argparse.ArgumentParser, *, required: bool = True,
                      test: bool = False) -> None:
    group = parser.add_argument_group("data", textwrap.fill(
        "--data is a dataset name (ml-100k, ml-latest-small, book-crossing, steam, "
        "retailrocket; name:kind for a variant, e.g. steam:purchase) or a CSV/TSV/Parquet "
        "file. Columns are found by header name (e.g. user/userid/user_id/visitorid, item/"
        "itemid/movieid, rating/score/stars, timestamp/time/ts, weight/count/plays/hours) or, "
        "without a header, by position (user, item, rating, timestamp).", 78,
        break_on_hyphens=False))
    group.add_argument("--data", required=required, metavar="NAME_OR_FILE",
                       help="the interactions to use")
    if test:
        group.add_argument("--test", metavar="NAME_OR_FILE",
                           help="held-out interactions to evaluate on (instead of a split)")
    group.add_argument("--sep", help="field separator (default: sniffed from the first line; "
                                     "'\\t' or 'tab' for tabs)")
    group.add_argument("--no-header", action="store_true",
                       help="the file has no header line (default: detected)")
    for role in ("user", "item", "rating", "timestamp", "weight"):
        group.add_argument(f"--{role}-col", metavar="COL",
                           help=f"{role} column: header name or 0-based number")
    group.add_argument("--implicit", action="store_true",
                       help="treat the data as implicit feedback (ignore ratings)")
    group.add_argument("--encoding", default="utf-8", help="text encoding (default: utf-8)")
    group.add_argument("--duplicates", default="error", choices=("error", "last", "sum", "mean"),
                       help="what to do with repeated (user, item) pairs (default: error)")
    group.add_argument("--data-home", metavar="DIR",
                       help="directory searched first for datasets (then $MATFACT_DATA, then "
                            "the cache)")


def _model_help() -> str:
    # List the models only if they are already imported: help must not import them.
    base = sys.modules.get("matfact.models.base")
    names = sorted(n.lower() for n in getattr(base, "MODEL_REGISTRY", {}))
    return ", ".join(names) if names else "baseline, popularity, ..."


_EXAMPLES = {
    "serve": """examples:
  MATFACT_API_KEY=... matfact serve --model model.zip --db ratings.sqlite --port 8000
  curl localhost:8000/users/196/recommendations?n=5""",
    "retrain": """examples:
  matfact retrain --data ml-100k --db ratings.sqlite --model model.zip
  matfact retrain --db ratings.sqlite --model model.zip --partial""",
    "train": """examples:
  matfact train --data ratings.csv --model baseline --out model.zip
  matfact train --data u.data --no-header --model baseline --param reg_user=5 --out m.zip""",
    "evaluate": """examples:
  matfact evaluate --data ml-100k --model baseline --split random --seed 42
  matfact evaluate --data ml-100k --model popularity --split per_user --metrics ndcg@10,map@10
  matfact evaluate --model model.zip --test test.csv --json
  matfact evaluate --data ml-100k --models baseline,biased_mf,als,nmf,pure_svd,popularity \\
      --cv 5 --out report/""",
    "recommend": """examples:
  matfact recommend --model model.zip --user 42 -n 10
  matfact recommend --model model.zip --user 7 --user 42 --include-seen --json""",
    "demo": """examples:
  matfact demo
  matfact demo --out /tmp/demo --data-home ~/datasets""",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``matfact`` argument parser (imports nothing heavy)."""
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars or chatter")
    parser = _Parser(
        prog=PROG,
        description="Matrix factorization for recommenders: train, evaluate and serve "
                    "recommendations from the command line.",
        epilog="Run 'matfact <command> --help' for the options of a command. "
               "Set MATFACT_DEBUG=1 to see tracebacks.",
    )
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or chatter")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    formatter = argparse.RawDescriptionHelpFormatter

    demo = commands.add_parser(
        "demo", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["demo"],
        help="train the demo models on MovieLens 100K (or synthetic data), compare them",
        description="Train every demo model on MovieLens 100K (synthetic ratings if it is "
                    "absent; nothing is downloaded), print a comparison table and one user's "
                    "top 10, and write demo.png and demo.csv.",
    )
    demo.add_argument("--out", default="matfact-demo", metavar="DIR",
                      help="directory for demo.png and demo.csv (default: ./matfact-demo)")
    demo.add_argument("--data-home", metavar="DIR",
                      help="directory holding the ml-100k/ folder (then $MATFACT_DATA, then "
                           "the cache)")
    demo.set_defaults(handler=_cmd_demo)

    train = commands.add_parser(
        "train", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["train"],
        help="fit a model and save it", description="Fit a model on interactions and save it "
                                                    "(a .zip, or a directory).",
    )
    _add_data_options(train)
    train.add_argument("--model", default="baseline",
                       help=f"model name, case-insensitive: {_model_help()} (default: baseline)")
    train.add_argument("--out", required=True, metavar="PATH",
                       help="where to save the model (.zip, else a directory)")
    train.add_argument("--param", action="append", metavar="KEY=VALUE",
                       help="a model parameter; VALUE is read as JSON (1, 0.05, true, null) "
                            "or else as text; repeatable")
    cluster = train.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="fit als or implicit_als on this Dask scheduler, e.g. "
                              "tcp://host:8786 (needs the dist extra); a --data URL or glob "
                              "of Parquet files (s3://bucket/ratings/*.parquet) is read by "
                              "the workers")
    cluster.add_argument("--local-cluster", type=int, metavar="N",
                         help="fit als or implicit_als on a Dask cluster of N local worker "
                              "processes (1 thread each) started for this run")
    train.set_defaults(handler=_cmd_train)

    evaluate = commands.add_parser(
        "evaluate", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["evaluate"],
        help="measure a model (by name: split, fit, evaluate; or a saved model)",
        description="With a model name: split --data, fit on the train part and evaluate on "
                    "the test part (or fit on --data and evaluate on --test). With a saved "
                    "model: evaluate it on --test, or on the test part of the split of --data.",
    )
    evaluate.add_argument("--model", metavar="NAME_OR_FILE",
                          help=f"a model name ({_model_help()}) or a saved model (.zip or a "
                               f"directory with meta.json); this or --models is required")
    evaluate.add_argument("--models", metavar="LIST",
                          help="compare models by cross-validation instead: comma-separated "
                               "model names, e.g. baseline,biased_mf,als,nmf,pure_svd,"
                               "popularity; writes a report (tables and figures) to --out")
    evaluate.add_argument("--cv", type=int, metavar="N",
                          help="with --models: number of k-fold splits (default: 5)")
    evaluate.add_argument("--out", metavar="DIR",
                          help="with --models: the report directory (default: ./report)")
    evaluate.add_argument("--tune", type=int, default=6, metavar="N",
                          help="with --models: tune each model with N trials on the first "
                               "fold's training part and plot them (default: 6; 0: no tuning)")
    _add_data_options(evaluate, required=False, test=True)
    evaluate.add_argument("--param", action="append", metavar="KEY=VALUE",
                          help="a model parameter (with a model name); repeatable")
    evaluate.add_argument("--split", default="random",
                          help="split strategy: random (default), per_user, temporal, last_n, "
                               "cold_users, cold_items")
    evaluate.add_argument("--test-size", type=float, default=0.2,
                          help="fraction held out (default: 0.2)")
    evaluate.add_argument("--seed", type=int, default=42,
                          help="split seed, also of the k-fold split with --models (default: 42)")
    evaluate.add_argument("--metrics", metavar="LIST",
                          help="comma-separated, e.g. rmse,mae,ndcg@10,precision@10,recall@20,"
                               "map,mrr,hit_rate,coverage,auc (default: rmse,mae if the model "
                               "predicts ratings, and ndcg@K,precision@K)")
    evaluate.add_argument("-k", type=int, default=10,
                          help="list length for ranking metrics without @k (default: 10)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.set_defaults(handler=_cmd_evaluate)

    recommend = commands.add_parser(
        "recommend", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["recommend"],
        help="top-n items for users from a saved model",
        description="Print the top-n items for each user from a saved model: rank, item id, "
                    "title (if the model knows titles) and score.",
    )
    recommend.add_argument("--model", required=True, metavar="FILE",
                           help="a saved model (.zip or directory)")
    recommend.add_argument("--user", action="append", required=True, metavar="ID",
                           help="a raw user id; repeatable")
    recommend.add_argument("-n", type=int, default=10, help="list length (default: 10)")
    recommend.add_argument("--include-seen", action="store_true",
                           help="also recommend items the user interacted with in training")
    recommend.add_argument("--strict", action="store_true",
                           help="an unknown user is an error (default: fallback ranking)")
    recommend.add_argument("--json", action="store_true", help="print JSON instead of tables")
    recommend.set_defaults(handler=_cmd_recommend)

    from matfact.apps import images as images_app
    from matfact.apps import topics as topics_app

    topics = commands.add_parser(
        "topics", parents=[quiet], formatter_class=formatter,
        help="NMF topics of a text collection (TF-IDF → NMF): top words, shares, PNG, CSV",
        description="Turn documents into NMF topics: print each topic's top words and share "
                    "of the documents (and agreement with labels, where there are some); "
                    "write a PNG of the top words and a CSV of document-topic weights.",
    )
    topics_app.configure_parser(topics)
    topics.set_defaults(handler=lambda args, out: topics_app.run(args))

    images = commands.add_parser(
        "images", parents=[quiet], formatter_class=formatter,
        help="SVD (eigenfaces) vs NMF (parts) on images: bases, compression, recognition",
        description="Factor a set of same-size grayscale images (or one image cut into "
                    "patches) by SVD and NMF: write basis images, reconstructions and "
                    "error/PSNR and recognition plots; print the compression table.",
    )
    images_app.configure_parser(images)
    images.set_defaults(handler=lambda args, out: images_app.run(args))

    serve = commands.add_parser(
        "serve", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["serve"],
        help="serve recommendations over HTTP (FastAPI)",
        description="Serve a saved model over HTTP: recommendations, predictions, live "
                    "ratings logged to SQLite and folded in at once, hot reload, metrics.")
    serve.add_argument("--model", required=True, metavar="PATH", help="the model file")
    serve.add_argument("--db", required=True, metavar="PATH_OR_URL",
                       help="the rating log: an SQLite file (created if missing) or an "
                            "SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--api-key-file", metavar="PATH",
                       help="file holding the write key (default: $MATFACT_API_KEY)")
    serve.add_argument("--require-key", action="store_true",
                       help="require the key for reads too")
    serve.set_defaults(handler=_cmd_serve)

    retrain = commands.add_parser(
        "retrain", parents=[quiet], formatter_class=formatter, epilog=_EXAMPLES["retrain"],
        help="refit a served model from the data plus the logged ratings",
        description="Refit the model from --data plus every rating in the log (or refine "
                    "it with partial_fit), and replace the model file atomically; then "
                    "POST /admin/reload swaps it into a running server.")
    _add_data_options(retrain, required=False)
    retrain.add_argument("--db", required=True, metavar="PATH_OR_URL",
                         help="the rating log (SQLite file or SQLAlchemy URL)")
    retrain.add_argument("--model", required=True, metavar="PATH",
                         help="the model file to replace")
    retrain.add_argument("--model-name", help="fit this model instead of the file's class "
                                              "(default: the file's class and parameters)")
    retrain.add_argument("--partial", action="store_true",
                         help="refine the existing model with partial_fit on the log only")
    retrain.set_defaults(handler=_cmd_retrain)
    return parser


# ------------------------------------------------------------------------------------ main
def _error_message(err: BaseException) -> str:
    if isinstance(err, OSError) and not isinstance(err, MatfactError) and err.strerror \
            and err.filename and not isinstance(err, FileNotFoundError):
        return f"{err.strerror}: {err.filename}"
    if isinstance(err, FileNotFoundError) and err.strerror and err.filename:
        return f"no such file or directory: {err.filename}"
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError) and not isinstance(err, MatfactError) and len(err.args) == 1:
        text = f"missing key {err.args[0]!r}"
    return " ".join(text.split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    prefix = "" if issubclass(category, MatfactWarning) else f"{category.__name__}: "
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {prefix}{text}", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the ``matfact`` command line.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0 on success, 1 when the command failed, 2 for bad
        usage, 130 when interrupted.
    """
    debug = os.environ.get("MATFACT_DEBUG", "").strip() not in ("", "0")
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            args = build_parser().parse_args(argv)
            if args.command is None:
                raise UsageError("no command given; choose one of demo, train, evaluate, "
                                 "recommend, serve, retrain, topics, images (see "
                                 "'matfact --help')")
            return int(args.handler(args, _Output(bool(args.quiet))) or 0)
        except SystemExit as exit_:  # --help and --version
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None
                                                                    else _EXIT_USAGE)
        except UsageError as err:
            if debug:
                raise
            return _fail(str(err), _EXIT_USAGE)
        except KeyboardInterrupt:
            if debug:
                raise
            print(file=sys.stderr)
            return _fail("interrupted", _EXIT_INTERRUPTED)
        except BrokenPipeError:  # e.g. `matfact recommend ... | head`
            _silence_stdout()
            return _EXIT_RUNTIME
        except (MatfactError, OSError, ValueError, KeyError, MemoryError) as err:
            if debug:
                raise
            return _fail(_error_message(err), _EXIT_RUNTIME)
        except Exception as err:  # a bug: still one line, with the way to the traceback
            if debug:
                raise
            return _fail(f"unexpected {type(err).__name__}: {_error_message(err)} (set "
                         f"MATFACT_DEBUG=1 for the traceback)", _EXIT_RUNTIME)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at devnull so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
