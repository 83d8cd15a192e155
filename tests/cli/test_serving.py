"""``matfact retrain`` and the rating log (cli/serving.py)."""

from __future__ import annotations

import pytest

import matfact
from tests.cli.helpers import (
    run,
)


def test_retrain_records_the_log_position_and_partial_takes_only_what_is_new(
        capsys, tmp_path, comma_csv):
    pytest.importorskip("sqlalchemy", reason="the serve extra is not installed")
    from matfact.serving.store import Rating, RatingStore

    target, db = tmp_path / "model.zip", tmp_path / "log.sqlite"
    code, _, err = run(capsys, "train", "--data", comma_csv, "--model", "BiasedMF", "--out",
                       target, "--param", "max_iter=3")
    assert code == 0, err
    with RatingStore(db) as store:
        store.append([Rating(1, 101, 5.0), Rating(2, 999, 4.0)])
        log_id = store.log_id
    code, out, err = run(capsys, "retrain", "--data", comma_csv, "--db", db, "--model", target)
    assert code == 0, err
    assert "(2 from the log)" in out
    with RatingStore(db) as store:
        assert matfact.load(target).rating_log_ == store.position(2, Rating(2, 999, 4.0))

    with RatingStore(db) as store:
        store.append([Rating(3, 999, 2.0)])
    code, out, err = run(capsys, "retrain", "--db", db, "--model", target, "--partial")
    assert code == 0, err
    assert "with 1 logged ratings" in out  # not the two the file was fitted with
    refined = matfact.load(target)
    assert refined.rating_log_["id"] == log_id and refined.rating_log_["position"] == 3
    assert refined.seen_[refined.user_index_.get_indexer([3])[0],
                         refined.item_index_.get_indexer([999])[0]] == 2.0
    code, out, err = run(capsys, "retrain", "--db", db, "--model", target, "--partial")
    assert code == 0 and "nothing to add" in out
    # Against another log the file's position means nothing: all of that log is new.
    with RatingStore(tmp_path / "other.sqlite") as other:
        other.append([Rating(4, 101, 1.0)])
    code, out, err = run(capsys, "retrain", "--db", tmp_path / "other.sqlite", "--model",
                         target, "--partial")
    assert code == 0 and "with 1 logged ratings" in out, err


def test_index_builds_into_the_file_and_retrain_keeps_it(capsys, tmp_path, comma_csv):
    pytest.importorskip("faiss", reason="the ann extra is not installed")
    pytest.importorskip("sqlalchemy", reason="the serve extra is not installed")
    from matfact.serving.store import Rating, RatingStore

    target, db = tmp_path / "model.zip", tmp_path / "log.sqlite"
    code, _, err = run(capsys, "train", "--data", comma_csv, "--model", "BiasedMF", "--out",
                       target, "--param", "max_iter=3")
    assert code == 0, err
    code, out, err = run(capsys, "index", "--model", target, "--lists", "4", "--similar")
    assert code == 0, err
    assert "Built the approximate index" in out and "similar: 4 lists" in err
    model = matfact.load(target)
    assert model.ann_settings_["n_lists"] == 4 and len(model.ann_lists_) == model.n_items_
    users = model.user_index_.ids[:5]
    exact = model.recommend(users, n=3)[0]
    model.build_index(n_lists=4, n_probe=4)
    assert (model.recommend(users, n=3, approximate=True)[0] == exact).all()

    code, _, err = run(capsys, "index", "--model", target, "--recall", "1.5")
    assert code != 0 and "recall must lie in (0, 1]" in err
    code, _, err = run(capsys, "index", "--model", tmp_path / "missing.zip")
    assert code != 0 and "not a model file" in err

    # A refit and a partial refit drop the index with the old vectors: retrain builds
    # it again with the file's settings before it saves.
    with RatingStore(db) as store:
        store.append([Rating(1, 101, 5.0), Rating(2, 999, 4.0)])
    for extra in ((), ("--partial",)):
        with RatingStore(db) as store:
            store.append([Rating(3, 102, 2.0)])
        data = () if extra else ("--data", comma_csv)
        code, _, err = run(capsys, "retrain", *data, "--db", db, "--model", target, *extra)
        assert code == 0, err
        assert "Rebuilt the approximate index (recommend, similar)" in err
        refitted = matfact.load(target)
        assert refitted.ann_settings_["n_lists"] == 4
        assert len(refitted.ann_lists_) == refitted.n_items_
        assert len(refitted.ann_similar_lists_) == refitted.n_items_
