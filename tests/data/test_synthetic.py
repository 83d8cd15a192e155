"""Tests of matfact.data.synthetic.make_synthetic."""

from __future__ import annotations

import numpy as np
import pytest

from matfact.data import synthetic
from matfact.data.interactions import Interactions
from matfact.data.synthetic import SyntheticTruth, make_synthetic
from matfact.exceptions import ParameterError


def _keys(data: Interactions) -> np.ndarray:
    return data.user_codes.astype(np.int64) * data.n_items + data.item_codes


def _top_share(data: Interactions, fraction: float = 0.01) -> float:
    counts = np.sort(np.bincount(data.item_codes, minlength=data.n_items))[::-1]
    return counts[: max(1, int(fraction * data.n_items))].sum() / data.nnz


def test_exact_number_of_distinct_pairs():
    data = make_synthetic(300, 200, 5_000, rank=4)
    assert isinstance(data, Interactions)
    assert data.nnz == 5_000
    assert len(np.unique(_keys(data))) == 5_000
    assert data.shape == (300, 200)
    np.testing.assert_array_equal(data.user_ids, np.arange(300))
    np.testing.assert_array_equal(data.item_ids, np.arange(200))


def test_explicit_ratings_and_timestamps():
    data = make_synthetic(300, 200, 5_000, rank=4)
    assert not data.is_implicit
    assert data.rating_scale == (1.0, 5.0)
    assert data.ratings.dtype == np.float32
    assert data.ratings.min() >= 1 and data.ratings.max() <= 5
    assert 2.5 < data.ratings.mean() < 4.5 and data.ratings.std() > 0.5
    assert np.all(np.diff(data.timestamps) > 0)  # temporal splits follow the drawing order


def test_filling_half_the_matrix_takes_several_rounds():
    # Steep skews on a small matrix: most draws repeat, so the top-up rounds must work.
    data = make_synthetic(40, 50, 1_000, user_skew=1.5, item_skew=2.0, random_state=3)
    assert data.nnz == 1_000 and len(np.unique(_keys(data))) == 1_000


def test_same_seed_same_data_other_seed_other_data():
    first = make_synthetic(200, 100, 2_000, rank=4, random_state=7)
    again = make_synthetic(200, 100, 2_000, rank=4, random_state=7)
    other = make_synthetic(200, 100, 2_000, rank=4, random_state=8)
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.users, other.users)
    assert not np.allclose(first.ratings, other.ratings)


def test_accepts_a_generator():
    data = make_synthetic(50, 40, 300, rank=2, random_state=np.random.default_rng(1))
    assert data.nnz == 300


def test_popularity_is_skewed_and_not_by_id():
    data = make_synthetic(5_000, 2_000, 50_000, rank=4)
    # Under item_skew=0.8 the top 1% of items take about a quarter of the draws (1% if uniform).
    assert _top_share(data) > 0.10
    counts = np.bincount(data.item_codes, minlength=data.n_items)
    top = np.argsort(counts)[::-1][:20]
    assert top.mean() > 200  # popular ids are spread over the id range, not the low ids
    uniform = make_synthetic(5_000, 2_000, 50_000, rank=4, user_skew=0, item_skew=0)
    assert _top_share(uniform) < 0.02
    user_counts = np.sort(np.bincount(data.user_codes))[::-1]
    assert user_counts[:50].sum() / data.nnz > 0.02  # top 1% of users: more than 1%


def test_implicit_weights_are_the_ratings():
    explicit = make_synthetic(200, 100, 2_000, rank=4, random_state=5)
    implicit = make_synthetic(200, 100, 2_000, rank=4, random_state=5, implicit=True)
    assert implicit.is_implicit and implicit.ratings is None and implicit.has_weights
    assert implicit.rating_scale is None
    np.testing.assert_array_equal(implicit.weights, explicit.ratings)
    np.testing.assert_array_equal(implicit.users, explicit.users)


def test_matches_what_from_arrays_builds():
    data = make_synthetic(60, 30, 900, rank=3, random_state=2)
    rebuilt = Interactions.from_arrays(data.users, data.items, data.ratings,
                                       timestamps=data.timestamps, rating_scale=(1, 5))
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(data, name), getattr(rebuilt, name))
    assert data.rating_scale == rebuilt.rating_scale
    dense = data.to_scipy().toarray()
    np.testing.assert_array_equal(dense[data.users, data.items], data.ratings)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_users": 0}, "n_users"),
    ({"n_users": 10.0}, "n_users"),
    ({"n_users": True}, "n_users"),
    ({"n_items": -5}, "n_items"),
    ({"n_ratings": 0}, "n_ratings"),
    ({"n_ratings": "100"}, "n_ratings"),
    ({"rank": 0}, "rank"),
    ({"noise": -0.1}, "noise"),
    ({"noise": float("nan")}, "noise"),
    ({"user_skew": -1.0}, "user_skew"),
    ({"item_skew": float("inf")}, "item_skew"),
    ({"n_ratings": 100 * 50 + 1}, "n_ratings"),
    ({"n_ratings": 100 * 50 // 2 + 1}, "n_ratings"),
])
def test_invalid_parameters(kwargs, name):
    args = {"n_users": 100, "n_items": 50, "n_ratings": 1_000, **kwargs}
    with pytest.raises(ParameterError, match=name):
        make_synthetic(**args)


def test_planted_truth_explains_the_ratings():
    data, truth = make_synthetic(500, 400, 20_000, rank=8, noise=0.3, return_truth=True)
    assert isinstance(truth, SyntheticTruth)
    assert truth.user_factors.shape == (500, 8) and truth.item_factors.shape == (400, 8)
    assert truth.user_bias.shape == (500,) and truth.global_mean == 3.5
    scores = truth.predict(data.users, data.items)
    assert np.corrcoef(scores, data.ratings)[0, 1] > 0.9
    # Without noise a rating is exactly the clipped score.
    clean, clean_truth = make_synthetic(500, 400, 20_000, rank=8, noise=0, return_truth=True)
    np.testing.assert_allclose(clean.ratings,
                               np.clip(clean_truth.predict(clean.users, clean.items), 1, 5),
                               rtol=1e-6)


@pytest.mark.parametrize("rank", [1, 8, 128])
def test_interaction_term_has_the_same_spread_at_any_rank(rank):
    _, truth = make_synthetic(2_000, 1_000, 5_000, rank=rank, return_truth=True)
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 2_000, 20_000), rng.integers(0, 1_000, 20_000)
    dots = np.einsum("ij,ij->i", truth.user_factors[users], truth.item_factors[items])
    assert 0.7 < dots.std() < 1.1


def test_scores_in_chunks_equal_scores_at_once(monkeypatch):
    data, truth = make_synthetic(80, 60, 1_000, rank=5, return_truth=True)
    expected = (truth.global_mean + truth.user_bias[data.users] + truth.item_bias[data.items]
                + (truth.user_factors[data.users] * truth.item_factors[data.items]).sum(axis=1))
    monkeypatch.setattr(synthetic, "_CHUNK_VALUES", 17)  # 3 rows per chunk, with a remainder
    np.testing.assert_allclose(truth.predict(data.users, data.items), expected, rtol=1e-5)
    with pytest.raises(ParameterError):
        truth.predict([80], [0])


def test_truth_arrays_are_read_only():
    _, truth = make_synthetic(20, 10, 50, rank=2, return_truth=True)
    with pytest.raises(ValueError):
        truth.user_factors[0, 0] = 1.0


@pytest.mark.slow
def test_ten_million_ratings():
    # The benchmark scale: exact count, distinct pairs (its speed is measured in benchmarks/).
    data = make_synthetic(100_000, 20_000, 10_000_000)
    assert data.nnz == 10_000_000
    keys = data.user_codes.astype(np.int64) * data.n_items + data.item_codes
    assert len(np.unique(keys)) == data.nnz
