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


def test_hybrid_features_split_the_trained_score():
    """User feature f: x_f (e_f + ½ E_f·q_i); item feature g: y_g (c_g + ½ F_g·p_u)."""
    import pandas as pd

    from matfact.models.explain import explain_features

    rng = np.random.default_rng(3)
    base = _data(3)
    genres = pd.DataFrame({"genre": rng.choice(["x", "y", "z"], N_ITEMS)},
                          index=base.item_index.ids)
    ages = pd.DataFrame({"age": rng.choice(["young", "old"], N_USERS)},
                        index=base.user_index.ids)
    codes = base.to_scipy().tocoo()
    data = matfact.Interactions.from_arrays(
        base.user_index.ids[codes.row], base.item_index.ids[codes.col], codes.data,
        rating_scale=(1, 5, 1), user_features=ages, item_features=genres)
    model = HybridMF(n_factors=3, max_iter=5, random_state=0).fit(data, progress=False)
    user, item = data.user_index.ids[2], data.item_index.ids[4]
    why = explain_features(model, user, item, user_features=ages, item_features=genres, n=10)
    assert why.exact and not why.folded_in and why.rest == 0.0
    assert why.score == pytest.approx(float(model.predict(user, item, clip=False)[0]))
    _sums(why)
    names = {c.item for c in why.contributions}
    assert {"user id", "item id", f"user: age={ages.loc[user, 'age']}",
            f"item: genre={genres.loc[item, 'genre']}"} <= names
    # Halves of the interaction: the item features' shares less their biases sum to ½ p·q.
    p = model.user_factors_[model.user_index_.code(user)].astype(float)
    q = model.item_factors_[model.item_index_.code(item)].astype(float)
    item_side = sum(c.contribution for c in why.contributions if c.item.startswith("item"))
    assert item_side == pytest.approx(float(model.item_bias_[model.item_index_.code(item)])
                                      + 0.5 * p @ q, rel=1e-4, abs=1e-6)
    # Without the frames only the identity features count: the rest is "unexplained".
    partial = explain_features(model, user, item)
    assert not partial.exact and "unexplained" in partial.other_terms
    assert partial.total() == pytest.approx(partial.score, abs=1e-9)
    with pytest.raises(ParameterError, match="HybridMF"):
        explain_features(fitted("als"), user, item)


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


@pytest.mark.parametrize("loss", ["squared", "bpr"])
def test_hybrid_explain_says_where_its_features_are(loss):
    """The model keeps encoders, not feature rows: explain() cannot split by feature, and
    its method says so (pointing to explain_features) instead of leaving them out silently."""
    import pandas as pd

    base = _data(5)
    genres = pd.DataFrame({"genre": np.random.default_rng(5).choice(["x", "y"], N_ITEMS)},
                          index=base.item_index.ids)
    codes = base.to_scipy().tocoo()
    with_features = matfact.Interactions.from_arrays(
        base.user_index.ids[codes.row], base.item_index.ids[codes.col], codes.data,
        rating_scale=(1, 5, 1), item_features=genres)
    model = HybridMF(n_factors=3, max_iter=3, loss=loss, random_state=0).fit(
        with_features, progress=False)
    user, item = model.user_index_.ids[1], model.item_index_.ids[2]
    why = model.explain(user, item)
    assert "explain_features" in why.method and "item bias" in why.method
    assert ("not read by the fold-in" in why.method) == (loss == "squared")
    _sums(why)
    ids, _, listed = model.recommend([user], n=2, explain=1)
    assert all("explain_features" in e.method for e in listed[0])
    # Identity features only: nothing is left out, nothing to say.
    assert "explain_features" not in fitted("hybrid").explain(user, item).method
    # because_list of a feature split: feature names are not item ids, so no titles.
    from matfact.models.explain import because_list, explain_features

    split = explain_features(model, user, item, item_features=genres, n=3)
    listed = because_list(split, np.array([f"t{i}" for i in range(N_ITEMS)]),
                          index=model.item_index_)
    assert [b["item"] for b in listed] == [c.item for c in split.contributions]
    assert all(b["title"] is None for b in listed)
