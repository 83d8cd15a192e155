"""tune(): validation only from the training data, grid/random/bayes find planted optima."""

from __future__ import annotations

import numpy as np
import pytest

import matfact
from matfact import ALS, Baseline, ImplicitALS, ParameterError, tune
from matfact.evaluation import tune as tune_module
from tests.models.contract import planted_interactions


@pytest.fixture(scope="module")
def ratings():
    """Ratings made of strong user and item biases plus a little noise.

    The optimum is known: biases that fit (a small ridge) beat a ridge so large that
    every bias is zero, and a rank-1 ALS beats one whose huge ridge flattens it.
    """
    rng = np.random.default_rng(3)
    n_users, n_items = 80, 50
    user_bias, item_bias = rng.normal(0, 1.0, n_users), rng.normal(0, 1.0, n_items)
    mask = rng.random((n_users, n_items)) < 0.4
    mask[:, 0] = mask[0, :] = True
    users, items = np.nonzero(mask)
    values = 3.0 + user_bias[users] + item_bias[items] + rng.normal(0, 0.2, len(users))
    return matfact.Interactions.from_arrays(users, items, values)


def test_grid_search_finds_the_planted_optimum(ratings):
    # Baseline's ridge: a huge reg flattens every bias to zero, so the smallest wins.
    result = tune(Baseline(), {"reg_user": [0.0, 1e6], "reg_item": [5.0, 1e6]}, ratings,
                  metric="rmse")
    assert result.best_params == {"reg_user": 0.0, "reg_item": 5.0}
    assert len(result.results) == 4
    assert result.results["rmse"].is_monotonic_increasing
    assert result.best_model.is_fitted
    assert result.best_model.get_params()["reg_item"] == 5.0


def test_random_search_samples_and_keeps_the_best(ratings):
    result = tune(ALS(max_iter=3, random_state=0), {"n_factors": [1, 2, 3, 4],
                                                    "reg": [0.05, 1e4]},
                  ratings, search="random", n_iter=5, random_state=0)
    assert len(result.results) == 5
    assert result.best_params["reg"] == 0.05  # a huge ridge cannot fit anything
    assert isinstance(result.best_params["n_factors"], int)
    assert result.best_score == result.results["rmse"].min()


def test_bayes_search_with_optuna(ratings):
    result = tune(Baseline(), {"reg_user": (0.0, 1e6), "reg_item": [5.0, 1e6]}, ratings,
                  search="bayes", n_iter=8, random_state=0)
    assert len(result.results) == 8
    assert result.best_params["reg_item"] == 5.0
    assert result.best_score == result.results["rmse"].min()


def test_bayes_search_warm_starts_from_the_models_own_values(ratings):
    model = Baseline(reg_user=7.0, reg_item=5.0)
    space = {"reg_user": (0.0, 1e6), "reg_item": [5.0, 1e6]}
    first = tune(model, space, ratings, search="bayes", n_iter=1, random_state=0)
    assert first.best_params == {"reg_user": 7.0, "reg_item": 5.0}
    cold = tune(model, space, ratings, search="bayes", n_iter=1, random_state=0,
                warm_start=False)
    assert cold.best_params != first.best_params
    # Outside its space, the model's value cannot be a starting point.
    outside = tune(Baseline(reg_item=3.0), space, ratings, search="bayes", n_iter=1,
                   random_state=0)
    assert outside.best_params["reg_item"] in (5.0, 1e6)


def test_tuning_reads_only_the_training_data(ratings, monkeypatch):
    # Every split and every scored set is cut from the data given to tune.
    train, test = matfact.train_test_split(ratings, 0.2, "random", random_state=0)
    seen = []
    real_split = tune_module.train_test_split
    real_score = tune_module.score

    def spy_split(data, *args, **kwargs):
        seen.append(("split", data))
        return real_split(data, *args, **kwargs)

    def spy_score(model, held_out, *args, **kwargs):
        seen.append(("score", held_out))
        return real_score(model, held_out, *args, **kwargs)

    monkeypatch.setattr(tune_module, "train_test_split", spy_split)
    monkeypatch.setattr(tune_module, "score", spy_score)
    tune(Baseline(), {"reg_user": [1.0, 10.0]}, train)
    train_pairs = set(zip(train.users.tolist(), train.items.tolist(), strict=True))
    test_pairs = set(zip(test.users.tolist(), test.items.tolist(), strict=True))
    assert [kind for kind, _ in seen] == ["split", "score", "score"]
    assert seen[0][1] is train
    for _, part in seen[1:]:
        pairs = set(zip(part.users.tolist(), part.items.tolist(), strict=True))
        assert pairs <= train_pairs and not pairs & test_pairs


def test_default_validation_is_per_user_for_ranking_metrics(monkeypatch):
    data = planted_interactions("implicit", seed=4)
    strategies = []
    real_split = tune_module.train_test_split

    def spy_split(data, size, strategy, **kwargs):
        strategies.append((size, strategy, kwargs.get("random_state")))
        return real_split(data, size, strategy, **kwargs)

    monkeypatch.setattr(tune_module, "train_test_split", spy_split)
    result = tune(ImplicitALS(n_factors=4, max_iter=3, random_state=0),
                  {"reg": [0.1, 10.0]}, data, metric="ndcg@5")
    assert strategies == [(0.1, "per_user", 1)]
    assert set(result.results.columns) >= {"reg", "ndcg@5", "fit_time"}
    assert not result.results["ndcg@5"].is_monotonic_increasing or len(result.results) == 2


def test_cross_validated_trials(ratings):
    result = tune(Baseline(), {"reg_user": [0.0, 1e6]}, ratings, cv=3)
    assert result.best_params == {"reg_user": 0.0}
    # The mean over the 3 folds equals cross_validate on the same folds.
    folds = matfact.cross_validate(Baseline(reg_user=0.0), ratings, cv=3, metrics="rmse")
    assert result.best_score == pytest.approx(folds.loc["mean", "rmse"], rel=1e-12)


def test_early_stopping_refit_keeps_the_best_iteration(ratings):
    model = matfact.BiasedMF(n_factors=4, max_iter=60, early_stopping=True, patience=2,
                             random_state=0)
    result = tune(model, {"reg": [0.05]}, ratings)
    assert "best_iter" in result.results
    assert result.best_model.get_params()["max_iter"] == result.results.loc[0, "best_iter"]


def test_parallel_trials_equal_serial(ratings):
    params = {"reg_user": [0.0, 3.0, 1e6]}
    serial = tune(Baseline(), params, ratings)
    parallel = tune(Baseline(), params, ratings, n_jobs=2)
    np.testing.assert_allclose(serial.results["rmse"], parallel.results["rmse"], rtol=1e-12)
    assert serial.best_params == parallel.best_params


@pytest.mark.parametrize("kwargs,match", [
    ({"search": "annealing"}, "search"),
    ({"metric": "ndcg@x"}, "ndcg@x"),
    ({"validation": [0.1]}, "validation"),
    ({"validation": "sideways"}, "strategy"),
    ({"n_iter": 0}, "n_iter"),
])
def test_bad_arguments(ratings, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        tune(Baseline(), {"reg_user": [1.0]}, ratings, **kwargs)


def test_bad_params(ratings):
    with pytest.raises(ParameterError, match="no parameter"):
        tune(Baseline(), {"learning_rate": [1.0]}, ratings)
    with pytest.raises(ParameterError, match="non-empty dict"):
        tune(Baseline(), {}, ratings)
    with pytest.raises(ParameterError, match="implicit"):
        tune(ImplicitALS(), {"reg": [1.0]}, planted_interactions("implicit"), metric="rmse")


def test_tuning_plot_is_written(ratings, tmp_path):
    result = tune(ALS(max_iter=2, random_state=0), {"n_factors": [1, 2], "reg": [0.05, 50.0],
                                                    "weighted_reg": [True, False]}, ratings)
    path = result.plot(tmp_path / "tuning.png", title="ALS")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


# ---------------------------------------------------------------------- default spaces (issue 20)
def test_default_space_of_implicit_als_searches_the_confidence_transform():
    from matfact._params import validate_params
    from matfact.evaluation.report import TUNING_SPACES

    space = tune_module.default_space(ImplicitALS())
    assert space["confidence"] == ["auto", "log"]
    assert {"n_factors", "alpha", "reg"} <= set(space)
    # Every value is one ImplicitALS accepts, and the report tunes the same space.
    for name, values in space.items():
        for value in values:
            validate_params(ImplicitALS().set_params(**{name: value}))
    assert TUNING_SPACES["ImplicitALS"] == tune_module.DEFAULT_SPACES["ImplicitALS"]
    space["confidence"].append("linear")  # a copy: the defaults stay as they are
    assert tune_module.DEFAULT_SPACES["ImplicitALS"]["confidence"] == ["auto", "log"]


def test_tune_without_params_searches_the_default_space(monkeypatch):
    data = planted_interactions("implicit", n_users=30, n_items=20, density=0.3, seed=0)
    monkeypatch.setitem(tune_module.DEFAULT_SPACES, "ImplicitALS",
                        {"confidence": ["auto", "log"], "alpha": [1.0, 2.0]})
    result = tune(ImplicitALS(n_factors=2, max_iter=2, random_state=0), None, data,
                  metric="ndcg@5")
    assert len(result.results) == 4
    assert set(result.results["confidence"]) == {"auto", "log"}
    assert set(result.best_params) == {"confidence", "alpha"}


def test_default_space_of_a_class_without_one_is_a_clear_error():
    with pytest.raises(ParameterError, match="no default search space for Popularity"):
        tune_module.default_space(matfact.Popularity())
