"""matfact: matrix factorization for recommenders and beyond.

One data model (:class:`Interactions`) flows from a ratings file through
splits, models and evaluation to a served recommendation.
"""

from matfact._version import __version__
from matfact.data import IdIndex, Interactions
from matfact.exceptions import (
    ColdStartWarning,
    ConvergenceWarning,
    DataError,
    DatasetNotFoundError,
    MatfactError,
    MatfactWarning,
    ModelFormatError,
    NotFittedError,
    ParameterError,
    UnknownIdError,
)

__all__ = [
    "__version__",
    "IdIndex",
    "Interactions",
    "ColdStartWarning",
    "ConvergenceWarning",
    "DataError",
    "DatasetNotFoundError",
    "MatfactError",
    "MatfactWarning",
    "ModelFormatError",
    "NotFittedError",
    "ParameterError",
    "UnknownIdError",
]
