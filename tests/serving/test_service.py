"""The service's model side: top-k against a full sort, live ratings against update_users."""

from __future__ import annotations

import numpy as np
import pytest

import matfact
from matfact import DataError, UnknownIdError
from matfact.serving.index import TopKIndex
from matfact.serving.service import ModelService
from matfact.serving.store import Rating
from tests.models.contract import planted_interactions


@pytest.fixture(scope="module")
def fitted():
    return matfact.BiasedMF(n_factors=4, max_iter=5, random_state=0).fit(
        planted_interactions("explicit"), progress=False)


def test_index_scores_equal_the_models(fitted):
    index = TopKIndex(fitted)
    for code in range(5):
        np.testing.assert_allclose(index.user_scores(code), fitted._score_users(
            np.array([code]))[0], rtol=1e-5, atol=1e-5)
    user = fitted.user_index_.ids[3]
    ids, scores = fitted.recommend([user], n=7)
    codes, values = index.recommend(3, 7)
    assert fitted.item_index_.ids[codes].tolist() == ids[0].tolist()
    np.testing.assert_allclose(values, scores[0], rtol=1e-5)


def test_models_without_factors_are_served_through_their_own_scores():
    data = planted_interactions("explicit")
    model = matfact.Popularity().fit(data, progress=False)
    index = TopKIndex(model)
    codes, _ = index.recommend(0, 5)
    ids, _ = model.recommend(data.user_ids[:1], n=5)
    assert model.item_index_.ids[codes].tolist() == ids[0].tolist()


def test_apply_recomputes_users_from_their_whole_history(fitted):
    service = ModelService(matfact.clone(fitted).fit(planted_interactions("explicit"),
                                                     progress=False))
    model = service.model
    user = model.user_index_.ids[0]
    row = model.seen_[0]
    items = model.item_index_.ids[row.indices].tolist()
    old = dict(zip(items, row.data.tolist(), strict=True))
    new_item = next(i for i in model.item_index_.ids.tolist() if i not in old)
    changes = service.apply([Rating(user, new_item, 5.0), Rating(user, items[0], 1.0)])
    assert changes == {"new_users": [], "new_items": []}
    expected = {**old, new_item: 5.0, items[0]: 1.0}
    vector = model.fold_in(list(expected), list(expected.values()))
    np.testing.assert_allclose(model.user_vector(user).factors, vector.factors, rtol=1e-5)
    # Applying the same ratings again changes nothing.
    before = model.user_factors_.copy()
    service.apply([Rating(user, new_item, 5.0), Rating(user, items[0], 1.0)])
    np.testing.assert_array_equal(model.user_factors_, before)


def test_apply_adds_users_and_items(fitted):
    service = ModelService(matfact.clone(fitted).fit(planted_interactions("explicit"),
                                                     progress=False))
    known = service.model.user_index_.ids[:3].tolist()
    changes = service.apply([Rating(u, 9999, 5.0) for u in known] + [Rating(777, 9999, 4.0)])
    assert changes == {"new_users": [777], "new_items": [9999]}
    assert service.item_code(9999) >= 0 and service.user_code(777) >= 0
    assert service.recommend(777, 3)["fallback"] is None
    assert service.index.n_items == service.model.n_items_


def test_queries_check_their_input(fitted):
    service = ModelService(fitted)
    with pytest.raises(UnknownIdError):
        service.similar(123456, 5)
    with pytest.raises(DataError, match="scale"):
        service.check_ratings([Rating(fitted.user_index_.ids[0], 1, 99.0)])
    with pytest.raises(DataError, match="integers"):
        service.check_ratings([Rating("text", 1, 3.0)])
    with pytest.raises(DataError, match="between 1 and 1000"):
        service.n_for(0)
    assert service.user_code("not-a-number") == -1
    assert service.recommend("not-a-number", 2)["fallback"] == "popularity"


def test_kept_lists_equal_the_full_sort_and_follow_updates():
    data = planted_interactions("explicit", n_users=80, n_items=150)
    model = matfact.BiasedMF(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    service = ModelService(model)
    fresh = TopKIndex(model)
    assert service.index.precompute(batch=16) > 0
    for code in range(model.n_users_):
        for n in (1, 10, 100):
            kept = service.index.recommend(code, n)
            exact = fresh.recommend(code, n)  # nothing kept: computed on demand
            np.testing.assert_array_equal(kept[0], exact[0])
            np.testing.assert_allclose(kept[1], exact[1], rtol=1e-5)
    user = model.user_index_.ids[0]
    top = service.recommend(user, 5)["items"]
    service.apply([Rating(user, top[0], 1.0)])
    after = service.recommend(user, 5)["items"]
    assert top[0] not in after
    np.testing.assert_array_equal(service.index.recommend(0, 5)[0],
                                  TopKIndex(model).recommend(0, 5)[0])


def test_ties_at_the_cut_off_are_not_kept():
    from matfact.serving.index import _batch_top

    scores = np.array([[3.0, 2.0, 2.0, 1.0], [3.0, 2.0, 1.0, 0.0], [9.0, 3.0, 2.0, 0.0]],
                      dtype=np.float32)
    seen_indptr, seen_indices = np.array([0, 0, 0, 1]), np.array([0], dtype=np.int32)
    lists = _batch_top(scores, seen_indptr, seen_indices, 2)
    assert lists[0] is None  # the second place is tied: computed on demand instead
    np.testing.assert_array_equal(lists[1][0], [0, 1])
    np.testing.assert_array_equal(lists[2][0], [1, 2])  # the seen item 0 is skipped


def test_replay_skips_what_the_model_file_was_fitted_from(fitted, tmp_path):
    from matfact.serving.store import RatingStore

    user = fitted.user_index_.ids[0]
    item_ids = fitted.item_index_.ids[:3].tolist()
    logged = [Rating(user, item, value) for item, value in zip(item_ids, (1.0, 2.0, 3.0),
                                                               strict=True)]
    with RatingStore(tmp_path / "log.sqlite") as store, \
            RatingStore(tmp_path / "other.sqlite") as other:
        for log in (store, other):
            log.append(logged[:2])
            log.append(logged[2:])
        model = matfact.clone(fitted).fit(planted_interactions("explicit"), progress=False)
        # What `matfact retrain` records: it was fitted on this log's first two entries.
        model.rating_log_ = store.position(2, logged[1])
        kept = model.seen_[0].toarray().ravel()
        service = ModelService(model)
        assert service.replay(store) == 1 and service.applied_seq == 3
        seen = model.seen_[0].toarray().ravel()
        codes = model.item_index_.get_indexer(item_ids)
        assert seen[codes[2]] == 3.0  # the rating that came after the file
        assert seen[codes[0]] == kept[codes[0]] and seen[codes[1]] == kept[codes[1]]
        assert service.replay(store) == 0  # nothing new since
        # A file fitted against another log misses none of this one's ratings.
        assert ModelService(matfact.clone(fitted).fit(planted_interactions("explicit"),
                                                      progress=False)).replay(other) == 3
        foreign = matfact.clone(fitted).fit(planted_interactions("explicit"), progress=False)
        foreign.rating_log_ = store.position(2, logged[1])
        assert ModelService(foreign).replay(other) == 3


@pytest.mark.parametrize("model_class", [matfact.BayesianMF, matfact.BiasedMF])
def test_a_refused_batch_is_never_logged_and_every_replay_starts(model_class, tmp_path):
    """Issue 18: the model checks a batch before it is logged (validate → log → apply).

    Two writes used to be logged and then fail to apply, so every later start failed:
    an integer id for a string-id model, and a new item on a BayesianMF.
    """
    from matfact.serving.store import RatingStore

    data = planted_interactions("explicit", string_ids=True)
    params = dict(n_factors=3, max_iter=6, random_state=0)
    if model_class is matfact.BayesianMF:
        params.update(burn_in=2, n_threads=1)
    path = tmp_path / "model.zip"
    model_class(**params).fit(data, progress=False).save(path)
    service = ModelService.from_file(path)
    with RatingStore(tmp_path / "log.sqlite") as store:
        good = service.check_ratings([Rating(5, "i001", 4.0), Rating("u000", "brand-new", 5.0),
                                      Rating("u001", "brand-new", 2.0, 1.7e9)])
        assert [r.user for r in good] == ["5", "u000", "u001"]  # read as the model's ids
        store.append(good)
        changes = service.apply(good)
        assert changes == {"new_users": ["5"], "new_items": ["brand-new"]}
        before = service.model.predict(["5", "u000"], ["brand-new", "brand-new"])
        for bad in ([Rating("u000", "i001", 9.0)], [Rating("u000", "i001", float("nan"))],
                    [Rating("u000", "i001", 3.0, float("inf"))],
                    [Rating("u000", "i001", 3.0), Rating(True, "i001", 3.0)]):
            with pytest.raises(DataError):
                service.check_ratings(bad)
        assert store.count() == 3
        restarted = ModelService.from_file(path)
        assert restarted.replay(store) == 3
        np.testing.assert_allclose(
            restarted.model.predict(["5", "u000"], ["brand-new", "brand-new"]), before,
            rtol=1e-5)


# ---------------------------------------------------------------------- issue 20: one policy, typed ids
def test_answers_state_the_fallback_and_what_the_scores_are():
    data = planted_interactions("explicit")
    model = matfact.BiasedMF(n_factors=4, max_iter=5, random_state=0).fit(data, progress=False)
    model.item_bias_ = model.item_bias_ + 3.0  # push scores past the top of the 1-5 scale
    service = ModelService(model)
    user = int(model.user_index_.ids[0])
    known = service.recommend(str(user), 5)
    # The id comes back in the model's type, and the scores as the library reports them.
    assert known["user"] == user and isinstance(known["user"], int)
    assert known["fallback"] is None and known["score_kind"] == "rating"
    ids, scores = model.recommend([user], n=5)
    assert known["items"] == ids[0].tolist()
    np.testing.assert_allclose(known["scores"], scores[0], atol=1e-6)
    assert max(known["scores"]) == 5.0  # clipped: the raw scores pass 5
    assert model.score_users(np.array([0])).max() > 5.0
    # An unknown user: the library's fallback (popularity counts, named as such).
    unknown = service.recommend("424242", 4)
    assert unknown["user"] == 424242 and unknown["fallback"] == "popularity"
    assert unknown["score_kind"] == "popularity"
    counts = np.bincount(model.seen_.indices, minlength=model.n_items_)
    ids, scores, fallback = model.recommend([424242], n=4, return_fallback=True)
    assert fallback.tolist() == [True] and unknown["items"] == ids[0].tolist()
    assert unknown["scores"] == counts[model.item_index_.get_indexer(ids[0])].tolist()
    assert service.recommend("not-a-number", 1)["user"] == "not-a-number"
    # Histories: clipped ratings, and the same fallback when no item is known.
    history = service.recommend_for_history(model.item_index_.ids[:2].tolist(), [5, 5], 3)
    assert history["fallback"] is None and history["score_kind"] == "rating"
    assert max(history["scores"]) <= 5.0
    nothing = service.recommend_for_history([10**9], [4], 4)
    assert nothing["fallback"] == "popularity" and nothing["items"] == unknown["items"]
    assert service.predict([user], [int(model.item_index_.ids[0])])["score_kind"] == "rating"
    assert service.similar(int(model.item_index_.ids[1]), 2)["item"] == int(
        model.item_index_.ids[1])


def test_ranking_models_say_their_scores_are_not_ratings():
    data = planted_interactions("implicit")
    service = ModelService(matfact.ImplicitALS(n_factors=3, max_iter=3, random_state=0).fit(
        data, progress=False))
    answer = service.recommend(int(data.user_ids[0]), 3)
    assert answer["fallback"] is None and answer["score_kind"] == "ranking"


def test_history_refuses_what_the_model_refuses(fitted):
    """Issue 20: the service's fold-in refuses an off-scale rating as apply_ratings does."""
    service = ModelService(fitted)
    items = fitted.item_index_.ids[:2].tolist()
    with pytest.raises(DataError, match="scale") as by_service:
        service.recommend_for_history(items, [3.0, 7.0], 3)
    with pytest.raises(DataError) as by_model:
        fitted.recommend_for_history(items, [3.0, 7.0])
    assert str(by_service.value) == str(by_model.value)


# ---------------------------------------------------------------------- issue 22: "because you rated"
def test_because_lists_are_the_models_explanations_of_the_listed_items(fitted):
    service = ModelService(fitted)
    user = int(fitted.user_index_.ids[4])
    answer = service.recommend(str(user), 5, explain=3)
    assert len(answer["because"]) == len(answer["items"]) == 5
    assert answer["because_exact"] == [True] * 5
    for item, because in zip(answer["items"], answer["because"], strict=True):
        why = fitted.explain(user, item, n=3)
        assert [c["item"] for c in because] == [c.item for c in why.contributions]
        np.testing.assert_allclose([c["contribution"] for c in because],
                                   [c.contribution for c in why.contributions], rtol=1e-12)
        assert [c["value"] for c in because] == [c.value for c in why.contributions]
        assert all(c["title"] is None for c in because)  # the model has no titles
    # The whole history listed (it is shorter than 20): the contributions add up to the
    # factor part of the score of the user folded in from that history, q_i·p.
    whole = service.recommend(user, 3, explain=20)
    code = service.user_code(user)
    codes, values = fitted.history(code)
    vector = fitted.fold_in(fitted.item_index_.ids[codes].tolist(), values.tolist())
    for item, because in zip(whole["items"], whole["because"], strict=True):
        assert sorted(c["item"] for c in because) == sorted(
            fitted.item_index_.ids[codes].tolist())
        q = fitted.item_factors_[service.item_code(item)].astype(np.float64)
        np.testing.assert_allclose(sum(c["contribution"] for c in because),
                                   q @ vector.factors, rtol=1e-4, atol=1e-6)
    # Without explain= the answer is as it was: no because at all.
    assert "because" not in service.recommend(user, 5)


def test_explanations_follow_live_ratings(fitted):
    service = ModelService(matfact.clone(fitted).fit(planted_interactions("explicit"),
                                                     progress=False))
    model = service.model
    user = int(model.user_index_.ids[7])
    seen = set(model.item_index_.ids[model.history(7)[0]].tolist())
    new_item = next(i for i in model.item_index_.ids.tolist() if i not in seen)
    before = service.recommend(user, 3, explain=20)
    assert all(new_item not in [c["item"] for c in b] for b in before["because"])
    service.apply([Rating(user, new_item, 5.0)])
    after = service.recommend(user, 3, explain=20)
    for item, because in zip(after["items"], after["because"], strict=True):
        rated = {c["item"]: c["value"] for c in because}
        assert rated[new_item] == 5.0  # the rating just posted explains the list
        why = model.explain(user, item, n=20)
        np.testing.assert_allclose([c["contribution"] for c in because],
                                   [c.contribution for c in why.contributions], rtol=1e-12)


def test_explain_is_checked_and_the_fallback_has_no_explanation(fitted):
    service = ModelService(fitted)
    user = int(fitted.user_index_.ids[0])
    for bad in (0, 21, -1, 2.5, True, "3"):
        with pytest.raises(DataError, match="explain must be an integer between 1 and 20"):
            service.recommend(user, 3, explain=bad)
        with pytest.raises(DataError, match="explain must be"):
            service.recommend_for_history([0], [4], 3, explain=bad)
    unknown = service.recommend("424242", 3, explain=2)
    assert unknown["fallback"] == "popularity"
    assert unknown["because"] is None and unknown["because_exact"] is None
    nothing = service.recommend_for_history([10**9], [4], 3, explain=2)
    assert nothing["fallback"] == "popularity" and nothing["because"] is None
    # A history: each list names only the history's items, as the model explains them.
    items = fitted.item_index_.ids[:3].tolist()
    history = service.recommend_for_history(items, [5, 1, 4], 4, explain=2)
    ids, _, explanations = fitted.recommend_for_history(items, [5, 1, 4], 4, explain=2)
    assert history["items"] == ids.tolist()
    assert history["because"] == [[{"item": c.item, "title": None,
                                    "contribution": c.contribution, "value": c.value}
                                   for c in e.contributions] for e in explanations]
    assert all({c["item"] for c in b} <= set(items) for b in history["because"])


def test_approximate_explanations_say_so_and_popularity_has_none():
    data = planted_interactions("implicit")
    bpr = ModelService(matfact.BPR(n_factors=3, max_iter=3, random_state=0).fit(
        data, progress=False))
    answer = bpr.recommend(int(data.user_ids[0]), 3, explain=2)
    assert answer["because_exact"] == [False] * 3 and len(answer["because"]) == 3
    assert bpr.explains
    popular = ModelService(matfact.Popularity().fit(data, progress=False))
    with pytest.raises(matfact.exceptions.ParameterError, match="no explanation"):
        popular.recommend(int(data.user_ids[0]), 3, explain=2)
    # /health says so, and the page then asks for no explanation.
    assert not popular.explains and "because" not in popular.recommend(
        int(data.user_ids[0]), 3)


@pytest.mark.parametrize("model", [matfact.ImplicitALS(n_factors=4, max_iter=3, random_state=0),
                                   matfact.PureSVD(n_factors=4)])
def test_a_user_placed_from_nothing_gets_the_fallback_everywhere(model):
    # A new user whose only rating is of an item new in the same batch has a zero vector:
    # every item scores 0, and the list used to be the catalogue in index order.
    model.fit(planted_interactions("implicit"), progress=False)
    popular = model.recommend([10**6], 4)[0][0]  # an unknown user's list
    service = ModelService(model)
    service.apply([Rating(5000, 9000, 1.0)])
    known = int(model.user_index_.ids[0])
    assert model.unplaced(model.user_index_.get_indexer([5000, known])).tolist() == [True, False]
    ids, scores, fallback = model.recommend([5000, known], 4, return_fallback=True)
    assert fallback.tolist() == [True, False]
    assert ids[0].tolist() == popular.tolist()  # the new item (seen) is never listed
    answer = service.recommend(5000, 4)
    assert answer["fallback"] == "popularity" and answer["score_kind"] == "popularity"
    assert answer["items"] == popular.tolist()
    assert service.recommend(known, 4)["fallback"] is None
