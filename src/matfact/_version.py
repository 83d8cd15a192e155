"""The single source of matfact's version."""

__version__ = "0.1.0"
