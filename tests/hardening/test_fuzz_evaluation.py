"""Generated edge cases for splits, metrics and evaluation: a result or a matfact error.

Splits: every strategy with test sizes at and past the edges (0, 1, negative,
NaN, tiny data, one user, one item, no timestamps), ``n`` and ``n_splits`` out
of range; the parts must partition the data. Metrics: recommendation lists of
any shape and dtype (negative, out-of-range and padded ids, k from -1 to past
the list), relevance as sparse matrices or ragged lists; values must lie in
[0, 1]. ``evaluate``/``evaluate_ranking`` on a fitted model with generated test
sets and metric names.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import matfact
from matfact import Interactions
from matfact.evaluation import metrics as M
from tests.hardening._cases import check, profiles

EXAMPLES = {"normal": 120, "slow": 1200}


def fuzz_settings(profile: str, scale: float = 1.0) -> settings:
    return settings(max_examples=int(EXAMPLES[profile] * scale), deadline=None, database=None,
                    derandomize=not os.environ.get("MATFACT_FUZZ_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@st.composite
def interactions(draw) -> Interactions:
    n = draw(st.integers(1, 40))
    users = draw(st.lists(st.integers(0, draw(st.integers(0, 8))), min_size=n, max_size=n))
    items = draw(st.lists(st.integers(0, draw(st.integers(0, 8))), min_size=n, max_size=n))
    ratings = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    stamps = draw(st.one_of(st.none(), st.lists(st.integers(0, 10), min_size=n, max_size=n)))
    return Interactions.from_arrays(users, items, ratings, timestamps=stamps,
                                    duplicates="last")


sizes = st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0, 1, 0.0, 1.0, 1e-9, 1 - 1e-9,
                                                         math.nan, math.inf, "0.2", None,
                                                         True]))
strategies = st.sampled_from(["random", "per_user", "temporal", "last_n", "cold_users",
                              "cold_items", "bogus"])


@pytest.mark.parametrize("profile", profiles())
def test_splits_partition_the_data_or_raise(profile):
    @fuzz_settings(profile)
    @given(data=interactions(), test_size=sizes, strategy=strategies,
           seed=st.one_of(st.none(), st.integers(0, 2**32), st.just(-1)),
           n=st.one_of(st.integers(-1, 5), st.just(2.5)))
    def run(data, test_size, strategy, seed, n):
        split, error = check("evaluation", lambda: matfact.train_test_split(
            data, test_size=test_size, strategy=strategy, random_state=seed, n=n))
        if error is None:
            train, test = split
            assert len(train) + len(test) == len(data)

    run()


@pytest.mark.parametrize("profile", profiles())
def test_kfold_edges(profile):
    @fuzz_settings(profile, scale=0.5)
    @given(data=interactions(), n_splits=st.one_of(st.integers(-1, 45), st.sampled_from(
        [2.0, "3", None, True])))
    def run(data, n_splits):
        folds, error = check("evaluation", lambda: matfact.kfold(data, n_splits=n_splits))
        if error is None:
            assert sum(len(test) for _, test in folds) == len(data)

    run()


item_index = st.integers(-2, 12)
recommended = st.one_of(
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5), elements=item_index),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.integers(0, 6))),
    st.lists(st.lists(item_index, max_size=5), max_size=4),
    st.just([[1, 2], [3]]), st.just(np.zeros((3, 0), dtype=np.int64)))
relevant = st.one_of(
    st.lists(st.lists(item_index, max_size=6).map(np.asarray), max_size=5),
    st.builds(lambda r, c, d: sp.random(r, c, density=d, format="csr", random_state=0),
              st.integers(0, 5), st.integers(0, 12), st.floats(0, 1)),
    st.just(None), st.just("items"))



@st.composite
def matched(draw) -> tuple[np.ndarray, list]:
    """Well-formed inputs: lists within the catalogue, one relevance row per user."""
    n_users, n_items = draw(st.integers(1, 5)), draw(st.integers(1, 12))
    width = draw(st.integers(0, n_items))
    rows = [draw(st.permutations(range(n_items)))[:width] for _ in range(n_users)]
    rec = np.array(rows, dtype=np.int64).reshape(n_users, width)
    if width and draw(st.booleans()):
        rec[0, -1] = -1  # padding, as recommend() leaves it
    rel = [np.array(sorted(draw(st.sets(st.integers(0, n_items - 1), max_size=n_items))),
                    dtype=np.int64) for _ in range(n_users)]
    return rec, rel


ks = st.one_of(st.integers(-1, 15), st.sampled_from([2.0, None, True, np.int64(3)]))
RANKING = [M.precision_at_k, M.recall_at_k, M.ndcg_at_k, M.average_precision_at_k,
           M.reciprocal_rank_at_k, M.hit_rate_at_k]


@pytest.mark.parametrize("profile", profiles())
def test_ranking_metrics_are_in_unit_interval_or_raise(profile):
    @fuzz_settings(profile, scale=2)
    @given(garbage=st.tuples(recommended, relevant), good=matched(), which=st.booleans(),
           k=ks, metric=st.sampled_from(RANKING))
    def run(garbage, good, which, k, metric):
        rec, rel = good if which else garbage
        values, error = check("evaluation", lambda: metric(rec, rel, k=k))
        if error is None:
            values = np.asarray(values)
            assert values.ndim == 1
            finite = values[~np.isnan(values)]
            assert ((finite >= 0) & (finite <= 1 + 1e-12)).all(), values

    run()


@pytest.mark.parametrize("profile", profiles())
def test_other_metrics(profile):
    floats = st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6)

    @fuzz_settings(profile)
    @given(a=floats, b=floats, w=st.one_of(st.none(), floats), rec=recommended, k=ks,
           n_items=st.one_of(st.integers(-1, 15), st.just(2.5)),
           scores=hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.integers(0, 6))),
           rel=relevant, how=st.sampled_from(["mean", "median", "bogus", None]))
    def run(a, b, w, rec, k, n_items, scores, rel, how):
        for value, _ in (check("evaluation", lambda: M.rmse(a, b, sample_weight=w)),
                         check("evaluation", lambda: M.mae(a, b, sample_weight=w))):
            if value is not None:
                assert value >= 0 or math.isnan(value)
        coverage, _ = check("evaluation", lambda: M.catalogue_coverage(rec, n_items, k=k))
        if coverage is not None:
            assert 0 <= coverage <= 1
        check("evaluation", lambda: M.auc(scores, rel))
        check("evaluation", lambda: M.aggregate(a, how=how))
        popularity = np.abs(np.nan_to_num(np.asarray(b, dtype=float), posinf=1, neginf=1))
        check("evaluation", lambda: M.novelty_at_k(rec, popularity, k=k))
        check("evaluation", lambda: M.popularity_at_k(rec, popularity, k=k))

    run()


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(1)
    data = Interactions.from_arrays(rng.integers(0, 15, 150), rng.integers(0, 10, 150),
                                    rng.integers(1, 6, 150).astype(float), duplicates="last")
    return matfact.BiasedMF(n_factors=2, max_iter=3, random_state=0).fit(data, progress=False)


metric_names = st.lists(st.sampled_from(["rmse", "mae", "ndcg", "ndcg@5", "precision@0",
                                         "recall@x", "auc", "bogus", "", "hit_rate@100",
                                         "coverage", "novelty"]), max_size=3)


@pytest.mark.parametrize("profile", profiles())
def test_evaluate_on_generated_test_sets(profile, fitted):
    @fuzz_settings(profile, scale=0.5)
    @given(test=interactions(), names=metric_names, k=ks, per_user=st.booleans())
    def run(test, names, k, per_user):
        check("evaluation", lambda: matfact.evaluate(fitted, test, metrics=names))
        check("evaluation", lambda: matfact.evaluate_ranking(fitted, test, k=k, metrics=names,
                                                             per_user=per_user))

    run()


@pytest.mark.parametrize("metric", [M.novelty_at_k, M.popularity_at_k])
def test_regression_an_empty_popularity_array_gives_nan(metric):
    # Found by test_other_metrics (slow profile): IndexError from indexing an empty array.
    values = metric(np.array([[0, 1], [-1, -1]]), np.zeros(0), k=2)
    assert values.shape == (2,) and np.isnan(values).all()
