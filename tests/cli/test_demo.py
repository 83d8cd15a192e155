"""``matfact demo`` (cli/demo.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matfact import cli
from tests.cli.helpers import (
    PNG_MAGIC,
    run,
)


# ------------------------------------------------------------------------------ demo
def _check_demo_outputs(out_dir: Path) -> pd.DataFrame:
    png = out_dir / "demo.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    table = pd.read_csv(out_dir / "demo.csv")
    assert list(table.columns) == ["model", "RMSE", "MAE", "NDCG@10", "P@10", "fit time (s)"]
    assert [name for name, _ in cli.DEMO_MODELS] == table["model"].tolist()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    return table


def test_demo_on_ml_100k(capsys, monkeypatch, tmp_path, data_dir):
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    monkeypatch.delenv("MATFACT_DATA", raising=False)
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--out", out_dir, "--data-home", data_dir)
    assert code == 0, err
    assert "WARNING" not in err
    assert "MovieLens 100K" in out
    assert "Top 10 for user 1" in out
    assert "(19" in out  # movie titles with their year
    assert str(out_dir / "demo.png") in out and str(out_dir / "demo.csv") in out
    table = _check_demo_outputs(out_dir)
    baseline = table.set_index("model").loc["Baseline"]
    assert 0.90 < baseline["RMSE"] < 0.98  # Baseline's known accuracy on ML-100K
    assert table["NDCG@10"].notna().all()
    assert np.isnan(table.set_index("model").loc["Popularity", "RMSE"])


def test_demo_falls_back_to_synthetic_data_loudly(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MATFACT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "--quiet", "demo", "--out", out_dir, "--data-home", empty)
    assert code == 0, err
    assert "WARNING" in err and "ml-100k" in err and "absent" in err
    assert "MATFACT_DATA" in err and "--data-home" in err
    assert err.lstrip().startswith("+---")  # boxed
    assert "synthetic" in out
    table = _check_demo_outputs(out_dir)
    assert table["NDCG@10"].notna().all()
