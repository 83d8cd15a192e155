"""Threads: concurrent queries equal serial ones; numba × BLAS never oversubscribe the cores.

Several Python threads call ``predict``/``recommend``/``similar_items``/
``recommend_for_history`` on one fitted model at once (as a threaded server
would); every answer must equal the serial answer bit for bit. Every parallel
region of every model's ``fit`` is probed with threadpoolctl: BLAS held to one
thread and numba's threads within the cores. A configuration that would
oversubscribe gets one :class:`~matfact.exceptions.ThreadWarning` per process.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import matfact
import matfact._threads as threads_module
from matfact import Interactions
from matfact._threads import held_blas
from matfact.exceptions import ThreadWarning
from matfact.models import MODEL_REGISTRY


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n = 20_000
    return Interactions.from_arrays(rng.integers(0, 600, n), rng.integers(0, 400, n),
                                    rng.integers(1, 6, n).astype(float), duplicates="last")


def _queries(model, rng):
    users = model.user_index_.ids
    items = model.item_index_.ids
    batches = []
    for _ in range(12):
        u = rng.choice(users, 40)
        i = rng.choice(items, 40)
        batches.append((u, i, rng.choice(items, 5), rng.integers(1, 6, 5).astype(float)))
    return batches


def _answer(model, batch):
    users, items, history, ratings = batch
    out = [model.predict(users, items), *model.recommend(users, n=10),
           *model.recommend(users[:3], n=5, exclude_seen=False, items=items)]
    if hasattr(model, "item_factors_") and model.item_factors_ is not None:
        out += [*model.similar_items(items[:4], n=5)]
    out += [*model.recommend_for_history(history, ratings, n=7)]
    return out


@pytest.mark.parametrize("name", ["BiasedMF", "ALS", "ImplicitALS", "BPR", "PureSVD",
                                  "Baseline"])
def test_concurrent_queries_equal_serial_ones(name, data):
    cls = MODEL_REGISTRY[name]
    small = {k: v for k, v in {"n_factors": 16, "max_iter": 3, "random_state": 0}.items()
             if k in cls().get_params()}
    train = data.to_implicit() if name in ("ImplicitALS", "BPR") else data
    model = cls(**small).fit(train, progress=False)
    batches = _queries(model, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", matfact.ColdStartWarning)
        serial = [_answer(model, b) for b in batches]
        results: dict[tuple[int, int], list] = {}
        errors: list[BaseException] = []
        start = threading.Barrier(4)

        def worker(t: int) -> None:
            try:
                start.wait()
                for repeat in range(3):
                    for k in range(len(batches)):
                        k = (k + t * 3 + repeat) % len(batches)  # threads overlap differently
                        results[(t, k)] = _answer(model, batches[k])
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads often, to interleave inside calls
        try:
            workers = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        finally:
            sys.setswitchinterval(old)
    assert not errors, errors
    assert len(results) == 4 * len(batches)
    for (_, k), got in results.items():
        for a, b in zip(got, serial[k], strict=True):
            np.testing.assert_array_equal(a, b)


def _blas_threads() -> int:
    return max((p["num_threads"] for p in threadpool_info() if held_blas(p)), default=1)


def test_fits_never_run_numba_times_blas_threads_past_the_cores(data, monkeypatch):
    seen: list[tuple[str, int, int]] = []
    original = threads_module.numba_threads

    @contextlib.contextmanager
    def probed(n_threads=None, work=None):
        with original(n_threads, work) as wanted:
            seen.append((current[0], numba.get_num_threads(), _blas_threads()))
            yield wanted

    # Every module imported the helper by name: patch each reference.
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("matfact") and \
                getattr(module, "numba_threads", None) is original:
            monkeypatch.setattr(module, "numba_threads", probed)
    cores = threads_module.available_cores()
    current = [""]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", matfact.ConvergenceWarning)
        for name, cls in sorted(MODEL_REGISTRY.items()):
            current[0] = name
            small = {k: v for k, v in {"n_factors": 8, "max_iter": 2, "burn_in": 1}.items()
                     if k in cls().get_params()}
            train = data.to_implicit() if name in ("ImplicitALS", "BPR") else data
            for n_threads in (None, 1, cores, cores + 3):
                params = dict(small, n_threads=n_threads) if "n_threads" in \
                    cls().get_params() else small
                cls(**params).fit(train, progress=False)
    assert {name for name, _, _ in seen} >= {"ALS", "BiasedMF", "BPR", "NMF", "BayesianMF"}
    for name, numba_count, blas in seen:
        assert blas == 1, (name, blas)
        assert numba_count * blas <= max(cores, 1), (name, numba_count, blas, cores)


def test_an_oversubscribing_configuration_warns_once(data, monkeypatch):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba may use one thread only here")
    monkeypatch.setattr(threads_module, "_checked_up_to", 0)
    monkeypatch.setattr(threads_module, "available_cores", lambda: 1)
    with pytest.warns(ThreadWarning, match="exceed the 1 core") as record:
        matfact.BiasedMF(n_factors=4, max_iter=2, n_threads=2).fit(data, progress=False)
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadWarning)  # once per process: not again
        matfact.BiasedMF(n_factors=4, max_iter=2, n_threads=2).fit(data, progress=False)


def test_a_fitting_configuration_does_not_warn(data, monkeypatch):
    monkeypatch.setattr(threads_module, "_checked_up_to", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadWarning)
        matfact.BiasedMF(n_factors=4, max_iter=2, n_threads=1).fit(data, progress=False)
        assert threads_module._checked_up_to == 1
        cores = threads_module.available_cores()
        wanted = min(cores, numba.config.NUMBA_NUM_THREADS)
        matfact.BiasedMF(n_factors=4, max_iter=2, n_threads=wanted).fit(data, progress=False)
    # A larger count than any before is checked too (a first small fit hides nothing).
    assert threads_module._checked_up_to == wanted


def test_a_larger_count_after_a_small_fit_still_warns(data, monkeypatch):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba may use one thread only here")
    monkeypatch.setattr(threads_module, "_checked_up_to", 0)
    monkeypatch.setattr(threads_module, "available_cores", lambda: 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ThreadWarning)
        matfact.BiasedMF(n_factors=4, max_iter=2, n_threads=1).fit(data, progress=False)
    with pytest.warns(ThreadWarning):
        matfact.BiasedMF(n_factors=4, max_iter=2, n_threads=2).fit(data, progress=False)
