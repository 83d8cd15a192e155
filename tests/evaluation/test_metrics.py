"""Tests for matfact.evaluation.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import (
    mean_absolute_error,
    mean_squared_error,
    ndcg_score,
    roc_auc_score,
)

from matfact.evaluation.metrics import (
    RANKING_METRICS,
    RATING_METRICS,
    aggregate,
    auc,
    average_precision_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    hits_matrix,
    mae,
    ndcg_at_k,
    parse_metric,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    rmse,
)
from matfact.exceptions import ParameterError

FAST = settings(max_examples=100, deadline=None)


# --------------------------------------------------------------------------------------------
# slow reference implementation: plain Python sets and loops
# --------------------------------------------------------------------------------------------


def reference_hits(row, rel: set[int], k: int) -> list[bool]:
    seen: set[int] = set()
    hits = []
    for r in range(k):
        item = int(row[r]) if r < len(row) else -1
        hits.append(item >= 0 and item in rel and item not in seen)
        seen.add(item)
    return hits


def reference_metrics(row, rel: set[int], k: int) -> dict[str, float]:
    if not rel:
        return dict.fromkeys(RANKING_METRICS, math.nan)
    hits = reference_hits(row, rel, k)
    n_hit = sum(hits)
    dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
    idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
    running, ap_sum = 0, 0.0
    for r, h in enumerate(hits):
        if h:
            running += 1
            ap_sum += running / (r + 1)
    rr = next((1 / (r + 1) for r, h in enumerate(hits) if h), 0.0)
    return {
        "precision": n_hit / k,
        "recall": n_hit / len(rel),
        "ndcg": dcg / idcg,
        "map": ap_sum / min(k, len(rel)),
        "mrr": rr,
        "hit_rate": float(n_hit > 0),
    }


def as_list(relevant: list[set[int]]) -> list[np.ndarray]:
    return [np.array(sorted(s), dtype=np.int64) for s in relevant]


def as_csr(relevant: list[set[int]], n_items: int, zeros=()) -> sp.csr_matrix:
    """CSR with the relevant pattern plus explicitly stored zeros at ``zeros``."""
    rows = [u for u, s in enumerate(relevant) for _ in s] + [u for u, _ in zeros]
    cols = [i for s in relevant for i in sorted(s)] + [i for _, i in zeros]
    data = [1.0] * (len(rows) - len(zeros)) + [0.0] * len(zeros)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(relevant), n_items))


@st.composite
def ranking_cases(draw, max_users=6):
    n_users = draw(st.integers(1, max_users))
    n_items = draw(st.integers(1, 12))
    n_rec = draw(st.integers(0, 12))
    # -1 padding, in-range items (duplicates likely) and a few indices past the catalogue
    rec = draw(arrays(np.int64, (n_users, n_rec), elements=st.integers(-1, n_items + 1)))
    relevant = [
        draw(st.sets(st.integers(0, n_items - 1), max_size=n_items)) for _ in range(n_users)
    ]
    k = draw(st.integers(1, 15))
    return rec, relevant, n_items, k


def assert_same(a, b):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# hand-computed cases
# --------------------------------------------------------------------------------------------


def test_hand_computed_single_user():
    rec = [[3, 1, 4, 2]]
    rel = [[1, 2, 9]]
    # hits at ranks 2 and 4 (items 1 and 2); item 9 is never recommended
    assert hits_matrix(rec, rel, 4).tolist() == [[False, True, False, True]]
    assert_same(precision_at_k(rec, rel, k=4), [2 / 4])
    assert_same(recall_at_k(rec, rel, k=4), [2 / 3])
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # min(k=4, |rel|=3) terms
    assert_same(ndcg_at_k(rec, rel, k=4), [dcg / idcg])
    # precision@2 = 1/2, precision@4 = 2/4, divided by min(4, 3)
    assert_same(average_precision_at_k(rec, rel, k=4), [(1 / 2 + 2 / 4) / 3])
    assert_same(reciprocal_rank_at_k(rec, rel, k=4), [1 / 2])
    assert_same(hit_rate_at_k(rec, rel, k=4), [1.0])


def test_hand_computed_cutoff_and_several_users():
    rec = np.array([[3, 1, 4, 2], [5, 6, 7, 8], [0, -1, -1, -1], [2, 2, 2, 2]])
    rel = [[1, 2, 9], [8], [], [2, 3]]
    k = 2
    # user 0: only rank 2 (item 1) within k=2 -> 1 hit
    # user 1: item 8 is at rank 4 > k -> no hit
    # user 2: no relevant items -> NaN everywhere
    # user 3: item 2 repeated, only its first occurrence counts -> 1 hit at rank 1
    assert_same(precision_at_k(rec, rel, k=k), [1 / 2, 0, np.nan, 1 / 2])
    assert_same(recall_at_k(rec, rel, k=k), [1 / 3, 0, np.nan, 1 / 2])
    # user 0: DCG = 1/log2(3), IDCG over min(2, 3)=2 ranks; user 3: DCG = 1, IDCG over 2 ranks
    idcg2 = 1 + 1 / math.log2(3)
    assert_same(ndcg_at_k(rec, rel, k=k), [(1 / math.log2(3)) / idcg2, 0, np.nan, 1 / idcg2])
    # user 0: precision@2 = 1/2, / min(2, 3); user 3: precision@1 = 1, / min(2, 2)
    assert_same(average_precision_at_k(rec, rel, k=k), [(1 / 2) / 2, 0, np.nan, 1 / 2])
    assert_same(reciprocal_rank_at_k(rec, rel, k=k), [1 / 2, 0, np.nan, 1])
    assert_same(hit_rate_at_k(rec, rel, k=k), [1, 0, np.nan, 1])


def test_duplicates_count_once_and_padding_never_hits():
    rel = [[1, 2]]
    assert hits_matrix([[1, 1, 2, 1, -1]], rel, 5).tolist() == [[True, False, True, False, False]]
    # recall can't exceed 1 even if the relevant item is listed k times
    assert_same(recall_at_k([[1, 1, 1]], [[1]], k=3), [1.0])
    assert_same(precision_at_k([[1, 1, 1]], [[1]], k=3), [1 / 3])


def test_short_recommendation_lists_divide_by_k():
    # one column, k=5: the four missing slots are misses
    assert_same(precision_at_k([[1]], [[1]], k=5), [1 / 5])
    assert hits_matrix(np.array([[1]]), [[1]], 3).shape == (1, 3)
    assert hits_matrix(np.empty((2, 0), dtype=int), [[1], [2]], 3).tolist() == [[False] * 3] * 2


def test_items_past_catalogue_are_misses():
    relevant = sp.csr_matrix(np.array([[0, 1, 0]]))
    assert hits_matrix([[7, 1, 3]], relevant, 3).tolist() == [[False, True, False]]
    assert hits_matrix(np.array([[7, 1, 3]], dtype=np.uint8), relevant, 3).tolist() == [
        [False, True, False]
    ]


def test_explicit_zeros_in_csr_are_not_relevant():
    csr = as_csr([{1}], n_items=4, zeros=[(0, 2)])
    assert csr.nnz == 2  # the zero really is stored
    assert hits_matrix([[2, 1]], csr, 2).tolist() == [[False, True]]
    assert_same(recall_at_k([[2, 1]], csr, k=2), [1.0])
    # the caller's matrix is left untouched
    assert csr.nnz == 2


def test_csr_array_and_duplicate_list_entries():
    rec = [[0, 1, 2]]
    expected = precision_at_k(rec, [[0, 2]], k=3)
    assert_same(precision_at_k(rec, sp.csr_array(np.array([[1, 0, 1]])), k=3), expected)
    assert_same(recall_at_k(rec, [np.array([2, 0, 2])], k=3), [1.0])


def test_no_users_gives_empty_arrays():
    rec = np.empty((0, 3), dtype=np.int64)
    for func in RANKING_METRICS.values():
        out = func(rec, [], k=2)
        assert out.shape == (0,) and out.dtype == np.float64


def test_catalogue_coverage():
    rec = [[0, 1, 5], [1, -1, 2], [3, 3, 4]]
    # k=2 sees {0, 1} | {1} | {3} -> 3 distinct items out of 10
    assert catalogue_coverage(rec, n_items=10, k=2) == pytest.approx(0.3)
    # k=3 sees {0, 1, 5, 2, 3, 4} -> 6 / 10
    assert catalogue_coverage(rec, n_items=10, k=3) == pytest.approx(0.6)
    assert catalogue_coverage(rec, n_items=6, k=10) == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="n_items"):
        catalogue_coverage(rec, n_items=5, k=3)
    with pytest.raises(ParameterError, match="n_items"):
        catalogue_coverage(rec, n_items=0, k=3)


def test_auc_hand_computed():
    # positives {0, 2} (scores .9, .5), negatives {1, 3} (scores .1, .5)
    # pairs: (.9>.1) 1, (.9>.5) 1, (.5>.1) 1, (.5=.5) 0.5 -> 3.5 / 4
    scores = np.array([[0.9, 0.1, 0.5, 0.5], [1, 2, 3, 4], [1, 2, 3, 4]])
    out = auc(scores, [[0, 2], [], [0, 1, 2, 3]])
    assert_same(out, [3.5 / 4, np.nan, np.nan])  # no positives / no negatives -> NaN
    # restricting candidates to items {0, 1, 2}: pairs (.9>.1), (.5>.1) -> 1
    cand = np.array([[True, True, True, False]] * 3)
    assert_same(auc(scores, [[0, 2], [3], [0]], candidates=cand), [1.0, np.nan, 0.0])


# --------------------------------------------------------------------------------------------
# against scikit-learn
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_rating_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50))
    y = rng.uniform(1, 5, n)
    p = y + rng.normal(0, 1, n)
    w = rng.uniform(0, 3, n)
    assert rmse(y, p) == pytest.approx(math.sqrt(mean_squared_error(y, p)), rel=1e-12)
    assert mae(y, p) == pytest.approx(mean_absolute_error(y, p), rel=1e-12)
    assert rmse(y, p, sample_weight=w) == pytest.approx(
        math.sqrt(mean_squared_error(y, p, sample_weight=w)), rel=1e-12
    )
    assert mae(y, p, sample_weight=w) == pytest.approx(
        mean_absolute_error(y, p, sample_weight=w), rel=1e-12
    )


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties_and_candidates(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 20, 15
    scores = rng.integers(0, 4, (n_users, n_items)).astype(float)  # many ties
    positive = rng.random((n_users, n_items)) < 0.3
    cand = rng.random((n_users, n_items)) < 0.8
    relevant = sp.csr_matrix(positive)
    for candidates in (None, cand, sp.csr_matrix(cand)):
        mask = np.ones_like(cand) if candidates is None else cand
        out = auc(scores, relevant, candidates=candidates)
        for u in range(n_users):
            y = positive[u][mask[u]]
            if y.all() or not y.any():
                assert np.isnan(out[u])
            else:
                assert out[u] == pytest.approx(roc_auc_score(y, scores[u][mask[u]]), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_ndcg_matches_sklearn_for_binary_relevance(seed):
    # The definitions coincide when the ranking is the full score order without ties: sklearn's
    # DCG@k takes the top k by score, and its ideal DCG@k puts min(k, |rel|) gains of 1 first.
    rng = np.random.default_rng(seed)
    n_users, n_items = 12, 9
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items).astype(float)
    y_true = (rng.random((n_users, n_items)) < 0.35).astype(int)
    recommended = np.argsort(-scores, axis=1)
    relevant = [np.flatnonzero(row) for row in y_true]
    for k in (1, 3, 9, 12):
        ours = ndcg_at_k(recommended, relevant, k=k)
        for u in range(n_users):
            if not y_true[u].any():
                assert np.isnan(ours[u])  # sklearn would report 0 here
                continue
            expected = ndcg_score(y_true[u : u + 1], scores[u : u + 1], k=k)
            assert ours[u] == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------------------------
# property-based tests
# --------------------------------------------------------------------------------------------


@FAST
@given(ranking_cases())
def test_vectorized_matches_reference(case):
    rec, relevant, n_items, k = case
    rel_list = as_list(relevant)
    expected_hits = [reference_hits(row, rel, k) for row, rel in zip(rec, relevant, strict=True)]
    assert hits_matrix(rec, rel_list, k).tolist() == expected_hits
    expected = [reference_metrics(row, rel, k) for row, rel in zip(rec, relevant, strict=True)]
    for name, func in RANKING_METRICS.items():
        assert_same(func(rec, rel_list, k=k), [e[name] for e in expected])


@FAST
@given(ranking_cases(), st.data())
def test_csr_input_equals_list_input(case, data):
    rec, relevant, n_items, k = case
    non_relevant = [(u, i) for u in range(len(relevant)) for i in range(n_items)]
    non_relevant = [(u, i) for u, i in non_relevant if i not in relevant[u]]
    zeros = data.draw(st.lists(st.sampled_from(non_relevant), max_size=5)) if non_relevant else []
    csr = as_csr(relevant, n_items, zeros)
    rel_list = as_list(relevant)
    assert np.array_equal(hits_matrix(rec, csr, k), hits_matrix(rec, rel_list, k))
    for func in RANKING_METRICS.values():
        assert_same(func(rec, csr, k=k), func(rec, rel_list, k=k))


@FAST
@given(ranking_cases())
def test_values_in_unit_interval_or_nan_for_empty_users(case):
    rec, relevant, _, k = case
    empty = np.array([not s for s in relevant])
    for func in RANKING_METRICS.values():
        out = func(rec, as_list(relevant), k=k)
        assert out.shape == (len(relevant),) and out.dtype == np.float64
        assert np.array_equal(np.isnan(out), empty)
        assert np.all((out[~empty] >= 0) & (out[~empty] <= 1 + 1e-12))


@FAST
@given(ranking_cases(), st.data())
def test_permuting_users_permutes_outputs(case, data):
    rec, relevant, _, k = case
    perm = np.array(data.draw(st.permutations(range(len(relevant)))))
    rel_list = as_list(relevant)
    for func in RANKING_METRICS.values():
        before = func(rec, rel_list, k=k)
        after = func(rec[perm], [rel_list[i] for i in perm], k=k)
        assert_same(after, before[perm])


@FAST
@given(
    st.lists(st.sets(st.integers(0, 19), max_size=12), min_size=1, max_size=5),
    st.integers(1, 15),
    st.randoms(use_true_random=False),
)
def test_perfect_ranking(relevant, k, rnd):
    n_items = 20
    rows = []
    for rel in relevant:
        good = sorted(rel)
        bad = [i for i in range(n_items) if i not in rel]
        rnd.shuffle(good)
        rnd.shuffle(bad)
        rows.append(good + bad)
    rec = np.array(rows)
    rel_list = as_list(relevant)
    n_rel = np.array([len(s) for s in relevant], dtype=float)
    empty = n_rel == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_precision = np.where(empty, np.nan, np.minimum(k, n_rel) / k)
        expected_recall = np.where(empty, np.nan, np.minimum(k, n_rel) / n_rel)
    ones = np.where(empty, np.nan, 1.0)
    assert_same(precision_at_k(rec, rel_list, k=k), expected_precision)
    assert_same(recall_at_k(rec, rel_list, k=k), expected_recall)
    for func in (ndcg_at_k, average_precision_at_k, reciprocal_rank_at_k, hit_rate_at_k):
        assert_same(func(rec, rel_list, k=k), ones)


@FAST
@given(ranking_cases(), st.randoms(use_true_random=False))
def test_shuffling_non_hit_slots_keeps_precision(case, rnd):
    rec, relevant, _, k = case
    rel_list = as_list(relevant)
    rec = rec[:, :k].copy()  # only positions inside the cut-off are shuffled
    hits = hits_matrix(rec, rel_list, k)[:, : rec.shape[1]]
    shuffled = rec.copy()
    for u in range(rec.shape[0]):
        slots = np.flatnonzero(~hits[u])
        items = list(rec[u, slots])
        rnd.shuffle(items)
        shuffled[u, slots] = items
    for func in (precision_at_k, recall_at_k, hit_rate_at_k):
        assert_same(func(shuffled, rel_list, k=k), func(rec, rel_list, k=k))


def brute_force_auc(scores, positive, cand):
    out = []
    for s, p, c in zip(scores, positive, cand, strict=True):
        pos = [x for x, pp, cc in zip(s, p, c, strict=True) if pp and cc]
        neg = [x for x, pp, cc in zip(s, p, c, strict=True) if not pp and cc]
        if not pos or not neg:
            out.append(math.nan)
            continue
        total = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
        out.append(total / (len(pos) * len(neg)))
    return out


@FAST
@given(st.data())
def test_auc_matches_pairwise_definition(data):
    n_users = data.draw(st.integers(1, 5))
    n_items = data.draw(st.integers(1, 10))
    shape = (n_users, n_items)
    values = st.sampled_from([-np.inf, -1.0, 0.0, 0.5, 2.0, np.inf])
    scores = data.draw(arrays(np.float64, shape, elements=values))
    positive = data.draw(arrays(np.bool_, shape))
    cand = data.draw(arrays(np.bool_, shape))
    assert_same(
        auc(scores, sp.csr_matrix(positive), candidates=cand),
        brute_force_auc(scores, positive, cand),
    )


# --------------------------------------------------------------------------------------------
# aggregation, names, errors
# --------------------------------------------------------------------------------------------


def test_aggregate():
    assert aggregate([1.0, np.nan, 0.5]) == pytest.approx(0.75)
    assert aggregate(np.array([0.0, 1.0, 1.0, np.nan]), how="median") == 1.0
    with pytest.raises(ParameterError, match="NaN"):
        aggregate([np.nan, np.nan])
    with pytest.raises(ParameterError, match="empty"):
        aggregate([])
    with pytest.raises(ParameterError, match="how"):
        aggregate([1.0], how="max")


def test_metric_registries():
    assert set(RANKING_METRICS) == {"precision", "recall", "ndcg", "map", "mrr", "hit_rate"}
    assert RANKING_METRICS["map"] is average_precision_at_k
    assert RATING_METRICS == {"rmse": rmse, "mae": mae}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ndcg@10", ("ndcg", 10)),
        ("precision@5", ("precision", 5)),
        ("map@20", ("map", 20)),
        ("hit_rate@1", ("hit_rate", 1)),
        ("coverage@10", ("coverage", 10)),
        ("recall", ("recall", None)),
        ("rmse", ("rmse", None)),
        ("auc", ("auc", None)),
        (" MRR@3 ", ("mrr", 3)),
    ],
)
def test_parse_metric(name, expected):
    assert parse_metric(name) == expected


@pytest.mark.parametrize(
    "name",
    ["foo", "", "ndcg@0", "ndcg@", "ndcg@x", "ndcg@1.5", "ndcg@-1", "ndcg@@3", "rmse@5", "auc@3"],
)
def test_parse_metric_rejects(name):
    with pytest.raises(ParameterError):
        parse_metric(name)


def test_parse_metric_unknown_lists_valid_names():
    with pytest.raises(ParameterError, match="ndcg") as info:
        parse_metric("precison@10")
    assert "rmse" in str(info.value) and "coverage" in str(info.value)
    with pytest.raises(ParameterError):
        parse_metric(10)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3", None, np.float64(2.0)])
def test_bad_k_rejected(k):
    rec, rel = [[0, 1]], [[1]]
    for func in RANKING_METRICS.values():
        with pytest.raises(ParameterError, match="k"):
            func(rec, rel, k=k)
    with pytest.raises(ParameterError, match="k"):
        hits_matrix(rec, rel, k)
    with pytest.raises(ParameterError, match="k"):
        catalogue_coverage(rec, n_items=2, k=k)


def test_numpy_integer_k_accepted():
    assert_same(precision_at_k([[0, 1]], [[1]], k=np.int64(2)), [0.5])


def test_relevant_length_mismatch_names_both_numbers():
    rec = [[0, 1], [1, 2]]
    with pytest.raises(ParameterError, match=r"3 entries.*2 users"):
        precision_at_k(rec, [[0], [1], [2]], k=2)
    with pytest.raises(ParameterError, match=r"1 rows.*2 users"):
        precision_at_k(rec, sp.csr_matrix(np.ones((1, 3))), k=2)


@pytest.mark.parametrize(
    ("recommended", "relevant"),
    [
        ([0, 1], [[0]]),  # 1-D recommended
        ([[0.0, 1.0]], [[0]]),  # float recommended
        ([[True, False]], [[0]]),  # bool recommended
        ([[0, 1]], [[-1]]),  # negative relevant item
        ([[0, 1]], [[0.5]]),  # float relevant items
        ([[0, 1]], np.array([[1, 0]])),  # dense indicator matrix is ambiguous
        ([[0, 1]], 5),  # not a sequence
    ],
)
def test_invalid_ranking_inputs(recommended, relevant):
    with pytest.raises(ParameterError):
        precision_at_k(recommended, relevant, k=2)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "weight"),
    [
        ([1.0, np.nan], [1.0, 2.0], None),
        ([1.0, 2.0], [1.0, np.inf], None),
        ([1.0, 2.0], [1.0], None),
        ([], [], None),
        ([[1.0]], [[1.0]], None),
        ([1.0, 2.0], [1.0, 2.0], [1.0]),
        ([1.0, 2.0], [1.0, 2.0], [1.0, -1.0]),
        ([1.0, 2.0], [1.0, 2.0], [0.0, 0.0]),
        ([1.0, 2.0], [1.0, 2.0], [1.0, np.nan]),
        (["a", "b"], [1.0, 2.0], None),
    ],
)
def test_invalid_rating_inputs(y_true, y_pred, weight):
    for func in (rmse, mae):
        with pytest.raises(ParameterError):
            func(y_true, y_pred, sample_weight=weight)


def test_invalid_auc_inputs():
    with pytest.raises(ParameterError, match="NaN"):
        auc([[0.1, np.nan]], [[0]])
    with pytest.raises(ParameterError, match="2-D"):
        auc([0.1, 0.2], [[0]])
    with pytest.raises(ParameterError, match="item index 5"):
        auc([[0.1, 0.2]], [[5]])
    with pytest.raises(ParameterError, match="columns"):
        auc([[0.1, 0.2]], sp.csr_matrix(np.ones((1, 3))))
    with pytest.raises(ParameterError, match="bool"):
        auc([[0.1, 0.2]], [[0]], candidates=np.array([[1, 0]]))
    with pytest.raises(ParameterError, match="shape"):
        auc([[0.1, 0.2]], [[0]], candidates=sp.csr_matrix(np.ones((1, 3))))


# ---------------------------------------------------------------------- beyond accuracy
def test_item_popularity_popularity_and_novelty_by_hand():
    import scipy.sparse as sp

    from matfact.evaluation.metrics import item_popularity, novelty_at_k, popularity_at_k

    # 4 users; item 0 seen by all, item 1 by two, item 2 by one, item 3 by none.
    train = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]))
    p = item_popularity(train)
    np.testing.assert_allclose(p, [1.0, 0.5, 0.25, 0.0])
    recommended = np.array([[0, 1], [2, 3], [3, -1]])
    np.testing.assert_allclose(popularity_at_k(recommended, p, k=2), [0.75, 0.125, 0.0])
    # −log2 p with the unseen item floored at the rarest seen one (p = 0.25 → 2 bits).
    np.testing.assert_allclose(novelty_at_k(recommended, p, k=2), [0.5, 2.0, 2.0])
    np.testing.assert_allclose(novelty_at_k(recommended, p, k=1), [0.0, 2.0, 2.0])
    assert np.isnan(popularity_at_k(np.array([[-1, -1]]), p, k=2))[0]
