"""A local Dask cluster of 2 worker processes of one thread each (loopback TCP), per module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def client():
    """The module's cluster client; also the default client (``get_client()``) meanwhile."""
    pytest.importorskip("distributed", reason="matfact.distributed needs dask[distributed]")
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    with Client(cluster) as client:
        yield client
    cluster.close()
