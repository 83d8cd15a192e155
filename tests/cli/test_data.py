"""``--data``: datasets and files whose layout the command line guesses (cli/data.py)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from matfact.cli import UsageError, read_interactions
from matfact.exceptions import DataError
from tests.cli.helpers import assert_one_error_line, run


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


# ------------------------------------------------------------------------------ issue 19
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz"])
@pytest.mark.parametrize("columns", [(), ("--user-col", "userId")])
def test_train_reads_a_file_that_starts_with_a_bom(capsys, tmp_path, frame, suffix, columns):
    # Regression (issue 19): "\ufeffuserId" matched no column, even with --user-col.
    path = tmp_path / f"bom{suffix}"
    text = frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",")
    raw = b"\xef\xbb\xbf" + text.encode("utf-8")
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    data = read_interactions(path, **({"user_col": "userId"} if columns else {}))
    assert data.nnz == len(frame) and data.users.tolist() == frame["userId"].tolist()
    code, _, err = run(capsys, "-q", "train", "--data", path, *columns, "--model", "baseline",
                       "--out", tmp_path / "m.zip")
    assert code == 0, err


def test_extra_fields_are_an_error_unless_dropped(capsys, tmp_path, frame):
    path = tmp_path / "extra.csv"
    lines = frame.to_csv(index=False).splitlines()
    lines[5] += ",oops"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"extra.csv, line 6 has 5 field\(s\) but the header "
                                        r"\(line 1\) has 4.*--extra-fields drop"):
        read_interactions(path)
    code, _, err = run(capsys, "-q", "train", "--data", path, "--model", "baseline",
                       "--out", tmp_path / "m.zip")
    assert code != 0 and "line 6" in err and "--extra-fields drop" in err
    assert_one_error_line(err)
    code, _, err = run(capsys, "-q", "train", "--data", path, "--extra-fields", "drop",
                       "--model", "baseline", "--out", tmp_path / "m.zip")
    assert code == 0, err
    assert read_interactions(path, extra_fields="drop").nnz == len(frame)


def test_hostile_files_are_one_line_errors(capsys, tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(20_000)) + "\n")
    code, _, err = run(capsys, "-q", "train", "--data", wide, "--out", tmp_path / "m.zip")
    assert code != 0 and "20,000 fields, more than the limit of 10,000" in err
    assert_one_error_line(err)
    long_field = tmp_path / "long.csv"
    long_field.write_text("user,item\n1,2\n3," + "x" * (1 << 21) + "\n")
    code, _, err = run(capsys, "-q", "train", "--data", long_field, "--out", tmp_path / "m.zip")
    assert code != 0 and "line 3: a field is longer than 1,048,576 characters" in err
    assert_one_error_line(err)


# ------------------------------------------------------------------------------ issue 20 frictions
def test_only_item_col_keeps_the_ratings_of_a_headerless_file(tab_headerless, frame):
    # The columns not given sit where they sit when none is given (user, item, rating, ts).
    data = read_interactions(tab_headerless, item_col="1", header=False)
    assert not data.is_implicit
    np.testing.assert_array_equal(data.users, frame["userId"])
    np.testing.assert_array_equal(data.ratings, frame["rating"])
    np.testing.assert_array_equal(data.timestamps, frame["timestamp"])
    swapped = read_interactions(tab_headerless, user_col="1", item_col="0", header=False)
    np.testing.assert_array_equal(swapped.users, frame["movieId"])
    np.testing.assert_array_equal(swapped.ratings, frame["rating"])


def test_named_columns_leaving_a_possible_rating_column_are_a_usage_error(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("uid,product_code,stars_given\n1,a,4\n1,b,5\n2,a,3\n")
    with pytest.raises(UsageError, match=r"column\(s\) 'stars_given' have no role; pass "
                                         r"--rating-col COL .* or --implicit"):
        read_interactions(path, user_col="uid", item_col="product_code")
    rated = read_interactions(path, user_col="uid", item_col="product_code",
                              rating_col="stars_given")
    assert rated.ratings.tolist() == [4.0, 5.0, 3.0]
    assert read_interactions(path, user_col="uid", item_col="product_code",
                             implicit=True).is_implicit
    code, _, err = run(capsys, "train", "--data", path, "--user-col", "uid", "--item-col",
                       "product_code", "--model", "popularity", "--out", tmp_path / "m.zip")
    assert code == 2
    assert_one_error_line(err)


def test_item_features_file_gives_titles_and_features(tmp_path, comma_csv, frame, capsys):
    items = tmp_path / "items.tsv"
    ids = sorted(set(frame["movieId"]))
    items.write_text("movieId\tTitle\tgenre\n"
                     + "".join(f"{item}\tFilm {item}\t{'ab'[item % 2]}\n" for item in ids))
    data = read_interactions(comma_csv, item_features=items)
    assert data.item_titles().tolist() == [f"Film {item}" for item in data.item_ids]
    assert data.item_features["genre"].loc[ids[0]] == "ab"[ids[0] % 2]
    model = tmp_path / "m.zip"
    assert run(capsys, "train", "--data", comma_csv, "--item-features", items, "--model",
               "baseline", "--out", model, "-q")[0] == 0
    code, out, _ = run(capsys, "recommend", "--model", model, "--user", "1", "-n", "3")
    assert code == 0 and "title" in out and "Film " in out
    with pytest.raises(UsageError, match="apply to files"):
        read_interactions("ml-100k", item_features=items)


def test_recommend_item_titles_from_a_headerless_file(tmp_path, comma_csv, frame, capsys):
    model = tmp_path / "m.zip"
    assert run(capsys, "train", "--data", comma_csv, "--model", "baseline", "--out", model,
               "-q")[0] == 0
    titles = tmp_path / "titles.tsv"
    titles.write_text("".join(f"{item}\tMovie number {item}\n"
                              for item in sorted(set(frame["movieId"]))))
    code, out, _ = run(capsys, "recommend", "--model", model, "--user", "1", "-n", "2",
                       "--item-titles", titles, "--json")
    assert code == 0
    import json

    items = json.loads(out)[0]["items"]
    assert [row["title"] for row in items] == [f"Movie number {row['item']}" for row in items]
    bad = tmp_path / "bad.csv"
    bad.write_text("item,genre\n101,a\n")
    code, _, err = run(capsys, "recommend", "--model", model, "--user", "1",
                       "--item-titles", bad)
    assert code == 1 and "needs a title column" in err
