"""Evaluation: splits, metrics, and evaluating fitted models."""

from matfact.evaluation import metrics
from matfact.evaluation.replay import ReplayResult, replay
from matfact.evaluation.split import STRATEGIES, Split, kfold, train_test_split
from matfact.evaluation.validate import (
    DEFAULT_RANKING_METRICS,
    count_overlap,
    evaluate,
    evaluate_ranking,
)

__all__ = [
    "metrics",
    "STRATEGIES",
    "Split",
    "kfold",
    "train_test_split",
    "DEFAULT_RANKING_METRICS",
    "evaluate",
    "evaluate_ranking",
    "count_overlap",
    "replay",
    "ReplayResult",
]
