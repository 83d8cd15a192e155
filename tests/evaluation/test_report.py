"""Tests of the model-comparison report (``build_report`` and ``matfact evaluate --models``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matfact import ALS, Baseline, Popularity
from matfact.cli import main
from matfact.evaluation.report import FIGURES, build_report, report_metrics
from matfact.evaluation.validate import cross_validate
from matfact.exceptions import DataError, ParameterError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small(ml100k):
    """ML-100K users 1–150: big enough for two meaningful folds, small enough to be quick."""
    return ml100k.subset(users=np.arange(1, 151))


def fast_models() -> dict:
    # tol=None (ALS's default) runs exactly max_iter iterations without a ConvergenceWarning.
    return {"Baseline": Baseline(), "Popularity": Popularity(),
            "ALS": ALS(n_factors=8, max_iter=3, random_state=0)}


@pytest.fixture(scope="module")
def report(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report(fast_models(), small, cv=2, out=out, tune=TUNED, tune_trials=3,
                        progress=False)


TUNED = {"ALS": {"reg": [0.05, 0.2], "n_factors": [4, 8]}}


def test_report_writes_every_file(report):
    for name in ("index.md", "index.html", "results.csv", "summary.csv", *FIGURES):
        assert (report / name).stat().st_size > 0, name
    for name in FIGURES:
        assert (report / name).read_bytes()[:8] == PNG_MAGIC, name
    html = (report / "index.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    for name in FIGURES:
        assert f'<img src="{name}"' in html
        assert f"]({name})" in (report / "index.md").read_text(encoding="utf-8")


def test_report_table_matches_cross_validate(report, small):
    text = (report / "index.md").read_text(encoding="utf-8")
    for name in fast_models():
        assert f"| {name} |" in text
    expected = cross_validate(Baseline(), small, cv=2, metrics=["rmse"], random_state=0)
    assert f"{expected.loc['mean', 'rmse']:.4f} ± {expected.loc['std', 'rmse']:.4f}" in text
    summary = pd.read_csv(report / "summary.csv").set_index("model")
    assert summary.loc["Baseline", "rmse"] == pytest.approx(expected.loc["mean", "rmse"],
                                                            rel=1e-5)
    # A ranking-only model has no RMSE, but every model has the ranking metrics.
    assert np.isnan(summary.loc["Popularity", "rmse"])
    assert summary[["ndcg@10", "precision@10", "recall@10"]].notna().all().all()


def test_report_per_fold_csv(report, small):
    results = pd.read_csv(report / "results.csv")
    assert set(results["model"]) == set(fast_models())
    assert (results.groupby("model").size() == 2).all()
    # Each fold's train and test parts together hold all the data.
    assert ((results["n_train"] + results["n_test"]) == small.nnz).all()


def test_report_shows_that_no_test_pair_was_seen_in_training(report):
    """Issue 20: the report counts the test pairs each fold's model was trained on."""
    results = pd.read_csv(report / "results.csv")
    assert (results["n_overlap"] == 0).all()
    assert "n_overlap" not in pd.read_csv(report / "summary.csv")
    text = (report / "index.md").read_text(encoding="utf-8")
    assert "Test pairs seen in training: 0 in every fold, for every model" in text


def test_report_tuning_is_matfact_tune_on_the_first_training_part(report, small):
    from matfact import kfold, tune

    trials = pd.read_csv(report / "tuning.csv")
    assert set(trials["model"]) == {"ALS"} and len(trials) == 3  # random search: 3 of 4
    train = kfold(small, 2, random_state=0)[0].train
    expected = tune(fast_models()["ALS"], TUNED["ALS"], train, metric="rmse",
                    search="random", n_iter=3, random_state=0)
    np.testing.assert_allclose(trials["rmse"], expected.results["rmse"], rtol=1e-5)  # CSV: 6 digits
    assert trials.loc[trials["best"], "reg"].item() == expected.best_params["reg"]
    text = (report / "index.md").read_text(encoding="utf-8")
    assert "ALS: " + ", ".join(f"{k}={v}" for k, v in expected.best_params.items()) in text


def test_report_tune_true_uses_the_default_spaces(small, tmp_path):
    out = build_report([Baseline(), Popularity()], small, cv=2, out=tmp_path, tune=True,
                       tune_trials=2, progress=False)
    trials = pd.read_csv(out / "tuning.csv")
    assert set(trials["model"]) == {"Baseline"}  # Popularity has nothing to tune
    assert set(trials.columns) >= {"reg_user", "reg_item", "rmse"}
    with pytest.raises(ParameterError, match="not in the report"):
        build_report([Baseline()], small, cv=2, out=tmp_path, tune={"ALS": {"reg": [1.0]}},
                     progress=False)


def test_figures_that_do_not_apply_get_a_note(small, tmp_path):
    (tmp_path / "item_map.png").write_bytes(b"from an earlier report")
    out = build_report([Popularity()], small, cv=2, out=tmp_path, progress=False)
    text = (out / "index.md").read_text(encoding="utf-8")
    assert "Note: no model keeps a loss_history_" in text
    assert "Note: no model has item factors" in text
    assert not (out / "learning_curves.png").exists()
    assert not (out / "item_map.png").exists()
    assert "| Popularity |" in text


def test_report_metrics_default_plan(small):
    assert report_metrics(Baseline(), small) == ["rmse", "ndcg@10", "precision@10",
                                                 "recall@10"]
    assert report_metrics(Popularity(), small, k=5) == ["ndcg@5", "precision@5", "recall@5"]
    assert report_metrics(Popularity(), small, ["rmse", "map@10"]) == ["map@10"]


def test_report_rejects_bad_input(small, tmp_path):
    with pytest.raises(ParameterError, match="models is empty"):
        build_report({}, small, out=tmp_path, progress=False)
    with pytest.raises(ParameterError, match="unknown|metric"):
        build_report([Baseline()], small, metrics=["bogus@3"], out=tmp_path, progress=False)
    with pytest.raises(ParameterError, match="Popularity predicts no ratings"):
        build_report([Popularity()], small, metrics=["rmse"], out=tmp_path, progress=False)
    with pytest.raises(DataError, match="explicit ratings"):
        build_report([Baseline()], small.to_implicit(), out=tmp_path, progress=False)


# ------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def small_csv(small, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    pd.DataFrame({"user": small.users, "item": small.items, "rating": small.ratings}).to_csv(
        path, index=False)
    return path


def test_cli_models_writes_the_report(capsys, small_csv, tmp_path):
    out = tmp_path / "report"
    code = main(["-q", "evaluate", "--data", str(small_csv), "--models", "baseline,popularity",
                 "--cv", "2", "--seed", "0", "--out", str(out), "--tune", "2"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "Baseline" in stdout and "Popularity" in stdout
    assert str(out / "index.html") in stdout
    for name in ("index.md", "index.html", "results.csv", "metrics.png", "tuning.png"):
        assert (out / name).stat().st_size > 0
    summary = pd.read_csv(out / "summary.csv").set_index("model")
    assert summary.loc["Baseline", "rmse"] == pytest.approx(
        pd.read_csv(out / "results.csv").query("model == 'Baseline'")["rmse"].mean())


@pytest.mark.parametrize("extra, message", [
    (["--models", "baseline,bogus"], "unknown model 'bogus'"),
    (["--models", "baseline", "--param", "reg=1"], "--param is not supported with --models"),
    (["--models", "baseline", "--model", "baseline"], "not both"),
    ([], "give --model"),
])
def test_cli_models_usage_errors(capsys, small_csv, tmp_path, extra, message):
    code = main(["evaluate", "--data", str(small_csv), "--out", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert not (tmp_path / "r").exists()  # failed before writing anything


def test_learning_curves_hold_a_validation_curve_cut_from_the_training_part(small):
    from matfact import kfold
    from matfact.evaluation.report import _with_validation_curves

    train = kfold(small, 2, random_state=0)[0].train
    named = fast_models()
    fitted = {name: model.fit(train, progress=False) if name != "ALS" else
              ALS(n_factors=8, max_iter=3, random_state=0).fit(train, progress=False)
              for name, model in fast_models().items()}
    curves = _with_validation_curves(named, fitted, train, small)
    history = curves["ALS"].loss_history_
    assert len(history["validation_rmse"]) == len(history["train_rmse"]) == 3
    assert curves["ALS"].seen_.nnz == round(train.nnz * 0.9)  # 10% of train held out
    assert curves["Popularity"] is fitted["Popularity"]
