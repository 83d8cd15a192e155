"""What the scikit-learn-style transformers (``NMF``, ``TruncatedSVD``) share with scikit-learn.

Kept apart from :mod:`matfact.models._matrix` so that the models that never
meet scikit-learn (and a command that only loads one and answers) do not
import it.
"""

from __future__ import annotations

from typing import Any

from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from matfact.exceptions import DataError, NotFittedError

__all__ = ["TransformerNotFittedError", "check_features"]


class TransformerNotFittedError(NotFittedError, SklearnNotFittedError):
    """An unfitted scikit-learn-style transformer was used (``transform`` before ``fit``).

    Both matfact's and scikit-learn's ``NotFittedError``: the transformers stand in
    for scikit-learn's inside its pipelines and model selection, which catch the latter.
    """


def check_features(estimator: Any, X: Any, *, reset: bool) -> None:
    """Record (``reset=True``) or check ``n_features_in_`` / ``feature_names_in_``.

    scikit-learn's own rules and messages (``validate_data`` without its array
    check: ``X`` has passed :func:`as_matrix`), a mismatch raised as a DataError.
    """
    from sklearn.utils.validation import validate_data

    try:
        validate_data(estimator, X, reset=reset, skip_check_array=True)
    except ValueError as err:
        raise DataError(str(err)) from None
