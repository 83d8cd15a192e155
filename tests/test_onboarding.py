"""matfact.onboarding: which items to ask a newcomer, by hand, against SciPy and brute force."""

from __future__ import annotations

import math
from itertools import islice

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

import matfact
from matfact import Interactions
from matfact.exceptions import NotFittedError, ParameterError
from matfact.onboarding import (
    _entropy,
    _popularity,
    item_order,
    select_items,
    user_prior,
)

# ---------------------------------------------------------------------------------- toy data
# Users 1-4 rate items 10..60:
#   item 10: 5 5 5 5   → n = 4, H = 0
#   item 20: 1 3 5     → n = 3, H = log2 3 = 1.585, ln 3 · H = 1.741
#   item 30: 2 4       → n = 2, H = 1,              ln 2 · H = 0.693
#   item 40: 4         → n = 1, H = 0
#   item 50: 1 1 2 2   → n = 4, H = 1,              ln 4 · H = 1.386
#   item 60: 1 2 3 3   → n = 4, H = 1.5,            ln 4 · H = 2.079
TOY = [(1, 10, 5), (2, 10, 5), (3, 10, 5), (4, 10, 5),
       (1, 20, 1), (2, 20, 3), (3, 20, 5),
       (1, 30, 2), (2, 30, 4),
       (3, 40, 4),
       (1, 50, 1), (2, 50, 1), (3, 50, 2), (4, 50, 2),
       (1, 60, 1), (2, 60, 2), (3, 60, 3), (4, 60, 3)]


@pytest.fixture(scope="module")
def toy_model():
    users, items, ratings = zip(*TOY, strict=True)
    data = Interactions.from_arrays(users, items, ratings, rating_scale=(1, 5))
    return matfact.Baseline().fit(data, progress=False)


def test_popularity_order_by_hand(toy_model):
    # Counts 4, 3, 2, 1, 4, 4: the three items rated 4 times tie and keep id order.
    assert select_items(toy_model, 6, "popularity").tolist() == [10, 50, 60, 20, 30, 40]
    assert select_items(toy_model, 2).tolist() == [10, 50]


def test_entropy_values_and_order_by_hand(toy_model):
    expected = [0.0, math.log2(3), 1.0, 0.0, 1.0, 1.5]
    np.testing.assert_allclose(_entropy(toy_model), expected)
    # 30 and 50 tie at 1 bit: the more popular 50 first; 10 and 40 tie at 0: 10 first.
    assert select_items(toy_model, 6, "entropy").tolist() == [20, 60, 50, 30, 10, 40]


def test_log_pop_entropy_order_by_hand(toy_model):
    # ln(n)·H = 0, 1.741, 0.693, 0, 1.386, 2.079.
    assert select_items(toy_model, 6, "log_pop_entropy").tolist() == [60, 20, 50, 30, 10, 40]


def test_random_is_seeded_permutation(toy_model):
    first = select_items(toy_model, 6, "random", random_state=3)
    assert sorted(first.tolist()) == [10, 20, 30, 40, 50, 60]
    assert select_items(toy_model, 6, "random", random_state=3).tolist() == first.tolist()
    ids = toy_model.item_index_.ids
    assert first.tolist() == ids[np.random.default_rng(3).permutation(6)].tolist()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 5), st.sampled_from([1, 2, 3, 4, 5])),
                min_size=1, max_size=60))
def test_statistics_match_scipy(rows):
    users, items, ratings = zip(*rows, strict=True)
    data = Interactions.from_arrays(users, items, ratings, duplicates="last",
                                    rating_scale=(1, 5))
    model = matfact.Baseline().fit(data, progress=False)
    dense = model.seen_.toarray()
    rated = dense > 0
    np.testing.assert_array_equal(_popularity(model), rated.sum(axis=0))
    reference = [scipy.stats.entropy(np.unique(dense[rated[:, j], j], return_counts=True)[1],
                                     base=2) if rated[:, j].any() else 0.0
                 for j in range(dense.shape[1])]
    np.testing.assert_allclose(_entropy(model), reference, atol=1e-12)


# ---------------------------------------------------------------------------- factor coverage
def planted_model(item_factors, popularity, user_factors):
    """A BiasedMF whose factors are replaced by planted ones (biases zeroed)."""
    n_items = len(item_factors)
    n_users = max(popularity)
    rows = [(u, j, 3.0) for j, count in enumerate(popularity) for u in range(count)]
    users, items, ratings = zip(*rows, strict=True)
    data = Interactions.from_arrays(users, items, ratings, rating_scale=(1, 5))
    model = matfact.BiasedMF(n_factors=item_factors.shape[1], max_iter=1, random_state=0)
    model.fit(data, progress=False)
    assert model.n_items_ == n_items and model.n_users_ == n_users
    model.item_factors_ = np.asarray(item_factors, dtype=np.float32)
    model.user_factors_ = np.asarray(user_factors, dtype=np.float32)[:n_users]
    model.user_bias_ = np.zeros(n_users, dtype=np.float32)
    model.item_bias_ = np.zeros(n_items, dtype=np.float32)
    return model


def test_factor_coverage_spreads_over_planted_directions():
    # Items 0-3 point along e1, item 4 along e2, item 5 along e3, all rated by every user:
    # popularity keeps id order (four collinear items first), the D-optimal list takes one
    # item per direction before returning to e1.
    e = np.eye(3)
    factors = np.array([e[0], e[0], e[0], e[0], e[1], e[2]])
    signs = np.array([[s1, s2, s3] for s1 in (-1, 1) for s2 in (-1, 1) for s3 in (-1, 1)])
    model = planted_model(factors, [8] * 6, signs)
    assert select_items(model, 3, "popularity").tolist() == [0, 1, 2]
    assert select_items(model, 3, "factor_coverage").tolist() == [0, 4, 5]


def test_factor_coverage_weights_directions_by_who_can_answer():
    # Two items along e1: item 0 is longer (more informative if answered) but only a third
    # of the users rated it; item 1, rated by all, comes first (π·‖x‖²: 1/3 against 0.81).
    factors = np.array([[1.0, 0.0], [0.9, 0.0], [0.0, 1.0]])
    model = planted_model(factors, [2, 6, 6], [[1, 1], [-1, 1], [1, -1], [-1, -1], [1, 0],
                                                [0, 1]])
    order = select_items(model, 3, "factor_coverage").tolist()
    assert order.index(1) < order.index(0)


def test_factor_coverage_matches_brute_force_log_det():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(12, 3))
    popularity = rng.integers(1, 9, size=12).tolist()
    model = planted_model(factors, popularity, rng.normal(size=(8, 3)))
    # Reference: the log-det objective evaluated from scratch for every candidate.
    x = np.hstack([factors, np.ones((12, 1))])
    z = np.hstack([model.user_factors_, model.user_bias_[:, None]]).astype(np.float64)
    prior = np.cov(z, rowvar=False)
    prior += np.eye(4) * 1e-6 * np.trace(prior) / 4
    seen = model.seen_.tocoo()
    users, items = model.user_index_.ids[seen.row], model.item_index_.ids[seen.col]
    sigma2 = np.mean((seen.data - model.predict(users, items, clip=False)) ** 2)
    weight = np.asarray(popularity) / model.n_users_ / sigma2
    precision, chosen = np.linalg.inv(prior), []
    for _ in range(12):
        gains = [np.linalg.slogdet(precision + weight[j] * np.outer(x[j], x[j]))[1]
                 if j not in chosen else -np.inf for j in range(12)]
        j = int(np.argmax(gains))
        chosen.append(j)
        precision = precision + weight[j] * np.outer(x[j], x[j])
    assert list(islice(item_order(model, "factor_coverage"), 12)) == chosen


# ------------------------------------------------------------------------------ bad input
def test_bad_input_gives_clear_errors(toy_model):
    with pytest.raises(ParameterError, match="strategy must be one of"):
        select_items(toy_model, 3, "clairvoyant")
    for n in (0, 7, -1, 2.5, True):
        with pytest.raises(ParameterError, match=r"n must be an integer in \[1, 6\]"):
            select_items(toy_model, n)
    with pytest.raises(NotFittedError, match="not fitted"):
        select_items(matfact.BiasedMF(), 3)
    with pytest.raises(ParameterError, match="needs a model with item factors.*Baseline"):
        select_items(toy_model, 3, "factor_coverage")
    implicit = matfact.Popularity().fit(Interactions.from_arrays([1, 2], [1, 2]), progress=False)
    with pytest.raises(ParameterError, match="entropy strategies need a model fitted on ratings"):
        select_items(implicit, 1, "entropy")
    with pytest.raises(ParameterError, match="needs a model with item factors.*Popularity"):
        select_items(implicit, 1, "factor_coverage")
    with pytest.raises(ParameterError, match="strategy must be one of"):
        item_order(toy_model, "clairvoyant")
    with pytest.raises(ParameterError, match="newcomer prior needs a model with item factors"):
        user_prior(toy_model)


@pytest.mark.parametrize("strategy", ["popularity", "entropy", "log_pop_entropy", "random"])
def test_item_order_is_select_items_in_codes(toy_model, strategy):
    codes = list(item_order(toy_model, strategy, random_state=4))
    assert sorted(codes) == list(range(toy_model.n_items_))
    ids = select_items(toy_model, toy_model.n_items_, strategy, random_state=4)
    assert toy_model.item_index_.ids[codes].tolist() == ids.tolist()


def test_simulation_is_reexported():
    # The simulation lives in matfact.evaluation.onboarding; the old import path still works.
    import matfact.evaluation.onboarding as simulation
    import matfact.onboarding as selection

    assert selection.simulate_onboarding is simulation.simulate_onboarding
    assert selection.OnboardingResult is simulation.OnboardingResult
