"""Time in the models: decay weights, time_decay in ALS/ImplicitALS/BiasedMF, time bins.

The decay weights are checked against hand-computed powers of two; each model fitted
with ``time_decay`` must equal the same model fitted on data whose weights were
multiplied by those hand-computed weights. Time-aware biases are checked against the
formula of Koren (2009) on the fitted attributes.
"""

from __future__ import annotations

import numpy as np
import pytest

import matfact
from matfact import ALS, BiasedMF, DataError, ImplicitALS, Interactions, ParameterError, SVDPlusPlus
from matfact.models._time import SECONDS_PER_DAY, csr_times, decay_weights, time_bin
from tests.models.contract import planted_interactions

DAY = int(SECONDS_PER_DAY)


# ---------------------------------------------------------------------- decay_weights
def test_decay_weights_by_hand():
    times = np.array([0, 5 * DAY, 10 * DAY, 20 * DAY, 30 * DAY])
    # Newest is day 30: ages 30, 25, 20, 10, 0 days with a 10-day half-life.
    expected = [2.0**-3, 2.0**-2.5, 0.25, 0.5, 1.0]
    np.testing.assert_allclose(decay_weights(times, 10), expected, rtol=1e-7)
    assert decay_weights(times, 10).dtype == np.float32


def test_decay_weights_with_explicit_now_and_future_times():
    times = np.array([0, 3 * DAY, 9 * DAY])
    # now = day 6: ages 6, 3 and -3 (a future rating counts as age 0).
    np.testing.assert_allclose(decay_weights(times, 3, now=6 * DAY), [0.25, 0.5, 1.0])
    # A half-day age with a one-day half-life: 2^-0.5.
    assert decay_weights([0], 1.0, now=DAY // 2)[0] == pytest.approx(2**-0.5, rel=1e-7)
    assert decay_weights(np.zeros(0, np.int64), 5).shape == (0,)


@pytest.mark.parametrize("half_life", [0, -1.0, float("nan"), float("inf")])
def test_decay_weights_refuses_a_bad_half_life(half_life):
    with pytest.raises(ParameterError, match="half_life_days"):
        decay_weights([0, DAY], half_life)


# ---------------------------------------------------------------------- time_decay in models
def timed_data(implicit: bool = False, weights: bool = False, seed: int = 0) -> Interactions:
    """Planted ratings with timestamps spread over 100 days (and optional sample weights)."""
    base = planted_interactions(n_users=40, n_items=25, seed=seed)
    rng = np.random.default_rng(seed + 1)
    times = rng.integers(0, 100 * DAY, base.nnz)
    w = rng.uniform(0.5, 2.0, base.nnz) if weights else None
    if implicit:
        return Interactions.from_arrays(base.users, base.items, weights=base.ratings,
                                        timestamps=times)
    return Interactions.from_arrays(base.users, base.items, base.ratings, weights=w,
                                    timestamps=times, rating_scale=(1, 5))


def hand_weighted(data: Interactions, half_life: float) -> Interactions:
    """The same interactions (no timestamps), weights multiplied by 2^(-age/h) by hand."""
    age = (data.timestamps.max() - data.timestamps) / 86_400.0
    w = 2.0 ** (-age / half_life) * data.weights.astype(np.float64)
    if data.is_implicit:
        return Interactions.from_arrays(data.users, data.items, weights=w)
    return Interactions.from_arrays(data.users, data.items, data.ratings, weights=w,
                                    rating_scale=data.rating_scale)


MODELS = {
    "ALS": (lambda **kw: ALS(n_factors=4, max_iter=4, random_state=0, **kw), False),
    "ImplicitALS": (lambda **kw: ImplicitALS(n_factors=4, max_iter=4, random_state=0, **kw),
                    True),
    "BiasedMF": (lambda **kw: BiasedMF(n_factors=4, max_iter=8, n_blocks=2, random_state=0,
                                       **kw), False),
}


# Implicit weights are the interactions themselves: no separate sample weights to combine.
@pytest.mark.parametrize(("name", "with_weights"), [
    ("ALS", False), ("ALS", True), ("BiasedMF", False), ("BiasedMF", True),
    ("ImplicitALS", False),
])
def test_time_decay_equals_fitting_on_hand_computed_weights(name, with_weights):
    make, implicit = MODELS[name]
    data = timed_data(implicit=implicit, weights=with_weights)
    decayed = make(time_decay=30.0).fit(data, progress=False)
    by_hand = make().fit(hand_weighted(data, 30.0), progress=False)
    users, items = data.users, data.items
    np.testing.assert_allclose(decayed.predict(users, items), by_hand.predict(users, items),
                               rtol=1e-4, atol=1e-4)
    plain = make().fit(data, progress=False)
    assert np.abs(decayed.predict(users, items) - plain.predict(users, items)).max() > 1e-3
    assert decayed.time_newest_ == int(data.timestamps.max())


def test_biasedmf_global_mean_is_the_decayed_weighted_mean():
    data = timed_data(weights=True)
    model = BiasedMF(n_factors=2, max_iter=1, time_decay=10.0).fit(data, progress=False)
    age = (data.timestamps.max() - data.timestamps) / 86_400.0
    w = 2.0 ** (-age / 10.0) * data.weights
    assert model.global_mean_ == pytest.approx(float((w * data.ratings).sum() / w.sum()),
                                               rel=1e-5)


@pytest.mark.parametrize("make", [
    lambda: ALS(time_decay=5.0), lambda: ImplicitALS(time_decay=5.0),
    lambda: BiasedMF(time_decay=5.0),
], ids=["ALS", "ImplicitALS", "BiasedMF"])
def test_time_decay_without_timestamps_is_a_clear_error(make):
    data = planted_interactions(n_users=20, n_items=10)
    with pytest.raises(DataError, match="time_decay needs timestamps"):
        make().fit(data, progress=False)


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_time_bins_without_timestamps_is_a_clear_error(cls):
    with pytest.raises(DataError, match="time_bins needs timestamps"):
        cls(time_bins=4).fit(planted_interactions(n_users=20, n_items=10), progress=False)


@pytest.mark.parametrize("make", [
    lambda: ALS(time_decay=0.0), lambda: ImplicitALS(time_decay=-2.0),
    lambda: BiasedMF(time_decay=float("inf")), lambda: BiasedMF(time_bins=0),
    lambda: SVDPlusPlus(time_bins=2.5), lambda: BiasedMF(reg_time=-1.0),
])
def test_bad_time_parameters_are_refused(make):
    model = make()
    with pytest.raises(ParameterError, match="time_decay|time_bins|reg_time"):
        model.fit(timed_data(implicit=isinstance(model, ImplicitALS)), progress=False)


def split_in_time(data: Interactions, fraction: float = 0.7):
    order = np.argsort(data.timestamps, kind="stable")
    cut = int(fraction * data.nnz)
    return data.take(np.sort(order[:cut])), data.take(np.sort(order[cut:]))


@pytest.mark.parametrize("cls", [ALS, ImplicitALS])
def test_als_partial_fit_redecays_every_rating_from_the_newest_time(cls, monkeypatch):
    data = timed_data(implicit=cls is ImplicitALS)
    first, second = split_in_time(data)
    model = cls(n_factors=3, max_iter=2, random_state=0, time_decay=20.0)
    model.fit(first, progress=False)
    assert model.time_newest_ == first.timestamps.max()
    seen = {}
    monkeypatch.setattr(model, "_train", lambda merged, *args: seen.setdefault("data", merged))
    model.partial_fit(second)
    merged = seen["data"]
    # Hand-computed: each merged rating's own time, aged from the newest time of all data.
    lookup = dict(zip(zip(data.users.tolist(), data.items.tolist(), strict=True),
                      data.timestamps.tolist(), strict=True))
    times = np.array([lookup[pair] for pair in zip(merged.users.tolist(),
                                                   merged.items.tolist(), strict=True)])
    expected = 2.0 ** (-(data.timestamps.max() - times) / 86_400.0 / 20.0)
    if cls is ImplicitALS:
        values = dict(zip(zip(data.users.tolist(), data.items.tolist(), strict=True),
                          data.weights.tolist(), strict=True))
        expected = expected * np.array([values[p] for p in zip(
            merged.users.tolist(), merged.items.tolist(), strict=True)])
    np.testing.assert_allclose(merged.weights, expected, rtol=1e-6)
    assert model.time_newest_ == data.timestamps.max()


def test_partial_fit_keeps_the_per_rating_times_aligned_with_seen():
    data = timed_data()
    first, second = split_in_time(data)
    model = BiasedMF(n_factors=3, max_iter=2, time_decay=50.0, random_state=0)
    model.fit(first, progress=False).partial_fit(second)
    full = data.with_vocabulary_of(data)
    codes_u = model.user_index_.get_indexer(full.users)
    codes_i = model.item_index_.get_indexer(full.items)
    np.testing.assert_array_equal(model.rating_times_,
                                  csr_times(codes_u, codes_i, full.timestamps, model.n_items_))
    assert model.seen_.nnz == data.nnz
    with pytest.raises(DataError, match="time_decay needs timestamps"):
        model.partial_fit(planted_interactions(n_users=5, n_items=5))


# ---------------------------------------------------------------------- time bins
@pytest.fixture(scope="module")
def binned():
    data = timed_data(seed=3)
    model = BiasedMF(n_factors=4, max_iter=15, n_blocks=2, random_state=0, time_bins=5,
                     reg_time=0.05).fit(data, progress=False)
    return data, model


def koren(model, data, users, items, times):
    """μ + b_u + α_u dev_u(t) + b_i + b_{i,Bin(t)} + p_u·q_i, by hand (float64)."""
    u = model.user_index_.get_indexer(users)
    i = model.item_index_.get_indexer(items)
    origin, newest = data.timestamps.min(), data.timestamps.max()
    width = (newest - origin + 1) / 5
    bins = np.clip(np.floor((times - origin) / width), 0, 4).astype(int)
    t_u = np.array([data.timestamps[data.users == user].mean() / 86_400.0 for user in users])
    delta = times / 86_400.0 - t_u
    all_u = data.timestamps / 86_400.0 - np.array(
        [data.timestamps[data.users == x].mean() / 86_400.0 for x in data.users])
    scale = np.mean(np.abs(all_u) ** 0.4)
    dev = np.sign(delta) * np.abs(delta) ** 0.4 / scale
    return (model.global_mean_ + model.user_bias_[u] + model.user_drift_[u] * dev
            + model.item_bias_[i] + model.item_bin_bias_[i, bins]
            + np.einsum("ij,ij->i", model.user_factors_[u].astype(float),
                        model.item_factors_[i].astype(float)))


def test_time_bins_prediction_is_koren_formula(binned):
    data, model = binned
    assert model.item_bin_bias_.shape == (data.n_items, 5)
    assert np.abs(model.item_bin_bias_).max() > 1e-3 and np.abs(model.user_drift_).max() > 1e-3
    users, items = data.users[:40], data.items[:40]
    times = data.timestamps[:40]
    np.testing.assert_allclose(model.predict(users, items, times=times, clip=False),
                               koren(model, data, users, items, times), rtol=1e-5, atol=1e-5)
    # Times after training fall in the last bin; a scalar time applies to every pair.
    later = np.full(40, data.timestamps.max() + 50 * DAY)
    np.testing.assert_allclose(model.predict(users, items, times=later[0], clip=False),
                               koren(model, data, users, items, later), rtol=1e-5, atol=1e-5)
    # An unknown user gets the fallback plus the item's terms at that time.
    item = data.items[0]
    code = model.item_index_.get_indexer([item])[0]
    t = data.timestamps[:1]
    expected = (model.global_mean_ + model.item_bias_[code]
                + model.item_bin_bias_[code, time_bin(t, model.time_origin_,
                                                      model.time_bin_width_, 5)[0]])
    assert model.predict([10**6], [item], times=t, clip=False)[0] == pytest.approx(expected,
                                                                                   rel=1e-5)
    assert np.isnan(model.predict([10**6], [item], times=t, unknown="nan")[0])


def test_time_bins_default_is_now_newest_bin_and_each_users_latest_rating(binned):
    data, model = binned
    users, items = data.users[:30], data.items[:30]
    last = np.array([data.timestamps[data.users == u].max() for u in users])
    item_now = np.full(30, data.timestamps.max())
    expected = (koren(model, data, users, items, last)
                - model.item_bin_bias_[model.item_index_.get_indexer(items),
                                       time_bin(last, model.time_origin_,
                                                model.time_bin_width_, 5)]
                + model.item_bin_bias_[model.item_index_.get_indexer(items),
                                       time_bin(item_now, model.time_origin_,
                                                model.time_bin_width_, 5)])
    np.testing.assert_allclose(model.predict(users, items, clip=False), expected,
                               rtol=1e-5, atol=1e-5)
    ids, scores = model.recommend(users[:1], n=5)
    direct = model.predict(np.repeat(users[0], 5), ids[0], clip=False)
    np.testing.assert_allclose(scores[0], direct, rtol=1e-4, atol=1e-4)


def test_time_bins_save_load_round_trip(binned, tmp_path):
    data, model = binned
    model.save(tmp_path / "m.zip")
    loaded = matfact.load(tmp_path / "m.zip")
    times = data.timestamps[:25]
    np.testing.assert_array_equal(
        loaded.predict(data.users[:25], data.items[:25], times=times),
        model.predict(data.users[:25], data.items[:25], times=times))
    np.testing.assert_array_equal(loaded.item_bin_bias_, model.item_bin_bias_)


def test_time_bins_need_biases_and_times_need_time_bins():
    data = timed_data()
    with pytest.raises(ParameterError, match="biased=True"):
        BiasedMF(time_bins=3, biased=False).fit(data, progress=False)
    plain = BiasedMF(n_factors=2, max_iter=1).fit(data, progress=False)
    with pytest.raises(ParameterError, match="time_bins"):
        plain.predict(data.users[:2], data.items[:2], times=0)
    binned = BiasedMF(n_factors=2, max_iter=1, time_bins=2).fit(data, progress=False)
    with pytest.raises(DataError, match="times"):
        binned.predict(data.users[:3], data.items[:3], times=[0, 1])


@pytest.mark.parametrize("cls", [BiasedMF, SVDPlusPlus])
def test_time_bins_partial_fit_adds_bins_users_and_items(cls):
    data = timed_data(seed=5)
    first, second = split_in_time(data, 0.6)
    model = cls(n_factors=3, max_iter=3, random_state=0, time_bins=4).fit(first,
                                                                          progress=False)
    width = model.time_bin_width_
    # A later period with a new user and a new item, bins past the training period.
    late = max(int(first.timestamps.max() + 2.5 * width), int(second.timestamps.max()))
    newcomers = Interactions.from_arrays(
        np.r_[second.users, [999, 999]], np.r_[second.items, [998, second.items[0]]],
        np.r_[second.ratings, [4.0, 2.0]], timestamps=np.r_[second.timestamps, [late, late]],
        rating_scale=(1, 5))
    n_bins = int((late - model.time_origin_) // width) + 1
    assert n_bins > 4
    model.partial_fit(newcomers)
    assert model.item_bin_bias_.shape == (model.n_items_, n_bins)
    assert model.user_drift_.shape == (model.n_users_,)
    assert 999 in model.user_index_ and 998 in model.item_index_
    assert np.isfinite(model.predict([999], [998])).all()
    assert model.time_newest_ == late
