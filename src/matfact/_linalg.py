"""Small dense helpers shared by the models (NumPy, no numba)."""

from __future__ import annotations

import threading
import weakref

import numpy as np

__all__ = ["gram64", "dot64", "ridge_gram", "forget_gram"]


def gram64(factors: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """``FᵀF`` accumulated in float64, a slice at a time.

    A float64 copy of the whole matrix would cost 2× its float32 size at the
    peak (≈ 50 MB per 100k rows at k = 64); float32 accumulation loses the
    digits a loss comparison needs.
    """
    gram = np.zeros((factors.shape[1], factors.shape[1]))
    for start in range(0, len(factors), chunk):
        part = factors[start:start + chunk].astype(np.float64, copy=False)
        gram += part.T @ part
    return gram


def dot64(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 20) -> float:
    """``Σ a ∘ b`` over all elements, accumulated in float64 a slice at a time."""
    a, b = a.ravel(), b.ravel()
    total = 0.0
    for start in range(0, a.size, chunk):
        total += float(np.dot(a[start:start + chunk].astype(np.float64, copy=False),
                              b[start:start + chunk].astype(np.float64, copy=False)))
    return total


# ---------------------------------------------------------------- the kept Gram matrices
#: ``id(factors)`` → (weak reference to ``factors``, reg, dtype, ``FᵀF + reg·I``).
_GRAMS: dict[int, tuple[weakref.ref, float, np.dtype, np.ndarray]] = {}
_GRAMS_LOCK = threading.RLock()  # re-entrant: a freed array's callback may run under it
#: ``id(factors)`` → token of the Gram being computed for it; :func:`forget_gram` drops
#: the token, so a Gram computed while its array was being written is not kept (per
#: array: writes to other arrays, e.g. a server's user updates, do not stop the caching).
_IN_FLIGHT: dict[int, object] = {}


def ridge_gram(factors: np.ndarray, reg: float = 0.0, dtype: type = np.float64) -> np.ndarray:
    """``FᵀF + reg·I`` (accumulated in float64, returned read-only in ``dtype``), kept per array.

    Fold-in needs the Gram matrix of every item's factors (Hu et al.'s
    ``YᵀY``): O(n_items·k²) per call, milliseconds on a large catalogue, for a
    matrix that only changes when the factors do. It is kept for the array object
    ``factors`` until that array is freed or :func:`forget_gram` is called on it,
    which every model code that writes factors in place must do (the ALS
    half-step, the Dask engine's, ``_store_row``, the rollback of a failed update;
    a new array needs nothing): a kept Gram of
    changed factors would be a silently wrong answer. Keyed by the array, not the
    model, so copies of a model that share an array share its Gram, and nothing is
    added to the model's state (saving, pickling and ``vars`` see no change).
    """
    key = id(factors)
    dtype = np.dtype(dtype)
    entry = _GRAMS.get(key)
    if (entry is not None and entry[0]() is factors and entry[1] == reg
            and entry[2] == dtype and entry[3].shape[0] == factors.shape[1]):
        return entry[3]
    token = object()
    with _GRAMS_LOCK:
        _IN_FLIGHT[key] = token
    try:
        gram = gram64(factors)
        gram[np.diag_indices_from(gram)] += reg
        gram = gram.astype(dtype, copy=False)
        gram.flags.writeable = False
    except BaseException:
        with _GRAMS_LOCK:
            if _IN_FLIGHT.get(key) is token:
                del _IN_FLIGHT[key]
        raise
    with _GRAMS_LOCK:
        if _IN_FLIGHT.get(key) is token:  # else the array was written meanwhile
            del _IN_FLIGHT[key]
            _GRAMS[key] = (weakref.ref(factors, _dropper(key)), reg, dtype, gram)
    return gram


def _dropper(key: int):
    def drop(ref: weakref.ref) -> None:
        # The array is being freed: its id may be reused by the next array.
        with _GRAMS_LOCK:
            entry = _GRAMS.get(key)
            if entry is not None and entry[0] is ref:
                del _GRAMS[key]
    return drop


def forget_gram(factors: np.ndarray | None) -> None:
    """Drop the Gram kept (or being computed) for ``factors``; call after writing it in place."""
    if factors is None:
        return
    with _GRAMS_LOCK:
        _GRAMS.pop(id(factors), None)
        _IN_FLIGHT.pop(id(factors), None)
