"""Data: the :class:`Interactions` model, id maps, datasets and synthetic data."""

from matfact.data.features import FeatureEncoder
from matfact.data.interactions import IdIndex, Interactions

__all__ = ["FeatureEncoder", "IdIndex", "Interactions"]
