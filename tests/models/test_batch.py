"""Batch scoring (issue 21): ``recommend_all`` is ``recommend``, block by block; the writer.

Every list is compared with ``model.recommend`` of the same users, ids and scores
bit for bit (the padding and the fallback flag included), across block sizes that cut
the users anywhere; the files are read back with pandas and compared the same way.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import matfact
from matfact._threads import single_thread
from matfact.exceptions import NotFittedError, ParameterError, UnknownIdError
from matfact.io import write_recommendations
from matfact.models import batch
from matfact.models.batch import BLOCK_BYTES, MAX_BLOCK_ROWS, MIN_BLOCK_ROWS, block_rows

pytest.importorskip("pyarrow")


def _implicit_model():
    data = matfact.make_synthetic(60, 25, 600, implicit=True, random_state=0)
    model = matfact.ImplicitALS(n_factors=4, max_iter=3, random_state=0).fit(data, progress=False)
    # A user placed from nothing (their one item is as new as they are) is unplaced:
    # recommend gives them the popularity fallback, and so must recommend_all.
    model.apply_ratings([10**6], [10**6], [1.0])
    return model


def _clipped_model():
    # Ratings of 1 and 5 only, little regularization: predictions beyond both ends.
    rng = np.random.default_rng(1)
    users, items = np.divmod(rng.choice(40 * 30, 500, replace=False), 30)
    ratings = np.where((users + items) % 3 == 0, 5.0, 1.0)
    data = matfact.Interactions.from_arrays(users, items, ratings, rating_scale=(1, 5, 1))
    return matfact.BiasedMF(n_factors=6, reg=0.001, max_iter=60,
                            random_state=0).fit(data, progress=False)


def _string_model():
    # String ids; user "u00" has seen every item (an empty list), "u01" all but two.
    rng = np.random.default_rng(2)
    rows = [("u00", f"i{j:02d}") for j in range(12)]
    rows += [("u01", f"i{j:02d}") for j in range(10)]
    rows += [(f"u{u:02d}", f"i{j:02d}") for u in range(2, 30)
             for j in rng.choice(12, 4, replace=False)]
    users, items = zip(*rows, strict=True)
    data = matfact.Interactions.from_arrays(list(users), list(items))
    return matfact.ImplicitALS(n_factors=3, max_iter=3, random_state=0).fit(data, progress=False)


def _popularity_model():
    data = matfact.make_synthetic(30, 20, 200, implicit=True, random_state=3)
    return matfact.Popularity().fit(data, progress=False)


MODELS = {"implicit_als": _implicit_model, "biased_mf_clipped": _clipped_model,
          "string_ids": _string_model, "popularity": _popularity_model}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    return MODELS[request.param]()


def _gathered(blocks):
    blocks = list(blocks)
    return (np.concatenate([b.users for b in blocks]), np.concatenate([b.ids for b in blocks]),
            np.concatenate([b.scores for b in blocks]),
            np.concatenate([b.fallback for b in blocks]), [len(b.users) for b in blocks])


def _assert_same(got, expected):
    ids, scores, fallback = expected
    assert got[1].dtype.kind == ids.dtype.kind
    np.testing.assert_array_equal(got[1], ids)
    assert got[2].dtype == np.float32
    np.testing.assert_array_equal(got[2], scores)  # NaN padding in the same slots
    np.testing.assert_array_equal(got[3], fallback)


def _recommend_by_block(model, users, n, rows, **kwargs):
    """``recommend`` of each block of ``users`` on one thread, as recommend_all's workers."""
    users = np.asarray(users)
    with single_thread():
        parts = [model.recommend(users[s:s + rows], n, return_fallback=True, **kwargs)
                 for s in range(0, len(users), rows)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


@pytest.mark.parametrize("block_size", [1, 7, None, 10**6])
@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("n", [5, 40])
def test_every_user_gets_exactly_the_recommend_list(model, block_size, exclude_seen, n):
    everyone = model.user_index_.ids
    rows = block_rows(model.n_items_, block_size)
    expected = _recommend_by_block(model, everyone, n, rows, exclude_seen=exclude_seen)
    got = _gathered(model.recommend_all(n, exclude_seen=exclude_seen, block_size=block_size,
                                        n_threads=2, progress=False))
    np.testing.assert_array_equal(got[0], model.user_index_.to_ids(np.arange(model.n_users_)))
    _assert_same(got, expected)
    assert got[4] == [min(rows, model.n_users_ - s) for s in range(0, model.n_users_, rows)]
    if block_size is None or block_size >= model.n_users_:  # one block: recommend(everyone)
        with single_thread():
            _assert_same(got, model.recommend(everyone, n, exclude_seen=exclude_seen,
                                              return_fallback=True))


def test_the_cases_the_fixtures_are_there_for():
    # Guards of the comparisons above: each fixture has what it is meant to test.
    implicit = _implicit_model()
    assert implicit.recommend_all(5, progress=False).__next__().fallback.any()
    clipped = _clipped_model()
    scores = np.concatenate([b.scores for b in clipped.recommend_all(40, progress=False)])
    assert (scores == 5.0).any() and (scores == 1.0).any()
    assert (clipped.score_users(np.arange(clipped.n_users_)) > 5).any()
    strings = _string_model()
    block = next(strings.recommend_all(40, block_size=2, progress=False))
    assert block.users.tolist() == ["u00", "u01"]
    assert block.ids.shape == (2, 12)  # n capped at the catalogue
    assert (block.ids[0] == "").all() and np.isnan(block.scores[0]).all()
    assert (block.ids[1, 2:] == "").all() and not np.isnan(block.scores[1, :2]).any()


def test_given_users_in_their_order_unknown_ones_by_the_fallback():
    model = _implicit_model()
    users = [5, 10**9, 0, 5]
    got = _gathered(model.recommend_all(4, users=users, block_size=3, progress=False))
    assert got[0].tolist() == users
    _assert_same(got, _recommend_by_block(model, users, 4, 3))
    assert got[3].tolist() == [False, True, False, False]
    with pytest.raises(UnknownIdError, match="1000000000"):
        model.recommend_all(4, users=users, unknown="raise")  # at the call, not at next()
    assert list(model.recommend_all(4, users=[], progress=False)) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be"), ({"n": True}, "n must be"), ({"block_size": 0}, "block_size"),
    ({"block_size": 2.5}, "block_size"), ({"progress": "loud"}, "progress"),
    ({"unknown": "nan"}, "unknown"),
])
def test_bad_arguments_fail_at_the_call(kwargs, match):
    model = _popularity_model()
    with pytest.raises(ParameterError, match=match):
        model.recommend_all(**kwargs)
    with pytest.raises(NotFittedError):
        matfact.ImplicitALS().recommend_all()


def test_block_size_default_bounds_the_scores_held():
    assert block_rows(20_000) == BLOCK_BYTES // (4 * 20_000)
    assert block_rows(10**9) == MIN_BLOCK_ROWS
    assert block_rows(10) == MAX_BLOCK_ROWS
    assert block_rows(10, 3) == 3
    model = _implicit_model()
    shapes = []
    score_users = model.score_users
    model.score_users = lambda users: shapes.append(len(users)) or score_users(users)
    list(model.recommend_all(3, block_size=8, progress=False))
    assert max(shapes) == 8 and sum(shapes) == model.n_users_


def test_progress_lines_count_the_users(capsys):
    model = _popularity_model()
    list(model.recommend_all(3, block_size=7, progress="lines"))
    err = capsys.readouterr().err
    assert f"user {model.n_users_}/{model.n_users_}" in err


# ------------------------------------------------------------------------------ the file
def _expected_rows(model, n, users=None, rows=7, exclude_seen=True):
    users = model.user_index_.ids if users is None else np.asarray(users)
    ids, scores, fallback = _recommend_by_block(model, users, n, rows, exclude_seen=exclude_seen)
    rows = [(u, r + 1, i, s, f) for u, row_i, row_s, f in zip(users.tolist(), ids.tolist(),
                                                               scores.tolist(), fallback,
                                                               strict=True)
            for r, (i, s) in enumerate(zip(row_i, row_s, strict=True)) if s == s]
    return pd.DataFrame(rows, columns=["user", "rank", "item", "score", "fallback"])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_file_round_trip_is_the_recommend_lists(model, tmp_path, suffix):
    path = tmp_path / f"recs{suffix}"
    written = write_recommendations(model, path, 12, block_size=7, progress=False)
    frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(
        path, dtype={"user": str, "item": str} if model.user_index_.kind == "str" else None)
    expected = _expected_rows(model, 12)
    assert list(frame.columns) == ["user", "rank", "item", "score", "fallback"]
    assert written == (path, model.n_users_, len(expected), int(expected.groupby("user")[
        "fallback"].first().sum()))
    pd.testing.assert_frame_equal(frame[["user", "rank", "item", "fallback"]],
                                  expected[["user", "rank", "item", "fallback"]],
                                  check_dtype=False)
    if suffix == ".parquet":
        np.testing.assert_array_equal(frame["score"].to_numpy(),
                                      expected["score"].to_numpy(np.float32))
        for column, index in (("user", model.user_index_), ("item", model.item_index_)):
            if index.kind == "int":
                assert frame[column].dtype == np.int64
            else:
                assert pd.api.types.is_string_dtype(frame[column])
        assert (frame["rank"].dtype, frame["score"].dtype) == (np.int32, np.float32)
        import pyarrow.parquet as pq

        about = json.loads(pq.read_schema(path).metadata[b"matfact"])
        assert about["model"] == type(model).__name__ and about["n"] == 12
        assert about["score_kind"] == model.score_kind
    else:  # text: the float32 scores as written, to their precision
        np.testing.assert_allclose(frame["score"], expected["score"], rtol=1e-6)
    assert os.listdir(tmp_path) == [path.name]


def test_parquet_of_given_users_and_seen_items_included(tmp_path):
    model = _string_model()
    path = tmp_path / "some.parquet"
    write_recommendations(model, path, 3, users=["u05", "nobody"], exclude_seen=False,
                          progress=False)
    frame = pd.read_parquet(path)
    expected = _expected_rows(model, 3, ["u05", "nobody"], exclude_seen=False, rows=1000)
    pd.testing.assert_frame_equal(frame.drop(columns="score"), expected.drop(columns="score"),
                                  check_dtype=False)
    assert frame["fallback"].tolist() == [False] * 3 + [True] * 3


def test_no_users_writes_the_columns_alone(tmp_path):
    model = _string_model()
    for suffix in (".parquet", ".csv"):
        path = tmp_path / f"none{suffix}"
        assert write_recommendations(model, path, users=[], progress=False).n_rows == 0
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        assert list(frame.columns) == ["user", "rank", "item", "score", "fallback"]
        assert len(frame) == 0


def test_a_failed_run_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    model = _implicit_model()
    path = tmp_path / "recs.parquet"
    path.write_bytes(b"the previous file")
    real = batch._long_rows
    calls = []

    def fail_on_the_second_block(block):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of a run
        return real(block)

    monkeypatch.setattr(batch, "_long_rows", fail_on_the_second_block)
    with pytest.raises(KeyboardInterrupt):
        write_recommendations(model, path, 3, block_size=5, progress=False)
    assert path.read_bytes() == b"the previous file"
    assert os.listdir(tmp_path) == ["recs.parquet"]


@pytest.mark.parametrize("name, error, match", [
    ("recs.txt", ParameterError, r"\.parquet or \.csv"),
    ("recs", ParameterError, r"\.parquet or \.csv"),
    ("missing/recs.parquet", FileNotFoundError, "missing"),
    (".", ParameterError, "is a directory"),
])
def test_bad_targets_are_refused_before_any_scoring(tmp_path, name, error, match, monkeypatch):
    model = _popularity_model()
    monkeypatch.setattr(model, "_ranked_codes", None)  # scoring anything would fail
    with pytest.raises(error, match=match):
        write_recommendations(model, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_ml100k_every_user_as_recommend(ml100k, tmp_path):
    model = matfact.ImplicitALS(n_factors=16, max_iter=3, random_state=0).fit(
        ml100k.to_implicit(), progress=False)
    everyone = model.user_index_.ids
    got = _gathered(model.recommend_all(10, block_size=100, n_threads=2, progress=False))
    _assert_same(got, _recommend_by_block(model, everyone, 10, 100))
    # recommend(everyone) is one product on BLAS's threads: its float32 scores may differ
    # in the last bit, never more, and only near-ties may swap.
    ids, scores = model.recommend(everyone, 10)
    np.testing.assert_allclose(got[2], scores, rtol=2e-6)
    assert (got[1] == ids).mean() > 0.99
    path = write_recommendations(model, tmp_path / "ml.parquet", 10, block_size=100,
                                 progress=False).path
    frame = pd.read_parquet(path)
    assert len(frame) == 943 * 10
    np.testing.assert_array_equal(frame["item"].to_numpy().reshape(943, 10), got[1])
