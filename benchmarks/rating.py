"""Rating prediction on MovieLens 100K: matfact models against their peers, RMSE and fit time.

Every :data:`CASES` entry pairs a matfact model with a peer model; both are fitted on
exactly the same training rows, predict exactly the same test rows, and are scored by the
same function (:func:`matfact.evaluation.metrics.rmse`). Add a comparison by appending a
:class:`Case` (and, for a new peer library, a :class:`Peer` to :data:`PEERS`). A case may
carry goals (an RMSE ceiling, a fit speed-up); the tables say whether each is met.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

import matfact
from benchmarks.common import (
    QUIET_CORES,
    QUIET_WAIT_S,
    OtherCpu,
    environment,
    fmt_ratio,
    fmt_seconds,
    load_ml100k,
    print_tables,
    timed,
    wait_for_quiet,
)
from matfact.evaluation.metrics import rmse

__all__ = ["Peer", "PEERS", "Case", "CASES", "PROTOCOL", "run"]

N_FOLDS = 5
FOLD_SEED = 0
FIXED_SEED = 42
REPEATS = 3
#: ``random_state`` of every seeded model, matfact's and the peers'.
SEED = 0


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


def _surprise_svd(**params: Any) -> Callable[[], Any]:
    def make() -> Any:
        from surprise import SVD

        return SVD(random_state=SEED, verbose=False, **params)

    return make


def _surprise_nmf() -> Any:
    from surprise import NMF

    return NMF(random_state=SEED, verbose=False)  # defaults: 15 factors, 50 epochs, unbiased


def _surprise_svdpp() -> Any:
    from surprise import SVDpp

    return SVDpp(random_state=SEED, verbose=False)  # defaults: k=20, 20 epochs, lr 0.007


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
    reference_fit_s : float or None, default=None
        The peer's fit time on that split as quoted in the issue (seconds).
    goal_rmse : float or None, default=None
        Goal: matfact's RMSE at most this.
    goal_speedup : float or None, default=None
        Goal: matfact fits at least this many times faster than the peer, at an RMSE no
        worse than the peer's.
    peer_repeats : int or None, default=None
        Timed runs of the peer's fit and predict per split; None: as many as matfact's.
        1 for slow peers (their single fit is the time).
    quick_folds : int or None, default=None
        With ``--quick``, use only this many folds (instead of the quick run's 2).
    """

    name: str
    make_matfact: Callable[[], Any]
    peer: str
    peer_model: str
    make_peer: Callable[[], Any]
    reference_rmse: float | None = None
    reference_fit_s: float | None = None
    goal_rmse: float | None = None
    goal_speedup: float | None = None
    peer_repeats: int | None = None
    quick_folds: int | None = None


_BIASEDMF_100 = dict(n_factors=100, max_iter=100, reg=0.1, learning_rate=0.005)
_SVD_100 = dict(n_factors=100, n_epochs=100, reg_all=0.1, lr_all=0.005)


def _call(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in params.items())


_NOT_SHOWN = ("random_state", "n_threads", "early_stopping", "patience", "decay", "tol")


def _defaults(model: Any) -> str:
    """A model's parameters as markdown code, from its ``get_params()`` (some omitted)."""
    params = model.get_params()
    return ", ".join(f"`{name}={value!r}`" for name, value in params.items()
                     if name not in _NOT_SHOWN and not (name == "biased" and value is True))


CASES: list[Case] = [
    Case("Baseline()", matfact.Baseline, "Surprise", "BaselineOnly()",
         _surprise_baseline_only, reference_rmse=0.9395),
    Case("BiasedMF()", lambda: matfact.BiasedMF(random_state=SEED), "Surprise", "SVD()",
         _surprise_svd(), reference_rmse=0.9368, goal_rmse=0.930),
    Case(f"BiasedMF({_call(_BIASEDMF_100)})",
         lambda: matfact.BiasedMF(random_state=SEED, **_BIASEDMF_100), "Surprise",
         f"SVD({_call(_SVD_100)})", _surprise_svd(**_SVD_100), reference_rmse=0.9094,
         goal_rmse=0.905),
    Case("SVDPlusPlus()", lambda: matfact.SVDPlusPlus(random_state=SEED), "Surprise", "SVDpp()",
         _surprise_svdpp, reference_rmse=0.9191, reference_fit_s=10.3, goal_rmse=0.915,
         goal_speedup=10.0, peer_repeats=1, quick_folds=1),
    Case("NMF()", lambda: matfact.NMF(random_state=SEED), "Surprise", "NMF()", _surprise_nmf,
         goal_rmse=0.940),
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
- **Models** (every seeded model with `random_state={SEED}`, on both sides):
  - matfact `Baseline()` ({_defaults(matfact.Baseline())}; ALS on user/item biases) vs
    Surprise `BaselineOnly()` (ALS, `reg_u=15`, `reg_i=10`, `n_epochs=10`).
  - matfact `BiasedMF()` defaults ({_defaults(matfact.BiasedMF())}; `n_threads=None`:
    every core) vs Surprise `SVD()` defaults (`n_factors=100`, `n_epochs=20`, `lr_all=0.005`,
    `reg_all=0.02`, `init_std_dev=0.1`).
  - matfact `BiasedMF({_call(_BIASEDMF_100)})`, other parameters as above, vs Surprise
    `SVD({_call(_SVD_100)})`.
  - matfact `SVDPlusPlus()` defaults ({_defaults(matfact.SVDPlusPlus())}; its epochs run on
    one thread) vs Surprise `SVDpp()` defaults (`n_factors=20`, `n_epochs=20`,
    `lr_all=0.007`, `reg_all=0.02`).
  (matfact's defaults are read from the installed version when the suite runs.)
- **Goals** (from the issue): `BiasedMF()` RMSE ≤ 0.930; the 100-factor `BiasedMF` RMSE
  ≤ 0.905; `SVDPlusPlus()` RMSE ≤ 0.915 and a fit ≥ 10× faster than Surprise's `SVDpp()` at
  an RMSE no worse than its. Each table judges them on its own figures: the
  cross-validation table on the mean RMSE over folds and the ratio of median fit times, the
  fixed-split table on that split's RMSE and fit times. ✓ met, ✗ not met.
- **Timing**: wall clock (`time.perf_counter`), single process, after `gc.collect()`. Each fit
  is repeated {REPEATS} times per split (fresh model each time) and the median is kept; the
  cross-validation figure is the median over folds of those per-fold medians. **Exception:
  Surprise `SVDpp()`** (about 10 s a fit) is fitted, and predicts, **once per split** (no
  repeats); its trainset build is still repeated. matfact's fit time includes `fit`'s own
  preprocessing of the `Interactions` (vocabulary, seen-items matrix, block layout) and, for
  the first fit of a model in the process, loading its numba kernel from the cache (the
  median of {REPEATS} leaves that out); the peer's preparation of its training object
  (Surprise's trainset building) is timed separately and *not* included in its fit time.
  Prediction of the test rows is timed the same way. The speed ratio is peer time / matfact
  time (> 1: matfact is faster). `--quick` fits the `SVDPlusPlus()` case on the first fold
  only (and the fixed split).
- **Shared machine**: before each split of each case the run waits, up to {QUIET_WAIT_S:.0f} s,
  until other processes use less than {QUIET_CORES:g} cores over a 1 s check (`--quick`
  does not wait), and it records the CPU they used while each library was measured (the
  machine's busy time in `/proc/stat` minus this process's own `os.times()`, per second of
  wall time). matfact's `BiasedMF` runs its epochs on both cores in 16 short parallel steps
  each, so a competing job can slow its fits many times over; the single-threaded peers and
  `SVDPlusPlus` are hit far less.
- **Spread**: RMSE mean ± standard deviation over folds (population std, `ddof=0`, as
  Surprise's `cross_validate`).
"""


# ------------------------------------------------------------------------------------ measuring
def _missing_peer(peer: Peer) -> str | None:
    if importlib.util.find_spec(peer.module) is None:
        return (f"{peer.name} is not installed (pip install {peer.package}, "
                f"or `make bench`); its columns are empty")
    return None


def _measure(case: Case, train: Any, test: Any, repeats: int, peer_repeats: int,
             wait: bool) -> dict[str, Any]:
    """Fit and score ``case`` on one split, both libraries on the same rows.

    With ``wait``, first wait (up to :data:`~benchmarks.common.QUIET_WAIT_S`) for other
    processes to leave the CPUs; either way, record how busy they kept them during each side.
    """
    users, items, truth = test.users, test.items, test.ratings
    quiet = wait_for_quiet() if wait else None
    meter = OtherCpu()
    fit_time, model = timed(lambda: case.make_matfact().fit(train, progress=False), repeats)
    predict_time, predictions = timed(lambda: model.predict(users, items), repeats)
    out: dict[str, Any] = {
        "n_train": train.nnz,
        "n_test": test.nnz,
        "matfact": {"rmse": rmse(truth, predictions), "fit": fit_time.to_dict(),
                    "predict": predict_time.to_dict()},
        "peer": None,
        "quiet_wait": quiet,
        "others_cores": {"matfact": meter.cores(), "peer": None},
    }
    peer = PEERS[case.peer]
    if _missing_peer(peer):
        return out
    meter = OtherCpu()
    frame = train.to_pandas()
    prepare_time, prepared = timed(lambda: peer.prepare(frame, train.rating_scale), repeats)
    peer_fit_time, peer_model = timed(lambda: peer.fit(case.make_peer(), prepared),
                                      peer_repeats)
    peer_predict_time, peer_predictions = timed(
        lambda: peer.predict(peer_model, users, items), peer_repeats)
    out["peer"] = {"rmse": rmse(truth, peer_predictions), "prepare": prepare_time.to_dict(),
                   "fit": peer_fit_time.to_dict(), "predict": peer_predict_time.to_dict()}
    out["others_cores"]["peer"] = meter.cores()
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


def _goal_text(case: Case) -> str:
    goals = []
    if case.goal_rmse is not None:
        goals.append(f"RMSE ≤ {case.goal_rmse:.3f}")
    if case.goal_speedup is not None:
        goals.append(f"fit ≥ {case.goal_speedup:g}× faster at ≤ peer RMSE")
    return "; ".join(goals) or "—"


def _goals_met(case: Case, matfact_rmse: float, peer_rmse: float | None,
               speed_ratio: float | None) -> dict[str, bool | None]:
    """Each goal of ``case`` → met (True / False), or None when the peer was not measured."""
    met: dict[str, bool | None] = {}
    if case.goal_rmse is not None:
        met["rmse"] = bool(matfact_rmse <= case.goal_rmse)
    if case.goal_speedup is not None:
        met["speed"] = (None if peer_rmse is None or speed_ratio is None else
                        bool(speed_ratio >= case.goal_speedup and matfact_rmse <= peer_rmse))
    return met


def _met_text(met: dict[str, bool | None]) -> str:
    if not met:
        return "—"
    marks = {True: "✓", False: "✗", None: "? (no peer)"}
    if len(met) == 1:
        return marks[next(iter(met.values()))]
    return ", ".join(f"{name} {marks[value]}" for name, value in met.items())


def _summarize(case: Case, folds: list[dict[str, Any]], fixed: dict[str, Any],
               peer_repeats: int) -> dict[str, Any]:
    has_peer = all(m["peer"] is not None for m in folds + [fixed])
    matfact_fit = _median_fit(folds, "matfact")
    peer_fit = _median_fit(folds, "peer")
    matfact_rmse = [m["matfact"]["rmse"] for m in folds]
    peer_rmse = [m["peer"]["rmse"] for m in folds] if has_peer else None
    fixed_peer_fit = fixed["peer"]["fit"]["median_s"] if has_peer else None
    return {
        "case": case.name,
        "peer": case.peer,
        "peer_model": case.peer_model,
        "peer_repeats": peer_repeats,
        "goal": _goal_text(case),
        "goals_met_cv": _goals_met(case, float(np.mean(matfact_rmse)),
                                   float(np.mean(peer_rmse)) if has_peer else None,
                                   _ratio(peer_fit, matfact_fit)),
        "goals_met_fixed": _goals_met(
            case, fixed["matfact"]["rmse"], fixed["peer"]["rmse"] if has_peer else None,
            _ratio(fixed_peer_fit, fixed["matfact"]["fit"]["median_s"])),
        "cv": {
            "n_folds": len(folds),
            "matfact_rmse": matfact_rmse,
            "peer_rmse": peer_rmse,
            "matfact_fit_median_s": matfact_fit,
            "peer_fit_median_s": peer_fit,
            "peer_prepare_median_s": _median_fit(folds, "peer", "prepare"),
            "matfact_predict_median_s": _median_fit(folds, "matfact", "predict"),
            "peer_predict_median_s": _median_fit(folds, "peer", "predict"),
            "fit_speed_ratio": _ratio(peer_fit, matfact_fit),
        },
        "reference_rmse": case.reference_rmse,
        "reference_fit_s": case.reference_fit_s,
        "folds": folds,
        "fixed": fixed,
    }


def _others(measure: dict[str, Any]) -> str:
    cores = measure.get("others_cores") or {}
    return " / ".join("—" if cores.get(side) is None else f"{cores[side]:.2f}"
                      for side in ("matfact", "peer"))


def _contention_note(summaries: list[dict[str, Any]]) -> str:
    measures = [m for s in summaries for m in [*s["folds"], s["fixed"]]]
    values = [v for m in measures for v in (m.get("others_cores") or {}).values()
              if v is not None]
    if not values:
        return ""
    text = (f"Other processes' CPU use during the timed runs (cores, from /proc/stat, per "
            f"library and split): median {np.median(values):.2f}, max {max(values):.2f}.")
    waited = [m["quiet_wait"] for m in measures if m.get("quiet_wait")]
    if waited:
        timed_out = sum(not w["quiet"] for w in waited)
        text += (f" Each split first waited up to {QUIET_WAIT_S:.0f} s for them to drop below "
                 f"{QUIET_CORES:g} cores; the wait timed out before {timed_out} of "
                 f"{len(waited)} splits.")
    return text


def _runs(repeats: int) -> str:
    return f"median of {repeats}" if repeats > 1 else "1 run"


def _tables(summaries: list[dict[str, Any]], repeats: int, n_folds: int,
            notes: list[str]) -> list[dict[str, Any]]:
    of = _runs(repeats)
    exceptions = [f"{s['peer_model']}: {_runs(s['peer_repeats'])}" for s in summaries
                  if s["peer_repeats"] != repeats]
    peer_of = "; ".join([of, *exceptions])
    cv_rows, fixed_rows, fold_rows = [], [], []
    for s in summaries:
        cv = s["cv"]
        pair = (s["case"], f"{s['peer']} {s['peer_model']}")
        cv_rows.append([
            *pair, _mean_std(cv["matfact_rmse"]), _mean_std(cv["peer_rmse"]),
            fmt_seconds(cv["matfact_fit_median_s"]), fmt_seconds(cv["peer_fit_median_s"]),
            fmt_ratio(cv["fit_speed_ratio"]), fmt_seconds(cv["peer_prepare_median_s"]),
            s["goal"], _met_text(s["goals_met_cv"]),
        ])
        fixed, peer = s["fixed"], s["fixed"]["peer"]
        matfact_fit = fixed["matfact"]["fit"]["median_s"]
        peer_fit = peer["fit"]["median_s"] if peer else None
        fixed_rows.append([
            *pair, _rmse(fixed["matfact"]["rmse"]), _rmse(peer and peer["rmse"]),
            _rmse(s["reference_rmse"]), fmt_seconds(matfact_fit), fmt_seconds(peer_fit),
            fmt_seconds(s["reference_fit_s"]), fmt_ratio(_ratio(peer_fit, matfact_fit)),
            s["goal"], _met_text(s["goals_met_fixed"]), _others(fixed),
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
                fmt_seconds(peer and peer["prepare"]["median_s"]), _others(m),
            ])
    notes = [*notes, _contention_note(summaries)]
    note_text = " ".join(notes)
    goal_note = ("Goals are judged on this table's figures: the mean RMSE over folds and the "
                 "ratio of the median fit times.")
    return [
        {
            "title": f"ML-100K, {n_folds}-fold cross-validation",
            "columns": ["matfact", "peer", "RMSE matfact (mean ± std)", "RMSE peer (mean ± std)",
                        f"fit matfact ({of}, median over folds)",
                        f"fit peer ({peer_of}, median over folds)",
                        "fit speed ratio (peer / matfact)",
                        f"peer trainset build ({of}, median over folds)", "goal", "met"],
            "rows": cv_rows,
            "note": ("Speed ratio > 1 means matfact fits faster. The peer's trainset build is "
                     "not part of its fit time. " + goal_note + " " + note_text).strip(),
        },
        {
            "title": f"ML-100K, fixed 80/20 random split (random_state={FIXED_SEED})",
            "columns": ["matfact", "peer", "RMSE matfact", "RMSE peer",
                        "RMSE peer quoted in the issue", f"fit matfact ({of})",
                        f"fit peer ({peer_of})", "fit peer quoted in the issue",
                        "fit speed ratio (peer / matfact)", "goal", "met",
                        "other processes' CPU, matfact / peer runs (cores)"],
            "rows": fixed_rows,
            "note": "Goals are judged on this split's RMSE and fit times.",
        },
        {
            "title": "Per fold",
            "columns": ["matfact", "fold", "train / test ratings", "RMSE matfact", "RMSE peer",
                        "max abs. prediction difference", f"fit matfact ({of})",
                        f"fit peer ({peer_of})", "fit speed ratio (peer / matfact)",
                        f"peer trainset build ({of})",
                        "other processes' CPU, matfact / peer runs (cores)"],
            "rows": fold_rows,
            "note": ("The max. abs. prediction difference is near zero only where both "
                     "libraries fit the same deterministic model (Baseline); the SGD models "
                     "differ by design (initialisation, update order, parameters)."),
        },
    ]


def run(quick: bool = False) -> dict[str, Any]:
    """Run the rating suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        Only the first 2 of the 5 folds (1 for a case with ``quick_folds=1``) and a single
        repeat of each timing (a smoke test).

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
        peer_repeats = min(repeats, case.peer_repeats or repeats)
        case_splits = splits[:case.quick_folds] if quick and case.quick_folds else splits
        if len(case_splits) < len(splits):
            notes.append(f"{case.name}: first {len(case_splits)} fold(s) only.")
        folds = []
        for fold, (train, test) in enumerate(case_splits):
            print(f"  {case.name} vs {case.peer} {case.peer_model}: fold {fold}", flush=True)
            folds.append(_measure(case, train, test, repeats, peer_repeats, not quick))
        print(f"  {case.name} vs {case.peer} {case.peer_model}: fixed split", flush=True)
        fixed = _measure(case, fixed_train, fixed_test, repeats, peer_repeats, not quick)
        summaries.append(_summarize(case, folds, fixed, peer_repeats))
    if quick:
        notes.insert(0, f"Quick run: {len(splits)} of {N_FOLDS} folds, 1 repeat.")
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

