"""``matfact demo``: every demo model on MovieLens 100K (or synthetic data), compared."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from matfact._text import format_table
from matfact._version import __version__
from matfact.cli.models import fit_model, learns_from, model_registry, predicts_ratings
from matfact.cli.output import (
    Output,
    boxed,
    number,
    print_recommendations,
    recommendation_rows,
    shorten,
)
from matfact.exceptions import UsageError

__all__ = ["DEMO_MODELS", "cmd_demo"]


#: Models ``matfact demo`` trains, in table order: (class name in MODEL_REGISTRY, parameters).
#: Add a row to show a new model, e.g. ``("BiasedMF", {"n_factors": 64, "random_state": 0})``;
#: a row whose class does not exist (yet) is skipped with a note.
DEMO_MODELS: list[tuple[str, dict[str, Any]]] = [
    ("Baseline", {}),
    ("Popularity", {}),
    ("BiasedMF", {"random_state": 0}),
    ("SVDPlusPlus", {"random_state": 0}),
    ("ALS", {"random_state": 0}),
    ("BayesianMF", {"random_state": 0}),
    ("ImplicitALS", {"random_state": 0}),
    ("BPR", {"random_state": 0}),
    ("NMF", {"random_state": 0}),
    ("PureSVD", {"random_state": 0}),
]


_DEMO_SEED = 42


_DEMO_K = 10


_DEMO_USER = 1


def _demo_data(data_home: str | None, out: Output) -> tuple[Any, str]:
    import matfact
    from matfact.exceptions import DatasetNotFoundError

    try:
        data = matfact.load_dataset("ml-100k", data_home=data_home, download=False)
        return data, "MovieLens 100K"
    except DatasetNotFoundError as err:
        reason = str(err)
    env = os.environ.get("MATFACT_DATA")
    print(boxed([
        "WARNING: the MovieLens 100K dataset (ml-100k) is absent, so this demo runs on "
        "SYNTHETIC ratings and its numbers say nothing about real data.",
        "",
        "To use it, put the unzipped ml-100k/ folder (u.data, u.item, u.user, u.genre) "
        "inside a directory DIR and run `matfact demo --data-home DIR`, or set "
        "MATFACT_DATA=DIR" + (f" (now {env})" if env else "") + ". The archive is "
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip (research use only; "
        "see its README).",
        "",
        f"Details: {reason}",
    ]), file=sys.stderr)
    data = matfact.make_synthetic(2000, 1000, 100_000, random_state=0)
    return data, "synthetic ratings (make_synthetic, 2,000 users x 1,000 items)"


def _demo_models(out: Output) -> list[Any]:
    models = []
    registry = model_registry()
    for name, params in DEMO_MODELS:
        if name not in registry:
            out.note(f"demo model {name} is not available in this matfact; skipped")
            continue
        models.append(registry[name](**params))
    return models


def _demo_top(model_name: str, params: dict[str, Any], data: Any, out: Output) -> None:
    """Refit the best model on all the data and show one user's top 10 with titles."""
    import numpy as np

    model = model_registry()[model_name](**params)
    fit_model(model, data, out)
    user = _DEMO_USER if _DEMO_USER in data.user_index else data.user_ids[0]
    ids, scores = model.recommend([user], n=_DEMO_K)
    titles = data.item_titles()
    if not data.is_implicit:
        code = data.user_index.get_indexer([user])[0]
        mine = np.flatnonzero(data.user_codes == code)
        best = mine[np.argsort(-data.ratings[mine], kind="stable")][:3]
        liked = [(titles[data.item_codes[i]] if titles is not None
                  else f"item {data.item_ids[data.item_codes[i]]}") for i in best]
        out.result(f"User {user} rated highly: " + "; ".join(shorten(t, 40) for t in liked))
    heading = f"Top {_DEMO_K} for user {user} from {model_name} (refit on all the data):"
    print_recommendations(out, heading, recommendation_rows(model, ids[0], scores[0]))


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    import numpy as np
    import pandas as pd

    import matfact
    from matfact._progress import progress_bar
    from matfact.plots import plot_model_comparison, save_table

    target = Path(args.out).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    data, label = _demo_data(args.data_home, out)
    out.info(f"Data: {label}: {data!r}")
    models = _demo_models(out)
    random_split = matfact.train_test_split(data, test_size=0.2, strategy="random",
                                            random_state=_DEMO_SEED)
    user_split = matfact.train_test_split(data, test_size=0.2, strategy="per_user",
                                          random_state=_DEMO_SEED)
    rows = []
    for model in progress_bar(models, progress=out.progress, desc="Training", unit="model"):
        name = type(model).__name__
        row = {"model": name, "RMSE": np.nan, "MAE": np.nan}
        explicit_model = not data.is_implicit and learns_from(model, "explicit")
        if explicit_model:
            fit_model(model, random_split.train, out)
            if predicts_ratings(model):
                scores = matfact.evaluate(model, random_split.test)
                row.update(RMSE=scores["rmse"], MAE=scores["mae"])
            model = matfact.clone(model)
        seconds = fit_model(model, user_split.train, out)
        ranking = matfact.evaluate_ranking(model, user_split.test, k=_DEMO_K,
                                           metrics=("ndcg", "precision"))
        row.update({f"NDCG@{_DEMO_K}": ranking[f"ndcg@{_DEMO_K}"],
                    f"P@{_DEMO_K}": ranking[f"precision@{_DEMO_K}"],
                    "fit time (s)": seconds})
        rows.append(row)
    if not rows:
        raise UsageError("DEMO_MODELS names no available model")
    table = pd.DataFrame(rows, columns=["model", "RMSE", "MAE", f"NDCG@{_DEMO_K}",
                                        f"P@{_DEMO_K}", "fit time (s)"])
    out.result(f"matfact {__version__} demo on {label}")
    out.result(f"{data.n_users:,} users x {data.n_items:,} items, {data.nnz:,} ratings.")
    out.result(f"RMSE, MAE: random 80/20 split. NDCG@{_DEMO_K}, P@{_DEMO_K} and fit time: "
               f"per-user 80/20 split. Seed {_DEMO_SEED}.")
    out.result()
    printable = [[row["model"], number(row["RMSE"]), number(row["MAE"]),
                  number(row[f"NDCG@{_DEMO_K}"]), number(row[f"P@{_DEMO_K}"]),
                  number(row["fit time (s)"], 4)] for row in table.to_dict("records")]
    out.result(format_table(list(table.columns), printable, right={1, 2, 3, 4, 5}))
    out.result()
    # Show a personalized list: the best rating model if any, else the best ranker.
    rmse = table["RMSE"].to_numpy(dtype=float)
    best = (int(np.nanargmin(rmse)) if np.isfinite(rmse).any()
            else int(np.nanargmax(table[f"NDCG@{_DEMO_K}"].to_numpy(dtype=float))))
    best_name = table["model"].iloc[best]
    params = dict(next(p for n, p in DEMO_MODELS if n == best_name))
    _demo_top(best_name, params, data, out)
    png = plot_model_comparison(table, target / "demo.png", title=f"matfact demo: {label}")
    csv_path = save_table(table, target / "demo.csv")
    out.result()
    out.result(f"Wrote the comparison plot to {png} and the table to {csv_path}")
    return 0
