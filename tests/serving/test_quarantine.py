"""Issue 19: the log can never block a start, and the commit thread survives anything.

In-process (no server): the rating log's writer against values the database refuses,
a locked database and a full one; replay and ``matfact retrain`` moving the rows a model
cannot take to the quarantine table; the warm-up while items are added.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

import matfact
from matfact import DataError
from matfact.serving.service import ModelService, screen
from matfact.serving.store import Rating, RatingLogUnavailable, RatingStore
from tests.models.contract import planted_interactions

pytest.importorskip("sqlalchemy", reason="the serve extra is not installed")


def _row(user, item, rating=3.0, stamp=None, *, user_is_int=None, item_is_int=None) -> dict:
    """A row of the log as the writer inserts it (bypassing append_async's own checks)."""
    return {"user": str(user), "user_is_int": isinstance(user, int) if user_is_int is None
            else user_is_int, "item": str(item),
            "item_is_int": isinstance(item, int) if item_is_int is None else item_is_int,
            "rating": rating, "timestamp": stamp}


def _insert_raw(path, rows: list[tuple]) -> None:
    """Rows written straight into the SQLite log, as an older version or a hand edit might."""
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO ratings (user, user_is_int, item, item_is_int, rating, timestamp) "
            "VALUES (?, ?, ?, ?, ?, ?)", rows)


# ---------------------------------------------------------------------- the writer thread
def test_a_lone_surrogate_is_refused_before_it_is_queued(tmp_path):
    with RatingStore(tmp_path / "log.sqlite") as store:
        for bad in (Rating("\ud800", "x", 1.0), Rating(1, "a\udfffb", 1.0),
                    Rating(1, 1, 3.0, float("inf")), Rating(2**64, 1, 3.0)):
            with pytest.raises(DataError):
                store.append([bad])
        assert store.append([Rating("ann", "x", 1.0)]) == 1


def test_the_writer_survives_a_batch_the_database_refuses(tmp_path):
    """Issue 19: a lone surrogate reached SQLite, which raised UnicodeEncodeError in the
    commit thread and killed it: that write and every later one hung."""
    import concurrent.futures

    with RatingStore(tmp_path / "log.sqlite") as store:
        good_before = concurrent.futures.Future()
        bad = concurrent.futures.Future()
        good_after = concurrent.futures.Future()
        # Queued together, so they share one group commit: only the bad batch fails.
        store._queue.put(([_row("ann", "x")], good_before))
        store._queue.put(([_row("\ud800", "x")], bad))
        store._queue.put(([_row("bob", "y", 4.0)], good_after))
        with pytest.raises(DataError, match="cannot store") as refused:
            bad.result(timeout=30)
        assert "INSERT" not in str(refused.value) and "ud800" not in str(refused.value)
        assert len(good_before.result(timeout=30)) == 1
        assert len(good_after.result(timeout=30)) == 1
        assert store._writer.is_alive()
        assert store.append([Rating("carol", "z", 2.0)]) == 1  # later writes go on
        assert [r.user for r in store.ratings()] == ["ann", "bob", "carol"]


def test_a_locked_database_fails_the_request_with_a_short_message_then_writes_go_on(tmp_path):
    path = tmp_path / "log.sqlite"
    with RatingStore(path, lock_timeout=0.2) as store:
        assert store.append([Rating(1, 1, 1.0)]) == 1
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        try:
            started = time.monotonic()
            with pytest.raises(RatingLogUnavailable) as failed:
                store.append([Rating(2, 2, 2.0), Rating(3, 3, 3.0)])
            assert time.monotonic() - started < 10
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        message = str(failed.value)
        assert "unavailable" in message and "OperationalError" in message
        assert "INSERT" not in message and "locked" not in message and len(message) < 200
        assert store.append([Rating(4, 4, 4.0)]) == 1
        assert [r.user for r in store.ratings()] == [1, 4]


def test_a_full_disk_fails_the_request_then_writes_go_on(tmp_path):
    """SQLITE_FULL for real: the database may not grow past its current pages."""
    from sqlalchemy import event

    with RatingStore(tmp_path / "log.sqlite") as store:
        store.append([Rating(1, 1, 1.0)])
        with store.engine.connect() as connection:
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()

        def full(dbapi_connection, _record) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

        event.listen(store.engine, "connect", full)
        store.engine.dispose()  # new connections: each capped at the current size
        big = [Rating(f"user-{k}", f"item-{k}", 3.0) for k in range(2000)]
        with pytest.raises(RatingLogUnavailable) as failed:
            store.append(big)
        assert "INSERT" not in str(failed.value) and "user-1" not in str(failed.value)
        event.remove(store.engine, "connect", full)
        store.engine.dispose()
        assert store.append(big[:3]) == 3  # room again: later writes go on
        assert store.count() == 4


def test_a_failing_commit_cannot_stop_the_writer(tmp_path, monkeypatch):
    with RatingStore(tmp_path / "log.sqlite") as store:
        def broken(rows):
            raise RuntimeError("something nobody expected")

        monkeypatch.setattr(store, "_insert", broken)
        with pytest.raises(RatingLogUnavailable):
            store.append([Rating(1, 1, 1.0)])
        monkeypatch.undo()
        assert store.append([Rating(1, 1, 1.0)]) == 1


def test_close_flushes_what_is_queued(tmp_path):
    path = tmp_path / "log.sqlite"
    store = RatingStore(path)
    futures = [store.append_async([Rating(n, n, 1.0)]) for n in range(200)]
    store.close()
    assert all(f.done() and not f.exception() for f in futures)
    with pytest.raises(RatingLogUnavailable, match="closed"):
        store.append_async([Rating(1, 1, 1.0)])
    with RatingStore(path) as again:
        assert again.count() == 200


# ---------------------------------------------------------------------- the quarantine
def test_quarantine_moves_rows_with_their_reason(tmp_path):
    path = tmp_path / "log.sqlite"
    with RatingStore(path) as store:
        store.append([Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9), Rating(2, 20, 1.0)])
        model = type("Model", (), {})()
        model.rating_log_ = store.position(3, Rating(2, 20, 1.0))
        assert store.quarantine([(2, "DataError: not for this model"), (2, "twice")]) == 1
        assert store.quarantine([(2, "again")]) == 0  # already moved
        assert store.quarantined == 1 and store.count() == 2
        [row] = store.quarantined_rows()
        assert (row["seq"], row["user"], row["user_is_int"], row["item"], row["rating"],
                row["timestamp"]) == (2, "ann", False, "x", 2.5, 1.7e9)
        assert row["reason"] == "twice" and row["quarantined"] is not None
        assert [seq for seq, _ in store.entries()] == [1, 3]
        assert store.logged_through(model) == 3  # the log position still holds
    with RatingStore(path) as again:
        assert again.quarantined == 1


def test_unreadable_rows_are_skipped_and_reported(tmp_path):
    path = tmp_path / "log.sqlite"
    with RatingStore(path) as store:
        store.append([Rating(1, 1, 1.0)])
    _insert_raw(path, [("abc", 1, "1", 1, 3.0, None),            # an "integer" id that is not
                       ("9" * 5000, 1, "1", 1, 3.0, None),       # past 64 bits (and 4300 digits)
                       ("2", 1, "1", 1, "three", None)])         # a rating that is not a number
    with RatingStore(path) as store:
        unreadable: list = []
        assert [seq for seq, _ in store.entries(0, unreadable)] == [1]
        assert [seq for seq, _ in unreadable] == [2, 3, 4]
        assert "ValueError" in unreadable[0][1] or "DataError" in unreadable[0][1]
        assert list(store.ratings()) == [Rating(1, 1, 1.0)]


@pytest.fixture(scope="module")
def int_model():
    return matfact.BiasedMF(n_factors=4, max_iter=5, random_state=0).fit(
        planted_interactions("explicit"), progress=False)


def test_replay_moves_what_the_model_cannot_take_and_starts(int_model, tmp_path):
    """Issue 19: a row the model refuses used to stop every start, reload and retrain."""
    path = tmp_path / "log.sqlite"
    user, item = int(int_model.user_index_.ids[0]), int(int_model.item_index_.ids[0])
    with RatingStore(path) as store:
        store.append([Rating(user, item, 5.0)])
    _insert_raw(path, [("u-text", 0, str(item), 1, 3.0, None),   # a string id: int model
                       (str(user), 1, str(item), 1, 9.0, None),  # out of the rating scale
                       (str(user), 1, str(item), 1, 3.0, float("inf")),  # 1e999 timestamp
                       ("7", 1, "abc", 1, 3.0, None),            # unreadable
                       (str(user + 1), 1, "424242", 1, 2.0, 1.7e9)])  # fine: a new item
    with RatingStore(path) as store:
        service = ModelService(matfact.clone(int_model).fit(planted_interactions("explicit"),
                                                            progress=False))
        assert service.replay(store) == 2
        assert service.applied_seq == 6 and service.refused == 4
        assert store.quarantined == 4 and store.count() == 2
        reasons = {row["seq"]: row["reason"] for row in store.quarantined_rows()}
        assert set(reasons) == {2, 3, 4, 5}
        assert "integers" in reasons[2] and "scale" in reasons[3] and "times" in reasons[4]
        assert service.item_code(424242) >= 0
        assert service.model.seen_[service.user_code(user), service.item_code(item)] == 5.0
        # The next start meets a clean log.
        again = ModelService(matfact.clone(int_model).fit(planted_interactions("explicit"),
                                                          progress=False))
        assert again.replay(store) == 2 and again.refused == 0 and store.quarantined == 4


def test_a_rating_given_the_number_of_a_moved_row_is_not_skipped(int_model, tmp_path):
    """SQLite gives a new row the largest number plus one: after the last rows of the log
    were moved to the quarantine, the next rating gets one of their numbers."""
    path = tmp_path / "log.sqlite"
    user, item = int(int_model.user_index_.ids[0]), int(int_model.item_index_.ids[0])
    with RatingStore(path) as store:
        store.append([Rating(user, item, 5.0)])
    _insert_raw(path, [("text", 0, str(item), 1, 3.0, None), ("more", 0, str(item), 1, 3.0,
                                                                  None)])
    with RatingStore(path) as store:
        service = ModelService(matfact.clone(int_model).fit(planted_interactions("explicit"),
                                                            progress=False))
        assert service.replay(store) == 1 and service.applied_seq == 1
        assert store.append([Rating(user + 1, item, 1.0)]) == 1
        assert [seq for seq, _ in store.entries()] == [1, 2]  # number 2 again
        assert service.replay(store) == 1
        assert service.model.seen_[service.user_code(user + 1), service.item_code(item)] == 1.0
        assert service.replay(store) == 0
        assert store.quarantine([(2, "by hand")]) == 1 and store.quarantined == 3
        assert [row["seq"] for row in store.quarantined_rows()] == [2, 3, 2]


def test_a_row_that_passes_the_check_but_fails_to_apply_is_found_and_quarantined(
        int_model, tmp_path, monkeypatch):
    model = matfact.clone(int_model).fit(planted_interactions("explicit"), progress=False)
    users = [int(u) for u in model.user_index_.ids[:8]]
    item = int(model.item_index_.ids[1])
    with RatingStore(tmp_path / "log.sqlite") as store:
        store.append([Rating(u, item, 4.0) for u in users])
        apply = model.apply_ratings

        def fragile(users_, items_, ratings=None, times=None, *, dry_run=False):
            # A model bug that bites one user only (BayesianMF's add_items once did this).
            if not dry_run and users[5] in list(users_):
                raise IndexError("index 1682 is out of bounds")
            return apply(users_, items_, ratings, times, dry_run=dry_run)

        monkeypatch.setattr(model, "apply_ratings", fragile)
        service = ModelService(model)
        assert service.replay(store) == 7
        [row] = store.quarantined_rows()
        assert row["seq"] == 6 and row["reason"].startswith("IndexError")
        assert all(service.user_code(u) >= 0 for u in users[:5] + users[6:])


def test_screen_reads_rows_as_the_model_does(int_model):
    entries = [(1, Rating("42", " 7 ", 2.0)), (2, Rating("x", 7, 2.0)),
               (3, Rating(1, 7, 2.0, 1e300))]
    accepted, refused = screen(int_model, entries)
    assert accepted == [(1, Rating(42, 7, 2.0))]
    assert [seq for seq, _ in refused] == [2, 3]
    assert screen(int_model, entries[:1]) == ([(1, Rating(42, 7, 2.0))], [])


def test_retrain_skips_and_quarantines_rows_the_model_cannot_take(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    from matfact.cli import main

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(1, 40, 600), "item": rng.integers(100, 140, 600),
                          "rating": rng.integers(1, 6, 600)}).drop_duplicates(["user", "item"])
    data, target, db = tmp_path / "ratings.csv", tmp_path / "model.zip", tmp_path / "log.sqlite"
    frame.to_csv(data, index=False)
    assert main(["train", "--data", str(data), "--model", "BiasedMF", "--out", str(target),
                 "--param", "max_iter=3"]) == 0
    with RatingStore(db) as store:
        store.append([Rating(1, 101, 5.0)])
    _insert_raw(db, [("someone", 0, "101", 1, 4.0, None),      # a string id
                     ("2", 1, "102", 1, 4.0, float("inf")),     # an infinite timestamp
                     ("3", 1, "103", 1, 2.0, None)])
    capsys.readouterr()
    assert main(["retrain", "--data", str(data), "--db", str(db), "--model", str(target)]) == 0
    captured = capsys.readouterr()
    assert "(2 from the log)" in captured.out, captured
    with RatingStore(db) as store:
        assert store.quarantined == 2 and [seq for seq, _ in store.entries()] == [1, 4]
        refit = matfact.load(target)
        assert refit.rating_log_ == store.position(4, Rating(3, 103, 2.0))
        assert store.logged_through(refit) == 4
    _insert_raw(db, [("also-text", 0, "101", 1, 4.0, None), ("5", 1, "104", 1, 1.0, None)])
    assert main(["retrain", "--db", str(db), "--model", str(target), "--partial"]) == 0
    assert "with 1 logged ratings" in capsys.readouterr().out
    with RatingStore(db) as store:
        assert store.quarantined == 3


# ---------------------------------------------------------------------- the warm-up
def test_the_warm_up_stops_cleanly_when_items_are_added_during_it():
    """Issue 19: the background warm-up logged ``ValueError: operands could not be
    broadcast`` when a rating added items while it ranked a batch."""
    data = matfact.make_synthetic(3000, 400, 30_000, random_state=0)
    model = matfact.BiasedMF(n_factors=8, max_iter=2, random_state=0).fit(data, progress=False)
    service = ModelService(model)
    errors: list[BaseException] = []
    stop = threading.Event()

    def warm_forever() -> None:
        while not stop.is_set():
            try:
                service.index.precompute(batch=64)
            except BaseException as exc:  # noqa: BLE001 - what the test looks for
                errors.append(exc)
                return

    thread = threading.Thread(target=warm_forever)
    thread.start()
    try:
        users = model.user_index_.ids[:50].tolist()
        for k in range(40):  # each rating adds an item while the warm-up runs
            service.apply([Rating(users[k], 10_000 + k, 4.0), Rating(users[k + 1], 10_000 + k,
                                                                     2.0)])
    finally:
        stop.set()
        thread.join()
        service.stop_warming()
    assert errors == []
    assert service.index.n_items == model.n_items_ == 440
    # And a warm-up after the changes keeps lists that equal a full sort.
    assert service.index.precompute() > 0
    fresh = ModelService(model).index
    for code in (0, 1, 2999):
        np.testing.assert_array_equal(service.index.recommend(code, 10)[0],
                                      fresh.recommend(code, 10)[0])


def test_the_quarantine_works_on_postgresql(postgres_url):
    from tests.serving.conftest import fresh_database

    url = fresh_database(postgres_url, "quarantine_log")
    with RatingStore(url) as store:
        store.append([Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9), Rating(2, 20, 1.0)])
        assert store.quarantine([(2, "DataError: not for this model")]) == 1
        assert store.quarantine([(2, "again")]) == 0
        [row] = store.quarantined_rows()
        assert (row["seq"], row["user"], row["reason"]) == (2, "ann",
                                                            "DataError: not for this model")
        assert [seq for seq, _ in store.entries()] == [1, 3] and store.quarantined == 1
