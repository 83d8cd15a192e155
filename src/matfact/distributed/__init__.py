"""ALS and implicit ALS on a Dask cluster, and ranking evaluation over user blocks.

Needs the ``dist`` extra (``pip install 'matfact[dist]'``: Dask with its distributed
scheduler and DataFrames); importing this package does not import Dask, fitting does.
See ``docs/distributed.md``.
"""

from matfact.distributed.dask_als import DaskALS, DaskImplicitALS, evaluate_ranking

__all__ = ["DaskALS", "DaskImplicitALS", "evaluate_ranking"]
