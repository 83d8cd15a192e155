"""The real server: answers equal the library's, live ratings, durability, hot swap, bad input."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import numpy as np
import pytest

import matfact
from matfact.serving.app import MAX_BATCH, MAX_BODY_BYTES
from matfact.serving.service import ModelService
from matfact.serving.store import Rating
from tests.serving.conftest import API_KEY, Server, fresh_database


def test_recommendations_predictions_and_similar_items_equal_the_librarys(server,
                                                                          trained_model):
    model = matfact.load(trained_model)
    users = model.user_index_.ids[[0, 10, 500]]
    ids, scores = model.recommend(users, n=10)
    with server.client() as client:
        for user, row_ids, row_scores in zip(users, ids, scores, strict=True):
            body = client.get(f"/users/{user}/recommendations", params={"n": 10}).json()
            assert body["items"] == row_ids.tolist() and body["fallback"] is None
            # Issue 20: the id in the model's type, scores named and on the 1-5 scale.
            assert body["user"] == int(user) and isinstance(body["user"], int)
            assert body["score_kind"] == "rating" and max(body["scores"]) <= 5.0
            np.testing.assert_allclose(body["scores"], row_scores, rtol=1e-5)
            assert body["titles"] == model.item_titles_[
                model.item_index_.get_indexer(row_ids)].tolist()
        pairs = {"users": users.tolist(), "items": [1, 50, 100]}
        predicted = client.post("/predict", json=pairs).json()
        np.testing.assert_allclose(predicted["predictions"],
                                   model.predict(users, [1, 50, 100]), rtol=1e-5)
        similar = client.get("/items/50/similar", params={"n": 5}).json()
        assert similar["items"] == model.similar_items([50], n=5)[0][0].tolist()
        history = client.post("/recommendations", json={"items": [50, 181, 172],
                                                        "ratings": [5, 5, 4], "n": 5}).json()
        assert history["items"] == model.recommend_for_history([50, 181, 172], [5, 5, 4],
                                                               n=5)[0].tolist()


def test_unknown_ids_fall_back_or_404(server):
    with server.client() as client:
        body = client.get("/users/nobody/recommendations", params={"n": 3}).json()
        assert body["fallback"] == "popularity" and body["items"][0] == 50  # Star Wars
        # Issue 20: popularity counts are named as such, never passed off as ratings.
        assert body["score_kind"] == "popularity" and body["scores"][0] == 583.0
        number = client.get("/users/99999/recommendations", params={"n": 3}).json()
        assert number["user"] == 99999 and number["items"] == body["items"]
        response = client.get("/items/999999/similar")
        assert response.status_code == 404 and "999999" in response.json()["detail"]
        predicted = client.post("/predict", json={"users": [1, 10**9], "items": [1, 1]}).json()
        assert predicted["fallback"] == [False, True]


def test_a_posted_rating_changes_the_next_recommendations(server, trained_model):
    user = 196
    with server.client(API_KEY) as client:
        before = client.get(f"/users/{user}/recommendations").json()["items"]
        posted = client.post("/ratings", json={"ratings": [
            {"user": user, "item": before[0], "rating": 1},
            {"user": user, "item": before[1], "rating": 2, "timestamp": 1.7e9},
            {"user": user, "item": before[2], "rating": 1.5}]})  # not a star of 1-5
        assert posted.status_code == 400 and "1.5" in posted.json()["detail"]
        posted = client.post("/ratings", json={"ratings": [
            {"user": user, "item": before[0], "rating": 1},
            {"user": user, "item": before[1], "rating": 2, "timestamp": 1.7e9}]})
        assert posted.status_code == 200 and posted.json()["accepted"] == 2
        after = client.get(f"/users/{user}/recommendations").json()
    # The library, given the same ratings, gives the same list.
    expected = ModelService(matfact.load(trained_model))
    expected.apply([Rating(user, before[0], 1.0), Rating(user, before[1], 2.0)])
    assert after["items"] == expected.recommend(user, 10)["items"]
    assert before[0] not in after["items"] and after["items"] != before


def test_new_users_and_items_are_accepted(server):
    with server.client(API_KEY) as client:
        body = client.post("/ratings", json={"ratings": [
            {"user": "newcomer", "item": 50, "rating": 5}]})
        # ML-100K's ids are integers: a text id is refused before anything is logged.
        assert body.status_code == 400 and "integers" in body.json()["detail"]
        body = client.post("/ratings", json={"ratings": [
            {"user": 100_000, "item": 50, "rating": 5},
            {"user": 100_000, "item": 200_000, "rating": 4},
            {"user": 196, "item": 200_000, "rating": 5}]}).json()
        assert body["new_users"] == [100_000] and body["new_items"] == [200_000]
        recs = client.get("/users/100000/recommendations").json()
        assert recs["fallback"] is None and not {50, 200_000} & set(recs["items"])
        assert client.get("/health").json()["items"] == 1683


def test_writes_need_the_key(server, model_copy, tmp_path):
    rating = {"ratings": [{"user": 1, "item": 1, "rating": 3}]}
    with server.client() as client:
        assert client.post("/ratings", json=rating).status_code == 401
        assert client.post("/admin/reload").status_code == 401
    with server.client("wrong-key-000000000") as client:
        assert client.post("/ratings", json=rating).status_code == 401
    with server.client(API_KEY) as client:
        assert client.post("/ratings", json=rating).status_code == 200
    keyless = Server(model_copy, tmp_path / "other.sqlite", key=None).start()
    try:
        with keyless.client(API_KEY) as client:
            response = client.post("/ratings", json=rating)
            assert response.status_code == 403 and "MATFACT_API_KEY" in response.json()["detail"]
    finally:
        keyless.stop()


@pytest.mark.parametrize(("method", "path", "payload", "status"), [
    ("get", "/users/1/recommendations?n=0", None, 422),
    ("get", "/users/1/recommendations?n=1001", None, 422),
    ("get", "/users/1/recommendations?n=ten", None, 422),
    ("post", "/ratings", {"ratings": [{"user": 1, "item": 1, "rating": "five"}]}, 422),
    ("post", "/ratings", {"ratings": [{"user": [1], "item": 1, "rating": 5}]}, 422),
    ("post", "/ratings", {"ratings": []}, 422),
    ("post", "/ratings", {"ratings": [{"user": 1, "item": 1, "rating": 7}]}, 400),
    ("post", "/ratings", {"ratings": [{"user": 1, "item": 1, "rating": 0}]}, 400),
    ("post", "/predict", {"users": [1, 2], "items": [1]}, 400),
    ("post", "/recommendations", {"items": [1], "ratings": [4], "n": 5000}, 422),
])
def test_bad_input_gets_a_4xx_with_a_message(server, method, path, payload, status):
    with server.client(API_KEY) as client:
        response = getattr(client, method)(path, **({} if payload is None else
                                                    {"json": payload}))
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_nan_batch_limit_and_body_size(server):
    with server.client(API_KEY) as client:
        nan = client.post("/ratings", content=b'{"ratings": [{"user": 1, "item": 1, '
                                               b'"rating": NaN}]}',
                          headers={"content-type": "application/json"})
        assert nan.status_code in (400, 422)
        many = {"ratings": [{"user": 1, "item": 1, "rating": 3}] * (MAX_BATCH + 1)}
        assert client.post("/ratings", json=many).status_code == 422
        huge = client.post("/ratings", content=b" " * (MAX_BODY_BYTES + 1),
                           headers={"content-type": "application/json"})
        assert huge.status_code == 413


def test_acknowledged_ratings_survive_kill_9(model_copy, tmp_path):
    db = tmp_path / "log.sqlite"
    server = Server(model_copy, db).start()
    acknowledged = []
    try:
        with server.client(API_KEY) as client:
            for n in range(20):
                batch = [{"user": 1 + n, "item": 1 + (n * 7) % 1682, "rating": 1 + n % 5},
                         {"user": 5000 + n, "item": 50, "rating": 5}]
                assert client.post("/ratings", json={"ratings": batch}).status_code == 200
                acknowledged += batch
            before = client.post("/predict", json={"users": [a["user"] for a in acknowledged],
                                                   "items": [1] * len(acknowledged)}).json()
    finally:
        server.kill()
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT user, item, rating FROM ratings ORDER BY seq").fetchall()
    assert [(int(u), int(i), r) for u, i, r in rows] == [
        (a["user"], a["item"], float(a["rating"])) for a in acknowledged]
    restarted = Server(model_copy, db).start()
    try:
        with restarted.client() as client:
            after = client.post("/predict", json={"users": [a["user"] for a in acknowledged],
                                                  "items": [1] * len(acknowledged)}).json()
            recs = client.get("/users/5000/recommendations").json()
    finally:
        restarted.stop()
    # The replayed model is the model that acknowledged them.
    np.testing.assert_allclose(after["predictions"], before["predictions"], rtol=1e-5)
    assert not any(after["fallback"]) and recs["fallback"] is None and 50 not in recs["items"]


def test_hot_swap_under_a_stream_of_requests_fails_none(server, ml100k_full, tmp_path):
    errors, answered = [], [0]
    stop = threading.Event()

    def stream() -> None:
        with server.client() as client:
            while not stop.is_set():
                try:
                    response = client.get("/users/196/recommendations", params={"n": 10})
                    if response.status_code != 200:
                        errors.append(response.status_code)
                    answered[0] += 1
                except Exception as exc:  # noqa: BLE001 - any failure is what we count
                    errors.append(repr(exc))

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        with server.client(API_KEY) as client:
            old = client.get("/health").json()["model_version"]
            assert client.post("/ratings", json={"ratings": [
                {"user": 196, "item": 1, "rating": 1}]}).status_code == 200
            retrain = subprocess.run(
                [sys.executable, "-m", "matfact", "-q", "retrain", "--data",
                 str(ml100k_full_path(ml100k_full, tmp_path)), "--db", str(server.db),
                 "--model", str(server.model)], capture_output=True, text=True, timeout=300)
            assert retrain.returncode == 0, retrain.stderr
            reloaded = client.post("/admin/reload").json()
            new = client.get("/health").json()["model_version"]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == [] and answered[0] > 0
    assert new != old and reloaded["model_version"] == new, reloaded
    # The retrained file holds the logged rating (and the titles the old file had).
    with server.client() as client:
        body = client.get("/users/196/recommendations", params={"n": 1000}).json()
        assert 1 not in body["items"] and body["titles"][0] != str(body["items"][0])
    retrained = matfact.load(server.model)
    assert retrained.seen_[retrained.user_index_.get_indexer([196])[0],
                           retrained.item_index_.get_indexer([1])[0]] == 1.0


def ml100k_full_path(data, tmp_path):
    """ML-100K's ratings as a CSV for ``retrain --data``."""
    import pandas as pd

    path = tmp_path / "ratings.csv"
    pd.DataFrame({"user": data.users, "item": data.items, "rating": data.ratings,
                  "timestamp": data.timestamps}).to_csv(path, index=False)
    return path


def test_metrics_and_openapi(server):
    with server.client() as client:
        client.get("/users/1/recommendations")
        text = client.get("/metrics").text
        assert 'matfact_requests_total{endpoint="/users/{user}/recommendations",status="200"}' \
            in text
        assert "matfact_model_info" in text and "matfact_request_seconds_bucket" in text
        schema = client.get("/openapi.json").json()
        assert "/users/{user}/recommendations" in schema["paths"]
        assert client.get("/docs").status_code == 200
        assert "<script>" in client.get("/").text


def test_the_fast_path_answers_as_the_validating_route(server):
    with server.client() as client:
        for query in ("n=7", "n=7&exclude_seen=false", "", "exclude_seen=0&n=3",
                      "explain=3", "n=4&explain=20&exclude_seen=false"):
            fast = client.get(f"/users/196/recommendations?{query}").json()
            # An extra parameter sends the request through FastAPI's route instead.
            routed = client.get(f"/users/196/recommendations?{query}&via=route").json()
            assert fast == routed
        metrics = client.get("/metrics").text
    assert 'endpoint="/users/{user}/recommendations",status="200"} 12.0' in metrics


def test_the_service_logs_to_postgresql_and_replays_it_after_kill_9(model_copy, postgres_url):
    postgres_url = fresh_database(postgres_url, "service_log")
    server = Server(model_copy, postgres_url).start()
    try:
        with server.client(API_KEY) as client:
            batch = [{"user": 7, "item": 50, "rating": 1}, {"user": 60_000, "item": 50,
                                                              "rating": 5}]
            assert client.post("/ratings", json={"ratings": batch}).status_code == 200
            before = client.post("/predict", json={"users": [7, 60_000],
                                                   "items": [1, 1]}).json()
    finally:
        server.kill()
    restarted = Server(model_copy, postgres_url).start()
    try:
        with restarted.client() as client:
            after = client.post("/predict", json={"users": [7, 60_000], "items": [1, 1]}).json()
            assert 50 not in client.get("/users/7/recommendations",
                                        params={"n": 1000}).json()["items"]
    finally:
        restarted.stop()
    np.testing.assert_allclose(after["predictions"], before["predictions"], rtol=1e-5)
    assert after["fallback"] == [False, False]


def test_a_refused_write_is_not_logged_and_the_server_restarts(model_copy, tmp_path):
    """Issue 18: validate, then log, then apply: a 4xx write leaves no row behind."""
    db = tmp_path / "log.sqlite"
    server = Server(model_copy, db).start()
    try:
        with server.client(API_KEY) as client:
            for bad in ({"user": "abc", "item": 1, "rating": 4},   # not an id of this model
                        {"user": "--5", "item": 1, "rating": 4},
                        {"user": 1, "item": "\u00b2", "rating": 4},
                        {"user": 1, "item": 1, "rating": 4, "timestamp": 1e300}):
                response = client.post("/ratings", json={"ratings": [
                    {"user": 1, "item": 2, "rating": 3}, bad]})
                assert response.status_code == 400, response.text
            ok = client.post("/ratings", json={"ratings": [{"user": "42", "item": " 7 ",
                                                            "rating": 2}]})
            assert ok.status_code == 200, ok.text
            for path in ("/users/--5/recommendations", "/users/%C2%B2/recommendations",
                         f"/users/{'9' * 200}/recommendations"):
                assert client.get(path).json()["fallback"] == "popularity"
            # Past the id length bound (issue 19): refused by the schema, not looked up.
            long = client.get(f"/users/{'9' * 5000}/recommendations")
            assert long.status_code == 422, long.text
    finally:
        server.kill()
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT user, user_is_int, item, item_is_int FROM ratings"
                                  ).fetchall()
    assert rows == [("42", 1, "7", 1)]  # logged as the model's integer ids
    Server(model_copy, db).start().stop()


def test_because_lists_over_http_follow_live_ratings_and_are_checked(server, trained_model):
    """Issue 22: ``explain=k`` adds the library's explanations of exactly the listed items."""
    model = matfact.load(trained_model)
    user = 196
    code = model.user_index_.code(user)
    rated = set(model.item_index_.ids[model.history(code)[0]].tolist())
    with server.client(API_KEY) as client:
        body = client.get(f"/users/{user}/recommendations", params={"n": 5, "explain": 3}).json()
        assert len(body["because"]) == 5 and body["because_exact"] == [True] * 5
        for item, because in zip(body["items"], body["because"], strict=True):
            why = model.explain(user, item, n=3)
            assert [c["item"] for c in because] == [c.item for c in why.contributions]
            assert {c["item"] for c in because} <= rated
            np.testing.assert_allclose([c["contribution"] for c in because],
                                       [c.contribution for c in why.contributions], rtol=1e-6)
            assert [c["title"] for c in because] == model.item_titles_[
                model.item_index_.get_indexer([c["item"] for c in because])].tolist()
        # A fallback user: no explanation, and the fallback said.
        nobody = client.get("/users/nobody/recommendations", params={"explain": 2}).json()
        assert nobody["because"] is None and nobody["fallback"] == "popularity"
        # A history: explained by its own items.
        history = client.post("/recommendations", json={
            "items": [50, 181, 172], "ratings": [5, 5, 4], "n": 3, "explain": 2}).json()
        assert all({c["item"] for c in b} <= {50, 181, 172} for b in history["because"])
        assert history["because"][0][0]["title"] == model.item_titles_[
            model.item_index_.code(history["because"][0][0]["item"])]
        # After live ratings: a new user's list is explained by the two items just rated,
        # and a known user's as the library explains it with the same rating applied.
        assert client.post("/ratings", json={"ratings": [
            {"user": 100_001, "item": 50, "rating": 5},
            {"user": 100_001, "item": 98, "rating": 4}]}).status_code == 200
        fresh = client.get("/users/100001/recommendations", params={"explain": 3}).json()
        assert fresh["fallback"] is None
        assert all(sorted(c["item"] for c in b) == [50, 98] for b in fresh["because"])
        assert client.post("/ratings", json={"ratings": [
            {"user": user, "item": body["items"][0], "rating": 5}]}).status_code == 200
        after = client.get(f"/users/{user}/recommendations",
                           params={"n": 5, "explain": 3}).json()
        # Bad values: refused by the schema, with the parameter named.
        for query in ("explain=0", "explain=21", "explain=three", "explain=2.5"):
            answer = client.get(f"/users/{user}/recommendations?{query}")
            assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == [
                "query", "explain"], query
        for bad in (0, 21, True, "3", 2.5):
            answer = client.post("/recommendations", json={"items": [50], "explain": bad})
            assert answer.status_code == 422 and "explain" in answer.json()["detail"][0]["loc"]
        schema = client.get("/openapi.json").json()
    expected = ModelService(matfact.load(trained_model))
    expected.apply([Rating(user, body["items"][0], 5.0)])
    wanted = expected.recommend(user, 5, explain=3)
    assert after["items"] == wanted["items"]
    for got, want in zip(after["because"], wanted["because"], strict=True):
        assert [c["item"] for c in got] == [c["item"] for c in want]
        np.testing.assert_allclose([c["contribution"] for c in got],
                                   [c["contribution"] for c in want], rtol=1e-6)
    # The schema documents the parameter and the answer's lists.
    parameters = schema["paths"]["/users/{user}/recommendations"]["get"]["parameters"]
    assert "explain" in [p["name"] for p in parameters]
    outs = schema["components"]["schemas"]
    for name in ("RecommendationsOut", "HistoryOut"):
        assert {"because", "because_exact"} <= set(outs[name]["properties"])
    assert set(outs["BecauseOut"]["properties"]) == {"item", "title", "contribution", "value"}
    assert "explain" in outs["HistoryIn"]["properties"]
