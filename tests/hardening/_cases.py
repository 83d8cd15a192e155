"""Counting generated cases, and telling a documented error from a crash.

A *case* is one generated input fed to a public entry point (one hypothesis
example, or one member of an explicit generated corpus). Each test calls
:func:`check` per case, so the count printed at the end of a run
(``hardening: N generated cases``) is what actually ran, not a configured bound.
A *crash* is any exception other than the documented ones:
:class:`~matfact.exceptions.MatfactError` and its subclasses (plus, where an
entry point documents it, ``NotImplementedError`` or ``FileNotFoundError``).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from matfact.exceptions import MatfactError, MatfactWarning

#: Cases run in this process, per area (read by the terminal summary), and how many of
#: them ended in a documented error (the rest returned a result that was then checked).
CASES: Counter[str] = Counter()
REFUSED: Counter[str] = Counter()
#: Cases that raised anything else (each also fails its test).
CRASHES: Counter[str] = Counter()

#: ``max_examples`` of the normal and the slow profile, per unit of work.
PROFILES = ("normal", "slow")


def profiles() -> list:
    """Parametrize a test over the two profiles, the second marked ``slow``."""
    return [pytest.param("normal", id="normal"),
            pytest.param("slow", id="slow", marks=pytest.mark.slow)]


def check(area: str, call: Callable[[], Any], *,
          also: tuple[type[BaseException], ...] = ()) -> tuple[Any, BaseException | None]:
    """Run one case: ``(result, None)``, or ``(None, error)`` for a documented error.

    Anything else propagates, and the test fails with the generated input shown
    by hypothesis (or by the corpus' parametrize id).
    """
    CASES[area] += 1
    with warnings.catch_warnings():
        # Warnings are part of the documented behaviour (and errors in the rest
        # of the suite); here only exceptions matter.
        warnings.simplefilter("ignore", MatfactWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return call(), None
        except (MatfactError, *also) as err:
            REFUSED[area] += 1
            return None, err
        except BaseException:
            CRASHES[area] += 1
            raise
