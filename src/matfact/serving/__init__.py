"""The recommendation service: ``create_app`` (FastAPI), the rating log and the top-k index.

FastAPI, uvicorn and prometheus-client are the ``serve`` extra
(``pip install 'matfact[serve]'``); importing this package does not load them.
"""

from matfact.serving.index import TopKIndex
from matfact.serving.service import ModelService
from matfact.serving.store import Rating, RatingLogUnavailable, RatingStore

__all__ = ["ModelService", "Rating", "RatingLogUnavailable", "RatingStore", "TopKIndex",
           "create_app"]


def create_app(*args, **kwargs):
    """See :func:`matfact.serving.app.create_app`."""
    from matfact.serving.app import create_app as build

    return build(*args, **kwargs)
