"""The ``matfact`` command: ``demo``, ``train``, ``evaluate``, ``recommend``, ``serve``,
``retrain``, ``topics`` and ``images``.

Run ``matfact --help`` or ``matfact <command> --help``. What lives where:

- :mod:`~matfact.cli.entry`: :func:`main`, which parses, runs the command and
  turns every error into one line ``matfact: error: ...`` and an exit status
  (2 bad usage, 1 failure at run time, 130 after Ctrl-C; ``MATFACT_DEBUG=1``
  shows the traceback);
- :mod:`~matfact.cli.parser`: :func:`build_parser`, every command's options,
  the data options the commands share, and the examples of ``--help``;
- :mod:`~matfact.cli.output`: where commands write (results to stdout, chatter
  to stderr) and the text formatting they share;
- :mod:`~matfact.cli.data`: :func:`read_interactions`, ``--data`` as a dataset
  name or a file, on the one reader :mod:`matfact.data.readers`;
- :mod:`~matfact.cli.models`: ``train``, ``evaluate`` (and ``--models``
  comparisons), ``recommend``, and :func:`parse_params` for ``--param``;
- :mod:`~matfact.cli.serving`: ``serve`` and ``retrain`` with the rating-log glue;
- :mod:`~matfact.cli.demo`: ``demo`` and :data:`DEMO_MODELS`;
- :mod:`~matfact.cli.topics`, :mod:`~matfact.cli.images`: the commands of
  :mod:`matfact.apps.topics` and :mod:`matfact.apps.images`.

Everything heavy (pandas, numba, scikit-learn, matplotlib, FastAPI) is imported
inside the command functions, so building the parser and printing help stay
fast. Nothing in matfact imports this package but ``python -m matfact``.
"""

from __future__ import annotations

from typing import Any

from matfact.cli.data import read_interactions
from matfact.cli.demo import DEMO_MODELS
from matfact.cli.entry import main
from matfact.cli.models import parse_params
from matfact.cli.output import PROG
from matfact.cli.parser import build_parser
from matfact.exceptions import UsageError

__all__ = [
    "COLUMN_NAMES",  # noqa: F822 - loaded lazily by __getattr__
    "DEMO_MODELS",
    "PROG",
    "UsageError",
    "build_parser",
    "main",
    "parse_params",
    "read_interactions",
]


def __getattr__(name: str) -> Any:
    if name == "COLUMN_NAMES":  # lazily: importing matfact.data imports pandas
        from matfact.data.readers import COLUMN_NAMES

        return COLUMN_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
