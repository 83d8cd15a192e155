"""The block layout of the parallel SGD schedule, against the plain formula it replaced.

``blocked_ratings`` computes its order in chunks to keep a 30M-rating fit within 2× its
input arrays (docs/reliability.md, "Peak memory of a fit on 30M ratings"); the kernel
order, and so every fitted model, must stay what the one-line formula below gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import matfact
from matfact._kernels.sgd import sgd_epoch
from matfact.models._layout import _block_layout, blocked_ratings


def reference_blocked_ratings(users, items, n_users, n_items, n_blocks, rng):
    """The formula, with full-length int64 temporaries (the layout before issue 11)."""
    user_position, user_bounds = _block_layout(n_users, n_blocks, rng)
    item_position, item_bounds = _block_layout(n_items, n_blocks, rng)
    row = np.searchsorted(user_bounds, user_position[users], side="right") - 1
    col = np.searchsorted(item_bounds, item_position[items], side="right") - 1
    block = row * n_blocks + col
    shuffled = rng.permutation(len(users))
    key = (block * n_users + user_position[users])[shuffled]
    order = shuffled[np.argsort(key, kind="stable")]
    block_ptr = np.zeros(n_blocks * n_blocks + 1, dtype=np.int64)
    np.cumsum(np.bincount(block, minlength=n_blocks * n_blocks), out=block_ptr[1:])
    return order, block_ptr, user_position, item_position, item_bounds


@st.composite
def ratings(draw):
    n_users = draw(st.integers(1, 60))
    n_items = draw(st.integers(1, 60))
    n = draw(st.integers(0, 400))
    # Skewed draws too: a few users or items holding most ratings make uneven buckets.
    skew = draw(st.sampled_from([1.0, 3.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    gen = np.random.default_rng(seed)
    users = (n_users * gen.random(n) ** skew).astype(np.int32)
    items = (n_items * gen.random(n) ** skew).astype(np.int32)
    return users, items, n_users, n_items


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=ratings(), n_blocks=st.integers(1, 24), chunk=st.integers(1, 500),
       seed=st.integers(0, 2**63 - 1))
def test_layout_equals_the_reference_formula(data, n_blocks, chunk, seed):
    users, items, n_users, n_items = data
    rng, reference_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    layout = blocked_ratings(users, items, n_users, n_items, n_blocks, rng, chunk=chunk)
    expected = reference_blocked_ratings(users, items, n_users, n_items, n_blocks,
                                         reference_rng)
    for got, want in zip(layout, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert layout.order.dtype == np.int32  # narrow: BiasedMF reuses it as its user array
    # The generator is left where the formula leaves it (the epochs draw from it next).
    assert rng.integers(2**62) == reference_rng.integers(2**62)


def test_layout_of_no_ratings():
    empty = np.zeros(0, np.int32)
    layout = blocked_ratings(empty, empty, 3, 4, 2, np.random.default_rng(0))
    assert layout.order.shape == (0,)
    np.testing.assert_array_equal(layout.block_ptr, np.zeros(5, np.int64))


def _reference_biased_mf(data, *, n_factors, max_iter, seed, n_blocks=16):
    """BiasedMF's fit before issue 11: reference layout, full-length gathers, ``sgd_epoch``."""
    rng = np.random.default_rng(seed)
    model = matfact.BiasedMF(n_factors=n_factors, random_state=seed)
    mean = float(data.ratings.mean(dtype=np.float64))
    user_init = model._init_factors(rng, data.n_users)
    item_init = model._init_factors(rng, data.n_items)
    order, block_ptr, user_pos, item_pos, _ = reference_blocked_ratings(
        data.user_codes, data.item_codes, data.n_users, data.n_items, n_blocks, rng)
    users = user_pos[data.user_codes[order]].astype(np.int32)
    items = item_pos[data.item_codes[order]].astype(np.int32)
    values = np.ascontiguousarray(data.ratings[order])
    user_factors = np.empty_like(user_init)
    user_factors[user_pos] = user_init
    item_factors = np.empty_like(item_init)
    item_factors[item_pos] = item_init
    user_bias = np.zeros(data.n_users, np.float32)
    item_bias = np.zeros(data.n_items, np.float32)
    for _ in range(max_iter):
        col_perm = rng.permutation(n_blocks).astype(np.int64)
        sgd_epoch(block_ptr, users, items, values, np.zeros(0, np.float32), user_factors,
                  item_factors, user_bias, item_bias, mean, model.learning_rate, model.reg,
                  model.reg_bias, col_perm, True, model.learning_rate * 0.25)
    return (user_factors[user_pos], item_factors[item_pos], user_bias[user_pos],
            item_bias[item_pos])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_biased_mf_fit_is_bit_identical_to_the_reference(n_threads):
    # Enough ratings for several chunks of the layout and of the gather.
    data = matfact.make_synthetic(3000, 500, 600_000, random_state=3)
    model = matfact.BiasedMF(n_factors=8, max_iter=2, random_state=7, n_threads=n_threads)
    model.fit(data, progress=False)
    expected = _reference_biased_mf(data, n_factors=8, max_iter=2, seed=7)
    for got, want in zip((model.user_factors_, model.item_factors_, model.user_bias_,
                          model.item_bias_), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_callback_sees_each_epochs_factors():
    # Without validation the factors are published once, after the per-rating arrays
    # are freed; a callback still gets the current epoch's model.
    data = matfact.make_synthetic(60, 40, 800, random_state=0)
    seen = []

    def record(epoch, info):
        seen.append(model.user_factors_.copy())

    model = matfact.BiasedMF(n_factors=4, max_iter=3, random_state=0)
    model.fit(data, progress=False, callback=record)
    assert len(seen) == 3
    assert not np.array_equal(seen[0], seen[1])
    np.testing.assert_array_equal(seen[-1], model.user_factors_)
    plain = matfact.BiasedMF(n_factors=4, max_iter=3, random_state=0).fit(data,
                                                                          progress=False)
    np.testing.assert_array_equal(plain.user_factors_, model.user_factors_)
