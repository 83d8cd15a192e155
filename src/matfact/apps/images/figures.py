"""Figures of the images app: basis images, reconstructions, compression and recognition.

Drawn on matplotlib's Agg canvas (never ``pyplot``) in the style of
:mod:`matfact.plots`, and written by :func:`matfact.plots.save_figure` as palette
PNGs: the figures of faces with 56 gray levels plus the inks (a page of faces stays
under the docs' 200 KB per figure), the line plots with an adaptive 256-colour
palette. Images are drawn one screen pixel per image pixel where they fit.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matfact.apps.images.factorization import (
    METHODS,
    Factorization,
    _stack,
    basis_images,
    psnr,
)
from matfact.apps.images.reading import assemble_patches
from matfact.exceptions import DataError, ParameterError
from matfact.plots import GRID, INK, MODEL_COLORS, MUTED, save_figure

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import numpy as np

__all__ = ["plot_basis", "plot_compression", "plot_recognition", "plot_reconstructions"]

_METHOD_NAMES = {"svd": "SVD (eigenfaces)", "nmf": "NMF (parts)", "pixels": "raw pixels"}
_COLORS = {"svd": MODEL_COLORS[0], "nmf": MODEL_COLORS[1], "pixels": MUTED}
_N_BASIS_SHOWN = 16
#: Resolution of these figures: at 100 dpi an image pixel is a screen pixel (see _panel_size).
_PIXELS_PER_INCH = 100
#: Photographs compress badly as PNG: 56 gray levels show no banding on faces, and the
#: inks are entries of their own so that small coloured labels keep their colour.
_FACES_PALETTE = (*(f"#{v:02X}{v:02X}{v:02X}" for v in (round(255 * i / 55) for i in range(56))),
                  INK, MUTED, *_COLORS.values())


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas, never pyplot: no global state, no GUI backend (as plots.py).
    fig = Figure(figsize=(width, height), dpi=_PIXELS_PER_INCH, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _show(ax: Any, image: np.ndarray, *, signed: bool = False, fixed: bool = True) -> None:
    """Draw one grayscale image without axes; ``signed``: zero is mid-gray."""
    import numpy as np

    if signed:
        scale = float(np.abs(image).max()) or 1.0
        vmin, vmax = -scale, scale
    elif fixed:
        vmin, vmax = 0.0, 255.0
    else:
        vmin, vmax = 0.0, float(image.max()) or 1.0
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _panel_size(image_shape: tuple[int, int], low: float, high: float) -> tuple[float, float]:
    """Inches (width, height) of one image tile: one screen pixel per image pixel if the
    longer side then lies in ``[low, high]`` inches, else scaled to the nearer bound."""
    height, width = image_shape
    # 1:1 pixels keep the faces sharp and the PNG small (no resampling to compress).
    target = min(max(max(height, width) / _PIXELS_PER_INCH, low), high)
    scale = target / max(height, width)
    return width * scale, height * scale


def _title_lines(title: str | None, width: float) -> tuple[str | None, float]:
    """``title`` wrapped to a figure ``width`` inches wide, and the inches it needs."""
    if not title:
        return None, 0.0
    # 12-point bold runs up to about 10.5 pixels a character at 100 dpi.
    text = textwrap.fill(title, max(20, int(width * _PIXELS_PER_INCH / 10.5)), break_on_hyphens=False)
    return text, 0.12 + 0.22 * (text.count("\n") + 1)


def _suptitle(fig: Any, text: str | None, x: float = 0.01) -> None:
    if text:
        fig.suptitle(text, x=x, y=1 - 0.06 / fig.get_figheight(), ha="left", va="top",
                     fontsize=12, fontweight="bold", color=INK, linespacing=1.1)


def plot_basis(fits: Sequence[Factorization], path: str | os.PathLike, *,
               n: int = _N_BASIS_SHOWN, title: str | None = None) -> Path:
    """Draw the first basis images of each factorization side by side.

    Eigenfaces are signed (mid-gray is zero, each scaled to its own largest
    magnitude); NMF parts are non-negative (black is zero, each scaled to
    its own maximum). Each block is a square-ish grid of up to ``n`` images in
    the order of :func:`basis_images`.

    Parameters
    ----------
    fits : sequence of Factorization
        One block each, e.g. the SVD and the NMF fit.
    path : str or os.PathLike
        The PNG to write (atomically).
    n : int, default=16
        Basis images per block at most.
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    if not fits:
        raise DataError("no factorization to draw")
    blocks = [basis_images(fit, n) for fit in fits]
    cols = math.ceil(math.sqrt(max(len(block) for block in blocks)))
    rows = math.ceil(max(len(block) for block in blocks) / cols)
    tile_w, tile_h = _panel_size(fits[0].image_shape, 0.6, 1.2)
    width = len(fits) * (cols * (tile_w + 0.04) + 0.4) + 0.2
    title, title_height = _title_lines(title, width)
    head = 0.5 + title_height  # inches above the tiles: block titles, suptitle
    fig = _new_figure(width, rows * (tile_h + 0.04) + head + 0.1)
    outer = fig.add_gridspec(1, len(fits), left=0.02, right=0.98,
                             bottom=0.1 / fig.get_figheight(),
                             top=1 - head / fig.get_figheight(), wspace=0.08)
    for slot, (fit, block) in enumerate(zip(fits, blocks, strict=True)):
        inner = outer[slot].subgridspec(rows, cols, wspace=0.04, hspace=0.04)
        for index in range(rows * cols):
            ax = fig.add_subplot(inner[index // cols, index % cols])
            if index < len(block):
                _show(ax, block[index], signed=fit.method == "svd", fixed=False)
            else:
                ax.set_visible(False)
            if index == 0:
                label = (f"eigenfaces 1–{len(block)} of the centred SVD"
                         if fit.method == "svd" else
                         f"the {len(block)} largest parts of a rank-{fit.rank} NMF")
                ax.set_title(f"{_METHOD_NAMES[fit.method]}\n{label}", loc="left", fontsize=10,
                             color=INK, pad=6)
    _suptitle(fig, title, x=0.02)
    return save_figure(fig, path, dpi=_PIXELS_PER_INCH, palette=_FACES_PALETTE)


def plot_reconstructions(images: Any, fits: Sequence[Factorization], path: str | os.PathLike,
                         *, indices: Sequence[int] = (0,), grid: tuple[int, int] | None = None,
                         title: str | None = None) -> Path:
    """Draw originals and their reconstructions by each method at each rank.

    One row per (image, method): the original, then the reconstruction
    clipped to 0–255 at each rank of that method, labelled with rank, PSNR
    and compression ratio.

    Parameters
    ----------
    images : ImageDataset or array-like of shape (n_images, height, width)
        The images the factorizations were fitted on.
    fits : sequence of Factorization
        Fitted on ``images``; grouped by method, columns in increasing rank.
    path : str or os.PathLike
        The PNG to write (atomically).
    indices : sequence of int, default=(0,)
        Which images to show (ignored with ``grid``).
    grid : tuple of int, default=None
        ``(rows, cols)`` when the images are the patches of one picture (see
        :func:`image_patches`): the whole picture is shown, reassembled.
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    import numpy as np

    stack = _stack(images)
    if not fits:
        raise DataError("no factorization to draw")
    by_method: dict[str, list[Factorization]] = {}
    for fit in sorted(fits, key=lambda f: (METHODS.index(f.method), f.rank)):
        if fit.codes.shape[0] != len(stack) or fit.image_shape != stack.shape[1:]:
            raise DataError(f"the {fit.method.upper()} fit at rank {fit.rank} was not fitted on "
                            f"these {len(stack)} images of {stack.shape[1]}x{stack.shape[2]}")
        by_method.setdefault(fit.method, []).append(fit)
    if grid is not None:
        pictures = [(assemble_patches(stack, grid), None)]
        shape = pictures[0][0].shape
    else:
        for index in indices:
            if not -len(stack) <= index < len(stack):
                raise ParameterError(f"image index {index} is out of range for "
                                     f"{len(stack)} images")
        pictures = [(stack[index], index) for index in indices]
        shape = stack.shape[1:]
    n_cols = 1 + max(len(group) for group in by_method.values())
    n_rows = len(pictures) * len(by_method)
    tile_w, tile_h = _panel_size(shape, 0.8, 2.4)
    width = n_cols * (tile_w + 0.15) + 0.9
    title, title_height = _title_lines(title, width)
    fig = _new_figure(width, n_rows * (tile_h + 0.45) + title_height + 0.1)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    fig.subplots_adjust(left=0.9 / width, right=0.99, bottom=0.01, wspace=0.08,
                        top=1 - (title_height + 0.1 + 0.3) / fig.get_figheight(),
                        hspace=0.45 / tile_h)
    row = 0
    for picture, index in pictures:
        rebuilt_cache: dict[int, np.ndarray] = {}
        for method, group in by_method.items():
            _show(axes[row, 0], picture)
            axes[row, 0].set_title("original" if index is None else f"original #{index}",
                                   fontsize=8.5, color=INK)
            axes[row, 0].set_ylabel(method.upper(), fontsize=11, fontweight="bold",
                                    color=_COLORS[method], rotation=0, ha="right", va="center",
                                    labelpad=8)
            for col, fit in enumerate(group, start=1):
                if id(fit) not in rebuilt_cache:
                    rebuilt_cache[id(fit)] = fit.reconstruct()
                rebuilt = rebuilt_cache[id(fit)]
                shown = assemble_patches(rebuilt, grid) if grid is not None else rebuilt[index]
                quality = psnr(picture, shown)
                _show(axes[row, col], np.clip(shown, 0, 255))
                axes[row, col].set_title(f"k={fit.rank}  {quality:.1f} dB\n"
                                         f"{fit.compression_ratio:.1f}:1", fontsize=8,
                                         color=INK)
            for col in range(1 + len(group), n_cols):
                axes[row, col].set_visible(False)
            row += 1
    _suptitle(fig, title)
    return save_figure(fig, path, dpi=_PIXELS_PER_INCH, palette=_FACES_PALETTE)


def _style(ax: Any) -> None:
    ax.grid(color=GRID, linewidth=0.8, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5, colors=MUTED)


def plot_compression(table: Any, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Draw relative error and PSNR against compression ratio, one line per method.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`compression_table`.
    path : str or os.PathLike
        The PNG to write (atomically).
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    _require_columns(table, ("method", "rank", "compression_ratio", "psnr", "relative_error"))
    title, title_height = _title_lines(title, 9.0)
    fig = _new_figure(9.0, 3.9 + title_height)
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.55 / fig.get_figheight(), wspace=0.25,
                        top=1 - (0.4 + title_height) / fig.get_figheight())
    panels = (("relative_error", "relative error ‖X − X̂‖ / ‖X‖", "lower is better"),
              ("psnr", "PSNR (dB, 0–255 scale)", "higher is better"))
    for ax, (column, label, hint) in zip(axes, panels, strict=True):
        for method, group in table.groupby("method", sort=False):
            group = group.sort_values("compression_ratio")
            values = group[column].to_numpy(dtype=float)
            ax.plot(group["compression_ratio"], values, marker="o", markersize=4.5,
                    color=_COLORS.get(method, INK), label=_METHOD_NAMES.get(method, method),
                    zorder=3)
            # Labels on the outer side of each curve: the SVD's below in the error panel
            # (where it is lower), above in the PSNR panel, NMF's the other way round.
            below = (method == "svd") == (column == "relative_error")
            for ratio, value, rank in zip(group["compression_ratio"], values, group["rank"],
                                          strict=True):
                ax.annotate(f"k={rank}", (ratio, value), xytext=(3, -11 if below else 4),
                            textcoords="offset points", fontsize=7.5,
                            color=_COLORS.get(method, INK))
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.1)  # room for the rank labels at both ends
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}:1"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("compression ratio (pixels / stored numbers, log scale)", fontsize=9,
                      color=INK)
        ax.set_title(label, loc="left", fontsize=10.5, fontweight="bold", color=INK, pad=14)
        ax.annotate(hint, xy=(0, 1), xycoords="axes fraction", xytext=(0, 3),
                    textcoords="offset points", fontsize=8, color=MUTED, va="bottom")
        _style(ax)
    axes[0].legend(fontsize=8.5, frameon=False)
    _suptitle(fig, title)
    return save_figure(fig, path, dpi=_PIXELS_PER_INCH, palette="adaptive")


def plot_recognition(table: Any, path: str | os.PathLike, *, chance: float | None = None,
                     title: str | None = None) -> Path:
    """Draw 1-NN recognition accuracy against rank, one line per method.

    The ``"pixels"`` row of the table (1-NN on the raw images) is drawn as a
    dashed reference line, ``chance`` as a dotted one.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`recognition_curve`.
    path : str or os.PathLike
        The PNG to write (atomically).
    chance : float, default=None
        Accuracy of guessing, ``1 / n_subjects``.
    title : str, default=None

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.ticker import FixedLocator, PercentFormatter

    _require_columns(table, ("method", "rank", "accuracy"))
    title, title_height = _title_lines(title, 7.0)
    fig = _new_figure(7.0, 4.0 + title_height)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.52 / fig.get_figheight(),
                        top=1 - (0.48 + title_height) / fig.get_figheight())
    curves = table[table["method"] != "pixels"]
    for method, group in curves.groupby("method", sort=False):
        group = group.sort_values("rank")
        ax.plot(group["rank"], group["accuracy"], marker="o", markersize=4.5,
                color=_COLORS.get(method, INK), label=_METHOD_NAMES.get(method, method),
                zorder=3)
    pixels = table.loc[table["method"] == "pixels", "accuracy"]
    if len(pixels):
        ax.axhline(float(pixels.iloc[0]), color=_COLORS["pixels"], linestyle="--", linewidth=1,
                   label=f"raw pixels ({float(pixels.iloc[0]):.1%})")
    if chance is not None:
        ax.axhline(chance, color=MUTED, linestyle=":", linewidth=1,
                   label=f"chance ({chance:.1%})")
    ranks = sorted(curves["rank"].unique())
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ranks))
    ax.xaxis.set_major_formatter("{x:g}")
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("rank k (components, log scale)", fontsize=9, color=INK)
    ax.set_title("held-out accuracy, 1-nearest neighbour on the codes", loc="left",
                 fontsize=10.5, fontweight="bold", color=INK, pad=14)
    ax.annotate("higher is better", xy=(0, 1), xycoords="axes fraction", xytext=(0, 3),
                textcoords="offset points", fontsize=8, color=MUTED, va="bottom")
    ax.legend(fontsize=8.5, frameon=False, loc="lower right")
    _style(ax)
    _suptitle(fig, title)
    return save_figure(fig, path, dpi=_PIXELS_PER_INCH, palette="adaptive")


def _require_columns(table: Any, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in getattr(table, "columns", ())]
    if missing or len(table) == 0:
        raise DataError(f"the table needs rows and the columns {list(columns)}; missing "
                        f"{missing or 'rows'}")
