"""Tests of matfact.data.readers under hostile files (issue 19, the loaders).

The streaming scan that runs before pandas is checked against an independent
reference (the :mod:`csv`-module scan, on every file the NumPy scan accepts, with
blocks of a few characters so that every state carried across blocks is exercised),
and each rule is pinned by a file that breaks it: the error must name the file line
(1-based, counting the header and blank lines).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matfact.apps.topics import read_corpus
from matfact.data import readers
from matfact.data.interactions import Interactions
from matfact.exceptions import DataError, ParameterError

FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


def write(path, text: str | bytes, encoding: str = "utf-8"):
    """Write ``text`` to ``path``, compressed by its suffix."""
    raw = text if isinstance(text, bytes) else text.encode(encoding)
    opener = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}
    raw = opener.get(path.suffix, lambda data: data)(raw)
    path.write_bytes(raw)
    return path


# ------------------------------------------------------------------------------ the two scans
PIECES = [",", ",", ",", "a", "1", "bb", " ", "\t", "\n", "\n", "\r\n", "\r", '"x,y"', '"a""b"',
          '""', '"\n"', '"', "yyyyy", "#"]


def _outcome(path, options, header, fast: bool):
    """What one scan finds: its counts and the line of every data row, or its error."""
    records = readers._Records(str(path), options, header, np.arange(40))
    try:
        if fast:
            if not readers._FastScan(str(path), options, records, None).run():
                return None  # the NumPy scan gave up: the csv scan decides
        else:
            readers._csv_scan(str(path), options, records, None)
        records.finish()
    except DataError as err:
        line = re.search(r"line (\d+)", str(err))
        return ("error", line.group(1) if line else str(err))
    return ("read", records.n_data, records.expected, records.has_extra, records.found)


@FAST
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=40),
       sep=st.sampled_from([",", "\t", ";", readers.WHITESPACE]),
       block=st.integers(1, 13), header=st.sampled_from([0, None, 1]),
       n_names=st.sampled_from([None, 2, 3]), comment=st.sampled_from([None, "#"]),
       extra=st.sampled_from(readers.EXTRA_FIELDS), max_columns=st.sampled_from([2, 4, 100]),
       skip_spaces=st.booleans())
def test_the_numpy_scan_agrees_with_the_csv_module(tmp_path_factory, monkeypatch, pieces, sep,
                                                  block, header, n_names, comment, extra,
                                                  max_columns, skip_spaces):
    path = tmp_path_factory.getbasetemp() / "scanned.csv"
    text = "".join(p.replace(",", sep if len(sep) == 1 else " ") for p in pieces)
    path.write_bytes(text.encode())
    monkeypatch.setattr(readers, "_BLOCK", block)
    options = readers._ScanOptions(sep=sep, encoding="utf-8", comment=comment,
                                   skipinitialspace=skip_spaces, extra_fields=extra,
                                   max_field_size=100, max_columns=max_columns, n_names=n_names)
    fast = _outcome(path, options, header, fast=True)
    if fast is not None:
        # Both name the same line (when one line breaks two rules they may name different ones).
        assert fast == _outcome(path, options, header, fast=False), repr(text)


def test_a_file_read_in_tiny_blocks_gives_the_same_lines(tmp_path, monkeypatch):
    text = ('user,item,rating\r\n\r\n1,"a\nb",3\n\n  \n2,"x,""y""",4\r5,c,1\n'
            '6,"",2\n7,d,')
    path = write(tmp_path / "r.csv", text)
    expected = readers.scan_delimited(path).lines(range(5))
    assert expected == [3, 7, 8, 9, 10]
    for block in (1, 2, 3, 7):
        monkeypatch.setattr(readers, "_BLOCK", block)
        assert readers.scan_delimited(path).lines(range(5)) == expected
    frame = readers.read_delimited(path, usecols=["user", "item"])
    assert frame["item"].tolist() == ["a\nb", 'x,"y"', "c", np.nan, "d"]


# ------------------------------------------------------------------------------ rules
@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
def test_a_field_over_the_limit_names_its_line(tmp_path, suffix):
    path = write(tmp_path / f"r.csv{suffix}", "user,item\n1,a\n\n2," + "b" * 60 + "\n3,c\n")
    with pytest.raises(DataError, match=r"line 4: a field is longer than 50 characters"):
        Interactions.from_csv(path, max_field_size=50)
    assert Interactions.from_csv(path, max_field_size=60).nnz == 3


def test_the_default_field_limit_is_one_mib(tmp_path):
    ok = write(tmp_path / "ok.csv", "a,b\n1," + "x" * readers.MAX_FIELD_SIZE + "\n")
    assert readers.read_delimited(ok)["b"].str.len().tolist() == [readers.MAX_FIELD_SIZE]
    long = write(tmp_path / "long.csv", "a,b\n1,2\n1," + "x" * (readers.MAX_FIELD_SIZE + 1))
    with pytest.raises(DataError, match=r"long.csv, line 3: a field is longer than 1,048,576"):
        readers.read_delimited(long)


def test_a_quoted_field_over_the_limit_is_found_by_both_scans(tmp_path):
    quoted = write(tmp_path / "q.csv", 'a,b\n1,"' + "x,\n" * 30 + '"\n')
    with pytest.raises(DataError, match="line 2: a field is longer than 50"):
        readers.scan_delimited(quoted, max_field_size=50)
    odd = write(tmp_path / "odd.csv", 'a,b\n1,x"y\n2,"' + "x,\n" * 30 + '"\n')  # csv scan
    with pytest.raises(DataError, match="line 3: a field is longer than 50"):
        readers.scan_delimited(odd, max_field_size=50)


def test_too_many_columns_is_refused_before_any_split(tmp_path):
    wide = write(tmp_path / "wide.csv", ",".join(f"c{i}" for i in range(200)) + "\n1,2\n")
    with pytest.raises(DataError, match=r"wide.csv, line 1: more fields than the limit of 100 "
                                        r"\(max_columns\)"):
        readers.scan_delimited(wide, max_columns=100)
    with pytest.raises(DataError, match=r"line 1: 200 fields, more than the limit of 100"):
        readers.sniff(wide, max_columns=100)
    later = write(tmp_path / "later.csv", "a,b\n1,2\n" + ",".join("1" * 200) + "\n")
    with pytest.raises(DataError, match="line 3: more fields than the limit"):
        readers.scan_delimited(later, max_columns=100)


@pytest.mark.parametrize(("text", "kwargs", "line", "n_read"), [
    ("user,item\n1,2\n\n3,4,5\n6,7,8\n", {}, 4, 3),
    ("1,2\n3,4\n5,6,7\n", {"header": None, "user": 0, "item": 1}, 3, 3),
    ("a,b\n1,2,3\n4,5\n", {"names": ["user", "item"], "header": 0}, 2, 2),
    ("user item\n1 2\n 3   4 5\n", {"sep": r"\s+"}, 3, 2),
    ('user,item\n"1,2",3\n"4",5,6\n', {}, 3, 2),
])
def test_extra_fields_are_an_error_naming_the_first_line(tmp_path, text, kwargs, line, n_read):
    # Regression (issue 19): pandas dropped them, or made the first column the index.
    path = write(tmp_path / "r.csv", text)
    with pytest.raises(DataError, match=rf"r.csv, line {line} has \d field\(s\) but .* extra "
                                        rf"fields are not dropped silently.*extra_fields='drop'"):
        Interactions.from_csv(path, **kwargs)
    assert Interactions.from_csv(path, extra_fields="drop", **kwargs).nnz == n_read


def test_dropped_extra_fields_keep_every_other_value(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,a,3,x\n2,b,4\n3,c,5,y,z\n")
    data = Interactions.from_csv(path, rating="rating", extra_fields="drop")
    assert data.users.tolist() == [1, 2, 3] and data.ratings.tolist() == [3, 4, 5]
    assert data.items.tolist() == ["a", "b", "c"]
    headerless = write(tmp_path / "h.csv", "1,a,3\n2,b,4,9\n")
    data = Interactions.from_csv(headerless, 0, 1, 2, header=None, extra_fields="drop")
    assert data.ratings.tolist() == [3, 4]
    with pytest.raises(ParameterError, match="extra_fields must be one of"):
        Interactions.from_csv(path, extra_fields="ignore")


@pytest.mark.parametrize("extra", readers.EXTRA_FIELDS)
def test_missing_fields_are_an_error_naming_the_line(tmp_path, extra):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,a,3\n2,b\n")
    with pytest.raises(DataError, match=r"r.csv, line 3 has 2 field\(s\) but the header "
                                        r"\(line 1\) has 3: a field is missing"):
        Interactions.from_csv(path, rating="rating", extra_fields=extra)


@pytest.mark.parametrize("text", ['user,item\n1,"a\n2,b\n', 'user,item\n1,x"y\n2,"b\n'])
def test_an_unclosed_quote_names_its_line(tmp_path, text):
    with pytest.raises(DataError, match=r"line [23]: a quoted field is never closed"):
        readers.scan_delimited(write(tmp_path / "r.csv", text))


@pytest.mark.parametrize("name", ["r.csv", "r.tsv", "r.csv.gz", "r.tsv.bz2", "r.csv.xz"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252"])
def test_a_byte_order_mark_is_accepted_everywhere(tmp_path, name, encoding):
    # Regression (issue 19): "\ufeffuser" did not match "user" in the CLI.
    sep = "\t" if ".tsv" in name else ","
    text = sep.join(["user", "item", "rating"]) + "\n" + sep.join(["1", "é", "4"]) + "\n"
    plain = write(tmp_path / f"plain-{name}", text, encoding)
    marked = write(tmp_path / f"bom-{name}", b"\xef\xbb\xbf" + text.encode(encoding))
    for path in (plain, marked):
        assert readers.first_line(path, encoding).startswith("user")
        layout = readers.sniff(path, encoding=encoding)
        assert layout.names == ["user", "item", "rating"] and layout.sep == sep
        assert readers.scan_delimited(path, sep=sep, encoding=encoding).names == layout.names
        data = Interactions.from_csv(path, rating="rating", sep=sep, encoding=encoding)
        assert data.items.tolist() == ["é"] and data.ratings.tolist() == [4.0]


def test_a_headerless_file_with_a_byte_order_mark(tmp_path):
    path = write(tmp_path / "u.data", b"\xef\xbb\xbf1\t2\t5\n3\t4\t1\n")
    assert readers.sniff(path).header is False
    data = Interactions.from_csv(path, 0, 1, 2, header=None, sep="\t")
    assert data.users.tolist() == [1, 3]


def test_a_byte_order_mark_in_a_corpus(tmp_path):
    csv_file = write(tmp_path / "docs.csv", b"\xef\xbb\xbfid,text\n1,hello\n")
    assert read_corpus(csv_file).ids.tolist() == ["1"]
    jsonl = write(tmp_path / "docs.jsonl.gz", b'\xef\xbb\xbf{"id": 1, "text": "hi"}\n')
    assert read_corpus(jsonl).texts == ["hi"]
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"\xef\xbb\xbfhello")
    assert read_corpus(folder).texts == ["hello"]


def test_a_compression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_EXPANSION_SLACK", 1000)
    bomb = write(tmp_path / "bomb.csv.gz", "user,item\n" + "1,2\n" * 200_000)
    assert bomb.stat().st_size * readers.MAX_EXPANSION < 800_000
    with pytest.raises(DataError, match="decompresses to more than .* compression bomb"):
        readers.scan_delimited(bomb)
    with pytest.raises(DataError, match="compression bomb"):
        list(readers.iter_lines(bomb))
    odd = write(tmp_path / "odd.csv.gz", 'user,item\n1,x"y\n' + "1,2\n" * 200_000)  # csv scan
    with pytest.raises(DataError, match="compression bomb"):
        readers.scan_delimited(odd)
    small = write(tmp_path / "small.csv.gz", "user,item\n" + "1,2\n" * 1_000)
    assert readers.scan_delimited(small).n_records == 1_000


def test_a_line_too_long_for_a_line_reader(tmp_path):
    path = write(tmp_path / "docs.jsonl", '{"text": "a"}\n{"text": "' + "b" * 100 + '"}\n')
    with pytest.raises(DataError, match="docs.jsonl, line 2: longer than 50 characters"):
        list(readers.iter_lines(path, max_line_size=50))
    deep = write(tmp_path / "deep.jsonl", "[" * 100_000 + "\n")
    with pytest.raises(DataError, match="deep.jsonl, line 1: not valid JSON"):
        read_corpus(deep)


@pytest.mark.parametrize(("text", "kwargs", "rows"), [
    ("#c\nuser,item\n1,2 # note\n# skip\n3,4\n", {"comment": "#"}, [[1, 2], [3, 4]]),
    ('user,item\n"1","2"\n3,"4,5"\n', {}, [[1, "2"], [3, "4,5"]]),
    ("user::item\n1::2\n", {"sep": "::"}, [[1, 2]]),
    ("user  item\n\t1 2\n", {"sep": r"\s+"}, [[1, 2]]),
    ("user\titem\n1\t2\n", {"sep": "\\t"}, [[1, 2]]),
    ("x\ny\nuser,item\n1,2\n", {"header": 2}, [[1, 2]]),
])
def test_layouts_read_as_pandas_reads_them(tmp_path, text, kwargs, rows):
    path = write(tmp_path / "r.csv", text)
    frame = readers.read_delimited(path, usecols=["user", "item"], **kwargs)
    expected = pd.DataFrame(rows, columns=["user", "item"])
    assert frame.astype(str).values.tolist() == expected.astype(str).values.tolist()


def test_columns_by_name_or_position_and_what_is_missing(tmp_path):
    path = write(tmp_path / "r.csv", "UserId, item ,rating\n1,a,3\n")
    table = readers.scan_delimited(path, as_text=True)
    assert table.column("item") == " item " and table.column(0) == "UserId"
    with pytest.raises(DataError, match=r"no column 'user' \(user=\); its columns are "
                                        r"\['UserId', ' item ', 'rating'\]"):
        table.column("user", option="user=")
    headerless = readers.scan_delimited(write(tmp_path / "h.csv", "1,2\n"), header=None)
    assert headerless.column("1") == 1
    with pytest.raises(DataError, match="no header line, so its 2 column"):
        headerless.column("user")
    with pytest.raises(DataError, match=r"no column 'user'.*its columns are \['a', 'b'\]"):
        readers.read_delimited(write(tmp_path / "ab.csv", "a,b\n1,2\n"), usecols=["user"])


def test_bad_options_are_parameter_errors(tmp_path):
    path = write(tmp_path / "r.csv", "a,b\n1,2\n")
    for kwargs in ({"sep": ""}, {"sep": "(["}, {"comment": "##"}, {"header": True},
                   {"header": [0, 1]}, {"max_field_size": 0}, {"max_columns": 1.5},
                   {"names": []}):
        with pytest.raises(ParameterError):
            readers.scan_delimited(path, **kwargs)


def test_empty_files(tmp_path):
    for text in ("", "\n\n  \n"):
        with pytest.raises(DataError, match="the file is empty"):
            readers.scan_delimited(write(tmp_path / "e.csv", text))
    with pytest.raises(DataError, match="header=3 but the file has only 2 non-blank"):
        readers.scan_delimited(write(tmp_path / "h.csv", "a\nb\n"), header=3)


def test_parquet_missing_columns_and_row_bombs(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [3, 4]}).to_parquet(path)
    with pytest.raises(DataError, match=r"no column 'rating'; its columns are \['user', 'item'\]"):
        Interactions.from_parquet(path, rating="rating")
    monkeypatch.setattr(readers, "_EXPANSION_SLACK", 0)
    monkeypatch.setattr(readers, "MAX_EXPANSION", 0)
    with pytest.raises(DataError, match="declares 2 rows"):
        readers.read_parquet(path)


# ------------------------------------------------------------------------------ UTF-16 (issue 20)
_RATINGS = "user,item,rating\n1,é,4\n1,b,5\n2,a,3\n"


@pytest.mark.parametrize("codec,guess", [("utf-16", "utf-16"), ("utf-16-le", "utf-16-le"),
                                         ("utf-16-be", "utf-16-be"), ("utf-32", "utf-32")])
def test_utf16_is_recognised_and_read_as_utf_16(tmp_path, codec, guess):
    path = tmp_path / "r.csv"
    path.write_bytes(_RATINGS.encode(codec))
    assert readers.guess_wide_encoding(path) == guess
    # Read as UTF-8, the hint names the encoding that works (not latin-1).
    fix = "utf-32" if codec == "utf-32" else "utf-16"
    with pytest.raises(DataError, match=f"encoding='{fix}' \\(--encoding {fix}\\)"):
        Interactions.from_csv(path, rating="rating")
    # "utf-16" reads both byte orders, with or without a byte-order mark.
    data = Interactions.from_csv(path, rating="rating", encoding=fix)
    assert sorted(data.item_ids.tolist()) == ["a", "b", "é"]
    assert data.ratings.tolist() == [4.0, 5.0, 3.0]


def test_ascii_utf16_without_a_mark_gets_the_hint_too(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("user,item\n1,a\n2,b\n".encode("utf-16-le"))  # decodes as UTF-8 with NULs
    with pytest.raises(DataError, match="NUL bytes.*--encoding utf-16"):
        readers.sniff(path)
    assert readers.sniff(path, encoding="utf-16").names == ["user", "item"]


def test_other_bad_text_still_suggests_latin_1(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("user,item\n1,é\n".encode("latin-1"))
    assert readers.guess_wide_encoding(path) is None
    with pytest.raises(DataError, match="--encoding latin-1"):
        Interactions.from_csv(path)
    assert Interactions.from_csv(path, encoding="latin-1").item_ids.tolist() == ["é"]


def test_a_missing_column_suggests_the_name_in_another_case(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("userId,movieId\n1,2\n")
    with pytest.raises(DataError, match=r"no column 'userid' \(user=\); its columns are "
                                         r"\['userId', 'movieId'\]; did you mean 'userId'\?"):
        Interactions.from_csv(path, user="userid", item="movieId")
