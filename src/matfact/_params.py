"""Declarative hyper-parameter constraints, checked at ``fit`` (not in ``__init__``).

Each estimator lists, per parameter, the constraints a value may satisfy; the
first one that accepts it wins. Messages name the class, the parameter, the
bad value and what would be accepted.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np

from matfact.exceptions import ParameterError

__all__ = ["HasParams", "Interval", "Options", "Instance", "validate_params", "check_random_state",
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


_NO_DEFAULT = inspect.Parameter.empty


class HasParams:
    """``get_params`` / ``set_params`` / ``repr`` from the constructor's signature.

    The parameter protocol of scikit-learn's ``BaseEstimator`` (so
    ``sklearn.base.clone``, grids and searches work on matfact models) without
    importing scikit-learn, which alone takes about half a second: a command
    that loads a model and answers must start in well under a second. The
    transformers meant for scikit-learn pipelines (``NMF``, ``TruncatedSVD``)
    also inherit ``BaseEstimator`` itself, for its tags and checks.
    """

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The constructor's keyword parameters, sorted (as scikit-learn lists them)."""
        init = cls.__init__
        if init is object.__init__:
            return []
        parameters = inspect.signature(init).parameters.values()
        return sorted(p.name for p in parameters if p.name != "self"
                      and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their values (``deep``: nested ones as ``a__b``)."""
        out: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{key}", inner)
                           for key, inner in value.get_params(deep=True).items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> HasParams:
        """Set parameters by name (``a__b`` for a nested estimator's); returns ``self``.

        Raises
        ------
        ParameterError
            For a name the constructor does not take.
        """
        valid = self.get_params(deep=False)
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, nest, inner = key.partition("__")
            if name not in valid:
                raise ParameterError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                     f"it takes {sorted(valid)}")
            if nest:
                nested.setdefault(name, {})[inner] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, inner in nested.items():
            valid[name].set_params(**inner)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, _NO_DEFAULT)
            if default is not _NO_DEFAULT and _same(value, default):
                continue
            shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _same(value: Any, default: Any) -> bool:
    """Whether a parameter still holds its default (arrays and NaN compared sensibly)."""
    if value is default:
        return True
    if type(value) is not type(default) or isinstance(value, np.ndarray):
        return False
    try:
        return bool(value == default) or (value != value and default != default)
    except (TypeError, ValueError):
        return False
