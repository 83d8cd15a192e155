"""The one rating-scale rule (issue 20): ``rating_scale=(min, max[, step])`` on data and models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matfact
from matfact.data.interactions import Interactions, implausible_scale, off_scale
from matfact.exceptions import DataError, ParameterError


def test_a_step_is_kept_and_travels_with_subsets():
    data = Interactions.from_arrays([1, 2, 3, 3], [1, 1, 2, 3], [0.5, 4.5, 5, 1],
                                    rating_scale=(0.5, 5, 0.5))
    assert data.rating_scale == (0.5, 5.0) and data.rating_step == 0.5
    assert "in [0.5, 5] step 0.5" in repr(data)
    assert data.take([0, 1]).rating_step == 0.5
    train, test = matfact.train_test_split(data, test_size=0.5, random_state=0)
    assert train.rating_step == test.rating_step == 0.5
    assert Interactions.from_arrays([1], [1], [3], rating_scale=(1, 5)).rating_step is None
    assert Interactions.from_arrays([1], [1], [3]).rating_step is None


@pytest.mark.parametrize("scale, match", [
    ((1, 5, 0), "step of rating_scale must be > 0"),
    ((1, 5, -1), "step of rating_scale must be > 0"),
    ((1, 5, 0.3), "does not divide the range"),
    ((1, 5, 3), "does not divide the range"),
    ((1, 5, np.inf), "finite"),
    ((1, 5, 1, 1), r"\(min, max\) or \(min, max, step\)"),
    ((5, 5, 1), "min < max"),
])
def test_bad_steps_are_parameter_errors(scale, match):
    with pytest.raises(ParameterError, match=match):
        Interactions.from_arrays([1], [1], [3], rating_scale=scale)


def test_the_error_names_the_first_bad_rating_and_its_rows():
    with pytest.raises(DataError, match=r"rating 7 is outside the rating scale \[1, 5\]: "
                                        r"2 row\(s\) \(positions 1, 3\)"):
        Interactions.from_arrays([1, 2, 3, 4], [1, 1, 1, 1], [3, 7, 4, 0],
                                 rating_scale=(1, 5))
    with pytest.raises(DataError, match=r"rating 2.25 is not on the steps of 0.5 .*"
                                        r"\(positions 2\)"):
        Interactions.from_arrays([1, 2, 3], [1, 1, 1], [1, 2.5, 2.25],
                                 rating_scale=(0.5, 5, 0.5))


def test_a_file_names_the_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,a,4\n2,a,4.5\n3,a,5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"rating 4.5 is not on the steps of 1 .*line 3 of"):
        Interactions.from_csv(path, rating="rating", rating_scale=(1, 5, 1))
    assert Interactions.from_csv(path, rating="rating",
                                 rating_scale=(0.5, 5, 0.5)).rating_step == 0.5


def test_with_rating_scale_declares_a_scale_on_loaded_data():
    data = Interactions.from_arrays([1, 2], [1, 1], [2, 4])
    assert data.rating_scale == (2.0, 4.0)
    declared = data.with_rating_scale((1, 10, 1))
    assert declared.rating_scale == (1.0, 10.0) and declared.rating_step == 1.0
    np.testing.assert_array_equal(declared.ratings, data.ratings)
    with pytest.raises(DataError, match="outside the rating scale"):
        data.with_rating_scale((3, 5))
    with pytest.raises(ParameterError, match="implicit"):
        data.to_implicit().with_rating_scale((1, 5))


@settings(max_examples=60, deadline=None)
@given(lo=st.sampled_from([-10.0, 0.0, 0.5, 1.0]), k=st.integers(1, 40),
       step=st.sampled_from([0.1, 0.25, 0.5, 1.0]), offsets=st.lists(st.integers(-3, 45),
                                                                    min_size=1, max_size=20),
       nudge=st.sampled_from([0.0, 0.0, 0.3]))
def test_off_scale_refuses_exactly_the_ratings_off_the_grid(lo, k, step, offsets, nudge):
    hi = lo + k * step
    ratings = np.array([lo + (o + nudge) * step for o in offsets], dtype=np.float32)
    refused = off_scale(ratings, (lo, hi, step))
    # By hand: on the grid means an integer number of steps from min, within [min, max].
    expected = np.array([not (0 <= o <= k) or nudge != 0 for o in offsets])
    got = np.zeros(len(offsets), bool) if refused is None else refused[0]
    # Out of range (found first, alone): the nudge carries offset k past the maximum.
    outside = np.array([not (0 <= o + nudge <= k) for o in offsets])
    if outside.any():
        np.testing.assert_array_equal(got, outside)
    else:
        np.testing.assert_array_equal(got, expected)


def test_implausible_inferred_scales():
    assert implausible_scale((-2.0, 500.0)) == "it mixes negative and positive ratings"
    assert implausible_scale((1.0, 500.0)) == "it spans 499 points"
    for fine in [(1.0, 5.0), (0.5, 5.0), (0.0, 100.0), (-10.0, 0.0), None]:
        assert implausible_scale(fine) is None


def test_the_fitted_model_keeps_the_step_and_files_without_one_still_load(tmp_path):
    data = Interactions.from_arrays([1, 1, 2, 3], [10, 11, 10, 12], [4, 5, 3, 1],
                                    rating_scale=(1, 5, 1))
    model = matfact.BiasedMF(n_factors=2, max_iter=3, random_state=0).fit(data, progress=False)
    assert model.rating_scale_ == (1.0, 5.0) and model.rating_step_ == 1.0
    model.save(tmp_path / "m.zip")
    loaded = matfact.load(tmp_path / "m.zip")
    assert loaded.rating_scale_ == (1.0, 5.0) and loaded.rating_step_ == 1.0
    with pytest.raises(DataError, match="not on the steps of 1"):
        loaded.apply_ratings([1], [10], [3.5], dry_run=True)
    with pytest.raises(DataError, match="not on the steps of 1"):
        loaded.recommend_for_history([10], [3.5])
    with pytest.raises(DataError, match="outside the rating scale"):
        loaded.partial_fit(Interactions.from_arrays([4], [10], [9]))
    # A file written before steps were kept has no rating_step_: it loads without one.
    del model.rating_step_
    model.save(tmp_path / "old.zip")
    old = matfact.load(tmp_path / "old.zip")
    assert "rating_step_" not in vars(old) and old.rating_step_ is None
    assert old.recommend_for_history([10], [3.5], n=1)[0].tolist() in ([11], [12])
