"""Shared fixtures: where the real datasets are, and ML-100K loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``$MATFACT_DATA``, else ``<repo>/../shared/data``, if it exists."""
    env = os.environ.get("MATFACT_DATA")
    for candidate in (env, REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real datasets absent: set MATFACT_DATA or place ../shared/data")
    return path


@pytest.fixture(scope="session")
def ml100k(data_dir):
    """MovieLens 100K, in u.data order, read straight from the shared copy."""
    path = data_dir / "ml-100k" / "u.data"
    if not path.exists():
        pytest.skip(f"ML-100K absent: no {path}")
    from matfact import Interactions

    return Interactions.from_csv(path, user=0, item=1, rating=2, timestamp=3, sep="\t",
                                 header=None, rating_scale=(1, 5))


@pytest.fixture(scope="session")
def ml100k_full(data_dir):
    """MovieLens 100K through ``load_dataset``: with timestamps, user and item features."""
    from matfact.data.datasets import load_dataset

    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip(f"ML-100K absent from {data_dir}")
    return load_dataset("ml-100k", data_home=data_dir, download=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
