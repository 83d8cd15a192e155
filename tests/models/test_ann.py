"""The approximate top-k index (matfact.models.ann): recall, exactness, exclusions,
persistence, live inserts, and clear errors."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matfact
from matfact.exceptions import ModelFormatError, ParameterError
from matfact.models.ann import augment, default_n_lists, exact_codes

pytest.importorskip("faiss", reason="the ann extra (faiss-cpu) is not installed")


@pytest.fixture(scope="module")
def implicit_model():
    data = matfact.make_synthetic(1500, 2500, 40_000, implicit=True, random_state=0)
    return matfact.ImplicitALS(n_factors=16, random_state=0).fit(data, progress=False)


@pytest.fixture(scope="module")
def rating_model():
    # String ids, biases and a rating scale: the augmented item base and the clipping.
    data = matfact.make_synthetic(600, 900, 15_000, random_state=1)
    frame = data.to_pandas()
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    data = matfact.Interactions.from_pandas(frame, user="user", item="item", rating="rating",
                                            rating_scale=(1, 5))
    return matfact.BiasedMF(n_factors=8, random_state=0, max_iter=5).fit(data, progress=False)


def _recall(exact: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(e[e != -1].tolist()) & set(f.tolist())) / max((e != -1).sum(), 1)
                          for e, f in zip(exact, found, strict=True)]))


def _copy(model):
    import copy

    out = copy.deepcopy(model)  # the live index is a cache: never copied
    assert "_ann_live" not in vars(out)
    return out


def test_recall_reaches_the_calibrated_target_on_users_outside_the_sample(implicit_model):
    model = _copy(implicit_model)
    model.build_index(recall=0.9, random_state=3)
    settings_ = model.ann_settings_
    assert settings_["measured_recall"] >= 0.9
    assert 1 <= settings_["n_probe"] <= settings_["n_lists"] == default_n_lists(model.n_items_)
    users = model.user_index_.ids
    exact, _ = model.recommend(users, n=10)
    found, _ = model.recommend(users, n=10, approximate=True)
    # Over every user (the calibration saw at most 1,000 of 1,500): the target, give or
    # take the sampling error.
    assert _recall(exact, found) >= 0.87


def test_reading_every_list_is_the_exact_answer(implicit_model, rating_model):
    for model in (_copy(implicit_model), _copy(rating_model)):
        model.build_index(n_lists=16, n_probe=16)
        users = model.user_index_.ids[:300]
        exact_ids, exact_scores = model.recommend(users, n=7)
        ids, scores = model.recommend(users, n=7, approximate=True)
        np.testing.assert_array_equal(ids, exact_ids)
        np.testing.assert_allclose(scores, exact_scores, rtol=1e-5, atol=1e-5)
    # The rating model's scores are clipped to its scale, as recommend clips them.
    assert np.nanmax(scores) <= 5.0


def test_scores_are_the_models_own_and_seen_items_never_come_back(implicit_model):
    model = _copy(implicit_model)
    model.build_index(n_lists=32, n_probe=2)
    users = model.user_index_.ids[:200]
    ids, scores = model.recommend(users, n=10, approximate=True)
    codes = model.user_index_.get_indexer(users)
    for row, code in enumerate(codes):
        seen = set(model.history(code)[0].tolist())
        items = model.item_index_.get_indexer(ids[row])
        assert not seen & set(items.tolist())
        expected = model.score_pairs(np.full(len(items), code), items)
        np.testing.assert_allclose(scores[row], expected, rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(scores[row]) <= 0)


def test_a_user_who_has_seen_almost_everything_still_gets_the_rest():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 60)
    items = np.tile(np.arange(60), 40)
    keep = rng.random(len(users)) < 0.5
    keep[:60] = True  # user 0 has seen every item ...
    keep[[3, 17, 42]] = False  # ... but three
    data = matfact.Interactions.from_arrays(users[keep], items[keep])
    model = matfact.ImplicitALS(n_factors=4, random_state=0).fit(data, progress=False)
    # One probe of 8 lists cannot hold the three: the search goes deeper.
    model.build_index(n_lists=8, n_probe=1)
    ids, scores = model.recommend([0], n=5, approximate=True)
    assert sorted(ids[0][:3].tolist()) == [3, 17, 42]
    assert ids[0][3:].tolist() == [-1, -1] and np.isnan(scores[0][3:]).all()


def test_unknown_users_get_the_fallback_as_without_the_index(implicit_model):
    model = _copy(implicit_model)
    model.build_index(n_lists=16, n_probe=4)
    known = model.user_index_.ids[0]
    exact = model.recommend([known, -99], n=5, return_fallback=True)
    approx = model.recommend([known, -99], n=5, approximate=True, return_fallback=True)
    assert approx[2].tolist() == [False, True] == exact[2].tolist()
    np.testing.assert_array_equal(approx[0][1], exact[0][1])


def test_an_unplaced_user_falls_back_through_the_index_too():
    data = matfact.make_synthetic(200, 300, 4000, implicit=True, random_state=0)
    model = matfact.ImplicitALS(n_factors=4, random_state=0).fit(data, progress=False)
    model.build_index(n_lists=8, n_probe=8)
    model.apply_ratings([10_000], [20_000], [1.0])  # both new: the user is placed nowhere
    exact = model.recommend([10_000], n=5, return_fallback=True)
    approx = model.recommend([10_000], n=5, approximate=True, return_fallback=True)
    assert exact[2].tolist() == approx[2].tolist() == [True]
    np.testing.assert_array_equal(approx[0], exact[0])


def test_an_anonymous_history_is_ranked_through_the_index(implicit_model):
    model = _copy(implicit_model)
    model.build_index(n_lists=16, n_probe=16)
    history = model.item_index_.ids[[3, 50, 700]]
    exact = model.recommend_for_history(history, n=8, explain=2)
    approx = model.recommend_for_history(history, n=8, explain=2, approximate=True)
    np.testing.assert_array_equal(approx[0], exact[0])
    np.testing.assert_allclose(approx[1], exact[1], rtol=1e-5)
    assert not set(history.tolist()) & set(approx[0].tolist())
    assert [e.item for e in approx[2]] == approx[0].tolist()
    # No known item: the fallback, as without the index.
    fallback = model.recommend_for_history([-5], n=3, approximate=True, return_fallback=True)
    assert fallback[2] and fallback[0].tolist() == model.recommend_for_history(
        [-5], n=3)[0].tolist()


def test_similar_items_reading_every_list_is_exact_and_excludes_the_item(implicit_model):
    model = _copy(implicit_model)
    model.build_index("similar", n_lists=16, n_probe=16)
    items = model.item_index_.ids[:100]
    exact_ids, exact_scores = model.similar_items(items, n=6)
    ids, scores = model.similar_items(items, n=6, approximate=True)
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    assert not (ids == items[:, None]).any()


def test_similar_items_are_calibrated_on_demand(implicit_model):
    model = _copy(implicit_model)
    ids, _ = model.similar_items(model.item_index_.ids[:200], n=10, approximate=True)
    assert model.ann_similar_settings_["measured_recall"] >= 0.95
    codes = np.arange(200)
    exact = exact_codes(model, "similar", codes, 10)
    assert _recall(exact, model.item_index_.get_indexer(ids.ravel()).reshape(ids.shape)) >= 0.9


def test_the_index_survives_save_and_load_without_a_rebuild(implicit_model, tmp_path,
                                                           monkeypatch):
    model = _copy(implicit_model)
    model.build_index(n_lists=16, n_probe=3)
    users = model.user_index_.ids[:200]
    before = model.recommend(users, n=10, approximate=True)
    model.save(tmp_path / "m.zip")
    loaded = matfact.load(tmp_path / "m.zip")
    np.testing.assert_array_equal(loaded.ann_lists_, model.ann_lists_)
    np.testing.assert_array_equal(loaded.ann_centroids_, model.ann_centroids_)

    def no_training(*args, **kwargs):
        raise AssertionError("the loaded index was trained again")

    monkeypatch.setattr("matfact.models.ann._kmeans_lists", no_training)
    after = loaded.recommend(users, n=10, approximate=True)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1])


def _rewrite(path, out, change):
    """Copy a model zip with meta.json and one array changed by ``change(meta, arrays)``."""
    import hashlib
    import io

    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(members["meta.json"])
    arrays = {name[len("arrays/"):-len(".npy")]: np.load(io.BytesIO(data))
              for name, data in members.items() if name.startswith("arrays/")}
    change(meta, arrays)
    with zipfile.ZipFile(out, "w") as zf:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            data = buffer.getvalue()
            meta["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                                    "sha256": hashlib.sha256(data).hexdigest()}
            zf.writestr(f"arrays/{name}.npy", data)
        zf.writestr("meta.json", json.dumps(meta))


@pytest.mark.parametrize("change, message", [
    (lambda meta, a: a.__setitem__("ann_lists_", a["ann_lists_"] + 100), "list in"),
    (lambda meta, a: a.__setitem__("ann_centroids_", a["ann_centroids_"][:, :-1]), "columns"),
    (lambda meta, a: a.__setitem__("ann_centroids_", np.full_like(a["ann_centroids_"], np.nan)),
     "NaN"),
    (lambda meta, a: meta["state"]["ann_settings_"].__setitem__("n_probe", 10**9), "n_probe"),
    (lambda meta, a: a.__setitem__("ann_lists_", np.zeros(10**5, np.int32)), "ann_lists_"),
])
def test_a_crafted_index_is_refused_at_load(implicit_model, tmp_path, change, message):
    model = _copy(implicit_model)
    model.build_index(n_lists=8, n_probe=2)
    model.save(tmp_path / "m.zip")
    _rewrite(tmp_path / "m.zip", tmp_path / "bad.zip", change)
    with pytest.raises(ModelFormatError, match=message):
        matfact.load(tmp_path / "bad.zip")


def test_new_items_are_recommendable_at_the_next_search():
    data = matfact.make_synthetic(300, 400, 6000, implicit=True, random_state=2)
    model = matfact.ImplicitALS(n_factors=6, random_state=0).fit(data, progress=False)
    model.build_index(n_lists=8, n_probe=8)  # every list read: the answer must be exact
    # A twin of the most popular item: placed from the same users, it ranks high for
    # the users who saw neither.
    popular = int(np.argmax(model.item_popularity()))
    raters = model.user_index_.ids[np.flatnonzero(model.seen_[:, popular].toarray().ravel())]
    model.add_items([10_000], [(raters, np.ones(len(raters)))])
    assert len(model.ann_lists_) == model.n_items_ - 1  # inserted at the next search
    exact, _ = model.recommend(model.user_index_.ids, n=10)
    approx, _ = model.recommend(model.user_index_.ids, n=10, approximate=True)
    assert (exact == 10_000).any()
    np.testing.assert_array_equal(approx, exact)
    assert len(model.ann_lists_) == model.n_items_
    assert 0 <= model.ann_lists_[model.item_index_.code(10_000)] < 8


def test_partial_fit_drops_the_index_and_keeps_its_settings():
    data = matfact.make_synthetic(300, 400, 6000, implicit=True, random_state=2)
    model = matfact.ImplicitALS(n_factors=6, random_state=0).fit(data, progress=False)
    model.build_index(n_lists=8, n_probe=8)
    more = matfact.make_synthetic(300, 400, 500, implicit=True, random_state=5)
    model.partial_fit(more, max_iter=1)
    assert not hasattr(model, "ann_lists_") and model.ann_settings_["n_lists"] == 8
    exact = model.recommend(model.user_index_.ids[:50], n=5)
    approx = model.recommend(model.user_index_.ids[:50], n=5, approximate=True)
    np.testing.assert_array_equal(approx[0], exact[0])  # rebuilt, all 8 lists read
    assert model.ann_settings_["n_probe"] == 8


@pytest.mark.parametrize("kwargs, message", [
    ({"n_lists": 0}, "n_lists"), ({"n_lists": 10**6}, "n_lists"), ({"n_lists": 2.5}, "n_lists"),
    ({"n_lists": True}, "n_lists"), ({"n_probe": True}, "n_probe"),
    ({"recall": 1.5}, "recall"), ({"recall": 0}, "recall"), ({"n_probe": 0}, "n_probe"),
    ({"kind": "users"}, "kind"), ({"n": 0}, "n"),
])
def test_bad_settings_are_refused(implicit_model, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        _copy(implicit_model).build_index(**kwargs)


def test_a_model_without_item_vectors_says_so():
    data = matfact.make_synthetic(50, 60, 600, random_state=0)
    model = matfact.Baseline().fit(data, progress=False)
    with pytest.raises(ParameterError, match="no item vectors"):
        model.build_index()
    with pytest.raises(ParameterError, match="no item vectors"):
        model.recommend([0], approximate=True)
    popularity = matfact.Popularity().fit(data, progress=False)
    with pytest.raises(ParameterError, match="dot product"):
        popularity.build_index()
    with pytest.raises(ParameterError, match="dot product"):
        popularity.recommend([0], approximate=True)


def test_augmentation_turns_inner_product_order_into_distance_order():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(200, 5)) * rng.gamma(1, 1, size=(200, 1))
    query = rng.normal(size=5)
    norm = np.linalg.norm(items, axis=1).max()
    augmented = augment(items, norm)
    distances = np.linalg.norm(augmented - np.append(query, 0.0), axis=1)
    np.testing.assert_array_equal(np.argsort(distances, kind="stable")[:20],
                                  np.argsort(-(items @ query), kind="stable")[:20])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), probe=st.integers(1, 16), seed=st.integers(0, 10**6))
def test_any_answer_is_a_best_first_list_of_unseen_items_with_exact_scores(implicit_model, n,
                                                                          probe, seed):
    model = implicit_model
    if getattr(model, "ann_settings_", {}).get("n_lists") != 16:
        model.build_index(n_lists=16, n_probe=4)
    model.ann_settings_["n_probe"] = probe
    model.__dict__["_ann_live"]["recommend"].n_probe = probe
    users = np.random.default_rng(seed).choice(model.user_index_.ids, 5, replace=False)
    ids, scores = model.recommend(users, n=n, approximate=True)
    for user, row, values in zip(users, ids, scores, strict=True):
        code = model.user_index_.code(user)
        seen = set(model.history(code)[0].tolist())
        items = model.item_index_.get_indexer(row[row != -1])
        unseen = model.n_items_ - len(seen)
        assert len(items) == min(n, unseen)  # never short: the search goes deeper
        assert not seen & set(items.tolist())
        assert len(set(items.tolist())) == len(items)
        np.testing.assert_allclose(values[:len(items)],
                                   model.score_pairs(np.full(len(items), code), items),
                                   rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(values[:len(items)]) <= 1e-6)


def test_exact_ranking_in_memory_bounded_batches_gives_the_same_lists(implicit_model,
                                                                      monkeypatch):
    from matfact.models import base

    users = implicit_model.user_index_.ids[:50]
    expected = implicit_model.recommend(users, n=10)
    similar = implicit_model.similar_items(implicit_model.item_index_.ids[:20], n=5)
    # Three users' scores per product (a catalogue of millions gets tens, not 2,048).
    monkeypatch.setattr(base, "_SCORE_BUDGET", 3 * 4 * implicit_model.n_items_)
    assert base._rows_per_batch(implicit_model.n_items_) == 3
    got = implicit_model.recommend(users, n=10)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)  # BLAS blocks differ
    got = implicit_model.similar_items(implicit_model.item_index_.ids[:20], n=5)
    np.testing.assert_array_equal(got[0], similar[0])


def test_degenerate_catalogues_answer_as_the_exact_ranking():
    # One item, seen by every user: nothing to recommend, recall counted as perfect.
    one = matfact.ImplicitALS(n_factors=2, random_state=0).fit(
        matfact.Interactions.from_arrays([1, 2, 3], [10, 10, 10]), progress=False)
    one.build_index()
    assert one.ann_settings_["measured_recall"] == 1.0
    for kwargs in ({}, {"approximate": True}):
        ids, scores, fallback = one.recommend([1, 99], n=5, return_fallback=True, **kwargs)
        assert ids.tolist() == [[-1], [10]] and fallback.tolist() == [False, True]
    # Every item vector zero: every user is placed nowhere, so the fallback, as exactly.
    data = matfact.make_synthetic(30, 40, 300, implicit=True, random_state=0)
    flat = matfact.ImplicitALS(n_factors=3, random_state=0).fit(data, progress=False)
    flat.item_factors_[:] = 0
    flat.build_index()
    exact = flat.recommend([0, 1], n=3, return_fallback=True)
    approx = flat.recommend([0, 1], n=3, return_fallback=True, approximate=True)
    assert exact[2].all() and approx[2].all()
    np.testing.assert_array_equal(approx[0], exact[0])


def test_items_added_after_the_build_are_always_proposed(tmp_path):
    data = matfact.make_synthetic(300, 400, 6000, implicit=True, random_state=2)
    model = matfact.ImplicitALS(n_factors=6, random_state=0).fit(data, progress=False)
    model.build_index(n_lists=16, n_probe=1)  # one list of 16 read: the lists alone miss
    popular = int(np.argmax(model.item_popularity()))
    raters = model.user_index_.ids[np.flatnonzero(model.seen_[:, popular].toarray().ravel())]
    model.add_items([10_000], [(raters, np.full(len(raters), 20.0))])
    exact, _ = model.recommend(model.user_index_.ids, n=10)
    getters = (exact == 10_000).any(axis=1)
    assert getters.sum() > 0
    for current in (model, _reloaded(model, tmp_path)):
        approx, _ = current.recommend(current.user_index_.ids, n=10, approximate=True)
        # Wherever the exact ranking lists the new item, the approximate one does too.
        assert ((approx == 10_000).any(axis=1) >= getters).all()
        assert current.ann_settings_["built_items"] == current.n_items_ - 1
        # ... and never to the users who have it already.
        seen_it = current.seen_[:, current.item_index_.code(10_000)].toarray().ravel() > 0
        assert not (approx[seen_it] == 10_000).any()


def _reloaded(model, tmp_path):
    model.save(tmp_path / "fresh.zip")
    return matfact.load(tmp_path / "fresh.zip")


def test_every_user_through_the_index_in_python_and_on_the_command_line(implicit_model,
                                                                       tmp_path, capsys):
    import pandas as pd

    from matfact.cli import main

    model = _copy(implicit_model)
    model.build_index(n_lists=16, n_probe=2)
    users = model.user_index_.ids[:300]
    blocks = list(model.recommend_all(8, users=users, approximate=True, block_size=64))
    ids = np.concatenate([block.ids for block in blocks])
    np.testing.assert_array_equal(ids, model.recommend(users, n=8, approximate=True)[0])
    model.save(tmp_path / "m.zip")
    out = tmp_path / "recs.parquet"
    assert main(["-q", "recommend", "--model", str(tmp_path / "m.zip"), "--all",
                 "--approximate", "-n", "8", "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    first = frame[frame["user"] == users[0]].sort_values("rank")["item"].tolist()
    assert first == ids[0].tolist()
    capsys.readouterr()
    assert main(["recommend", "--model", str(tmp_path / "m.zip"), "--user", str(users[1]),
                 "-n", "8", "--approximate", "--json"]) == 0
    import json

    answer = json.loads(capsys.readouterr().out)
    assert [row["item"] for row in answer[0]["items"]] == ids[1].tolist()
