"""The one id rule (``IdIndex.parse`` / ``IdIndex.code`` / ``normalize_ids``), issue 19.

Every edge (files, Python, the CLI, HTTP) reads ids through these, so they must be
total (``code`` never raises), strict about what an integer id is, bounded in length
before any fixed-width array is made, and consistent about Unicode.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matfact import DataError, Interactions
from matfact.data.interactions import MAX_ID_LENGTH, IdIndex, normalize_ids

INTEGER_TEXT = re.compile(r"\s*[+-]?[0-9]{1,19}\s*", re.ASCII)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.integers(), st.floats(), st.booleans(), st.none(),
                 st.text(alphabet="0123456789+-_ ²٣", max_size=25)))
def test_code_is_total_and_integer_text_is_ascii_digits(raw):
    index = IdIndex([-7, 0, 5, 42, 2**62])
    code = index.code(raw)  # never raises
    assert -1 <= code < len(index)
    if isinstance(raw, str):
        expected = -1
        if INTEGER_TEXT.fullmatch(raw) and len(raw) <= 64:
            value = int(raw)
            expected = int(index.get_indexer(np.array([value]))[0]) if -2**63 <= value < 2**63 \
                else -1
        assert code == expected
    assert index.get_indexer([raw]).tolist() == [code]


@pytest.mark.parametrize("text", ["--5", "\u00b2", "\u0663", "1_000", "9" * 60_000, "4 2",
                                  "0x2a", "42.0", ""])
def test_text_that_is_not_an_integer_is_an_unknown_id_or_refused(text):
    index = IdIndex([1, 5, 42])
    assert index.code(text) == -1
    with pytest.raises(DataError, match="integers"):
        index.parse([text], "user")


def test_surrogates_are_refused_and_unicode_is_one_normal_form():
    index = IdIndex(["caf\u00e9", "u1"])
    assert index.code("cafe\u0301") == 0  # NFD spelling of the same text
    assert index.get_indexer(np.array(["cafe\u0301", "u1"])).tolist() == [0, 1]
    assert index.code("\ud800") == -1
    with pytest.raises(DataError, match="Unicode"):
        index.parse(["\ud800"], "item")
    for values in (["ok", "\ud800"], np.array(["ok", "\udfff"])):
        with pytest.raises(DataError, match="Unicode"):
            normalize_ids(values, "user")
    data = Interactions.from_arrays(["cafe\u0301", "caf\u00e9"], ["a", "b"], [1.0, 2.0])
    assert data.user_ids.tolist() == ["caf\u00e9"]  # one user, as a person would expect
    assert unicodedata.is_normalized("NFC", data.user_ids[0])


def test_long_ids_are_refused_before_a_fixed_width_array_is_made(monkeypatch):
    huge = "x" * 1_000_000  # as a fixed-width array of 10,000 ids: 40 GB
    with pytest.raises(DataError, match="longer than 256"):
        normalize_ids(["a"] * 9_999 + [huge], "user")
    index = IdIndex(["a", "b"])
    assert index.code(huge) == -1
    assert index.get_indexer(["a"] * 9_999 + [huge]).tolist()[-2:] == [0, -1]
    with pytest.raises(DataError, match="at most 256"):
        index.parse([huge], "user")
    assert len(IdIndex(["y" * MAX_ID_LENGTH])) == 1
    monkeypatch.setenv("MATFACT_MAX_ID_LENGTH", "8")
    with pytest.raises(DataError, match="longer than 8"):
        normalize_ids(["123456789"], "item")
    assert IdIndex(["abc"]).code("abcdefghi") == -1


def test_ids_become_the_models_type_by_one_rule():
    numbers = IdIndex([3, 42])
    assert numbers.parse(["42", " 3 ", 42.0, 3]).tolist() == [42, 3, 42, 3]
    for bad in (True, None, 4.5, "x", [1]):
        with pytest.raises(DataError):
            numbers.parse([bad])
    strings = IdIndex(["5", "a"])
    assert strings.parse([5, "a"]).tolist() == ["5", "a"]
    with pytest.raises(DataError):
        strings.parse([True])


def test_id_memory_grows_with_total_length_not_longest_times_count(tmp_path):
    # 50,000 short ids and one of the longest allowed: as fixed-width text every id
    # would cost 4 bytes x 256 characters (51 MB; reading peaked at 210 MB); as strings
    # reading peaks at ~13 MB and the ids keep ~5 MB.
    import tracemalloc

    users = [f"u{i}" for i in range(50_000)] + ["y" * MAX_ID_LENGTH]
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n" + "".join(f"{u},i{n % 7},4\n" for n, u in
                                                   enumerate(users)))
    fixed_width = len(users) * MAX_ID_LENGTH * 4
    tracemalloc.start()
    try:
        data = Interactions.from_csv(path, rating="rating")
        index = IdIndex(data.user_ids)
        grown = index.extend(["z" * MAX_ID_LENGTH, "u1"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < fixed_width / 2, f"peak {peak:,} bytes"  # was 4x fixed_width
    assert index.kind == "str" and len(grown) == len(users) + 1
    assert index.code("y" * MAX_ID_LENGTH) == len(users) - 1  # sorted: "u…" < "y…"
    # A selection comes back as text only as wide as its longest id.
    assert index.to_ids([0, 1]).dtype == np.dtype("<U2")  # sorted: "u0", "u1"
    assert index.to_ids([[0], [len(users) - 1]]).shape == (2, 1)
