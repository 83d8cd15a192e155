"""Fixtures of the command-line tests: offline, and small ratings files in two layouts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from matfact.data import datasets as ds
from tests.cli.helpers import ratings_frame


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test reads the user's cache or downloads anything."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(ds, "DOWNLOAD_URLS", dict.fromkeys(ds.DOWNLOAD_URLS,
                                                           "http://127.0.0.1:9/unreachable.zip"))

    def no_network(*args, **kwargs):
        raise AssertionError("the CLI tried to download something")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


@pytest.fixture
def frame() -> pd.DataFrame:
    return ratings_frame()


@pytest.fixture
def comma_csv(tmp_path, frame) -> Path:
    path = tmp_path / "ratings.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def tab_headerless(tmp_path, frame) -> Path:
    path = tmp_path / "u.data"
    frame.to_csv(path, sep="\t", header=False, index=False)
    return path
