"""Exception and warning classes raised by matfact.

Every error matfact raises on bad input derives from :class:`MatfactError`, and
also from the built-in class a caller would naturally catch (``ValueError``,
``KeyError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "MatfactError",
    "DataError",
    "ParameterError",
    "UsageError",
    "DivergenceError",
    "UnknownIdError",
    "NotFittedError",
    "ModelFormatError",
    "DatasetNotFoundError",
    "MatfactWarning",
    "ConvergenceWarning",
    "ColdStartWarning",
    "ThreadWarning",
    "LeakageWarning",
    "ConfidenceWarning",
]


class MatfactError(Exception):
    """Base class of every error raised by matfact."""


class DataError(MatfactError, ValueError):
    """Interaction data is malformed: NaN/inf, missing columns, duplicates, bad shapes."""


class ParameterError(MatfactError, ValueError):
    """A hyper-parameter or argument is out of its allowed range or of the wrong type."""


class UsageError(ParameterError):
    """A command line that cannot be run as given (``matfact`` exits with status 2).

    A :class:`ParameterError` (so a ``ValueError``), for callers of the command
    line's helpers from Python (``matfact.cli.read_interactions``, ``parse_params``).
    """


class UnknownIdError(MatfactError, KeyError):
    """A raw user or item id was not seen when the model was fitted.

    Attributes
    ----------
    kind : {"user", "item"}
        Which axis the ids belong to.
    ids : list
        The unknown raw ids (at most the first 20 are shown in the message).
    """

    def __init__(self, kind: str, ids) -> None:
        self.kind = kind
        self.ids = list(ids)
        shown = ", ".join(repr(x) for x in self.ids[:20])
        more = f" (and {len(self.ids) - 20} more)" if len(self.ids) > 20 else ""
        super().__init__(f"unknown {kind} id(s): {shown}{more}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class NotFittedError(MatfactError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


class ModelFormatError(MatfactError, ValueError):
    """A model file is truncated, tampered with, foreign, or of a newer format."""


class DatasetNotFoundError(MatfactError, FileNotFoundError):
    """A dataset's files could not be found locally nor downloaded."""


class MatfactWarning(UserWarning):
    """Base class of matfact's warnings (the test suite turns them into errors)."""


class ConvergenceWarning(MatfactWarning):
    """An iterative solver stopped at ``max_iter`` before reaching ``tol``."""


class ColdStartWarning(MatfactWarning):
    """Some ids had no training data and were scored by a fallback."""


class ThreadWarning(MatfactWarning):
    """numba's threads times BLAS's threads would exceed the cores (warned once per process)."""


class LeakageWarning(MatfactWarning):
    """Test pairs the model saw in training: the evaluation measures memory, not prediction.

    Raised by :func:`matfact.evaluate`, :func:`matfact.evaluate_ranking` (and what calls
    them) with the number and share of such pairs; ``matfact evaluate`` refuses to
    evaluate them unless given ``--allow-overlap``.
    """


class ConfidenceWarning(MatfactWarning):
    """Implicit weights spanning orders of magnitude under a linear confidence.

    :class:`~matfact.ImplicitALS` with an explicit ``confidence="linear"`` on weights whose
    99th percentile is 100× their 1st or more: a few heavy interactions then dominate;
    ``confidence="auto"`` (the default) takes the log there.
    """


class DivergenceError(MatfactError, ArithmeticError):
    """Training diverged (the loss became NaN or infinite)."""
