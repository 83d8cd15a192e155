"""The SQLite rating log: durability settings, group commit, id types, bad files."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from matfact import DataError
from matfact.serving.store import Rating, RatingStore


def test_ratings_round_trip_with_their_id_types(tmp_path):
    with RatingStore(tmp_path / "log.sqlite") as store:
        assert store.append([Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9)]) == 2
        assert store.append([Rating(2, "y", 1.0)]) == 1
        assert list(store.ratings()) == [Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9),
                                         Rating(2, "y", 1.0)]
        assert [seq for seq, _ in store.entries(after=1)] == [2, 3]
        assert store.count() == 3
    # A second store on the same file sees everything (it was committed).
    with RatingStore(tmp_path / "log.sqlite") as again:
        assert again.count() == 3


def test_wal_and_full_synchronous(tmp_path):
    with RatingStore(tmp_path / "log.sqlite") as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_group_commit_acknowledges_each_batch_after_its_commit(tmp_path):
    path = tmp_path / "log.sqlite"
    with RatingStore(path) as store:
        futures = []

        def writer(n: int) -> None:
            for k in range(25):
                futures.append(store.append_async([Rating(n, k, 1.0 + k % 5)]))

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results = [future.result(timeout=30) for future in futures]
        # Each future gives its ratings' sequence numbers: one each, all distinct.
        assert [len(seqs) for seqs in results] == [1] * 200
        assert sorted(seq for seqs in results for seq in seqs) == list(range(1, 201))
        # Every acknowledged rating is readable from a fresh connection at once.
        with sqlite3.connect(path) as connection:
            assert connection.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 200


def test_bad_input_and_bad_files(tmp_path):
    with pytest.raises(DataError, match="file"):
        RatingStore(":memory:")
    with RatingStore(tmp_path / "log.sqlite") as store:
        with pytest.raises(DataError, match="finite"):
            store.append([Rating(1, 1, float("nan"))])
        with pytest.raises(DataError, match="integers or strings"):
            store.append([Rating(1.5, 1, 3.0)])
        with pytest.raises(DataError, match="integers or strings"):
            store.append([Rating(True, 1, 3.0)])
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(DataError, match="rating log"):
        RatingStore(garbage)
    with pytest.raises(DataError, match="rating log"):
        RatingStore("nosuchdialect://host/db")


def test_postgresql_log_round_trips_and_group_commits(postgres_url):
    from sqlalchemy import create_engine, text

    with RatingStore(postgres_url) as store:
        start = store.count()
        assert store.append([Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9)]) == 2
        futures = [store.append_async([Rating(n, n, 1.0 + n % 5)]) for n in range(50)]
        assert [len(f.result(timeout=30)) for f in futures] == [1] * 50
        tail = list(store.ratings(after=0))[start:]
        assert tail[:2] == [Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9)]
        assert [r.user for r in tail[2:]] == list(range(50))
    # Committed: a separate connection sees every row, and the commit was durable.
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
        assert connection.execute(text("SELECT COUNT(*) FROM ratings")).scalar() == start + 52
    engine.dispose()


def test_each_log_keeps_one_identity(tmp_path):
    with RatingStore(tmp_path / "a.sqlite") as first:
        identity = first.log_id
    with RatingStore(tmp_path / "a.sqlite") as again, RatingStore(tmp_path / "b.sqlite") as other:
        assert again.log_id == identity
        assert other.log_id != identity and len(identity) == 32


def test_logged_through_trusts_only_this_log_holding_the_recorded_rating(tmp_path):
    class Model:
        pass

    model = Model()
    with RatingStore(tmp_path / "log.sqlite") as store, \
            RatingStore(tmp_path / "other.sqlite") as other:
        for log in (store, other):
            log.append([Rating(1, 10, 4.0), Rating("ann", "x", 2.5, 1.7e9)])
        assert store.logged_through(model) == 0  # fitted without a log
        model.rating_log_ = store.position(*list(store.entries())[-1])
        assert model.rating_log_["position"] == 2
        assert store.logged_through(model) == 2
        assert other.logged_through(model) == 0  # another log
        for broken in ({**model.rating_log_, "position": -1},
                       {**model.rating_log_, "position": True},
                       {**model.rating_log_, "position": "2"},
                       {**model.rating_log_, "position": 3},  # past the log's end
                       {**model.rating_log_, "last": None},
                       {"id": store.log_id}, [store.log_id, 2]):
            model.rating_log_ = broken
            assert store.logged_through(model) == 0, broken
        # The log restored from a backup taken before the second rating, then written to:
        # sequence 2 now holds another rating, which the file has never seen.
        model.rating_log_ = store.position(2, Rating("ann", "x", 2.5, 1.7e9))
        with store.engine.begin() as connection:
            connection.execute(store.table.delete().where(store.table.c.seq == 2))
        store.append([Rating(3, 30, 1.0)])
        assert [seq for seq, _ in store.entries()] == [1, 2]
        assert store.logged_through(model) == 0
