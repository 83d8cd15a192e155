"""FeatureEncoder: vocabulary, encodings checked by hand, JSON round trip, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matfact import DataError, ParameterError
from matfact.data.features import FeatureEncoder


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "job": ["a", "b", "a", None],
        "tags": ["x|y", "y", "", "z|x"],
        "drama": [True, False, True, False],
        "age": [17.0, 30.0, np.nan, 60.0],
        "year": [1990.0, 2000.0, np.nan, 2010.0],
        "when": pd.to_datetime(["2020-01-01"] * 4),
    }, index=[10, 20, 30, 40])


def test_each_kind_encodes_as_computed_by_hand(frame):
    encoder = FeatureEncoder(bins={"age": [18, 50]}).fit(frame)
    assert [g["kind"] for g in encoder.groups_] == ["category", "multi", "flag", "bucket",
                                                     "numeric"]
    assert encoder.feature_names_.tolist() == [
        "job=a", "job=b", "tags=x", "tags=y", "tags=z", "drama",
        "age<18", "age=[18,50)", "age>=50", "age=<missing>", "year"]
    dense = encoder.transform(frame, [10, 20, 30, 40]).toarray()
    year = (np.array([1990, 2000, 2010]) - 2000) / np.std([1990, 2000, 2010])
    expected = np.array([
        [1, 0, 1, 1, 0, 1, 1, 0, 0, 0, year[0]],
        [0, 1, 0, 1, 0, 0, 0, 1, 0, 0, year[1]],
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0],
        [0, 0, 1, 0, 1, 0, 0, 0, 1, 0, year[2]],
    ], dtype=np.float32)
    np.testing.assert_allclose(dense, expected, rtol=1e-6)
    np.testing.assert_array_equal(encoder.feature_groups_, [0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 4])


def test_ids_absent_from_the_features_and_unseen_categories_give_zero_rows(frame):
    encoder = FeatureEncoder(columns=["job", "tags"]).fit(frame)
    later = pd.DataFrame({"job": ["c"], "tags": ["w|x"]}, index=[50])
    rows = encoder.transform(later, [50, 99]).toarray()
    np.testing.assert_array_equal(rows, [[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    assert encoder.transform(None, [1, 2]).shape == (2, encoder.n_features_)


def test_identifier_columns_are_skipped_unless_named():
    titles = pd.DataFrame({"title": [f"film {i}" for i in range(200)],
                           "kind": ["a", "b"] * 100})
    assert [g["name"] for g in FeatureEncoder().fit(titles).groups_] == ["kind"]
    named = FeatureEncoder(columns=["title"]).fit(titles)
    assert named.n_features_ == 200


def test_truncate_and_min_count(frame):
    zips = pd.DataFrame({"zip": ["02139", "02450", "94110", "9"]})
    encoder = FeatureEncoder(truncate={"zip": 1}, min_count=2).fit(zips)
    assert encoder.feature_names_.tolist() == ["zip=0", "zip=9"]


def test_state_round_trips_through_json(frame):
    encoder = FeatureEncoder(bins={"age": [18, 50]}, min_count=1).fit(frame)
    again = FeatureEncoder.from_state(json.loads(json.dumps(encoder.get_state())))
    ids = [40, 10, 77]
    assert (again.transform(frame, ids) != encoder.transform(frame, ids)).nnz == 0
    assert again.feature_names_.tolist() == encoder.feature_names_.tolist()


def test_real_movielens_features(ml100k_full):
    users, items = ml100k_full.user_features, ml100k_full.item_features
    user_encoder = FeatureEncoder(bins={"age": [18, 25, 35, 45, 50, 56]},
                                  truncate={"zip": 1}).fit(users)
    u = user_encoder.transform(users, ml100k_full.user_ids)
    # Every user has exactly one age bucket, one gender, one occupation and one zip region.
    np.testing.assert_array_equal(np.asarray(u.sum(axis=1)).ravel(), 4)
    item_encoder = FeatureEncoder(bins={"year": [1940, 1950, 1960, 1970, 1980, 1990, 1995,
                                                 1996, 1997]}).fit(items)
    assert [g["name"] for g in item_encoder.groups_][0] == "year"  # title, url, date skipped
    x = item_encoder.transform(items, ml100k_full.item_ids)
    assert x.shape == (1682, 11 + 19)
    year_block = x[:, :11].toarray()
    np.testing.assert_array_equal(year_block.sum(axis=1), 1)


@given(st.lists(st.sampled_from(["a", "b", "c|d", "d", None]), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_rows_hold_one_entry_per_known_value(values):
    frame = pd.DataFrame({"v": values})
    encoder = FeatureEncoder().fit(frame)
    if not encoder.groups_:
        return
    dense = encoder.transform(frame, frame.index).toarray()
    for row, value in zip(dense, values, strict=True):
        expected = 0 if value is None else len(value.split("|"))
        if encoder.groups_[0]["kind"] == "category" and value is not None and "|" in value:
            expected = 1
        assert row.sum() == expected
        assert set(np.unique(row)) <= {0.0, 1.0}


def test_bad_input_gets_clear_errors(frame):
    with pytest.raises(DataError, match="DataFrame"):
        FeatureEncoder().fit(np.zeros((2, 2)))
    with pytest.raises(DataError, match="not in the features"):
        FeatureEncoder(columns=["nope"]).fit(frame)
    with pytest.raises(ParameterError, match="increasing"):
        FeatureEncoder(bins={"age": [50, 18]}).fit(frame)
    with pytest.raises(DataError, match="not numeric"):
        FeatureEncoder(bins={"job": [1]}).fit(frame)
    with pytest.raises(DataError, match="dates"):
        FeatureEncoder(columns=["when"]).fit(frame)
    with pytest.raises(DataError, match="lack column"):
        FeatureEncoder(columns=["job"]).fit(frame).transform(frame[["tags"]], [10])
    with pytest.raises(DataError, match="FeatureEncoder state"):
        FeatureEncoder.from_state({"groups": []})
