"""``train``, ``evaluate``, ``recommend`` and ``--param`` (cli/models.py)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import matfact
from matfact import cli
from matfact.cli import UsageError, main, parse_params, read_interactions
from matfact.exceptions import MatfactWarning, ParameterError
from tests.cli.helpers import (
    assert_one_error_line,
    first_recommendation,
    run,
)


# ------------------------------------------------------------------------------ --param
def test_parse_params_reads_json_else_text():
    assert parse_params(["a=1", "b=0.5", "c=true", "d=null", "e=svd", "f=[1, 2]", "g=False",
                         "h= 3 ", "i=1e-3", "j=NaN"]) == {
        "a": 1, "b": 0.5, "c": True, "d": None, "e": "svd", "f": [1, 2], "g": False,
        "h": 3, "i": 0.001, "j": "NaN"}
    assert parse_params(None) == {}
    assert parse_params(["path=a=b"]) == {"path": "a=b"}


@pytest.mark.parametrize("pairs", [["noequals"], ["=1"], ["1x=2"], ["a=1", "a=2"]])
def test_parse_params_rejects_malformed_pairs(pairs):
    with pytest.raises(UsageError):
        parse_params(pairs)


def test_parse_params_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    value = parse_params([f"x=__import__('pathlib').Path({str(marker)!r}).touch()"])["x"]
    assert isinstance(value, str)
    assert not marker.exists()


# ------------------------------------------------------------------------------ train/recommend
@pytest.mark.parametrize("layout", ["comma_csv", "tab_headerless"])
def test_train_then_recommend_matches_the_model(capsys, tmp_path, request, layout):
    source = request.getfixturevalue(layout)
    target = tmp_path / "model.zip"
    code, out, err = run(capsys, "train", "--data", source, "--model", "Baseline", "--out",
                         target, "--param", "reg_user=5", "--param", "max_iter=3")
    assert code == 0, err
    assert str(target) in out and " s" in out
    model = matfact.load(target)
    assert model.reg_user == 5 and model.max_iter == 3

    code, out, err = run(capsys, "recommend", "--model", target, "--user", "7", "-n", "5")
    assert code == 0, err
    ids, scores = model.recommend([7], n=5)
    assert first_recommendation(out) == str(ids[0, 0])
    assert out.count("\n") >= 7  # heading, header, rule and five rows


def test_recommend_several_users_json_and_include_seen(capsys, tmp_path, comma_csv):
    target = tmp_path / "pop"
    assert main(["-q", "train", "--data", str(comma_csv), "--model", "popularity",
                 "--out", str(target)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "recommend", "--model", target, "--user", "1", "--user", "2",
                       "-n", "3", "--include-seen", "--json")
    assert code == 0
    report = json.loads(out)
    model = matfact.load(target)
    ids, _ = model.recommend([1, 2], n=3, exclude_seen=False)
    assert [[row["item"] for row in entry["items"]] for entry in report] == ids.tolist()
    assert [entry["user"] for entry in report] == [1, 2]


def test_recommend_unknown_user_uses_the_fallback_or_fails_with_strict(capsys, tmp_path,
                                                                      comma_csv):
    target = tmp_path / "m.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--out", str(target)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "recommend", "--model", target, "--user", "nobody")
    assert code == 0
    assert "fallback" in out
    code, out, err = run(capsys, "recommend", "--model", target, "--user", "nobody", "--strict")
    assert code == 1
    assert_one_error_line(err)
    assert "nobody" in err


def test_recommend_shows_titles(capsys, tmp_path):
    model = matfact.Popularity().fit(matfact.Interactions.from_arrays(
        [1, 1, 2], [10, 20, 10], item_features=pd.DataFrame({"title": ["Ten", "Twenty"]},
                                                            index=[10, 20])), progress=False)
    model.item_titles_ = np.asarray(model.item_titles_, dtype=str)
    target = tmp_path / "titled.zip"
    model.save(target)
    code, out, _ = run(capsys, "recommend", "--model", target, "--user", "2")
    assert code == 0
    assert "title" in out and "Twenty" in out


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_with_a_model_name(capsys, comma_csv):
    code, out, err = run(capsys, "-q", "evaluate", "--data", comma_csv, "--model", "baseline",
                         "--split", "random", "--seed", "3", "--test-size", "0.25", "--json")
    assert code == 0, err
    report = json.loads(out)
    train, test = matfact.train_test_split(read_interactions(comma_csv), test_size=0.25,
                                           strategy="random", random_state=3)
    model = matfact.Baseline().fit(train, progress=False)
    expected = matfact.evaluate(model, test)
    assert report["metrics"]["rmse"] == pytest.approx(expected["rmse"])
    assert report["metrics"]["mae"] == pytest.approx(expected["mae"])
    assert set(report["metrics"]) == {"rmse", "mae", "ndcg@10", "precision@10"}
    assert report["split"] == {"strategy": "random", "test_size": 0.25, "seed": 3}


def test_evaluate_is_reproducible_because_the_seed_seeds_the_model(capsys, comma_csv):
    """Issue 20: --seed seeded the split only; three BiasedMF runs gave three RMSEs."""
    runs = []
    for _ in range(2):
        code, out, err = run(capsys, "-q", "evaluate", "--data", comma_csv, "--model",
                             "biased_mf", "--param", "max_iter=5", "--seed", "7", "--json")
        assert code == 0, err
        runs.append(json.loads(out)["metrics"])
    assert runs[0] == runs[1]
    train, test = matfact.train_test_split(read_interactions(comma_csv), test_size=0.2,
                                           strategy="random", random_state=7)
    model = matfact.BiasedMF(max_iter=5, random_state=7).fit(train, progress=False)
    assert runs[0]["rmse"] == pytest.approx(matfact.evaluate(model, test)["rmse"])
    code, out, _ = run(capsys, "-q", "evaluate", "--data", comma_csv, "--model", "biased_mf",
                       "--param", "max_iter=5", "--param", "random_state=8", "--seed", "7",
                       "--json")
    assert json.loads(out)["metrics"]["rmse"] != runs[0]["rmse"]  # an explicit seed wins


def test_evaluate_table_and_metric_choice(capsys, comma_csv):
    code, out, _ = run(capsys, "evaluate", "--data", comma_csv, "--model", "popularity",
                       "--split", "per_user", "--metrics", "ndcg@5,recall", "-k", "7")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == ["metric", "value"]
    assert [line.split()[0] for line in lines[3:]] == ["ndcg@5", "recall@7"]


def test_evaluate_with_a_model_file(capsys, tmp_path, frame):
    train_part, test_part = frame.iloc[:400], frame.iloc[400:]
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    train_part.to_csv(train_csv, index=False)
    test_part.to_csv(test_csv, index=False)
    target = tmp_path / "m.zip"
    assert main(["-q", "train", "--data", str(train_csv), "--out", str(target)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "-q", "evaluate", "--model", target, "--test", test_csv,
                         "--metrics", "rmse,mae,ndcg@10", "--json")
    assert code == 0, err
    report = json.loads(out)
    expected = matfact.evaluate(matfact.load(target), read_interactions(test_csv))
    assert report["metrics"]["rmse"] == pytest.approx(expected["rmse"])
    assert report["fit_time_s"] is None
    assert report["model_file"] == str(target)


def test_evaluate_saved_model_on_its_own_data_is_refused(capsys, tmp_path, comma_csv):
    """Issue 20: a model trained on all of a file, evaluated on a split of the same file,
    reported an RMSE far better than the honest one, silently."""
    target = tmp_path / "m.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--out", str(target)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "-q", "evaluate", "--model", target, "--data", comma_csv)
    assert code == 2 and out == ""
    assert_one_error_line(err)
    # 40 users x 12 ratings, 20% held out: all 96 test pairs were trained on.
    assert "96 of 96 test pairs (100.0%) were in the model's training data" in err
    assert "--test" in err and "--allow-overlap" in err


def test_evaluate_with_allow_overlap_warns_once_and_reports_the_count(capsys, tmp_path,
                                                                      comma_csv):
    target = tmp_path / "m.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--out", str(target)]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always", MatfactWarning)
        code, out, err = run(capsys, "-q", "evaluate", "--model", target, "--data", comma_csv,
                             "--allow-overlap")
        assert code == 0, err
        assert "96 of 96 test pairs (100.0%) were in the model's training data" in out
        assert "ndcg@10" in out
        warned = [line for line in err.splitlines() if line.startswith("matfact: warning:")]
        assert len(warned) == 1 and "96 of 96 test pairs" in warned[0], err
        code, out, err = run(capsys, "-q", "evaluate", "--model", target, "--data", comma_csv,
                             "--allow-overlap", "--json")
    report = json.loads(out)
    assert report["counts"]["n_overlap"] == 96
    _, test = matfact.train_test_split(read_interactions(comma_csv), test_size=0.2,
                                       strategy="random", random_state=42)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatfactWarning)
        expected = matfact.evaluate(matfact.load(target), test)
    assert report["metrics"]["rmse"] == pytest.approx(expected["rmse"])


def test_evaluate_counts_exactly_the_trained_pairs_of_a_test_file(capsys, tmp_path, frame):
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    frame.iloc[:400].to_csv(train_csv, index=False)
    # The 80 held-out ratings, plus 5 of the training ones.
    pd.concat([frame.iloc[400:], frame.iloc[:5]]).to_csv(test_csv, index=False)
    target = tmp_path / "m.zip"
    assert main(["-q", "train", "--data", str(train_csv), "--out", str(target)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "-q", "evaluate", "--model", target, "--test", test_csv)
    assert code == 2
    assert_one_error_line(err)
    assert "5 of 85 test pairs (5.9%)" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MatfactWarning)
        code, out, err = run(capsys, "-q", "evaluate", "--model", target, "--test", test_csv,
                             "--allow-overlap", "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["n_overlap"] == 5


def test_evaluate_on_an_honest_split_counts_no_overlap(capsys, comma_csv):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run(capsys, "-q", "evaluate", "--data", comma_csv, "--model",
                             "baseline", "--json")
    assert code == 0, err
    assert "warning" not in err
    assert json.loads(out)["counts"]["n_overlap"] == 0
    code, _, err = run(capsys, "-q", "evaluate", "--data", comma_csv, "--models", "baseline",
                       "--allow-overlap")
    assert code == 2 and "--allow-overlap applies to --model" in err


def test_model_names_come_from_the_registry(monkeypatch):
    from matfact.models import MODEL_REGISTRY

    class Fancy_Model(matfact.Popularity):  # noqa: N801 - checks name normalisation
        pass

    monkeypatch.setitem(MODEL_REGISTRY, "FancyModel", Fancy_Model)
    assert cli.models.model_class("fancy-model") is Fancy_Model
    assert cli.models.model_class("POPULARITY") is matfact.Popularity
    with pytest.raises(UsageError, match="fancy_model"):
        cli.models.model_class("nope")
    with pytest.raises(ParameterError):
        cli.models.build_model("baseline", {"tol": -1.0})


def test_help_lists_every_model_by_the_name_the_docs_use(capsys):
    """Issue 20: --help did not list the models; the error spelled biasedmf."""
    import matfact.models  # noqa: F401  (registers every model class)
    from matfact.cli.names import MODEL_NAMES, cli_name
    from matfact.models import MODEL_REGISTRY

    assert MODEL_NAMES == tuple(sorted(cli_name(name) for name in MODEL_REGISTRY))
    assert cli_name("BiasedMF") == "biased_mf" and cli_name("SVDPlusPlus") == "svd_plus_plus"
    code, _, err = run(capsys, "train", "--data", "x.csv", "--model", "biasedmff", "--out", "m")
    assert code == 2 and "biased_mf" in err
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "implicit_als" in out and "svd_plus_plus" in out


# ------------------------------------------------------------------------------ issue 20
def test_rating_scale_option_declares_checks_and_is_kept(capsys, tmp_path, frame):
    data = tmp_path / "r.csv"
    frame.to_csv(data, index=False)
    target = tmp_path / "m.zip"
    code, _, err = run(capsys, "train", "--data", data, "--model", "baseline", "--out", target,
                       "--rating-scale", "0.5,5,0.5")
    assert code == 0, err
    model = matfact.load(target)
    assert model.rating_scale_ == (0.5, 5.0) and model.rating_step_ == 0.5
    # Off the scale: one error line naming the file's line (a header, then row 3 → line 4).
    off = frame.copy()
    off.loc[2, "rating"] = 6
    off.to_csv(data, index=False)
    code, _, err = run(capsys, "train", "--data", data, "--out", target, "--rating-scale", "1,5")
    assert code == 1
    assert_one_error_line(err)
    assert "rating 6 is outside the rating scale [1, 5]" in err and "line 4" in err
    for bad in ("1", "a,b", "1,2,3,4"):
        code, _, err = run(capsys, "train", "--data", data, "--out", target, "--rating-scale",
                           bad)
        assert code == 2 and "--rating-scale" in err and "MIN,MAX" in err
    code, _, err = run(capsys, "train", "--data", data, "--out", target, "--rating-scale",
                       "1,6,2")
    assert code != 0 and "does not divide" in err


def test_an_implausible_inferred_scale_gets_a_note(capsys, tmp_path, frame):
    data = tmp_path / "r.csv"
    odd = frame.copy()
    odd.loc[0, "rating"], odd.loc[1, "rating"] = 500, -2
    odd.to_csv(data, index=False)
    code, _, err = run(capsys, "-q", "train", "--data", data, "--out", tmp_path / "m.zip")
    assert code == 0
    assert "note: the rating scale of" in err and "[-2, 500]" in err
    assert "--rating-scale" in err
    frame.to_csv(data, index=False)  # 1-5: nothing to say
    code, _, err = run(capsys, "-q", "train", "--data", data, "--out", tmp_path / "m.zip")
    assert code == 0 and "note" not in err


def test_recommend_states_the_fallback_and_the_score_kind(capsys, tmp_path, comma_csv):
    target = tmp_path / "m.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--model", "biased_mf",
                 "--out", str(target)]) == 0
    capsys.readouterr()
    model = matfact.load(target)
    code, out, _ = run(capsys, "recommend", "--model", target, "--user", "1", "--user",
                       "nobody", "-n", "4", "--json")
    assert code == 0
    known, unknown = json.loads(out)
    assert known["fallback"] is None and known["score_kind"] == "rating"
    assert all(1 <= row["score"] <= 5 for row in known["items"])
    assert unknown["fallback"] == "popularity" and unknown["score_kind"] == "popularity"
    # The library's one policy: the items most users had, scored by those counts.
    counts = np.bincount(model.seen_.indices, minlength=model.n_items_)
    ids, scores, fallback = model.recommend(["nobody"], n=4, return_fallback=True)
    assert fallback.tolist() == [True]
    assert [row["item"] for row in unknown["items"]] == ids[0].tolist()
    assert [row["score"] for row in unknown["items"]] == \
        counts[model.item_index_.get_indexer(ids[0])].tolist()
    code, out, _ = run(capsys, "recommend", "--model", target, "--user", "1", "--user",
                       "nobody", "-n", "2")
    assert "scores: predicted ratings on [1, 5]" in out and "fallback: popularity" in out


# ------------------------------------------------------------------------------ recommend --explain
@pytest.fixture
def titled_als(tmp_path, comma_csv, capsys):
    """A small ALS saved with item titles ("Film 101", ...), trained through the CLI."""
    titles = tmp_path / "titles.csv"
    pd.DataFrame({"item": range(101, 131),
                  "title": [f"Film {i}" for i in range(101, 131)]}).to_csv(titles, index=False)
    target = tmp_path / "als.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--item-features", str(titles),
                 "--model", "als", "--param", "n_factors=4", "--param", "max_iter=3",
                 "--out", str(target)]) == 0
    capsys.readouterr()
    return target


def test_recommend_explain_json_is_the_models_explanation(capsys, titled_als):
    """Issue 22: a "because" list per item, the numbers model.explain gives, with titles."""
    code, out, err = run(capsys, "recommend", "--model", titled_als, "--user", "3", "--user",
                         "nobody", "-n", "3", "--explain", "2", "--json")
    assert code == 0, err
    known, unknown = json.loads(out)
    model = matfact.load(titled_als)
    ids, _ = model.recommend([3], n=3)
    assert [row["item"] for row in known["items"]] == ids[0].tolist()
    assert known["explained_by"] == "ridge fold-in (ALS)"
    for row in known["items"]:
        why = model.explain(3, row["item"], n=2)
        assert row["exact"] is True and row["folded_in"] is True
        assert [b["item"] for b in row["because"]] == [c.item for c in why.contributions]
        assert [b["title"] for b in row["because"]] == [f"Film {c.item}"
                                                        for c in why.contributions]
        assert [b["contribution"] for b in row["because"]] == pytest.approx(
            [c.contribution for c in why.contributions], rel=1e-12)
        # The value is the user's rating of that item in the training data.
        history = dict(zip(*model.history(model.user_index_.code(3)), strict=True))
        assert [b["value"] for b in row["because"]] == [
            history[model.item_index_.code(b["item"])] for b in row["because"]]
    # The popularity fallback has no explanation, and says so.
    assert unknown["explained_by"] is None
    assert all(row["because"] is None for row in unknown["items"])


def test_recommend_explain_text_lists_titles_and_the_parts_of_the_score(capsys, titled_als,
                                                                       tmp_path):
    code, out, err = run(capsys, "recommend", "--model", titled_als, "--user", "3", "--user",
                         "nobody", "-n", "2", "--explain")
    assert code == 0, err
    model = matfact.load(titled_als)
    ids, _ = model.recommend([3], n=2)
    lines = out.splitlines()
    for item in ids[0].tolist():
        why = model.explain(3, item, n=3)  # --explain alone lists 3
        row = next(i for i, line in enumerate(lines) if line.split()[1:2] == [str(item)])
        because = lines[row + 1].strip()
        assert because.startswith("because you rated Film ")
        listed = ", ".join(f"Film {c.item} ({c.value:g}, {c.contribution:+.3f})"
                           for c in why.contributions)
        assert listed.startswith(because.removeprefix("because you rated ").rstrip(","))
        # The rest of the history and the other terms, then the score they sum to.
        tail = " ".join(line.strip() for line in lines[row + 2:row + 5]
                        if not line.strip().startswith(("because", "Film"))
                        and line.startswith("        "))
        assert f"rest of the history {why.rest:+.3f}" in tail
        assert f"global mean {why.other_terms['global mean']:+.3f}" in tail
        assert f"= {why.score:.3f}" in tail
    assert "explained by ridge fold-in (ALS)" in out
    assert "no explanation: popularity ranks by what most users had" in out
    # --item-titles replaces the model's titles under the items too.
    other = tmp_path / "other.csv"
    pd.DataFrame({"item": range(101, 131),
                  "title": [f"Renamed {i}" for i in range(101, 131)]}).to_csv(other, index=False)
    code, out, _ = run(capsys, "recommend", "--model", titled_als, "--user", "3", "-n", "1",
                       "--explain", "1", "--item-titles", other)
    assert code == 0 and "because you rated Renamed 1" in out and "Film" not in out


def test_recommend_explain_refuses_bad_k_and_models_without_explanations(capsys, tmp_path,
                                                                         comma_csv, titled_als):
    code, _, err = run(capsys, "recommend", "--model", titled_als, "--user", "3",
                       "--explain", "0")
    assert code != 0 and "--explain must be at least 1, got 0" in err
    target = tmp_path / "pop.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--model", "popularity",
                 "--out", str(target)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "recommend", "--model", target, "--user", "3", "--explain")
    assert code == 1
    assert_one_error_line(err)
    assert "has no explanation" in err


def test_recommend_explain_implicit_says_had(capsys, tmp_path, comma_csv):
    target = tmp_path / "ials.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--implicit", "--model",
                 "implicit_als", "--param", "n_factors=4", "--param", "max_iter=2",
                 "--out", str(target)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "recommend", "--model", target, "--user", "5", "-n", "1",
                         "--explain", "1", "--json")
    assert code == 0, err
    model = matfact.load(target)
    row = json.loads(out)[0]["items"][0]
    why = model.explain(5, row["item"], n=1)
    assert row["because"][0]["contribution"] == pytest.approx(why.contributions[0].contribution,
                                                              rel=1e-12)
    code, out, _ = run(capsys, "recommend", "--model", target, "--user", "5", "-n", "1",
                       "--explain", "1")
    assert "because you had item " in out and "weight if not 1" in out
