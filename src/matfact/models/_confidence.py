r"""How implicit weights become confidences: the one rule behind ``confidence="auto"``.

:class:`~matfact.ImplicitALS` turns an interaction's weight :math:`w` (plays, hours,
events) into a confidence :math:`c = 1 + \alpha f(w)`. Raw counts that span orders of
magnitude make a linear :math:`f` hand a few heavy interactions nearly all the weight
(on Steam hours, linear confidence ranks barely above popularity), while binary data has
nothing to transform. :func:`choose_confidence` picks :math:`f`, :math:`\alpha` and
:math:`\epsilon` from the weights' quantiles (``numpy.quantile``, linear interpolation):

- the **spread** is :math:`q_{0.99} / q_{0.01}`. Below :data:`HEAVY_TAIL_SPREAD` (100, two
  orders of magnitude; binary, constant and rating-like weights) the confidence stays
  linear with the given ``alpha`` and ``epsilon``, exactly as ``confidence="linear"``;
- at or above it the confidence is logarithmic, :math:`c = 1 + \alpha_* \log(1 + w /
  \epsilon_*)`, with :math:`\epsilon_* = q_{0.5}` (the median weight: the rule does not
  depend on the unit, hours or minutes) and :math:`\alpha_* = \alpha / \log(1 + q_{0.99} /
  q_{0.5})`: the heaviest 1 % of interactions get the confidence :math:`1 + \alpha` that
  every interaction gets on binary data, the median one :math:`1 + \alpha_* \log 2`.

BPR and HybridMF's ranking losses take every interaction as one positive whatever its
weight, so the rule has nothing to scale there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["HEAVY_TAIL_SPREAD", "SPREAD_QUANTILES", "Confidence", "weight_spread",
           "choose_confidence", "confidence_values", "user_stacklevel"]

#: Weights whose 99th percentile is at least this many times their 1st "span orders of
#: magnitude": ``confidence="auto"`` takes the log there, and an explicit ``"linear"`` warns.
HEAVY_TAIL_SPREAD = 100.0
#: The low and high quantiles whose ratio is the spread.
SPREAD_QUANTILES = (0.01, 0.99)


class Confidence(NamedTuple):
    """A resolved confidence transform: ``c = 1 + alpha · f(w)``."""

    kind: str  #: "linear" (f(w) = w) or "log" (f(w) = log(1 + w / epsilon))
    alpha: float
    epsilon: float


def weight_spread(weights: np.ndarray | None) -> float:
    """:math:`q_{0.99} / q_{0.01}` of the weights (1 for none; inf if the low quantile is 0)."""
    if weights is None or len(weights) == 0:
        return 1.0
    low, high = np.quantile(np.asarray(weights, dtype=np.float64), SPREAD_QUANTILES)
    if low <= 0:
        return float("inf") if high > 0 else 1.0
    return float(high / low)


def choose_confidence(weights: np.ndarray | None, alpha: float, epsilon: float) -> Confidence:
    """The transform ``confidence="auto"`` uses for these weights (see the module doc).

    Parameters
    ----------
    weights : ndarray of shape (nnz,) or None
        The training weights (``None``: binary data, every weight 1).
    alpha, epsilon : float
        The model's parameters: kept as they are when the confidence stays linear;
        ``alpha`` is the confidence of the heaviest 1 % when it becomes logarithmic.

    Returns
    -------
    Confidence
    """
    if weight_spread(weights) < HEAVY_TAIL_SPREAD:
        return Confidence("linear", float(alpha), float(epsilon))
    median, high = np.quantile(np.asarray(weights, dtype=np.float64), (0.5, SPREAD_QUANTILES[1]))
    if median <= 0:  # over half the weights 0 (not implicit data): the tail sets the scale
        median = high
    return Confidence("log", float(alpha / np.log1p(high / median)), float(median))


def confidence_values(weights: np.ndarray, rule: Confidence) -> np.ndarray:
    """``1 + alpha · f(w)`` as float32, computed in place (at 30M weights a float64
    temporary would be 240 MB)."""
    conf = np.array(weights, dtype=np.float32)
    if rule.kind == "log":
        conf /= np.float32(rule.epsilon)
        np.log1p(conf, out=conf)
    conf *= np.float32(rule.alpha)
    conf += np.float32(1.0)
    return conf


_PACKAGE = str(Path(__file__).resolve().parent.parent)


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised by the caller at the first frame
    outside matfact (the user's ``fit`` call, however deep the fit's own calls run)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    return level
