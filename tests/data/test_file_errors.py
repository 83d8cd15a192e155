"""Errors about what a data file holds name its line; timestamps are checked at every door.

Issue 19: a rating timestamp of ``1e999`` was accepted and broke every later
retrain; "ratings must be numbers, got dtype object" did not say where; a
missing column surfaced pandas' "Usecols do not match"; one long id made
``from_csv`` allocate gigabytes before refusing anything.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from matfact.data.interactions import MAX_TIMESTAMP, Interactions, max_id_length
from matfact.exceptions import DataError


def csv_file(tmp_path, text: str, name: str = "r.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ timestamps
BAD_STAMPS = [
    (float("nan"), "missing timestamps"),
    (float("inf"), "NaN or infinite timestamps"),
    (-float("inf"), "NaN or infinite timestamps"),
    (1e999, "NaN or infinite timestamps"),
    (MAX_TIMESTAMP + 1, "beyond the year 10000"),
    (-MAX_TIMESTAMP - 1, "beyond the year 10000"),
    (2**63 + 5, "beyond the year 10000"),
    (1.7e12, r"beyond the year 10000 .*milliseconds\? divide them by 1000"),
    ("2020", "must be numbers"),
]


@pytest.mark.parametrize(("bad", "phrase"), BAD_STAMPS)
def test_bad_timestamps_are_refused_by_from_arrays_and_from_pandas(bad, phrase):
    stamps = [100, bad, 200]
    with pytest.raises(DataError, match=phrase) as err:
        Interactions.from_arrays([1, 2, 3], [1, 1, 1], [4, 4, 4], timestamps=stamps)
    assert "positions 1" in str(err.value)
    frame = pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 1],
                          "t": pd.Series(stamps, dtype=object)})
    with pytest.raises(DataError, match=phrase):
        Interactions.from_pandas(frame, timestamp="t")


@pytest.mark.parametrize("bad", ["1e999", "inf", "-inf", "NaN", "", "253402300801",
                                 "1.7e12", "yesterday"])
def test_bad_timestamps_in_a_file_name_the_line(tmp_path, bad):
    # Regression (issue 19): "1e999" was read as inf and poisoned later retrains.
    path = csv_file(tmp_path, f"user,item,timestamp\n1,a,100\n\n2,b,{bad}\n3,c,5\n")
    with pytest.raises(DataError, match=r"timestamps.* in 1 row\(s\) \(line 4 of .*r.csv\)"):
        Interactions.from_csv(path, timestamp="timestamp")


def test_bad_timestamps_in_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "t": [1.0, 1e300]}).to_parquet(path)
    with pytest.raises(DataError, match=r"beyond the year 10000 .*positions 1"):
        Interactions.from_parquet(path, timestamp="t")


def test_timestamps_within_range_and_datetimes_are_accepted():
    stamps = [-MAX_TIMESTAMP, 0, MAX_TIMESTAMP, 1.6e9]
    data = Interactions.from_arrays([1, 2, 3, 4], [1, 1, 1, 1], timestamps=stamps)
    assert data.timestamps.tolist() == [-MAX_TIMESTAMP, 0, MAX_TIMESTAMP, 1_600_000_000]
    objects = np.array([5, 6.0, np.int64(7), np.float32(8)], dtype=object)
    assert Interactions.from_arrays([1, 2, 3, 4], [1] * 4, timestamps=objects) \
        .timestamps.tolist() == [5, 6, 7, 8]
    when = [dt.datetime(1, 1, 1), dt.datetime(1970, 1, 2), dt.datetime(9999, 12, 31, 23, 59, 59)]
    data = Interactions.from_arrays([1, 2, 3], [1, 1, 1], timestamps=when)
    assert data.timestamps.tolist() == [-62_135_596_800, 86_400, MAX_TIMESTAMP - 1]
    aware = pd.Series(pd.to_datetime(["2020-01-01T01:00:00+01:00"]))
    assert Interactions.from_arrays([1], [1], timestamps=aware).timestamps.tolist() \
        == [1_577_836_800]


def test_timestamps_of_the_wrong_shape():
    with pytest.raises(DataError, match=r"timestamps must be 2 numbers or datetimes"):
        Interactions.from_arrays([1, 2], [1, 1], timestamps=np.zeros((2, 2)))
    with pytest.raises(DataError, match="must be numbers"):
        Interactions.from_arrays([1, 2], [1, 1], timestamps=[True, False])


# ------------------------------------------------------------------------------ rows named by line
def test_ratings_that_are_no_numbers_name_the_first_line(tmp_path):
    # Regression (issue 19): "ratings must be numbers, got dtype object" said not where.
    path = csv_file(tmp_path, "user,item,rating\n1,a,4\n\n2,b,four\n3,c,x\n4,d,5\n")
    with pytest.raises(DataError, match=r"ratings must be numbers, got 'four' in 2 row\(s\) "
                                        r"\(lines 4, 5 of .*r.csv\)"):
        Interactions.from_csv(path, rating="rating")
    with pytest.raises(DataError, match=r"ratings must be numbers, got 'four' in 2 row\(s\) "
                                        r"\(positions 1, 2\)"):
        Interactions.from_arrays([1, 2, 3, 4], list("abcd"), [4, "four", "x", 5])


def test_other_bad_values_name_the_line(tmp_path):
    path = csv_file(tmp_path, 'user,item,rating,weight\n1,a,4,1\n2,"b\nc",NaN,1\n3,d,1,-2\n')
    with pytest.raises(DataError, match=r"NaN or infinite ratings in 1 row\(s\) \(line 3 of"):
        Interactions.from_csv(path, rating="rating")
    with pytest.raises(DataError, match=r"weights must be > 0 .*\(line 5 of"):
        Interactions.from_csv(path, weight="weight")
    scaled = csv_file(tmp_path, "user,item,rating\n1,a,4\n\n3,d,1\n", "s.csv")
    with pytest.raises(DataError, match=r"rating 1 is outside the rating scale \[4, 5\]: "
                                        r"1 row\(s\) \(line 4 of"):
        Interactions.from_csv(scaled, rating="rating", rating_scale=(4, 5))


def test_missing_ids_name_the_line(tmp_path):
    path = csv_file(tmp_path, "user,item\n1,a\n,b\n3,\n")
    with pytest.raises(DataError, match=r"missing user ids in 1 row\(s\) \(line 3 of"):
        Interactions.from_csv(path)


def test_a_long_id_names_its_line_before_any_fixed_width_array(tmp_path):
    # Regression (issue 19): a 4 KB gzip with one 1 MB id made from_csv use 8.7 GiB.
    limit = max_id_length()
    rows = "".join(f"u{i},i{i}\n" for i in range(50))
    path = csv_file(tmp_path, f"user,item\n{rows}x{'y' * limit},i0\n{rows}")
    with pytest.raises(DataError, match=rf"user ids longer than {limit} characters in 1 "
                                        rf"row\(s\) \(line 52 of"):
        Interactions.from_csv(path)
    ok = csv_file(tmp_path, f"user,item\n{rows}{'y' * limit},i0\n", "ok.csv")
    assert Interactions.from_csv(ok).n_users == 51


def test_a_missing_column_names_it_and_the_columns_found(tmp_path):
    # Regression (issue 19): pandas' "Usecols do not match columns" surfaced instead.
    path = csv_file(tmp_path, "userId,movieId\n1,2\n")
    with pytest.raises(DataError, match=r"no column 'user' \(user=\); its columns are "
                                        r"\['userId', 'movieId'\]") as err:
        Interactions.from_csv(path)
    assert "Usecols" not in str(err.value)
    with pytest.raises(DataError, match=r"no column 'stars' \(rating=\)"):
        Interactions.from_csv(path, "userId", "movieId", rating="stars")
    with pytest.raises(DataError, match=r"no column 5 \(item=\): it has no header line, so its "
                                        r"2 column\(s\) are numbered 0 to 1"):
        Interactions.from_csv(path, 0, 5, header=None)
    data = Interactions.from_csv(path, 0, 1)  # positions, with a header
    assert data.users.tolist() == [1] and data.items.tolist() == [2]


def test_lines_fall_back_to_positions_when_pandas_reads_other_rows(tmp_path, monkeypatch):
    from matfact.data import readers

    path = csv_file(tmp_path, "user,item,rating\n1,a,4\n2,b,x\n")
    real = readers.read_delimited
    monkeypatch.setattr(readers, "read_delimited",
                        lambda *args, **kwargs: real(*args, **kwargs).iloc[1:])
    with pytest.raises(DataError, match=r"got 'x' in 1 row\(s\) \(positions 0\)"):
        Interactions.from_csv(path, rating="rating")
