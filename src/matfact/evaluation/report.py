"""A model-comparison report: cross-validate several models, then write tables and figures.

:func:`build_report` cross-validates every model on the same folds and writes a
directory holding ``index.md`` and ``index.html`` (the same content), the per-fold
results (``results.csv``), the summary (``summary.csv``) and PNG figures. Figures are
drawn on matplotlib's Agg canvas (never ``pyplot``) and written atomically by
:func:`matfact.plots.save_figure`; a figure that does not apply (no model has a loss
history, no model has item factors, ...) is replaced by a note in the report.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matfact._atomic import atomic_write
from matfact._params import check_n
from matfact.data.interactions import Interactions
from matfact.evaluation.metrics import RATING_METRICS, parse_metric
from matfact.evaluation.tune import DEFAULT_SPACES
from matfact.evaluation.validate import (
    cross_validate,
    evaluate_by_activity,
    evaluate_ranking,
    predicts_ratings,
    resolve_folds,
)
from matfact.exceptions import DataError, ParameterError
from matfact.plots import (
    DPI,
    GRID,
    INK,
    MODEL_COLORS,
    MUTED,
    metric_label,
    model_colors,
    plot_tuning,
    save_figure,
    save_table,
)

__all__ = ["build_report", "report_metrics", "summary_rows", "AT_K", "FIGURES"]

#: List lengths of the precision/recall/NDCG-against-k figure.
AT_K = (1, 5, 10, 20)
#: The figures a report can hold (a figure that does not apply is left out).
FIGURES = ("metrics.png", "at_k.png", "learning_curves.png", "activity.png", "item_map.png",
           "tuning.png")
#: What the report tunes per model class when ``tune=True`` (searched on fold 1's training
#: part): :data:`matfact.evaluation.tune.DEFAULT_SPACES`, the tuner's own defaults.
TUNING_SPACES: dict[str, dict[str, list]] = DEFAULT_SPACES
_RANKING = ("ndcg", "precision", "recall")
_N_LABELS = 10


# ------------------------------------------------------------------------------ models, metrics
def _named_models(models: Any) -> dict[str, Any]:
    """``models`` as an ordered dict name → model (a list is named by class, made unique)."""
    if isinstance(models, Mapping):
        named = {str(name): model for name, model in models.items()}
    elif isinstance(models, Sequence) and not isinstance(models, (str, bytes)):
        named = {}
        for model in models:
            name = type(model).__name__
            # Two models of one class (e.g. two ALS ranks) need distinct names.
            count = sum(1 for key in named if key == name or key.startswith(f"{name} ("))
            named[name if count == 0 else f"{name} ({count + 1})"] = model
    else:
        raise ParameterError(f"models must be a dict name → model or a list of models, got "
                             f"{type(models).__name__}")
    if not named:
        raise ParameterError("models is empty: give at least one model to compare")
    for name, model in named.items():
        if not hasattr(model, "fit") or not hasattr(model, "get_params"):
            raise ParameterError(f"models[{name!r}] is a {type(model).__name__}, not a matfact "
                                 f"model")
    return named


def report_metrics(model: Any, data: Interactions, metrics: Sequence[str] | None = None,
                   k: int = 10) -> list[str]:
    """The metrics :func:`build_report` measures for ``model`` on ``data``.

    By default RMSE for a model that predicts ratings on explicit data, then NDCG@k,
    precision@k and recall@k for every model. Given ``metrics``, rating metrics are
    dropped for a model that predicts no ratings (its table cell stays empty).
    """
    if metrics is None:
        names = ["rmse"] if predicts_ratings(model, data) else []
        return names + [f"{base}@{k}" for base in _RANKING]
    return [name for name in metrics
            if name not in RATING_METRICS or predicts_ratings(model, data)]


def _check_report_metrics(metrics: Any) -> list[str] | None:
    if metrics is None:
        return None
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ParameterError("metrics must name at least one metric, or be None for the "
                             "default (rmse, ndcg@k, precision@k, recall@k)")
    for name in names:
        if name not in RATING_METRICS:
            parse_metric(name)  # raises ParameterError for an unknown name
    return names


def _check_data(model: Any, name: str, data: Interactions) -> None:
    if data.is_implicit and not model.learns_from("implicit"):
        raise DataError(f"{name} ({type(model).__name__}) learns from explicit ratings, but the "
                        f"data is implicit: leave it out of models or give explicit data")


# ------------------------------------------------------------------------------ report
def build_report(models: Any, data: Interactions, *, cv: Any = 5,
                 metrics: Sequence[str] | None = None, k: int = 10,
                 out: str | os.PathLike = "report", random_state: int | None = 0,
                 tune: bool | Mapping[str, dict] = False, tune_trials: int = 8,
                 progress: bool | str | None = None) -> Path:
    """Cross-validate several models on the same folds and write a comparison report.

    Every model is cross-validated by :func:`~matfact.evaluation.validate.cross_validate`
    on the same folds. The report directory then holds:

    - ``index.md`` and ``index.html``: the summary table (mean ± standard deviation
      over the folds), the number of test pairs the models saw in training (0 for
      honest folds; see :func:`~matfact.evaluation.validate.count_overlap`) and the
      figures, with a note for each figure that does not apply;
    - ``results.csv``: one row per model and fold (metrics, ``fit_time``, ``test_time``,
      ``n_train``, ``n_test``, ``n_overlap``); ``summary.csv``: one row per model, means
      and ``_std`` columns;
    - ``metrics.png``: each metric per model, mean with ± one standard deviation bars;
    - ``at_k.png``: precision, recall and NDCG at k = 1, 5, 10, 20 (first fold's models);
    - ``learning_curves.png``: ``loss_history_`` per iteration (first fold's models);
    - ``activity.png``: every metric per user-activity group
      (:func:`~matfact.evaluation.validate.evaluate_by_activity`, first fold);
    - ``item_map.png``: the first two principal components of the item factors of the
      best model by NDCG@k that has ``item_factors_`` (first fold), the ten most popular
      training items labelled by title (or id);
    - with ``tune``, ``tuning.png`` and ``tuning.csv``: each tuned model's validation
      score against each parameter (:func:`matfact.tune` on fold 1's training part only,
      so the folds' test parts stay unseen), one row of panels per model.

    Parameters
    ----------
    models : dict of str to model, or list of models
        Unfitted matfact models (each fold fits a clone); a list is named by class.
    data : Interactions
    cv : int, callable or list, default=5
        As in :func:`~matfact.evaluation.validate.cross_validate`; the folds are drawn once
        and shared by all models.
    metrics : list of str, default=None
        By default RMSE (for models that predict ratings, on explicit data), NDCG@k,
        precision@k and recall@k. Rating metrics are skipped for ranking-only models.
    k : int, default=10
        Cut-off of ranking metrics named without ``@k``.
    out : str or os.PathLike, default="report"
        The report directory, created if needed; files already in it are overwritten.
    random_state : int or None, default=0
        Seed of the k-fold split when ``cv`` is an int, and of the tuning search.
    tune : bool or dict of str to dict, default=False
        ``True`` tunes each model whose class has a space in :data:`TUNING_SPACES`; a
        dict maps model names to their own spaces (name → list of values).
    tune_trials : int, default=8
        Trials per tuned model: random search, or the whole grid when it is smaller.
    progress : bool, "bar", "lines" or None, default=None
        Progress over the models and figures: None, a bar when stderr is a
        terminal; ``"lines"``, plain lines for logs (see
        :func:`matfact._progress.progress_bar`).

    Returns
    -------
    pathlib.Path
        The report directory ``out``.

    Raises
    ------
    ParameterError
        For an empty or invalid ``models``, an unknown metric or a bad ``k``.
    DataError
        If ``data`` is not Interactions, or is implicit and a model needs ratings.

    Examples
    --------
    >>> import matfact
    >>> from matfact.evaluation.report import build_report
    >>> data = matfact.load_dataset("ml-100k")  # doctest: +SKIP
    >>> build_report({"Baseline": matfact.Baseline(), "ALS": matfact.ALS(random_state=0)},
    ...              data, cv=5, out="report")  # doctest: +SKIP
    PosixPath('report')
    """
    from matfact._progress import progress_bar

    if not isinstance(data, Interactions):
        raise DataError(f"data must be a matfact.Interactions, got {type(data).__name__}")
    named = _named_models(models)
    k = check_n(k, "k")
    metrics = _check_report_metrics(metrics)
    plans: dict[str, list[str]] = {}
    for name, model in named.items():
        _check_data(model, name, data)
        plans[name] = report_metrics(model, data, metrics, k)
        if not plans[name]:
            raise ParameterError(f"{name} predicts no ratings, so none of metrics={metrics} "
                                 f"applies to it; add a ranking metric such as ndcg@{k}")
    spaces = _tuning_spaces(named, tune)
    tune_trials = check_n(tune_trials, "tune_trials")
    # Drawn once, so every model sees the very same folds whatever ``cv`` is.
    folds = resolve_folds(cv, data, random_state)
    target = Path(out).expanduser()
    target.mkdir(parents=True, exist_ok=True)

    frames: dict[str, pd.DataFrame] = {}
    fitted: dict[str, Any] = {}
    bar = progress_bar(progress=progress, desc="Report", total=len(named) + 5 + len(spaces),
                       unit="step")
    with bar:
        for name, model in named.items():
            bar.set_postfix_str(name)
            # Folds as plain lines in a log (a bar inside the report's bar would garble it).
            frame, fold_models = cross_validate(model, data, cv=folds, metrics=plans[name], k=k,
                                                return_models=True, random_state=random_state,
                                                progress="lines" if bar.mode == "lines" else False)
            frames[name] = frame
            fitted[name] = fold_models[0]
            bar.update()
        results = _per_fold(frames)
        summary = _summary(frames)
        columns = _metric_order(plans)
        save_table(results, target / "results.csv")
        save_table(summary, target / "summary.csv")
        test0 = folds[0][1]
        figures: list[tuple[str, str, str | None]] = []  # (title, file or "", note)

        bar.set_postfix_str("figures")
        figures.append(("Metrics (mean ± std over folds)",
                        *_metrics_figure(summary, columns, target / "metrics.png")))
        bar.update()
        figures.append((f"Precision, recall and NDCG against k (fold 1 of {len(folds)})",
                        *_at_k_figure(fitted, test0, target / "at_k.png")))
        bar.update()
        figures.append(("Learning curves (fold 1: train loss and validation RMSE)",
                        *_learning_figure(_with_validation_curves(named, fitted, folds[0][0],
                                                                  data),
                                          target / "learning_curves.png")))
        bar.update()
        figures.append(("By user activity (fold 1)",
                        *_activity_figure(fitted, plans, test0, k, target / "activity.png")))
        bar.update()
        figures.append(("Item factors, first two principal components (fold 1)",
                        *_item_map_figure(fitted, summary, k, target / "item_map.png")))
        bar.update()
        if spaces:
            tuned = {}
            for name, space in spaces.items():
                bar.set_postfix_str(f"tuning {name}")
                tuned[name] = _tune_one(named[name], space, folds[0][0], plans[name][0], k,
                                        tune_trials, random_state)
                bar.update()
            figures.append(("Tuning on fold 1's training part (validation score per trial)",
                            *_tuning_figure(tuned, target)))

    # A figure skipped this time must not linger from an earlier report in ``out``.
    drawn = {filename for _, filename, _ in figures}
    for filename in FIGURES:
        if filename not in drawn:
            (target / filename).unlink(missing_ok=True)
    blocks = _blocks(data, folds, summary, columns, figures, k, _overlap_text(results))
    _write_text(target / "index.md", _markdown(blocks))
    _write_text(target / "index.html", _html(blocks))
    return target


# ------------------------------------------------------------------------------ tables
def _per_fold(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for name, frame in frames.items():
        folds = frame.drop(index=["mean", "std"]).reset_index(names="fold")
        folds.insert(0, "model", name)
        parts.append(folds)
    return pd.concat(parts, ignore_index=True)


def _summary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []
    for name, frame in frames.items():
        row: dict[str, Any] = {"model": name}
        for column in frame.columns:
            if column in ("n_train", "n_test", "test_time", "n_overlap"):
                continue
            row[column] = float(frame.loc["mean", column])
            row[f"{column}_std"] = float(frame.loc["std", column])
        rows.append(row)
    return pd.DataFrame(rows)


def _overlap_text(results: pd.DataFrame) -> str:
    """The report's line on leakage: test pairs each model saw in its fold's training part."""
    if "n_overlap" not in results:
        return "Test pairs seen in training: not counted."
    counts = pd.to_numeric(results["n_overlap"], errors="coerce")
    unknown = sorted(set(results.loc[counts.isna(), "model"]))
    leaky = results[counts > 0]
    if leaky.empty:
        text = ("Test pairs seen in training: 0 in every fold, for every model (each fold's "
                "test part is held out from its training part).")
    else:
        parts = []
        for name, rows in leaky.groupby("model", sort=False):
            n = int(rows["n_overlap"].sum())
            total = int(results.loc[results["model"] == name, "n_test"].sum())
            parts.append(f"{name}: {n:,} of {total:,} ({n / max(total, 1):.1%})")
        text = ("Leakage: test pairs seen in training, over the folds — " + "; ".join(parts)
                + ". Those figures measure what the model remembers, not what it predicts.")
    if unknown:
        text += (f" {', '.join(unknown)} keep(s) no training pairs, so their overlap could not "
                 f"be checked.")
    return text


def _metric_order(plans: dict[str, list[str]]) -> list[str]:
    """Every metric measured for some model, in first-seen order."""
    columns: list[str] = []
    for names in plans.values():
        columns.extend(name for name in names if name not in columns)
    return columns


def _write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


def _cell(summary_row: pd.Series, column: str) -> str:
    mean = summary_row.get(column, np.nan)
    if mean is None or not np.isfinite(mean):
        return "–"
    std = summary_row.get(f"{column}_std", np.nan)
    return f"{mean:.4f} ± {std:.4f}" if np.isfinite(std) else f"{mean:.4f}"


def summary_rows(summary: pd.DataFrame, columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the summary table as text: metric means ± std, mean fit time."""
    headers = ["model", *columns, "fit time (s)"]
    rows = []
    for _, row in summary.iterrows():
        fit = row.get("fit_time", np.nan)
        rows.append([str(row["model"]), *(_cell(row, c) for c in columns),
                     f"{fit:.3g}" if np.isfinite(fit) else "–"])
    return headers, rows


# ------------------------------------------------------------------------------ figures
def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _model_colors(names: list[str]) -> dict[str, Any]:
    """One colour per model, the same in every figure (matfact.plots' palette)."""
    return dict(zip(names, model_colors(len(names)), strict=True))


def _style(ax: Any, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=10, fontweight="bold")
    ax.grid(color=GRID, linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _grid(n: int, max_columns: int = 3) -> tuple[int, int]:
    ncols = min(n, max_columns)
    return math.ceil(n / ncols), ncols


def _metrics_figure(summary: pd.DataFrame, columns: list[str],
                    path: Path) -> tuple[str, str | None]:
    names = [str(name) for name in summary["model"]]
    colors = _model_colors(names)
    nrows, ncols = _grid(len(columns))
    fig, axes = _figure(nrows, ncols, 0.6 + 3.2 * ncols, 0.6 + (0.9 + 0.32 * len(names)) * nrows)
    for slot, ax in enumerate(axes.flat):
        if slot >= len(columns):
            ax.set_visible(False)
            continue
        column = columns[slot]
        means = summary[column].to_numpy(dtype=float) if column in summary else np.full(
            len(names), np.nan)
        stds = summary[f"{column}_std"].to_numpy(dtype=float) if column in summary else means
        positions = np.arange(len(names))
        finite = np.isfinite(means)
        ax.barh(positions[finite], means[finite], xerr=np.nan_to_num(stds[finite]),
                color=[colors[n] for n, f in zip(names, finite, strict=True) if f],
                height=0.6, capsize=3, zorder=2, error_kw={"ecolor": INK, "lw": 1})
        for i in positions[~finite]:
            ax.annotate("n/a", xy=(0, i), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8, color=MUTED)
        ax.set_yticks(positions)
        ax.set_yticklabels(names if slot % ncols == 0 else [""] * len(names), fontsize=9)
        ax.set_ylim(len(names) - 0.4, -0.6)  # first model on top
        hint = "lower is better" if column.split("@")[0] in RATING_METRICS else \
            "higher is better"
        _style(ax, f"{metric_label(column)}  ({hint})")
    save_figure(fig, path)
    return path.name, None


def _at_k_figure(fitted: dict[str, Any], test: Interactions,
                 path: Path) -> tuple[str, str | None]:
    colors = _model_colors(list(fitted))
    wanted = [f"{base}@{k}" for base in _RANKING for k in AT_K]
    values = {name: evaluate_ranking(model, test, k=max(AT_K), metrics=wanted)
              for name, model in fitted.items()}
    fig, axes = _figure(1, len(_RANKING), 3.4 * len(_RANKING), 3.2)
    for ax, base in zip(axes.flat, _RANKING, strict=True):
        for name in fitted:
            ax.plot(AT_K, [values[name][f"{base}@{k}"] for k in AT_K], marker="o",
                    color=colors[name], label=name, lw=1.6, ms=4)
        ax.set_xticks(AT_K)
        ax.set_xlabel("k (list length)")
        _style(ax, f"{metric_label(base)}@k")
    axes[0, 0].legend(fontsize=8, frameon=False)
    save_figure(fig, path)
    return path.name, None


def _history(model: Any) -> tuple[str, list[float], list[float]] | None:
    """(label, train curve, validation RMSE curve) from ``loss_history_``, or None."""
    history = getattr(model, "loss_history_", None)
    if history is None:
        return None
    if isinstance(history, Mapping):
        validation = list(history.get("validation_rmse") or [])
        for key, curve in history.items():
            if key != "validation_rmse" and curve is not None and len(curve):
                return key.replace("_", " "), list(curve), validation
        return None
    curve = list(history)
    return ("train loss", curve, []) if curve else None


def _with_validation_curves(named: dict[str, Any], fitted: dict[str, Any],
                            train: Interactions, data: Interactions) -> dict[str, Any]:
    """Fold 1's models, those that report a validation RMSE per iteration refitted with one.

    The validation part is 10% of fold 1's training part (random, seed 1, as
    :func:`matfact.tune`'s), so the curves never read a test fold.
    """
    from sklearn.base import clone

    from matfact.evaluation.split import train_test_split
    from matfact.evaluation.tune import VALIDATION_SEED

    if data.is_implicit:
        return fitted
    eligible = [name for name, model in fitted.items()
                if isinstance(getattr(model, "loss_history_", None), Mapping)
                and "validation_rmse" in model.loss_history_ and predicts_ratings(model, data)]
    if not eligible:
        return fitted
    part = train_test_split(train, 0.1, "random", random_state=VALIDATION_SEED)
    refitted = dict(fitted)
    for name in eligible:
        model = clone(named[name])
        refitted[name] = model.fit(part.train, validation=part.test, progress=False)
    return refitted


def _learning_figure(fitted: dict[str, Any], path: Path) -> tuple[str, str | None]:
    colors = _model_colors(list(fitted))
    curves = {name: found for name, model in fitted.items()
              if (found := _history(model)) is not None}
    if not curves:
        return "", "no model keeps a loss_history_, so there are no learning curves"
    nrows, ncols = _grid(len(curves))
    fig, axes = _figure(nrows, ncols, 0.4 + 3.3 * ncols, 0.3 + 2.7 * nrows)
    # One panel per model: losses of different models are on different scales.
    for slot, ax in enumerate(axes.flat):
        if slot >= len(curves):
            ax.set_visible(False)
            continue
        name = list(curves)[slot]
        label, train, validation = curves[name]
        iterations = np.arange(1, len(train) + 1)
        ax.plot(iterations, train, marker="o", ms=3, color=colors[name], label=label)
        if validation:
            ax.plot(np.arange(1, len(validation) + 1), validation, marker="s", ms=3,
                    color=INK, ls="--", label="validation RMSE")
        ax.set_xlabel("iteration")
        ax.legend(fontsize=8, frameon=False)
        _style(ax, name)
    save_figure(fig, path)
    missing = [name for name in fitted if name not in curves]
    note = (f"no loss history for {', '.join(missing)}" if missing else None)
    return path.name, note


def _activity_figure(fitted: dict[str, Any], plans: dict[str, list[str]], test: Interactions,
                     k: int, path: Path) -> tuple[str, str | None]:
    tables = {name: evaluate_by_activity(model, test, metrics=plans[name], k=k)
              for name, model in fitted.items()}
    groups = list(dict.fromkeys(g for table in tables.values() for g in table.index))
    columns = _metric_order(plans)
    if not groups:
        return "", "no test users, so no activity breakdown"
    colors = _model_colors(list(fitted))
    nrows, ncols = _grid(len(columns))
    fig, axes = _figure(nrows, ncols, 0.4 + 3.6 * ncols, 0.6 + 2.8 * nrows)
    width = 0.8 / len(fitted)
    for slot, ax in enumerate(axes.flat):
        if slot >= len(columns):
            ax.set_visible(False)
            continue
        column = columns[slot]
        for i, (name, table) in enumerate(tables.items()):
            heights = [float(table.loc[g, column]) if g in table.index and column in table
                       else np.nan for g in groups]
            ax.bar(np.arange(len(groups)) + (i - (len(fitted) - 1) / 2) * width,
                   np.nan_to_num(heights), width=width, color=colors[name], label=name,
                   zorder=2)
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(groups, fontsize=8)
        _style(ax, metric_label(column))
    # One legend above the panels: inside a panel it would hide bars.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 6),
               fontsize=8, frameon=False)
    fig.supxlabel("test users grouped by their number of training interactions", fontsize=8)
    save_figure(fig, path)
    return path.name, None


def _item_map_figure(fitted: dict[str, Any], summary: pd.DataFrame, k: int,
                     path: Path) -> tuple[str, str | None]:
    key = f"ndcg@{k}"
    order = list(summary.sort_values(key, ascending=False, na_position="last")["model"]) \
        if key in summary else list(summary["model"])
    chosen = next((name for name in order
                   if getattr(fitted[name], "item_factors_", None) is not None
                   and np.asarray(fitted[name].item_factors_).ndim == 2
                   and np.asarray(fitted[name].item_factors_).shape[1] >= 2), None)
    if chosen is None:
        return "", "no model has item factors (item_factors_ with two or more columns)"
    model = fitted[chosen]
    factors = np.asarray(model.item_factors_, dtype=np.float64)
    centred = factors - factors.mean(axis=0)
    # PCA: the right singular vectors of the centred factors are the principal axes.
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    points = u[:, :2] * s[:2]
    explained = s[:2] ** 2 / max(float((s**2).sum()), 1e-300)
    popularity = np.diff(model.seen_.tocsc().indptr)
    labelled = np.argsort(-popularity, kind="stable")[:_N_LABELS]
    titles = getattr(model, "item_titles_", None)
    ids = model.item_index_.ids
    fig, axes = _figure(1, 1, 7.0, 5.6)
    ax = axes[0, 0]
    ax.scatter(points[:, 0], points[:, 1], s=6, color="#BBBBBB", zorder=2, lw=0)
    ax.scatter(points[labelled, 0], points[labelled, 1], s=18, color=MODEL_COLORS[0], zorder=3)
    for item in labelled:
        label = str(titles[item]) if titles is not None else f"item {ids[item]}"
        label = label if len(label) <= 32 else label[:29] + "..."
        ax.annotate(label, xy=points[item], xytext=(3, 3), textcoords="offset points",
                    fontsize=7, zorder=4)
    ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of the variance)")
    _style(ax, f"{chosen}: item factors ({_N_LABELS} most popular items labelled)")
    save_figure(fig, path)
    return path.name, None


def _tuning_spaces(named: dict[str, Any], tune: Any) -> dict[str, dict]:
    if tune is False or tune is None:
        return {}
    if tune is True:
        return {name: TUNING_SPACES[type(model).__name__] for name, model in named.items()
                if type(model).__name__ in TUNING_SPACES}
    if not isinstance(tune, Mapping):
        raise ParameterError(f"tune must be True, False or a dict model name → parameter "
                             f"space, got {type(tune).__name__}")
    unknown = sorted(set(tune) - set(named))
    if unknown:
        raise ParameterError(f"tune names models that are not in the report: {unknown}")
    return {name: dict(space) for name, space in tune.items()}


def _tune_one(model: Any, space: dict, train: Interactions, metric: str, k: int,
              trials: int, random_state: int | None) -> Any:
    from matfact.evaluation.tune import tune

    grid_size = math.prod(len(values) for values in space.values())
    search = "grid" if grid_size <= trials else "random"
    return tune(model, space, train, metric=metric, search=search, n_iter=trials, k=k,
                random_state=0 if random_state is None else random_state)


def _tuning_figure(tuned: dict[str, Any], target: Path) -> tuple[str, str | None]:
    frames = [result.results.assign(model=name, best=np.arange(len(result.results)) == 0)
              for name, result in tuned.items()]
    table = pd.concat(frames, ignore_index=True)
    save_table(table[["model", *[c for c in table.columns if c != "model"]]],
               target / "tuning.csv")
    plot_tuning(tuned, target / "tuning.png")
    best = "; ".join(f"{name}: " + ", ".join(f"{p}={v}" for p, v in result.best_params.items())
                     for name, result in tuned.items())
    return "tuning.png", f"best on validation — {best}; every trial in tuning.csv"


# ------------------------------------------------------------------------------ index pages
def _blocks(data: Interactions, folds: list, summary: pd.DataFrame, columns: list[str],
            figures: list[tuple[str, str, str | None]], k: int,
            overlap: str) -> list[tuple[str, Any]]:
    kind = "implicit feedback" if data.is_implicit else "explicit ratings"
    headers, rows = summary_rows(summary, columns)
    blocks: list[tuple[str, Any]] = [
        ("h1", "Model comparison"),
        ("p", f"{data.n_users:,} users × {data.n_items:,} items, {data.nnz:,} {kind}; "
              f"{len(folds)} cross-validation folds, the same for every model. Cells are the "
              f"mean ± sample standard deviation over the folds; ranking metrics cut at "
              f"k = {k} unless named otherwise; – where a metric does not apply (RMSE of a "
              f"model that predicts no ratings)."),
        ("table", (headers, rows)),
        ("p", "Per-fold results: results.csv; this table: summary.csv."),
        ("p", overlap),
    ]
    for title, filename, note in figures:
        blocks.append(("h2", title))
        if filename:
            blocks.append(("img", filename))
        if note:
            blocks.append(("note", note))
    return blocks


def _markdown(blocks: list[tuple[str, Any]]) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind == "h1":
            lines += [f"# {content}", ""]
        elif kind == "h2":
            lines += [f"## {content}", ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "note":
            lines += [f"*Note: {content}.*", ""]
        elif kind == "img":
            lines += [f"![{content}]({content})", ""]
        elif kind == "table":
            headers, rows = content
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def _html(blocks: list[tuple[str, Any]]) -> str:
    esc = html.escape
    body: list[str] = []
    title = "Model comparison"
    for kind, content in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{esc(content)}</{kind}>")
            if kind == "h1":
                title = content
        elif kind == "p":
            body.append(f"<p>{esc(content)}</p>")
        elif kind == "note":
            body.append(f"<p class=\"note\">Note: {esc(content)}.</p>")
        elif kind == "img":
            body.append(f"<img src=\"{esc(content)}\" alt=\"{esc(content)}\">")
        elif kind == "table":
            headers, rows = content
            head = "".join(f"<th>{esc(h)}</th>" for h in headers)
            cells = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                              for row in rows)
            body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{cells}\n"
                        f"</tbody>\n</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid "
             "#ddd}td:not(:first-child),th:not(:first-child){text-align:right}"
             "img{max-width:100%}.note{color:#6b6b6b;font-style:italic}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
