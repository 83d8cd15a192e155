"""Fold-in's kept Gram matrix and BLAS held to one thread (issue 20, fold-in latency).

``ImplicitALS.fold_in`` keeps ``YᵀY + λI`` of the item factors between calls
(:func:`matfact._linalg.ridge_gram`); every path that changes the factors must drop
it, or fold-in silently answers for the old model. Each test compares fold-in with
the dense closed-form solve of the normal equations on the model's *current* factors,
before and after one of those paths, with a fold-in in between so that a kept Gram
exists to go stale.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import ThreadpoolController, threadpool_info

import matfact
from matfact import ImplicitALS, Interactions
from matfact._linalg import forget_gram, ridge_gram
from matfact._threads import blas_single_thread, blas_single_thread_for, held_blas
from tests.models.contract import planted_interactions


def dense_fold_in(model: ImplicitALS, item_codes: np.ndarray, weights: np.ndarray,
                  factors: np.ndarray | None = None) -> np.ndarray:
    """Hu et al.'s row solve from scratch: (YᵀY + λ n^ν I + Σ (c−1) y yᵀ) x = Σ c y."""
    y = (model.item_factors_ if factors is None else factors).astype(np.float64)
    c = model.confidence_of(weights).astype(np.float64)
    lam = model.reg * max(len(item_codes), 1) ** model.reg_exponent
    yu = y[item_codes]
    a = y.T @ y + lam * np.eye(y.shape[1]) + (yu.T * (c - 1.0)) @ yu
    return np.linalg.solve(a, yu.T @ c)


def check_fold_in(model: ImplicitALS, history: tuple[np.ndarray, np.ndarray]) -> None:
    items, weights = history
    got = model.fold_in(items, weights).factors
    want = dense_fold_in(model, model.item_index_.get_indexer(items), weights)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def fitted(seed: int = 0, n_factors: int = 4, reg_exponent: float = 0.5) -> ImplicitALS:
    data = planted_interactions("implicit", n_users=30, n_items=20, density=0.3, seed=seed)
    model = ImplicitALS(n_factors=n_factors, reg=0.5, reg_exponent=reg_exponent, alpha=2.0,
                        max_iter=3, random_state=seed, n_threads=1)
    return model.fit(data, progress=False)


def history(model: ImplicitALS, seed: int, size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    items = rng.choice(model.item_index_.ids, size, replace=False)
    return items, rng.uniform(0.5, 4.0, size)


# ------------------------------------------------------------------ the kept Gram itself
def test_ridge_gram_is_kept_per_array_until_forgotten():
    rng = np.random.default_rng(0)
    factors = rng.standard_normal((50, 3)).astype(np.float32)
    first = ridge_gram(factors, 0.5, np.float32)
    expected = factors.astype(np.float64).T @ factors.astype(np.float64) + 0.5 * np.eye(3)
    np.testing.assert_allclose(first, expected.astype(np.float32), rtol=1e-6)
    assert ridge_gram(factors, 0.5, np.float32) is first          # kept
    assert not first.flags.writeable                             # nobody edits the kept one
    assert ridge_gram(factors, 0.7, np.float32) is not first     # another λ: recomputed
    np.testing.assert_allclose(ridge_gram(factors.copy(), 0.5, np.float32), first)
    factors[0] += 1.0
    forget_gram(factors)
    again = ridge_gram(factors, 0.5, np.float32)
    np.testing.assert_allclose(again, (factors.astype(np.float64).T @ factors + 0.5 *
                                       np.eye(3)).astype(np.float32), rtol=1e-6)


def test_a_freed_array_leaves_nothing_behind():
    from matfact import _linalg

    factors = np.ones((10, 2), np.float32)
    ridge_gram(factors)
    key = id(factors)
    assert key in _linalg._GRAMS
    del factors
    assert key not in _linalg._GRAMS  # so a new array reusing the id cannot hit it


def test_a_gram_computed_while_its_array_is_written_is_not_kept(monkeypatch):
    # Another thread writes the factors (and forgets) while this one computes: the
    # result may mix old and new rows, so it must not be kept. A write to another
    # array (a server's user updates) must not stop the caching.
    from matfact import _linalg

    factors = np.ones((20, 2), np.float32)
    other = np.ones((5, 2), np.float32)
    plain = _linalg.gram64

    def written_meanwhile(array, *args):
        forget_gram(other)
        gram = plain(array, *args)
        if array is factors:
            factors[0] = 2.0
            forget_gram(factors)
        return gram

    monkeypatch.setattr(_linalg, "gram64", written_meanwhile)
    first = ridge_gram(factors)
    monkeypatch.setattr(_linalg, "gram64", plain)
    second = ridge_gram(factors)
    assert second is not first and second[0, 0] == 19 + 4  # recomputed on the new rows
    assert ridge_gram(factors) is second


# ------------------------------------------------------------------ every invalidation path
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_factors=st.integers(1, 6),
       reg_exponent=st.sampled_from([0.0, 0.5]), size=st.integers(1, 8))
def test_fold_in_is_the_dense_solve_on_random_models(seed, n_factors, reg_exponent, size):
    model = fitted(seed % 5, n_factors, reg_exponent)
    model.item_factors_ = np.random.default_rng(seed).standard_normal(
        model.item_factors_.shape).astype(np.float32)  # a new array: a new Gram
    check_fold_in(model, history(model, seed, size))
    check_fold_in(model, history(model, seed + 1, size))  # from the kept Gram


def test_fold_in_after_add_items():
    model = fitted()
    probe = history(model, 1)
    check_fold_in(model, probe)
    model.add_items([1000], [(model.user_index_.ids[:6], np.full(6, 2.0))])
    check_fold_in(model, probe)
    check_fold_in(model, (np.array([*probe[0][:2], 1000]), probe[1][:3]))


def test_fold_in_after_apply_ratings_with_a_new_item():
    model = fitted()
    probe = history(model, 2)
    check_fold_in(model, probe)
    users = model.user_index_.ids[:4]
    model.apply_ratings(users, [1077] * 4, [1.0, 2.0, 3.0, 4.0])
    check_fold_in(model, probe)


def test_fold_in_after_partial_fit_in_place():
    model = fitted()
    probe = history(model, 3)
    check_fold_in(model, probe)
    before = model.item_factors_
    more = planted_interactions("implicit", n_users=30, n_items=20, density=0.2, seed=9)
    model.partial_fit(Interactions.from_arrays(more.users, more.items, weights=more.weights),
                      max_iter=2)
    assert model.item_factors_ is before  # no new item: the same array, changed in place
    check_fold_in(model, probe)


def test_fold_in_after_update_users_and_refit():
    model = fitted()
    probe = history(model, 4)
    check_fold_in(model, probe)
    model.update_users([model.user_index_.ids[0]], [history(model, 5)])
    check_fold_in(model, probe)
    data = planted_interactions("implicit", n_users=30, n_items=20, density=0.3, seed=7)
    model.fit(data, progress=False)
    check_fold_in(model, history(model, 6))


def test_fold_in_after_a_failed_partial_fit_is_rolled_back():
    model = fitted()
    probe = history(model, 5)
    check_fold_in(model, probe)
    original = model.item_factors_.copy()
    solve = model._solve

    def solve_then_fail(rows, other, out):
        solve(rows, other, out)
        if out is model.item_factors_:
            # A fold-in between the in-place write and the failure keeps the Gram of
            # factors the rollback is about to undo.
            model.fold_in(*probe)
            raise RuntimeError("worker lost")

    model._solve = solve_then_fail
    with pytest.raises(RuntimeError, match="worker lost"):
        model.partial_fit(planted_interactions("implicit", n_users=30, n_items=20,
                                               density=0.2, seed=8), max_iter=1)
    del model._solve
    np.testing.assert_array_equal(model.item_factors_, original)
    check_fold_in(model, probe)


def test_items_placed_after_users_change_use_the_new_user_gram():
    # ImplicitALS places a new item by its own half-step with users and items swapped:
    # the Gram of every *user* vector, kept between add_items calls.
    model = fitted()
    raters = model.user_index_.ids[:5]
    weights = np.array([1.0, 2.0, 3.0, 1.0, 2.0])
    model.add_items([1001], [(raters, weights)])
    want = dense_fold_in(model, model.user_index_.get_indexer(raters), weights,
                         factors=model.user_factors_)
    np.testing.assert_allclose(model.item_factors_[-1], want, rtol=1e-4, atol=1e-5)
    model.update_users(list(model.user_index_.ids[:10]),
                       [history(model, 20 + n) for n in range(10)])
    model.add_items([1002], [(raters, weights)])
    want = dense_fold_in(model, model.user_index_.get_indexer(raters), weights,
                         factors=model.user_factors_)
    np.testing.assert_allclose(model.item_factors_[-1], want, rtol=1e-4, atol=1e-5)


def test_fold_in_of_a_loaded_model(tmp_path):
    model = fitted()
    probe = history(model, 6)
    check_fold_in(model, probe)
    model.save(tmp_path / "m.zip")
    loaded = matfact.load(tmp_path / "m.zip")
    check_fold_in(loaded, probe)
    np.testing.assert_allclose(loaded.fold_in(*probe).factors, model.fold_in(*probe).factors)


# ------------------------------------------------------------------ BLAS held to one thread
def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if held_blas(pool)]


@pytest.fixture
def two_blas_threads():
    import scipy.linalg  # noqa: F401  (SciPy's BLAS, which the kernels call, is held too)

    with ThreadpoolController().limit(limits=2, user_api="blas"):
        if max(blas_threads(), default=1) < 2:
            pytest.skip("this BLAS cannot run on two threads here")
        yield


def test_fold_in_and_one_user_scores_run_blas_on_one_thread(two_blas_threads):
    model = fitted()
    seen = {}

    def recording(name, method):
        def wrapper(*args, **kwargs):
            seen[name] = blas_threads()
            return method(*args, **kwargs)
        return wrapper

    model._fold_in = recording("fold_in", model._fold_in)
    model._score_users = recording("score_users", model._score_users)
    model._score_vector = recording("score_vector", model._score_vector)
    model.fold_in(*history(model, 1))
    model.score_users(np.array([0]))
    model.recommend(model.user_index_.ids[0])
    model.recommend_for_history(*history(model, 2))
    assert set(seen) == {"fold_in", "score_users", "score_vector"}
    assert all(max(counts) == 1 for counts in seen.values()), seen
    model.score_users(np.arange(5))  # many users: BLAS keeps its threads
    assert max(seen["score_users"]) == 2
    assert max(blas_threads()) == 2  # restored


def test_overlapping_holds_restore_the_count_once(two_blas_threads):
    # Two threads whose holds overlap (A in, B in, A out, B out): BLAS stays on one
    # thread until the last one leaves, then gets its own count back, not A's limit.
    a_in, a_out, b_in = threading.Event(), threading.Event(), threading.Event()
    inside = {}

    def a():
        with blas_single_thread():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with blas_single_thread_for(1):
            b_in.set()
            a_out.wait(5)
            inside["after A left"] = blas_threads()

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert max(inside["after A left"]) == 1
    assert max(blas_threads()) == 2


# ------------------------------------------------------------------ ranking fold-in negatives
@settings(max_examples=60, deadline=None)
@given(n_items=st.integers(1, 300), size=st.integers(0, 80), data=st.data())
def test_fold_in_negatives_are_distinct_items_outside_the_history(n_items, size, data):
    from matfact.models.base import fold_in_negatives

    history = np.array(data.draw(st.lists(st.integers(0, n_items - 1), unique=True,
                                          max_size=n_items)), dtype=np.int64)
    sample = fold_in_negatives(n_items, history, size)
    assert len(sample) == min(size, n_items - len(history))
    assert len(np.unique(sample)) == len(sample)
    assert not np.isin(sample, history).any() and ((0 <= sample) & (sample < n_items)).all()
    np.testing.assert_array_equal(sample, fold_in_negatives(n_items, history, size))

