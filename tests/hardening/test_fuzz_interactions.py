"""Generated bad input for every ``Interactions`` constructor: a result or a matfact error.

Garbage and mixed-type ids (huge, negative, NaN, None, bytes, bools), NaN/inf and
text ratings, mismatched lengths, empty input, duplicate pairs under each policy,
bad timestamps and rating scales; CSV files of random text in random encodings
(and wrong ``encoding=`` names); hostile delimited files (issue 19: long fields and
ids, extra and missing fields, byte-order marks, broken quotes, stray line ends,
extreme timestamps, compressed); DataFrames with mixed columns; sparse and dense
matrices with NaN/inf and empty rows. Whatever comes back must be consistent, and
an error about a file's contents names a line the file has.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matfact import Interactions
from matfact.data.interactions import MAX_TIMESTAMP, max_id_length
from tests.hardening._cases import check, profiles

#: hypothesis examples per test, per profile.
EXAMPLES = {"normal": 120, "slow": 1200}


def fuzz_settings(profile: str) -> settings:
    return settings(max_examples=EXAMPLES[profile], deadline=None, database=None,
                    derandomize=not os.environ.get("MATFACT_FUZZ_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


one_id = st.one_of(
    st.integers(-5, 30), st.integers(-(2**70), 2**70), st.text(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(),
    st.binary(max_size=3), st.just(np.int64(7)), st.just(np.uint64(2**63 + 5)),
)
same_kind_ids = st.one_of(
    st.lists(st.integers(-3, 20), max_size=40),
    st.lists(st.integers(-(2**64), 2**64), max_size=20),
    st.lists(st.text(max_size=4), max_size=30),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20),
)
ids = st.one_of(same_kind_ids, st.lists(one_id, max_size=20),
                same_kind_ids.map(np.asarray), st.integers(0, 3), st.text(max_size=3))
one_value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                      st.integers(-(2**80), 2**80), st.text(max_size=3), st.none(),
                      st.booleans())
values = st.one_of(st.none(), st.lists(st.floats(-1e40, 1e40), max_size=40),
                   st.lists(st.integers(1, 5), max_size=40), st.lists(one_value, max_size=40),
                   st.lists(st.integers(1, 5), max_size=40).map(np.asarray))
timestamps = st.one_of(st.none(), st.lists(st.integers(-(2**65), 2**65), max_size=40),
                       st.lists(one_value, max_size=40),
                       st.lists(st.datetimes(), max_size=40),
                       st.lists(st.sampled_from([0, 1.6e9, MAX_TIMESTAMP, MAX_TIMESTAMP + 1,
                                                 -MAX_TIMESTAMP - 0.5, 1e999, -1e999, 1.7e12,
                                                 float("nan"), 1e300]), max_size=10))
policy = st.sampled_from(["error", "last", "sum", "mean", "first", None, 3])
scale = st.one_of(st.none(), st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)),
                  st.tuples(st.integers(-2, 6), st.integers(-2, 6)), st.just("1-5"),
                  st.lists(st.integers(), max_size=3))


def consistent(data: Interactions) -> None:
    """What every successfully built Interactions must satisfy."""
    assert isinstance(data, Interactions) and data.nnz >= 1
    assert len(data.user_codes) == len(data.item_codes) == data.nnz
    assert 0 <= data.user_codes.min() and data.user_codes.max() < data.n_users
    assert 0 <= data.item_codes.min() and data.item_codes.max() < data.n_items
    if data.ratings is not None:
        assert np.isfinite(data.ratings).all()
    if data.timestamps is not None:  # finite Unix seconds within the year 10000 (issue 19)
        assert np.abs(data.timestamps).max() <= MAX_TIMESTAMP
    for ids in (data.user_ids, data.item_ids):
        if ids.dtype.kind == "U":
            assert ids.dtype.itemsize // 4 <= max_id_length()
    keys = data.user_codes.astype(np.int64) * data.n_items + data.item_codes
    assert len(np.unique(keys)) == data.nnz, "duplicate pairs survived"


@pytest.mark.parametrize("profile", profiles())
def test_from_arrays_gives_data_or_a_matfact_error(profile):
    @fuzz_settings(profile)
    @given(users=ids, items=ids, ratings=values, weights=values, stamps=timestamps,
           duplicates=policy, rating_scale=scale)
    def run(users, items, ratings, weights, stamps, duplicates, rating_scale):
        data, _ = check("interactions", lambda: Interactions.from_arrays(
            users, items, ratings, weights=weights, timestamps=stamps, duplicates=duplicates,
            rating_scale=rating_scale))
        if data is not None:
            consistent(data)

    run()


@pytest.mark.parametrize("profile", profiles())
def test_duplicate_pairs_follow_the_policy(profile):
    @fuzz_settings(profile)
    @given(pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 5)),
                          min_size=1, max_size=30),
           duplicates=st.sampled_from(["error", "last", "sum", "mean"]))
    def run(pairs, duplicates):
        users, items, ratings = (list(x) for x in zip(*pairs, strict=True))
        data, error = check("interactions", lambda: Interactions.from_arrays(
            users, items, ratings, duplicates=duplicates))
        distinct = len(set(zip(users, items, strict=True)))
        if error is not None:
            assert duplicates == "error" and distinct < len(pairs)
            return
        consistent(data)
        assert data.nnz == distinct
        if duplicates == "last":
            last = {(u, i): r for u, i, r in pairs}
            got = dict(zip(zip(data.users.tolist(), data.items.tolist(), strict=True),
                           data.ratings.tolist(), strict=True))
            assert got == {k: float(v) for k, v in last.items()}

    run()


cell = st.one_of(st.integers(-(2**70), 2**70), st.integers(0, 9),
                 st.floats(allow_nan=True, allow_infinity=True).map(repr),
                 st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
                 st.sampled_from(["", "NaN", "inf", "-", '"', '""', "1e999", "  3 ", "\\N"]))
encodings = st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252", "utf-8-sig", "ascii"])


@st.composite
def csv_files(draw) -> tuple[bytes, dict]:
    """A random delimited file (bytes) and the from_csv arguments to read it with."""
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    header = draw(st.sampled_from(["user,item,rating", "user,item,rating,timestamp",
                                   "user,item", "item,user,rating", "", "a,b,c"]))
    header = header.replace(",", sep)
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=5), max_size=25))
    text = "\n".join([header] + [sep.join(map(str, row)) for row in rows])
    if draw(st.booleans()):
        text += draw(st.sampled_from(["\n", "\r\n", "\n\n\n", "\x00", "\ufeff"]))
    write_encoding = draw(encodings)
    raw = text.encode(write_encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        raw = draw(st.binary(max_size=200))  # not text at all
    if draw(st.integers(0, 9)) == 0 and raw:
        raw = raw[: draw(st.integers(0, len(raw)))]  # truncated mid-character
    kwargs = {"sep": sep if draw(st.integers(0, 5)) else draw(st.sampled_from([",", "::"])),
              "encoding": draw(st.one_of(encodings,
                                         st.sampled_from(["no-such-codec", "utf-32"]))),
              "rating": draw(st.sampled_from(["rating", None, "missing"])),
              "timestamp": draw(st.sampled_from([None, "timestamp"])),
              "duplicates": draw(st.sampled_from(["error", "last", "mean"]))}
    if draw(st.integers(0, 4)) == 0:
        kwargs.update(header=None, user=0, item=1,
                      rating=draw(st.sampled_from([2, None, 9])), timestamp=None)
    return raw, kwargs


@pytest.mark.parametrize("profile", profiles())
def test_from_csv_gives_data_or_a_matfact_error(profile, tmp_path):
    path = tmp_path / "ratings.csv"

    @fuzz_settings(profile)
    @given(file=csv_files())
    def run(file):
        raw, kwargs = file
        path.write_bytes(raw)
        data, _ = check("interactions", lambda: Interactions.from_csv(path, **kwargs))
        if data is not None:
            consistent(data)

    run()


#: Cells of hostile files: long ones (against small and default limits), broken quotes,
#: stray line ends, separators of other dialects, extreme timestamps.
hostile_cell = st.one_of(
    cell.map(str), st.integers(1, 5).map(str),
    st.sampled_from(["1e999", "-inf", "nan", "253402300801", "1.7e12", "9" * 40, '"', '"a,b"',
                     '"a\nb"', '""', 'x"y', "a\rb", "\t", ";", "#", " ", "\ufeff", "\x00"]),
    st.integers(0, 400).map(lambda n: "y" * n),
)


@st.composite
def hostile_files(draw) -> tuple[str, bytes, dict]:
    """A hostile delimited file: its name (suffix), its bytes, and from_csv's arguments."""
    sep = draw(st.sampled_from([",", "\t", ";"]))
    width = draw(st.integers(2, 4))
    header = ["user", "item", "rating", "timestamp"][:width]
    lines = [sep.join(header)] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 12))):
        n = width + draw(st.sampled_from([0] * 12 + [1, -1, 3]))  # some extra, some missing
        row = [str(draw(st.integers(0, 5))), str(draw(st.integers(0, 5)))][:max(n, 0)]
        row += [draw(hostile_cell) for _ in range(max(n - 2, 0))]
        if draw(st.integers(0, 6)) == 0:
            row[0:1] = [draw(hostile_cell)]  # an odd id: long, quoted, empty
        lines.append(sep.join(row))
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", "  ", "#comment", sep * width])))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = ending.join(lines) + draw(st.sampled_from(["", ending]))
    raw = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8", "replace")
    suffix = draw(st.sampled_from([".csv", ".csv", ".csv", ".tsv", ".csv.gz", ".csv.bz2",
                                   ".csv.xz"]))
    for end, pack in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        if suffix.endswith(end):
            raw = pack(raw)
    kwargs = {"sep": sep, "extra_fields": draw(st.sampled_from(["error", "drop"])),
              "max_field_size": draw(st.sampled_from([None, 64, 1000])),
              "comment": draw(st.sampled_from([None, None, "#"])),
              "duplicates": "last"}
    if not lines or not lines[0].startswith("user") or draw(st.integers(0, 5)) == 0:
        kwargs.update(header=None, user=0, item=1)
    if width > 2:
        kwargs["rating"] = "rating" if "user" not in kwargs else 2
    if width > 3:
        kwargs["timestamp"] = "timestamp" if "user" not in kwargs else 3
    return suffix, raw, kwargs


def _decompressed(suffix: str, raw: bytes) -> bytes:
    for end, opener in ((".gz", gzip.decompress), (".bz2", bz2.decompress),
                        (".xz", lzma.decompress)):
        if suffix.endswith(end):
            return opener(raw)
    return raw


@pytest.mark.parametrize("profile", profiles())
def test_hostile_files_give_data_or_an_error_naming_a_line(profile, tmp_path):
    # Issue 19: fields and ids too long, extra fields, BOMs, broken quotes, 1e999 timestamps.
    @fuzz_settings(profile)
    @given(file=hostile_files())
    def run(file):
        suffix, raw, kwargs = file
        path = tmp_path / f"hostile{suffix}"
        path.write_bytes(raw)
        data, error = check("interactions", lambda: Interactions.from_csv(path, **kwargs))
        if data is not None:
            consistent(data)
            return
        named = re.search(r"lines? (\d+)", str(error))
        if named:
            text = _decompressed(suffix, raw).decode("utf-8", "replace")
            assert 1 <= int(named.group(1)) <= len(text.splitlines()) + 1, str(error)

    run()


column = st.one_of(st.lists(one_id, min_size=3, max_size=3), st.lists(st.integers(0, 2),
                   min_size=3, max_size=3), st.lists(st.text(max_size=2), min_size=3,
                   max_size=3), st.lists(one_value, min_size=3, max_size=3))


@pytest.mark.parametrize("profile", profiles())
def test_from_pandas_with_mixed_columns(profile):
    @fuzz_settings(profile)
    @given(user=column, item=column, rating=column, as_category=st.booleans(),
           rating_col=st.sampled_from(["rating", None, "nope"]))
    def run(user, item, rating, as_category, rating_col):
        frame = pd.DataFrame({"user": pd.Series(user, dtype=object),
                              "item": pd.Series(item, dtype=object),
                              "rating": pd.Series(rating, dtype=object)})
        if as_category:
            frame["user"] = frame["user"].map(str).astype("category")
        data, _ = check("interactions", lambda: Interactions.from_pandas(
            frame, rating=rating_col, duplicates="last"))
        if data is not None:
            consistent(data)

    run()


@pytest.mark.parametrize("profile", profiles())
def test_from_scipy_with_nan_inf_and_empty_rows(profile):
    entries = st.sampled_from([0.0, 0.0, 0.0, 1.0, 4.5, -2.0, np.nan, np.inf, -np.inf, 1e300])

    @fuzz_settings(profile)
    @given(shape=st.tuples(st.integers(0, 6), st.integers(0, 6)), data=st.data(),
           implicit=st.booleans(), sparse=st.booleans())
    def run(shape, data, implicit, sparse):
        dense = np.array(data.draw(st.lists(entries, min_size=shape[0] * shape[1],
                                            max_size=shape[0] * shape[1])),
                         dtype=float).reshape(shape)
        matrix = sp.csr_matrix(dense) if sparse else dense
        built, _ = check("interactions", lambda: Interactions.from_scipy(
            matrix, implicit=implicit))
        if built is not None:
            consistent(built)
            assert built.shape == shape

    run()


def test_regression_a_wrong_encoding_name_is_a_parameter_error(tmp_path):
    # Found by test_from_csv_gives_data_or_a_matfact_error: pandas raised LookupError.
    from matfact.exceptions import ParameterError

    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ParameterError, match="encoding"):
        Interactions.from_csv(path, rating="rating", encoding="no-such-codec")
