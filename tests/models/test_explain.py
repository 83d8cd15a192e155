"""Explanations (issue 22): the parts of a score sum to the model's score.

``model.explain(user, item)`` and ``recommend(..., explain=k)`` split a score into the
user's history items (the fold-in's linear solve, Hu, Koren & Volinsky 2008 §5) and
the terms that are not history. The parts must sum to the score the model gives the
user placed from that history (hypothesis over histories and items, for every exact
model and its fold-in variants), equal closed forms written here from the papers, and
equal implicit's ``AlternatingLeastSquares.explain`` on the same factors (skipped when
implicit is not installed).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matfact
from matfact.exceptions import ParameterError, UnknownIdError
from matfact.models import (
    ALS,
    BPR,
    NMF,
    Baseline,
    BayesianMF,
    BiasedMF,
    HybridMF,
    ImplicitALS,
    Popularity,
    PureSVD,
    SVDPlusPlus,
)
from matfact.models.explain import EXACT_TOLERANCE, Explanation

N_USERS, N_ITEMS = 30, 24


def _data(seed: int = 0, implicit: bool = False, times: bool = False):
    rng = np.random.default_rng(seed)
    cells = rng.choice(N_USERS * N_ITEMS, size=300, replace=False)
    users, items = cells // N_ITEMS, cells % N_ITEMS
    stamps = (1_600_000_000 + rng.integers(0, 400 * 86_400, len(cells))) if times else None
    if implicit:
        return matfact.Interactions.from_arrays(users, items, weights=rng.integers(1, 9, len(cells)),
                                                timestamps=stamps)
    return matfact.Interactions.from_arrays(users, items, rng.integers(1, 6, len(cells)),
                                            timestamps=stamps, rating_scale=(1, 5, 1))


#: Every exact model, with the fold-in variants whose system differs (reg exponents,
#: weighted λ, time bins, L1, posterior samples, implicit columns).
EXACT = {
    "als": (lambda: ALS(n_factors=4, max_iter=4, random_state=0), {}),
    "als_plain": (lambda: ALS(n_factors=3, max_iter=3, weighted_reg=False, biased=False,
                              reg=0.5, random_state=0), {}),
    "implicit_als": (lambda: ImplicitALS(n_factors=4, max_iter=3, random_state=0),
                     {"implicit": True}),
    "implicit_als_plain": (lambda: ImplicitALS(n_factors=4, max_iter=3, reg_exponent=0.0,
                                               confidence="log", solver="cholesky",
                                               random_state=0), {"implicit": True}),
    "biased_mf": (lambda: BiasedMF(n_factors=4, max_iter=5, random_state=0), {}),
    "biased_mf_time": (lambda: BiasedMF(n_factors=4, max_iter=5, time_bins=3,
                                        random_state=0), {"times": True}),
    "svdpp": (lambda: SVDPlusPlus(n_factors=4, max_iter=5, random_state=0), {}),
    "pure_svd": (lambda: PureSVD(n_factors=4, random_state=0), {}),
    "nmf": (lambda: NMF(4, max_iter=20, tol=1.0, random_state=0), {}),
    "nmf_l1": (lambda: NMF(4, max_iter=20, tol=1.0, l1_ratio=0.5, alpha_W=0.02,
                           random_state=0), {}),
    "bayesian": (lambda: BayesianMF(n_factors=3, max_iter=12, burn_in=4, random_state=0), {}),
    "bayesian_samples": (lambda: BayesianMF(n_factors=3, max_iter=12, burn_in=4,
                                            keep_samples=True, implicit=True,
                                            random_state=0), {}),
    "hybrid": (lambda: HybridMF(n_factors=4, max_iter=5, random_state=0), {}),
    "baseline": (lambda: Baseline(), {}),
}
_FITTED: dict[str, object] = {}


def fitted(name: str):
    if name not in _FITTED:
        factory, options = EXACT[name]
        _FITTED[name] = factory().fit(_data(**options), progress=False)
    return _FITTED[name]


def _sums(why: Explanation) -> None:
    scale = max(1.0, abs(why.score))
    assert abs(why.total() - why.score) <= EXACT_TOLERANCE * scale, why


@pytest.mark.parametrize("name", sorted(EXACT))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_parts_sum_to_the_score_of_the_folded_in_user(name, data):
    model = fitted(name)
    implicit = model.is_implicit_
    history = data.draw(st.lists(st.integers(0, N_ITEMS - 1), min_size=1, max_size=10,
                                 unique=True), label="history")
    values = data.draw(st.lists(st.integers(1, 5 if not implicit else 40),
                                min_size=len(history), max_size=len(history)), label="values")
    targets = data.draw(st.lists(st.integers(0, N_ITEMS - 1), min_size=1, max_size=4),
                        label="items")
    ids = model.item_index_.ids
    codes = np.asarray(history)
    vector = model.fold_in_codes(codes, np.asarray(values, float))
    expected = model.score_vector(vector)
    explanations = model._explain_codes(-1, (codes, np.asarray(values, float)),
                                        np.asarray(targets), len(history))
    for target, why in zip(targets, explanations, strict=True):
        assert why.exact and why.folded_in and why.user is None
        assert why.item == ids[target]
        assert why.score == pytest.approx(float(expected[target]), rel=1e-6, abs=1e-6)
        _sums(why)
        # Every history item is listed (n = len(history)), largest first, nothing in rest.
        assert sorted(c.item for c in why.contributions) == sorted(ids[codes].tolist())
        shares = [c.contribution for c in why.contributions]
        assert shares == sorted(shares, reverse=True) and why.rest == 0.0


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), reg=st.floats(0.05, 5.0), exponent=st.floats(0.0, 1.0))
def test_implicit_als_on_random_data(seed, reg, exponent):
    data = _data(seed, implicit=True)
    model = ImplicitALS(n_factors=3, max_iter=2, reg=reg, reg_exponent=exponent,
                        random_state=seed).fit(data, progress=False)
    user = data.user_index.ids[seed % len(data.user_index)]
    for why in model.explain(user, list(data.item_index.ids[:6]), n=3):
        assert why.exact
        _sums(why)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), reg=st.floats(0.01, 2.0), weighted=st.booleans())
def test_als_on_random_data(seed, reg, weighted):
    data = _data(seed)
    model = ALS(n_factors=3, max_iter=2, reg=reg, weighted_reg=weighted,
                random_state=seed).fit(data, progress=False)
    user = data.user_index.ids[seed % len(data.user_index)]
    for why in model.explain(user, list(data.item_index.ids[:6]), n=3):
        assert why.exact
        _sums(why)


def test_implicit_als_equals_hu_et_al_closed_form():
    """s_ij c_j with W = (YᵀY + λ n^ν I + Yᵀ(C − I)Y)⁻¹, written out from the paper."""
    model = fitted("implicit_als")
    codes, weights = model.history(5)
    y = model.item_factors_.astype(np.float64)
    c = 1.0 + model.alpha_ * weights  # "auto" chose linear on these narrow counts
    assert model.confidence_ == "linear"
    hist = y[codes]
    lam = model.reg * len(codes) ** model.reg_exponent
    w = np.linalg.inv(y.T @ y + lam * np.eye(y.shape[1]) + (hist.T * (c - 1)) @ hist)
    item = 7
    expected = (y[item] @ w @ hist.T) * c
    why = model.explain(model.user_index_.ids[5], model.item_index_.ids[item], n=len(codes))
    got = {c_.item: c_.contribution for c_ in why.contributions}
    for j, code in enumerate(codes):
        assert got[model.item_index_.ids[code]] == pytest.approx(expected[j], rel=1e-4, abs=1e-6)
    assert why.score == pytest.approx(expected.sum(), rel=1e-4)


def test_als_equals_its_ridge_closed_form():
    model = fitted("als")
    codes, ratings = model.history(2)
    q = model.item_factors_.astype(np.float64)
    design = np.hstack([q[codes], np.ones((len(codes), 1))])
    target = ratings - model.global_mean_ - model.item_bias_[codes]
    w = np.linalg.inv(design.T @ design + len(codes) * model.reg * np.eye(design.shape[1]))
    item = 3
    expected = (np.append(q[item], 0.0) @ w @ design.T) * target
    why = model.explain(model.user_index_.ids[2], model.item_index_.ids[item], n=len(codes))
    got = {c.item: c.contribution for c in why.contributions}
    assert [got[model.item_index_.ids[j]] for j in codes] == pytest.approx(expected, rel=1e-4,
                                                                          abs=1e-6)
    bias = (np.eye(design.shape[1])[-1] @ w @ design.T) @ target
    assert why.other_terms["user bias"] == pytest.approx(bias, rel=1e-4, abs=1e-6)
    assert why.other_terms["global mean"] == pytest.approx(model.global_mean_)
    assert why.other_terms["item bias"] == pytest.approx(float(model.item_bias_[item]))


def test_pure_svd_contribution_is_rating_times_item_similarity():
    model = fitted("pure_svd")
    codes, values = model.history(4)
    v = model.item_factors_.astype(np.float64)
    why = model.explain(model.user_index_.ids[4], model.item_index_.ids[0], n=len(codes))
    got = {c.item: c.contribution for c in why.contributions}
    for code, value in zip(codes, values, strict=True):
        assert got[model.item_index_.ids[code]] == pytest.approx(value * v[0] @ v[code],
                                                                abs=1e-6)


def test_svdpp_share_includes_the_implicit_term():
    """Item m's share: s_im t_m + (q_i − Σ_j s_ij q_j)·y_m/√n (the implicit sum's part)."""
    model = fitted("svdpp")
    codes, ratings = model.history(1)
    q = model.item_factors_.astype(np.float64)
    y = model.implicit_factors_.astype(np.float64)
    n = len(codes)
    design = np.hstack([q[codes], np.ones((n, 1))])
    w = np.linalg.inv(design.T @ design + n * np.diag([model.reg] * q.shape[1]
                                                      + [model.reg_bias]))
    item = 9
    s = np.append(q[item], 0.0) @ w @ design.T
    rating_part = s * (ratings - model.global_mean_ - model.item_bias_[codes])
    implicit_part = (y[codes] @ (q[item] - s @ q[codes])) / np.sqrt(n)
    why = model.explain(model.user_index_.ids[1], model.item_index_.ids[item], n=n)
    got = {c.item: c.contribution for c in why.contributions}
    assert [got[model.item_index_.ids[j]] for j in codes] == pytest.approx(
        rating_part + implicit_part, rel=1e-4, abs=1e-6)


def test_nmf_reports_its_l1_shrinkage():
    model = fitted("nmf_l1")
    why = model.explain(model.user_index_.ids[0], model.item_index_.ids[1])
    assert why.exact and "l1 penalty" in why.other_terms
    assert why.other_terms["l1 penalty"] <= 0
    _sums(why)


def test_known_user_is_compared_with_the_trained_vector():
    model = fitted("biased_mf")
    user, item = model.user_index_.ids[6], model.item_index_.ids[2]
    why = model.explain(user, item)
    codes, values = model.history(6)
    folded = model.fold_in_codes(codes, values)
    assert why.user == user and why.folded_in
    assert why.score == pytest.approx(float(model.score_vector(folded)[2]), rel=1e-6)
    assert why.trained_score == pytest.approx(float(model.predict(user, item, clip=False)[0]))
    trained = model.user_factors_[6].astype(np.float64)
    gap = np.linalg.norm(folded.factors - trained) / np.linalg.norm(trained)
    assert why.vector_gap == pytest.approx(gap, rel=1e-5)
    # n limits the list; the rest keeps the sum.
    short = model.explain(user, item, n=1)
    assert len(short.contributions) == 1
    assert short.total() == pytest.approx(why.total(), abs=1e-9)


@pytest.mark.parametrize("factory", [
    lambda: BPR(n_factors=4, max_iter=5, random_state=0),
    lambda: HybridMF(n_factors=4, max_iter=5, loss="bpr", random_state=0),
])
def test_models_without_a_linear_fold_in_are_approximated(factory):
    data = _data(implicit=True)
    model = factory().fit(data, progress=False)
    user, items = data.user_index.ids[3], list(data.item_index.ids[:5])
    if isinstance(model, HybridMF):
        # Its trained users are split by feature (exact); one placed from a history by
        # the ranking fold-in (gradient ascent) is approximated like BPR's.
        assert model.explain(user, items[0]).exact
        codes, values = model.history(3)
        model.update_users([user], [(model.item_index_.ids[codes], values)])
    trained = model.predict([user] * 5, items, clip=False)
    for why, score in zip(model.explain(user, items), trained, strict=True):
        assert not why.exact and not why.folded_in
        assert "unexplained" in why.other_terms
        assert why.score == pytest.approx(score, rel=1e-6)
        assert why.total() == pytest.approx(why.score, rel=1e-9, abs=1e-9)


def test_recommend_with_explanations():
    model = fitted("als")
    users = [model.user_index_.ids[0], 10_000, model.user_index_.ids[1]]  # 10_000: unknown
    ids, scores = model.recommend(users, n=3)
    ids2, scores2, fallback, why = model.recommend(users, n=3, return_fallback=True,
                                                   explain=2)
    np.testing.assert_array_equal(ids, ids2)
    assert fallback.tolist() == [False, True, False]
    assert why[1] is None  # the popularity fallback has no explanation
    for row, explanations in ((0, why[0]), (2, why[2])):
        assert [e.item for e in explanations] == ids[row].tolist()
        assert all(len(e.contributions) <= 2 and e.user == users[row] for e in explanations)
        _sums(explanations[0])
        # The same as explain() of that pair.
        single = model.explain(users[row], ids[row][0], n=2)
        assert single.contributions[0].item == explanations[0].contributions[0].item
        assert single.score == explanations[0].score
        assert single.total() == pytest.approx(explanations[0].total(), abs=1e-9)


def test_recommend_for_history_with_explanations():
    model = fitted("implicit_als")
    items = list(model.item_index_.ids[:4])
    ids, scores, why = model.recommend_for_history(items, n=3, explain=1)
    assert [e.item for e in why] == ids.tolist()
    assert all(e.user is None and e.trained_score is None and e.vector_gap is None
               for e in why)
    # The reported score is the ranking score of the same folded-in user.
    assert [e.score for e in why] == pytest.approx(scores.tolist(), rel=1e-6)
    ids, scores, fallback, none = model.recommend_for_history(["unknown"], n=3,
                                                              return_fallback=True, explain=1)
    assert fallback and none is None


def test_to_dict_is_json():
    model = fitted("svdpp")
    why = model.explain(model.user_index_.ids[0], model.item_index_.ids[0], n=2)
    text = json.dumps(why.to_dict())
    back = json.loads(text)
    assert back["score"] == pytest.approx(why.score)
    assert [c["item"] for c in back["contributions"]] == [c.item for c in why.contributions]
    strings = matfact.Interactions.from_arrays(["a", "a", "b", "b"], ["x", "y", "x", "z"],
                                               [5, 1, 4, 2], rating_scale=(1, 5, 1))
    small = ALS(n_factors=2, max_iter=2, random_state=0).fit(strings, progress=False)
    data = small.explain("a", "z").to_dict()
    assert data["user"] == "a" and data["item"] == "z"
    json.dumps(data)


def test_clear_errors():
    model = fitted("als")
    with pytest.raises(UnknownIdError, match="user"):
        model.explain(10_000, model.item_index_.ids[0])
    with pytest.raises(UnknownIdError, match="item"):
        model.explain(model.user_index_.ids[0], 10_000)
    with pytest.raises(ParameterError, match="one user"):
        model.explain([model.user_index_.ids[0], model.user_index_.ids[1]], 0)
    with pytest.raises(ParameterError, match="explain"):
        model.recommend([model.user_index_.ids[0]], n=2, explain=0)
    popularity = Popularity().fit(_data(), progress=False)
    with pytest.raises(ParameterError, match="no explanation"):
        popularity.explain(popularity.user_index_.ids[0], popularity.item_index_.ids[0])


def test_matches_implicit_explain():
    """The same contributions as implicit's AlternatingLeastSquares.explain (issue 22).

    implicit reads the matrix values as the confidences themselves (c, not 1 + αw) and
    adds ``regularization`` once: given our confidences and our total ridge λ n^ν, its
    ``explain`` must return our s_ij c_j.
    """
    pytest.importorskip("implicit", reason="implicit (the bench extra) is not installed")
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    model = fitted("implicit_als")
    reference = AlternatingLeastSquares(factors=model.n_factors, alpha=1.0)
    reference.item_factors = model.item_factors_.astype(np.float32)
    reference.user_factors = model.user_factors_.astype(np.float32)
    for user in (0, 3, 11):
        codes, weights = model.history(user)
        confidence = model.confidence_of(weights).astype(np.float64)
        reference.regularization = model.reg * len(codes) ** model.reg_exponent
        reference._YtY = None
        row = sp.csr_matrix((confidence, codes, [0, len(codes)]), shape=(1, model.n_items_))
        for item in (0, 5, 17):
            total, top, _ = reference.explain(0, row, item, N=len(codes))
            ours = model.explain(model.user_index_.ids[user], model.item_index_.ids[item],
                                 n=len(codes))
            assert ours.score == pytest.approx(total, rel=1e-4, abs=1e-6)
            theirs = {model.item_index_.ids[i]: s for i, s in top}
            for c in ours.contributions:
                assert c.contribution == pytest.approx(theirs[c.item], rel=1e-4, abs=1e-6)


def _featured(seed: int = 3, implicit: bool = False):
    """_data with user ages and item genres as side features (and the two frames)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    base = _data(seed, implicit=implicit)
    genres = pd.DataFrame({"genre": rng.choice(["x", "y", "z"], N_ITEMS)},
                          index=base.item_index.ids)
    ages = pd.DataFrame({"age": rng.choice(["young", "old"], N_USERS)},
                        index=base.user_index.ids)
    codes = base.to_scipy().tocoo()
    users, items = base.user_index.ids[codes.row], base.item_index.ids[codes.col]
    if implicit:
        data = matfact.Interactions.from_arrays(users, items, weights=codes.data,
                                                user_features=ages, item_features=genres)
    else:
        data = matfact.Interactions.from_arrays(users, items, codes.data,
                                                rating_scale=(1, 5, 1), user_features=ages,
                                                item_features=genres)
    return data, ages, genres


_HYBRIDS: dict[str, tuple] = {}


def featured_hybrid(loss: str = "squared"):
    """A fitted HybridMF with user and item features (fresh copy: tests may change it)."""
    import copy

    if loss not in _HYBRIDS:
        data, ages, genres = _featured(implicit=loss != "squared")
        model = HybridMF(n_factors=3, max_iter=5, loss=loss, random_state=0).fit(
            data, progress=False)
        _HYBRIDS[loss] = (model, ages, genres)
    model, ages, genres = _HYBRIDS[loss]
    return copy.deepcopy(model), ages, genres


def _feature_names_of(ages, genres) -> set[str]:
    return ({"user id", "item id"} | {f"user: age={a}" for a in set(ages["age"])}
            | {f"item: genre={g}" for g in set(genres["genre"])})


@pytest.mark.parametrize("loss", ["squared", "warp"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hybrid_explain_splits_the_score_by_feature(loss, data):
    """Issue 22: for a user placed by features, explain() (no frames) splits the score the
    model gives into the user's and the item's features, and the parts sum to predict."""
    model, ages, genres = _HYBRIDS.get(loss) or featured_hybrid(loss)
    user = data.draw(st.sampled_from(model.user_index_.ids.tolist()), label="user")
    items = data.draw(st.lists(st.sampled_from(model.item_index_.ids.tolist()), min_size=1,
                               max_size=4), label="items")
    predicted = model.predict([user] * len(items), items, clip=False)
    for item, score, why in zip(items, predicted, model.explain(user, items, n=10),
                                strict=True):
        assert why.exact and not why.folded_in and why.vector_gap is None
        assert why.user == user and why.item == item
        assert why.score == pytest.approx(float(score), rel=1e-6, abs=1e-7)
        assert abs(why.total() - float(score)) <= EXACT_TOLERANCE * max(1.0, abs(score))
        assert all(c.feature for c in why.contributions) and why.rest == 0.0
        names = [c.item for c in why.contributions]
        # The user's id and age, the item's id and genre: readable, each once.
        assert sorted(names) == sorted({"user id", "item id",
                                        f"user: age={ages.loc[user, 'age']}",
                                        f"item: genre={genres.loc[item, 'genre']}"})
        assert set(names) <= _feature_names_of(ages, genres)


def test_hybrid_feature_shares_equal_their_closed_form():
    """User feature f: x_f (e_f + ½ E_f·q_i); item feature g: y_g (c_g + ½ F_g·p_u), with
    x, y the normalized rows computed here from the frames (not the kept rows)."""
    from matfact.models.explain import explain_features

    model, ages, genres = featured_hybrid()
    u, i = 2, 4
    user, item = model.user_index_.ids[u], model.item_index_.ids[i]
    why = model.explain(user, item, n=10)
    x = model._side_matrix("user", ages, model.user_index_.ids[u:u + 1], np.array([u]))
    y = model._side_matrix("item", genres, model.item_index_.ids[i:i + 1], np.array([i]))
    assert x.nnz == 2 and y.nnz == 2  # id + age, id + genre, each 1/2 after normalizing
    p = model.user_factors_[u].astype(float)
    q = model.item_factors_[i].astype(float)
    expected = {}
    for side, row, emb, bias, other in (
            ("user", x, model.user_embeddings_, model.user_feature_bias_, q),
            ("item", y, model.item_embeddings_, model.item_feature_bias_, p)):
        n_ids = getattr(model, f"n_{side}_ids_")
        labels = model._encoder(side).feature_names_
        for col, weight in zip(row.indices, row.data, strict=True):
            name = f"{side} id" if col < n_ids else f"{side}: {labels[col - n_ids]}"
            expected[name] = weight * (bias[col] + 0.5 * emb[col].astype(float) @ other)
    got = {c.item: c.contribution for c in why.contributions}
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert [c.value for c in why.contributions] == pytest.approx([0.5] * 4)
    assert why.other_terms == {"global mean": pytest.approx(model.global_mean_)}
    # The item's features carry its bias and half the interaction.
    assert sum(v for k, v in got.items() if k.startswith("item")) == pytest.approx(
        float(model.item_bias_[i]) + 0.5 * p @ q, rel=1e-5)
    # explain_features: the kept rows by default, the same split from the frames.
    assert explain_features(model, user, item, n=10) == why
    framed = explain_features(model, user, item, user_features=ages, item_features=genres,
                              n=10)
    assert [c.item for c in framed.contributions] == [c.item for c in why.contributions]
    assert [c.contribution for c in framed.contributions] == pytest.approx(
        [c.contribution for c in why.contributions], rel=1e-6)
    with pytest.raises(ParameterError, match="HybridMF"):
        explain_features(fitted("als"), user, item)


def test_hybrid_file_without_kept_rows_explains_by_history_and_says_so():
    """A model file from before the rows were kept: the history split, with a method that
    points to explain_features; explain_features without frames counts identities only."""
    from matfact.models.explain import explain_features

    model, ages, genres = featured_hybrid()
    del model.user_feature_rows_, model.item_feature_rows_
    user, item = model.user_index_.ids[1], model.item_index_.ids[2]
    why = model.explain(user, item)
    assert why.folded_in and not any(c.feature for c in why.contributions)
    assert "explain_features" in why.method and "item bias" in why.other_terms
    _sums(why)
    partial = explain_features(model, user, item)
    assert not partial.exact and "unexplained" in partial.other_terms
    assert partial.total() == pytest.approx(partial.score, abs=1e-9)
    full = explain_features(model, user, item, user_features=ages, item_features=genres)
    assert full.exact


def test_hybrid_user_placed_from_history_is_split_by_history_items():
    """update_users (and apply_ratings) place a user by the fold-in, which reads no user
    feature: their row is emptied, explain() splits by history items (exact) and the
    item's bias by the item's features."""
    model, ages, genres = featured_hybrid()
    codes, values = model.history(5)
    user = model.user_index_.ids[5]
    model.update_users([user], [(model.item_index_.ids[codes], values)])
    assert model.user_feature_rows_[5].nnz == 0 and model.user_feature_rows_[4].nnz == 2
    item = model.item_index_.ids[7]
    why = model.explain(user, item, n=len(codes))
    assert why.exact and why.folded_in and why.vector_gap == pytest.approx(0, abs=1e-5)
    assert why.score == pytest.approx(float(model.predict(user, item, clip=False)[0]),
                                      rel=1e-5)
    assert sorted(c.item for c in why.contributions) == sorted(model.item_index_.ids[codes])
    assert not any(c.feature for c in why.contributions)
    genre = f"item: genre={genres.loc[item, 'genre']}"
    assert "item bias" not in why.other_terms and {"item id", genre} <= set(why.other_terms)
    assert why.other_terms["item id"] + why.other_terms[genre] == pytest.approx(
        float(model.item_bias_[7]), rel=1e-5)
    assert "features are not in this score" in why.method
    _sums(why)
    # An anonymous history too: history items, the item's bias by feature.
    _, _, listed = model.recommend_for_history(list(model.item_index_.ids[:3]), [5, 1, 4],
                                               n=2, explain=3)
    for e in listed:
        assert e.exact and {c.item for c in e.contributions} <= set(model.item_index_.ids[:3])
        assert "item bias" not in e.other_terms
        _sums(e)


def test_hybrid_new_users_and_items_keep_their_feature_rows():
    """add_users / add_items by features: rows without identity, split by feature; an item
    added from its first ratings only is one term (its vector is no composition)."""
    import pandas as pd

    model, ages, genres = featured_hybrid()
    model.add_users([1000],
                    pd.DataFrame({"age": ["old"]}, index=[1000]))
    model.add_items([500, 501], histories=[((), ()), ([model.user_index_.ids[0]], [5])],
                    features=pd.DataFrame({"genre": ["y"]}, index=[500]))
    assert model.user_feature_rows_.shape == (N_USERS + 1, model.user_embeddings_.shape[0])
    assert model.item_feature_rows_.shape == (N_ITEMS + 2, model.item_embeddings_.shape[0])
    for user in (1000, model.user_index_.ids[0]):
        predicted = model.predict([user] * 3, [500, 501, model.item_index_.ids[0]], clip=False)
        whys = model.explain(user, [500, 501, model.item_index_.ids[0]], n=10)
        for why, score in zip(whys, predicted, strict=True):
            assert why.exact and not why.folded_in
            assert why.score == pytest.approx(float(score), rel=1e-6)
            _sums(why)
        new_item, rated_item, _ = ({c.item for c in w.contributions} for w in whys)
        assert "item: genre=y" in new_item and "item id" not in new_item
        assert "item vector (from its ratings)" in whys[1].other_terms
        assert not any(name.startswith("item") for name in rated_item)
        if user == 1000:
            assert {"user: age=old"} == {n for n in new_item if n.startswith("user")}


def test_hybrid_explanations_survive_save_and_load(tmp_path):
    import pandas as pd

    model, _, _ = featured_hybrid()
    model.add_items([500], features=pd.DataFrame({"genre": ["z"]}, index=[500]))
    user = model.user_index_.ids[3]
    items = [500, *model.item_index_.ids[:3].tolist()]
    model.save(tmp_path / "hybrid.zip")
    loaded = matfact.load(tmp_path / "hybrid.zip")
    assert (loaded.item_feature_rows_ != model.item_feature_rows_).nnz == 0
    assert loaded.explain(user, items, n=3) == model.explain(user, items, n=3)


def test_hybrid_because_list_and_cli_name_features(capsys, tmp_path):
    """because_list marks features (no title); matfact recommend --explain on a HybridMF
    trained with --item-features prints "because of item: genre=..."."""
    from matfact.cli import main
    from matfact.models.explain import because_list

    model, _, _ = featured_hybrid()
    why = model.explain(model.user_index_.ids[1], model.item_index_.ids[2], n=3)
    listed = because_list(why, np.array([f"t{i}" for i in range(N_ITEMS)]),
                          index=model.item_index_)
    assert [b["item"] for b in listed] == [c.item for c in why.contributions]
    assert all(b["title"] is None and b["feature"] is True for b in listed)
    assert all(d["feature"] for d in why.to_dict()["contributions"])
    data, _, genres = _featured(4)
    codes = data.to_scipy().tocoo()
    ratings, features = tmp_path / "ratings.csv", tmp_path / "genres.csv"
    import pandas as pd

    pd.DataFrame({"user": data.user_index.ids[codes.row], "item": data.item_index.ids[codes.col],
                  "rating": codes.data}).to_csv(ratings, index=False)
    genres.rename_axis("item").reset_index().to_csv(features, index=False)
    target = tmp_path / "hybrid.zip"
    assert main(["-q", "train", "--data", str(ratings), "--item-features", str(features),
                 "--model", "hybrid_mf", "--param", "n_factors=3", "--param", "max_iter=3",
                 "--out", str(target)]) == 0
    capsys.readouterr()
    assert main(["recommend", "--model", str(target), "--user", "3", "-n", "2",
                 "--explain", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("because of ") == 2 and "item: genre=" in out and "item id (" in out
    assert "because you rated" not in out and "in brackets: (contribution" in out
    assert main(["recommend", "--model", str(target), "--user", "3", "-n", "1",
                 "--explain", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]["items"][0]
    loaded = matfact.load(target)
    expected = loaded.explain(3, row["item"], n=2)
    assert [b["item"] for b in row["because"]] == [c.item for c in expected.contributions]
    assert all(b["feature"] for b in row["because"]) and row["folded_in"] is False


def test_because_list_is_the_listed_contributions_with_titles():
    """because_list (the CLI's and the service's JSON): one dict per listed item, with
    titles looked up by raw id in a mapping or by code in the model's title array."""
    from matfact.models.explain import because_list

    strings = matfact.Interactions.from_arrays(["a", "a", "a", "b", "b"],
                                               ["x", "y", "w", "x", "z"],
                                               [5, 1, 3, 4, 2], rating_scale=(1, 5, 1))
    model = ALS(n_factors=2, max_iter=2, random_state=0).fit(strings, progress=False)
    why = model.explain("a", "z", n=2)
    plain = because_list(why)
    assert plain == [{"item": c.item, "title": None, "contribution": c.contribution,
                      "value": c.value} for c in why.contributions]
    assert len(plain) == 2 and json.loads(json.dumps(plain)) == plain
    # An array in code order (ids sorted: w, x, y, z), "" read as no title.
    titles = np.array(["Walk", "", "Yes", "Zed"])
    by_code = {"w": "Walk", "x": None, "y": "Yes"}
    assert [b["title"] for b in because_list(why, titles, index=model.item_index_)] == \
        [by_code[c.item] for c in why.contributions]
    assert [b["title"] for b in because_list(why, {"x": "Ex"})] == \
        ["Ex" if c.item == "x" else None for c in why.contributions]
    with pytest.raises(ParameterError, match="index=model.item_index_"):
        because_list(why, titles)
    # Integer ids stay int (JSON numbers), numpy scalars included.
    ints = fitted("als")
    item = ints.item_index_.ids[3]
    listed = because_list(ints.explain(ints.user_index_.ids[0], item, n=3))
    assert all(type(b["item"]) is int for b in listed)


def test_hybrid_service_because_names_features_then_the_ratings_just_posted():
    """The service's because: features for a user placed by features; once they post a
    rating the fold-in places them from their history, and their ratings explain."""
    from matfact.serving.service import ModelService
    from matfact.serving.store import Rating

    model, _, _ = featured_hybrid()
    service = ModelService(model)
    user = int(model.user_index_.ids[7])
    before = service.recommend(user, 3, explain=2)
    assert before["because_exact"] == [True] * 3
    assert all(b["feature"] for because in before["because"] for b in because)
    seen = set(model.item_index_.ids[model.history(7)[0]].tolist())
    new_item = next(i for i in model.item_index_.ids.tolist() if i not in seen)
    service.apply([Rating(user, new_item, 5.0)])
    after = service.recommend(user, 3, explain=20)
    assert after["because_exact"] == [True] * 3
    for because in after["because"]:
        assert not any(b.get("feature") for b in because)
        assert {b["item"]: b["value"] for b in because}[new_item] == 5.0
