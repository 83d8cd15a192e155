"""``matfact recommend --all --out FILE`` and ``--user ... --out FILE`` (issue 21)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import matfact
from matfact._threads import single_thread
from tests.cli.helpers import assert_one_error_line, run

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    data = matfact.make_synthetic(50, 30, 500, random_state=0)
    model = matfact.BiasedMF(n_factors=4, max_iter=20, random_state=0).fit(data, progress=False)
    path = tmp_path_factory.mktemp("model") / "m.zip"
    model.save(path)
    return path


def _expected(model, users, n, exclude_seen=True):
    with single_thread():  # recommend_all's workers score each block on one thread
        ids, scores, fallback = model.recommend(users, n, exclude_seen=exclude_seen,
                                                return_fallback=True)
    keep = ~np.isnan(scores)
    return pd.DataFrame({"user": np.repeat(np.asarray(users), keep.sum(axis=1)),
                         "rank": np.tile(np.arange(1, ids.shape[1] + 1), len(users))[
                             keep.reshape(-1)],
                         "item": ids[keep], "score": scores[keep],
                         "fallback": np.repeat(fallback, keep.sum(axis=1))})


def test_all_users_to_parquet_is_every_recommend_list(capsys, tmp_path, model_file):
    out = tmp_path / "recs.parquet"
    code, stdout, err = run(capsys, "recommend", "--model", model_file, "--all", "-n", "4",
                            "--out", out)
    assert code == 0, err
    model = matfact.load(model_file)
    assert f"Wrote {model.n_users_ * 4:,} recommendations for {model.n_users_:,} users" in stdout
    assert f"user {model.n_users_}/{model.n_users_}" in err  # plain progress lines off a tty
    expected = _expected(model, model.user_index_.ids, 4)
    frame = pd.read_parquet(out)
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    assert frame["score"].max() <= model.rating_scale_[1]  # clipped as recommend clips
    assert os.listdir(tmp_path) == ["recs.parquet"]


def test_given_users_to_csv_with_seen_items_and_the_fallback(capsys, tmp_path, model_file):
    out = tmp_path / "two.CSV"
    code, stdout, err = run(capsys, "recommend", "--model", model_file, "--user", "3",
                            "--user", "nobody", "-n", "2", "--include-seen", "--out", out,
                            "--quiet")
    assert code == 0, err
    assert "seen items included" in stdout and err == ""
    frame = pd.read_csv(out, dtype={"user": str})
    model = matfact.load(model_file)
    expected = _expected(model, [3, "nobody"], 2, exclude_seen=False)
    assert frame["user"].tolist() == ["3", "3", "nobody", "nobody"]
    assert frame["item"].tolist() == expected["item"].tolist()
    assert frame["fallback"].tolist() == [False, False, True, True]


@pytest.mark.parametrize("argv, match", [
    (["--all"], "add --out"),
    (["--all", "--user", "1", "--out", "x.parquet"], "not both"),
    ([], "--all --out FILE"),
    (["--all", "--out", "x.txt"], r"\.parquet or \.csv"),
    (["--all", "--out", "."], "is a directory"),
    (["--all", "--out", "missing/x.parquet"], "no directory"),
    (["--all", "--out", "x.parquet", "--json"], "--json applies to printed lists"),
    (["--all", "--out", "x.parquet", "--explain"], "--explain applies to printed lists"),
    (["--all", "--out", "x.parquet", "--item-titles", "t.csv"], "--item-titles applies"),
    (["--all", "--out", "x.parquet", "--block-size", "0"], "--block-size must be"),
    (["--user", "1", "--block-size", "5"], "--block-size applies to --out"),
    (["--all", "--out", "x.parquet", "-n", "0"], "-n must be"),
])
def test_bad_arguments_are_one_line_errors_and_write_nothing(capsys, tmp_path, model_file,
                                                             monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "recommend", "--model", model_file, *argv)
    assert code == 2
    assert_one_error_line(err)
    assert re.search(match, err), err
    assert os.listdir(tmp_path) == []


def test_the_existing_recommend_still_prints(capsys, model_file):
    code, stdout, _ = run(capsys, "recommend", "--model", model_file, "--user", "3", "-n", "2",
                          "--json")
    assert code == 0 and '"items"' in stdout


def test_the_command_line_end_to_end(tmp_path, model_file):
    out = tmp_path / "recs.parquet"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(matfact.__path__[0])}  # this tree's
    done = subprocess.run([sys.executable, "-m", "matfact", "recommend", "--model",
                           str(model_file), "--all", "--out", str(out), "--block-size", "7"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    model = matfact.load(model_file)
    scores = model.recommend(model.user_index_.ids, 10)[1]
    assert len(pd.read_parquet(out)) == (~np.isnan(scores)).sum() > 400
