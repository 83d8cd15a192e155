"""Figures of matfact results, drawn with matplotlib's Agg canvas (no GUI, no global state).

Every function builds a :class:`matplotlib.figure.Figure` directly and renders
it with :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so it never
touches ``pyplot`` or the user's backend, and writes the file atomically (a
temporary file beside the target, then :func:`os.replace`): a crash leaves
either the previous file or the new one, never half a PNG.

This module is also the one style and the one writer of every figure and table
matfact draws (evaluation reports, onboarding curves, topics, faces): the colours
:data:`INK`, :data:`MUTED`, :data:`GRID` and :data:`MODEL_COLORS`
(:func:`model_colors` past the palette), the resolution :data:`DPI`, and the
atomic writers :func:`save_figure` and :func:`save_table`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matfact._atomic import atomic_write
from matfact.exceptions import DataError

__all__ = ["plot_model_comparison", "plot_tuning", "save_figure", "save_table", "metric_label",
           "model_colors", "MODEL_COLORS", "INK", "MUTED", "GRID", "DPI"]

#: Colours given to the models in table order (Okabe & Ito's colour-blind-safe palette,
#: its pale yellow last); more models cycle through matplotlib's ``tab10``.
MODEL_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                "#7F7F7F", "#F0E442")

_LOWER_IS_BETTER = ("rmse", "mae", "mse", "loss", "error")
_HIGHER_IS_BETTER = ("ndcg", "precision", "p", "recall", "r", "map", "mrr", "hit_rate", "hr",
                     "hitrate", "auc", "coverage", "f1")
_ACRONYMS = ("rmse", "mae", "mse", "ndcg", "map", "mrr", "auc", "hr", "p", "r")
#: Text, titles and outlines of every figure.
INK = "#222222"
#: Secondary text: hints, notes, tick labels.
MUTED = "#6B6B6B"
#: Grid lines.
GRID = "#E4E4E4"
#: Resolution of a PNG, unless a figure asks for another (faces keep their pixel size).
DPI = 150
_MAX_COLUMNS = 3


def _classify(column: str) -> tuple[bool | None, bool]:
    """(lower_is_better, log_axis) of a metric column, from its name."""
    key = column.strip().lower()
    if "time" in key or key.endswith("(s)") or key in ("seconds", "secs"):
        return True, True
    base = key.split("@")[0].replace(" ", "_").replace("-", "_")
    if base in _LOWER_IS_BETTER:
        return True, False
    if base in _HIGHER_IS_BETTER:
        return False, False
    return None, False


def metric_label(column: str) -> str:
    """Panel title of a column: ``"ndcg@10"`` → ``"NDCG@10"``, ``"recall"`` → ``"Recall"``."""
    base, at, cutoff = column.partition("@")
    if base.strip().lower() in _ACRONYMS:
        base = base.upper()
    else:
        base = base[:1].upper() + base[1:]
    return base + at + cutoff


def _decimals(values: Any) -> int:
    """Decimals that give the largest finite value of a panel three significant digits."""
    import numpy as np

    largest = np.nanmax(np.abs(values))
    if not np.isfinite(largest) or largest == 0:
        return 3
    return int(min(6, max(0, 2 - math.floor(math.log10(largest)))))


def _format_value(value: float, is_time: bool, decimals: int = 3) -> str:
    if is_time:
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if value < 1:
            return f"{value * 1e3:.3g} ms"
        if value < 120:
            return f"{value:.3g} s"
        return f"{value / 60:.3g} min"
    return f"{value:,.{decimals}f}"


def _model_names(table: Any) -> list[str]:
    for column in table.columns:
        if isinstance(column, str) and column.strip().lower() == "model":
            return [str(name) for name in table[column]]
    return [str(name) for name in table.index]


def _metric_columns(table: Any) -> list[tuple[str, Any]]:
    """(column name, float values) of every numeric column with at least one finite value."""
    import numpy as np
    import pandas as pd

    found = []
    for column in table.columns:
        if isinstance(column, str) and column.strip().lower() == "model":
            continue
        series = table[column]
        if not (pd.api.types.is_numeric_dtype(series) or series.dtype == object):
            continue
        if pd.api.types.is_bool_dtype(series):
            continue
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(values).any():
            found.append((str(column), values))
    return found


def model_colors(n: int) -> list[Any]:
    """The colours of ``n`` models in table order: :data:`MODEL_COLORS`, then ``tab10``.

    Every figure that shows several models takes their colours from here, so a
    model keeps one colour across the figures of a report.

    Parameters
    ----------
    n : int
        Number of models.

    Returns
    -------
    list
        ``n`` matplotlib colours (hex strings, then RGBA tuples past the palette).
    """
    from matplotlib import colormaps

    tab10 = colormaps["tab10"]
    return [MODEL_COLORS[i] if i < len(MODEL_COLORS) else tab10(i % 10) for i in range(n)]


def _draw_panel(ax: Any, names: list[str], values: Any, column: str, colors: list[Any],
                show_names: bool) -> None:
    import numpy as np

    lower_better, log_axis = _classify(column)
    finite = np.isfinite(values)
    positions = np.arange(len(names))
    shown = values.copy()
    if log_axis:
        positive = finite & (values > 0)
        floor = values[positive].min() if positive.any() else 1e-3
        left = 10.0 ** math.floor(math.log10(floor) - 0.3)
        shown = np.where(finite, np.maximum(values, left * 1.5), np.nan)
        ax.set_xscale("log")
        high = np.nanmax(shown)
        ax.set_xlim(left, high * (high / left) ** 0.35)
        widths = np.where(finite, shown - left, 0.0)
        starts = np.full(len(names), left)
    else:
        low, high = min(0.0, np.nanmin(values)), max(0.0, np.nanmax(values))
        span = (high - low) or 1.0
        ax.set_xlim(low - (0.02 * span if low < 0 else 0.0), high + 0.32 * span)
        widths = np.where(finite, values, 0.0)
        starts = np.zeros(len(names))
    best = None
    if lower_better is not None and finite.sum() > 1:
        candidates = np.where(finite, values, np.inf if lower_better else -np.inf)
        best = int(np.argmin(candidates) if lower_better else np.argmax(candidates))
    ax.barh(positions, widths, left=starts, height=0.64, color=colors, zorder=2,
            edgecolor=[INK if i == best else "none" for i in range(len(names))],
            linewidth=1.2)
    if log_axis:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _format_value(x, True)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    decimals = _decimals(values)
    for i in positions:
        if not finite[i]:
            ax.annotate("n/a", xy=(0.0, i), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", ha="left",
                        fontsize=9, color=MUTED, style="italic")
            continue
        end = shown[i] if log_axis else max(values[i], 0.0)
        label = _format_value(values[i], log_axis, decimals)
        if i == best:
            label += "  ★"
        ax.annotate(label, xy=(end, i), xytext=(4, 0), textcoords="offset points",
                    va="center", ha="left", fontsize=9, zorder=3, color=INK,
                    fontweight="bold" if i == best else "normal")
    ax.set_yticks(positions)
    ax.set_yticklabels(names if show_names else [""] * len(names), fontsize=10, color=INK)
    ax.set_ylim(len(names) - 0.4, -0.6)  # first model on top
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", which="both", labelsize=8, colors=MUTED, length=0)
    ax.grid(axis="x", color=GRID, linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color("#BBBBBB")
    title = metric_label(column)
    if log_axis and "log" not in column.lower():
        title += ", log scale"
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold", color=INK, pad=16)
    if lower_better is not None:
        hint = "lower is better" if lower_better else "higher is better"
        ax.annotate(hint, xy=(0.0, 1.0), xycoords="axes fraction", xytext=(0, 3),
                    textcoords="offset points", fontsize=8.5, color=MUTED, ha="left",
                    va="bottom")


def plot_model_comparison(table: Any, path: str | os.PathLike, *,
                          title: str | None = None) -> Path:
    """Draw one horizontal bar panel per metric column of a model comparison table.

    Columns are recognised by name: error metrics (``RMSE``, ``MAE``) are
    marked "lower is better", ranking metrics (``NDCG@10``, ``P@10``,
    ``precision@k``, ``recall@k``, ...) "higher is better", and a time column
    (``fit time (s)``) is drawn on a log axis. Any other numeric column gets a
    plain panel. Each model keeps one colour in every panel, values are written
    on the bars, the best model of each panel is outlined and starred, and
    missing values (NaN) read "n/a".

    Parameters
    ----------
    table : pandas.DataFrame
        One row per model: the model name in a ``model`` column (else the
        index), metrics in the other columns. Columns that are not numeric or
        hold no finite value are skipped.
    path : str or os.PathLike
        Where to write the figure. PNG (150 dpi) unless the suffix is ``.svg``
        or ``.pdf``. Written atomically; the parent directory must exist.
    title : str, default=None
        A title over the panels.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    DataError
        If ``table`` is not a DataFrame, has no rows, or has no numeric column
        with a finite value.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"model": ["Baseline", "Popularity"], "RMSE": [0.94, None],
    ...                       "NDCG@10": [0.05, 0.06], "fit time (s)": [0.02, 0.001]})
    >>> plot_model_comparison(table, "comparison.png")  # doctest: +SKIP
    PosixPath('comparison.png')
    """
    import numpy as np
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(table, pd.DataFrame):
        raise DataError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if len(table) == 0:
        raise DataError("the table has no rows: nothing to plot")
    metrics = _metric_columns(table)
    if not metrics:
        raise DataError(
            f"the table has no numeric metric column with a value to plot; its columns are "
            f"{[str(c) for c in table.columns]}"
        )
    names = _model_names(table)
    colors = model_colors(len(names))
    n_panels = len(metrics)
    ncols = n_panels if n_panels <= _MAX_COLUMNS else math.ceil(n_panels / 2)
    ncols = min(ncols, _MAX_COLUMNS)
    nrows = math.ceil(n_panels / ncols)
    label_width = min(2.4, 0.3 + 0.075 * max(len(name) for name in names))
    width = label_width + 3.3 * ncols
    height = nrows * (0.95 + 0.36 * len(names)) + (0.45 if title else 0.1)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained",
                 facecolor="white")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.12, h_pad=0.16, wspace=0.06, hspace=0.12)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for slot, ax in enumerate(axes.flat):
        if slot >= n_panels:
            ax.set_visible(False)
            continue
        column, values = metrics[slot]
        _draw_panel(ax, names, values, column, colors, show_names=slot % ncols == 0)
    notes = []
    if len(names) > 1:
        notes.append("★ best in the panel")
    if any(not np.isfinite(values).all() for _, values in metrics):
        notes.append("n/a: not measured (e.g. the RMSE of a model that predicts no ratings)")
    if notes:
        fig.supxlabel("    ".join(notes), x=0.01, ha="left", fontsize=8, color=MUTED)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=13, fontweight="bold", color=INK)

    return save_figure(fig, path)


def plot_tuning(result: Any, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """One panel per tuned parameter: every trial's validation score against its value.

    Numeric parameters spread on their axis (log-scaled when all positive and spanning
    more than a factor of 20); others become categories. The best trial is starred.

    Parameters
    ----------
    result : matfact.evaluation.tune.TuneResult or dict of str to TuneResult
        What :func:`matfact.tune` returned; a dict (model name → result) draws one
        row of panels per model.
    path : str or os.PathLike
        Where to write the figure (PNG unless ``.svg``/``.pdf``), atomically.
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = dict(result) if isinstance(result, dict) else {None: result}
    for one in results.values():
        if not list(one.best_params) or one.results.empty:
            raise DataError("the tuning result has no trials or parameters to plot")
    widest = max(len(one.best_params) for one in results.values())
    ncols = min(widest, _MAX_COLUMNS)
    rows_per = {name: math.ceil(len(one.best_params) / ncols) for name, one in results.items()}
    nrows = sum(rows_per.values())
    fig = Figure(figsize=(3.4 * ncols + 0.4, 2.7 * nrows + (0.4 if title else 0.1)), dpi=DPI,
                 layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    row = 0
    for name, one in results.items():
        panels = axes[row:row + rows_per[name]].flat
        params = list(one.best_params)
        for slot, ax in enumerate(panels):
            if slot >= len(params):
                ax.set_visible(False)
                continue
            _tuning_panel(ax, one.results, params[slot], one.metric, first=slot % ncols == 0,
                          model=name)
        row += rows_per[name]
    axes.flat[0].legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold", color=INK)
    return save_figure(fig, path)


def _tuning_panel(ax: Any, frame: Any, name: str, metric: str, *, first: bool,
                  model: str | None) -> None:
    import numpy as np

    scores = frame[metric].to_numpy(dtype=float)
    best_row = 0  # results are sorted best first
    values = frame[name].to_numpy()
    numeric = all(isinstance(v, (int, float, np.integer, np.floating))
                  and not isinstance(v, bool) for v in values)
    if numeric:
        x = values.astype(float)
        if (x > 0).all() and x.max() / x.min() > 20:
            ax.set_xscale("log")
    else:
        labels = sorted({str(v) for v in values})
        x = np.array([labels.index(str(v)) for v in values], dtype=float)
        ax.set_xticks(range(len(labels)), labels)
    ax.scatter(x, scores, s=18, color=MODEL_COLORS[0], alpha=0.75, linewidths=0)
    ax.scatter([x[best_row]], [scores[best_row]], s=90, marker="*", color=MODEL_COLORS[1],
               zorder=3, label="best")
    ax.set_xlabel(name, color=INK)
    label = f"validation {metric_label(metric)}"
    ax.set_ylabel((f"{model}\n{label}" if model else label) if first else "", color=INK)
    ax.grid(color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def save_figure(fig, path: str | os.PathLike, *, dpi: int = DPI,
                palette: str | Sequence[str] | None = None) -> Path:
    """Write a matplotlib figure to ``path`` atomically (PNG, or SVG/PDF by suffix).

    The one figure writer of matfact: a temporary file beside ``path``, then
    :func:`os.replace`, so a crash leaves the previous file or the new one.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
        Its suffix picks the format; anything but ``.svg``/``.pdf`` is PNG. The
        parent directory must exist.
    dpi : int, default=DPI (150)
        Resolution of a PNG.
    palette : {"adaptive"} or sequence of str, default=None
        A PNG with a colour palette instead of full colour (ignored for SVG and
        PDF), several times smaller. ``"adaptive"``: 256 colours chosen from the
        figure (median cut), for line plots. A sequence of colours
        (``"#RRGGBB"``): exactly those, each pixel drawn in its nearest one, for
        figures of grayscale photographs (say 56 gray levels plus the inks of
        the figure's text and lines; an adaptive palette would give the few
        pixels of a small coloured label no colour of their own).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg", "pdf"):
        fmt = "png"
    image = _palette_image(fig, dpi, palette) if palette is not None and fmt == "png" else None

    def write(tmp: Path) -> None:
        with open(tmp, "xb") as handle:
            if image is None:
                fig.savefig(handle, format=fmt, dpi=dpi, facecolor="white")
            else:
                image.save(handle, format="PNG", optimize=True)

    return atomic_write(path, write)


def _palette_image(fig: Any, dpi: int, palette: str | Sequence[str]) -> Any:
    """The figure rendered at ``dpi`` as a palette (mode ``"P"``) Pillow image."""
    import io

    import numpy as np
    from matplotlib.colors import to_rgb
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    buffer.seek(0)
    with Image.open(buffer) as rendered:
        pixels = np.asarray(rendered.convert("RGB"))
    if isinstance(palette, str):
        if palette != "adaptive":
            raise ValueError(f"palette must be 'adaptive' or a sequence of colours, "
                             f"got {palette!r}")
        return Image.fromarray(pixels).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    entries = np.array([[round(255 * c) for c in to_rgb(color)] for color in palette])
    if not 1 <= len(entries) <= 256:
        raise ValueError(f"a palette holds 1 to 256 colours, got {len(entries)}")
    # Each distinct colour to its nearest entry (Pillow's own mapping to a given palette
    # is approximate: it turned white into 250).
    colours, inverse = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
    distance = ((colours[:, None, :].astype(np.int64) - entries[None]) ** 2).sum(axis=2)
    index = distance.argmin(axis=1).astype(np.uint8)[inverse.ravel()]
    image = Image.fromarray(index.reshape(pixels.shape[:2]), mode="P")
    image.putpalette(entries.astype(np.uint8).ravel().tolist())
    return image


def save_table(table: Any, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame to ``path`` as CSV atomically: the one CSV writer of matfact.

    UTF-8, no index, floats to 6 significant digits (``%.6g``), fields quoted
    only when they need it.

    Parameters
    ----------
    table : pandas.DataFrame
    path : str or path-like
        The parent directory must exist.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import csv

    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8", newline="") as handle:
            table.to_csv(handle, index=False, float_format="%.6g", quoting=csv.QUOTE_MINIMAL)

    return atomic_write(path, write)
