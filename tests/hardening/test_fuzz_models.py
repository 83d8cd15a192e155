"""Generated parameters and inputs for every estimator: a result or a matfact error.

Each example draws hyper-parameters from the model's own ``_parameter_constraints``
table (valid values kept small so a fit takes milliseconds, plus out-of-range,
wrong-type, NaN/inf and boolean values), a small data set (explicit or implicit,
one user or one item, constant ratings, all-zero rows and columns), then feeds
the fitted model generated queries: ``predict`` with known, unknown and mixed-type
ids, ``recommend`` with ``n`` from -1 to far past the catalogue and item filters,
``similar_items``, ``fold_in``/``recommend_for_history`` with NaN, repeated and
unknown items, ``update_users``. A second test fuzzes TruncatedSVD/NMF as
scikit-learn transformers (shapes, dtypes, k out of range, all-zero input).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import matfact.models  # noqa: F401  (registers every model class)
from matfact import Interactions
from matfact._params import Instance, Options
from matfact.models import MODEL_REGISTRY
from tests.hardening._cases import check, profiles

MODELS = sorted(MODEL_REGISTRY)
#: Fits that succeeded / raised, per model (so a test whose fits all fail is caught).
FITTED: Counter[str] = Counter()
FIT_ERRORS: Counter[str] = Counter()
#: hypothesis examples per model class (each example is one fit and ~10 queries).
EXAMPLES = {"normal": 15, "slow": 100}
BAD_VALUES = [-1, 0, -0.5, math.nan, math.inf, -math.inf, "x", None, True, [1], 2**63]
SMALL_INT = {"max_iter": 3, "n_factors": 2, "patience": 3, "n_blocks": 4, "burn_in": 2,
             "n_threads": 2, "n_samples": 3}


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    derandomize=not os.environ.get("MATFACT_FUZZ_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def _valid(rule, name: str) -> st.SearchStrategy:
    if isinstance(rule, Options):
        return st.sampled_from(rule.values)
    if isinstance(rule, Instance):
        return st.nothing()
    if rule.kind is int:
        lo = 0 if rule.left is None else math.ceil(rule.left)
        if rule.closed in ("right", "neither") and rule.left is not None and lo == rule.left:
            lo += 1
        hi = lo + SMALL_INT.get(name, 4)
        if rule.right is not None:
            hi = min(hi, math.floor(rule.right))
        return st.integers(lo, max(lo, hi))
    lo = -2.0 if rule.left is None else float(rule.left)
    hi = lo + 2.0 if rule.right is None else float(rule.right)
    return st.floats(lo, hi, exclude_min=rule.closed in ("right", "neither"),
                     exclude_max=rule.closed in ("left", "neither"))


@st.composite
def parameters(draw, cls) -> dict:
    """Defaults with some parameters redrawn valid-but-small, and at most one plainly bad."""
    params = {}
    defaults = cls().get_params()
    for name, rules in cls._parameter_constraints.items():
        valid = st.one_of(*[_valid(r, name) for r in rules])
        # Sizes always small, so each fit takes milliseconds whatever else is drawn.
        if name in SMALL_INT and name in defaults and name != "n_threads":
            params[name] = draw(valid)
        elif draw(st.integers(0, 3)) == 0 and name != "early_stopping":  # needs validation=
            params[name] = draw(valid)
    burn_in, max_iter = params.get("burn_in"), params.get("max_iter")
    if isinstance(burn_in, int) and isinstance(max_iter, int) and draw(st.integers(0, 3)):
        params["max_iter"] = burn_in + draw(st.integers(1, 2))  # samples left to average
    if draw(st.integers(0, 2)) == 0:
        params[draw(st.sampled_from(sorted(cls._parameter_constraints)))] = draw(
            st.sampled_from(BAD_VALUES))
    return params


@functools.cache
def takes_implicit(name: str) -> tuple[bool, bool]:
    """(fits explicit ratings, fits implicit data), probed once with small defaults."""
    cls, answers = MODEL_REGISTRY[name], []
    for implicit in (False, True):
        data = Interactions.from_arrays([1, 1, 2, 3], [1, 2, 2, 3],
                                        None if implicit else [1.0, 4.0, 3.0, 5.0])
        small = {k: v for k, v in {"n_factors": 1, "max_iter": 2, "burn_in": 1}.items()
                 if k in cls().get_params()}
        _, error = check("models", lambda s=small, d=data: cls(**s).fit(d, progress=False))
        answers.append(error is None)
    return answers[0], answers[1]


@st.composite
def datasets(draw, name: str) -> Interactions:
    n_users, n_items = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    explicit, implicit = takes_implicit(name)
    kinds = ["random", "constant"] * explicit + ["implicit"] * implicit
    # Mostly the kind the model takes; now and then the other, which must be refused cleanly.
    kind = draw(st.sampled_from(kinds or ["random"]) if draw(st.integers(0, 7)) else
                st.sampled_from(["random", "implicit"]))
    mask = np.array(draw(st.lists(st.booleans(), min_size=n_users * n_items,
                                  max_size=n_users * n_items)), dtype=bool)
    if not mask.any():
        mask[draw(st.integers(0, mask.size - 1))] = True
    values = np.array(draw(st.lists(st.integers(1, 5), min_size=mask.size,
                                    max_size=mask.size)), dtype=float)
    if kind == "constant":
        values[:] = 3.0
    dense = np.where(mask, values, 0.0).reshape(n_users, n_items)
    # from_scipy keeps all-zero rows and columns in the vocabularies.
    ids = draw(st.sampled_from(["int", "str"]))
    users = np.arange(n_users) * 7 + 1 if ids == "int" else [f"u{k}" for k in range(n_users)]
    items = np.arange(n_items) * 3 + 2 if ids == "int" else [f"i{k}" for k in range(n_items)]
    return Interactions.from_scipy(sp.csr_matrix(dense), users, items,
                                   implicit=kind == "implicit")


query_id = st.one_of(st.integers(-3, 25), st.sampled_from(["u1", "i2", "", "nobody"]),
                     st.floats(allow_nan=True), st.none(), st.integers(2**63, 2**65))
query_ids = st.one_of(query_id, st.lists(query_id, max_size=6),
                      st.lists(st.integers(0, 25), max_size=6).map(np.asarray),
                      st.just(np.zeros((2, 2), dtype=int)))
n_values = st.one_of(st.integers(-1, 12), st.sampled_from([10**9, 2.5, "3", True, None]))


def known(data, axis: str, draw) -> list:
    """Ids of the training vocabulary (the fitted model's ids), drawn before the fit."""
    ids = data.user_ids if axis == "user" else data.item_ids
    return draw(st.lists(st.sampled_from(ids.tolist()), max_size=5)) if len(ids) else []


def check_recommendation(model, result, n_users: int) -> None:
    ids, scores = result
    assert ids.ndim == 2 and ids.shape == scores.shape and ids.shape[0] == n_users
    assert ids.shape[1] <= model.n_items_


@pytest.mark.parametrize("profile", profiles())
@pytest.mark.parametrize("name", MODELS)
def test_every_model_fits_and_answers_or_raises_a_matfact_error(name, profile):
    cls = MODEL_REGISTRY[name]

    @fuzz_settings(EXAMPLES[profile])
    @given(params=parameters(cls), data=datasets(name), draw=st.data())
    def run(params, data, draw):
        # Every draw comes before the fit: what hypothesis generates must not depend on
        # whether the fit succeeded (a fit that failed on one run and not on its replay
        # made the strategy "flaky" for hypothesis).
        draw = draw.draw
        users = draw(st.one_of(query_ids, st.just(known(data, "user", draw))))
        items = draw(st.one_of(query_ids, st.just(known(data, "item", draw))))
        unknown = draw(st.sampled_from(["fallback", "raise", "nan", "bogus"]))
        n = draw(n_values)
        exclude = draw(st.booleans())
        filter_items = draw(st.one_of(st.none(), query_ids))
        known_users = known(data, "user", draw)
        history = draw(st.one_of(query_ids, st.just(known(data, "item", draw))))
        ratings = draw(st.one_of(
            st.none(), st.lists(st.sampled_from([1.0, 5.0, 3.5, math.nan, math.inf, -2.0]),
                                min_size=len(np.atleast_1d(np.asarray(history, dtype=object))),
                                max_size=len(np.atleast_1d(np.asarray(history,
                                                                      dtype=object)))),
            st.lists(st.floats(1, 5), max_size=3)))
        new_user = draw(st.sampled_from([10_000, "new", *data.user_ids[:1].tolist(), 1]))
        model, error = check("models", lambda: cls(**params).fit(data, progress=False))
        if error is not None:
            FIT_ERRORS[name] += 1
            if os.environ.get("MATFACT_FUZZ_VERBOSE"):
                print(name, params, repr(error)[:200])
            return
        FITTED[name] += 1
        scores, error = check("models", lambda: model.predict(users, items, unknown=unknown))
        if error is None:
            assert scores.shape == np.atleast_1d(np.asarray(users, dtype=object)).shape[:1]
            if unknown == "fallback":
                assert np.isfinite(scores).all(), (users, items, scores)
        result, error = check("models", lambda: model.recommend(
            users, n=n, exclude_seen=exclude, items=filter_items))
        if error is None:
            check_recommendation(model, result, len(np.atleast_1d(np.asarray(users,
                                                                              dtype=object))))
        result, error = check("models", lambda: model.recommend(known_users, n=n))
        if error is None:
            check_recommendation(model, result, len(known_users))
            if isinstance(n, int) and n >= 1:
                assert result[0].shape[1] == min(n, model.n_items_)
        check("models", lambda: model.similar_items(items, n=n), also=(NotImplementedError,))
        check("models", lambda: model.similar_users(users, n=n), also=(NotImplementedError,))
        check("models", lambda: model.fold_in(history, ratings), also=(NotImplementedError,))
        result, error = check("models", lambda: model.recommend_for_history(
            history, ratings, n=n), also=(NotImplementedError,))
        if error is None:
            assert result[0].ndim == 1 and result[0].shape == result[1].shape
        check("models", lambda: model.update_users([new_user], [(history, ratings)]),
              also=(NotImplementedError,))

    FITTED[name] = FIT_ERRORS[name] = 0
    run()
    # Enough draws must reach the queries, or the test would fuzz little but `fit`'s checks.
    # (The share varies from run to run — once below a quarter for BPR and SVD++ in a full
    # suite run — so the floor is an eighth.)
    assert FITTED[name] >= (FITTED[name] + FIT_ERRORS[name]) / 8, (FITTED[name],
                                                                   FIT_ERRORS[name])


@pytest.mark.parametrize("profile", profiles())
def test_transformers_take_generated_matrices(profile):
    from matfact.models.nmf import NMF
    from matfact.models.svd import TruncatedSVD

    entries = st.sampled_from([0.0, 0.0, 1.0, 2.5, -1.0, np.nan, np.inf])

    @fuzz_settings({"normal": 80, "slow": 800}[profile])
    @given(shape=st.tuples(st.integers(0, 6), st.integers(0, 6)), draw=st.data(),
           k=st.one_of(st.integers(-1, 8), st.sampled_from([2.0, "2", None])),
           dtype=st.sampled_from([np.float32, np.float64, np.int64, object]),
           sparse=st.booleans(), which=st.sampled_from(["svd", "nmf"]))
    def run(shape, draw, k, dtype, sparse, which):
        values = draw.draw(st.lists(entries, min_size=shape[0] * shape[1],
                                    max_size=shape[0] * shape[1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN cast to int: garbage wanted
            X = np.array(values, dtype=float).reshape(shape).astype(dtype)
        if sparse and dtype is not object:
            X = sp.csr_matrix(X)
        model = (TruncatedSVD(n_components=k, random_state=0) if which == "svd"
                 else NMF(n_components=k, max_iter=5, random_state=0))
        # scikit-learn's own checks raise ValueError/TypeError on bad input; the
        # transformers keep scikit-learn's contract, so those are documented here.
        out, error = check("models", lambda: model.fit_transform(X),
                           also=(ValueError, TypeError))
        if error is None:
            assert out.shape == (shape[0], k)
            assert np.isfinite(out).all()

    run()


@pytest.mark.parametrize(("name", "param"), [("HybridMF", "n_factors"), ("HybridMF", "max_iter"),
                                             ("HybridMF", "max_sampled"), ("BiasedMF", "n_blocks")])
def test_regression_huge_integer_parameters_are_parameter_errors(name, param):
    # Found by the test above: 2**63 passed the constraints table and failed inside
    # numpy/numba/tqdm with ValueError or OverflowError.
    from matfact.exceptions import ParameterError

    data = Interactions.from_arrays([1, 2, 2], [1, 1, 2], [3.0, 4.0, 5.0])
    with pytest.raises(ParameterError, match=f"{param} must be an integer in \\[1, 2147483647\\]"):
        MODEL_REGISTRY[name](**{param: 2**63}).fit(data, progress=False)


def test_large_seeds_are_still_accepted():
    data = Interactions.from_arrays([1, 2, 2], [1, 1, 2], [3.0, 4.0, 5.0])
    MODEL_REGISTRY["BiasedMF"](n_factors=2, max_iter=2, random_state=2**40).fit(
        data, progress=False)
