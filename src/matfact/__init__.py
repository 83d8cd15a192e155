"""matfact: matrix factorization for recommenders and beyond.

One data model (:class:`Interactions`) flows from a ratings file through
splits, models and evaluation to a served recommendation::

    import matfact
    data = matfact.load_dataset("ml-100k")
    train, test = matfact.train_test_split(data, strategy="random", random_state=42)
    model = matfact.Baseline().fit(train)
    matfact.evaluate(model, test)              # {'rmse': 0.939..., ...}
    model.recommend([1, 2], n=10)              # (ids, scores), each of shape (2, 10)
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from matfact._version import __version__
from matfact.exceptions import (
    ColdStartWarning,
    ConfidenceWarning,
    ConvergenceWarning,
    DataError,
    DatasetNotFoundError,
    DivergenceError,
    LeakageWarning,
    MatfactError,
    MatfactWarning,
    ModelFormatError,
    NotFittedError,
    ParameterError,
    ThreadWarning,
    UnknownIdError,
)

# Public names resolve on first use (PEP 562), so `import matfact` and the CLI's
# --help stay fast: numpy, pandas, scipy, scikit-learn and numba load only when needed.
_LAZY = {
    "IdIndex": "matfact.data.interactions",
    "Interactions": "matfact.data.interactions",
    "load_dataset": "matfact.datasets",
    "make_synthetic": "matfact.datasets",
    "train_test_split": "matfact.evaluation.split",
    "kfold": "matfact.evaluation.split",
    "evaluate": "matfact.evaluation.validate",
    "evaluate_ranking": "matfact.evaluation.validate",
    "cross_validate": "matfact.evaluation.validate",
    "evaluate_by_activity": "matfact.evaluation.validate",
    "tune": "matfact.evaluation.tune",
    "replay": "matfact.evaluation.replay",
    "Recommender": "matfact.models.base",
    "UserVector": "matfact.models.base",
    "Baseline": "matfact.models.baseline",
    "Popularity": "matfact.models.baseline",
    "BiasedMF": "matfact.models.sgd",
    "SVDPlusPlus": "matfact.models.sgd",
    "ALS": "matfact.models.als",
    "ImplicitALS": "matfact.models.als",
    "BPR": "matfact.models.bpr",
    "BayesianMF": "matfact.models.bayesian",
    "HybridMF": "matfact.models.hybrid",
    "NMF": "matfact.models.nmf",
    "TruncatedSVD": "matfact.models.truncated_svd",
    "PureSVD": "matfact.models.svd",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from matfact.data.interactions import IdIndex, Interactions
    from matfact.datasets import load_dataset, make_synthetic
    from matfact.evaluation.replay import replay
    from matfact.evaluation.split import kfold, train_test_split
    from matfact.evaluation.tune import tune
    from matfact.evaluation.validate import (
        cross_validate,
        evaluate,
        evaluate_by_activity,
        evaluate_ranking,
    )
    from matfact.models.als import ALS, ImplicitALS
    from matfact.models.base import Recommender, UserVector
    from matfact.models.baseline import Baseline, Popularity
    from matfact.models.bayesian import BayesianMF
    from matfact.models.bpr import BPR
    from matfact.models.hybrid import HybridMF
    from matfact.models.nmf import NMF
    from matfact.models.sgd import BiasedMF, SVDPlusPlus
    from matfact.models.svd import PureSVD
    from matfact.models.truncated_svd import TruncatedSVD

__all__ = [
    "__version__",
    "IdIndex",
    "Interactions",
    "load_dataset",
    "make_synthetic",
    "train_test_split",
    "kfold",
    "evaluate",
    "evaluate_ranking",
    "cross_validate",
    "evaluate_by_activity",
    "tune",
    "replay",
    "load",
    "clone",
    "Recommender",
    "UserVector",
    "Baseline",
    "Popularity",
    "BiasedMF",
    "SVDPlusPlus",
    "ALS",
    "ImplicitALS",
    "BPR",
    "BayesianMF",
    "HybridMF",
    "NMF",
    "TruncatedSVD",
    "PureSVD",
    "DivergenceError",
    "ColdStartWarning",
    "ConfidenceWarning",
    "ConvergenceWarning",
    "DataError",
    "DatasetNotFoundError",
    "LeakageWarning",
    "MatfactError",
    "MatfactWarning",
    "ModelFormatError",
    "NotFittedError",
    "ParameterError",
    "ThreadWarning",
    "UnknownIdError",
]


def load(path: Any) -> Any:
    """Load a model saved with ``model.save(path)`` (no pickle); see :mod:`matfact.io`."""
    from matfact.models.persistence import load_model

    return load_model(path)


def clone(model: Any) -> Any:
    """An unfitted copy of ``model`` with the same parameters (scikit-learn's ``clone``)."""
    from sklearn.base import clone as _clone

    return _clone(model)


#: Subpackages reachable as attributes (``matfact.datasets.make_synthetic``) on first use.
_SUBMODULES = ("data", "datasets", "evaluation", "models", "onboarding", "plots", "io",
               "serving", "apps")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return import_module(f"matfact.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'matfact' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
