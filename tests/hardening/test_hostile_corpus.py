"""A hostile corpus against a real ``matfact serve`` (issue 19).

Requests from :mod:`tests.hardening._hostile` (hypothesis strategies: ids from every
Unicode category, lone surrogates, numeric-looking text, long ids, extreme floats,
huge integers, malformed, large and deeply nested bodies, bad keys, requests malformed
at the HTTP level), mixed with ordinary reads and writes, sent one after the other to a
real server on loopback. Every answer must be below 500 (and every request answered),
writes must still be served afterwards, and in the slow profile the server's resident
memory may grow by at most 50 MiB over 10,000 requests.

- normal profile (``make test``): a sample of 150 requests per id type (integer ids:
  ML-100K's; string ids: the same ratings with ``u``/``i`` prefixes);
- slow profile: 10,500 requests per id type with the memory check, and 300 for each of
  the 11 model classes (small fits on planted data, integer and string ids in turn).

``MATFACT_HOSTILE_FILE=path`` appends each run's figures to ``path`` as JSON lines
(for docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

import matfact
from tests.hardening._cases import CASES
from tests.hardening._hostile import Tally, families, send
from tests.models.contract import planted_interactions

serving = pytest.importorskip("tests.serving.conftest", reason="the serve extra is not "
                              "installed")
httpx = serving.httpx

# Hypothesis shows a long id's request in full when it reports one: only a warning.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

#: Requests per id type: the normal profile's sample, the slow profile's corpus.
SAMPLE, CORPUS, PER_CLASS = 150, 10_500, 300
#: The most the server's resident memory may grow over the slow corpus.
RSS_BUDGET_MIB = 50.0


def _record(figures: dict) -> None:
    target = os.environ.get("MATFACT_HOSTILE_FILE")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(figures) + "\n")
    print(f"hostile corpus: {json.dumps(figures)}")


def run_corpus(server, n: int, users: list, items: list) -> Tally:
    """About ``n`` generated requests to ``server``, one after the other; what came back.

    Each family of :func:`~tests.hardening._hostile.families` gets its share of ``n``,
    sent in up to 10 rounds that take the families in turn (so writes and reads mix),
    each round's requests drawn by hypothesis from its own seed. A family of few
    distinct requests (the fixed malformed ones) may give fewer than its share:
    hypothesis stops once it has drawn all of them.
    """
    tally = Tally()
    key = serving.API_KEY.encode()
    kinds = families(users, items)
    rounds = max(1, min(10, n // 100))
    fixed = not os.environ.get("MATFACT_FUZZ_RANDOM")
    with httpx.Client(base_url=server.url, timeout=120.0) as client:
        for turn in range(rounds):
            for index, (weight, strategy) in enumerate(kinds):
                share = round(n * weight / 1000)
                count = share // rounds + (1 if turn < share % rounds else 0)
                if count == 0:
                    continue

                @settings(max_examples=count, deadline=None, database=None,
                          phases=[Phase.generate], suppress_health_check=list(HealthCheck))
                @given(call=strategy)
                def one(call) -> None:
                    # Failures are collected, not raised: a server error must not send
                    # hypothesis shrinking against a server the earlier requests changed.
                    CASES["api (hostile)"] += 1
                    tally.add(call, send(client, call, key, port=server.port))

                if fixed:
                    one = seed(1_000 * index + turn)(one)
                one()
    return tally


def _ordinary(server, users: list, items: list) -> None:
    """A few ordinary requests of each route: what a server does on its first requests."""
    with server.client(serving.API_KEY) as client:
        for k in range(10):
            user, item = users[k % len(users)], items[k % len(items)]
            assert client.get(f"/users/{user}/recommendations").status_code == 200
            assert client.post("/predict", json={"users": [user], "items": [item]}
                               ).status_code == 200
            assert client.post("/recommendations", json={"items": [item], "ratings": [4],
                                                         "n": 5}).status_code == 200
            assert client.post("/ratings", json={"ratings": [
                {"user": user, "item": item, "rating": 4}]}).status_code == 200
        for path in ("/health", "/metrics", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200


def _still_serves_writes(server, users: list, items: list) -> None:
    with server.client(serving.API_KEY) as client:
        written = client.post("/ratings", json={"ratings": [
            {"user": users[0], "item": items[1], "rating": 5},
            {"user": users[1], "item": items[0], "rating": 1}]})
        assert written.status_code == 200, written.text
        assert written.json()["accepted"] == 2
        assert client.get(f"/users/{users[0]}/recommendations").status_code == 200
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["quarantined"] == 0


def _check(tally: Tally, n: int) -> None:
    assert tally.sent >= n * 0.95, tally.summary()
    assert not tally.server_errors, tally.server_errors[:10]
    assert not tally.no_answer, tally.no_answer[:10]
    assert tally.accepted_writes > 0, tally.summary()  # ordinary writes went through


# ---------------------------------------------------------------------- the two id types
@pytest.fixture(scope="module")
def models(ml100k_full, tmp_path_factory):
    """BiasedMF on ML-100K with its integer ids, and on the same ratings with string ids."""
    from matfact import Interactions

    root = tmp_path_factory.mktemp("hostile")
    data = ml100k_full
    strings = Interactions.from_arrays([f"u{u}" for u in data.users.tolist()],
                                       [f"i{i}" for i in data.items.tolist()], data.ratings,
                                       rating_scale=(1, 5))
    paths = {}
    for kind, interactions in (("int", data), ("str", strings)):
        paths[kind] = root / f"{kind}.zip"
        matfact.BiasedMF(n_factors=16, max_iter=5, random_state=0).fit(
            interactions, progress=False).save(paths[kind])
    return paths


def _known(kind: str) -> tuple[list, list]:
    users, items = list(range(1, 944, 37)), list(range(1, 1683, 61))
    if kind == "str":
        return [f"u{u}" for u in users], [f"i{i}" for i in items]
    return users, items


@pytest.mark.parametrize("kind", ["int", "str"])
def test_a_sample_of_the_hostile_corpus_gets_no_server_error(kind, models, tmp_path):
    server = serving.Server(models[kind], tmp_path / "log.sqlite").start()
    users, items = _known(kind)
    try:
        tally = run_corpus(server, SAMPLE, users, items)
        _still_serves_writes(server, users, items)
    finally:
        took = server.stop()
    _check(tally, SAMPLE)
    assert took < 10
    _record({"run": f"sample {kind} ids", "requests": tally.sent,
             "statuses": dict(tally.statuses), "accepted_writes": tally.accepted_writes,
             "server_errors": len(tally.server_errors), "sigterm_seconds": round(took, 2)})


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int", "str"])
def test_10000_hostile_requests_per_id_type_no_server_error_and_bounded_memory(kind, models,
                                                                               tmp_path):
    server = serving.Server(models[kind], tmp_path / "log.sqlite").start()
    users, items = _known(kind)
    try:
        _ordinary(server, users, items)
        time.sleep(2)  # the background warm-up of the lists settles
        rss_start = server.rss_mib()
        started = time.monotonic()
        tally = run_corpus(server, CORPUS, users, items)
        seconds = time.monotonic() - started
        rss_end = server.rss_mib()
        _still_serves_writes(server, users, items)
        with server.client() as client:
            health = client.get("/health").json()
    finally:
        took = server.stop()
    figures = {"run": f"corpus {kind} ids", "requests": tally.sent,
               "statuses": dict(tally.statuses), "by_kind": dict(tally.by_kind),
               "accepted_writes": tally.accepted_writes,
               "server_errors": len(tally.server_errors), "no_answer": len(tally.no_answer),
               "raw_socket_statuses": dict(tally.raw_statuses),
               "rss_start_mib": round(rss_start, 1), "rss_end_mib": round(rss_end, 1),
               "rss_growth_mib": round(rss_end - rss_start, 1), "seconds": round(seconds, 1),
               "users_after": health["users"], "items_after": health["items"],
               "sigterm_seconds": round(took, 2)}
    _record(figures)
    _check(tally, 10_000)
    assert tally.sent >= 10_000
    assert rss_end - rss_start <= RSS_BUDGET_MIB, figures
    assert took < 10


# ---------------------------------------------------------------------- every model class
def _classes() -> list:
    return [
        ("BiasedMF", lambda: matfact.BiasedMF(n_factors=4, max_iter=5, random_state=0),
         "explicit"),
        ("SVDPlusPlus", lambda: matfact.SVDPlusPlus(n_factors=4, max_iter=5, random_state=0),
         "explicit"),
        ("ALS", lambda: matfact.ALS(n_factors=4, max_iter=5, random_state=0), "explicit"),
        ("ImplicitALS", lambda: matfact.ImplicitALS(n_factors=4, max_iter=5, random_state=0),
         "implicit"),
        ("BPR", lambda: matfact.BPR(n_factors=4, max_iter=5, random_state=0, n_threads=1),
         "implicit"),
        ("BayesianMF", lambda: matfact.BayesianMF(n_factors=3, max_iter=8, burn_in=3,
                                                  random_state=0, n_threads=1), "explicit"),
        ("NMF", lambda: matfact.NMF(n_components=4, max_iter=30, tol=0.0, random_state=0),
         "explicit"),
        ("PureSVD", lambda: matfact.PureSVD(n_factors=4, random_state=0), "implicit"),
        ("HybridMF", lambda: matfact.HybridMF(n_factors=4, max_iter=5, random_state=0),
         "explicit"),
        ("Baseline", lambda: matfact.Baseline(), "explicit"),
        ("Popularity", lambda: matfact.Popularity(), "implicit"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("position", "name"), [(k, name) for k, (name, _, _)
                                                in enumerate(_classes())],
                         ids=[name for name, _, _ in _classes()])
def test_every_model_class_takes_the_hostile_corpus(position, name, tmp_path):
    _, make, data_kind = _classes()[position]
    string_ids = position % 2 == 1
    data = planted_interactions(data_kind, n_users=120, n_items=80, string_ids=string_ids)
    path = tmp_path / "model.zip"
    make().fit(data, progress=False).save(path)
    users, items = data.user_ids[:30].tolist(), data.item_ids[:30].tolist()
    server = serving.Server(path, tmp_path / "log.sqlite").start()
    try:
        tally = run_corpus(server, PER_CLASS, users, items)
        _still_serves_writes(server, users, items)
    finally:
        took = server.stop()
    _check(tally, PER_CLASS)
    # The log it wrote replays: a restart meets no row it cannot take.
    again = serving.Server(path, tmp_path / "log.sqlite").start()
    try:
        with again.client() as client:
            assert client.get("/health").json()["quarantined"] == 0
    finally:
        again.stop()
    _record({"run": f"class {name} ({'string' if string_ids else 'integer'} ids)",
             "requests": tally.sent, "statuses": dict(tally.statuses),
             "accepted_writes": tally.accepted_writes,
             "server_errors": len(tally.server_errors), "restart": "ok",
             "sigterm_seconds": round(took, 2)})
