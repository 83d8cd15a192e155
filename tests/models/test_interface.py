"""The public index-level model interface, on every model class the contract covers.

Two things are checked for each model of the contract suite (every ``*Contract``
class in ``tests/models``):

- the index-level methods (``score_pairs``, ``score_users``, ``score_vector``,
  ``item_side``/``user_side``, ``fold_in_codes``, ``recommend_codes``) agree with
  the raw-id methods users call, so every layer scores with one formula;
- ``apply_ratings`` is all or nothing: hypothesis-generated batches (new users,
  new items, repeated pairs, out-of-scale values, ids of the wrong type, bad
  times) either apply, leaving every fitted array consistent, scores finite and a
  save/load round trip exact, or are refused leaving the model bit-identical.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matfact
import tests.models
from matfact import DataError
from matfact.data.interactions import IdIndex
from tests.models.contract import ModelContract, planted_interactions


def _contract_classes() -> list[type]:
    found = []
    for info in pkgutil.iter_modules(tests.models.__path__):
        if not info.name.startswith("test_") or info.name == "test_interface":
            continue
        module = importlib.import_module(f"tests.models.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, ModelContract)
                    and value.__name__.startswith("Test") and value.__module__ == module.__name__):
                found.append(value)
    return sorted(found, key=lambda cls: cls.__name__)


CASES = _contract_classes()
_FITTED: dict[str, tuple] = {}


@pytest.fixture(params=CASES, ids=[cls.__name__.removeprefix("Test") for cls in CASES])
def case(request):
    """(fitted model, its data), one fit per contract class for the whole module."""
    cls = request.param
    if cls.__name__ not in _FITTED:
        data = planted_interactions(cls.data_kind)
        _FITTED[cls.__name__] = (cls().make_model().fit(data, progress=False), data)
    model, data = _FITTED[cls.__name__]
    return copy.deepcopy(model), data


def state(model) -> dict:
    """Everything a model holds, copied, for a bit-for-bit comparison."""
    out = {}
    for name, value in vars(model).items():
        if name.startswith("_"):
            continue  # working state (callbacks, caches), not the model
        if isinstance(value, np.ndarray):
            out[name] = value.copy()
        elif sp.issparse(value):
            csr = value.tocsr()
            out[name] = (csr.shape, csr.indptr.copy(), csr.indices.copy(), csr.data.copy())
        elif isinstance(value, IdIndex):
            out[name] = value.ids.copy()
        else:
            out[name] = copy.deepcopy(value)
    return out


def assert_same_state(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for name in before:
        a, b = before[name], after[name]
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        elif isinstance(a, tuple) and len(a) == 4 and isinstance(a[1], np.ndarray):
            assert a[0] == b[0], name
            for x, y in zip(a[1:], b[1:], strict=True):
                np.testing.assert_array_equal(x, y, err_msg=name)
        elif isinstance(a, dict | list | tuple):
            assert repr(a) == repr(b), name
        else:
            assert a == b or (a != a and b != b), name


# ---------------------------------------------------------------------------- one formula
def test_index_level_scores_agree_with_raw_id_methods(case):
    model, data = case
    users = model.user_index_.ids[:7]
    codes = model.user_index_.get_indexer(users)
    items = np.arange(model.n_items_)
    rows = model.score_users(codes)
    assert rows.dtype == np.float32 and rows.shape == (len(codes), model.n_items_)
    for row, user in zip(rows, users, strict=True):
        expected = model.predict(np.repeat(user, len(items)), model.item_index_.ids, clip=False)
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-4)
        pairs = model.score_pairs(np.repeat(model.user_index_.code(user), len(items)), items)
        np.testing.assert_allclose(pairs, model.predict(np.repeat(user, len(items)),
                                                        model.item_index_.ids))
    codes_out, scores_out = model.recommend_codes(codes, 5)
    ids_out, raw_scores = model.recommend(users, 5)
    np.testing.assert_array_equal(model.item_index_.ids[codes_out], ids_out)
    np.testing.assert_array_equal(scores_out, raw_scores)


def test_item_side_is_the_score_where_a_model_offers_it(case):
    model, _ = case
    side = model.item_side()
    if side is None:
        pytest.skip(f"{type(model).__name__} does not score by a dot product")
    codes = np.arange(min(9, model.n_users_))
    vectors, offsets = model.user_side(codes)
    scores = side.base[None, :] + offsets[:, None]
    if side.factors is not None:
        scores = scores + vectors @ side.factors.T
    np.testing.assert_allclose(scores, model.score_users(codes), rtol=1e-5, atol=1e-4)


def test_fold_in_codes_equals_fold_in_of_raw_ids(case):
    model, _ = case
    codes = np.array([0, 3, 5])
    values = np.array([4.0, 2.0, 5.0]) if not model.is_implicit_ else np.array([1.0, 2.0, 1.0])
    by_code = model.fold_in_codes(codes, values)
    by_id = model.fold_in(model.item_index_.ids[codes], values)
    np.testing.assert_array_equal(by_code.factors, by_id.factors)
    assert by_code.bias == by_id.bias
    np.testing.assert_array_equal(model.score_vector(by_code), model.score_vector(by_id))


def test_fold_in_refuses_values_outside_the_scale(case):
    model, _ = case
    if model.is_implicit_:
        with pytest.raises(DataError, match="> 0"):
            model.fold_in(model.item_index_.ids[:2], [1.0, -1.0])
    elif model.rating_scale_ is None:  # ranks from ratings (PureSVD): any finite value
        with pytest.raises(DataError, match="NaN"):
            model.fold_in(model.item_index_.ids[:2], [3.0, float("nan")])
    else:
        with pytest.raises(DataError, match="scale"):
            model.recommend_for_history(model.item_index_.ids[:2], [3.0, 7.0])
        with pytest.raises(DataError, match="scale"):
            model.fold_in_codes(np.array([0, 1]), np.array([3.0, 0.0]))


# ---------------------------------------------------------------------------- apply, all or nothing
def _value(model, draw) -> float:
    if model.is_implicit_:
        return draw.draw(st.sampled_from([1.0, 2.0, 5.0]))
    return draw.draw(st.sampled_from([1.0, 2.5, 4.0, 5.0]))


def _batch(model, draw, size: int) -> tuple[list, list, list]:
    known_users = model.user_index_.ids.tolist()
    known_items = model.item_index_.ids.tolist()
    new_user = "new-u" if model.user_index_.kind == "str" else 10**9
    new_item = "new-i" if model.item_index_.kind == "str" else 10**9 + 1
    users = [draw.draw(st.sampled_from(known_users[:5] + [new_user])) for _ in range(size)]
    items = [draw.draw(st.sampled_from(known_items[:5] + [new_item])) for _ in range(size)]
    return users, items, [_value(model, draw) for _ in range(size)]


def _bad_batch(model, draw, users, items, values):
    kind = draw.draw(st.sampled_from(["scale", "nan", "id", "time", "length"]))
    if kind == "scale" and model.rating_scale_ is not None:
        return dict(users=users, items=items, ratings=[*values[:-1], model.rating_scale_[1] + 1])
    if kind == "scale" and model.is_implicit_:  # weights must be > 0
        return dict(users=users, items=items, ratings=[*values[:-1], 0.0])
    if kind in ("scale", "nan"):  # (explicit values without a scale: any finite value)
        return dict(users=users, items=items, ratings=[*values[:-1], float("nan")])
    if kind == "id":
        bad = True if model.user_index_.kind == "str" else draw.draw(
            st.sampled_from(["abc", "--5", "\u00b2", "1_000", "9" * 40, True]))
        return dict(users=[*users[:-1], bad], items=items, ratings=values)
    if kind == "time":
        return dict(users=users, items=items, ratings=values,
                    times=[0.0] * (len(users) - 1) + [draw.draw(st.sampled_from(
                        [float("inf"), 1e300, -1e13]))])
    return dict(users=users, items=items[:-1], ratings=values)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(draw=st.data())
def test_apply_ratings_is_all_or_nothing(case, draw, tmp_path_factory):
    model, _ = case
    for _ in range(draw.draw(st.integers(1, 3))):
        users, items, values = _batch(model, draw, draw.draw(st.integers(1, 4)))
        before = state(model)
        bad = _bad_batch(model, draw, users, items, values)
        with pytest.raises(DataError):
            model.apply_ratings(**bad)
        assert_same_state(before, state(model))
        checked = model.apply_ratings(users, items, values, dry_run=True)
        assert_same_state(before, state(model))
        applied = model.apply_ratings(users, items, values)
        np.testing.assert_array_equal(applied.new_users, checked.new_users)
        np.testing.assert_array_equal(applied.new_items, checked.new_items)
        # The latest value of each pair is what the model now holds for it.
        latest = {(u, i): v for u, i, v in zip(users, items, values, strict=True)}
        for (user, item), value in latest.items():
            held, stored = model.history(model.user_index_.code(user))
            assert stored[held == model.item_index_.code(item)].tolist() == [
                pytest.approx(value)]
        model._validate_state()
        assert np.isfinite(model.score_users(np.arange(model.n_users_))).all()
    path = tmp_path_factory.mktemp("apply") / "model.zip"
    model.save(path)
    assert_same_state(state(model), state(matfact.load(path)))


def test_a_failure_inside_apply_restores_the_model(case, monkeypatch):
    model, _ = case
    before = state(model)
    users = [model.user_index_.ids[0], model.user_index_.ids[1]]
    items = [model.item_index_.ids[2], model.item_index_.ids[3]]
    values = [1.0, 2.0]
    calls = {"n": 0}
    fold_in = type(model)._fold_in

    def fails_second_time(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return fold_in(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "_fold_in", fails_second_time)
    with pytest.raises(RuntimeError, match="disk on fire"):
        model.apply_ratings(users, items, values)
    assert calls["n"] == 2  # the first user had been rewritten when the second failed
    assert_same_state(before, state(model))


def test_apply_ratings_reads_ids_by_the_index_rule():
    data = planted_interactions("explicit")  # integer ids
    model = matfact.Baseline().fit(data, progress=False)
    user = int(model.user_index_.ids[0])
    batch = model.apply_ratings([str(user), f" {user} "], [7, "14"], [4, 5], dry_run=True)
    assert batch.users.tolist() == [user, user] and batch.items.tolist() == [7, 14]
    with pytest.raises(DataError, match="integers"):
        model.apply_ratings(["u1"], [7], [4])
    strings = matfact.Baseline().fit(planted_interactions("explicit", string_ids=True),
                                     progress=False)
    batch = strings.apply_ratings([5], ["i001"], [3.0])
    assert batch.users.tolist() == ["5"] and "5" in strings.user_index_


# ---------------------------------------------------------------------------- one scale, one fallback
def _refusal(call) -> str | None:
    try:
        call()
    except DataError as err:
        return str(err)
    return None


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.5, 3.0, 5.0, 5.5, 7.0, float("nan")]),
       step=st.sampled_from([None, 1.0, 0.5]))
def test_fold_in_refuses_exactly_what_apply_ratings_refuses(case, value, step):
    """Issue 20: one scale rule for new ratings, fold-in histories and the service."""
    model, _ = case
    if model.rating_scale_ is not None:
        model.rating_step_ = step  # the rule must follow the step a model keeps
    items = model.item_index_.ids[:2]
    values = [1.0 if model.is_implicit_ else 3.0, value]
    user = model.user_index_.ids[0]
    by_apply = _refusal(lambda: model.apply_ratings([user, user], items, values, dry_run=True))
    by_history = _refusal(lambda: model.recommend_for_history(items, values, n=3))
    assert _refusal(lambda: model.fold_in(items, values)) == by_history
    assert (by_apply is None) == (by_history is None), (by_apply, by_history)
    if by_history is not None:
        assert by_apply.replace("ratings of the history", "ratings") == \
            by_history.replace("ratings of the history", "ratings")
    scale = model._scale()
    if scale is not None:  # refused exactly when off the (stepped) scale: hand-checked
        lo, hi = scale[:2]
        off = not lo <= value <= hi or (step is not None and (value - lo) / step % 1 != 0)
        assert (by_apply is not None) == (value != value or off)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(n=st.integers(1, 45), exclude_seen=st.booleans(), n_unknown=st.integers(0, 2),
       picks=st.lists(st.integers(0, 59), min_size=0, max_size=4))
def test_recommend_reports_ratings_on_the_scale_and_falls_back_on_popularity(
        case, n, exclude_seen, n_unknown, picks):
    """Issue 20: recommend scores of a rating model lie on its scale (the ranking uses the
    raw scores); unknown users get the items most users had, with those counts."""
    model, _ = case
    known = model.user_index_.ids[[p % model.n_users_ for p in picks]].tolist()
    strange = "nobody" if model.user_index_.kind == "int" else -12345
    users = known + [strange] * n_unknown
    if not users:
        users = [strange]
    ids, scores, fallback = model.recommend(users, n=n, exclude_seen=exclude_seen,
                                            return_fallback=True)
    assert fallback.tolist() == [u == strange for u in users]
    plain_ids, plain_scores = model.recommend(users, n=n, exclude_seen=exclude_seen)
    np.testing.assert_array_equal(plain_ids, ids)
    popularity = np.bincount(model.seen_.indices, minlength=model.n_items_)  # by hand
    codes = model.user_index_.get_indexer(users)
    raw = np.asarray(model.score_users(np.maximum(codes, 0)), dtype=np.float64)
    for row, code in enumerate(codes.tolist()):
        got = model.item_index_.get_indexer(ids[row][~np.isnan(scores[row])])
        if code < 0:  # the fallback: the top n by popularity, scored by the counts
            assert model.score_kind in ("rating", "ranking")
            np.testing.assert_array_equal(scores[row][:len(got)], popularity[got])
            assert popularity[got].min() >= np.sort(popularity)[::-1][len(got) - 1]
            continue
        if model.rating_scale_ is not None:
            lo, hi = model.rating_scale_
            assert model.score_kind == "rating"
            assert (scores[row][:len(got)] >= lo).all() and (scores[row][:len(got)] <= hi).all()
            np.testing.assert_allclose(scores[row][:len(got)], np.clip(raw[row][got], lo, hi),
                                       rtol=1e-5, atol=1e-5)
        else:
            assert model.score_kind == "ranking"
            np.testing.assert_allclose(scores[row][:len(got)], raw[row][got], rtol=1e-5,
                                       atol=1e-5)
        # The order is the raw scores' order, beyond the top of the scale too.
        assert (np.diff(raw[row][got]) <= 1e-5).all()
    history = model.item_index_.ids[:3]
    values = [1.0, 2.0, 1.0] if model.is_implicit_ else [5.0, 5.0, 4.0]
    if model.rating_scale_ is not None or model.is_implicit_ or not model._needs_ratings:
        h_ids, h_scores, h_fallback = model.recommend_for_history(history, values, n=n,
                                                                  return_fallback=True)
        assert not h_fallback
        if model.rating_scale_ is not None:
            finite = h_scores[~np.isnan(h_scores)]
            assert (finite >= model.rating_scale_[0]).all()
            assert (finite <= model.rating_scale_[1]).all()
    nothing_known = model.recommend_for_history([strange], [values[0]], n=n,
                                                return_fallback=True)
    assert nothing_known[2]  # a history with no known item: the same fallback
    np.testing.assert_array_equal(nothing_known[0], ids[-1] if users[-1] == strange else
                                  model.recommend([strange], n=n)[0][0])
