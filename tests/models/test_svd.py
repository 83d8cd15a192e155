"""TruncatedSVD and PureSVD: contract, exact answers (SciPy, scikit-learn, NumPy), fold-in,
properties, bad input, ML-100K.

The randomized solver is exact when its random block spans the whole column space
(``n_components + n_oversamples ≥ min(shape)``); the property tests use that to compare it
with LAPACK's SVD on arbitrary small matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.sparse.linalg import svds

import matfact
from matfact import DataError, Interactions, NotFittedError, ParameterError
from matfact.models.svd import PureSVD, TruncatedSVD
from tests.models.contract import ModelContract, planted_interactions

PURE_BAD = [{"n_factors": 0}, {"n_factors": 2.5}, {"n_factors": 10_000}, {"normalize": "yes"},
            {"algorithm": "lanczos"}, {"n_iter": -1}, {"n_iter": True}, {"random_state": -1},
            {"random_state": 1.5}, {"n_threads": 0}]


# ---------------------------------------------------------------------- contract
class TestPureSVDContract(ModelContract):
    data_kind = "implicit"
    bad_params = PURE_BAD

    def make_model(self):
        return PureSVD(n_factors=4, random_state=0)


class TestPureSVDExplicitArpackContract(ModelContract):
    data_kind = "explicit"
    bad_params = [*PURE_BAD, {"n_factors": 40}]  # ARPACK needs k < min(shape) = 40

    def make_model(self):
        return PureSVD(n_factors=4, algorithm="arpack", normalize=True, random_state=0)


# ---------------------------------------------------------------------- helpers
def spectrum_matrix(n_rows: int = 120, n_cols: int = 60, seed: int = 0) -> np.ndarray:
    """A dense matrix with singular values 100/i: well separated, so any solver agrees."""
    rng = np.random.default_rng(seed)
    left = np.linalg.qr(rng.normal(size=(n_rows, n_cols)))[0]
    right = np.linalg.qr(rng.normal(size=(n_cols, n_cols)))[0]
    return (left * (100.0 / np.arange(1, n_cols + 1))) @ right.T


def sparse_sample(n_rows: int = 80, n_cols: int = 50, density: float = 0.2,
                  seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 6, size=(n_rows, n_cols)).astype(np.float64)
    dense[rng.random((n_rows, n_cols)) > density] = 0
    return sp.csr_matrix(dense)


def exact(n_components: int, **params) -> TruncatedSVD:
    """The randomized solver with a random block as wide as the matrix: an exact SVD."""
    return TruncatedSVD(n_components, n_oversamples=1000, random_state=0, **params)


def aligned(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a``'s columns with the signs that best match ``b``'s."""
    return a * np.sign(np.sum(a * b, axis=0))[None, :]


# ---------------------------------------------------------------------- TruncatedSVD: answers
def test_arpack_equals_svds_and_randomized_is_close_on_ml100k(ml100k):
    X = ml100k.to_scipy().astype(np.float64)
    want = np.sort(svds(X, k=20, random_state=0)[1])[::-1]
    arpack = TruncatedSVD(20, algorithm="arpack", random_state=1).fit(X)
    np.testing.assert_allclose(arpack.singular_values_, want, rtol=1e-10)
    # ML-100K's spectrum decays slowly (σ_20 ≈ 75, σ_40 ≈ 62): it takes iterations and
    # oversampling (measured over 5 seeds: ≤ 5e-8 relative error here, 1-3% at the defaults).
    randomized = TruncatedSVD(20, n_iter=20, n_oversamples=20, random_state=0).fit(X)
    np.testing.assert_allclose(randomized.singular_values_, want, rtol=1e-6)
    few = TruncatedSVD(20, n_iter=1, random_state=0).fit(X)  # fewer iterations: less exact
    assert np.abs(few.singular_values_ / want - 1).max() > np.abs(
        randomized.singular_values_ / want - 1).max()
    assert (few.singular_values_ <= want * (1 + 1e-12)).all()  # a projection never exceeds σ


def test_agrees_with_sklearn():
    from sklearn.decomposition import TruncatedSVD as SkTruncatedSVD

    # Randomized on a well-separated spectrum, where both converge to the exact answer.
    for algorithm, X, rtol in (("arpack", sparse_sample(120, 70, seed=3), 1e-9),
                               ("randomized", sp.csr_matrix(spectrum_matrix()), 1e-9)):
        ours = TruncatedSVD(6, algorithm=algorithm, n_iter=7, random_state=0)
        theirs = SkTruncatedSVD(6, algorithm=algorithm, n_iter=7, random_state=0)
        z_ours, z_theirs = ours.fit_transform(X), theirs.fit_transform(X)
        np.testing.assert_allclose(ours.singular_values_, theirs.singular_values_, rtol=rtol)
        np.testing.assert_allclose(ours.explained_variance_, theirs.explained_variance_,
                                   rtol=1e-5)
        np.testing.assert_allclose(ours.explained_variance_ratio_,
                                   theirs.explained_variance_ratio_, rtol=1e-5)
        np.testing.assert_allclose(aligned(z_ours, z_theirs), z_theirs, atol=1e-5)
        np.testing.assert_allclose(aligned(ours.transform(X), z_theirs), z_theirs, atol=1e-5)
        # The same sign convention (svd_flip on the components), so no alignment needed.
        np.testing.assert_allclose(ours.components_, theirs.components_, atol=1e-5)


def test_dense_input_equals_sparse_input():
    X = sparse_sample(90, 40, seed=1)
    for algorithm in ("randomized", "arpack"):
        a = TruncatedSVD(5, algorithm=algorithm, random_state=0)
        b = TruncatedSVD(5, algorithm=algorithm, random_state=0)
        za, zb = a.fit_transform(X), b.fit_transform(X.toarray())
        np.testing.assert_allclose(a.singular_values_, b.singular_values_, rtol=1e-10)
        np.testing.assert_allclose(a.components_, b.components_, atol=1e-10)
        np.testing.assert_allclose(za, zb, atol=1e-9)
        np.testing.assert_allclose(a.transform(X.tocoo()), b.transform(X.toarray()), atol=1e-9)


def test_repeated_sparse_entries_are_summed_without_touching_the_input():
    X = sparse_sample(30, 10, seed=8)
    # Every entry split in two halves stored side by side: a non-canonical CSR.
    twice = sp.csr_matrix((np.repeat(X.data / 2, 2), np.repeat(X.indices, 2), 2 * X.indptr),
                          shape=X.shape)
    assert not twice.has_canonical_format and twice.nnz == 2 * X.nnz
    a, b = TruncatedSVD(3, random_state=0), TruncatedSVD(3, random_state=0)
    np.testing.assert_allclose(a.fit_transform(twice), b.fit_transform(X), atol=1e-12)
    np.testing.assert_allclose(a.explained_variance_ratio_, b.explained_variance_ratio_,
                               rtol=1e-12)
    assert twice.nnz == 2 * X.nnz  # the caller's matrix is left as it was


def test_interactions_input_equals_its_matrix():
    data = planted_interactions("implicit", seed=2)
    a = TruncatedSVD(4, random_state=0).fit(data)
    b = TruncatedSVD(4, random_state=0).fit(data.to_scipy())
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.components_.dtype == np.float32  # float32 in, float32 out
    assert a.item_index_ == data.item_index and b.item_index_ is None
    # A later Interactions is matched to the fitted items by id, whatever its own vocabulary.
    part = data.subset(items=data.item_ids[::2])
    dense = np.zeros((part.n_users, data.n_items), dtype=np.float32)
    dense[part.user_codes, data.item_index.get_indexer(part.items)] = part.values
    np.testing.assert_allclose(a.transform(part), dense @ a.components_.T, rtol=1e-5, atol=1e-5)


def test_same_result_whatever_the_thread_count():
    X = sparse_sample(200, 60, density=0.3, seed=4)
    fits = [TruncatedSVD(8, random_state=0, n_threads=t).fit(X) for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].components_, fits[1].components_)
    np.testing.assert_array_equal(fits[0].transform(X), fits[1].transform(X))


def test_randomized_recovers_an_exactly_low_rank_matrix():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(70, 4)) @ rng.normal(size=(4, 30))
    svd = TruncatedSVD(4, n_iter=2, random_state=0)
    z = svd.fit_transform(sp.csr_matrix(X))
    np.testing.assert_allclose(svd.inverse_transform(z), X, atol=1e-9)
    np.testing.assert_allclose(svd.singular_values_, np.linalg.svd(X)[1][:4], rtol=1e-10)
    # The rows lie in the span of the components, so they explain all the variance.
    np.testing.assert_allclose(svd.explained_variance_ratio_.sum(), 1.0, rtol=1e-10)


def test_power_iteration_normalizers_agree():
    X = spectrum_matrix()
    values = [TruncatedSVD(5, n_iter=6, power_iteration_normalizer=name,
                           random_state=0).fit(sp.csr_matrix(X)).singular_values_
              for name in ("auto", "QR", "LU", "none")]
    for other in values[1:]:
        np.testing.assert_allclose(other, values[0], rtol=1e-10)
    np.testing.assert_allclose(values[0], 100.0 / np.arange(1, 6), rtol=1e-10)


def test_wide_and_tall_matrices():
    X = spectrum_matrix(90, 40).T  # wide: the solver works on the transpose
    for matrix in (X, X.T):
        svd = TruncatedSVD(3, random_state=0).fit(matrix)
        np.testing.assert_allclose(svd.singular_values_, [100, 50, 100 / 3], rtol=1e-8)
        assert svd.components_.shape == (3, matrix.shape[1])
    full = TruncatedSVD(40, random_state=0).fit(X)  # n_components = min(shape) is allowed
    np.testing.assert_allclose(full.explained_variance_ratio_.sum(), 1.0, rtol=1e-10)
    np.testing.assert_allclose(full.inverse_transform(full.transform(X)), X, atol=1e-9)


def test_sklearn_tools_work_with_it():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    X = sparse_sample(60, 30, seed=6)
    pipe = make_pipeline(TruncatedSVD(3, random_state=0), Normalizer()).fit(X)
    assert pipe.transform(X).shape == (60, 3)
    model = TruncatedSVD(3, random_state=0).fit(X)
    assert list(model.get_feature_names_out()) == ["truncatedsvd0", "truncatedsvd1",
                                                   "truncatedsvd2"]
    copy = matfact.clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "components_")


@pytest.mark.filterwarnings("ignore:Skipping check check_array_api_input")  # needs SciPy's flag
def test_passes_sklearn_estimator_checks():
    sklearn = pytest.importorskip("sklearn")
    if tuple(int(x) for x in sklearn.__version__.split(".")[:2]) < (1, 6):
        pytest.skip("expected_failed_checks needs scikit-learn ≥ 1.6")
    from sklearn.utils.estimator_checks import check_estimator

    check_estimator(TruncatedSVD(random_state=0), expected_failed_checks={
        "check_dtype_object": "non-numeric input raises matfact.DataError (a ValueError), "
                              "not TypeError",
    })


# ---------------------------------------------------------------------- TruncatedSVD: properties
small_matrices = arrays(
    np.float64, st.tuples(st.integers(1, 9), st.integers(1, 9)),
    elements=st.one_of(st.just(0.0), st.floats(-10, 10, allow_subnormal=False)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_matrices)
def test_exact_when_the_random_block_spans_the_matrix(X):
    """Against LAPACK: singular values, the projection and the Eckart–Young error."""
    X = sp.csr_matrix(X)
    dense = X.toarray()
    sigma = np.linalg.svd(dense, compute_uv=False)
    errors = []
    for k in range(1, min(X.shape) + 1):
        svd = exact(k)
        z = svd.fit_transform(X)
        v = svd.components_
        scale = max(sigma[0], 1.0)
        np.testing.assert_allclose(svd.singular_values_, sigma[:k], atol=1e-9 * scale)
        np.testing.assert_allclose(v @ v.T, np.eye(k), atol=1e-8)
        # transform(X) @ components_ is the projection of X on the span of the components.
        np.testing.assert_allclose(z @ v, dense @ v.T @ v, atol=1e-9 * scale)
        np.testing.assert_allclose(svd.inverse_transform(z), z @ v, atol=1e-12 * scale)
        error = np.linalg.norm(dense - z @ v)
        np.testing.assert_allclose(error, np.sqrt((sigma[k:] ** 2).sum()), atol=1e-8 * scale)
        errors.append(error)
        # scikit-learn's sign convention: each component's largest entry is positive.
        biggest = v[np.arange(k), np.argmax(np.abs(v), axis=1)]
        assert (biggest >= 0).all()
    assert (np.diff(errors) <= 1e-9 * max(sigma[0], 1.0)).all()  # non-increasing in k


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_matrices.filter(lambda m: min(m.shape) >= 2), st.integers(0, 2**31))
def test_randomized_never_beats_the_optimum(X, seed):
    """Any randomized rank-k answer has error ≥ the optimal √Σσ² (Eckart–Young) and σ̂ ≤ σ."""
    sigma = np.linalg.svd(X, compute_uv=False)
    k = min(X.shape) - 1
    svd = TruncatedSVD(k, n_iter=0, n_oversamples=0, random_state=seed)
    z = svd.fit_transform(X)
    scale = max(sigma[0], 1.0)
    assert np.linalg.norm(X - z @ svd.components_) >= np.sqrt((sigma[k:] ** 2).sum()) - 1e-9 * scale
    assert (svd.singular_values_ <= sigma[:k] + 1e-9 * scale).all()


# ---------------------------------------------------------------------- TruncatedSVD: errors
def test_bad_parameters_are_refused_at_fit():
    X = sparse_sample()
    for params in ({"n_components": 0}, {"n_components": 2.0}, {"algorithm": "lobpcg"},
                   {"n_iter": -1}, {"n_oversamples": -1},
                   {"power_iteration_normalizer": "qr"}, {"tol": -1.0},
                   {"random_state": "seed"}, {"n_threads": 0}):
        svd = TruncatedSVD().set_params(**params)  # accepted by __init__, refused by fit
        with pytest.raises(ParameterError, match=next(iter(params))):
            svd.fit(X)


def test_n_components_out_of_range():
    X = sparse_sample(30, 8)
    with pytest.raises(ParameterError, match=r"n_components=8 must be < min.*arpack"):
        TruncatedSVD(8, algorithm="arpack").fit(X)
    with pytest.raises(ParameterError, match=r"n_components=9 must be ≤ min"):
        TruncatedSVD(9).fit(X)
    assert TruncatedSVD(8, random_state=0).fit(X).components_.shape == (8, 8)


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
    (sp.csr_matrix(np.array([[1.0, np.inf], [0.0, 1.0]])), "NaN or infinite"),
    (np.zeros((0, 4)), "empty"),
    (sp.csr_matrix((5, 0)), "empty"),
    (np.ones(4), "2-D"),
    (np.ones((3, 3), dtype=complex), "complex"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
])
def test_bad_input(bad, match):
    with pytest.raises(DataError, match=match):
        TruncatedSVD(1).fit(bad)


def test_transform_checks():
    X = sparse_sample(40, 12)
    with pytest.raises(NotFittedError, match="not fitted"):
        TruncatedSVD(2).transform(X)
    svd = TruncatedSVD(2, random_state=0).fit(X)
    with pytest.raises(DataError, match="12"):
        svd.transform(np.ones((3, 11)))
    with pytest.raises(DataError, match="NaN"):
        svd.transform(np.full((3, 12), np.nan))
    with pytest.raises(DataError, match="n_components = 2"):
        svd.inverse_transform(np.ones((3, 3)))
    data = planted_interactions("implicit", n_users=20, n_items=10)
    fitted = TruncatedSVD(2, random_state=0).fit(data)
    other = Interactions.from_arrays([1, 2], [0, 999])
    with pytest.raises(DataError, match="unknown to the fitted model"):
        fitted.transform(other)


# ---------------------------------------------------------------------- PureSVD
def test_pure_svd_factors_are_the_scaled_svd():
    data = planted_interactions("explicit", seed=3)
    model = PureSVD(n_factors=5, algorithm="arpack", random_state=0).fit(data, progress=False)
    R = data.to_scipy().toarray().astype(np.float64)
    u, s, vt = np.linalg.svd(R)
    np.testing.assert_allclose(model.singular_values_, s[:5], rtol=1e-5)
    scores = model.user_factors_.astype(np.float64) @ model.item_factors_.T
    np.testing.assert_allclose(scores, (u[:, :5] * s[:5]) @ vt[:5], atol=1e-4)
    # No biases, no clipping: predict returns u Σ vᵀ itself.
    np.testing.assert_allclose(model.predict(data.users, data.items),
                               scores[data.user_codes, data.item_codes], rtol=1e-5, atol=1e-5)
    assert model.global_mean_ == 0.0 and model.user_bias_ is None and model.item_bias_ is None


@pytest.mark.parametrize("normalize", [False, True])
def test_pure_svd_fold_in_is_the_projection(normalize):
    data = planted_interactions("implicit", seed=4)
    model = PureSVD(n_factors=6, normalize=normalize, random_state=0).fit(data, progress=False)
    V = model.item_factors_.astype(np.float64)
    items = data.item_ids[[3, 7, 8, 20]]
    weights = np.array([1.0, 4.0, 2.0, 0.5])
    r = np.zeros(data.n_items)
    r[data.item_index.get_indexer(items)] = weights
    vector = model.fold_in(items, weights)
    np.testing.assert_allclose(vector.factors, r @ V, rtol=1e-5, atol=1e-6)
    assert vector.bias == 0.0 and vector.factors.dtype == np.float32
    ids, scores = model.recommend_for_history(items, weights, n=data.n_items,
                                              exclude_seen=False)
    want = r @ V @ V.T  # scores = r V Vᵀ
    np.testing.assert_allclose(scores, want[data.item_index.get_indexer(ids)], rtol=1e-4,
                               atol=1e-5)


def test_pure_svd_fold_in_of_a_training_user_gives_back_its_factors():
    """U Σ = R V for an exact SVD, so folding a training user's row back in is a no-op."""
    data = planted_interactions("implicit", seed=5)
    model = PureSVD(n_factors=6, algorithm="arpack", random_state=0).fit(data, progress=False)
    seen = data.to_scipy()
    for code in (0, 11, 42):
        row = seen[code]
        vector = model.fold_in(data.item_ids[row.indices], row.data)
        np.testing.assert_allclose(vector.factors, model.user_factors_[code], rtol=1e-4,
                                   atol=1e-4)


def test_pure_svd_normalize_is_eigenrec_item_scaling():
    """V from the SVD of R D, D = diag(‖r_i‖^-1/2); users are their unscaled rows times V."""
    data = planted_interactions("implicit", seed=6)
    model = PureSVD(n_factors=4, normalize=True, algorithm="arpack",
                    random_state=0).fit(data, progress=False)
    R = data.to_scipy().toarray().astype(np.float64)
    scaled = R / np.sqrt(np.linalg.norm(R, axis=0))
    _, s, vt = np.linalg.svd(scaled)
    np.testing.assert_allclose(model.singular_values_, s[:4], rtol=1e-5)
    V = model.item_factors_.astype(np.float64)
    np.testing.assert_allclose(V @ V.T, vt[:4].T @ vt[:4], atol=1e-5)  # the same subspace
    np.testing.assert_allclose(model.user_factors_, R @ V, rtol=1e-5, atol=1e-5)


def test_pure_svd_identical_whatever_the_number_of_threads():
    data = planted_interactions("implicit", n_users=200, n_items=80, seed=7)
    fits = [PureSVD(n_factors=8, random_state=0, n_threads=t).fit(data, progress=False)
            for t in (1, 2)]
    np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
    np.testing.assert_array_equal(fits[0].item_factors_, fits[1].item_factors_)


def test_pure_svd_beats_popularity_on_ml100k(ml100k):
    """Per-user 80/20 split (seed 42) of the implicit ML-100K, as the benchmarks."""
    train, test = matfact.train_test_split(ml100k.to_implicit(), 0.2, "per_user",
                                           random_state=42)
    popularity = matfact.evaluate_ranking(matfact.Popularity().fit(train, progress=False), test,
                                          metrics=("ndcg", "precision"))
    model = PureSVD(n_factors=20, random_state=0).fit(train, progress=False)
    pure = matfact.evaluate_ranking(model, test, metrics=("ndcg", "precision"))
    assert pure["ndcg@10"] > popularity["ndcg@10"] * 1.2, (pure, popularity)
    assert pure["precision@10"] > popularity["precision@10"], (pure, popularity)
