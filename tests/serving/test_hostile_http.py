"""Issue 19, the HTTP side: what a hostile request gets, and that the service goes on.

Real ``matfact serve`` processes on loopback (``tests.serving.conftest.Server``),
except where a fault must be injected into the process (a database error whose
SQL must not reach the client), which runs the same application in-process.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time

import pytest

import matfact
from matfact import DataError
from matfact.serving.app import MAX_BODY_BYTES, _read_key
from tests.models.contract import planted_interactions
from tests.serving.conftest import API_KEY, Server, httpx


def _post(client, path: str, raw: str | bytes):
    body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def string_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("strings") / "model.zip"
    matfact.BiasedMF(n_factors=4, max_iter=5, random_state=0).fit(
        planted_interactions("explicit", string_ids=True), progress=False).save(path)
    return path


def test_hostile_ids_numbers_and_bodies_get_a_4xx_and_writes_go_on(server):
    """Each of these was a 500, a hang or a poisoned log before issue 19."""
    with server.client(API_KEY) as client:
        answers = {
            # a lone surrogate, in a write and in reads (the writer thread died on it)
            "surrogate write": _post(client, "/ratings",
                                     '{"ratings": [{"user": "\\ud800", "item": 1, '
                                     '"rating": 4}]}'),
            "surrogate predict": _post(client, "/predict",
                                       '{"users": ["a\\udfffb"], "items": [1]}'),
            "surrogate history": _post(client, "/recommendations",
                                       '{"items": [50, "\\ud800"], "n": 3}'),
            # 1e999 is infinity to a JSON parser
            "infinite rating": _post(client, "/ratings", '{"ratings": [{"user": 1, "item": 1, '
                                                         '"rating": 1e999}]}'),
            "infinite time": _post(client, "/ratings", '{"ratings": [{"user": 1, "item": 1, '
                                                       '"rating": 3, "timestamp": 1e999}]}'),
            # FastAPI's own 422 answer echoed an infinity or a surrogate: a 500
            "422 echoing infinity": _post(client, "/ratings",
                                          '{"ratings": [{"user": 1, "rating": 1e999}]}'),
            "422 echoing a surrogate": _post(client, "/ratings",
                                             '{"ratings": [{"user": 1, "item": 1, '
                                             '"rating": "\\ud800"}]}'),
            # a 400-digit integer cannot become a float; 60,000 digits are past the JSON
            # parser's limit
            "huge integer rating": _post(client, "/ratings", '{"ratings": [{"user": 1, '
                                                             '"item": 1, "rating": 1'
                                                             + "0" * 400 + "}]}"),
            "60,000 digits": _post(client, "/predict",
                                   '{"users": [' + "9" * 60_000 + '], "items": [1]}'),
            "deep nesting": _post(client, "/predict", "[" * 100_000 + "]" * 100_000),
            "not JSON": _post(client, "/ratings", b"\xff\xfe{"),
            "long id in a body": _post(client, "/predict",
                                       json.dumps({"users": ["x" * 20_000], "items": [1]})),
            "long id in a path": client.get(f"/users/{'u' * 300}/recommendations"),
            "long item in a path": client.get(f"/items/{'9' * 300}/similar"),
            "surrogate in a path": client.get("/users/%ED%A0%80/recommendations"),
        }
        statuses = {name: response.status_code for name, response in answers.items()}
        assert statuses == {
            "surrogate write": 400, "surrogate predict": 400, "surrogate history": 400,
            "infinite rating": 400, "infinite time": 400, "422 echoing infinity": 422,
            "422 echoing a surrogate": 422, "huge integer rating": 422, "60,000 digits": 400,
            "deep nesting": 400, "not JSON": 400, "long id in a body": 422,
            "long id in a path": 422, "long item in a path": 422,
            "surrogate in a path": 200}, {k: r.text[:200] for k, r in answers.items()}
        assert "Unicode" in answers["surrogate write"].json()["detail"]
        assert answers["surrogate in a path"].json()["fallback"] == "popularity"
        assert answers["422 echoing infinity"].json()["detail"][0]["loc"][-1] == "item"
        # Writes still go on, and the refused ones left nothing in the log.
        ok = client.post("/ratings", json={"ratings": [{"user": 1, "item": 2, "rating": 4}]})
        assert ok.status_code == 200, ok.text
        assert client.get("/users/1/recommendations").status_code == 200
    with sqlite3.connect(server.db) as connection:
        assert connection.execute("SELECT user, item FROM ratings").fetchall() == [("1", "2")]


def test_chunked_bodies_over_the_limit_get_413(server):
    def chunks(total: int, size: int = 256 * 1024):
        sent = 0
        while sent < total:
            piece = min(size, total - sent)
            yield b" " * piece
            sent += piece

    with server.client(API_KEY) as client:
        big = client.post("/ratings", content=chunks(MAX_BODY_BYTES + 1),
                          headers={"content-type": "application/json"})
        assert big.status_code == 413, big.text
        assert "body over" in big.json()["detail"]

        def small():
            yield b'{"ratings": [{"user": 3, '
            yield b'"item": 5, "rating": 2}]}'

        ok = client.post("/ratings", content=small(), headers={"content-type":
                                                               "application/json"})
        assert ok.status_code == 200, ok.text
        assert client.post("/predict", content=chunks(3 * MAX_BODY_BYTES),
                           headers={"content-type": "application/json"}).status_code == 413


def test_a_string_id_model_refuses_surrogates_and_then_shuts_down_on_sigterm(string_model,
                                                                            tmp_path):
    """Issue 19: ``"\\ud800"`` killed the commit thread; every later write hung, and
    SIGTERM left the process alive 40 s later. Now: 400, later writes go on, SIGTERM
    ends the process within 10 s with every acknowledged rating in the log."""
    server = Server(string_model, tmp_path / "log.sqlite").start()
    acknowledged: list[tuple[str, str]] = []
    stop = threading.Event()
    try:
        with server.client(API_KEY) as client:
            bad = _post(client, "/ratings", '{"ratings": [{"user": "\\ud800", "item": "i001", '
                                            '"rating": 4}]}')
            assert bad.status_code == 400 and "Unicode" in bad.json()["detail"], bad.text
            assert _post(client, "/ratings", '{"ratings": [{"user": "u000", "item": '
                                             '"\\udc00x", "rating": 4}]}').status_code == 400

        def write() -> None:
            with server.client(API_KEY) as client:
                k = 0
                while not stop.is_set():
                    pair = (f"writer-{k}", "i00" + str(k % 10))
                    try:
                        response = client.post("/ratings", json={"ratings": [
                            {"user": pair[0], "item": pair[1], "rating": 3}]})
                    except httpx.TransportError:
                        return
                    if response.status_code == 200:
                        acknowledged.append(pair)
                    k += 1

        thread = threading.Thread(target=write)
        thread.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        took = server.stop()  # SIGTERM while the writer is busy
    finally:
        stop.set()
        server.kill()
    thread.join()
    print(f"SIGTERM during a stream of writes: exited in {took:.2f} s, "
          f"{len(acknowledged)} ratings acknowledged")
    assert took < 10, f"SIGTERM took {took:.1f} s"
    assert server.process.returncode in (0, -signal.SIGTERM), server.output()
    assert len(acknowledged) >= 20
    with sqlite3.connect(tmp_path / "log.sqlite") as connection:
        logged = set(connection.execute("SELECT user, item FROM ratings").fetchall())
    assert set(acknowledged) <= logged


def test_the_log_never_blocks_a_start_or_a_reload(model_copy, tmp_path):
    """Rows the model cannot take (an older version wrote them, or another model's
    file was served) are moved to the quarantine, counted, and the server starts."""
    db = tmp_path / "log.sqlite"
    first = Server(model_copy, db).start()
    try:
        with first.client(API_KEY) as client:
            assert client.post("/ratings", json={"ratings": [
                {"user": 100_001, "item": 50, "rating": 5}]}).status_code == 200
            assert client.get("/health").json()["quarantined"] == 0
    finally:
        first.kill()

    def inject(rows) -> None:
        with sqlite3.connect(db) as connection:
            connection.executemany(
                "INSERT INTO ratings (user, user_is_int, item, item_is_int, rating, timestamp,"
                " received) VALUES (?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP)", rows)

    inject([("text-user", 0, "50", 1, 4.0, None),        # a string id for an integer model
            ("196", 1, "50", 1, 4.0, float("inf")),      # a 1e999 timestamp
            ("196", 1, "50", 1, 11.0, None)])             # outside the rating scale
    server = Server(model_copy, db).start()
    try:
        with server.client(API_KEY) as client:
            health = client.get("/health").json()
            assert health["quarantined"] == 3
            assert "matfact_ratings_quarantined 3.0" in client.get("/metrics").text
            # The good row was replayed.
            assert client.post("/predict", json={"users": [100_001], "items": [1]}).json()[
                "fallback"] == [False]
            inject([("another", 0, "1", 1, 2.0, None)])
            reloaded = client.post("/admin/reload")
            assert reloaded.status_code == 200, reloaded.text
            assert client.get("/health").json()["quarantined"] == 4
            assert "matfact_ratings_quarantined 4.0" in client.get("/metrics").text
            assert client.post("/ratings", json={"ratings": [
                {"user": 100_002, "item": 50, "rating": 5}]}).status_code == 200
    finally:
        server.stop()
    with sqlite3.connect(db) as connection:
        reasons = connection.execute("SELECT user, reason FROM quarantine ORDER BY id"
                                     ).fetchall()
        remaining = connection.execute("SELECT user FROM ratings ORDER BY seq").fetchall()
    assert [user for user, _ in reasons] == ["text-user", "196", "196", "another"]
    assert all(reason for _, reason in reasons)
    assert remaining == [("100001",), ("100002",)]


NON_ASCII_KEY = "clé-secrète-ünïcode"


def test_require_key_covers_every_route_but_health_and_keys_compare_as_utf8(model_copy,
                                                                             tmp_path):
    server = Server(model_copy, tmp_path / "log.sqlite", key=NON_ASCII_KEY,
                    args=("--require-key",)).start()
    utf8, latin1 = NON_ASCII_KEY.encode("utf-8"), NON_ASCII_KEY.encode("latin-1")
    routes = [("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/"),
              ("GET", "/users/196/recommendations"), ("GET", "/users/196/recommendations?n=3"),
              ("GET", "/items/50/similar"), ("GET", "/no-such-route"),
              ("POST", "/predict"), ("POST", "/recommendations"), ("POST", "/ratings")]
    bodies = {"/predict": {"users": [196], "items": [50]},
              "/recommendations": {"items": [50], "ratings": [5], "n": 3},
              "/ratings": {"ratings": [{"user": 196, "item": 50, "rating": 4}]}}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get("/health").status_code == 200
            for headers in ({}, {"X-API-Key": latin1}, {"X-API-Key": b"wrong-key-000000"},
                            {"Authorization": b"Bearer " + latin1}):
                for method, path in routes:
                    response = client.request(method, path, headers=headers,
                                              json=bodies.get(path))
                    assert response.status_code == 401, (method, path, headers)
            for headers in ({"X-API-Key": utf8}, {"Authorization": b"Bearer " + utf8}):
                for method, path in routes:
                    response = client.request(method, path, headers=headers,
                                              json=bodies.get(path))
                    expected = 404 if path == "/no-such-route" else 200
                    assert response.status_code == expected, (method, path, response.text)
    finally:
        server.stop()


@pytest.mark.parametrize("key", ["", "        ", " \t  \t   ", "  padded-secret-key ",
                                 "short", "line\nbreak-in-key"])
def test_a_blank_or_unusable_key_is_refused_at_start(key, monkeypatch):
    monkeypatch.setenv("MATFACT_API_KEY", key)
    with pytest.raises(DataError, match="blank|whitespace|control|at least 8"):
        _read_key(None, None)


def test_serve_with_a_blank_key_exits_with_a_clear_message(model_copy, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "matfact", "serve", "--model",
                           str(model_copy), "--db", str(tmp_path / "log.sqlite")],
                          env={**__import__("os").environ, "MATFACT_API_KEY": "          "},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "blank" in done.stderr and "MATFACT_API_KEY" in done.stderr, done.stderr


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_database_failure_is_a_503_with_the_sql_in_the_server_log_only(model_copy, tmp_path,
                                                                         caplog):
    import logging

    from sqlalchemy.exc import OperationalError
    from starlette.testclient import TestClient

    from matfact.serving.app import create_app

    app = create_app(model_copy, tmp_path / "log.sqlite", api_key=API_KEY)
    store = app.state.store
    insert = store._insert

    def failing(rows):
        raise OperationalError("INSERT INTO ratings (user, user_is_int) VALUES (?, ?)",
                               [("secret-user", 1)],
                               sqlite3.OperationalError("database or disk is full"))

    body = {"ratings": [{"user": 196, "item": 50, "rating": 4}]}
    with TestClient(app) as client, caplog.at_level(logging.ERROR, "matfact.serving"):
        client.headers["X-API-Key"] = API_KEY
        store._insert = failing
        failed = client.post("/ratings", json=body)
        store._insert = insert
        assert failed.status_code == 503, failed.text
        detail = failed.json()["detail"]
        assert "unavailable" in detail and "try again" in detail
        assert "INSERT" not in failed.text and "secret-user" not in failed.text
        assert "disk is full" not in failed.text
        assert any("INSERT INTO ratings" in record.getMessage() for record in caplog.records)
        assert client.post("/ratings", json=body).status_code == 200  # later writes go on
        assert client.get("/health").json()["quarantined"] == 0


@pytest.mark.slow
def test_a_locked_database_answers_503_then_writes_go_on(model_copy, tmp_path):
    """The real server, a real lock held by another process for longer than SQLite waits."""
    db = tmp_path / "log.sqlite"
    server = Server(model_copy, db).start()
    try:
        with server.client(API_KEY) as client:
            body = {"ratings": [{"user": 196, "item": 50, "rating": 4}]}
            assert client.post("/ratings", json=body).status_code == 200
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                started = time.monotonic()
                locked = client.post("/ratings", json=body)
                waited = time.monotonic() - started
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert locked.status_code == 503, locked.text
            assert "INSERT" not in locked.text and waited < 30
            assert client.post("/ratings", json=body).status_code == 200
        # SIGTERM while a write waits on the lock: the server still ends within 10 s.
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        waiting = threading.Thread(target=lambda: _post_quietly(server, body))
        waiting.start()
        time.sleep(1.0)
    finally:
        took = server.stop()
        if "holder" in locals():
            holder.execute("ROLLBACK")
            holder.close()
    waiting.join()
    print(f"SIGTERM while a write waited on a locked database: exited in {took:.1f} s")
    assert took < 10, took
    assert "INSERT INTO ratings" in server.output()  # the details: in the server's log


def _post_quietly(server, body) -> None:
    try:
        with server.client(API_KEY) as client:
            client.post("/ratings", json=body)
    except httpx.TransportError:
        pass


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_logged_batch_the_model_then_fails_to_apply_is_unlogged(model_copy, tmp_path):
    """The model's check passed but its change failed (a model bug, as BayesianMF's new
    items once were): the client is told, and the rows leave the log for the quarantine,
    so that what the log holds is what the model holds, and a restart is not blocked."""
    from starlette.testclient import TestClient

    from matfact.serving.app import create_app

    db = tmp_path / "log.sqlite"
    app = create_app(model_copy, db, api_key=API_KEY)
    model = app.state.services["service"].model
    apply = model.apply_ratings

    def fragile(users, items, ratings=None, times=None, *, dry_run=False):
        if not dry_run and 777_777 in list(users):
            raise IndexError("index 1682 is out of bounds for axis 0 with size 1682")
        return apply(users, items, ratings, times, dry_run=dry_run)

    model.apply_ratings = fragile
    with TestClient(app) as client:
        client.headers["X-API-Key"] = API_KEY
        failed = client.post("/ratings", json={"ratings": [
            {"user": 777_777, "item": 50, "rating": 4}, {"user": 1, "item": 50, "rating": 4}]})
        assert failed.status_code == 500, failed.text
        assert "were not kept" in failed.json()["detail"]
        assert client.get("/health").json()["quarantined"] == 2
        assert "matfact_ratings_quarantined 2.0" in client.get("/metrics").text
        assert client.post("/ratings", json={"ratings": [
            {"user": 1, "item": 50, "rating": 4}]}).status_code == 200
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT user FROM ratings").fetchall() == [("1",)]
        assert connection.execute("SELECT user, reason FROM quarantine ORDER BY id"
                                  ).fetchall() == [
            ("777777", "IndexError: index 1682 is out of bounds for axis 0 with size 1682"),
            ("1", "IndexError: index 1682 is out of bounds for axis 0 with size 1682")]
