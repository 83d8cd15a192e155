"""Every matfact model, on the contract of :mod:`matfact.models.base`."""

from matfact.models.base import MODEL_REGISTRY, FactorModel, Recommender, UserVector
from matfact.models.baseline import Baseline, Popularity
from matfact.models.sgd import BiasedMF, SVDPlusPlus

__all__ = ["MODEL_REGISTRY", "FactorModel", "Recommender", "UserVector", "Baseline", "Popularity",
           "BiasedMF", "SVDPlusPlus"]
