"""Memory after hot swaps (issue 11): warming and release on the service's one worker thread.

The soak's server RSS grew in steps at each reload (the allocator keeping what the
replaced model and the threads that loaded and warmed it had used). RSS itself
depends on the allocator and on everything else in the process, so it is not
asserted here; ``benchmarks/soak.py`` measures it (docs/reliability.md). These
tests pin the mechanism: a released service has its memory released, after it is
gone, on the same thread that warms every model.
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

import matfact
from matfact.serving import service as service_module
from matfact.serving.service import ModelService, release_memory


@pytest.fixture(scope="module")
def fitted():
    # More items than a kept list is long, so that warming keeps lists.
    return matfact.BiasedMF(n_factors=4, max_iter=3, random_state=0).fit(
        matfact.make_synthetic(200, 400, 4000, random_state=0), progress=False)


def _drain() -> None:
    """Wait until the worker has run everything submitted so far (it runs tasks in order)."""
    service_module._worker.submit(lambda: None).result(timeout=60)


def test_release_memory_runs_anywhere():
    release_memory()  # gc.collect(), then malloc_trim(0) where glibc has it


def test_warming_runs_on_the_one_worker_thread(fitted):
    threads = []
    services = [ModelService(fitted) for _ in range(3)]
    for service in services:
        precompute = service.index.precompute

        def recording(*args, _precompute=precompute, **kwargs):
            threads.append(threading.current_thread())
            return _precompute(*args, **kwargs)

        service.index.precompute = recording
        service.warm()
    _drain()
    for service in services:
        service.stop_warming()
        assert service.index.n_kept > 0
    assert len(threads) == 3
    assert {thread.name for thread in threads} == {"matfact-serving-worker"}
    assert len(set(threads)) == 1


def test_a_released_service_has_its_memory_released_after_it_is_gone(fitted, monkeypatch):
    calls = []
    fresh = ModelService(fitted)
    fresh.warm()
    alive = weakref.ref(fresh)

    def recording() -> None:
        # By the time the release runs, the service is gone.
        calls.append((threading.current_thread().name, alive() is None))

    monkeypatch.setattr(service_module, "release_memory", recording)
    fresh.stop_warming()
    del fresh
    gc.collect()
    _drain()
    assert ("matfact-serving-worker", True) in calls


def test_stop_warming_is_idempotent_and_warm_restarts(fitted):
    service = ModelService(fitted)
    service.stop_warming()
    service.warm()
    service.warm()  # stops the first warm-up, starts another
    service.stop_warming()
    service.stop_warming()
    service.warm(background=False)
    assert service.index.n_kept > 0
