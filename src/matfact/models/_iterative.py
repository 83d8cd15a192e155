"""The iteration loop shared by SGD and ALS models.

It runs one step (an SGD epoch or an ALS iteration) at a time and handles
what every iterative model needs around it: the loss history, the RMSE on a
validation set, early stopping with patience (keeping the best iteration),
a tolerance with :class:`~matfact.ConvergenceWarning`, a per-iteration
callback, progress (:func:`matfact._progress.progress_bar`: by default a bar only
when stderr is a terminal), and a clear error when the loss diverges.

What a step does stays with its model: the SGD epochs, schedule and
``partial_fit`` steps in :mod:`matfact.models.sgd`, the ALS iterations in
:mod:`matfact.models.als`; the time-aware state of the SGD models
(``time_decay``, ``time_bins``) in :class:`matfact.models._time.TimeAwareBiases`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from matfact._progress import progress_bar, progress_mode
from matfact.data.interactions import Interactions
from matfact.exceptions import ConvergenceWarning, DivergenceError, ParameterError
from matfact.models.base import FactorModel

__all__ = ["IterativeModel", "Callback"]

#: ``callback(iteration, info) -> bool | None``; returning True stops training.
Callback = Callable[[int, dict], Any]


class IterativeModel(FactorModel):
    """A :class:`FactorModel` fitted by repeated steps; see the module docstring.

    Subclasses call :meth:`_run_iterations` from ``_fit`` and may read
    ``early_stopping``, ``patience`` and ``tol`` parameters if they have them.
    """

    #: Whether a step returns a sum of squared errors (reported as train RMSE)
    #: or an objective value (reported as train loss).
    _step_returns_sse = True
    #: The epoch callback of the running fit; a loaded model (never fitted here) has none.
    _callback: Callback | None = None

    def fit(self, interactions: Interactions, *, validation: Interactions | None = None,
            progress: bool | str | None = None,
            callback: Callback | None = None) -> IterativeModel:
        """Learn from ``interactions``.

        Parameters
        ----------
        interactions : Interactions
        validation : Interactions, default=None
            Held-out ratings: their RMSE is recorded after each iteration, and
            with ``early_stopping=True`` training stops after ``patience``
            iterations without improvement, keeping the best iteration's factors.
        progress : bool, "bar", "lines" or None, default=None
            Report progress over iterations: None, a bar when stderr is a
            terminal (nothing in a log or a batch job); True (or ``"bar"``),
            always a bar; ``"lines"``, plain lines on stderr at most every 10
            seconds (``"ALS: iteration 10/50 (train=0.9123) 12 s"``); False,
            nothing.
        callback : callable, default=None
            ``callback(iteration, info)`` after each iteration; ``info`` holds
            ``train_rmse`` (or ``train_loss``), ``validation_rmse`` (or None),
            ``seconds`` and model-specific entries. Returning ``True`` stops.

        Returns
        -------
        self
        """
        if callback is not None and not callable(callback):
            raise ParameterError(f"callback must be callable, got {callback!r}")
        progress_mode(progress)  # a bad value fails before any work
        self._callback = callback
        try:
            return super().fit(interactions, validation=validation, progress=progress)
        finally:
            self._callback = None

    def _divergence_hint(self) -> str:
        return "use a larger reg"

    def _run_iterations(self, step: Callable[[int], tuple[float, dict]], total_weight: float,
                        validation: Interactions | None, progress: bool, name: str,
                        n_iter: int | None = None) -> None:
        early_stopping = getattr(self, "early_stopping", False)
        tol = getattr(self, "tol", None)
        if early_stopping and validation is None:
            raise ParameterError(f"{type(self).__name__}: early_stopping=True needs "
                                 f"validation= in fit()")
        val = None
        if validation is not None:
            if validation.is_implicit:
                raise ParameterError(f"{type(self).__name__}: validation= must hold explicit "
                                     f"ratings")
            val = (self.user_index_.get_indexer(validation.users),
                   self.item_index_.get_indexer(validation.items),
                   validation.ratings.astype(np.float64))
        key = "train_rmse" if self._step_returns_sse else "train_loss"
        history: dict[str, list[float]] = {key: [], "validation_rmse": []}
        best = (np.inf, None, 0)
        stale = 0
        converged = False
        self.n_iter_ = 0
        n_iter = self.max_iter if n_iter is None else n_iter
        bar = progress_bar(progress=progress, desc=name, total=n_iter)
        for iteration in range(n_iter):
            start = time.perf_counter()
            value, extra = step(iteration)
            seconds = time.perf_counter() - start
            train = float(np.sqrt(value / total_weight)) if self._step_returns_sse else float(value)
            first = history[key][0] if history[key] else None
            # A loss a hundred times its first value has run away even if still finite.
            if not np.isfinite(train) or (first is not None and train > 100.0 * max(first, 1e-3)):
                raise DivergenceError(
                    f"{type(self).__name__} diverged at iteration {iteration + 1} (loss is "
                    f"{train}); {self._divergence_hint()}"
                )
            previous = history[key][-1] if history[key] else None
            self.n_iter_ = iteration + 1
            history[key].append(train)
            val_rmse = None
            # A loss the model does not compute (ImplicitALS without calculate_loss) is
            # not shown as 0.0000.
            shown = {"train": f"{train:.4f}"} if self._computes_loss() else {}
            if val is not None:
                val_rmse = self._validation_rmse(*val)
                history["validation_rmse"].append(val_rmse)
                shown["validation"] = f"{val_rmse:.4f}"
            bar.set_postfix(**shown)
            bar.update()
            self.loss_history_ = history
            stop = False
            if self._callback is not None:
                info = {key: train, "validation_rmse": val_rmse, "seconds": seconds, **extra}
                stop = bool(self._callback(iteration, info))
            if early_stopping and val_rmse is not None:
                if val_rmse < best[0]:
                    best, stale = (val_rmse, self._snapshot(), iteration + 1), 0
                else:
                    stale += 1
                    if stale >= self.patience:
                        stop = True
            if tol is not None and previous is not None and abs(previous - train) <= tol * abs(
                    previous):
                converged = True
                stop = True
            if stop:
                break
        bar.close()
        self._finalize()
        if early_stopping and best[1] is not None and best[2] != self.n_iter_:
            self._restore(best[1])
            self.best_iter_ = best[2]
        elif early_stopping:
            self.best_iter_ = self.n_iter_
        self.loss_history_ = history
        # tol=0 asks for exactly max_iter iterations: nothing to warn about.
        if tol and not converged and self.n_iter_ == n_iter:
            warnings.warn(
                f"{type(self).__name__} stopped at max_iter={self.max_iter} before the loss "
                f"changed by less than tol={tol:g}; raise max_iter or tol",
                ConvergenceWarning, stacklevel=4,
            )

    def _validation_rmse(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> float:
        self._finalize()
        scores = self.clip_scores(np.asarray(self._score_pairs(users, items), dtype=np.float64))
        return float(np.sqrt(np.mean((scores - ratings) ** 2)))

    def _computes_loss(self) -> bool:
        """Whether ``step`` returns the training loss (else a placeholder not to report)."""
        return True

    def _finalize(self) -> None:
        """Make the scoring attributes reflect the current training state."""

    def _snapshot(self) -> dict[str, np.ndarray]:
        self._finalize()
        return {name: getattr(self, name).copy() for name in self._state_arrays()}

    def _restore(self, snapshot: dict[str, np.ndarray]) -> None:
        for name, value in snapshot.items():
            setattr(self, name, value)
        self._after_restore()

    def _after_restore(self) -> None:
        """Recompute derived attributes after a snapshot was put back."""

    def _state_arrays(self) -> list[str]:
        names = ["user_factors_", "item_factors_"]
        if self.user_bias_ is not None:
            names += ["user_bias_", "item_bias_"]
        return names

    def _init_factors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        factors = rng.standard_normal((n, self.n_factors), dtype=np.float32)
        factors *= np.float32(self.init_std)
        return factors
