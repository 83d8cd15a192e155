"""Exact top-n for every user, a block of users at a time: batch scoring.

:func:`recommend_all` (also :meth:`Recommender.recommend_all
<matfact.models.base.Recommender.recommend_all>`) ranks the whole catalogue for
every user the model knows, or for a given list, and yields the lists block by
block, so memory holds one block's scores, never the users × items matrix. Each
block goes through the model's own :meth:`~matfact.models.base.Recommender.recommend_codes`
path: :meth:`~matfact.models.base.Recommender.score_users` (one matrix product
for the block), the fallback of users the model cannot place, the seen-item
exclusions, the one top-n (:mod:`matfact.models.ranking`) and the clip to the
rating scale. So each block's lists are what ``recommend`` gives for the same users,
with the same fallback, clipping and padding. (Across different blocks of users,
float32 scores can differ in their last bit: BLAS rounds a matrix product according
to its shape and thread count, so ``recommend(all users)``, which scores 2,048 users
per product on every BLAS thread, may order two items whose scores tie to that bit
the other way.)

Blocks are scored side by side, one per core, each on one thread (its product and
its top-n): the pools of a multi-threaded product and a parallel top-n, alternating,
spin into each other's turns.

:func:`write_recommendations` streams them to a Parquet file (``pyarrow``'s
``ParquetWriter``) or a CSV file, written beside the target and renamed into
place, in long format: one row per recommended item.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from matfact._params import check_n
from matfact._progress import progress_bar, progress_mode
from matfact.exceptions import ParameterError
from matfact.models._updates import _as_id_array

__all__ = ["BLOCK_BYTES", "MAX_BLOCK_ROWS", "MIN_BLOCK_ROWS", "OUTPUT_FORMATS",
           "RecommendationBlock", "WrittenRecommendations", "block_rows", "output_format",
           "recommend_all", "write_recommendations"]

#: The scores one block may hold (float32, users × items), unless that is fewer than
#: :data:`MIN_BLOCK_ROWS` users: 16 MiB keeps the blocks of both workers of this 2-core
#: machine in its 32 MiB L3 cache while they are ranked (a block of 209 users at 20,000
#: items; 64 to 419 users measured within 10 % of each other).
BLOCK_BYTES = 16 * 2**20
#: The fewest users in a default block: a product of fewer users reads the item factors
#: more often than it computes with them (at 10⁶ items a block is 64 users, 256 MB).
MIN_BLOCK_ROWS = 64
#: The most users in one block (the model's own batch of ``recommend``).
MAX_BLOCK_ROWS = 2048
#: File suffixes :func:`write_recommendations` writes, and the format of each.
OUTPUT_FORMATS = {".parquet": "parquet", ".csv": "csv"}
#: Rows gathered before a Parquet row group is written (bounded: ~25 MB of integer ids).
_ROW_GROUP_ROWS = 1 << 20


class RecommendationBlock(NamedTuple):
    """The lists of one block of users, as :meth:`~matfact.models.base.Recommender.recommend`
    returns them.

    Attributes
    ----------
    users : ndarray of shape (b,)
        Raw user ids, in the order asked (index order for every user).
    ids : ndarray of shape (b, width)
        Raw item ids, best first, ``width = min(n, n_items)``; -1 (or ``""`` for string
        ids) where a user has fewer eligible items.
    scores : ndarray of shape (b, width), float32
        Their scores, clipped to the rating scale for a rating model; popularity counts
        for users who fell back; NaN in the padding.
    fallback : ndarray of shape (b,), bool
        True for users ranked by the popularity fallback (unknown, or unplaced).
    """

    users: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    fallback: np.ndarray


class WrittenRecommendations(NamedTuple):
    """What :func:`write_recommendations` wrote.

    Attributes
    ----------
    path : Path
        The file.
    n_users : int
        Users ranked.
    n_rows : int
        Rows written (recommended items; padding slots are not written).
    n_fallback : int
        Users who got the popularity fallback.
    """

    path: Path
    n_users: int
    n_rows: int
    n_fallback: int


def block_rows(n_items: int, block_size: int | None = None) -> int:
    """Users per block: ``block_size``, else as many as fit :data:`BLOCK_BYTES` of scores.

    Parameters
    ----------
    n_items : int
        The catalogue size.
    block_size : int, default=None
        Users per block (≥ 1); None chooses from :data:`BLOCK_BYTES`, between
        :data:`MIN_BLOCK_ROWS` and :data:`MAX_BLOCK_ROWS`.

    Returns
    -------
    int
    """
    if block_size is not None:
        return check_n(block_size, "block_size")
    return int(max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, BLOCK_BYTES // (4 * max(n_items, 1)))))


def recommend_all(model: Any, n: int = 10, *, exclude_seen: bool = True, users: Any = None,
                  unknown: str = "fallback", block_size: int | None = None,
                  n_threads: int | None = None, progress: bool | str | None = None,
                  approximate: bool = False) -> Iterator[RecommendationBlock]:
    """Top-``n`` items for every user (or ``users``), yielded a block of users at a time.

    Each block is ``model.recommend(block_users, n, exclude_seen=exclude_seen,
    unknown=unknown, return_fallback=True)``, computed on one thread: the same ids,
    scores, fallback and padding (scores of other batchings of the users may differ in
    the last float32 bit, see the module doc). Only ``n_threads`` blocks' scores
    (``block_size × n_items`` float32 each) are held at a time. The model must not
    change while the blocks are read.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    n : int, default=10
        List length; capped at the number of items.
    exclude_seen : bool, default=True
        Never recommend items the user interacted with in ``fit``.
    users : array-like of shape (n_users,), default=None
        Raw user ids; None for every user the model knows, in index order
        (``model.user_index_.ids``).
    unknown : {"fallback", "raise"}, default="fallback"
        As :meth:`~matfact.models.base.Recommender.recommend`: an unknown user in
        ``users`` gets the popularity fallback, or raises
        :class:`~matfact.UnknownIdError` (before any block is scored).
    block_size : int, default=None
        Users per block; None: as many as fit :data:`BLOCK_BYTES` of scores
        (:func:`block_rows`).
    n_threads : int, default=None
        Blocks scored side by side, each by one thread (its matrix product and its
        top-n); None: one per core numba may use (one for a small job). Memory holds
        ``n_threads`` blocks' scores; BLAS runs on one thread while blocks are scored.
    progress : bool, "bar", "lines" or None, default=None
        Users ranked so far: None, a bar only when stderr is a terminal; True, a bar;
        ``"lines"``, plain lines; False, nothing (:func:`matfact._progress.progress_bar`).
    approximate : bool, default=False
        Each block as ``recommend(..., approximate=True)`` gives it (the model's
        approximate index, built first if it has none): a catalogue of millions of
        items, where scoring every item for every user is out of reach. The searches
        run one user at a time on one thread (``n_threads`` is ignored).

    Yields
    ------
    RecommendationBlock
        ``users``, ``ids``, ``scores``, ``fallback`` of consecutive users.

    Raises
    ------
    NotFittedError, ParameterError, UnknownIdError
        At the call, before the first block is scored.

    Examples
    --------
    >>> import matfact
    >>> data = matfact.Interactions.from_arrays([1, 1, 2, 3], [10, 11, 10, 12],
    ...                                          [4, 5, 3, 1], rating_scale=(1, 5, 1))
    >>> model = matfact.Baseline().fit(data, progress=False)
    >>> [block.users.tolist() for block in model.recommend_all(n=2, block_size=2)]
    [[1, 2], [3]]
    """
    model._check_fitted()
    n = check_n(n)
    if unknown not in ("fallback", "raise"):
        raise ParameterError(f"unknown must be 'fallback' or 'raise', got {unknown!r}")
    rows = block_rows(model.n_items_, block_size)
    progress_mode(progress)  # a bad value fails here, not at the first block
    if users is None:
        codes = np.arange(model.n_users_, dtype=np.int64)
        raw = None
    else:
        raw = _as_id_array(users)
        codes = model._indices(raw, model.user_index_, "user", unknown)
    if n_threads is not None:
        n_threads = check_n(n_threads, "n_threads")
    if approximate:
        from matfact.models.ann import model_index

        model_index(model, "recommend")  # built (or checked) now, not in a worker
        n_threads = 1  # the index serves one search at a time
    return _blocks(model, codes, raw, n, bool(exclude_seen), rows, progress, n_threads,
                   bool(approximate))


def _blocks(model: Any, codes: np.ndarray, raw: np.ndarray | None, n: int, exclude_seen: bool,
            rows: int, progress: Any, n_threads: int | None,
            approximate: bool = False) -> Iterator[RecommendationBlock]:
    from matfact._threads import resolve_n_threads, single_thread

    workers = resolve_n_threads(n_threads, work=len(codes) * model.n_items_)

    def rank(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Each worker scores and ranks whole blocks on one thread (BLAS and numba): the
        # pools of a multi-threaded product and a parallel top-k, alternating, keep
        # spinning into each other's turn (numba's top-k took twice as long right after
        # a product, and the product twice as long right after the top-k, on 2 cores).
        with single_thread():
            return model._ranked_codes(codes[start:start + rows], n, exclude_seen,
                                       approximate=approximate)

    bar = progress_bar(progress=progress, desc=f"{type(model).__name__} recommend_all",
                       total=len(codes), unit="user")
    starts = iter(range(0, len(codes), rows))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="matfact-recommend-all")
    try:
        # At most `workers` blocks in flight: memory holds that many blocks' scores.
        pending = deque((start, pool.submit(rank, start))
                        for start in itertools.islice(starts, workers))
        while pending:
            start, future = pending.popleft()
            idx, val, fell_back = future.result()
            following = next(starts, None)
            if following is not None:
                pending.append((following, pool.submit(rank, following)))
            stop = start + len(fell_back)
            users = model.user_index_.to_ids(codes[start:stop]) if raw is None else raw[start:stop]
            bar.update(len(fell_back))
            yield RecommendationBlock(users, model._to_raw(idx, model.item_index_), val,
                                      fell_back)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def output_format(path: str | os.PathLike) -> str:
    """``"parquet"`` or ``"csv"`` for a target file, by its suffix (case-insensitive).

    Raises
    ------
    ParameterError
        For another suffix, or a path that is an existing directory.
    """
    path = Path(path)
    if path.is_dir():
        raise ParameterError(f"{path} is a directory; give a file name such as "
                             f"{path / 'recommendations.parquet'}")
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ParameterError(f"cannot tell the format of {path}: the name must end in "
                             f"{' or '.join(OUTPUT_FORMATS)}")
    return fmt


def write_recommendations(model: Any, path: str | os.PathLike, n: int = 10, *,
                          exclude_seen: bool = True, users: Any = None,
                          unknown: str = "fallback", block_size: int | None = None,
                          n_threads: int | None = None, progress: bool | str | None = None,
                          approximate: bool = False) -> WrittenRecommendations:
    """Write every user's top-``n`` (or ``users``') to a Parquet or CSV file, streamed.

    The lists of :func:`recommend_all` (so exactly those of ``recommend``), in long
    format, one row per recommended item, users in the order ranked:

    ======== =========================================================================
    user     raw user id (int64, or string for a model with string ids)
    rank     1 for the best item (int32)
    item     raw item id (int64 or string, as the model's item ids)
    score    float32: what ``model.score_kind`` says, or the popularity count for a
             user who fell back
    fallback bool: whether the user got the popularity fallback
    ======== =========================================================================

    Padding slots are not written: a user with fewer than ``n`` eligible items has
    fewer rows (none when nothing is eligible). A Parquet file (``.parquet``, needs
    ``pyarrow``) is written a row group of about a million rows at a time and carries
    a ``matfact`` entry in its schema metadata (JSON: model class, ``n``,
    ``exclude_seen``, ``score_kind``, matfact version); a ``.csv`` file has a header
    line. The file is written beside ``path`` under a temporary name and renamed into
    place when complete, so an interrupted run leaves the previous file (or none),
    never a partial one under ``path``.

    Parameters
    ----------
    model : Recommender
        A fitted model.
    path : str or path-like
        The target file; its suffix, ``.parquet`` or ``.csv``, chooses the format. An
        existing file is replaced.
    n, exclude_seen, users, unknown, block_size, n_threads, progress, approximate
        As :func:`recommend_all`.

    Returns
    -------
    WrittenRecommendations
        The path and the counts of users, rows and fallback users.

    Raises
    ------
    ParameterError
        For another suffix, a directory, or a bad argument of :func:`recommend_all`.
    FileNotFoundError
        When the target's directory does not exist.
    DataError
        If ``pyarrow`` is missing for a Parquet file.
    """
    from matfact._atomic import atomic_write

    path = Path(path).expanduser()
    fmt = output_format(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(2, "No such file or directory", str(path.parent))
    blocks = recommend_all(model, n, exclude_seen=exclude_seen, users=users, unknown=unknown,
                           block_size=block_size, n_threads=n_threads, progress=progress,
                           approximate=approximate)
    counts = [0, 0, 0]

    def tally(columns: dict[str, np.ndarray], block: RecommendationBlock) -> None:
        counts[0] += len(block.users)
        counts[1] += len(columns["rank"])
        counts[2] += int(block.fallback.sum())

    if fmt == "parquet":
        pq, schema = _parquet_schema(model, n, exclude_seen)

        def write(tmp: Path) -> None:
            import pyarrow as pa

            pending: list[Any] = []
            pending_rows = 0
            with pq.ParquetWriter(str(tmp), schema) as writer:
                for block in blocks:
                    columns = _long_rows(block)
                    tally(columns, block)
                    pending.append(pa.table(columns, schema=schema))
                    pending_rows += len(columns["rank"])
                    if pending_rows >= _ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(pending),
                                           row_group_size=pending_rows)
                        pending, pending_rows = [], 0
                if pending:  # (no user at all: the schema alone, written at close)
                    writer.write_table(pa.concat_tables(pending), row_group_size=pending_rows)
    else:
        import pandas as pd

        def write(tmp: Path) -> None:
            with open(tmp, "x", encoding="utf-8", newline="") as handle:
                header = True
                for block in blocks:
                    columns = _long_rows(block)
                    tally(columns, block)
                    pd.DataFrame(columns).to_csv(handle, header=header, index=False)
                    header = False
                if header:  # no user: the header alone
                    handle.write(",".join(_COLUMNS) + "\n")

    atomic_write(path, write)
    return WrittenRecommendations(path, *counts)


_COLUMNS = ("user", "rank", "item", "score", "fallback")


def _long_rows(block: RecommendationBlock) -> dict[str, np.ndarray]:
    """One row per recommended item of ``block`` (the padding, score NaN, dropped)."""
    keep = ~np.isnan(block.scores)  # a prefix of each row: the top-n fills best first
    per_user = keep.sum(axis=1)
    ranks = np.broadcast_to(np.arange(1, block.scores.shape[1] + 1, dtype=np.int32),
                            block.scores.shape)
    return {"user": np.repeat(block.users, per_user), "rank": ranks[keep],
            "item": block.ids[keep], "score": block.scores[keep],
            "fallback": np.repeat(block.fallback, per_user)}


def _parquet_schema(model: Any, n: int, exclude_seen: bool) -> tuple[Any, Any]:
    from matfact.exceptions import DataError

    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DataError(f"writing Parquet needs pyarrow: pip install pyarrow, or write a "
                        f".csv file ({err})") from None
    from matfact._version import __version__

    def id_type(index: Any) -> Any:
        return pa.string() if index.kind == "str" else pa.int64()

    model._check_fitted()
    about = {"model": type(model).__name__, "n": n, "exclude_seen": exclude_seen,
             "score_kind": model.score_kind, "matfact_version": __version__}
    schema = pa.schema([("user", id_type(model.user_index_)), ("rank", pa.int32()),
                        ("item", id_type(model.item_index_)), ("score", pa.float32()),
                        ("fallback", pa.bool_())],
                       metadata={"matfact": json.dumps(about)})
    return pq, schema
