"""Saving and loading models: kept as the public path of :mod:`matfact.models.persistence`.

The code lives with the models it writes (``matfact.models.persistence``), so
``models`` never imports a module above it; this module re-exports its names.
"""

from matfact.models.persistence import (  # noqa: F401
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_META_BYTES,
    load_model,
    save_model,
)

__all__ = ["save_model", "load_model", "FORMAT_NAME", "FORMAT_VERSION"]
