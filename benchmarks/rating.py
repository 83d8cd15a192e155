"""Rating prediction on MovieLens 100K: matfact models against their peers, RMSE and fit time.

Every :data:`CASES` entry pairs a matfact model with a peer model; both are fitted on
exactly the same training rows, predict exactly the same test rows, and are scored by the
same function (:func:`matfact.evaluation.metrics.rmse`). Add a comparison by appending a
:class:`Case` (and, for a new peer library, a :class:`Peer` to :data:`PEERS`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

import matfact
from benchmarks.common import (
    environment,
    fmt_ratio,
    fmt_seconds,
    load_ml100k,
    print_tables,
    timed,
)
from matfact.evaluation.metrics import rmse

__all__ = ["Peer", "PEERS", "Case", "CASES", "PROTOCOL", "run"]

N_FOLDS = 5
FOLD_SEED = 0
FIXED_SEED = 42
REPEATS = 3


# ------------------------------------------------------------------------------------ peers
class Peer(NamedTuple):
    """How to train and query one peer library.

    Attributes
    ----------
    name : str
        Shown in the tables, e.g. ``"Surprise"``.
    module : str
        Import name, checked before use (``"surprise"``).
    package : str
        Distribution name, for the version (``"scikit-surprise"``).
    prepare : callable
        ``prepare(frame, rating_scale)`` → the peer's training object, from the training
        rows as a DataFrame with ``user``, ``item``, ``rating`` columns. Timed apart from fit.
    fit : callable
        ``fit(model, prepared)`` → the fitted model.
    predict : callable
        ``predict(model, users, items)`` → ndarray of float predictions, from raw ids.
    """

    name: str
    module: str
    package: str
    prepare: Callable[[pd.DataFrame, tuple[float, float]], Any]
    fit: Callable[[Any, Any], Any]
    predict: Callable[[Any, np.ndarray, np.ndarray], np.ndarray]


def _surprise_prepare(frame: pd.DataFrame, rating_scale: tuple[float, float]) -> Any:
    from surprise import Dataset, Reader

    data = Dataset.load_from_df(frame[["user", "item", "rating"]],
                                Reader(rating_scale=rating_scale))
    return data.build_full_trainset()


def _surprise_fit(model: Any, trainset: Any) -> Any:
    return model.fit(trainset)


def _surprise_predict(model: Any, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    # Surprise predicts one raw (user, item) pair at a time; unknown ids get its own fallback.
    pairs = zip(users.tolist(), items.tolist(), strict=True)
    return np.fromiter((model.predict(u, i).est for u, i in pairs), dtype=np.float64,
                       count=len(users))


PEERS: dict[str, Peer] = {
    "Surprise": Peer("Surprise", "surprise", "scikit-surprise",
                     _surprise_prepare, _surprise_fit, _surprise_predict),
}


# ------------------------------------------------------------------------------------ cases
def _surprise_baseline_only() -> Any:
    from surprise import BaselineOnly

    return BaselineOnly(verbose=False)  # defaults: ALS, reg_i=10, reg_u=15, 10 epochs


class Case(NamedTuple):
    """One row of the comparison: a matfact model against a peer's.

    Attributes
    ----------
    name : str
        The matfact model as shown, e.g. ``"Baseline()"``.
    make_matfact : callable
        Returns a fresh, unfitted matfact model.
    peer : str
        A key of :data:`PEERS`.
    peer_model : str
        The peer's model as shown, e.g. ``"BaselineOnly()"``.
    make_peer : callable
        Returns a fresh, unfitted peer model.
    reference_rmse : float or None, default=None
        The peer's RMSE on the fixed 80/20 split as quoted in the issue, for comparison.
    """

    name: str
    make_matfact: Callable[[], Any]
    peer: str
    peer_model: str
    make_peer: Callable[[], Any]
    reference_rmse: float | None = None


CASES: list[Case] = [
    Case("Baseline()", matfact.Baseline, "Surprise", "BaselineOnly()",
         _surprise_baseline_only, reference_rmse=0.9395),
]

PROTOCOL = f"""\
- **Data**: MovieLens 100K (`u.data`, 100,000 ratings 1–5, 943 users × 1,682 items), loaded
  with `matfact.load_dataset("ml-100k")` in file order.
- **Cross-validation**: `matfact.kfold(data, n_splits={N_FOLDS}, random_state={FOLD_SEED})`,
  i.e. `numpy.array_split(numpy.random.default_rng({FOLD_SEED}).permutation(100000), {N_FOLDS})`
  gives the test positions of each fold (about 80,000 training and 20,000 test ratings).
  `--quick` runs only the first 2 of these 5 folds, with 1 repeat.
- **Fixed split**: `matfact.train_test_split(data, 0.2, "random", random_state={FIXED_SEED})`
  (80,000 / 20,000 ratings).
- **Same rows for both libraries**: matfact fits the split's training `Interactions`; the peer
  gets the same rows from `train.to_pandas()[["user", "item", "rating"]]` (Surprise:
  `Dataset.load_from_df(..., Reader(rating_scale=(1, 5))).build_full_trainset()`). Both predict
  the test rows by raw `(user, item)` id (each library's own fallback for ids unseen in
  training, clipping to [1, 5]), and both are scored by `matfact.evaluation.metrics.rmse`.
- **Models**: default parameters on both sides. matfact `Baseline()`: ALS on user/item biases,
  `reg_user=15`, `reg_item=10`, `max_iter=10`; Surprise `BaselineOnly()`: ALS, `reg_u=15`,
  `reg_i=10`, `n_epochs=10`.
- **Timing**: wall clock (`time.perf_counter`), single process, after `gc.collect()`. Each fit
  is repeated {REPEATS} times per split (fresh model each time) and the median is kept; the
  cross-validation figure is the median over folds of those per-fold medians. matfact's fit
  time includes `fit`'s own preprocessing of the `Interactions` (vocabulary, seen-items
  matrix); the peer's preparation of its training object (Surprise's trainset building) is
  timed separately and *not* included in its fit time. Prediction of the test rows is timed
  the same way. The speed ratio is peer time / matfact time (> 1: matfact is faster).
- **Spread**: RMSE mean ± standard deviation over folds (population std, `ddof=0`, as
  Surprise's `cross_validate`).
"""


# ------------------------------------------------------------------------------------ measuring
def _missing_peer(peer: Peer) -> str | None:
    if importlib.util.find_spec(peer.module) is None:
        return (f"{peer.name} is not installed (pip install {peer.package}, "
                f"or `make bench`); its columns are empty")
    return None


def _measure(case: Case, train: Any, test: Any, repeats: int) -> dict[str, Any]:
    """Fit and score ``case`` on one split, both libraries on the same rows."""
    users, items, truth = test.users, test.items, test.ratings
    fit_time, model = timed(lambda: case.make_matfact().fit(train, progress=False), repeats)
    predict_time, predictions = timed(lambda: model.predict(users, items), repeats)
    out: dict[str, Any] = {
        "n_train": train.nnz,
        "n_test": test.nnz,
        "matfact": {"rmse": rmse(truth, predictions), "fit": fit_time.to_dict(),
                    "predict": predict_time.to_dict()},
        "peer": None,
    }
    peer = PEERS[case.peer]
    if _missing_peer(peer):
        return out
    frame = train.to_pandas()
    prepare_time, prepared = timed(lambda: peer.prepare(frame, train.rating_scale), repeats)
    peer_fit_time, peer_model = timed(lambda: peer.fit(case.make_peer(), prepared), repeats)
    peer_predict_time, peer_predictions = timed(
        lambda: peer.predict(peer_model, users, items), repeats)
    out["peer"] = {"rmse": rmse(truth, peer_predictions), "prepare": prepare_time.to_dict(),
                   "fit": peer_fit_time.to_dict(), "predict": peer_predict_time.to_dict()}
    out["max_abs_prediction_difference"] = float(np.abs(predictions - peer_predictions).max())
    return out


def _median_fit(measures: list[dict[str, Any]], side: str, what: str = "fit") -> float | None:
    if any(m[side] is None for m in measures):
        return None
    return float(np.median([m[side][what]["median_s"] for m in measures]))


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _rmse(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _mean_std(values: list[float] | None) -> str:
    if not values:
        return "—"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def _summarize(case: Case, folds: list[dict[str, Any]], fixed: dict[str, Any]) -> dict[str, Any]:
    has_peer = all(m["peer"] is not None for m in folds + [fixed])
    matfact_fit = _median_fit(folds, "matfact")
    peer_fit = _median_fit(folds, "peer")
    return {
        "case": case.name,
        "peer": case.peer,
        "peer_model": case.peer_model,
        "cv": {
            "n_folds": len(folds),
            "matfact_rmse": [m["matfact"]["rmse"] for m in folds],
            "peer_rmse": [m["peer"]["rmse"] for m in folds] if has_peer else None,
            "matfact_fit_median_s": matfact_fit,
            "peer_fit_median_s": peer_fit,
            "peer_prepare_median_s": _median_fit(folds, "peer", "prepare"),
            "matfact_predict_median_s": _median_fit(folds, "matfact", "predict"),
            "peer_predict_median_s": _median_fit(folds, "peer", "predict"),
            "fit_speed_ratio": _ratio(peer_fit, matfact_fit),
        },
        "reference_rmse": case.reference_rmse,
        "folds": folds,
        "fixed": fixed,
    }


def _tables(summaries: list[dict[str, Any]], repeats: int, n_folds: int,
            notes: list[str]) -> list[dict[str, Any]]:
    of = f"median of {repeats}" if repeats > 1 else "1 run"
    cv_rows, fixed_rows, fold_rows = [], [], []
    for s in summaries:
        cv = s["cv"]
        pair = (s["case"], f"{s['peer']} {s['peer_model']}")
        cv_rows.append([
            *pair, _mean_std(cv["matfact_rmse"]), _mean_std(cv["peer_rmse"]),
            fmt_seconds(cv["matfact_fit_median_s"]), fmt_seconds(cv["peer_fit_median_s"]),
            fmt_ratio(cv["fit_speed_ratio"]), fmt_seconds(cv["peer_prepare_median_s"]),
        ])
        fixed, peer = s["fixed"], s["fixed"]["peer"]
        matfact_fit = fixed["matfact"]["fit"]["median_s"]
        peer_fit = peer["fit"]["median_s"] if peer else None
        fixed_rows.append([
            *pair, _rmse(fixed["matfact"]["rmse"]), _rmse(peer and peer["rmse"]),
            _rmse(s["reference_rmse"]), fmt_seconds(matfact_fit), fmt_seconds(peer_fit),
            fmt_ratio(_ratio(peer_fit, matfact_fit)),
        ])
        for fold, m in enumerate(s["folds"]):
            peer = m["peer"]
            matfact_fit = m["matfact"]["fit"]["median_s"]
            peer_fit = peer["fit"]["median_s"] if peer else None
            diff = m.get("max_abs_prediction_difference")
            fold_rows.append([
                s["case"], fold, f"{m['n_train']:,} / {m['n_test']:,}",
                _rmse(m["matfact"]["rmse"]), _rmse(peer and peer["rmse"]),
                "—" if diff is None else f"{diff:.1e}",
                fmt_seconds(matfact_fit), fmt_seconds(peer_fit),
                fmt_ratio(_ratio(peer_fit, matfact_fit)),
                fmt_seconds(peer and peer["prepare"]["median_s"]),
            ])
    note_text = " ".join(notes)
    return [
        {
            "title": f"ML-100K, {n_folds}-fold cross-validation",
            "columns": ["matfact", "peer", "RMSE matfact (mean ± std)", "RMSE peer (mean ± std)",
                        f"fit matfact ({of}, median over folds)",
                        f"fit peer ({of}, median over folds)",
                        "fit speed ratio (peer / matfact)",
                        f"peer trainset build ({of}, median over folds)"],
            "rows": cv_rows,
            "note": ("Speed ratio > 1 means matfact fits faster. The peer's trainset build is "
                     "not part of its fit time. " + note_text).strip(),
        },
        {
            "title": f"ML-100K, fixed 80/20 random split (random_state={FIXED_SEED})",
            "columns": ["matfact", "peer", "RMSE matfact", "RMSE peer",
                        "RMSE peer quoted in the issue", f"fit matfact ({of})",
                        f"fit peer ({of})", "fit speed ratio (peer / matfact)"],
            "rows": fixed_rows,
        },
        {
            "title": "Per fold",
            "columns": ["matfact", "fold", "train / test ratings", "RMSE matfact", "RMSE peer",
                        "max abs. prediction difference", f"fit matfact ({of})",
                        f"fit peer ({of})", "fit speed ratio (peer / matfact)",
                        f"peer trainset build ({of})"],
            "rows": fold_rows,
        },
    ]


def run(quick: bool = False) -> dict[str, Any]:
    """Run the rating suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        Only the first 2 of the 5 folds and a single repeat of each timing (a smoke test).

    Returns
    -------
    dict
        ``suite``, ``title``, ``quick``, ``environment``, ``protocol`` (markdown),
        ``tables`` (formatted, for :mod:`benchmarks.report`) and ``results`` (raw numbers).

    Raises
    ------
    BenchmarkSkipped
        If MovieLens 100K is not available.
    """
    env = environment()
    data = load_ml100k()
    repeats = 1 if quick else REPEATS
    splits = matfact.kfold(data, n_splits=N_FOLDS, random_state=FOLD_SEED)
    if quick:
        splits = splits[:2]
    fixed_train, fixed_test = matfact.train_test_split(data, 0.2, "random",
                                                       random_state=FIXED_SEED)
    notes = sorted({msg for case in CASES if (msg := _missing_peer(PEERS[case.peer]))})
    summaries = []
    for case in CASES:
        folds = []
        for fold, (train, test) in enumerate(splits):
            print(f"  {case.name} vs {case.peer} {case.peer_model}: fold {fold}", flush=True)
            folds.append(_measure(case, train, test, repeats))
        print(f"  {case.name} vs {case.peer} {case.peer_model}: fixed split", flush=True)
        fixed = _measure(case, fixed_train, fixed_test, repeats)
        summaries.append(_summarize(case, folds, fixed))
    if quick:
        notes.append(f"Quick run: {len(splits)} of {N_FOLDS} folds, 1 repeat.")
    result = {
        "suite": "rating",
        "title": "Rating prediction: RMSE and fit time on MovieLens 100K",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": _tables(summaries, repeats, len(splits), notes),
        "results": {"repeats": repeats, "cases": summaries},
    }
    print_tables(result)
    return result

