"""Every matfact model, on the contract of :mod:`matfact.models.base`.

The model modules are imported when a name is first used, so loading one model
file (``matfact.load``, ``matfact recommend``) imports that model's module only:
not, say, the scikit-learn transformers'.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name of this package and the module that defines it.
_MODULES = {
    "ALS": "als", "ImplicitALS": "als", "bm25_weight": "als", "tfidf_weight": "als",
    "FactorModel": "base", "ItemSide": "base", "RatingBatch": "base", "Recommender": "base",
    "UserVector": "base",
    "Baseline": "baseline", "Popularity": "baseline",
    "BayesianMF": "bayesian",
    "Contribution": "explain", "Explanation": "explain", "explain_features": "explain",
    "BPR": "bpr",
    "HybridMF": "hybrid",
    "NMF": "nmf",
    "BiasedMF": "sgd", "SVDPlusPlus": "sgd",
    "PureSVD": "svd", "TruncatedSVD": "truncated_svd",
}

__all__ = ["MODEL_REGISTRY", "FactorModel", "Recommender", "UserVector", "ItemSide",
           "RatingBatch", "Baseline", "Popularity",
           "BiasedMF", "SVDPlusPlus",
           "ALS", "ImplicitALS", "BPR", "BayesianMF", "HybridMF", "NMF", "TruncatedSVD", "PureSVD",
           "bm25_weight", "tfidf_weight", "model_class", "Explanation", "Contribution",
           "explain_features"]


def model_class(name: str) -> type | None:
    """The model class called ``name`` (importing its module only), or None if there is none.

    Only the classes of this package are found: a model file names a class, and
    nothing else is ever imported for it.
    """
    module = _MODULES.get(name) if isinstance(name, str) else None
    if module is None or not name[:1].isupper():
        return None
    importlib.import_module(f"{__name__}.{module}")
    from matfact.models.base import MODEL_REGISTRY

    return MODEL_REGISTRY.get(name)


def __getattr__(name: str) -> Any:
    if name == "MODEL_REGISTRY":
        for module in set(_MODULES.values()):  # every class registers as it is defined
            importlib.import_module(f"{__name__}.{module}")
        from matfact.models.base import MODEL_REGISTRY

        return MODEL_REGISTRY
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
