"""Tests of the ``matfact`` command line (in-process through ``main``, and one real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import matfact
from matfact import cli
from matfact.cli import UsageError, main, parse_params, read_interactions
from matfact.data import datasets as ds
from matfact.exceptions import MatfactWarning, ParameterError
from tests.conftest import REPO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COMMANDS = ("demo", "train", "evaluate", "recommend")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test reads the user's cache or downloads anything."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(ds, "DOWNLOAD_URLS", dict.fromkeys(ds.DOWNLOAD_URLS,
                                                           "http://127.0.0.1:9/unreachable.zip"))

    def no_network(*args, **kwargs):
        raise AssertionError("the CLI tried to download something")

    monkeypatch.setattr("urllib.request.urlopen", no_network)


def ratings_frame(seed: int = 0, n_users: int = 40, n_items: int = 30,
                  per_user: int = 12) -> pd.DataFrame:
    """Distinct explicit ratings 1-5 with timestamps; user ids 1..n, item ids 101..."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        items = rng.choice(n_items, size=per_user, replace=False) + 101
        for item in items:
            stamp = int(rng.integers(10**9, 2 * 10**9))
            rows.append((user, int(item), int(rng.integers(1, 6)), stamp))
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])


@pytest.fixture
def frame() -> pd.DataFrame:
    return ratings_frame()


@pytest.fixture
def comma_csv(tmp_path, frame) -> Path:
    path = tmp_path / "ratings.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def tab_headerless(tmp_path, frame) -> Path:
    path = tmp_path / "u.data"
    frame.to_csv(path, sep="\t", header=False, index=False)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def first_recommendation(out: str) -> str:
    """The item id of rank 1 in the first table of ``matfact recommend``'s output."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip().startswith("----"))
    return lines[rule + 1].split()[1]


def assert_one_error_line(err: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("matfact: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ help
def test_help_in_a_real_subprocess():
    result = subprocess.run([sys.executable, "-m", "matfact", "--help"], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: matfact")
    for command in COMMANDS:
        assert command in result.stdout
    assert result.stderr == ""


def test_help_imports_no_plotting_or_data_code():
    code = ("import sys\nfrom matfact.cli import main\nmain(['train', '--help'])\n"
            "print(sorted(m for m in ('matplotlib', 'matfact.datasets', 'matfact.plots') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(capsys, command):
    code, out, err = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: matfact {command}")
    assert "--quiet" in out
    assert err == ""


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"matfact {matfact.__version__}"


def test_no_command_is_a_usage_error(capsys):
    code, out, err = run(capsys)
    assert code == 2
    assert_one_error_line(err)
    assert out == ""


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


# ------------------------------------------------------------------------------ reading data
def test_read_interactions_detects_header_names(comma_csv, frame):
    data = read_interactions(comma_csv)
    assert data.nnz == len(frame)
    assert not data.is_implicit
    assert data.timestamps is not None
    np.testing.assert_array_equal(data.users, frame["userId"])
    np.testing.assert_array_equal(data.ratings, frame["rating"])


def test_read_interactions_headerless_by_position(tab_headerless, frame):
    data = read_interactions(tab_headerless)
    assert data.nnz == len(frame)
    np.testing.assert_array_equal(data.items, frame["movieId"])
    np.testing.assert_array_equal(data.timestamps, frame["timestamp"])


@pytest.mark.parametrize("sep,name", [(";", "r.csv"), ("|", "r.txt"), ("\t", "r.tsv"),
                                      (",", "r.csv.gz")])
def test_read_interactions_sniffs_the_separator(tmp_path, frame, sep, name):
    path = tmp_path / name
    frame.rename(columns={"userId": "User_ID", "movieId": "item", "rating": "Stars"}).to_csv(
        path, sep=sep, index=False)
    data = read_interactions(path)
    assert data.nnz == len(frame)
    np.testing.assert_array_equal(data.ratings, frame["rating"])


def test_read_interactions_explicit_columns_and_implicit(tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text("who,what,hours,junk\na,x,2.5,q\na,y,1,q\nb,x,4,q\n")
    data = read_interactions(path, user_col="WHO", item_col="1", weight_col="hours",
                             implicit=True)
    assert data.is_implicit
    assert data.user_ids.tolist() == ["a", "b"]
    np.testing.assert_allclose(data.weights, [2.5, 1, 4])
    headerless = tmp_path / "h.csv"
    headerless.write_text("5,a,1\n6,b,2\n")
    data = read_interactions(headerless, user_col="1", item_col="0", header=False,
                             implicit=True)
    assert data.user_ids.tolist() == ["a", "b"]


def test_read_interactions_parquet(tmp_path, frame):
    pytest.importorskip("pyarrow")
    path = tmp_path / "r.parquet"
    frame.to_parquet(path)
    data = read_interactions(path)
    assert data.nnz == len(frame)
    assert not data.is_implicit


def test_read_interactions_dataset_name(data_dir):
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    data = read_interactions("ml-100k", data_home=data_dir, download=False)
    assert data.shape == (943, 1682)
    assert read_interactions("ml-100k", data_home=data_dir, implicit=True).is_implicit


def test_read_interactions_unknown_layout_says_what_to_pass(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UsageError, match="--user-col"):
        read_interactions(path)


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


def test_evaluate_saved_model_on_its_own_data_warns_in_one_line(capsys, tmp_path, comma_csv):
    target = tmp_path / "m.zip"
    assert main(["-q", "train", "--data", str(comma_csv), "--out", str(target)]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always", MatfactWarning)
        code, out, err = run(capsys, "evaluate", "--model", target, "--data", comma_csv)
    assert code == 0
    assert any(line.startswith("matfact: warning:") and "training data" in line
               for line in err.splitlines())
    assert "ndcg@10" in out


# ------------------------------------------------------------------------------ errors
def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\x00\xff\xfe\x01 not a csv \x80\x81")
    return path


def _bad_ratings(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,rating\n1,2,five\n")
    return path


@pytest.mark.parametrize("argv,status", [
    (["train", "--data", "{csv}", "--model", "nosuchmodel", "--out", "{tmp}/m.zip"], 2),
    (["train", "--data", "{tmp}/missing.csv", "--out", "{tmp}/m.zip"], 1),
    (["train", "--data", "{garbage}", "--out", "{tmp}/m.zip"], 1),
    (["train", "--data", "{bad}", "--out", "{tmp}/m.zip"], 1),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "reg_user"], 2),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "nope=1"], 2),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "reg_user=-1"], 1),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "max_iter=ten"], 1),
    (["train", "--data", "{csv}"], 2),
    (["evaluate", "--data", "{csv}", "--model", "{tmp}/missing.zip"], 1),
    (["evaluate", "--data", "{csv}", "--model", "baseline", "--metrics", "bogus@3"], 1),
    (["evaluate", "--data", "{csv}", "--model", "baseline", "--split", "sideways"], 2),
    (["evaluate", "--data", "{csv}", "--model", "popularity", "--metrics", "rmse"], 1),
    (["recommend", "--model", "{tmp}/missing.zip", "--user", "1"], 1),
    (["recommend", "--model", "{garbage}", "--user", "1"], 1),
    (["bogus-command"], 2),
])
def test_errors_print_one_line_and_exit_nonzero(capsys, tmp_path, comma_csv, argv, status):
    names = {"csv": comma_csv, "tmp": tmp_path, "garbage": _garbage(tmp_path),
             "bad": _bad_ratings(tmp_path)}
    code, out, err = run(capsys, "--quiet", *(arg.format(**names) for arg in argv))
    assert code == status, err
    assert_one_error_line(err)
    assert err.count("\n") == 1  # --quiet: nothing but the error
    assert out == ""


def test_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MATFACT_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["train", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m")])


def test_keyboard_interrupt_is_one_line(capsys, monkeypatch, comma_csv, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "read_interactions", interrupted)
    code, _, err = run(capsys, "train", "--data", comma_csv, "--out", tmp_path / "m")
    assert code == 130
    assert_one_error_line(err)


def test_unexpected_errors_are_one_line_too(capsys, monkeypatch, comma_csv, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "read_interactions", broken)
    code, _, err = run(capsys, "train", "--data", comma_csv, "--out", tmp_path / "m")
    assert code == 1
    assert_one_error_line(err)
    assert "boom" in err and "MATFACT_DEBUG" in err


def test_model_names_come_from_the_registry(monkeypatch):
    from matfact.models.base import MODEL_REGISTRY

    class Fancy_Model(matfact.Popularity):  # noqa: N801 - checks name normalisation
        pass

    monkeypatch.setitem(MODEL_REGISTRY, "FancyModel", Fancy_Model)
    assert cli._model_class("fancy-model") is Fancy_Model
    assert cli._model_class("POPULARITY") is matfact.Popularity
    with pytest.raises(UsageError, match="fancymodel"):
        cli._model_class("nope")
    with pytest.raises(ParameterError):
        cli._build_model("baseline", {"tol": -1.0})


# ------------------------------------------------------------------------------ demo
def _check_demo_outputs(out_dir: Path) -> pd.DataFrame:
    png = out_dir / "demo.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    table = pd.read_csv(out_dir / "demo.csv")
    assert list(table.columns) == ["model", "RMSE", "MAE", "NDCG@10", "P@10", "fit time (s)"]
    assert [name for name, _ in cli.DEMO_MODELS] == table["model"].tolist()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    return table


def test_demo_on_ml_100k(capsys, monkeypatch, tmp_path, data_dir):
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    monkeypatch.delenv("MATFACT_DATA", raising=False)
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--out", out_dir, "--data-home", data_dir)
    assert code == 0, err
    assert "WARNING" not in err
    assert "MovieLens 100K" in out
    assert "Top 10 for user 1" in out
    assert "(19" in out  # movie titles with their year
    assert str(out_dir / "demo.png") in out and str(out_dir / "demo.csv") in out
    table = _check_demo_outputs(out_dir)
    baseline = table.set_index("model").loc["Baseline"]
    assert 0.90 < baseline["RMSE"] < 0.98  # Baseline's known accuracy on ML-100K
    assert table["NDCG@10"].notna().all()
    assert np.isnan(table.set_index("model").loc["Popularity", "RMSE"])


def test_demo_falls_back_to_synthetic_data_loudly(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MATFACT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "--quiet", "demo", "--out", out_dir, "--data-home", empty)
    assert code == 0, err
    assert "WARNING" in err and "ml-100k" in err and "absent" in err
    assert "MATFACT_DATA" in err and "--data-home" in err
    assert err.lstrip().startswith("+---")  # boxed
    assert "synthetic" in out
    table = _check_demo_outputs(out_dir)
    assert table["NDCG@10"].notna().all()


# ---------------------------------------------------------------------- app commands
@pytest.mark.filterwarnings("ignore::matfact.exceptions.ConvergenceWarning")
def test_topics_command_is_wired(tmp_path, capsys):
    # Two disjoint vocabularies: the factorization is exact and the cd stopping rule may
    # not trigger before max_iter, which is beside the point here.
    import pandas as pd

    rng = np.random.default_rng(0)
    words = {"sport": ["match", "goal", "team", "coach", "league"],
             "money": ["bank", "shares", "profit", "market", "rates"]}
    rows = [{"text": " ".join(rng.choice(vocab, size=20)), "label": label}
            for label, vocab in words.items() for _ in range(10)]
    pd.DataFrame(rows).to_csv(tmp_path / "docs.csv", index=False)
    out = tmp_path / "topics"
    code = cli.main(["topics", "--data", str(tmp_path / "docs.csv"), "-k", "2", "--min-df",
                     "1", "--max-df", "1.0", "--out", str(out)])
    assert code == 0
    assert "purity" in capsys.readouterr().out.lower()
    assert (out / "topics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_csv(out / "document_topics.csv")) == 20


def test_images_command_is_wired(tmp_path, capsys):
    from PIL import Image

    rows, cols = np.mgrid[:32, :32]
    picture = 120 + 100 * np.sin(rows / 5.0) * np.cos(cols / 7.0)
    Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(tmp_path / "p.png")
    out = tmp_path / "images"
    code = cli.main(["images", "--data", str(tmp_path / "p.png"), "--patch", "8", "--ranks",
                     "2,4", "--out", str(out)])
    assert code == 0
    assert "PSNR" in capsys.readouterr().out
    assert (out / "compression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
