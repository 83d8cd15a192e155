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
