"""HybridMF (features + ids, LightFM-style) on MovieLens 100K, side by side with LightFM.

Three measurements, each the protocol of the hybrid issue:

- **Cold items (strict)**: 20% of the items are held out entirely; the models are
  trained on the ratings of the other items only, then score every held-out item
  from its features; per user, the AUC of those scores over all held-out items
  (positives: the user's held-out items), averaged over users.
- **Warm top-N**: NDCG@10 on the per-user split (seed 42) of the implicit data.
- **Ratings**: RMSE on the random 80/20 split (seed 42), against ``BiasedMF``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

import matfact
from benchmarks.common import environment, load_ml100k, print_tables

__all__ = ["run", "PROTOCOL", "cold_item_split", "cold_item_auc", "item_feature_frame"]

COLD_SEED = 0
SPLIT_SEED = 42
SEED = 0
GOAL_COLD_AUC = 0.72
GOAL_NDCG = 0.40
GOAL_RMSE_GAP = 0.005
#: Figures quoted in the issue (LightFM 1.17, measured by the issue's author).
QUOTED = {"cold_lightfm": 0.675, "cold_lightfm_empty_columns": 0.698, "warm_lightfm": 0.367}

#: Release-year buckets: decades, then single years where ML-100K's films crowd.
YEAR_BINS = [1940, 1950, 1960, 1970, 1980, 1985, 1990, 1992, 1993, 1994, 1995, 1996, 1997,
             1998]
AGE_BINS = [18, 25, 35, 45, 50, 56]
USER_FEATURES = {"bins": {"age": AGE_BINS}, "truncate": {"zip": 1}}
ITEM_FEATURES = {"bins": {"year": YEAR_BINS}}

#: HybridMF for each protocol: the defaults (learning_rate=0.1, reg=1e-3) with LightFM's
#: budgets (32 or 64 factors, 30 epochs); see docs/hybrid.md for how they were chosen.
COLD_PARAMS = {"loss": "warp", "n_factors": 32, "max_iter": 30,
               "user_features": USER_FEATURES, "item_features": ITEM_FEATURES}
WARM_PARAMS = {"loss": "warp", "n_factors": 64, "max_iter": 30,
               "user_features": USER_FEATURES, "item_features": ITEM_FEATURES}
RATING_PARAMS = {"loss": "squared", "user_features": USER_FEATURES,
                 "item_features": ITEM_FEATURES}
LIGHTFM_COLD = {"no_components": 32, "loss": "warp", "epochs": 30}
LIGHTFM_WARM = {"no_components": 64, "loss": "warp", "epochs": 30}

PROTOCOL = f"""\
- **Data**: `matfact.load_dataset("ml-100k")` with its user features (age, gender,
  occupation, zip) and item features (19 genre flags, release year).
- **Cold items (strict)**: `cold = numpy.random.default_rng({COLD_SEED}).choice(sorted item
  ids, n_items // 5, replace=False)`; every rating of a cold item is test, training is
  `data.subset(items=the other items)` (all ratings as positives for ranking losses).
  HybridMF encodes features fitted on training rows only (year buckets {YEAR_BINS},
  age buckets {AGE_BINS}, zip region), then `model.add_items(cold, features=...)` places
  the cold items from their features. LightFM {LIGHTFM_COLD} with identity + genre item
  features (rows normalized to sum 1, as `lightfm.data.Dataset` does), fitted on the
  training items only; cold items are scored with genre features only. Metric: per user
  with at least one cold rating, the AUC of the scores over all cold items (positives:
  the user's cold items; ties count ½), averaged over users. Goal: HybridMF ≥ {GOAL_COLD_AUC}.
- **Warm top-N**: `data.to_implicit()`, `train_test_split(data, 0.2, "per_user",
  random_state={SPLIT_SEED})`; HybridMF scored by `matfact.evaluate_ranking(model, test,
  k=10)`; LightFM {LIGHTFM_WARM} (identity features only) by the same metric code on
  its top 10 with training items excluded. Goal: HybridMF NDCG@10 ≥ {GOAL_NDCG}.
- **Ratings**: `train_test_split(data, 0.2, "random", random_state={SPLIT_SEED})`; RMSE of
  HybridMF (squared loss) and `BiasedMF(random_state={SEED})`. Goal: within
  {GOAL_RMSE_GAP} of BiasedMF.
"""


# ------------------------------------------------------------------------------------ data
def cold_item_split(data: Any) -> tuple[Any, np.ndarray]:
    """The strict split: (training interactions without the cold items, cold ids sorted)."""
    items = np.sort(data.item_ids)
    cold = np.random.default_rng(COLD_SEED).choice(items, len(items) // 5, replace=False)
    warm = np.setdiff1d(items, cold)
    return data.subset(items=warm), np.sort(cold)


def item_feature_frame(data: Any) -> pd.DataFrame:
    """The item features HybridMF uses: the genre flags and the release year."""
    frame = data.item_features
    genres = [c for c in frame.columns if frame[c].dtype == bool]
    return frame[[*genres, "year"]]


def _cold_truth(data: Any, users: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """(len(users), len(cold)) booleans: which cold items each user rated."""
    frame = data.to_pandas()
    frame = frame[frame["item"].isin(cold)]
    rows = pd.Index(users).get_indexer(frame["user"])
    cols = pd.Index(cold).get_indexer(frame["item"])
    truth = np.zeros((len(users), len(cold)), dtype=bool)
    truth[rows, cols] = True
    return truth


def cold_item_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean over users (rows with positives and negatives) of the AUC of ``scores``.

    ``AUC = (Σ ranks of positives − n⁺(n⁺+1)/2) / (n⁺ n⁻)``, average ranks for ties.
    """
    values = []
    for row in range(scores.shape[0]):
        positives = truth[row]
        n_pos = int(positives.sum())
        n_neg = len(positives) - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(scores[row])
        values.append((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(values))


# ------------------------------------------------------------------------------------ cold items
def _hybrid_cold(data: Any, train: Any, cold: np.ndarray, users: np.ndarray,
                 params: dict[str, Any]) -> tuple[np.ndarray, float]:
    features = item_feature_frame(data)
    train = matfact.Interactions.from_arrays(
        train.users, train.items, train.ratings, user_features=data.user_features,
        item_features=features, rating_scale=train.rating_scale)
    start = time.perf_counter()
    model = matfact.HybridMF(random_state=SEED, **params).fit(train, progress=False)
    fit_s = time.perf_counter() - start
    model.add_items(cold, features=features)
    scores = model.predict(np.repeat(users, len(cold)), np.tile(cold, len(users)),
                           clip=False).reshape(len(users), len(cold))
    return scores, fit_s


def _lightfm_cold(data: Any, train: Any, cold: np.ndarray, users: np.ndarray,
                  empty_columns: bool = False) -> tuple[np.ndarray, float]:
    from lightfm import LightFM

    frame = data.item_features
    genres = [c for c in frame.columns if frame[c].dtype == bool]
    warm = np.sort(train.item_ids)
    columns = np.concatenate([warm, cold]) if empty_columns else warm
    user_pos = pd.Index(users).get_indexer(train.users)
    item_pos = pd.Index(columns).get_indexer(train.items)
    matrix = sp.coo_matrix((np.ones(train.nnz, np.float32), (user_pos, item_pos)),
                           shape=(len(users), len(columns))).tocsr()

    def rows(ids: np.ndarray, identity: bool) -> sp.csr_matrix:
        genre = sp.csr_matrix(frame.loc[ids, genres].to_numpy(np.float32))
        eye = (sp.identity(len(columns), format="csr", dtype=np.float32)[
            pd.Index(columns).get_indexer(ids)] if identity
            else sp.csr_matrix((len(ids), len(columns)), dtype=np.float32))
        out = sp.hstack([eye, genre], format="csr", dtype=np.float32)
        norms = np.asarray(out.sum(axis=1)).ravel()
        return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ out,
                             dtype=np.float32)

    params = dict(LIGHTFM_COLD)
    epochs = params.pop("epochs")
    model = LightFM(random_state=SEED, **params)
    start = time.perf_counter()
    model.fit(matrix, item_features=rows(columns, True), epochs=epochs, num_threads=1)
    fit_s = time.perf_counter() - start
    _, user_emb = model.get_user_representations()
    item_bias, item_emb = model.get_item_representations(rows(cold, empty_columns))
    return user_emb @ item_emb.T + item_bias[None, :], fit_s


def _cold(data: Any) -> dict[str, Any]:
    train, cold = cold_item_split(data)
    users = np.sort(data.user_ids)
    truth = _cold_truth(data, users, cold)
    out: dict[str, Any] = {"n_cold_items": len(cold), "n_train_items": train.n_items,
                           "n_users": int((truth.any(axis=1)).sum())}
    print("  cold items: HybridMF", flush=True)
    scores, fit_s = _hybrid_cold(data, train, cold, users, COLD_PARAMS)
    out["hybrid"] = {"auc": cold_item_auc(scores, truth), "fit_s": fit_s}
    print("  cold items: LightFM", flush=True)
    scores, fit_s = _lightfm_cold(data, train, cold, users)
    out["lightfm"] = {"auc": cold_item_auc(scores, truth), "fit_s": fit_s}
    scores, fit_s = _lightfm_cold(data, train, cold, users, empty_columns=True)
    out["lightfm_empty_columns"] = {"auc": cold_item_auc(scores, truth), "fit_s": fit_s}
    return out


# ------------------------------------------------------------------------------------ warm top-N
def _lightfm_warm(train: Any, test: Any) -> dict[str, Any]:
    from lightfm import LightFM

    from matfact.evaluation import metrics
    from matfact.evaluation.validate import relevant_items

    matrix = train.to_scipy().tocoo()
    params = dict(LIGHTFM_WARM)
    epochs = params.pop("epochs")
    model = LightFM(random_state=SEED, **params)
    start = time.perf_counter()
    model.fit(matrix, epochs=epochs, num_threads=1)
    fit_s = time.perf_counter() - start
    users_raw, relevant = relevant_items(test, train.item_index)
    codes = train.user_index.get_indexer(users_raw)
    _, user_emb = model.get_user_representations()
    item_bias, item_emb = model.get_item_representations()
    scores = (user_emb[np.maximum(codes, 0)] @ item_emb.T + item_bias[None, :]).astype(
        np.float64)
    seen = train.to_scipy().tocsr()[np.maximum(codes, 0)]
    scores[seen.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    top[codes < 0] = -1
    return {"ndcg": float(metrics.aggregate(metrics.ndcg_at_k(top, relevant, 10))),
            "fit_s": fit_s}


def _warm(data: Any) -> dict[str, Any]:
    implicit = data.to_implicit()
    train, test = matfact.train_test_split(implicit, 0.2, "per_user", random_state=SPLIT_SEED)
    print("  warm top-N: HybridMF", flush=True)
    start = time.perf_counter()
    model = matfact.HybridMF(random_state=SEED, **WARM_PARAMS).fit(train, progress=False)
    fit_s = time.perf_counter() - start
    hybrid = matfact.evaluate_ranking(model, test, k=10, metrics=["ndcg", "precision"])
    ids_only = matfact.HybridMF(random_state=SEED, **{
        **WARM_PARAMS, "user_features": False, "item_features": False}).fit(
        train, progress=False)
    ids_ndcg = matfact.evaluate_ranking(ids_only, test, k=10, metrics=["ndcg"])["ndcg@10"]
    print("  warm top-N: LightFM", flush=True)
    return {"hybrid": {"ndcg": float(hybrid["ndcg@10"]),
                       "precision": float(hybrid["precision@10"]), "fit_s": fit_s},
            "hybrid_ids_only": {"ndcg": float(ids_ndcg)},
            "lightfm": _lightfm_warm(train, test)}


# ------------------------------------------------------------------------------------ ratings
def _rating(data: Any) -> dict[str, Any]:
    train, test = matfact.train_test_split(data, 0.2, "random", random_state=SPLIT_SEED)
    print("  ratings: HybridMF, BiasedMF", flush=True)
    start = time.perf_counter()
    hybrid = matfact.HybridMF(random_state=SEED, **RATING_PARAMS).fit(train, progress=False)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    biased = matfact.BiasedMF(random_state=SEED).fit(train, progress=False)
    biased_s = time.perf_counter() - start
    return {"hybrid": {"rmse": float(matfact.evaluate(hybrid, test)["rmse"]), "fit_s": fit_s},
            "biased_mf": {"rmse": float(matfact.evaluate(biased, test)["rmse"]),
                          "fit_s": biased_s}}


# ------------------------------------------------------------------------------------ tables
def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _tables(cold: dict, warm: dict | None, rating: dict | None) -> list[dict[str, Any]]:
    tables = [{
        "title": "Cold items, strict protocol (ML-100K, 20% of items held out): mean per-user AUC",
        "columns": ["model", "AUC", "fit time", "goal"],
        "rows": [
            [f"HybridMF({', '.join(f'{k}={v!r}' for k, v in COLD_PARAMS.items() if 'features' not in k)})",
             f"{cold['hybrid']['auc']:.4f}", f"{cold['hybrid']['fit_s']:.1f} s",
             f"≥ {GOAL_COLD_AUC} {_mark(cold['hybrid']['auc'] >= GOAL_COLD_AUC)}"],
            ["LightFM WARP 32, genres + identity", f"{cold['lightfm']['auc']:.4f}",
             f"{cold['lightfm']['fit_s']:.1f} s", ""],
            ["LightFM, held-out items as empty columns",
             f"{cold['lightfm_empty_columns']['auc']:.4f}",
             f"{cold['lightfm_empty_columns']['fit_s']:.1f} s", ""],
            ["LightFM (quoted in the issue)", f"{QUOTED['cold_lightfm']:.3f}", "—", ""],
        ],
        "note": f"{cold['n_users']} users with a cold rating; {cold['n_cold_items']} cold items, "
                f"{cold['n_train_items']} training items."}]
    if warm is not None:
        tables.append({
            "title": "Warm top-N, per-user split (seed 42), implicit ML-100K: NDCG@10",
            "columns": ["model", "NDCG@10", "fit time", "goal"],
            "rows": [["HybridMF(loss='warp', n_factors=64), features + ids",
                      f"{warm['hybrid']['ndcg']:.4f}", f"{warm['hybrid']['fit_s']:.1f} s",
                      f"≥ {GOAL_NDCG} {_mark(warm['hybrid']['ndcg'] >= GOAL_NDCG)}"],
                     ["HybridMF, ids only", f"{warm['hybrid_ids_only']['ndcg']:.4f}", "—", ""],
                     ["LightFM WARP 64", f"{warm['lightfm']['ndcg']:.4f}",
                      f"{warm['lightfm']['fit_s']:.1f} s", ""],
                     ["LightFM WARP 64 (quoted in the issue)", f"{QUOTED['warm_lightfm']:.3f}",
                      "—", ""]]})
    if rating is not None:
        gap = rating["hybrid"]["rmse"] - rating["biased_mf"]["rmse"]
        tables.append({
            "title": "Ratings, random 80/20 split (seed 42): RMSE",
            "columns": ["model", "RMSE", "fit time", "goal"],
            "rows": [["HybridMF(loss='squared'), features + ids",
                      f"{rating['hybrid']['rmse']:.4f}", f"{rating['hybrid']['fit_s']:.1f} s",
                      f"≤ BiasedMF + {GOAL_RMSE_GAP} {_mark(gap <= GOAL_RMSE_GAP)}"],
                     ["BiasedMF()", f"{rating['biased_mf']['rmse']:.4f}",
                      f"{rating['biased_mf']['fit_s']:.1f} s", ""]]})
    return tables


def run(quick: bool = False) -> dict[str, Any]:
    """Run the hybrid suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        Only the cold-item protocol.

    Returns
    -------
    dict
    """
    env = environment()
    data = load_ml100k()
    cold = _cold(data)
    warm = None if quick else _warm(data)
    rating = None if quick else _rating(data)
    result = {
        "suite": "hybrid",
        "title": "HybridMF: cold items, warm top-N and ratings against LightFM (ML-100K)",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": _tables(cold, warm, rating),
        "results": {"cold": cold, "warm": warm, "rating": rating},
    }
    print_tables(result)
    return result
