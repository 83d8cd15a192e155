"""BPR: contract, the model against the Python reference epoch, determinism, learning, ML-100K.

The kernel is checked update by update in ``tests/kernels/test_bpr_kernels.py``; here the
whole fit (initialization, block layout, per-epoch seeds, renumbering and publishing) is
replayed with the same generator and that reference epoch.
"""

from __future__ import annotations

import numpy as np
import pytest

import matfact
from matfact import BPR, Interactions
from matfact.models._layout import blocked_ratings
from tests.kernels.test_bpr_kernels import bpr_reference
from tests.models.contract import ModelContract, planted_interactions


# ---------------------------------------------------------------------- contract
class TestBPRContract(ModelContract):
    data_kind = "implicit"
    bad_params = [
        {"n_factors": 0}, {"n_factors": 1.5}, {"learning_rate": 0}, {"learning_rate": -0.1},
        {"learning_rate": float("nan")}, {"learning_rate": float("inf")}, {"reg": -1.0},
        {"reg_bias": -0.5}, {"max_iter": 0}, {"init_std": -1.0}, {"n_blocks": 0},
        {"n_blocks": True}, {"max_tries": 0}, {"random_state": -1}, {"random_state": "x"},
        {"n_threads": 0},
    ]

    def make_model(self):
        return BPR(n_factors=8, max_iter=10, n_blocks=4, random_state=0, n_threads=1)


# ---------------------------------------------------------------------- replay
def replay_fit(data: Interactions, *, n_factors: int, learning_rate: float, reg: float,
               reg_bias: float, max_iter: int, init_std: float, n_blocks: int, max_tries: int,
               seed: int) -> dict:
    """BPR._fit with the Python reference epoch: the same draws from one generator."""
    rng = np.random.default_rng(seed)
    user = rng.standard_normal((data.n_users, n_factors), dtype=np.float32)
    user *= np.float32(init_std)
    item = rng.standard_normal((data.n_items, n_factors), dtype=np.float32)
    item *= np.float32(init_std)
    layout = blocked_ratings(data.user_codes, data.item_codes, data.n_users, data.n_items,
                             n_blocks, rng)
    upos, ipos = layout.user_position, layout.item_position
    users = upos[data.user_codes[layout.order]].astype(np.int32)
    items = ipos[data.item_codes[layout.order]].astype(np.int32)
    # Every user's positives, renumbered and sorted.
    pairs = sorted(set(zip(upos[data.user_codes].tolist(), ipos[data.item_codes].tolist(),
                           strict=True)))
    seen_indptr = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount([u for u, _ in pairs], minlength=data.n_users), out=seen_indptr[1:])
    seen_indices = np.array([i for _, i in pairs], dtype=np.int64)
    P = np.empty_like(user)
    P[upos] = user
    Q = np.empty_like(item)
    Q[ipos] = item
    b = np.zeros(data.n_items, np.float32)
    losses, correct = [], []
    for _ in range(max_iter):
        col_perm = rng.permutation(n_blocks).astype(np.int64)
        seeds = rng.integers(0, 2**63, n_blocks**2, dtype=np.uint64)
        drawn: list = []
        loss, right = bpr_reference(layout.block_ptr, users, items, layout.item_bounds,
                                    seen_indptr, seen_indices, P, Q, b, learning_rate, reg,
                                    reg_bias, col_perm, seeds, max_tries, drawn)
        made = max(sum(j >= 0 for _, _, j in drawn), 1)  # the mean is over pairs updated
        losses.append(loss / made)
        correct.append(right / made)
    return {"user_factors_": P[upos], "item_factors_": Q[ipos], "item_bias_": b[ipos],
            "train_loss": losses, "pairs_correct_": correct}


@pytest.mark.parametrize("n_blocks,seed", [(1, 0), (3, 1), (4, 2)])
def test_bpr_fit_equals_the_python_replay(n_blocks, seed):
    data = planted_interactions("implicit", n_users=25, n_items=18, density=0.3, seed=seed)
    params = {"n_factors": 4, "learning_rate": 0.1, "reg": 0.01, "reg_bias": 0.02,
              "max_iter": 4, "init_std": 0.1, "n_blocks": n_blocks, "max_tries": 20}
    model = BPR(**params, random_state=seed, n_threads=1).fit(data, progress=False)
    want = replay_fit(data, **params, seed=seed)
    for name in ("user_factors_", "item_factors_", "item_bias_"):
        got = getattr(model, name)
        assert got.dtype == np.float32 and got.shape == want[name].shape
        np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(model.loss_history_["train_loss"], want["train_loss"],
                               rtol=1e-4)
    np.testing.assert_allclose(model.pairs_correct_, want["pairs_correct_"], atol=1e-12)
    assert model.n_iter_ == 4 and model.user_bias_ is None and model.global_mean_ == 0.0


def test_bpr_predict_is_bias_plus_dot_in_original_id_order():
    data = planted_interactions("implicit", n_users=30, n_items=20, seed=3)
    model = BPR(n_factors=4, max_iter=5, n_blocks=3, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    u, i = data.user_codes, data.item_codes
    manual = model.item_bias_[i] + np.einsum("ij,ij->i", model.user_factors_[u].astype(float),
                                             model.item_factors_[i].astype(float))
    np.testing.assert_allclose(model.predict(data.users, data.items), manual, rtol=1e-6,
                               atol=1e-6)


# ---------------------------------------------------------------------- determinism
def test_bpr_identical_whatever_the_number_of_threads():
    data = planted_interactions("implicit", n_users=120, n_items=80, density=0.2, seed=4)
    fits = [BPR(n_factors=8, max_iter=5, n_blocks=4, random_state=7, n_threads=t).fit(
        data, progress=False) for t in (1, 2)]
    for name in ("user_factors_", "item_factors_", "item_bias_"):
        np.testing.assert_array_equal(getattr(fits[0], name), getattr(fits[1], name))
    assert fits[0].loss_history_ == fits[1].loss_history_
    assert fits[0].pairs_correct_ == fits[1].pairs_correct_


def test_bpr_same_seed_same_model_other_seed_other_model():
    data = planted_interactions("implicit", n_users=40, n_items=30, seed=5)
    a, b, c = (BPR(n_factors=4, max_iter=3, n_blocks=2, random_state=s, n_threads=1).fit(
        data, progress=False) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.array_equal(a.item_factors_, c.item_factors_)


# ---------------------------------------------------------------------- learning
def two_groups(n_users: int = 200, n_items: int = 100, p: float = 0.3, seed: int = 0):
    """Even users like even items, odd users odd items; nothing across groups."""
    rng = np.random.default_rng(seed)
    group_u, group_i = np.arange(n_users) % 2, np.arange(n_items) % 2
    likes = (group_u[:, None] == group_i[None, :]) & (rng.random((n_users, n_items)) < p)
    users, items = np.nonzero(likes)
    return Interactions.from_arrays(users, items), group_u, group_i


def test_bpr_learns_a_planted_two_group_preference():
    data, group_u, group_i = two_groups()
    train, test = matfact.train_test_split(data, 0.2, "per_user", random_state=0)
    model = BPR(n_factors=8, max_iter=30, learning_rate=0.05, n_blocks=4, random_state=0,
                n_threads=1)
    model.fit(train, progress=False)
    result = matfact.evaluate_ranking(model, test, metrics=("auc", "precision@5"))
    assert result["auc"] > 0.8, result
    correct = np.array(model.pairs_correct_)
    assert len(correct) == 30 and correct[-1] > correct[0] + 0.2
    assert correct[-1] > 0.8
    losses = np.array(model.loss_history_["train_loss"])
    assert losses[0] == pytest.approx(np.log(2.0), abs=0.01)  # tiny init: x ≈ 0
    assert losses[-1] < 0.5 * losses[0]
    users = train.user_ids
    ids, _ = model.recommend(users, n=5)
    assert (group_i[ids] == group_u[users][:, None]).mean() > 0.95


def test_bpr_fold_in_prefers_the_history_group():
    data, group_u, group_i = two_groups(seed=1)
    model = BPR(n_factors=8, max_iter=30, n_blocks=2, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    history = np.array([1, 3, 5, 7, 9])  # odd items
    vector = model.fold_in(history)
    assert vector.bias == 0.0 and vector.factors.shape == (8,)
    again = model.fold_in(history)
    np.testing.assert_array_equal(vector.factors, again.factors)  # deterministic
    ids, scores = model.recommend_for_history(history, n=10)
    assert (group_i[ids] == 1).all() and not set(ids.tolist()) & set(history.tolist())
    empty = model.fold_in(history[:0])
    assert not empty.factors.any()


def test_bpr_updates_every_positive_on_a_small_catalogue():
    """"An epoch makes one update per positive": with zero factors and a negligible learning
    rate every pair costs ln 2, so the first epoch's mean loss is ln 2 when (nearly) every
    positive gets a negative; and after a few epochs every item with positives has moved."""
    data = planted_interactions("implicit", n_users=50, n_items=20, density=0.3)
    first = BPR(n_factors=4, max_iter=1, learning_rate=1e-9, init_std=0.0, random_state=0,
                n_threads=1).fit(data, progress=False)
    trained = BPR(n_factors=4, max_iter=5, random_state=0, n_threads=1).fit(data,
                                                                          progress=False)
    has_positives = np.bincount(data.item_codes, minlength=data.n_items) > 0
    untouched = int((trained.item_bias_[has_positives] == 0).sum())
    assert (first.loss_history_["train_loss"][0], untouched) == (
        pytest.approx(np.log(2.0), abs=0.05), 0)


def test_bpr_callback_reports_pairs_correct():
    data = planted_interactions("implicit", n_users=30, n_items=20, seed=6)
    seen = []
    model = BPR(n_factors=4, max_iter=4, n_blocks=2, random_state=0, n_threads=1).fit(
        data, progress=False, callback=lambda it, info: seen.append(info["pairs_correct"]))
    assert seen == model.pairs_correct_


# ---------------------------------------------------------------------- ML-100K
def test_ml100k_bpr_ndcg(ml100k):
    """Per-user 80/20 split (seed 42) of the implicit ML-100K, defaults: measured NDCG@10
    0.3741. One thread: the model is the same for any count, and a loaded 2-core machine
    slows parallel epochs down a lot."""
    train, test = matfact.train_test_split(ml100k.to_implicit(), 0.2, "per_user",
                                           random_state=42)
    model = BPR(random_state=0, n_threads=1).fit(train, progress=False)  # any count: same model
    result = matfact.evaluate_ranking(model, test, metrics=("ndcg",))
    assert result["ndcg@10"] > 0.30, result


def test_bpr_fold_in_reads_no_weight():
    """Issue 20: training counts every interaction as one positive, so fold-in does too;
    raw play counts as step weights made fold-in overshoot (Steam: NDCG@10 0.173 vs 0.200)."""
    data, _, _ = two_groups(seed=1)
    model = BPR(n_factors=8, max_iter=5, n_blocks=2, random_state=0, n_threads=1)
    model.fit(data, progress=False)
    history = np.array([1, 3, 5])
    plain = model.fold_in(history).factors
    heavy = model.fold_in(history, np.array([1.0, 350_000.0, 0.1])).factors
    np.testing.assert_array_equal(heavy, plain)
