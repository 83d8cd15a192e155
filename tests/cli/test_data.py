"""``--data``: datasets and files whose layout the command line guesses (cli/data.py)."""

from __future__ import annotations

import numpy as np
import pytest

from matfact.cli import UsageError, read_interactions


# ------------------------------------------------------------------------------ reading data
def test_read_interactions_detects_header_names(comma_csv, frame):
    data = read_interactions(comma_csv)
    assert data.nnz == len(frame)
    assert not data.is_implicit
    assert data.timestamps is not None
    np.testing.assert_array_equal(data.users, frame["userId"])
    np.testing.assert_array_equal(data.ratings, frame["rating"])


def test_read_interactions_headerless_by_position(tab_headerless, frame):
    data = read_interactions(tab_headerless)
    assert data.nnz == len(frame)
    np.testing.assert_array_equal(data.items, frame["movieId"])
    np.testing.assert_array_equal(data.timestamps, frame["timestamp"])


@pytest.mark.parametrize("sep,name", [(";", "r.csv"), ("|", "r.txt"), ("\t", "r.tsv"),
                                      (",", "r.csv.gz")])
def test_read_interactions_sniffs_the_separator(tmp_path, frame, sep, name):
    path = tmp_path / name
    frame.rename(columns={"userId": "User_ID", "movieId": "item", "rating": "Stars"}).to_csv(
        path, sep=sep, index=False)
    data = read_interactions(path)
    assert data.nnz == len(frame)
    np.testing.assert_array_equal(data.ratings, frame["rating"])


def test_read_interactions_explicit_columns_and_implicit(tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text("who,what,hours,junk\na,x,2.5,q\na,y,1,q\nb,x,4,q\n")
    data = read_interactions(path, user_col="WHO", item_col="1", weight_col="hours",
                             implicit=True)
    assert data.is_implicit
    assert data.user_ids.tolist() == ["a", "b"]
    np.testing.assert_allclose(data.weights, [2.5, 1, 4])
    headerless = tmp_path / "h.csv"
    headerless.write_text("5,a,1\n6,b,2\n")
    data = read_interactions(headerless, user_col="1", item_col="0", header=False,
                             implicit=True)
    assert data.user_ids.tolist() == ["a", "b"]


def test_read_interactions_parquet(tmp_path, frame):
    pytest.importorskip("pyarrow")
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    data = read_interactions(path)
    assert data.nnz == len(frame)
    assert not data.is_implicit


def test_read_interactions_dataset_name(data_dir):
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    data = read_interactions("ml-100k", data_home=data_dir, download=False)
    assert data.shape == (943, 1682)
    assert read_interactions("ml-100k", data_home=data_dir, implicit=True).is_implicit


def test_read_interactions_unknown_layout_says_what_to_pass(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UsageError, match="--user-col"):
        read_interactions(path)
