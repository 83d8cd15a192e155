"""The figure of a topic model: each topic's top words as bars of their weights."""

from __future__ import annotations

import math
import os
from pathlib import Path

from matfact.apps.topics.model import TopicModel
from matfact.plots import GRID, INK, MODEL_COLORS, MUTED, save_figure

__all__ = ["plot_topics"]

#: A grid of many small panels: 110 dpi keeps the words legible at a modest file size.
_PIXELS_PER_INCH = 110


def plot_topics(result: TopicModel, path: str | os.PathLike, *, title: str | None = None,
                n_words: int | None = None, columns: int | None = None) -> Path:
    """Draw each topic's top words as horizontal bars of their weights, in one figure.

    One panel per topic, heaviest word on top, titled with the topic's share of
    documents and, with labels, its most common label.

    Parameters
    ----------
    result : TopicModel
    path : str or os.PathLike
        Where to write the figure: PNG unless the suffix is ``.svg`` or ``.pdf``.
        Written atomically; the parent directory must exist.
    title : str, default=None
        A title over the panels.
    n_words : int, default=None
        Words per panel; by default all of ``result.top_words``.
    columns : int, default=None
        Panels per row; by default up to 5.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k = result.n_topics
    n_words = result.top_word_weights.shape[1] if n_words is None else \
        max(1, min(n_words, result.top_word_weights.shape[1]))
    ncols = min(k, 5) if columns is None else max(1, min(columns, k))
    nrows = math.ceil(k / ncols)
    fig = Figure(figsize=(2.5 * ncols, nrows * (0.7 + 0.19 * n_words) + (0.5 if title else 0.1)),
                 dpi=_PIXELS_PER_INCH, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    dominant = result.topic_labels()
    for slot, ax in enumerate(axes.flat):
        if slot >= k:
            ax.set_visible(False)
            continue
        words = result.top_words[slot][:n_words]
        weights = result.top_word_weights[slot, :n_words]
        positions = np.arange(len(words))
        ax.barh(positions, weights, height=0.7, color=MODEL_COLORS[slot % len(MODEL_COLORS)],
                zorder=2)
        ax.set_yticks(positions)
        ax.set_yticklabels(words, fontsize=8.5, color=INK)
        ax.set_ylim(len(words) - 0.4, -0.6)  # heaviest word on top
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelsize=7, colors=MUTED, length=0)
        ax.grid(axis="x", color=GRID, linewidth=0.8, zorder=0)
        ax.set_axisbelow(True)
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
        ax.spines["left"].set_color("#BBBBBB")
        heading = f"Topic {slot + 1} · {100 * result.shares[slot]:.0f}% of docs"
        if dominant is not None and dominant[slot][0]:
            label, share = dominant[slot]
            heading += f"\n{share:.0%} {label}"
        ax.set_title(heading, loc="left", fontsize=9, fontweight="bold", color=INK)
    fig.supxlabel("weight of the word in the topic (row of H)", fontsize=8, color=MUTED)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold", color=INK)
    save_figure(fig, path, dpi=_PIXELS_PER_INCH)
    return path
