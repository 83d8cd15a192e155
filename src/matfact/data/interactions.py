"""The one data model of matfact: :class:`Interactions` and its id maps.

Rows are always users and columns always items. An :class:`Interactions`
keeps the interactions in the order they were given (the splits depend on
that order) and derives a CSR matrix from them on demand.
"""

from __future__ import annotations

import numbers
import os
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from matfact.exceptions import DataError, ParameterError

__all__ = ["IdIndex", "Interactions", "MAX_ID_LENGTH", "max_id_length", "off_scale",
           "implausible_scale"]

_DUPLICATE_POLICIES = ("error", "last", "sum", "mean")
_MAX_SHOWN = 5

#: The longest id (in characters) matfact accepts anywhere: data files, HTTP requests,
#: model files, so that no single id can be made to cost memory or time out of scale
#: with the rest; the environment variable ``MATFACT_MAX_ID_LENGTH`` sets another bound.
MAX_ID_LENGTH = 256


def max_id_length() -> int:
    """The id length bound in force: ``MATFACT_MAX_ID_LENGTH`` if set (≥ 1), else 256."""
    text = os.environ.get("MATFACT_MAX_ID_LENGTH", "").strip()
    if text.isdigit() and 1 <= int(text) <= 1_000_000:
        return int(text)
    return MAX_ID_LENGTH


def _text_id(value: str, limit: int) -> str | None:
    """A string id as matfact keeps it, or None if it cannot be one.

    The one rule for text ids: at most ``limit`` characters, valid Unicode (no lone
    surrogates, which no UTF-8 file, database or JSON answer can hold), no NUL, and
    in Unicode normal form NFC, so the same text typed two ways is one id.
    """
    if len(value) > limit or "\x00" in value:
        return None
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    value = unicodedata.normalize("NFC", value)
    return value if len(value) <= limit else None


def _shown(values: Any) -> list:
    """Ids for an error message: a few, each cut short (an attacker's id may be huge)."""
    out = []
    for value in list(values)[:_MAX_SHOWN]:
        if isinstance(value, str) and len(value) > 40:
            value = f"{value[:20]}…({len(value):,} characters)"
        out.append(value)
    return out


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        if array.base is not None:
            array = array.copy()
        array.flags.writeable = False
    return array


def _positions(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:_MAX_SHOWN])
    more = f" and {len(rows) - _MAX_SHOWN} more" if len(rows) > _MAX_SHOWN else ""
    return f"{len(rows)} row(s) (positions {shown}{more})"


def _as_object_array(values: Any) -> np.ndarray:
    """A 1-D object array of the elements, without numpy's type coercion of lists."""
    items = list(values)
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in items):
        raise DataError("ids must be one-dimensional: got a nested sequence")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _check_strings(array: np.ndarray, what: str) -> np.ndarray:
    """String ids by :func:`_text_id`'s rule, as an object array of ``str``, or DataError.

    Ids are kept as Python strings, never as fixed-width text: one id of 256
    characters among a million short ones would otherwise make every id a
    kilobyte wide. The length is checked before anything is copied.
    """
    limit = max_id_length()
    if array.size == 0:
        return np.empty(0, dtype=object)
    if array.dtype.kind == "U" and array.dtype.itemsize // 4 > limit:
        too_long = np.char.str_len(array) > limit
        if too_long.any():
            raise DataError(f"{what} ids longer than {limit} characters in "
                            f"{_positions(too_long)}")
    if array.dtype.kind == "U":
        # numpy's fixed-width text has already dropped any trailing NULs; what is left
        # of the ids is what the caller meant, so only the type changes here.
        array = array.astype(object)
    else:
        texts = pd.Series(array, copy=False, dtype=object)
        too_long = (texts.str.len() > limit).to_numpy()
        if too_long.any():
            raise DataError(f"{what} ids longer than {limit} characters in "
                            f"{_positions(too_long)}")
        if texts.str.contains("\x00", regex=False).any():
            raise DataError(f"{what} ids contain NUL characters")
        if any(type(value) is not str for value in array):
            array = np.array([str(value) for value in array], dtype=object)
    uniques = pd.unique(array)
    odd = [value for value in uniques if not value.isascii()]
    if not odd:
        return array  # ASCII: already in normal form, no surrogates
    kept = {value: _text_id(value, limit) for value in odd}
    bad = [value for value, text in kept.items() if text is None]
    if bad:
        raise DataError(f"{what} ids that are not valid Unicode text (a lone surrogate?) or "
                        f"that grow past {limit} characters in normal form NFC: "
                        f"{_shown(bad)}")
    changed = {value: text for value, text in kept.items() if text != value}
    if not changed:
        return array
    return np.array([changed.get(value, value) for value in array], dtype=object)


def normalize_ids(values: Any, what: str) -> np.ndarray:
    """Turn raw ids into an ``int64`` array or an object array of ``str``, or raise :class:`DataError`.

    Integers (and floats that are all integral) become ``int64``; strings stay
    strings. Missing values, booleans, non-integral floats and a mix of numbers
    and strings are refused, because each would silently split or merge ids.

    Parameters
    ----------
    values : array-like of shape (n,)
        Raw ids.
    what : str
        Name used in error messages, e.g. ``"user"``.

    Returns
    -------
    ids : ndarray of shape (n,), dtype int64 or object (``str`` elements)
    """
    if isinstance(values, (pd.Series, pd.Index)):
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(values.dtype.categories.dtype)
        if values.isna().any():
            raise DataError(f"missing {what} ids in {_positions(values.isna().to_numpy())}")
        values = values.to_numpy()
    if isinstance(values, (list, tuple)):
        array = _as_object_array(values)
    else:
        array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"{what} ids must be one-dimensional, got shape {array.shape}")
    kind = array.dtype.kind
    if kind == "b":
        raise DataError(f"{what} ids are booleans; use integers or strings")
    if kind in "iu":
        if kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
            raise DataError(f"{what} ids exceed the int64 range")
        return array.astype(np.int64, copy=False)
    if kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"missing or infinite {what} ids in {_positions(bad)}")
        if np.any(array != np.round(array)):
            raise DataError(f"{what} ids are non-integral numbers; use integers or strings")
        if array.size and np.abs(array).max() >= 2.0**63:
            raise DataError(f"{what} ids exceed the int64 range")
        return array.astype(np.int64)
    if kind == "U":
        return _check_strings(array, what)
    if kind == "S":
        try:
            return _check_strings(np.char.decode(array, "utf-8"), what)
        except UnicodeDecodeError:
            raise DataError(f"{what} ids are bytes that are not UTF-8; decode them first") from None
    if kind == "O":
        return _normalize_object_ids(array, what)
    raise DataError(f"{what} ids must be integers or strings, got dtype {array.dtype}")


def _normalize_object_ids(array: np.ndarray, what: str) -> np.ndarray:
    try:
        return _normalize_object_ids_unchecked(array, what)
    except UnicodeError as err:
        # e.g. a lone surrogate ('\ud800'): pandas' string storage cannot hold it.
        raise DataError(f"{what} ids are not valid Unicode text: {err}") from None


def _normalize_object_ids_unchecked(array: np.ndarray, what: str) -> np.ndarray:
    if array.size == 0:
        return np.empty(0, dtype=np.int64)
    types = pd.Series(array, copy=False).map(type)
    is_str = types.isin([str, np.str_]).to_numpy()
    if is_str.all():
        return _check_strings(array, what)
    is_bool = np.array([issubclass(t, (bool, np.bool_)) for t in types], dtype=bool)
    is_int = np.array([issubclass(t, (int, np.integer)) for t in types], dtype=bool) & ~is_bool
    is_float = np.array([issubclass(t, (float, np.floating)) for t in types], dtype=bool)
    missing = np.asarray(pd.isna(array), dtype=bool)
    if missing.any():
        raise DataError(f"missing {what} ids in {_positions(missing)}")
    if is_bool.any():
        raise DataError(f"{what} ids include booleans in {_positions(is_bool)}; use integers "
                        f"or strings")
    if (is_int | is_float).all():
        if is_float.any():
            return normalize_ids(array.astype(np.float64), what)
        try:
            return array.astype(np.int64)
        except OverflowError:
            raise DataError(f"{what} ids exceed the int64 range") from None
    if (is_str | is_int | is_float).all():
        raise DataError(
            f"{what} ids mix numbers and strings ({_positions(is_int | is_float)} are numbers); "
            f"convert them to one type, e.g. df[col].astype(str)"
        )
    other = ~(is_str | is_int | is_float)
    bad_type = types.iloc[int(np.flatnonzero(other)[0])].__name__
    raise DataError(f"{what} ids must be integers or strings, got {bad_type} in "
                    f"{_positions(other)}")


_INT_TEXT = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)


def _parse_int(text: str) -> int | None:
    """An integer id written as text (ASCII digits, optional sign), or None.

    Stricter than ``int()``, which also takes other scripts' digits, ``_``
    separators and thousands of digits (slowly): those are not ids.
    """
    if len(text) > 64:
        return None
    text = text.strip(" \t\r\n")
    if not _INT_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


class IdIndex:
    """A two-way map between raw ids (ints or strings) and dense indices ``0..n-1``.

    Built from data, indices are assigned in sorted order of the raw ids.
    :meth:`extend` appends new ids after the existing ones, so an index already
    handed out never changes meaning.

    Parameters
    ----------
    ids : array-like of shape (n,)
        Distinct raw ids, in index order.

    Notes
    -----
    String ids are kept as Python strings (an object array, and a pandas index
    for lookups), so memory grows with the ids' total length, not with the
    longest id times their count. :attr:`ids` is that object array;
    :meth:`to_ids` returns a selection as fixed-width text, as the models'
    outputs are.

    Examples
    --------
    >>> index = IdIndex(["b", "a"])
    >>> index.get_indexer(["a", "z"]).tolist()
    [1, -1]
    >>> index.extend(["c", "a"]).ids.tolist()
    ['b', 'a', 'c']
    """

    __slots__ = ("_ids", "_lookup")

    def __init__(self, ids: Any) -> None:
        ids = np.array(normalize_ids(ids, "raw"), copy=True)
        lookup = pd.Index(ids, dtype=ids.dtype)
        if not lookup.is_unique:
            dupes = _shown(lookup[lookup.duplicated()].unique().tolist())
            raise DataError(f"an IdIndex needs distinct ids; repeated: {dupes}")
        self._ids = _frozen(ids)
        self._lookup = lookup

    @classmethod
    def from_values(cls, values: Any, what: str = "raw") -> tuple[IdIndex, np.ndarray]:
        """Index the distinct values in sorted order; return it and each value's index."""
        values = normalize_ids(values, what)
        if values.dtype == object:
            codes, uniques = pd.factorize(values, sort=True)
            return cls(np.asarray(uniques, dtype=object)), codes.astype(np.int32)
        uniques, codes = np.unique(values, return_inverse=True)
        return cls(uniques), codes.astype(np.int32).reshape(-1)

    @property
    def ids(self) -> np.ndarray:
        """Raw ids in index order (read-only): ``int64``, or an object array of ``str``."""
        return self._ids

    @property
    def kind(self) -> str:
        """``"int"`` or ``"str"``: the type of the raw ids."""
        return "str" if self._ids.dtype == object else "int"

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw: Any) -> bool:
        return bool(self.get_indexer([raw])[0] >= 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdIndex) and self.kind == other.kind and \
            np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:  # pragma: no cover - IdIndex is used as a value, not a key
        return hash((len(self), self.kind))

    def __repr__(self) -> str:
        head = ", ".join(repr(x) for x in self._ids[:3].tolist())
        return f"IdIndex({len(self)} {self.kind} ids: {head}{', ...' if len(self) > 3 else ''})"

    def coerce(self, raw: Any) -> np.ndarray:
        """Convert query ids to this index's type (e.g. ``"42"`` → ``42`` for int ids).

        Ids that cannot be converted are kept as they are (an object array), so
        they read as unknown in :meth:`get_indexer`.
        """
        array = (_as_object_array(raw) if isinstance(raw, (list, tuple))
                 else np.asarray(raw, dtype=object)).reshape(-1)
        values, valid = self._coerce(array)
        out = array.copy()
        out[valid] = values[valid].tolist()
        return out

    def _coerce(self, raw: Any) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`coerce` as typed values plus a mask of the convertible ones.

        Returns
        -------
        values : ndarray of shape (n,)
            ``int64`` or ``str`` values (meaningless where not ``valid``).
        valid : ndarray of shape (n,), bool
            False for ids that cannot be of this index's type (they are unknown).
        """
        array = (_as_object_array(raw) if isinstance(raw, (list, tuple))
                 else np.asarray(raw, dtype=object)).reshape(-1)
        valid = np.ones(len(array), dtype=bool)
        if self.kind == "str":
            limit = max_id_length()
            out = np.empty(len(array), dtype=object)
            for pos, value in enumerate(array):
                if isinstance(value, (str, np.str_)):
                    value = _text_id(str(value), limit)
                elif isinstance(value, (int, np.integer)) and not isinstance(
                        value, (bool, np.bool_)):
                    value = str(int(value))
                else:
                    value = None
                if value is None:
                    valid[pos], value = False, ""
                out[pos] = value
            return out, valid
        out = np.zeros(len(array), dtype=np.int64)
        for pos, value in enumerate(array):
            if isinstance(value, (bool, np.bool_)):
                valid[pos] = False
                continue
            if isinstance(value, (str, np.str_)):
                value = _parse_int(value)
                if value is None:
                    valid[pos] = False
                    continue
            elif isinstance(value, (float, np.floating)):
                if not (np.isfinite(value) and float(value).is_integer()):
                    valid[pos] = False
                    continue
                value = int(value)
            elif not isinstance(value, (int, np.integer)):
                valid[pos] = False
                continue
            if not -(2**63) <= int(value) < 2**63:
                valid[pos] = False
                continue
            out[pos] = int(value)
        return out, valid

    def parse(self, raw: Any, what: str = "raw") -> np.ndarray:
        """``raw`` ids in this index's type, or :class:`DataError` naming those that cannot be.

        The one rule for ids that arrive as text or JSON: for integer ids, an
        integer, an integral float or a string of ASCII digits with an optional
        sign (``"42"``, ``" -7 "``) within int64; for string ids, any string or
        integer (``5`` reads as ``"5"``). Booleans and anything else are refused.

        Returns
        -------
        ids : ndarray of shape (n,), int64 or object (``str`` elements)
        """
        array = (_as_object_array(raw) if isinstance(raw, (list, tuple))
                 else np.asarray(raw, dtype=object)).reshape(-1)
        values, valid = self._coerce(array)
        if not valid.all():
            bad = _shown(array[~valid].tolist())
            kind = ("integers (ASCII digits within int64)" if self.kind == "int" else
                    f"strings of valid Unicode text of at most {max_id_length()} characters, "
                    f"or integers")
            raise DataError(f"{what} ids must be {kind} for this model; got {bad}")
        return values

    def code(self, raw: Any) -> int:
        """The dense index of one raw id, or -1 if it is not in the index (never raises).

        ``raw`` is read by :meth:`parse`'s rule, so ``"42"`` finds the integer
        id 42 and a text that is not an integer is simply unknown.
        """
        kind = type(raw)
        if kind is str and self.kind == "str":
            value = _text_id(raw, max_id_length())
        elif kind is str:
            value = _parse_int(raw)
        elif kind is int and self.kind == "int":
            value = raw if -(2**63) <= raw < 2**63 else None
        else:
            values, valid = self._coerce(np.array([raw], dtype=object))
            value = values[0] if valid[0] else None
        if value is None:
            return -1
        try:
            found = self._lookup.get_loc(value)
        except (KeyError, TypeError):
            return -1
        return found if isinstance(found, int) else -1

    def get_indexer(self, raw: Any) -> np.ndarray:
        """Dense indices of ``raw`` ids; ``-1`` where an id is unknown.

        Parameters
        ----------
        raw : scalar or array-like of shape (n,)

        Returns
        -------
        indices : ndarray of shape (n,), dtype int64
        """
        if isinstance(raw, (list, tuple)) and len(raw) <= 16 and not any(
                isinstance(x, (list, tuple, np.ndarray)) for x in raw):
            # A few ids (a request's): one hash lookup each beats the vectorized path's setup.
            return np.array([self.code(x) for x in raw], dtype=np.int64)
        if isinstance(raw, (list, tuple)):
            array = np.asarray(raw) if raw and all(type(x) is int for x in raw) else \
                _as_object_array(raw)  # (the fast path only for plain ints: not bools)
        else:
            array = np.asarray(raw)
        if array.ndim == 0:
            array = array.reshape(1)
        if array.size == 0:
            return np.empty(0, dtype=np.int64)
        if array.size <= 16 and array.ndim == 1 and array.dtype.kind in "iuU":
            return np.array([self.code(x) for x in array.tolist()], dtype=np.int64)
        if array.dtype.kind == "i" and self.kind == "int":
            return self._lookup.get_indexer(array.astype(np.int64, copy=False)).astype(np.int64)
        if array.dtype.kind == "U" and self.kind == "str" and \
                array.dtype.itemsize // 4 <= max_id_length() and \
                np.ascontiguousarray(array).view(np.uint32).max(initial=0) < 128:
            # ASCII text within the length bound is already an id as the index keeps it.
            return self._lookup.get_indexer(array).astype(np.int64)
        values, valid = self._coerce(array)
        codes = np.full(len(values), -1, dtype=np.int64)
        if valid.any():
            codes[valid] = self._lookup.get_indexer(values[valid])
        return codes

    def to_ids(self, indices: Any) -> np.ndarray:
        """Raw ids of dense ``indices`` (which must be in range), the shape of ``indices``.

        String ids come back as fixed-width text as wide as the longest selected
        id (a selection is small: a list of recommendations, a batch).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise ParameterError(f"indices must lie in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        if self.kind == "int":
            return self._ids[indices]
        return self._ids[indices].astype(str) if indices.size else np.empty(indices.shape, "<U1")

    def extend(self, raw: Any) -> IdIndex:
        """Return a new index with the unseen ids of ``raw`` appended (sorted among themselves)."""
        raw = normalize_ids(raw, "raw")
        if len(self) and len(raw) and (raw.dtype == object) != (self.kind == "str"):
            raise DataError(
                f"cannot extend an index of {self.kind} ids with "
                f"{'string' if raw.dtype == object else 'integer'} ids"
            )
        new = raw[self.get_indexer(raw) < 0] if len(raw) else raw
        if len(new) == 0:
            return self
        new = np.sort(pd.unique(new))
        if len(self) == 0:
            return IdIndex(new)
        return IdIndex(np.concatenate([self._ids, new]))


#: The largest timestamp magnitude accepted, in Unix seconds: 10000-01-01T00:00:00Z.
#: Beyond it a value is no date (often milliseconds, or an attacker's 1e999), and it
#: would overflow the datetime arithmetic of time-aware models and splits.
MAX_TIMESTAMP = 253_402_300_800


def _not_numbers(array: np.ndarray) -> np.ndarray:
    """Mask of the elements that ``float()`` cannot read (None, text that is no number)."""

    def refused(value: Any) -> bool:
        try:
            float(value)
        except (TypeError, ValueError, OverflowError):
            return True
        return False

    return np.frompyfunc(refused, 1, 1)(array).astype(bool)


def _shown_value(value: Any) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else f"{text[:30]}…({len(text):,} characters)"


def _as_numbers(array: np.ndarray, what: str, where: Any, expected: str) -> np.ndarray:
    """``array`` as float64, or a DataError naming the first rows that hold no number."""
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        bad = _not_numbers(array)
        if not bad.any():  # pragma: no cover - every element alone converts
            raise DataError(f"{what} must be {expected}, got dtype {array.dtype}") from None
        first = array[int(np.argmax(bad))]
        raise DataError(f"{what} must be {expected}, got {_shown_value(first)} in "
                        f"{where(bad)} (dtype {array.dtype})") from None


def _check_values(values: Any, n: int, what: str, *, positive: bool = False,
                  nonnegative: bool = False, where: Any = _positions) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (n,):
        raise DataError(f"{what} must have shape ({n},) like the ids, got {array.shape}")
    if array.dtype.kind not in "iuf":
        array = _as_numbers(array, what, where, "numbers")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        raise DataError(f"NaN or infinite {what} in {where(bad)}; drop or fill them first")
    too_big = np.abs(array) > np.finfo(np.float32).max
    if too_big.any():
        raise DataError(f"{what} beyond the float32 range in {where(too_big)}")
    if positive:
        # Compare in float32, the stored precision: 1e-50 > 0 but becomes 0.
        array = np.where(array.astype(np.float32) > 0, array, 0.0)
    if positive and (array <= 0).any():
        raise DataError(
            f"{what} must be > 0 for implicit data; {where(array <= 0)} are ≤ 0 "
            f"(drop non-interactions instead of giving them weight 0)"
        )
    if nonnegative and (array < 0).any():
        raise DataError(f"{what} must be ≥ 0; {where(array < 0)} are negative")
    return array


def _check_timestamps(values: Any, n: int, where: Any = _positions) -> np.ndarray:
    """Timestamps as int64 Unix seconds: finite, within ±:data:`MAX_TIMESTAMP`, or DataError."""
    try:
        series = values if isinstance(values, pd.Series) else pd.Series(values)
    except (TypeError, ValueError) as err:  # 2-D, ragged, dates beyond what pandas holds
        raise DataError(f"timestamps must be {n} numbers or datetimes: {err}") from None
    if len(series) != n:
        raise DataError(f"timestamps must have shape ({n},) like the ids, got ({len(series)},)")
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(f"missing timestamps in {where(missing)}")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if getattr(series.dt, "tz", None) is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        array = series.to_numpy().astype("datetime64[s]").astype(np.int64)
    else:
        array = series.to_numpy()
        if array.dtype.kind in "OUS":  # numbers as Python objects, or text (never a time)
            bad = _not_numbers(array)  # first what is no number at all, then any text
            if not bad.any():
                bad = np.frompyfunc(lambda value: isinstance(value, (bool, np.bool_)) or not
                                    isinstance(value, numbers.Real), 1, 1)(array).astype(bool)
            if bad.any():
                raise DataError(f"timestamps must be numbers (Unix seconds) or datetimes, got "
                                f"{_shown_value(array[int(np.argmax(bad))])} in {where(bad)}")
            array = _as_numbers(array, "timestamps", where, "numbers (Unix seconds)")
        elif array.dtype.kind not in "iuf":
            raise DataError(f"timestamps must be numbers (Unix seconds) or datetimes, got "
                            f"dtype {array.dtype}")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DataError(f"NaN or infinite timestamps in {where(bad)}")
    beyond = (array > MAX_TIMESTAMP) | (array < -MAX_TIMESTAMP)
    if beyond.any():
        raise DataError(f"timestamps beyond the year 10000 (more than {MAX_TIMESTAMP:,} "
                        f"seconds from 1970) in {where(beyond)}; timestamps are Unix "
                        f"seconds (milliseconds? divide them by 1000)")
    if array.dtype.kind == "f":
        return np.round(array).astype(np.int64)
    return array.astype(np.int64)


def _file_rows(table: Any) -> Any:
    """A ``where`` for error messages that names rows by their line in the file read."""

    def where(mask: np.ndarray) -> str:
        rows = np.flatnonzero(mask)
        try:
            lines = table.lines(rows[:_MAX_SHOWN])
        except DataError:  # pragma: no cover - the file changed since it was read
            return _positions(mask)
        shown = ", ".join(str(line) for line in lines)
        more = f" and {len(rows) - _MAX_SHOWN} more" if len(rows) > _MAX_SHOWN else ""
        return (f"{len(rows)} row(s) (line{'s' if len(rows) > 1 else ''} {shown}{more} "
                f"of {table.path})")

    return where


def _check_file_ids(series: pd.Series, what: str, where: Any) -> None:
    """Missing and over-long ids of a column read from a file, named by file line.

    Run before :func:`normalize_ids`, which would name positions.
    """
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(f"missing {what} ids in {where(missing)}")
    if series.dtype.kind in "iufb":
        return
    try:
        lengths = series.str.len().to_numpy(dtype=np.float64, na_value=0.0)
    except (AttributeError, TypeError):  # not text: normalize_ids says what it is
        return
    limit = max_id_length()
    too_long = lengths > limit
    if too_long.any():
        raise DataError(f"{what} ids longer than {limit} characters in {where(too_long)}")


def _check_features(features: Any, what: str) -> pd.DataFrame | None:
    if features is None:
        return None
    if not isinstance(features, pd.DataFrame):
        raise DataError(f"{what}_features must be a pandas DataFrame indexed by raw {what} id")
    if features.index.has_duplicates:
        dupes = features.index[features.index.duplicated()].unique()[:_MAX_SHOWN].tolist()
        raise DataError(f"{what}_features has repeated ids in its index: {dupes}")
    frame = features.copy()
    if len(frame):
        frame.index = pd.Index(normalize_ids(frame.index, f"{what}_features index"))
    frame.index.name = what
    return frame


class Interactions:
    """Users × items interactions: explicit ratings or implicit feedback.

    Build one with :meth:`from_pandas`, :meth:`from_csv`, :meth:`from_parquet`,
    :meth:`from_arrays` or :meth:`from_scipy`, or load a dataset with
    :func:`matfact.load_dataset`. It is immutable once built.

    The interactions stay in the order given; :meth:`to_scipy` derives a CSR
    matrix (rows users, columns items, ``float32``). Raw ids map to dense
    indices through one :class:`IdIndex` per axis, in sorted order of the ids.

    Attributes
    ----------
    user_index, item_index : IdIndex
        The id maps of rows and columns.
    user_features, item_features : pandas.DataFrame or None
        Side information indexed by raw id; an item table may hold a ``title``.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user": [1, 1, 2], "item": ["a", "b", "a"], "rating": [4, 3, 5]})
    >>> data = Interactions.from_pandas(df, rating="rating")
    >>> data
    <Interactions: 2 users × 2 items, 3 explicit ratings in [3, 5], density 75.00%>
    >>> data.to_scipy().toarray()
    array([[4., 3.],
           [5., 0.]], dtype=float32)
    """

    __slots__ = (
        "_user_codes", "_item_codes", "_ratings", "_weights", "_timestamps",
        "_user_index", "_item_index", "_user_features", "_item_features",
        "_rating_scale", "_csr",
    )

    def __init__(self, user_codes, item_codes, user_index, item_index, *, ratings=None,
                 weights=None, timestamps=None, user_features=None, item_features=None,
                 rating_scale=None) -> None:
        # The public constructors validate; this one only freezes what it is given.
        self._user_codes = _frozen(np.asarray(user_codes, dtype=np.int32))
        self._item_codes = _frozen(np.asarray(item_codes, dtype=np.int32))
        self._user_index = user_index
        self._item_index = item_index
        self._ratings = _frozen(None if ratings is None else np.asarray(ratings, dtype=np.float32))
        self._weights = _frozen(None if weights is None else np.asarray(weights, dtype=np.float32))
        self._timestamps = _frozen(
            None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
        )
        self._user_features = user_features
        self._item_features = item_features
        if rating_scale is None and self._ratings is not None and len(self._ratings):
            rating_scale = (float(self._ratings.min()), float(self._ratings.max()))
        # (min, max) or (min, max, step): the whole declaration rides along to subsets.
        self._rating_scale = None if rating_scale is None else tuple(map(float, rating_scale))
        self._csr = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(cls, users: Any, items: Any, ratings: Any = None, *, weights: Any = None,
                    timestamps: Any = None, duplicates: str = "error", user_features=None,
                    item_features=None, rating_scale=None) -> Interactions:
        """Build from parallel arrays of raw user ids, item ids and optional values.

        Parameters
        ----------
        users, items : array-like of shape (n,)
            Raw ids (ints or strings) of each interaction.
        ratings : array-like of shape (n,), default=None
            Explicit ratings; ``None`` means implicit feedback.
        weights : array-like of shape (n,), default=None
            For implicit data the confidence or count of each interaction (plays,
            hours; default 1, must be > 0); for explicit data a sample weight (≥ 0).
        timestamps : array-like of shape (n,), default=None
            Unix seconds or datetimes.
        duplicates : {"error", "last", "sum", "mean"}, default="error"
            What to do with repeated (user, item) pairs. ``"last"`` keeps the last
            one; ``"sum"`` and ``"mean"`` aggregate the ratings (implicit: the
            weights), keep the latest timestamp, and sit at the last position.
        user_features, item_features : pandas.DataFrame, default=None
            Side information indexed by raw id.
        rating_scale : (float, float) or (float, float, float), default=None
            The scale ratings live on, ``(min, max)`` or ``(min, max, step)``
            (e.g. ``(0.5, 5, 0.5)``): a rating outside it (or off its steps) is
            an error naming the first bad row, and models clip predicted
            ratings to it. By default the observed ``(min, max)``, without a step.

        Returns
        -------
        Interactions
        """
        return cls._from_arrays(users, items, ratings, weights=weights, timestamps=timestamps,
                                duplicates=duplicates, user_features=user_features,
                                item_features=item_features, rating_scale=rating_scale)

    @classmethod
    def _from_arrays(cls, users: Any, items: Any, ratings: Any = None, *, weights: Any = None,
                     timestamps: Any = None, duplicates: str = "error", user_features=None,
                     item_features=None, rating_scale=None,
                     where: Any = _positions) -> Interactions:
        """:meth:`from_arrays`, naming bad rows by ``where(mask)`` (file lines for a file)."""
        if duplicates not in _DUPLICATE_POLICIES:
            raise ParameterError(
                f"duplicates must be one of {_DUPLICATE_POLICIES}, got {duplicates!r}"
            )
        users = normalize_ids(users, "user")
        items = normalize_ids(items, "item")
        n = len(users)
        if len(items) != n:
            raise DataError(f"got {n} user ids but {len(items)} item ids")
        if n == 0:
            raise DataError("no interactions: the data is empty")
        implicit = ratings is None
        if not implicit:
            ratings = _check_values(ratings, n, "ratings", where=where)
        if weights is not None:
            weights = _check_values(weights, n, "weights", positive=implicit,
                                    nonnegative=not implicit, where=where)
        if timestamps is not None:
            timestamps = _check_timestamps(timestamps, n, where)
        if rating_scale is not None:
            rating_scale = _check_rating_scale(rating_scale, implicit)
            _check_on_scale(ratings, rating_scale, where)

        user_index, user_codes = IdIndex.from_values(users, "user")
        item_index, item_codes = IdIndex.from_values(items, "item")

        resolved = _resolve_duplicates(user_codes, item_codes, len(item_index), duplicates,
                                       where=where, ids=(user_index, item_index))
        if resolved is not None:
            # `groups` numbers each pair by the rank of its last position, so the
            # aggregated values line up with `keep` (the last positions, in order).
            keep, groups = resolved
            if duplicates == "last":
                ratings = None if implicit else ratings[keep]
                weights = None if weights is None else weights[keep]
                timestamps = None if timestamps is None else timestamps[keep]
            else:
                if implicit:
                    weights = _aggregate(np.ones(n) if weights is None else weights, groups,
                                         duplicates)
                else:
                    ratings = _aggregate(ratings, groups, duplicates)
                    weights = None if weights is None else _aggregate(weights, groups, duplicates)
                if timestamps is not None:
                    timestamps = _aggregate(timestamps, groups, "max").astype(np.int64)
            user_codes, item_codes = user_codes[keep], item_codes[keep]
        return cls(
            user_codes, item_codes, user_index, item_index, ratings=ratings, weights=weights,
            timestamps=timestamps, user_features=_check_features(user_features, "user"),
            item_features=_check_features(item_features, "item"), rating_scale=rating_scale,
        )

    @classmethod
    def from_pandas(cls, df: pd.DataFrame, user: str = "user", item: str = "item",
                    rating: str | None = None, weight: str | None = None,
                    timestamp: str | None = None, duplicates: str = "error",
                    user_features=None, item_features=None, rating_scale=None) -> Interactions:
        """Build from a DataFrame with one interaction per row.

        Parameters
        ----------
        df : pandas.DataFrame
        user, item : str, default="user", "item"
            Column names of the raw ids.
        rating : str, default=None
            Column of explicit ratings; ``None`` means implicit feedback.
        weight, timestamp : str, default=None
            Columns of weights (confidence for implicit data, sample weight for
            explicit data) and timestamps.
        duplicates, user_features, item_features, rating_scale
            As in :meth:`from_arrays`.

        Returns
        -------
        Interactions
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"from_pandas needs a pandas DataFrame, got {type(df).__name__}")
        wanted = {"user": user, "item": item, "rating": rating, "weight": weight,
                  "timestamp": timestamp}
        missing = [f"{role}={col!r}" for role, col in wanted.items()
                   if col is not None and col not in df.columns]
        if missing:
            raise DataError(
                f"missing column(s) {', '.join(missing)}; the data has columns "
                f"{list(map(str, df.columns))}"
            )
        return cls.from_arrays(
            df[user], df[item], None if rating is None else df[rating].to_numpy(),
            weights=None if weight is None else df[weight].to_numpy(),
            timestamps=None if timestamp is None else df[timestamp],
            duplicates=duplicates, user_features=user_features, item_features=item_features,
            rating_scale=rating_scale,
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike, user: str | int = "user", item: str | int = "item",
                 rating: str | int | None = None, weight: str | int | None = None,
                 timestamp: str | int | None = None, *, sep: str = ",",
                 header: int | None | str = "infer", names: Iterable[str] | None = None,
                 encoding: str = "utf-8", comment: str | None = None, duplicates: str = "error",
                 extra_fields: str = "error", max_field_size: int | None = None,
                 user_features=None, item_features=None, rating_scale=None) -> Interactions:
        """Read a delimited text file (pandas' C parser, no Python loop over rows).

        Columns are named by header name, or by 0-based position. ``.gz``,
        ``.bz2`` and ``.xz`` files are decompressed, and a UTF-8 byte-order mark
        is skipped. The file is checked line by line before it is parsed
        (:func:`matfact.data.readers.scan_delimited`), and every error about its
        contents names the file line (1-based, counting the header). Other
        parameters as in :meth:`from_pandas` and :func:`pandas.read_csv`.

        Parameters
        ----------
        extra_fields : {"error", "drop"}, default="error"
            What a line with more fields than the header is: an error, or read
            with its extra fields dropped. A line with fewer is always an error.
        max_field_size : int, default=None
            The most characters of one field; by default
            :data:`matfact.data.readers.MAX_FIELD_SIZE` (1 MiB). Ids are
            bounded further, by :func:`max_id_length` (256 characters).

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        DataError
            If the file cannot be parsed or decoded, lacks a column (the message
            names it and the file's columns), has a field or an id too long, a
            line with too many or too few fields, or invalid contents.
        """
        from matfact.data import readers

        path = readers.check_file(path)
        table = readers.scan_delimited(
            path, sep=sep, header=header, names=names, encoding=encoding, comment=comment,
            extra_fields=extra_fields,
            max_field_size=readers.MAX_FIELD_SIZE if max_field_size is None else max_field_size)
        roles = {"user": user, "item": item, "rating": rating, "weight": weight,
                 "timestamp": timestamp}
        columns = {role: table.column(spec, option=f"{role}=")
                   for role, spec in roles.items() if spec is not None}
        frame = readers.read_delimited(path, usecols=list(columns.values()), table=table)
        # Rows are named by file line when pandas read the lines the scan counted.
        where = _file_rows(table) if len(frame) == table.n_records else _positions
        users, items = frame[columns["user"]], frame[columns["item"]]
        _check_file_ids(users, "user", where)
        _check_file_ids(items, "item", where)
        return cls._from_arrays(
            users, items, frame[columns["rating"]].to_numpy() if rating is not None else None,
            weights=frame[columns["weight"]].to_numpy() if weight is not None else None,
            timestamps=frame[columns["timestamp"]] if timestamp is not None else None,
            duplicates=duplicates, user_features=user_features, item_features=item_features,
            rating_scale=rating_scale, where=where,
        )

    @classmethod
    def from_parquet(cls, path: str | os.PathLike, user: str = "user", item: str = "item",
                     rating: str | None = None, weight: str | None = None,
                     timestamp: str | None = None, **kwargs: Any) -> Interactions:
        """Read a Parquet file or dataset (needs ``pyarrow``); see :meth:`from_pandas`.

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        DataError
            If pyarrow is missing, the file is no Parquet, or a column is missing.
        """
        from matfact.data import readers

        columns = list(dict.fromkeys(c for c in (user, item, rating, weight, timestamp)
                                     if c is not None))
        path = readers.check_file(path, allow_dir=True)
        frame = readers.read_parquet(path, columns=columns)
        return cls.from_pandas(frame, user, item, rating, weight, timestamp, **kwargs)

    @classmethod
    def from_scipy(cls, matrix: Any, user_ids: Any = None, item_ids: Any = None, *,
                   implicit: bool = False, user_features=None, item_features=None,
                   rating_scale=None) -> Interactions:
        """Build from a sparse (or dense) users × items matrix.

        Stored entries are the interactions, in row-major order. With
        ``implicit=True`` the values are weights and explicit zeros are dropped
        (a zero weight means no interaction). Every row and column is kept in
        the vocabularies, even an empty one, so the shape round-trips.

        Parameters
        ----------
        matrix : scipy.sparse matrix or ndarray of shape (n_users, n_items)
        user_ids, item_ids : array-like, default=None
            Raw ids of the rows and columns; default ``0..n-1``.
        implicit : bool, default=False
        """
        if not sp.issparse(matrix):
            dense = np.asarray(matrix)
            if dense.ndim != 2:
                raise DataError(f"from_scipy needs a 2-D matrix, got shape {dense.shape}")
            matrix = sp.csr_matrix(dense)
        coo = sp.coo_matrix(matrix)
        coo.sum_duplicates()
        if implicit:
            coo.eliminate_zeros()
        order = np.lexsort((coo.col, coo.row))
        n_rows, n_cols = coo.shape
        user_ids = np.arange(n_rows) if user_ids is None else normalize_ids(user_ids, "user")
        item_ids = np.arange(n_cols) if item_ids is None else normalize_ids(item_ids, "item")
        if len(user_ids) != n_rows or len(item_ids) != n_cols:
            raise DataError(
                f"matrix has shape {coo.shape} but got {len(user_ids)} user ids and "
                f"{len(item_ids)} item ids"
            )
        if coo.nnz == 0:
            raise DataError("no interactions: the matrix has no stored entries")
        values = coo.data[order]
        data = cls.from_arrays(
            user_ids[coo.row[order]], item_ids[coo.col[order]],
            None if implicit else values, weights=values if implicit else None,
            user_features=user_features, item_features=item_features, rating_scale=rating_scale,
        )
        # Keep empty rows and columns in the vocabularies.
        return data._reindex(IdIndex(np.sort(user_ids)), IdIndex(np.sort(item_ids)))

    # ------------------------------------------------------------------ properties
    @property
    def n_users(self) -> int:
        """Number of users in the vocabulary (rows)."""
        return len(self._user_index)

    @property
    def n_items(self) -> int:
        """Number of items in the vocabulary (columns)."""
        return len(self._item_index)

    @property
    def nnz(self) -> int:
        """Number of interactions."""
        return len(self._user_codes)

    def __len__(self) -> int:
        return self.nnz

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_users, n_items)``."""
        return (self.n_users, self.n_items)

    @property
    def user_index(self) -> IdIndex:
        return self._user_index

    @property
    def item_index(self) -> IdIndex:
        return self._item_index

    @property
    def user_ids(self) -> np.ndarray:
        """The user vocabulary: raw ids in index order."""
        return self._user_index.ids

    @property
    def item_ids(self) -> np.ndarray:
        """The item vocabulary: raw ids in index order."""
        return self._item_index.ids

    @property
    def user_codes(self) -> np.ndarray:
        """Dense user index of each interaction, shape (nnz,), int32."""
        return self._user_codes

    @property
    def item_codes(self) -> np.ndarray:
        """Dense item index of each interaction, shape (nnz,), int32."""
        return self._item_codes

    @property
    def users(self) -> np.ndarray:
        """Raw user id of each interaction, in the order given."""
        return self._user_index.ids[self._user_codes]

    @property
    def items(self) -> np.ndarray:
        """Raw item id of each interaction, in the order given."""
        return self._item_index.ids[self._item_codes]

    @property
    def ratings(self) -> np.ndarray | None:
        """Explicit ratings (float32), or ``None`` for implicit data."""
        return self._ratings

    @property
    def weights(self) -> np.ndarray:
        """Per-interaction weights (float32; ones unless given)."""
        if self._weights is None:
            return _frozen(np.ones(self.nnz, dtype=np.float32))
        return self._weights

    @property
    def has_weights(self) -> bool:
        """Whether weights were given (rather than all ones)."""
        return self._weights is not None

    @property
    def timestamps(self) -> np.ndarray | None:
        """Timestamps (int64 Unix seconds), or ``None``."""
        return self._timestamps

    @property
    def values(self) -> np.ndarray:
        """What the CSR matrix holds: ratings for explicit data, weights for implicit."""
        return self.weights if self._ratings is None else self._ratings

    @property
    def is_implicit(self) -> bool:
        return self._ratings is None

    @property
    def rating_scale(self) -> tuple[float, float] | None:
        """``(min, max)`` of the ratings (models clip predictions to it); ``None`` if implicit.

        The scale given as ``rating_scale=``, else the observed minimum and maximum.
        """
        return None if self._rating_scale is None else self._rating_scale[:2]

    @property
    def rating_step(self) -> float | None:
        """The step between ratings given with ``rating_scale=(min, max, step)``, or ``None``."""
        scale = self._rating_scale
        return None if scale is None or len(scale) < 3 else scale[2]

    @property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return self.nnz / cells if cells else 0.0

    @property
    def user_features(self) -> pd.DataFrame | None:
        return self._user_features

    @property
    def item_features(self) -> pd.DataFrame | None:
        return self._item_features

    def item_titles(self) -> np.ndarray | None:
        """Display titles in item-index order (raw id as text where missing), or ``None``."""
        features = self._item_features
        if features is None or "title" not in features.columns:
            return None
        titles = features["title"].reindex(self.item_ids)
        fallback = pd.Series(self.item_ids.astype(str), index=titles.index)
        return titles.astype(object).where(titles.notna(), fallback).to_numpy(dtype=str)

    def __repr__(self) -> str:
        kind = "implicit interactions" if self.is_implicit else "explicit ratings"
        scale = ""
        if self._rating_scale is not None:
            lo, hi = self._rating_scale[:2]
            step = f" step {self._rating_scale[2]:g}" if len(self._rating_scale) > 2 else ""
            scale = f" in [{lo:g}, {hi:g}]{step}"
        extras = []
        if self._timestamps is not None:
            extras.append("timestamps")
        if self._weights is not None:
            extras.append("weights")
        if self._user_features is not None:
            extras.append(f"user features ({self._user_features.shape[1]})")
        if self._item_features is not None:
            extras.append(f"item features ({self._item_features.shape[1]})")
        tail = (", " + ", ".join(extras)) if extras else ""
        return (f"<Interactions: {self.n_users:,} users × {self.n_items:,} items, "
                f"{self.nnz:,} {kind}{scale}, density {self.density:.2%}{tail}>")

    # ------------------------------------------------------------------ conversions
    def to_scipy(self) -> sp.csr_matrix:
        """The users × items CSR matrix (float32): ratings, or weights for implicit data.

        The result is cached and shared; do not modify it in place.
        """
        if self._csr is None:
            csr = sp.csr_matrix(
                (self.values, (self._user_codes, self._item_codes)),
                shape=self.shape, dtype=np.float32,
            )
            csr.sort_indices()
            self._csr = csr
        return self._csr

    def to_pandas(self) -> pd.DataFrame:
        """One row per interaction, in the order given: user, item, rating/weight, timestamp."""
        columns: dict[str, Any] = {"user": self.users, "item": self.items}
        if self._ratings is not None:
            columns["rating"] = self._ratings
        if self._weights is not None or self.is_implicit:
            columns["weight"] = self.weights
        if self._timestamps is not None:
            columns["timestamp"] = self._timestamps
        return pd.DataFrame(columns)

    def to_implicit(self, threshold: float | None = None) -> Interactions:
        """Treat the data as implicit interactions, keeping values ≥ ``threshold``.

        For explicit data the threshold applies to the ratings (all kept if
        ``None``); for implicit data to the weights. The vocabularies stay the
        same; weights carry over (ones if none), and interactions whose explicit
        sample weight is 0 are dropped, since an implicit weight must be > 0.

        Raises
        ------
        ParameterError
            If ``threshold`` is not a finite number.
        DataError
            If nothing is kept.
        """
        if threshold is not None:
            if (isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real)
                    or not np.isfinite(threshold)):
                raise ParameterError(f"threshold must be a finite number, got {threshold!r}")
            threshold = float(threshold)
        mask = np.ones(self.nnz, dtype=bool)
        if threshold is not None:
            mask &= self.values >= threshold
        if self._weights is not None:
            mask &= self._weights > 0
        keep = np.flatnonzero(mask)
        if len(keep) == 0:
            raise DataError(f"to_implicit(threshold={threshold}) keeps no interaction")
        return Interactions(
            self._user_codes[keep], self._item_codes[keep], self._user_index, self._item_index,
            weights=None if self._weights is None else self._weights[keep],
            timestamps=None if self._timestamps is None else self._timestamps[keep],
            user_features=self._user_features, item_features=self._item_features,
        )

    def subset(self, users: Any = None, items: Any = None) -> Interactions:
        """The interactions of the given raw users and/or items, with compacted vocabularies.

        Unknown ids are ignored. The result indexes only the ids that remain.
        """
        mask = np.ones(self.nnz, dtype=bool)
        if users is not None:
            wanted = np.zeros(self.n_users, dtype=bool)
            codes = self._user_index.get_indexer(np.asarray(users).reshape(-1))
            wanted[codes[codes >= 0]] = True
            mask &= wanted[self._user_codes]
        if items is not None:
            wanted = np.zeros(self.n_items, dtype=bool)
            codes = self._item_index.get_indexer(np.asarray(items).reshape(-1))
            wanted[codes[codes >= 0]] = True
            mask &= wanted[self._item_codes]
        if not mask.any():
            raise DataError("subset selects no interactions")
        return self.take(np.flatnonzero(mask), compact=True)

    def take(self, positions: Any, *, compact: bool = True) -> Interactions:
        """The interactions at ``positions`` (in that order).

        With ``compact=True`` the vocabularies keep only ids that occur (sorted,
        so indices may change); otherwise they stay those of ``self``.
        """
        positions = np.asarray(positions)
        if positions.size == 0:
            raise DataError("no interactions selected")
        if positions.dtype.kind not in "iu" or positions.ndim != 1:
            raise ParameterError("positions must be a 1-D array of integers (for a boolean "
                                 "mask, pass np.flatnonzero(mask))")
        positions = positions.astype(np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self.nnz):
            raise ParameterError(f"positions must lie in [0, {self.nnz})")
        if positions.size == 0:
            raise DataError("no interactions selected")
        ordered = np.sort(positions)
        if (ordered[1:] == ordered[:-1]).any():
            raise ParameterError("positions repeat an interaction; each may be taken once")
        users, items = self._user_codes[positions], self._item_codes[positions]
        user_index, item_index = self._user_index, self._item_index
        if compact:
            kept_users, users = np.unique(users, return_inverse=True)
            kept_items, items = np.unique(items, return_inverse=True)
            user_index = IdIndex(self._user_index.ids[kept_users])
            item_index = IdIndex(self._item_index.ids[kept_items])
        return Interactions(
            users.reshape(-1), items.reshape(-1), user_index, item_index,
            ratings=None if self._ratings is None else self._ratings[positions],
            weights=None if self._weights is None else self._weights[positions],
            timestamps=None if self._timestamps is None else self._timestamps[positions],
            user_features=self._user_features, item_features=self._item_features,
            rating_scale=self._rating_scale,
        )

    def _reindex(self, user_index: IdIndex, item_index: IdIndex) -> Interactions:
        """The same interactions expressed in (super-set) vocabularies."""
        users = user_index.get_indexer(self.user_ids)[self._user_codes]
        items = item_index.get_indexer(self.item_ids)[self._item_codes]
        if (users < 0).any() or (items < 0).any():
            raise DataError("the new vocabularies must contain every id of the data")
        return Interactions(
            users, items, user_index, item_index, ratings=self._ratings, weights=self._weights,
            timestamps=self._timestamps, user_features=self._user_features,
            item_features=self._item_features, rating_scale=self._rating_scale,
        )

    def with_rating_scale(self, rating_scale: Any) -> Interactions:
        """The same ratings on a declared scale ``(min, max)`` or ``(min, max, step)``.

        Checked as ``rating_scale=`` is when building (every rating on the scale,
        else :class:`DataError` naming the first bad position). For data loaded
        without a scale, e.g. a dataset, whose scale was inferred.

        Examples
        --------
        >>> data = Interactions.from_arrays([1, 2], [1, 1], [2, 4])
        >>> data.rating_scale, data.with_rating_scale((1, 5, 1)).rating_step
        ((2.0, 4.0), 1.0)
        """
        scale = _check_rating_scale(rating_scale, self.is_implicit)
        _check_on_scale(self._ratings, scale, _positions)
        return Interactions(
            self._user_codes, self._item_codes, self._user_index, self._item_index,
            ratings=self._ratings, weights=self._weights, timestamps=self._timestamps,
            user_features=self._user_features, item_features=self._item_features,
            rating_scale=scale,
        )

    def with_vocabulary_of(self, other: Interactions) -> Interactions:
        """Re-express these interactions with ``other``'s id maps, extended by unseen ids.

        Ids known to ``other`` keep ``other``'s indices; new ids come after them.
        """
        return self._reindex(other.user_index.extend(self.user_ids),
                             other.item_index.extend(self.item_ids))


def _check_rating_scale(scale: Any, implicit: bool) -> tuple[float, ...]:
    """``(min, max)`` or ``(min, max, step)`` as floats, or :class:`ParameterError`.

    The one rule of a declared scale: finite, ``min < max``, and a ``step > 0``
    that divides ``max - min`` (so ``max`` is a step of the scale).
    """
    if implicit:
        raise ParameterError("rating_scale applies to explicit ratings; implicit data has none")
    if isinstance(scale, (str, bytes)) or not hasattr(scale, "__len__") or \
            len(scale) not in (2, 3):
        raise ParameterError(f"rating_scale must be (min, max) or (min, max, step), "
                             f"got {scale!r}")
    try:
        values = tuple(float(x) for x in scale)
    except (TypeError, ValueError):
        raise ParameterError(f"rating_scale must be (min, max) or (min, max, step) of numbers, "
                             f"got {scale!r}") from None
    lo, hi = values[:2]
    if not (np.isfinite(values).all() and lo < hi):
        raise ParameterError(f"rating_scale must be finite with min < max, got {scale!r}")
    if len(values) == 3:
        step = values[2]
        if step <= 0:
            raise ParameterError(f"the step of rating_scale must be > 0, got {step:g}")
        if not _on_steps(np.array([hi]), lo, step).all():
            raise ParameterError(f"the step {step:g} of rating_scale does not divide the range "
                                 f"[{lo:g}, {hi:g}]; e.g. (0.5, 5, 0.5) or (1, 10, 1)")
    return values


def _on_steps(values: np.ndarray, lo: float, step: float) -> np.ndarray:
    """Which ``values`` are ``lo + k·step`` for an integer k (to float32 precision)."""
    k = (np.asarray(values, dtype=np.float64) - lo) / step
    # Ratings are stored as float32: allow its rounding, relative to the scale's size.
    return np.abs(k - np.round(k)) <= 1e-4 * max(1.0, float(np.abs(k).max(initial=0.0)))


def off_scale(ratings: np.ndarray, scale: tuple[float, ...]) -> tuple[np.ndarray, str] | None:
    """The ratings that ``scale`` refuses, and why; None when every rating is on it.

    The one rule of a rating scale, for data (:meth:`Interactions.from_arrays` and
    the readers) and for fitted models (new ratings, fold-in histories): a rating
    must lie in ``[min, max]`` and, when the scale has a step, be ``min + k·step``.

    Parameters
    ----------
    ratings : ndarray of shape (n,)
    scale : (min, max) or (min, max, step)

    Returns
    -------
    (mask, problem) or None
        ``mask`` marks the refused ratings; ``problem`` says what is wrong with them.
    """
    lo, hi = scale[:2]
    ratings = np.asarray(ratings)
    bad = (ratings < lo) | (ratings > hi)
    if bad.any():
        return bad, f"outside the rating scale [{lo:g}, {hi:g}]"
    if len(scale) > 2 and scale[2] is not None:
        bad = ~_on_steps(ratings, lo, scale[2])
        if bad.any():
            return bad, f"not on the steps of {scale[2]:g} of the rating scale [{lo:g}, {hi:g}]"
    return None


def _check_on_scale(ratings: np.ndarray, scale: tuple[float, ...], where: Any) -> None:
    """A :class:`DataError` naming the first rating :func:`off_scale` refuses."""
    refused = off_scale(ratings, scale)
    if refused is not None:
        bad, problem = refused
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"rating {float(ratings[first]):g} is {problem}: {where(bad)}; "
                        f"fix the data or give another rating_scale")


def implausible_scale(scale: tuple[float, float] | None) -> str | None:
    """Why an *inferred* rating scale looks like a data error, or None if it looks fine.

    Rating scales seldom mix negative and positive values or span more than 100
    points; such a range (``[-2, 500]``) is more likely a stray value than a
    scale, so the CLI notes it unless ``--rating-scale`` declares the scale.
    """
    if scale is None:
        return None
    lo, hi = scale[:2]
    if lo < 0 < hi:
        return "it mixes negative and positive ratings"
    if hi - lo > 100:
        return f"it spans {hi - lo:g} points"
    return None


def _resolve_duplicates(users: np.ndarray, items: np.ndarray, n_items: int,
                        policy: str, *, where: Any = _positions,
                        ids: tuple[IdIndex, IdIndex] | None = None,
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """Find repeated pairs; return (last positions in order, group of each row) or None.

    With ``policy="error"``, the error names the repeating rows by ``where(mask)``
    (file lines, 1-based and counting the header, for a file) and the first
    repeated pair by its raw ids (``ids``: the user and item indexes).
    """
    keys = users.astype(np.int64) * n_items + items
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    repeated = sorted_keys[1:] == sorted_keys[:-1]
    if not repeated.any():
        return None
    if policy == "error":
        later = np.zeros(len(keys), dtype=bool)
        later[order[1:][repeated]] = True  # each occurrence after a pair's first
        example = ""
        if ids is not None:
            first = int(np.argmax(later))
            example = (f" (the first: user {_shown_value(ids[0].ids[users[first]])}, item "
                       f"{_shown_value(ids[1].ids[items[first]])})")
        raise DataError(
            f"repeated (user, item) pairs: {where(later)} repeat an earlier row{example}; "
            f"pass duplicates='last', 'sum' or 'mean'"
        )
    # Runs of equal keys; the stable sort puts each pair's last occurrence at the run's end.
    run_end = np.append(~repeated, True)
    last_positions = order[run_end]
    run_id = np.concatenate([[0], np.cumsum(~repeated)])  # run number of each sorted row
    keep = np.sort(last_positions)
    # Number groups by their rank among the kept (last) positions.
    rank_of_run = np.empty(len(last_positions), dtype=np.int64)
    rank_of_run[np.argsort(last_positions)] = np.arange(len(last_positions))
    groups = np.empty(len(keys), dtype=np.int64)
    groups[order] = rank_of_run[run_id]
    return keep, groups


def _aggregate(values: np.ndarray, groups: np.ndarray, how: str) -> np.ndarray:
    series = pd.Series(np.asarray(values, dtype=np.float64)).groupby(groups, sort=True)
    return getattr(series, how)().to_numpy()
