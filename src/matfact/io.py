"""Saving and loading models, and writing batch recommendations: the public paths.

The code lives with the models (:mod:`matfact.models.persistence`,
:mod:`matfact.models.batch`), so ``models`` never imports a module above it;
this module re-exports its names.
"""

from matfact.models.batch import WrittenRecommendations, write_recommendations  # noqa: F401
from matfact.models.persistence import (  # noqa: F401
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_META_BYTES,
    load_model,
    save_model,
)

__all__ = ["save_model", "load_model", "write_recommendations", "WrittenRecommendations",
           "FORMAT_NAME", "FORMAT_VERSION"]
