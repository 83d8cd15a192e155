"""Every matfact model, on the contract of :mod:`matfact.models.base`."""

from matfact.models.als import ALS, ImplicitALS, bm25_weight, tfidf_weight
from matfact.models.base import (
    MODEL_REGISTRY,
    FactorModel,
    ItemSide,
    RatingBatch,
    Recommender,
    UserVector,
)
from matfact.models.baseline import Baseline, Popularity
from matfact.models.bayesian import BayesianMF
from matfact.models.bpr import BPR
from matfact.models.hybrid import HybridMF
from matfact.models.nmf import NMF
from matfact.models.sgd import BiasedMF, SVDPlusPlus
from matfact.models.svd import PureSVD, TruncatedSVD

__all__ = ["MODEL_REGISTRY", "FactorModel", "Recommender", "UserVector", "ItemSide",
           "RatingBatch", "Baseline", "Popularity",
           "BiasedMF", "SVDPlusPlus",
           "ALS", "ImplicitALS", "BPR", "BayesianMF", "HybridMF", "NMF", "TruncatedSVD", "PureSVD",
           "bm25_weight", "tfidf_weight"]
