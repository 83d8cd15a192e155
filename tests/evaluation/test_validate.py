"""cross_validate(): folds as kfold's, metrics as evaluate's, parallel equals serial."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import matfact
from matfact import Baseline, ParameterError, Popularity, cross_validate
from tests.models.contract import planted_interactions


@pytest.fixture(scope="module")
def ratings():
    return planted_interactions("explicit", n_users=70, n_items=45, density=0.35, seed=5)


def test_folds_match_kfold_and_partition_the_data(ratings):
    frame, models = cross_validate(Baseline(), ratings, cv=4, return_models=True,
                                   random_state=3)
    splits = matfact.kfold(ratings, 4, random_state=3)
    assert list(frame.index) == [0, 1, 2, 3, "mean", "std"]
    assert frame.loc[[0, 1, 2, 3], "n_test"].sum() == ratings.nnz
    for fold, split in enumerate(splits):
        assert frame.loc[fold, "n_train"] == split.train.nnz
        expected = matfact.evaluate(models[fold], split.test)
        assert frame.loc[fold, "rmse"] == expected["rmse"]
        assert frame.loc[fold, "mae"] == expected["mae"]
        assert models[fold].n_users_ == split.train.n_users


def test_mean_and_std_rows(ratings):
    frame = cross_validate(Baseline(), ratings, cv=3)
    folds = frame.loc[[0, 1, 2], "rmse"].astype(float)
    assert frame.loc["mean", "rmse"] == pytest.approx(folds.mean())
    assert frame.loc["std", "rmse"] == pytest.approx(folds.std(ddof=1))
    assert (frame.loc[[0, 1, 2], ["fit_time", "test_time"]] >= 0).all().all()


def test_ranking_metrics_and_defaults():
    data = planted_interactions("implicit", seed=6)
    frame = cross_validate(Popularity(), data, cv=3, metrics=["ndcg@5", "precision", "auc"])
    split = matfact.kfold(data, 3, random_state=0)[1]
    model = Popularity().fit(split.train)
    expected = matfact.evaluate_ranking(model, split.test, k=10,
                                        metrics=["ndcg@5", "precision", "auc"])
    assert frame.loc[1, "ndcg@5"] == expected["ndcg@5"]
    assert frame.loc[1, "precision"] == expected["precision@10"]
    assert frame.loc[1, "auc"] == expected["auc"]
    default = cross_validate(Popularity(), data, cv=2, k=5)
    assert {"ndcg@5", "precision@5"} <= set(default.columns)


def test_explicit_pairs_and_splitter(ratings):
    pairs = [matfact.train_test_split(ratings, 0.2, "per_user", random_state=s)
             for s in range(2)]
    a = cross_validate(Baseline(), ratings, cv=pairs)
    b = cross_validate(Baseline(), ratings, cv=lambda d: [(p.train, p.test) for p in pairs])
    pd.testing.assert_frame_equal(a.drop(columns=["fit_time", "test_time"]),
                                  b.drop(columns=["fit_time", "test_time"]))
    assert len(a) == 4


def test_parallel_folds_equal_serial(ratings):
    model = matfact.ALS(n_factors=3, max_iter=4, random_state=0)
    serial = cross_validate(model, ratings, cv=3)
    parallel = cross_validate(model, ratings, cv=3, n_jobs=2)
    np.testing.assert_array_equal(serial["rmse"].to_numpy(), parallel["rmse"].to_numpy())


def test_jobs_times_threads_within_the_cores(monkeypatch):
    from matfact.evaluation import validate

    monkeypatch.setattr(validate.os, "cpu_count", lambda: 8)
    assert validate.jobs_and_threads(matfact.ALS(), 4, 5) == (4, 2)
    assert validate.jobs_and_threads(matfact.ALS(n_threads=1), 4, 5) == (4, 1)
    assert validate.jobs_and_threads(matfact.ALS(), -1, 3) == (3, 2)
    assert validate.jobs_and_threads(matfact.ALS(), 1, 5) == (1, None)


@pytest.mark.parametrize("kwargs,match", [
    ({"cv": "five"}, "cv must be"),
    ({"cv": []}, "cv must be"),
    ({"metrics": []}, "at least one"),
    ({"metrics": ["ndcg@zero"]}, "ndcg@zero"),
    ({"n_jobs": 0}, "n_jobs"),
])
def test_bad_arguments(ratings, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        cross_validate(Baseline(), ratings, **kwargs)


def test_rating_metrics_refused_on_implicit_data():
    with pytest.raises(ParameterError, match="explicit"):
        cross_validate(Popularity(), planted_interactions("implicit"), metrics="rmse")


# ---------------------------------------------------------------------- beyond accuracy
def test_popularity_and_novelty_in_evaluate_ranking():
    from matfact.evaluation.metrics import item_popularity

    data = planted_interactions("implicit", seed=8)
    split = matfact.train_test_split(data, 0.2, "per_user", random_state=0)
    model = Popularity().fit(split.train)
    summary, per_user = matfact.evaluate_ranking(model, split.test, k=5,
                                                 metrics=["popularity", "novelty"],
                                                 per_user=True)
    p = item_popularity(model.seen_)
    ids, _ = model.recommend(per_user.index.to_numpy(), n=5)
    codes = model.item_index_.get_indexer(ids.ravel()).reshape(ids.shape)
    np.testing.assert_allclose(per_user["popularity@5"], p[codes].mean(axis=1))
    # Popularity recommends the most popular items it can: more popular than the test items.
    assert summary["popularity@5"] > summary["test_popularity"]
    assert summary["novelty@5"] == pytest.approx(per_user["novelty@5"].mean())


def test_breakdown_by_user_activity(ratings):
    split = matfact.train_test_split(ratings, 0.2, "random", random_state=1)
    model = Baseline().fit(split.train)
    counts = np.diff(model.seen_.indptr)
    present = split.test.user_ids[np.unique(split.test.user_codes)]
    activity = counts[model.user_index_.get_indexer(present)]
    low, high = (int(np.percentile(activity, q)) for q in (30, 70))
    frame = matfact.evaluate_by_activity(model, split.test, metrics=["rmse", "ndcg@5"],
                                         bins=(low, high))
    assert len(frame) == 3
    assert frame["n_users"].sum() == len(present)
    assert frame["n_test"].sum() == split.test.nnz
    cold = split.test.subset(users=present[activity <= low])
    assert frame.iloc[0]["rmse"] == pytest.approx(matfact.evaluate(model, cold)["rmse"])
    heavy = split.test.subset(users=present[activity > high])
    assert frame.iloc[2]["ndcg@5"] == pytest.approx(
        matfact.evaluate_ranking(model, heavy, k=5, metrics=["ndcg"])["ndcg@5"])
    assert frame.index[0] == f"cold (≤ {low})"
    with pytest.raises(ParameterError, match="bins"):
        matfact.evaluate_by_activity(model, split.test, bins=(5, 5))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_cross_validate_reports_each_fold_as_plain_lines(capsys, n_jobs):
    # Issue 20: a long cross-validation in a log shows its folds, not one line at the end.
    data = planted_interactions()
    quiet = cross_validate(Baseline(), data, cv=3, n_jobs=n_jobs)
    assert capsys.readouterr().err == ""
    loud = cross_validate(Baseline(), data, cv=3, n_jobs=n_jobs, progress="lines")
    err = capsys.readouterr().err
    # The first fold and the last are always written; no bar fragments.
    assert "Baseline cross-validation: fold 1/3" in err
    assert "Baseline cross-validation: fold 3/3" in err and "\r" not in err
    pd.testing.assert_frame_equal(quiet.drop(columns=["fit_time", "test_time"]),
                                  loud.drop(columns=["fit_time", "test_time"]))
