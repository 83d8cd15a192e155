"""NMF and TruncatedSVD as drop-ins for scikit-learn's (issue 20, finding 8).

scikit-learn's own estimator checks run on both transformers (input conventions: lists,
object arrays of numbers, data frames and their feature names, sparse input, read-only
memory maps; error conventions: NotFittedError, shape errors, non-numeric and negative
input), then a pipeline under ``GridSearchCV`` on a real (bundled) dataset, compared with
scikit-learn's own transformer. The checks take a few seconds, so they run in the
normal suite.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn import decomposition
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_non_negative
from threadpoolctl import threadpool_limits

from matfact import DataError, NotFittedError
from matfact.models.base import Recommender
from matfact.models.nmf import NMF
from matfact.models.svd import TruncatedSVD
from tests.models.contract import planted_interactions

# Every check must pass: nothing is marked as an expected failure.
ESTIMATORS = [
    NMF(n_components=2, max_iter=500, random_state=0),
    NMF(n_components=2, solver="mu", beta_loss="kullback-leibler", max_iter=500,
        random_state=0),
    TruncatedSVD(n_components=1, random_state=0),
    TruncatedSVD(n_components=1, algorithm="arpack", random_state=0),
]


# Some checks fit NMF on tiny or degenerate random matrices that do not reach tol in
# max_iter; NMF then warns (as scikit-learn's does), which this suite would turn into an
# error. The warning is right there and not what the checks are about.
@pytest.mark.filterwarnings("ignore::matfact.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    """8×8 digit images (bundled with scikit-learn, no download): pixel counts 0–16."""
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


@pytest.fixture
def one_blas_thread():
    # 600 × 64 products: on a shared machine BLAS's thread pool costs 100× the work.
    with threadpool_limits(1, user_api="blas"):
        yield


# ---------------------------------------------------------------------- conventions
def test_negative_values_message_starts_as_scikit_learns():
    X = np.array([[1.0, -2.0], [3.0, 4.0]])
    with pytest.raises(ValueError) as theirs:
        check_non_negative(X, "NMF (input X)")
    with pytest.raises(DataError) as ours:
        NMF(n_components=1).fit(X)
    assert str(ours.value).startswith(str(theirs.value))
    assert "1 negative values (min -2)" in str(ours.value)  # and says how many, and the fix
    with pytest.raises(DataError, match=r"^Negative values in data passed to NMF \(input X\)"):
        NMF(n_components=1, tol=0.0).fit(np.abs(X)).transform(X)


@pytest.mark.parametrize("make", [lambda: NMF(n_components=2),
                                  lambda: TruncatedSVD(n_components=2)])
def test_unfitted_use_raises_both_not_fitted_errors(make):
    model = make()
    for error in (SklearnNotFittedError, NotFittedError):
        with pytest.raises(error, match="not fitted"):
            model.transform(np.ones((2, 3)))


def test_nmf_predicts_only_when_fitted_on_interactions():
    # scikit-learn takes hasattr(est, "predict") for "is a predictor": a transformer is not.
    assert not hasattr(NMF(), "predict")
    whole = NMF(n_components=2, tol=0.0).fit(np.eye(4) + 1.0)
    assert not hasattr(whole, "predict")
    with pytest.raises(NotFittedError, match="fitted on a matrix.*predict"):
        whole.predict([0], [0])
    data = planted_interactions("explicit", n_users=20, n_items=15, seed=3)
    masked = NMF(n_components=2, max_iter=10, tol=0.0, random_state=0).fit(data,
                                                                            progress=False)
    assert masked.predict(data.users[:3], data.items[:3]).shape == (3,)
    assert NMF.predict.__doc__ == Recommender.predict.__doc__


@pytest.mark.parametrize("make", [lambda: NMF(n_components=3, tol=0.0, random_state=0),
                                  lambda: TruncatedSVD(n_components=3, random_state=0)])
def test_object_arrays_lists_and_frames_give_the_numbers_result(make, digits):
    X = digits[0][:100]
    want = make().fit_transform(X)
    np.testing.assert_array_equal(make().fit_transform(X.astype(object)), want)
    np.testing.assert_array_equal(make().fit_transform(X.tolist()), want)
    frame = pd.DataFrame(X, columns=[f"px{j}" for j in range(X.shape[1])])
    model = make().fit(frame)
    np.testing.assert_array_equal(model.transform(frame), make().fit(X).transform(X))
    assert list(model.feature_names_in_) == list(frame.columns) and model.n_features_in_ == 64
    prefix = type(model).__name__.lower()
    assert list(model.get_feature_names_out()) == [f"{prefix}{j}" for j in range(3)]
    assert list(model.set_output(transform="pandas").transform(frame).columns) == \
        [f"{prefix}{j}" for j in range(3)]


@pytest.mark.parametrize("make", [lambda: NMF(n_components=2, tol=0.0),
                                  lambda: TruncatedSVD(n_components=2)])
def test_transform_shape_and_content_errors_are_scikit_learns(make):
    model = make().fit(np.arange(12.0).reshape(3, 4))
    name = type(model).__name__
    with pytest.raises(DataError, match=f"X has 3 features, but {name} is expecting 4 "):
        model.transform(np.ones((2, 3)))
    bad = np.ones((2, 4), dtype=object)
    bad[1, 2] = {"foo": "bar"}
    # A TypeError too, as NumPy's and scikit-learn's for the same input; the cell is named.
    with pytest.raises(TypeError, match=r"X\[1, 2\] = \{'foo': 'bar'\}.*must be a string or"):
        model.transform(bad)


def test_clone_keeps_parameters_and_drops_the_fit():
    model = NMF(n_components=3, init="random", alpha_W=0.1, tol=0.0, random_state=7).fit(
        np.eye(5) + 1)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "components_")


# ---------------------------------------------------------------------- pipelines
def test_truncated_svd_in_a_grid_searched_pipeline(digits, one_blas_thread):
    X, y = digits
    grid = {"svd__n_components": [4, 16]}

    def search(svd):
        pipeline = Pipeline([("svd", svd), ("scale", StandardScaler()),
                             ("clf", LogisticRegression(max_iter=300))])
        return GridSearchCV(pipeline, grid, cv=3).fit(X, y)

    ours = search(TruncatedSVD(n_iter=7, random_state=0))
    theirs = search(decomposition.TruncatedSVD(n_iter=7, random_state=0))
    # 16 components separate digits far better than 4; both searches must see it.
    assert ours.best_params_ == theirs.best_params_ == {"svd__n_components": 16}
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"],
                               theirs.cv_results_["mean_test_score"], atol=0.02)
    assert ours.best_score_ > 0.85
    # The fitted transformers agree up to the sign of each component (same sign rule).
    a = ours.best_estimator_.named_steps["svd"]
    b = theirs.best_estimator_.named_steps["svd"]
    np.testing.assert_allclose(a.singular_values_, b.singular_values_, rtol=1e-3)
    signs = np.sign(np.sum(a.components_ * b.components_, axis=1))
    np.testing.assert_array_equal(signs[:8], np.ones(8))
    np.testing.assert_allclose(a.transform(X)[:, :8], b.transform(X)[:, :8], rtol=1e-3,
                               atol=1e-3 * np.abs(b.transform(X)[:, :8]).max())


def test_exact_arpack_transform_equals_scikit_learns_up_to_sign(digits, one_blas_thread):
    X = sp.csr_matrix(digits[0])
    ours = TruncatedSVD(n_components=5, algorithm="arpack", random_state=0).fit(X)
    theirs = decomposition.TruncatedSVD(n_components=5, algorithm="arpack",
                                        random_state=0).fit(X)
    signs = np.sign(np.sum(ours.components_ * theirs.components_, axis=1))
    np.testing.assert_allclose(ours.transform(X) * signs, theirs.transform(X), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(ours.explained_variance_ratio_,
                               theirs.explained_variance_ratio_, rtol=1e-6)


def test_nmf_in_a_pipeline_matches_scikit_learns(digits, one_blas_thread):
    X, y = digits
    scores = {}
    # tol=0: both run exactly max_iter iterations of the same algorithm, without warning.
    for name, nmf in (("ours", NMF(n_components=16, max_iter=100, tol=0.0, random_state=0)),
                      ("theirs", decomposition.NMF(n_components=16, max_iter=100, tol=0.0,
                                                   random_state=0))):
        pipeline = Pipeline([("nmf", nmf), ("scale", StandardScaler()),
                             ("clf", LogisticRegression(max_iter=300))])
        scores[name] = cross_val_score(pipeline, X, y, cv=3)
    assert scores["ours"].mean() > 0.8
    np.testing.assert_allclose(scores["ours"], scores["theirs"], atol=0.02)
