"""Tests of matfact.plots: the comparison figure is written, valid, and robust to gaps."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matfact.exceptions import DataError
from matfact.plots import (
    INK,
    MODEL_COLORS,
    model_colors,
    plot_model_comparison,
    save_figure,
    save_table,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({
        "model": ["Baseline", "Popularity", "BiasedMF"],
        "RMSE": [0.94, np.nan, 0.91],
        "MAE": [0.74, np.nan, 0.72],
        "NDCG@10": [0.084, 0.214, 0.23],
        "P@10": [0.077, 0.188, 0.2],
        "fit time (s)": [0.016, 0.0004, 3.5],
    })


def test_writes_a_valid_png(tmp_path, table):
    path = tmp_path / "comparison.png"
    result = plot_model_comparison(table, path, title="A comparison")
    assert result == path
    width, height = png_size(path)
    assert width > height > 100
    assert path.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.png"]  # no temp file


def test_overwrites_atomically_and_accepts_str_paths(tmp_path, table):
    path = tmp_path / "c.png"
    path.write_bytes(b"old")
    plot_model_comparison(table, str(path))
    png_size(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]


@pytest.mark.parametrize("columns", [["model", "NDCG@10"], ["model", "RMSE", "fit time (s)"],
                                     ["model", "P@10", "MAE", "NDCG@10", "RMSE"]])
def test_any_subset_of_metric_columns(tmp_path, table, columns):
    path = plot_model_comparison(table[columns], tmp_path / "subset.png")
    png_size(path)


def test_nan_values_and_all_nan_columns(tmp_path, table):
    table = table.assign(RMSE=np.nan, MAE=[np.nan, np.nan, 0.7],
                         **{"fit time (s)": [0.0, np.nan, 2.0]})
    narrow = plot_model_comparison(table[["model", "MAE"]], tmp_path / "one.png")
    wide = plot_model_comparison(table, tmp_path / "all.png")
    # The all-NaN RMSE column is skipped: 4 panels (2 x 2) rather than 5 (3 + 2).
    assert png_size(wide)[0] > png_size(narrow)[0]


def test_model_names_from_the_index_and_many_models(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"ndcg@20": rng.random(12), "recall@20": rng.random(12),
                          "notes": ["x"] * 12},
                         index=[f"model {i}" for i in range(12)])
    png_size(plot_model_comparison(table, tmp_path / "many.png"))


def test_single_model_and_svg(tmp_path, table):
    path = plot_model_comparison(table.iloc[:1], tmp_path / "one.svg")
    assert path.read_text(encoding="utf-8").lstrip().startswith("<?xml")


@pytest.mark.parametrize("bad", [
    pd.DataFrame({"model": ["a"], "notes": ["text only"]}),
    pd.DataFrame({"model": ["a", "b"], "RMSE": [np.nan, np.nan]}),
    pd.DataFrame({"model": [], "RMSE": []}),
    {"model": ["a"], "RMSE": [1.0]},
])
def test_nothing_to_plot_is_a_data_error(tmp_path, bad):
    with pytest.raises(DataError):
        plot_model_comparison(bad, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_fails_without_leftovers(tmp_path, table):
    with pytest.raises(FileNotFoundError):
        plot_model_comparison(table, tmp_path / "no" / "such" / "dir.png")
    assert list(tmp_path.iterdir()) == []


def test_does_not_touch_pyplot_state(tmp_path, table):
    import matplotlib

    backend = matplotlib.rcParams._get("backend")
    plot_model_comparison(table, tmp_path / "c.png")
    assert matplotlib.rcParams._get("backend") == backend


# ------------------------------------------------------------------------------ the writers
def _figure(width=3.0, height=2.0, dpi=100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(np.linspace(0, 255, 60 * 40).reshape(40, 60), cmap="gray")
    ax.set_title("a title", color=INK)
    ax.plot([0, 59], [0, 39], color=MODEL_COLORS[0])
    return fig


def test_save_figure_writes_the_dpi_asked(tmp_path):
    path = save_figure(_figure(), tmp_path / "f.png", dpi=100)
    assert path == tmp_path / "f.png"
    assert png_size(path) == (300, 200)
    assert png_size(save_figure(_figure(), tmp_path / "g.png")) == (450, 300)  # plots.DPI
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "g.png"]


def test_save_figure_palettes(tmp_path):
    from PIL import Image

    palette = [f"#{v:02X}{v:02X}{v:02X}" for v in (0, 128, 255)] + [INK, MODEL_COLORS[0]]
    fixed = save_figure(_figure(), tmp_path / "fixed.png", dpi=100, palette=palette)
    with Image.open(fixed) as image:
        assert image.mode == "P" and image.size == (300, 200)
        entries = np.array(image.getpalette()).reshape(-1, 3)
        used = {tuple(entries[i]) for i in np.unique(np.asarray(image))}
    allowed = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in palette}
    assert used <= allowed and (255, 255, 255) in used  # white stays white
    adaptive = save_figure(_figure(), tmp_path / "adaptive.png", palette="adaptive")
    with Image.open(adaptive) as image:
        assert image.mode == "P"
    # A vector format ignores the palette.
    svg = save_figure(_figure(), tmp_path / "f.svg", palette="adaptive")
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="palette"):
        save_figure(_figure(), tmp_path / "bad.png", palette="median")
    assert not (tmp_path / "bad.png").exists()


def test_save_table_writes_csv_atomically(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old", encoding="utf-8")
    frame = pd.DataFrame({"model": ["a, b", "é"], "rmse": [0.123456789, np.nan]})
    assert save_table(frame, path) == path
    assert path.read_text(encoding="utf-8").splitlines() == ['model,rmse', '"a, b",0.123457',
                                                             "é,"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_model_colors_extend_the_palette():
    colors = model_colors(10)
    assert colors[:8] == list(MODEL_COLORS) and len(colors) == 10
    assert model_colors(0) == []
