"""The rating log: every rating the service acknowledges, durable in a database.

:class:`RatingStore` appends ratings to one table through SQLAlchemy Core. The
default is an SQLite file, in WAL mode with ``synchronous=FULL``, so a committed
rating survives a crash of the process or the machine; an SQLAlchemy URL
(``postgresql+psycopg://user@host/db``) puts the log in PostgreSQL instead, whose
default ``synchronous_commit=on`` gives the same guarantee. Writes go through one
writer thread that commits whatever has queued up in a single transaction (group
commit): a caller's :meth:`RatingStore.append` returns only after the transaction
holding its ratings has committed, which is when the service acknowledges them.

Ids keep their type: the log stores each id with a flag saying whether it was
an integer, so a replay gives the model the ids it was fitted with.

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

from matfact.exceptions import DataError

__all__ = ["Rating", "RatingStore", "database_url"]

_MAX_GROUP = 10_000  # ratings per transaction: bounds the time a commit holds the lock


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
        return str(int(raw)), True
    if isinstance(raw, str):
        return raw, False
    raise DataError(f"ids must be integers or strings, got {type(raw).__name__}")


def _decode(text: str, is_int: bool) -> int | str:
    return int(text) if is_int else text


def _rating(user: str, user_is_int: bool, item: str, item_is_int: bool, value: float,
            stamp: float | None) -> Rating:
    """A row of the log as the :class:`Rating` that was logged."""
    return Rating(_decode(user, user_is_int), _decode(item, item_is_int), float(value),
                  None if stamp is None else float(stamp))


def _fingerprint(rating: Rating) -> str:
    """One rating as the log stores it: ids with their type, the value and the timestamp."""
    stamp = None if rating.timestamp is None else float(rating.timestamp)
    return json.dumps([*_encode(rating.user), *_encode(rating.item), float(rating.rating), stamp])


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


def _table(metadata: Any) -> Any:
    from sqlalchemy import (
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Float,
        Identity,
        Integer,
        Table,
        Text,
        func,
    )

    return Table(
        "ratings", metadata,
        # BIGINT on PostgreSQL; SQLite's rowid alias must be INTEGER.
        Column("seq", BigInteger().with_variant(Integer(), "sqlite"), Identity(),
               primary_key=True),
        Column("user", Text, nullable=False),
        Column("user_is_int", Boolean, nullable=False),
        Column("item", Text, nullable=False),
        Column("item_is_int", Boolean, nullable=False),
        Column("rating", Float, nullable=False),
        Column("timestamp", Float),
        Column("received", DateTime, nullable=False, server_default=func.current_timestamp()),
    )


class RatingStore:
    """An append-only log of ratings with group commit (SQLite file or SQLAlchemy URL).

    Parameters
    ----------
    target : str or os.PathLike
        A file path (an SQLite database, created if missing) or an SQLAlchemy URL
        such as ``postgresql+psycopg://matfact@db.example/ratings``. ``:memory:``
        is refused: the log exists to survive the process.

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

    def __init__(self, target: Any) -> None:
        from sqlalchemy import MetaData, create_engine, event
        from sqlalchemy.exc import SQLAlchemyError

        self.url = database_url(target)
        self._sqlite = self.url.startswith("sqlite")
        try:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError, ValueError) as exc:
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
        self._info = _info_table(self._metadata)
        try:
            self._metadata.create_all(self.engine)
            self.log_id = self._read_or_make_id()
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
        return self.append_async(ratings).result()

    def append_async(self, ratings: Sequence[Rating]) -> concurrent.futures.Future:
        """Queue ``ratings`` for the next group commit; the future resolves when committed.

        The future's result is the number of ratings written; it holds the
        exception instead if the commit failed (nothing of that group is kept).
        """
        rows = []
        for r in ratings:
            value = float(r.rating)
            if not np.isfinite(value):
                raise DataError(f"rating {r.rating!r} is not a finite number")
            user, user_is_int = _encode(r.user)
            item, item_is_int = _encode(r.item)
            rows.append({"user": user, "user_is_int": user_is_int, "item": item,
                         "item_is_int": item_is_int, "rating": value,
                         "timestamp": None if r.timestamp is None else float(r.timestamp)})
        if self._closed:
            raise DataError("the rating log is closed")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((rows, future))
        return future

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, size = [first], len(first[0])
            stop = False
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
            if stop:
                return

    def _commit(self, group: list) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        rows = [row for batch, _ in group for row in batch]
        try:
            with self.engine.begin() as connection:
                if rows:
                    connection.execute(self.table.insert(), rows)
        except (SQLAlchemyError, DataError) as exc:
            for _, future in group:
                future.set_exception(DataError(f"could not log the ratings: {exc}"))
            return
        for batch, future in group:
            future.set_result(len(batch))

    # ------------------------------------------------------------------ reading
    def ratings(self, after: int = 0) -> Iterator[Rating]:
        """Every committed rating with sequence number > ``after``, in log order."""
        return (rating for _, rating in self.entries(after))

    def entries(self, after: int = 0) -> Iterator[tuple[int, Rating]]:
        """``(sequence number, rating)`` pairs after ``after``, in log order."""
        from sqlalchemy import select

        t = self.table
        query = select(t.c.seq, t.c.user, t.c.user_is_int, t.c.item, t.c.item_is_int,
                       t.c.rating, t.c.timestamp).where(t.c.seq > int(after)).order_by(t.c.seq)
        with self.engine.connect() as connection:
            for seq, *row in connection.execute(query):
                yield int(seq), _rating(*row)

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
        if row is None or _fingerprint(_rating(*row)) != record.get("last"):
            return 0
        return position

    def count(self) -> int:
        from sqlalchemy import func, select

        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self.table))
                       .scalar_one())

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Commit what is queued, then stop the writer and close the connections."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._writer.join()
            self.engine.dispose()

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
