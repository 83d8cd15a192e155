"""The command line's names of the models (``biased_mf`` for ``BiasedMF``).

Standard library only, so ``--help`` lists the models without importing them.
"""

from __future__ import annotations

import re

__all__ = ["MODEL_NAMES", "cli_name"]

#: The ``--model`` names, as the docs spell them; help lists them without importing the
#: models (tests/cli checks this list against ``MODEL_REGISTRY``).
MODEL_NAMES = ("als", "baseline", "bayesian_mf", "biased_mf", "bpr", "hybrid_mf",
               "implicit_als", "nmf", "popularity", "pure_svd", "svd_plus_plus")


def cli_name(class_name: str) -> str:
    """A model class's command-line name: ``BiasedMF`` → ``biased_mf``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", class_name).lower()
