"""Helpers shared by the kernels, against straightforward NumPy answers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matfact._kernels._common import balanced_row_bounds, longest_row, ordered_sum


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(0, 50), max_size=60), n_parts=st.integers(1, 12))
def test_balanced_row_bounds_cut_the_rows_into_parts_of_about_equal_work(counts, n_parts):
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    bounds = balanced_row_bounds(indptr, n_parts)
    assert len(bounds) == n_parts + 1
    assert bounds[0] == 0 and bounds[-1] == len(counts)
    assert (np.diff(bounds) >= 0).all()
    # Each part holds at most its fair share plus one row (work = entries + 1 per row).
    work = np.asarray(counts, dtype=np.int64) + 1
    fair = work.sum() / n_parts
    biggest = work.max() if len(work) else 0
    for p in range(n_parts):
        assert work[bounds[p]:bounds[p + 1]].sum() <= fair + biggest


def test_balanced_row_bounds_follow_the_entries_not_the_row_count():
    # One heavy row first: with two parts it sits alone in the first.
    indptr = np.array([0, 100, 101, 102, 103, 104], dtype=np.int64)
    np.testing.assert_array_equal(balanced_row_bounds(indptr, 2), [0, 1, 5])


def test_longest_row_and_ordered_sum():
    indptr = np.array([0, 2, 2, 7, 8], dtype=np.int64)
    assert longest_row(indptr) == 5
    assert longest_row(np.zeros(1, dtype=np.int64)) == 0
    # Exactly representable partial sums: the total does not depend on the grouping
    # (which numba may vectorize once a kernel inlines this), only on the values.
    assert ordered_sum(np.array([1.5, 2.25, -0.5, 4.0])) == 7.25
    assert ordered_sum(np.zeros(0)) == 0.0
