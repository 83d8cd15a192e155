"""matfact.evaluation.onboarding: the simulated interview, by hand and on ML-100K."""

from __future__ import annotations

import numpy as np
import pytest

import matfact
from matfact import Interactions
from matfact.evaluation.onboarding import _posterior_fold_in, simulate_onboarding
from matfact.exceptions import DataError, NotFittedError, ParameterError
from matfact.onboarding import user_prior
from tests.test_onboarding import planted_model


def test_posterior_fold_in_matches_augmented_least_squares():
    rng = np.random.default_rng(2)
    model = planted_model(rng.normal(size=(10, 3)), rng.integers(1, 7, size=10).tolist(),
                           rng.normal(size=(6, 3)))
    model.item_bias_ = rng.normal(size=10).astype(np.float32)
    prior = user_prior(model)
    items, ratings = np.array([1, 4, 7]), np.array([4.0, 2.0, 5.0])
    vector = _posterior_fold_in(model, prior, items, ratings)
    # Reference: min ‖(t − Xz)/σ‖² + (z − m)ᵀΣ⁻¹(z − m) as one stacked least-squares problem.
    x = np.hstack([model.item_factors_[items], np.ones((3, 1))]).astype(np.float64)
    t = ratings - model.global_mean_ - model.item_bias_[items]
    root = np.linalg.cholesky(np.linalg.inv(prior.cov)).T  # Σ⁻¹ = rootᵀroot
    sigma = np.sqrt(prior.noise)
    stacked = np.vstack([x / sigma, root])
    rhs = np.concatenate([t / sigma, root @ prior.mean])
    z = np.linalg.lstsq(stacked, rhs, rcond=None)[0]
    np.testing.assert_allclose(vector.factors, z[:3], rtol=1e-5, atol=1e-6)
    assert vector.bias == pytest.approx(z[3], rel=1e-5, abs=1e-6)
    # No answers: the prior mean, i.e. a typical training user.
    empty = _posterior_fold_in(model, prior, np.zeros(0, np.int64), np.zeros(0))
    np.testing.assert_allclose(empty.factors, model.user_factors_.mean(axis=0), rtol=1e-5)


# ---------------------------------------------------------------------------- the interview
@pytest.fixture(scope="module")
def ladder():
    """Items 1-6 rated by 6, 5, ..., 1 warm users (popularity order 1 > 2 > ... > 6)."""
    rng = np.random.default_rng(1)
    rows = [(f"w{u}", j, float(rng.integers(1, 6))) for u in range(1, 7) for j in range(1, 8 - u)]
    users, items, ratings = zip(*rows, strict=True)
    model = matfact.Baseline().fit(Interactions.from_arrays(users, items, ratings,
                                                            rating_scale=(1, 5)), progress=False)
    # Newcomer x can answer items 2 and 5; y can answer 1-4. Evaluation: x on 3, y on 6.
    pool = Interactions.from_arrays(["x", "x", "y", "y", "y", "y"], [2, 5, 1, 2, 3, 4],
                                    [4, 2, 5, 3, 1, 2], rating_scale=(1, 5))
    held = Interactions.from_arrays(["x", "y"], [3, 6], [5, 1], rating_scale=(1, 5))
    return model, pool, held


def test_answering_rule_counts_asked_and_stops_at_n(ladder):
    model, pool, held = ladder
    result = simulate_onboarding(model, (pool, held), [1, 2, 3], "popularity",
                                 fully_trained=False)
    rows = result.curve("popularity").set_index("n_answers")
    # x: n=1 → asked 1 (no), 2 (yes): 2 asked; n=2 → 2 and 5 answered at the 5th item;
    # n=3 → x has only 2 answers, so the whole list (6 items) is asked. y: 1, 2, 3 asked.
    np.testing.assert_allclose(rows.loc[[1, 2, 3], "mean_asked"], [1.5, 3.5, 4.5])
    np.testing.assert_allclose(rows.loc[[1, 2, 3], "mean_answered"], [1.0, 2.0, 2.5])
    np.testing.assert_allclose(rows.loc[[1, 2, 3], "median_asked"], [1.5, 3.5, 4.5])


def test_answers_are_the_real_ratings_of_the_asked_items(ladder):
    model, pool, held = ladder
    result = simulate_onboarding(model, (pool, held), [1, 3], "popularity",
                                 fully_trained=False)
    rows = result.curve("popularity").set_index("n_answers")

    def predict(items, ratings, item):
        scores = model.score_vector(model.fold_in(items, ratings))
        return np.clip(scores[model.item_index_.get_indexer([item])[0]], 1, 5)

    for n, (x_items, x_ratings), (y_items, y_ratings) in (
            (1, ([2], [4]), ([1], [5])),
            (3, ([2, 5], [4, 2]), ([1, 2, 3], [5, 3, 1]))):
        errors = [predict(x_items, x_ratings, 3) - 5, predict(y_items, y_ratings, 6) - 1]
        assert rows.loc[n, "rmse"] == pytest.approx(np.sqrt(np.mean(np.square(errors))),
                                                    rel=1e-6)


def test_max_asked_caps_the_interview(ladder):
    model, pool, held = ladder
    result = simulate_onboarding(model, (pool, held), [1, 2, 3], "popularity", max_asked=4,
                                 fully_trained=False)
    rows = result.curve("popularity").set_index("n_answers")
    # x only sees items 1-4, so answers 2 alone; y is unaffected.
    np.testing.assert_allclose(rows.loc[[1, 2, 3], "mean_asked"], [1.5, 3.0, 3.5])
    np.testing.assert_allclose(rows.loc[[1, 2, 3], "mean_answered"], [1.0, 1.5, 2.0])


def test_random_strategy_gives_each_user_an_order(ladder):
    model, pool, held = ladder
    table = simulate_onboarding(model, (pool, held), 1, "random", max_asked=1, random_state=5,
                                fully_trained=False).table
    # One generator; users in id order (x, then y) each draw a permutation of the 6 items and
    # are shown its first item only: they answer when it is in their pool.
    rng = np.random.default_rng(5)
    pools = {"x": {2, 5}, "y": {1, 2, 3, 4}}
    firsts = [model.item_index_.ids[rng.permutation(6)[0]] for _ in ("x", "y")]
    answered = np.mean([first in pools[user] for user, first in zip("xy", firsts, strict=True)])
    assert table.iloc[1]["mean_answered"] == pytest.approx(answered)
    assert table.iloc[1]["mean_asked"] == 1.0
    again = simulate_onboarding(model, (pool, held), 1, "random", max_asked=1, random_state=5,
                                fully_trained=False).table
    assert table.equals(again)


# ------------------------------------------------------------------------------ bad input
def test_bad_input_gives_clear_errors(ladder):
    model, pool, held = ladder
    with pytest.raises(ParameterError, match="each n_answers must be an integer in"):
        simulate_onboarding(model, (pool, held), [5, 0])
    with pytest.raises(ParameterError, match="n_answers must be an int or a non-empty list"):
        simulate_onboarding(model, (pool, held), [])
    with pytest.raises(ParameterError, match="strategy must be one of"):
        simulate_onboarding(model, (pool, held), 2, ["popularity", "oracle"])
    with pytest.raises(ParameterError, match="max_asked"):
        simulate_onboarding(model, (pool, held), 2, max_asked=0)
    with pytest.raises(NotFittedError):
        simulate_onboarding(matfact.Baseline(), (pool, held))
    with pytest.raises(DataError, match="must be a matfact.Interactions"):
        simulate_onboarding(model, [("x", 1, 5)], 2)
    warm = Interactions.from_arrays(["w1", "x"], [1, 2], [3, 4], rating_scale=(1, 5))
    with pytest.raises(DataError, match="not newcomers"):
        simulate_onboarding(model, (warm, held), 2)
    with pytest.raises(DataError, match="occur in both train and test"):
        simulate_onboarding(model, (pool, pool), 2)
    with pytest.raises(ParameterError, match="fold_in must be 'model' or 'posterior'"):
        simulate_onboarding(model, (pool, held), 2, fold_in="bayes")
    with pytest.raises(ParameterError, match="fold_in='posterior' needs a model with item"):
        simulate_onboarding(model, (pool, held), 2, fold_in="posterior")
    with pytest.raises(ParameterError, match="n_answers must be an int or a non-empty list"):
        simulate_onboarding(model, (pool, held), "5")


# ------------------------------------------------------------------------------ ML-100K
STRATEGIES = ["log_pop_entropy", "factor_coverage", "random"]


@pytest.fixture(scope="module")
def ml100k_runs(ml100k):
    warm, cold = matfact.train_test_split(ml100k, 0.2, "cold_users", random_state=0)
    model = matfact.BiasedMF(random_state=0).fit(warm, progress=False)
    runs = {fold_in: simulate_onboarding(model, cold, [5, 10, 20], strategy=STRATEGIES,
                                         fold_in=fold_in)
            for fold_in in ("model", "posterior")}
    return model, warm, cold, runs


def test_ml100k_curves_improve_with_answers(ml100k_runs):
    *_, runs = ml100k_runs
    for result in runs.values():
        table = result.table
        assert table["strategy"].tolist()[0] == "fallback"
        assert table["strategy"].tolist()[-1] == "trained fully"
        fallback, full = table.iloc[0], table.iloc[-1]
        assert full["rmse"] < fallback["rmse"]
        for name in result.strategies:
            curve = result.curve(name).set_index("n_answers")
            assert curve.loc[20, "rmse"] < curve.loc[10, "rmse"] < fallback["rmse"]
            assert curve.loc[20, "ndcg@10"] > fallback["ndcg@10"]
            asked = curve.loc[[5, 10, 20], "mean_asked"].to_numpy()
            assert (np.diff(asked) > 0).all()


def test_ml100k_goal_with_the_posterior_fold_in(ml100k_runs):
    # The goal: 10 answers close half the RMSE gap, and the best strategy beats
    # random items. The posterior fold-in reaches it; BiasedMF's own fold-in (a ridge fit
    # of the answers) closes less, and its 5 answers are worse than none.
    *_, runs = ml100k_runs
    posterior, own = runs["posterior"], runs["model"]
    best = max(posterior.gap_closed(name, 10) for name in STRATEGIES[:2])
    assert best >= 0.5
    assert best > posterior.gap_closed("random", 10)
    for name in STRATEGIES[:2]:
        assert posterior.gap_closed(name, 5) > max(own.gap_closed(name, 5), 0.0)


def test_ml100k_reference_rows_match_the_evaluators(ml100k_runs):
    model, warm, cold, runs = ml100k_runs
    result = runs["model"]
    pool, held = matfact.train_test_split(cold, 0.2, "per_user", random_state=0)
    known = held.subset(items=model.item_index_.ids)  # items the model knows
    fallback, full = result.table.iloc[0], result.table.iloc[-1]
    assert fallback["rmse"] == pytest.approx(matfact.evaluate(model, known)["rmse"], rel=1e-6)
    assert result.n_eval_ratings == known.nnz
    assert result.n_users == len(np.unique(known.user_ids))
    # Trained fully: the same model fitted on the warm users plus every pool.
    both = Interactions.from_arrays(
        np.concatenate([warm.user_ids[warm.user_codes], pool.user_ids[pool.user_codes]]),
        np.concatenate([warm.item_ids[warm.item_codes], pool.item_ids[pool.item_codes]]),
        np.concatenate([warm.ratings, pool.ratings]), rating_scale=(1, 5))
    refit = matfact.BiasedMF(random_state=0).fit(both, progress=False)
    # simulate_onboarding rebuilds the warm part from model.seen_ (sorted by user, not in
    # u.data order), and SGD visits ratings in a data-order-dependent sequence: the two fits
    # differ slightly. (Scoring the refit in the wrong item order once gave RMSE 0.963.)
    assert full["rmse"] == pytest.approx(matfact.evaluate(refit, known)["rmse"], abs=5e-4)
    ndcg = matfact.evaluate_ranking(refit, known, k=10, metrics=["ndcg"])["ndcg@10"]
    assert full["ndcg@10"] == pytest.approx(ndcg, abs=2e-3)
    # The pair form is the same split.
    again = simulate_onboarding(model, (pool, held), 5, "log_pop_entropy", fully_trained=False)
    same = result.curve("log_pop_entropy").set_index("n_answers").loc[5]
    assert again.table.iloc[1]["rmse"] == pytest.approx(same["rmse"], rel=1e-9)
    assert again.table.iloc[1]["ndcg@10"] == pytest.approx(same["ndcg@10"], rel=1e-9)
    assert np.isnan(again.table.iloc[-1]["rmse"])


def test_plot_writes_a_png(ml100k_runs, tmp_path):
    *_, runs = ml100k_runs
    path = runs["model"].plot(tmp_path / "onboarding.png", title="Onboarding")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
