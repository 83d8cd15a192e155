"""The shared model contract (:class:`tests.models.contract.ModelContract`) on the Dask models.

Every fit of the contract runs on the module's local cluster (the ``client`` fixture is
the default client while the classes run, so the contract's own ``fit(data)`` calls reach
it); everything after ``fit`` is the local model's. A saved Dask model loads as its local
class (``saved_class``): the file needs no Dask.
"""

from __future__ import annotations

import pytest

pytest.importorskip("distributed", reason="matfact.distributed needs dask[distributed]")
pytest.importorskip("dask.dataframe", reason="matfact.distributed needs dask[dataframe]")

from matfact import ALS, ImplicitALS  # noqa: E402
from matfact.distributed import DaskALS, DaskImplicitALS  # noqa: E402
from tests.models.contract import ModelContract  # noqa: E402
from tests.models.test_als import COMMON_BAD, IMPLICIT_BAD  # noqa: E402


class _OnTheCluster(ModelContract):
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _cluster(cls, client):
        """Start the cluster before the class's fits (they use the default client)."""
        return client

    def test_fit_ran_on_the_cluster(self, fitted, client):
        # Only a cluster fit records its blocks: one per worker thread and side.
        n_threads = sum(client.nthreads().values())
        assert fitted.transfer_["blocks"] == {"user": n_threads, "item": n_threads}


class TestDaskALSContract(_OnTheCluster):
    data_kind = "explicit"
    bad_params = [*COMMON_BAD, {"biased": 1}, {"time_decay": 0.0}]
    saved_class = ALS

    def make_model(self):
        return DaskALS(n_factors=4, max_iter=3, random_state=0)


class TestDaskImplicitALSContract(_OnTheCluster):
    data_kind = "implicit"
    bad_params = IMPLICIT_BAD
    saved_class = ImplicitALS

    def make_model(self):
        return DaskImplicitALS(n_factors=4, max_iter=3, random_state=0)
