"""Declarative hyper-parameter constraints, checked at ``fit`` (not in ``__init__``).

Each estimator lists, per parameter, the constraints a value may satisfy; the
first one that accepts it wins. Messages name the class, the parameter, the
bad value and what would be accepted.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from matfact.exceptions import ParameterError

__all__ = ["Interval", "Options", "Instance", "validate_params", "check_random_state",
           "check_n", "check_n_threads", "check_fraction", "check_item_count", "check_seed"]


#: The largest unbounded integer parameter accepted (n_factors, max_iter, ...): beyond it
#: numba kernels and allocations fail with OverflowError/ValueError instead of a clear error.
INT_MAX = 2**31 - 1


class Interval:
    """A real or integral range, e.g. ``Interval(int, 1, None)`` for k ≥ 1.

    Parameters
    ----------
    kind : {int, float}
        ``int`` accepts integers only (at most :data:`INT_MAX` when unbounded
        above); ``float`` accepts any real number. Booleans are never accepted.
    left, right : float or None
        Bounds; ``None`` is unbounded.
    closed : {"both", "left", "right", "neither"}, default="both"
    """

    def __init__(self, kind: type, left: float | None, right: float | None,
                 closed: str = "both") -> None:
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if self.kind is int and self.right is None and value > INT_MAX:
            return False  # sizes and counts reach int32 kernels and allocations
        if not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        kind = "an integer" if self.kind is int else "a number"
        bound = (lambda x: str(int(x))) if self.kind is int else (lambda x: f"{x:g}")
        lo = "-inf" if self.left is None else bound(self.left)
        hi = (str(INT_MAX) if self.kind is int else "inf") if self.right is None \
            else bound(self.right)
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and (self.right is not None
                                                          or self.kind is int) else ")"
        return f"{kind} in {lb}{lo}, {hi}{rb}"


class Options:
    """One of a fixed set of values (strings, ``None``, booleans)."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def accepts(self, value: Any) -> bool:
        return any(value is v or (type(value) is type(v) and value == v) for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class Instance:
    """An instance of the given type(s)."""

    def __init__(self, *types: type) -> None:
        self.types = types

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)) and bool not in self.types:
            return False
        return isinstance(value, self.types)

    def __str__(self) -> str:
        return "an instance of " + " or ".join(t.__name__ for t in self.types)


BOOLEAN = Options(True, False)
#: Seeds may be any non-negative integer NumPy takes (beyond INT_MAX too).
RANDOM_STATE = [Options(None), Interval(int, 0, 2**64 - 1), Instance(np.random.Generator)]
N_THREADS = [Options(None), Interval(int, 1, None)]


def validate_params(estimator: Any) -> None:
    """Check every parameter of ``estimator`` against its ``_parameter_constraints``."""
    name = type(estimator).__name__
    for param, rules in type(estimator)._parameter_constraints.items():
        value = getattr(estimator, param)
        if not any(rule.accepts(value) for rule in rules):
            allowed = " or ".join(str(rule) for rule in rules)
            raise ParameterError(f"{name}: {param} must be {allowed}; got {value!r}")


def check_random_state(random_state: Any) -> np.random.Generator:
    """One :class:`numpy.random.Generator` per fit, from a seed, ``None`` or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, numbers.Integral)
                                and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise ParameterError(f"random_state must be None, a non-negative int or a Generator; "
                         f"got {random_state!r}")


def check_n(n: Any, name: str = "n") -> int:
    """A list length ``n`` ≥ 1 (not a bool)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
        raise ParameterError(f"{name} must be an integer ≥ 1; got {n!r}")
    return int(n)


def check_n_threads(n_threads: int | None) -> int:
    """The number of threads to use: ``None`` means every core numba may use."""
    import numba

    if n_threads is None:
        return int(numba.config.NUMBA_NUM_THREADS)
    return int(min(n_threads, numba.config.NUMBA_NUM_THREADS))


def check_fraction(value: object, name: str) -> float:
    """``value`` as a float strictly between 0 and 1 (a held-out share), else ParameterError."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
            or not 0.0 < float(value) < 1.0):
        raise ParameterError(f"{name} must be a float in the open interval (0, 1), got {value!r}")
    return float(value)


def check_item_count(value: Any, name: str, n_items: int) -> int:
    """``value`` as an integer in [1, n_items] (how many of a model's items), else ParameterError."""
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer))
            or not 1 <= value <= n_items):
        raise ParameterError(f"{name} must be an integer in [1, {n_items}] (the model knows "
                             f"{n_items} items); got {value!r}")
    return int(value)


def check_seed(random_state: Any) -> int | None:
    """``random_state`` as an int ≥ 0 or None (a seed that must be reproducible), else ParameterError."""
    if random_state is None:
        return None
    if (isinstance(random_state, (bool, np.bool_))
            or not isinstance(random_state, (numbers.Integral, np.integer)) or random_state < 0):
        raise ParameterError(f"random_state must be an int ≥ 0 or None; got {random_state!r}")
    return int(random_state)
