"""Small dense helpers shared by the models (NumPy, no numba)."""

from __future__ import annotations

import numpy as np

__all__ = ["gram64", "dot64"]


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
