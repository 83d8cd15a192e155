"""Top-n selection: the numba kernel (parallel and serial), its NumPy reference, a slow sort."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matfact._kernels.topk import topk_rows, topk_rows_reference
from matfact.models.ranking import top_n, top_n_rows


def reference(scores, excluded, n):
    """Score descending, lower index first on ties; excluded and NaN skipped; -1/NaN pad."""
    row = scores.astype(np.float64).copy()
    row[list(excluded)] = -np.inf
    row[np.isnan(row)] = -np.inf
    order = sorted(range(len(row)), key=lambda j: (-row[j], j))
    top = [j for j in order if row[j] > -np.inf][:n]
    return top + [-1] * (n - len(top))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(1, 25), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_kernel_and_single_row_path_match_reference(n_rows, n_cols, n, seed):
    # The parallel kernel, the serial one (a single row) and the NumPy reference agree
    # with a plain sort by (-score, index) on scores full of ties and NaN.
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, (n_rows, n_cols)).astype(np.float32)  # many ties
    scores[rng.random((n_rows, n_cols)) < 0.1] = np.nan
    excluded = [np.sort(rng.choice(n_cols, rng.integers(0, n_cols + 1), replace=False))
                for _ in range(n_rows)]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(e) for e in excluded])
    indices = np.concatenate(excluded).astype(np.int32)
    idx, val = topk_rows(scores, indptr, indices, n)
    for r in range(n_rows):
        expected = reference(scores[r], excluded[r], n)
        assert idx[r].tolist() == expected
        filled = np.array(expected) >= 0
        np.testing.assert_array_equal(val[r][filled], scores[r][np.array(expected)[filled]])
        assert np.isnan(val[r][~filled]).all()
        one_idx, one_val = top_n_rows(scores[r:r + 1], n, np.array([0, len(excluded[r])]),
                                      excluded[r].astype(np.int32))
        assert one_idx[0].tolist() == expected
        np.testing.assert_array_equal(one_val[0], val[r])
        vector_idx, vector_val = top_n(scores[r], n, excluded[r])
        assert vector_idx.tolist() == [j for j in expected if j >= 0]
        np.testing.assert_array_equal(vector_val, val[r][filled])
    ref_idx, ref_val = topk_rows_reference(scores, indptr, indices, n)
    np.testing.assert_array_equal(ref_idx, idx)
    np.testing.assert_array_equal(ref_val, val)


def test_parallel_and_serial_kernels_are_cached_apart():
    # numba keys its cache by function and signature, not by jit options (numba#6845):
    # when both dispatchers wrapped one function, the parallel kernel could load the
    # serial compilation and rank a batch on one thread (issue 21).
    from matfact._kernels.topk import topk_rows_serial

    files = {d._cache._cache_file._index_path for d in (topk_rows, topk_rows_serial)}
    assert len(files) == 2
    scores = np.arange(12, dtype=np.float32).reshape(2, 6)
    none = (np.zeros(3, np.int64), np.zeros(0, np.int32))
    assert topk_rows(scores, *none, 3)[0].tolist() == topk_rows_serial(scores, *none, 3)[0].tolist()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(65, 400), st.integers(0, 12), st.integers(0, 4),
       st.integers(0, 2**32 - 1))
def test_long_rows_skip_runs_of_columns_exactly(n_rows, n_cols, n, levels, seed):
    # Rows longer than the runs the kernel skips once its heap is full (issue 21): ties
    # with the heap's worst in a later run, NaN and excluded columns scoring highest, on
    # both kernels, agree with the NumPy reference.
    from matfact._kernels.topk import _CHUNK, topk_rows_serial

    assert n_cols > 2 * _CHUNK
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, levels + 2, (n_rows, n_cols)) if levels
              else rng.standard_normal((n_rows, n_cols))).astype(np.float32)
    scores[rng.random((n_rows, n_cols)) < 0.05] = np.nan
    excluded = [np.sort(rng.choice(n_cols, rng.integers(0, n_cols // 3), replace=False))
                for _ in range(n_rows)]
    for r, cols in enumerate(excluded):
        scores[r, cols[: len(cols) // 2]] = 1e9  # the best scores are excluded ones
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(e) for e in excluded])
    indices = np.concatenate(excluded).astype(np.int32)
    ref_idx, ref_val = topk_rows_reference(scores, indptr, indices, n)
    for kernel in (topk_rows, topk_rows_serial):
        idx, val = kernel(scores, indptr, indices, n)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(val, ref_val)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(1, 300), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_columns_read_first_change_nothing_but_the_speed(n_rows, n_cols, n, seed):
    # Any distinct columns read first, excluded or NaN or tied among them, give the
    # lists of the plain scan (ties across the seed and the rest: lower index first).
    from matfact._kernels.topk import topk_rows_serial

    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, (n_rows, n_cols)).astype(np.float32)
    scores[rng.random((n_rows, n_cols)) < 0.1] = np.nan
    excluded = [np.sort(rng.choice(n_cols, rng.integers(0, n_cols + 1), replace=False))
                for _ in range(n_rows)]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(e) for e in excluded])
    indices = np.concatenate(excluded).astype(np.int32)
    first = rng.choice(n_cols, rng.integers(1, n_cols + 1), replace=False).astype(np.int64)
    ref_idx, ref_val = topk_rows_reference(scores, indptr, indices, n)
    for kernel in (topk_rows, topk_rows_serial):
        idx, val = kernel(scores, indptr, indices, n, first)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(val, ref_val)
    idx, val = top_n_rows(scores, n, indptr, indices, first=first)
    np.testing.assert_array_equal(idx, ref_idx)
