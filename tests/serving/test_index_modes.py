"""Exact or approximate search in the service (``--index``), and bounded kept lists."""

from __future__ import annotations

import numpy as np
import pytest

import matfact
from matfact.exceptions import ParameterError
from matfact.serving import index as index_module
from matfact.serving.index import DEFAULT_MAX_KEPT, TopKIndex, resolve_mode
from matfact.serving.service import ModelService
from matfact.serving.store import Rating
from tests.serving.conftest import API_KEY, Server

pytest.importorskip("faiss", reason="the ann extra (faiss-cpu) is not installed")


@pytest.fixture(scope="module")
def implicit_model():
    data = matfact.make_synthetic(800, 1200, 20_000, implicit=True, random_state=0)
    return matfact.ImplicitALS(n_factors=8, random_state=0).fit(data, progress=False)


def test_auto_is_approximate_from_the_measured_size_on(implicit_model, monkeypatch):
    assert resolve_mode(implicit_model, "auto") == "exact"
    monkeypatch.setattr(index_module, "AUTO_APPROXIMATE_ITEMS", implicit_model.n_items_)
    assert resolve_mode(implicit_model, "auto") == "approximate"
    popularity = matfact.Popularity().fit(matfact.make_synthetic(50, 60, 500, random_state=0),
                                          progress=False)
    assert resolve_mode(popularity, "auto") == "exact"
    with pytest.raises(ParameterError, match="no item vectors"):
        resolve_mode(popularity, "approximate")
    with pytest.raises(ParameterError, match="index must be one of"):
        resolve_mode(implicit_model, "fast")


def test_approximate_service_answers_as_the_model_does(implicit_model):
    model = matfact.clone(implicit_model).fit(
        matfact.make_synthetic(800, 1200, 20_000, implicit=True, random_state=0), progress=False)
    model.build_index(n_lists=16, n_probe=16)  # every list read: the exact lists
    service = ModelService(model, index="approximate")
    assert service.index.max_kept == 0 and service.index.describe()["lists"] == 16
    for user in model.user_index_.ids[:30].tolist():
        answer = service.recommend(user, 10)
        ids, scores = model.recommend([user], n=10)
        assert answer["items"] == ids[0].tolist() and answer["fallback"] is None
        np.testing.assert_allclose(answer["scores"], scores[0], rtol=1e-5, atol=1e-5)
    similar = service.similar(model.item_index_.ids[0], 5)
    assert similar["items"] == model.similar_items(model.item_index_.ids[:1], n=5)[0][0].tolist()
    # Without a "similar" index in the model, similar items stay exact (no build on a request).
    assert not service.index.approximate_similar
    model.build_index("similar", n_lists=8, n_probe=8)
    assert service.index.approximate_similar
    assert service.similar(model.item_index_.ids[0], 5)["items"] == similar["items"]
    history = service.recommend_for_history(model.item_index_.ids[:3].tolist(), None, 5)
    assert history["items"] == model.recommend_for_history(model.item_index_.ids[:3], n=5)[
        0].tolist()
    # Unknown users keep the one fallback.
    assert service.recommend(-7, 3)["fallback"] == "popularity"


def test_a_new_item_is_recommendable_at_the_next_request(implicit_model):
    model = matfact.clone(implicit_model).fit(
        matfact.make_synthetic(800, 1200, 20_000, implicit=True, random_state=0), progress=False)
    model.build_index(n_lists=8, n_probe=8)
    service = ModelService(model, index="approximate")
    popular = int(np.argmax(model.item_popularity()))
    raters = model.user_index_.ids[np.flatnonzero(model.seen_[:, popular].toarray().ravel())]
    service.apply([Rating(int(user), 50_000, 1.0, None) for user in raters[:200]])
    expected = model.recommend(model.user_index_.ids, n=10)[0]
    getters = np.flatnonzero((expected == 50_000).any(axis=1))
    assert len(getters)
    user = model.user_index_.ids[getters[0]]
    assert 50_000 in service.recommend(int(user), 10)["items"]


def test_kept_lists_are_bounded_and_go_to_the_most_active_users(implicit_model):
    index = TopKIndex(implicit_model, max_kept=5)
    assert index.precompute() == 5
    activity = np.diff(implicit_model.seen_.indptr)
    kept = sorted(index._cache)
    assert sorted(activity[kept].tolist()) == sorted(activity.tolist())[-5:]
    assert TopKIndex(implicit_model).max_kept == DEFAULT_MAX_KEPT
    assert TopKIndex(implicit_model, "approximate").max_kept == 0
    with pytest.raises(ParameterError, match="max_kept"):
        TopKIndex(implicit_model, max_kept=-1)


def test_serve_index_approximate_over_http(implicit_model, tmp_path):
    """A real server: the index is built at start (the file has none), /health says
    so, and an item posted live is recommended at the next request."""
    model = matfact.clone(implicit_model).fit(
        matfact.make_synthetic(800, 1200, 20_000, implicit=True, random_state=0), progress=False)
    model.save(tmp_path / "model.zip")
    server = Server(tmp_path / "model.zip", tmp_path / "log.sqlite",
                    args=("--index", "approximate")).start()
    try:
        with server.client(API_KEY) as client:
            health = client.get("/health").json()
            assert health["index"]["mode"] == "approximate"
            assert health["index"]["recall"] >= 0.95 and health["precomputed"] == 0
            popular = int(np.argmax(model.item_popularity()))
            raters = model.user_index_.ids[
                np.flatnonzero(model.seen_[:, popular].toarray().ravel())][:200]
            assert client.post("/ratings", json={"ratings": [
                {"user": int(u), "item": 77_777, "rating": 1.0} for u in raters]}).status_code \
                == 200
            mirror = matfact.load(tmp_path / "model.zip")
            mirror.apply_ratings(raters, np.full(len(raters), 77_777), np.ones(len(raters)))
            expected = mirror.recommend(mirror.user_index_.ids, n=10)[0]
            user = mirror.user_index_.ids[np.flatnonzero((expected == 77_777).any(axis=1))[0]]
            body = client.get(f"/users/{user}/recommendations", params={"n": 10}).json()
            assert 77_777 in body["items"]
            bad = Server(tmp_path / "model.zip", tmp_path / "b.sqlite",
                         args=("--precompute", "-3"))
            with pytest.raises(RuntimeError, match="--precompute takes a number of users"):
                bad.start(timeout=30)
    finally:
        server.stop()
