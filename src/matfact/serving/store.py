"""The rating log: every rating the service acknowledges, durable in a database.

:class:`RatingStore` appends ratings to one table through SQLAlchemy Core. The
default is an SQLite file, in WAL mode with ``synchronous=FULL``, so a committed
rating survives a crash of the process or the machine; an SQLAlchemy URL
(``postgresql+psycopg://user@host/db``) puts the log in PostgreSQL instead, whose
default ``synchronous_commit=on`` gives the same guarantee. Writes go through one
writer thread that commits whatever has queued up in a single transaction (group
commit): a caller's :meth:`RatingStore.append` returns only after the transaction
holding its ratings has committed, which is when the service acknowledges them.

The writer thread survives anything a batch carries. A group whose transaction
fails is retried batch by batch, so one request's bad row fails that request
alone: with :class:`~matfact.exceptions.DataError` when the database refused the
batch's values (an id that cannot be encoded, say), with
:class:`RatingLogUnavailable` when the database itself failed (locked, disk
full, connection lost). Either message is short; the statement, its parameters
and the driver's error go to the server's log (the ``matfact.serving`` logger)
only.

Ids keep their type: the log stores each id with a flag saying whether it was
an integer, so a replay gives the model the ids it was fitted with.

A row the model being served cannot take (written by an older version, or
before the model file was replaced by one of another kind) is moved to the
``quarantine`` table (:meth:`RatingStore.quarantine`: the same columns, plus the
reason and when), so that no row can stop a start, a reload or a retrain.

Each log has an identity (:attr:`RatingStore.log_id`, a random id written once
when the log is created): ``matfact retrain`` records it in the model file with
the last sequence number it fitted and that rating
(:meth:`RatingStore.position`), so that a server loading that file replays only
the ratings logged after it (:meth:`RatingStore.logged_through`), and the whole
log when the file came from another log or the log no longer holds that rating
there (restored from an older backup, say).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matfact.exceptions import DataError, MatfactError

__all__ = ["Rating", "RatingLogUnavailable", "RatingStore", "database_url"]

_MAX_GROUP = 10_000  # ratings per transaction: bounds the time a commit holds the lock
_MAX_REASON = 500  # characters of a quarantine reason
_CHUNK = 500  # rows per statement when moving rows to the quarantine
logger = logging.getLogger("matfact.serving")


class RatingLogUnavailable(MatfactError):
    """The rating log could not commit (database locked, disk full, connection lost).

    The ratings were not logged; the same request may succeed later. The HTTP
    service answers 503.
    """


@dataclass(frozen=True)
class Rating:
    """One logged rating (ids as the client gave them: int or str)."""

    user: int | str
    item: int | str
    rating: float
    timestamp: float | None = None


def _encode(raw: Any) -> tuple[str, bool]:
    if isinstance(raw, (bool, np.bool_)):
        raise DataError(f"ids must be integers or strings, got {raw!r}")
    if isinstance(raw, (int, np.integer)):
        value = int(raw)
        if not -(2**63) <= value < 2**63:
            raise DataError("integer ids must fit in 64 bits")
        return str(value), True
    if isinstance(raw, str):
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"id {ascii(raw[:40])} is not valid Unicode text (a lone "
                            f"surrogate?); it cannot be logged") from None
        return str(raw), False
    raise DataError(f"ids must be integers or strings, got {type(raw).__name__}")


def _decode(text: str, is_int: bool) -> int | str:
    if is_int:
        if not isinstance(text, str) or len(text) > 24:
            raise DataError("an integer id of the log is not a 64-bit integer")
        return int(text)
    if not isinstance(text, str):
        raise DataError(f"an id of the log is not text ({type(text).__name__})")
    return text


def _number(value: Any) -> float:
    if isinstance(value, (bytes, str)) or value is None:
        raise DataError(f"a value of the log is not a number ({type(value).__name__})")
    return float(value)


def _rating(user: str, user_is_int: bool, item: str, item_is_int: bool, value: float,
            stamp: float | None) -> Rating:
    """A row of the log as the :class:`Rating` that was logged (DataError if it cannot be)."""
    return Rating(_decode(user, user_is_int), _decode(item, item_is_int), _number(value),
                  None if stamp is None else _number(stamp))


def _fingerprint(rating: Rating) -> str:
    """One rating as the log stores it: ids with their type, the value and the timestamp."""
    stamp = None if rating.timestamp is None else float(rating.timestamp)
    return json.dumps([*_encode(rating.user), *_encode(rating.item), float(rating.rating), stamp])


def _reason(exc: BaseException) -> str:
    """A short account of why a row was refused, for the quarantine table."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON - 1] + "…"


def _is_input_error(exc: BaseException) -> bool:
    """Did the database (or its driver) refuse the values, rather than fail itself?"""
    from sqlalchemy.exc import DataError as DatabaseDataError
    from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

    if isinstance(exc, (DatabaseDataError, IntegrityError)):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        # Raised before the statement reached the database: binding a parameter failed.
        exc = exc.orig if exc.orig is not None else exc
    return isinstance(exc, (UnicodeError, ValueError, TypeError, OverflowError, DataError))


def database_url(target: str | os.PathLike) -> str:
    """An SQLAlchemy URL for ``target``: a URL as given, a file path as an SQLite URL."""
    text = os.fspath(target)
    if "://" in text:
        return text
    if text == ":memory:":
        raise DataError("the rating log must be a file; ':memory:' would lose every rating")
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _info_table(metadata: Any) -> Any:
    from sqlalchemy import Column, Table, Text

    return Table("log_info", metadata, Column("key", Text, primary_key=True),
                 Column("value", Text, nullable=False))


def _columns() -> list:
    """The columns a logged rating has (in the log and in the quarantine)."""
    from sqlalchemy import Boolean, Column, DateTime, Float, Text, func

    return [Column("user", Text, nullable=False),
            Column("user_is_int", Boolean, nullable=False),
            Column("item", Text, nullable=False),
            Column("item_is_int", Boolean, nullable=False),
            Column("rating", Float, nullable=False),
            Column("timestamp", Float),
            Column("received", DateTime, nullable=False,
                   server_default=func.current_timestamp())]


def _table(metadata: Any) -> Any:
    from sqlalchemy import BigInteger, Column, Identity, Integer, Table

    return Table(
        "ratings", metadata,
        # BIGINT on PostgreSQL; SQLite's rowid alias must be INTEGER.
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), Identity(),
               primary_key=True),
        *_columns(),
    )


def _quarantine_table(metadata: Any) -> Any:
    from sqlalchemy import BigInteger, Column, DateTime, Identity, Integer, Table, Text, func

    return Table(
        "quarantine", metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), Identity(),
               primary_key=True),
        # The row's sequence number in the log it was moved from. Not unique: SQLite may
        # give a later rating the number of a row that was moved (the log's largest).
        Column("seq", BigInteger, nullable=False),
        *_columns(),
        Column("reason", Text, nullable=False),
        Column("quarantined", DateTime, nullable=False,
               server_default=func.current_timestamp()),
    )


class RatingStore:
    """An append-only log of ratings with group commit (SQLite file or SQLAlchemy URL).

    Parameters
    ----------
    target : str or os.PathLike
        A file path (an SQLite database, created if missing) or an SQLAlchemy URL
        such as ``postgresql+psycopg://matfact@db.example/ratings``. ``:memory:``
        is refused: the log exists to survive the process.
    lock_timeout : float, default=5.0
        Seconds an SQLite write waits for another process's lock before it fails
        (the request then gets :class:`RatingLogUnavailable`).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ratings.sqlite")
    >>> with RatingStore(path) as store:
    ...     store.append([Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9)])
    ...     [r.rating for r in store.ratings()]
    2
    [4.0, 2.5]
    """

    def __init__(self, target: Any, *, lock_timeout: float = 5.0) -> None:
        from sqlalchemy import MetaData, create_engine, event
        from sqlalchemy.exc import SQLAlchemyError

        self.url = database_url(target)
        self._sqlite = self.url.startswith("sqlite")
        options: dict[str, Any] = {"pool_pre_ping": True}
        if self._sqlite:
            options["connect_args"] = {"timeout": float(lock_timeout)}
        try:
            self.engine = create_engine(self.url, **options)
        except (SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
            raise DataError(f"cannot open the rating log {target}: {exc}") from exc
        if self._sqlite:
            @event.listens_for(self.engine, "connect")
            def _durable(connection: Any, _: Any) -> None:
                cursor = connection.cursor()
                mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.close()
                if str(mode).lower() != "wal":
                    raise DataError(f"{self.url}: SQLite refused WAL mode (got {mode!r})")
        self._metadata = MetaData()
        self.table = _table(self._metadata)
        self.quarantine_table = _quarantine_table(self._metadata)
        self._info = _info_table(self._metadata)
        try:
            self._metadata.create_all(self.engine)
            self.log_id = self._read_or_make_id()
            self.quarantined = self.count_quarantined()
        except (SQLAlchemyError, sqlite3.Error, DataError) as exc:
            self.engine.dispose()
            raise DataError(f"{target} is not a usable rating log: {exc}") from exc
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="matfact-rating-log",
                                        daemon=True)
        self._writer.start()

    def _read_or_make_id(self) -> str:
        """The log's identity: read it, or write a new one (first opener wins a race)."""
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError

        query = select(self._info.c.value).where(self._info.c.key == "log_id")
        with self.engine.connect() as connection:
            found = connection.execute(query).scalar_one_or_none()
        if found is None:
            try:
                with self.engine.begin() as connection:
                    connection.execute(self._info.insert(),
                                       {"key": "log_id", "value": uuid.uuid4().hex})
            except IntegrityError:
                pass  # another process created the log at the same moment: use its id
            with self.engine.connect() as connection:
                found = connection.execute(query).scalar_one()
        return str(found)

    # ------------------------------------------------------------------ writing
    def append(self, ratings: Sequence[Rating]) -> int:
        """Log ``ratings``; return once they are committed. Returns how many were written."""
        return len(self.append_async(ratings).result())

    def append_async(self, ratings: Sequence[Rating]) -> concurrent.futures.Future:
        """Queue ``ratings`` for the next group commit; the future resolves when committed.

        The future's result is the list of sequence numbers the ratings were
        given, in order. It holds the exception instead if they were not
        committed (nothing of the batch is kept):
        :class:`~matfact.exceptions.DataError` if the database refused the
        batch's values, :class:`RatingLogUnavailable` if the database failed.
        Values that no database could take (a NaN rating, an id that is not
        valid Unicode text) raise :class:`DataError` here, before anything is queued.
        """
        rows = []
        for r in ratings:
            value = float(r.rating)
            if not math.isfinite(value):
                raise DataError(f"rating {r.rating!r} is not a finite number")
            stamp = None if r.timestamp is None else float(r.timestamp)
            if stamp is not None and not math.isfinite(stamp):
                raise DataError(f"timestamp {r.timestamp!r} is not a finite number")
            user, user_is_int = _encode(r.user)
            item, item_is_int = _encode(r.item)
            rows.append({"user": user, "user_is_int": user_is_int, "item": item,
                         "item_is_int": item_is_int, "rating": value, "timestamp": stamp})
        if self._closed:
            raise RatingLogUnavailable("the rating log is closed (the server is stopping)")
        if not self._writer.is_alive():  # cannot happen; never wait on a future nobody sets
            raise RatingLogUnavailable("the rating log's writer has stopped")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((rows, future))
        return future

    def _write_loop(self) -> None:
        while True:
            group: list = []
            stop = False
            try:
                first = self._queue.get()
                if first is None:
                    return
                group, size = [first], len(first[0])
                # Everything already waiting joins this transaction: one flush to disk for all.
                while size < _MAX_GROUP:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    group.append(more)
                    size += len(more[0])
                self._commit(group)
            except BaseException as exc:  # noqa: BLE001 - the writer must outlive any batch
                logger.exception("the rating log's writer failed on a group of %d batches",
                                 len(group))
                self._fail(group, RatingLogUnavailable(
                    f"the rating log failed ({type(exc).__name__}); the ratings were not "
                    f"logged"))
            finally:
                group = []  # hold no batch while waiting for the next
            if stop:
                return

    def _insert(self, rows: list[dict]) -> list[int]:
        """One transaction: insert ``rows``; their sequence numbers, in order."""
        if not rows:
            return []
        insert = self.table.insert().returning(self.table.c.seq, sort_by_parameter_order=True)
        with self.engine.begin() as connection:
            return [int(seq) for seq in connection.execute(insert, rows).scalars()]

    def _commit(self, group: list) -> None:
        rows = [row for batch, _ in group for row in batch]
        try:
            seqs = self._insert(rows)
        except Exception as exc:  # noqa: BLE001 - classified and reported below
            if len(group) > 1 and _is_input_error(exc):
                # One batch's values were refused: commit the others, fail that one alone.
                for batch, future in group:
                    self._commit([(batch, future)])
                return
            self._fail(group, self._error(exc, sum(len(batch) for batch, _ in group)))
            return
        start = 0
        for batch, future in group:
            if not future.done():
                future.set_result(seqs[start:start + len(batch)])
            start += len(batch)

    @staticmethod
    def _error(exc: BaseException, n: int) -> MatfactError:
        """What a caller is told of a failed commit; the details go to the server's log."""
        if _is_input_error(exc):
            logger.warning("the rating log refused a batch of %d ratings: %s", n, exc)
            return DataError(f"the rating log cannot store these ratings "
                             f"({type(exc).__name__}); nothing was logged")
        logger.error("the rating log could not commit %d ratings: %s", n, exc)
        return RatingLogUnavailable(f"the rating log is unavailable ({type(exc).__name__}); "
                                    f"nothing was logged, try again later")

    @staticmethod
    def _fail(group: list, error: BaseException) -> None:
        for _, future in group:
            if not future.done():
                future.set_exception(error)

    # ------------------------------------------------------------------ reading
    def ratings(self, after: int = 0) -> Iterator[Rating]:
        """Every committed rating with sequence number > ``after``, in log order."""
        return (rating for _, rating in self.entries(after))

    def entries(self, after: int = 0, unreadable: list | None = None
                ) -> Iterator[tuple[int, Rating]]:
        """``(sequence number, rating)`` pairs after ``after``, in log order.

        A row that cannot be read back as a :class:`Rating` (an integer id that is
        not one, a value that is not a number: only a log edited by hand or by
        another program holds those) is skipped; pass a list as ``unreadable`` to
        collect ``(sequence number, reason)`` of each, e.g. for :meth:`quarantine`.
        """
        from sqlalchemy import select

        t = self.table
        query = select(t.c.seq, t.c.user, t.c.user_is_int, t.c.item, t.c.item_is_int,
                       t.c.rating, t.c.timestamp).where(t.c.seq > int(after)).order_by(t.c.seq)
        with self.engine.connect() as connection:
            for seq, *row in connection.execute(query):
                try:
                    rating = _rating(*row)
                except (ValueError, TypeError, OverflowError) as exc:
                    if unreadable is not None:
                        unreadable.append((int(seq), _reason(exc)))
                    continue
                yield int(seq), rating

    def position(self, sequence: int, rating: Rating | None) -> dict[str, Any]:
        """What a model file records of the log it was fitted from (``rating_log_``).

        The log's identity, the sequence number of the last rating the model took
        and that rating itself (``None`` with sequence 0: none), which
        :meth:`logged_through` checks against the log when the file is loaded.
        """
        return {"id": self.log_id, "position": int(sequence),
                "last": None if rating is None else _fingerprint(rating)}

    def logged_through(self, model: Any) -> int:
        """The sequence number up to which ``model`` already holds this log's ratings.

        0 (the whole log) unless the model records this log (:meth:`position`) and
        the log still holds the recorded rating at the recorded position: a file
        fitted against another database, or against this one before it was restored
        from an older backup, misses none of the ratings logged since.
        """
        record = getattr(model, "rating_log_", None)
        if not isinstance(record, dict) or record.get("id") != self.log_id:
            return 0
        position = record.get("position")
        if not isinstance(position, int) or isinstance(position, bool) or position <= 0:
            return 0
        from sqlalchemy import select

        t = self.table
        query = select(t.c.user, t.c.user_is_int, t.c.item, t.c.item_is_int, t.c.rating,
                       t.c.timestamp).where(t.c.seq == position)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        try:
            if row is None or _fingerprint(_rating(*row)) != record.get("last"):
                return 0
        except (ValueError, TypeError, OverflowError):
            return 0
        return position

    def count(self) -> int:
        """Ratings in the log (not counting the quarantined ones)."""
        from sqlalchemy import func, select

        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self.table))
                       .scalar_one())

    # ------------------------------------------------------------------ quarantine
    def quarantine(self, refused: Sequence[tuple[int, str]]) -> int:
        """Move the rows ``(sequence number, reason)`` from the log to the quarantine table.

        One transaction: each row is copied with its reason and the time, then
        deleted from the log. Rows already gone (moved by another process) are
        skipped. Returns how many rows were moved; :attr:`quarantined` counts them.
        """
        from sqlalchemy import Text, bindparam, cast, select

        reasons = {int(seq): str(reason)[:_MAX_REASON] for seq, reason in refused}
        if not reasons:
            return 0
        t, q = self.table, self.quarantine_table
        copy = q.insert().from_select(
            ["seq", "user", "user_is_int", "item", "item_is_int", "rating", "timestamp",
             "received", "reason"],
            select(t.c.seq, t.c.user, t.c.user_is_int, t.c.item, t.c.item_is_int, t.c.rating,
                   t.c.timestamp, t.c.received, cast(bindparam("why", type_=Text), Text))
            .where(t.c.seq == bindparam("row")))
        remove = t.delete().where(t.c.seq == bindparam("row"))
        rows = [{"row": seq, "why": reason} for seq, reason in sorted(reasons.items())]
        moved = 0
        # Copied and deleted in one transaction: a row gone already (another process
        # moved it) is neither copied nor counted.
        with self.engine.begin() as connection:
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start:start + _CHUNK]
                connection.execute(copy, chunk)
                moved += connection.execute(remove, chunk).rowcount
        self.count_quarantined()
        return moved

    def count_quarantined(self) -> int:
        """Rows in the quarantine table (also kept in :attr:`quarantined`)."""
        from sqlalchemy import func, select

        with self.engine.connect() as connection:
            self.quarantined = int(connection.execute(
                select(func.count()).select_from(self.quarantine_table)).scalar_one())
        return self.quarantined

    def quarantined_rows(self) -> list[dict[str, Any]]:
        """Every quarantined row as a dict (its columns, reason and when), in the order moved."""
        from sqlalchemy import select

        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(
                select(self.quarantine_table).order_by(self.quarantine_table.c.id))]

    # ------------------------------------------------------------------ lifecycle
    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop the writer and close the connections.

        Waits at most ``timeout`` seconds for the writer (a commit blocked by
        another process's lock); what it has not committed by then was never
        acknowledged.
        """
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._writer.join(timeout)
            if self._writer.is_alive():
                logger.warning("the rating log's writer did not stop within %.0f s", timeout)
                return
            self.engine.dispose()

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
