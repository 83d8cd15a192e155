"""The rating log: every rating the service acknowledges, durable in SQLite.

:class:`RatingStore` appends ratings in WAL mode with ``synchronous=FULL``, so a
committed rating survives a crash of the process or the machine. Writes go
through one writer thread that commits whatever has queued up in a single
transaction (group commit): a caller's :meth:`RatingStore.append` returns only
after the transaction holding its ratings has committed, which is when the
service acknowledges them.

Ids keep their type: the log stores each id with a flag saying whether it was
an integer, so a replay gives the model the ids it was fitted with.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matfact.exceptions import DataError

__all__ = ["Rating", "RatingStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ratings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    user_is_int INTEGER NOT NULL,
    item TEXT NOT NULL,
    item_is_int INTEGER NOT NULL,
    rating REAL NOT NULL,
    timestamp REAL,
    received REAL NOT NULL DEFAULT (julianday('now'))
)
"""
_MAX_GROUP = 10_000  # ratings per transaction: bounds the time a commit holds the lock


@dataclass(frozen=True)
class Rating:
    """One logged rating (ids as the client gave them: int or str)."""

    user: int | str
    item: int | str
    rating: float
    timestamp: float | None = None


def _encode(raw: Any) -> tuple[str, int]:
    if isinstance(raw, (bool, np.bool_)):
        raise DataError(f"ids must be integers or strings, got {raw!r}")
    if isinstance(raw, (int, np.integer)):
        return str(int(raw)), 1
    if isinstance(raw, str):
        return raw, 0
    raise DataError(f"ids must be integers or strings, got {type(raw).__name__}")


def _decode(text: str, is_int: int) -> int | str:
    return int(text) if is_int else text


class RatingStore:
    """An append-only SQLite log of ratings with group commit.

    Parameters
    ----------
    path : str or os.PathLike
        The database file (created if missing). ``:memory:`` is refused: the
        log exists to survive the process.

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

    def __init__(self, path: Any) -> None:
        if str(path) == ":memory:":
            raise DataError("the rating log must be a file; ':memory:' would lose every rating")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        connection = self._connect()
        try:
            connection.execute(_SCHEMA)
            connection.commit()
        finally:
            connection.close()
        self._writer = threading.Thread(target=self._write_loop, name="matfact-rating-log",
                                        daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} is not a usable SQLite rating log: {exc}") from exc
        if str(mode).lower() != "wal":
            connection.close()
            raise DataError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
        return connection

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
            rows.append((*_encode(r.user), *_encode(r.item), value,
                         None if r.timestamp is None else float(r.timestamp)))
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self._closed:
            raise DataError("the rating log is closed")
        self._queue.put((rows, future))
        return future

    def _write_loop(self) -> None:
        connection = self._connect()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group, size = [first], len(first[0])
                stop = False
                # Everything already waiting joins this transaction: one fsync for all.
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
                self._commit(connection, group)
                if stop:
                    return
        finally:
            connection.close()

    @staticmethod
    def _commit(connection: sqlite3.Connection, group: list) -> None:
        try:
            with connection:
                for rows, _ in group:
                    connection.executemany(
                        "INSERT INTO ratings (user, user_is_int, item, item_is_int, rating, "
                        "timestamp) VALUES (?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:
            for _, future in group:
                future.set_exception(DataError(f"could not log the ratings: {exc}"))
            return
        for rows, future in group:
            future.set_result(len(rows))

    # ------------------------------------------------------------------ reading
    def ratings(self, after: int = 0) -> Iterator[Rating]:
        """Every committed rating with sequence number > ``after``, in log order."""
        return (rating for _, rating in self.entries(after))

    def entries(self, after: int = 0) -> Iterator[tuple[int, Rating]]:
        """``(sequence number, rating)`` pairs after ``after``, in log order."""
        connection = self._connect()
        try:
            cursor = connection.execute(
                "SELECT seq, user, user_is_int, item, item_is_int, rating, timestamp "
                "FROM ratings WHERE seq > ? ORDER BY seq", (int(after),))
            for seq, user, user_int, item, item_int, value, stamp in cursor:
                yield seq, Rating(_decode(user, user_int), _decode(item, item_int), value, stamp)
        finally:
            connection.close()

    def count(self) -> int:
        connection = self._connect()
        try:
            return int(connection.execute("SELECT COUNT(*) FROM ratings").fetchone()[0])
        finally:
            connection.close()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Commit what is queued, then stop the writer."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._writer.join()

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
