"""``ImplicitALS()`` at its defaults on raw counts, against its tuner and a tuned implicit.

Issue 20: on play counts the old defaults (linear confidence ``1 + 2w``) barely beat
popularity. ``confidence="auto"`` now picks the transform from the weights' quantiles. On
the shared play-count and event sets (Steam hours, Retailrocket events) and on ML-100K
(binary), each on the same per-user split, this suite scores:

- ``ImplicitALS(random_state=0)`` (the defaults), and for the before/after figures the
  defaults before issue 20 (``n_factors=64, alpha=2, confidence="linear"``) and the first
  ones of issue 20 (``n_factors=64, alpha=2``, ``confidence="auto"``);
- ``ImplicitALS`` tuned by :func:`matfact.tune` with its default space, on the tuner's
  default validation split of the training part;
- implicit's ``AlternatingLeastSquares`` on BM25-weighted data
  (``implicit.nearest_neighbours.bm25_weight``), tuned on the same validation split;
- ``Popularity()``.

implicit is imported only here; run the suite in an environment that has it (``make
bench``'s, or any with ``pip install implicit``). Without it the implicit rows say so.
"""

from __future__ import annotations

import itertools
import time
import warnings
from typing import Any

import numpy as np

import matfact
from benchmarks.common import BenchmarkSkipped, data_home, environment, fmt_seconds, print_tables

__all__ = ["PROTOCOL", "run", "defaults_study", "IMPLICIT_GRID", "DATASETS"]

K = 10
SPLIT_SEED = 42
SEED = 0
#: (label, load_dataset name, kind, to_implicit, what the weights are)
DATASETS = (
    ("steam", "steam", "play", False, "hours played (0.1 to 11,754)"),
    ("retailrocket", "retailrocket", "all", False, "events per pair (view, cart, purchase)"),
    ("ml-100k", "ml-100k", None, True, "none: every rating is an interaction of weight 1"),
)
#: implicit's grid (BM25 weights with its defaults K1=100, B=0.8), full run and --quick;
#: its factors reach the 256 ImplicitALS() has by default.
IMPLICIT_GRID = {"factors": (32, 64, 128, 256), "regularization": (0.01, 0.1, 1.0, 10.0),
                 "alpha": (1.0, 10.0, 40.0)}
QUICK_IMPLICIT_GRID = {"factors": (64,), "regularization": (0.1,), "alpha": (1.0, 10.0)}
QUICK_SPACE = {"confidence": ["auto", "log"], "alpha": [3.0], "reg": [3.0]}
#: Earlier defaults, for the before/after rows: (row key, label, parameters).
EARLIER_DEFAULTS = (
    ("old defaults", '`ImplicitALS(n_factors=64, alpha=2, confidence="linear")` '
                     "(before issue 20)",
     {"n_factors": 64, "alpha": 2.0, "confidence": "linear"}),
    ("first auto", "`ImplicitALS(n_factors=64, alpha=2)` (first issue-20 defaults)",
     {"n_factors": 64, "alpha": 2.0}),
)
ITERATIONS = 15
GOAL_WITHIN = 0.05
GOAL_ML100K = 0.45


def _space_text(space: dict) -> str:
    return " × ".join(f"`{name}` ∈ {{{', '.join(map(str, values))}}}"
                      for name, values in space.items())


def _protocol(quick: bool) -> str:
    from matfact.evaluation.tune import DEFAULT_VALIDATION, VALIDATION_SEED, default_space

    space = QUICK_SPACE if quick else default_space(matfact.ImplicitALS)
    grid = QUICK_IMPLICIT_GRID if quick else IMPLICIT_GRID
    return f"""\
- **Data**: `load_dataset("steam")` (kind `play`: weights are hours played),
  `load_dataset("retailrocket")` (kind `all`: weights are the pair's event count),
  `load_dataset("ml-100k").to_implicit()` (every rating an interaction of weight 1); each
  split by `matfact.train_test_split(data, 0.2, "per_user", random_state={SPLIT_SEED})`, the
  protocol of the ALS suite (whose ML-100K `ImplicitALS()` goal is NDCG@10 ≥ 0.45).
- **Validation split** (tuning only, cut from the training part): `train_test_split(train,
  {DEFAULT_VALIDATION}, "per_user", random_state={VALIDATION_SEED})`, the split
  `matfact.tune` makes by default for a ranking metric; implicit is tuned on the very same rows.
- **matfact**: `ImplicitALS(random_state={SEED})` at its defaults (256 factors, α = 3, λ = 3,
  `confidence="auto"`; the table shows what it chose), the defaults before issue 20
  `ImplicitALS(n_factors=64, alpha=2, confidence="linear", random_state={SEED})` and the
  first ones of issue 20 `ImplicitALS(n_factors=64, alpha=2, random_state={SEED})`,
  `Popularity()`; and `matfact.tune(ImplicitALS(
  random_state={SEED}), None, train, metric="ndcg@10")`, the tuner's default space
  {_space_text(space)} searched as a grid, the best point refitted on the whole training part.
- **implicit** {_implicit_version()}: `AlternatingLeastSquares(factors, regularization,
  alpha, iterations={ITERATIONS}, random_state={SEED})` fitted on
  `bm25_weight(train.to_scipy()).tocsr()` (implicit's BM25 defaults K1 = 100, B = 0.8), every
  point of {_space_text(grid)} fitted on the validation split's training rows and scored on
  its held-out rows, the best refitted on the whole training part. Its top-{K} lists
  (`recommend(..., filter_already_liked_items=True)`) are scored by matfact's metric
  functions against the relevant sets `evaluate_ranking` builds.
- **Metrics**: NDCG@{K} and recall@{K} on the test part, every test user, training items
  never recommended, every test item relevant.
- **Goals** (issue 20): `ImplicitALS()` NDCG@{K} within {GOAL_WITHIN:.0%} of the tuned
  ImplicitALS's (on the test part; the tuner's validation figures are beside it), and at
  least implicit's tuned BM25 ALS; on ML-100K also ≥ {GOAL_ML100K}.
"""


def _implicit_version() -> str:
    try:
        from importlib import metadata

        return metadata.version("implicit")
    except Exception:  # noqa: BLE001 - only for the text
        return "(not installed)"


def _load(name: str, kind: str | None, to_implicit: bool) -> Any:
    from matfact.exceptions import DatasetNotFoundError

    try:
        data = matfact.load_dataset(name, kind=kind, data_home=data_home(), download=False)
    except DatasetNotFoundError as exc:
        raise BenchmarkSkipped(f"{name} is not available under {data_home()}: {exc}") from None
    return data.to_implicit() if to_implicit else data


def _scores(recommended: np.ndarray, relevant: Any) -> dict[str, float]:
    from matfact.evaluation import metrics

    return {"ndcg": float(metrics.aggregate(metrics.ndcg_at_k(recommended, relevant, K))),
            "recall": float(metrics.aggregate(metrics.recall_at_k(recommended, relevant, K)))}


def _matfact_scores(model: Any, test: Any) -> dict[str, float]:
    summary = matfact.evaluate_ranking(model, test, k=K, metrics=("ndcg", "recall"))
    return {"ndcg": float(summary[f"ndcg@{K}"]), "recall": float(summary[f"recall@{K}"])}


# ------------------------------------------------------------------------------------ implicit
def _bm25(train: Any) -> Any:
    from implicit.nearest_neighbours import bm25_weight

    return bm25_weight(train.to_scipy().astype(np.float32)).tocsr().astype(np.float32)


def _implicit_fit(csr: Any, params: dict) -> Any:
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(iterations=ITERATIONS, random_state=SEED, use_gpu=False,
                                    calculate_training_loss=False, **params)
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its BLAS-threads advice: limited just above
        model.fit(csr, show_progress=False)
    return model


def _implicit_scores(model: Any, csr: Any, train: Any, test: Any) -> dict[str, float]:
    from matfact.evaluation.validate import relevant_items

    users_raw, relevant = relevant_items(test, train.item_index)
    codes = train.user_index.get_indexer(users_raw)
    lists = np.full((len(codes), K), -1, dtype=np.int64)
    known = np.flatnonzero(codes >= 0)
    if len(known):
        ids, _ = model.recommend(codes[known], csr[codes[known]], N=K,
                                 filter_already_liked_items=True)
        ids = np.asarray(ids, dtype=np.int64).reshape(len(known), -1)
        lists[known, :ids.shape[1]] = ids
    return _scores(lists, relevant)


def _tune_implicit(train: Any, val_train: Any, val_test: Any, grid: dict
                   ) -> dict[str, Any]:
    val_csr = _bm25(val_train)
    rows = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values, strict=True))
        model = _implicit_fit(val_csr, params)
        rows.append((params, _implicit_scores(model, val_csr, val_train, val_test)["ndcg"]))
    best_params, best_val = max(rows, key=lambda row: row[1])  # first on a tie
    csr = _bm25(train)
    start = time.perf_counter()
    model = _implicit_fit(csr, best_params)
    fit_s = time.perf_counter() - start
    return {"params": best_params, "validation_ndcg": best_val, "model": model, "csr": csr,
            "fit_s": fit_s, "n_points": len(rows)}


# ------------------------------------------------------------------------------------ suite
def _fit(model: Any, train: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The old defaults on Steam's hours warn (ConfidenceWarning): that is the point.
        warnings.simplefilter("ignore", matfact.ConfidenceWarning)
        model.fit(train, progress=False)
    return model, time.perf_counter() - start


def _chosen(model: Any) -> str:
    if getattr(model, "confidence_", None) is None:
        return ""
    if model.confidence_ == "log":
        return f"log, α = {model.alpha_:.3g}, ε = {model.epsilon_:.3g}"
    return f"linear, α = {model.alpha_:.3g}"


def _one_dataset(label: str, data: Any, quick: bool, have_implicit: bool) -> dict[str, Any]:
    from matfact.evaluation.tune import DEFAULT_VALIDATION, VALIDATION_SEED, default_space

    train, test = matfact.train_test_split(data, 0.2, "per_user", random_state=SPLIT_SEED)
    val_train, val_test = matfact.train_test_split(train, DEFAULT_VALIDATION, "per_user",
                                                   random_state=VALIDATION_SEED)
    out: dict[str, Any] = {"n_train": train.nnz, "n_test": test.nnz, "rows": {}}
    rows = out["rows"]

    model, seconds = _fit(matfact.ImplicitALS(random_state=SEED), train)
    rows["defaults"] = {**_matfact_scores(model, test), "fit_s": seconds,
                        "chosen": _chosen(model)}
    for key, _label, params in EARLIER_DEFAULTS:
        model, seconds = _fit(matfact.ImplicitALS(random_state=SEED, **params), train)
        rows[key] = {**_matfact_scores(model, test), "fit_s": seconds,
                     "chosen": _chosen(model)}

    space = QUICK_SPACE if quick else default_space(matfact.ImplicitALS)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", matfact.ConfidenceWarning)
        result = matfact.tune(matfact.ImplicitALS(random_state=SEED), space, train,
                              metric=f"ndcg@{K}")
    tune_s = time.perf_counter() - start
    table = result.results
    defaults = matfact.ImplicitALS().get_params()
    at_default = table
    for name in space:
        at_default = at_default[at_default[name] == defaults[name]]
    rows["tuned"] = {**_matfact_scores(result.best_model, test), "params": result.best_params,
                     "validation_ndcg": result.best_score, "tune_s": tune_s,
                     "n_points": len(table), "chosen": _chosen(result.best_model),
                     "defaults_validation_ndcg": (float(at_default[f"ndcg@{K}"].iloc[0])
                                                  if len(at_default) else None)}

    model, seconds = _fit(matfact.Popularity(), train)
    rows["popularity"] = {**_matfact_scores(model, test), "fit_s": seconds}

    if have_implicit:
        start = time.perf_counter()
        tuned = _tune_implicit(train, val_train, val_test,
                               QUICK_IMPLICIT_GRID if quick else IMPLICIT_GRID)
        rows["implicit tuned"] = {
            **_implicit_scores(tuned["model"], tuned["csr"], train, test),
            "params": tuned["params"], "validation_ndcg": tuned["validation_ndcg"],
            "fit_s": tuned["fit_s"], "tune_s": time.perf_counter() - start,
            "n_points": tuned["n_points"]}
    return out


#: The candidate defaults :func:`defaults_study` compares (ImplicitALS parameters).
STUDY_CANDIDATES = (
    {"n_factors": 64, "alpha": 2.0}, {"n_factors": 128, "alpha": 2.0},
    {"n_factors": 128, "alpha": 4.0}, {"n_factors": 256, "alpha": 2.0},
    {"n_factors": 256, "alpha": 3.0}, {"n_factors": 256, "alpha": 4.0},
    {"n_factors": 256, "alpha": 3.0, "reg": 2.0}, {"n_factors": 256, "alpha": 3.0, "reg": 5.0},
    {"n_factors": 512, "alpha": 3.0}, {"n_factors": 64, "alpha": 2.0, "max_iter": 30},
)


def defaults_study(seeds: tuple[int, ...] = (1, 2, 3), candidates: tuple = STUDY_CANDIDATES,
                   datasets: tuple = DATASETS) -> list[dict[str, Any]]:
    """Validation NDCG@10 of candidate defaults, never touching the test part.

    How ``ImplicitALS``'s defaults were chosen: each dataset is split as in :func:`run`
    (seed :data:`SPLIT_SEED`), and from its training part only, one per-user validation
    split (share ``DEFAULT_VALIDATION``) per seed in ``seeds``; each candidate is fitted
    (``random_state=0``, the other parameters at their defaults) on every validation
    training part and scored on its held-out rows. Prints one line per dataset and
    candidate: the mean over the seeds, then each seed's figure.

    Run: ``python -c "from benchmarks.implicit_defaults import defaults_study;
    defaults_study()"`` (about 5 minutes on 2 free cores).
    """
    from matfact.evaluation.tune import DEFAULT_VALIDATION

    rows = []
    for label, name, kind, to_implicit, _ in datasets:
        train, _test = matfact.train_test_split(_load(name, kind, to_implicit), 0.2,
                                                "per_user", random_state=SPLIT_SEED)
        parts = [matfact.train_test_split(train, DEFAULT_VALIDATION, "per_user",
                                          random_state=seed) for seed in seeds]
        for params in candidates:
            scores = [_matfact_scores(_fit(matfact.ImplicitALS(random_state=SEED, **params),
                                           val_train)[0], val_test)["ndcg"]
                      for val_train, val_test in parts]
            rows.append({"data": label, "params": params, "mean": float(np.mean(scores)),
                         "scores": scores})
            print(f"{label:13s} {_params_text(params):36s} {np.mean(scores):.4f}  "
                  + " ".join(f"{s:.4f}" for s in scores), flush=True)
    return rows


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def run(quick: bool = False) -> dict[str, Any]:
    """Run the suite and print its tables (see the module doc and :data:`PROTOCOL`).

    Raises
    ------
    BenchmarkSkipped
        If a dataset is not available.
    """
    env = environment()
    try:
        import implicit  # noqa: F401
        have_implicit = True
    except ImportError:
        have_implicit = False
    results: dict[str, Any] = {}
    for label, name, kind, to_implicit, _ in DATASETS:
        print(f"  {label} ...", flush=True)
        results[label] = _one_dataset(label, _load(name, kind, to_implicit), quick,
                                      have_implicit)

    rows, goal_rows = [], []
    for label, *_rest in DATASETS:
        res = results[label]
        r = res["rows"]
        where = f"{label} ({res['n_train']:,} / {res['n_test']:,})"
        tuned, default = r["tuned"], r["defaults"]
        rows.append([where, "matfact", "`ImplicitALS()`", default["chosen"],
                     f"{default['ndcg']:.4f}", f"{default['recall']:.4f}",
                     "—" if tuned["defaults_validation_ndcg"] is None
                     else f"{tuned['defaults_validation_ndcg']:.4f}",
                     fmt_seconds(default["fit_s"])])
        for key, label_, _params in EARLIER_DEFAULTS:
            rows.append([where, "matfact", label_, r[key]["chosen"], f"{r[key]['ndcg']:.4f}",
                         f"{r[key]['recall']:.4f}", "", fmt_seconds(r[key]["fit_s"])])
        rows.append([where, "matfact",
                     f"`tune(ImplicitALS())` best: {_params_text(tuned['params'])}",
                     tuned["chosen"], f"{tuned['ndcg']:.4f}", f"{tuned['recall']:.4f}",
                     f"{tuned['validation_ndcg']:.4f}",
                     f"{fmt_seconds(tuned['tune_s'])} ({tuned['n_points']} points)"])
        if "implicit tuned" in r:
            imp = r["implicit tuned"]
            rows.append([where, "implicit",
                         f"BM25 + `AlternatingLeastSquares` best: {_params_text(imp['params'])}",
                         "BM25", f"{imp['ndcg']:.4f}", f"{imp['recall']:.4f}",
                         f"{imp['validation_ndcg']:.4f}",
                         f"{fmt_seconds(imp['tune_s'])} ({imp['n_points']} points)"])
        else:
            rows.append([where, "implicit", "not installed here", "", "—", "—", "—", "—"])
        rows.append([where, "matfact", "`Popularity()`", "", f"{r['popularity']['ndcg']:.4f}",
                     f"{r['popularity']['recall']:.4f}", "", fmt_seconds(r["popularity"]["fit_s"])])

        share = default["ndcg"] / tuned["ndcg"] if tuned["ndcg"] > 0 else float("nan")
        goal_rows.append([f"`ImplicitALS()` NDCG@{K} within {GOAL_WITHIN:.0%} of the tuned one",
                          label, f"{default['ndcg']:.4f} / {tuned['ndcg']:.4f} = {share:.1%}",
                          "✓" if share >= 1 - GOAL_WITHIN else "✗"])
        if "implicit tuned" in r:
            imp_ndcg = r["implicit tuned"]["ndcg"]
            goal_rows.append([f"`ImplicitALS()` NDCG@{K} ≥ implicit's tuned BM25 ALS", label,
                              f"{default['ndcg']:.4f} vs {imp_ndcg:.4f}",
                              "✓" if default["ndcg"] >= imp_ndcg else "✗"])
        else:
            goal_rows.append([f"`ImplicitALS()` NDCG@{K} ≥ implicit's tuned BM25 ALS", label,
                              "implicit not installed", "—"])
        if label == "ml-100k":
            goal_rows.append([f"`ImplicitALS()` NDCG@{K} ≥ {GOAL_ML100K}", label,
                              f"{default['ndcg']:.4f}",
                              "✓" if default["ndcg"] >= GOAL_ML100K else "✗"])

    weights_note = "; ".join(f"{label}: {weights}" for label, *_r, weights in DATASETS)
    tables = [
        {"title": f"Implicit feedback at the defaults and tuned, per-user 80/20 split "
                  f"(random_state={SPLIT_SEED}), top-{K}",
         "columns": ["data (train / test)", "library", "model", "confidence used",
                     f"NDCG@{K}", f"recall@{K}", f"validation NDCG@{K}", "fit (tuning)"],
         "rows": rows,
         "note": (f"Weights: {weights_note}. The validation column is the tuner's figure on "
                  f"its validation split (for `ImplicitALS()`, its point of the tuner's grid). "
                  f"Fit times are one run on a shared 2-core machine.")},
        {"title": "Goals (issue 20)", "columns": ["goal", "data", "measured", "met"],
         "rows": goal_rows, "note": "Judged on the test part of each split."},
    ]
    result = {"suite": "implicit_defaults",
              "title": "Implicit defaults on raw counts: ImplicitALS() against its tuner and "
                       "implicit (issue 20)",
              "quick": quick, "environment": env, "protocol": _protocol(quick),
              "tables": tables, "results": results}
    print_tables(result)
    return result


PROTOCOL = _protocol(False)
