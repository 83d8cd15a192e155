"""DaskALS / DaskImplicitALS on a LocalCluster of 2 worker processes (loopback TCP).

The reference is always the local model fitted from the same seed: rows are solved
independently given the other side, so the cluster's factors must equal the local ones
(up to float summation order; within 1e-4 of the largest factor). ALS and Cholesky
implicit ALS are compared over several iterations. CG implicit ALS over two only: its
float32 kernel is not bitwise reproducible across thread counts even locally (1 vs 2
threads differ by ~2e-3 of the largest factor after 4 iterations on ML-100K), and a
worker runs it on one thread.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("distributed", reason="matfact.distributed needs dask[distributed]")
dd = pytest.importorskip("dask.dataframe", reason="matfact.distributed needs dask[dataframe]")

import matfact  # noqa: E402
from matfact import ALS, DataError, ImplicitALS, Interactions, ParameterError  # noqa: E402
from matfact.distributed import DaskALS, DaskImplicitALS, evaluate_ranking  # noqa: E402

RTOL = 1e-4


def assert_factors_close(actual: np.ndarray, expected: np.ndarray, rtol: float = RTOL) -> None:
    scale = float(np.abs(expected).max())
    err = float(np.abs(actual.astype(np.float64) - expected).max())
    assert err <= rtol * scale, f"max |Δ| = {err:.3g} > {rtol:g} × {scale:.3g}"


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """A small synthetic rating table with string user ids and sample weights."""
    data = matfact.make_synthetic(600, 300, 12_000, random_state=3)
    frame = data.to_pandas()
    frame["user"] = "u" + frame["user"].astype(str)  # sorted as strings, not numbers
    frame["weight"] = np.random.default_rng(0).uniform(0.5, 2.0, len(frame))
    return frame[["user", "item", "rating", "weight"]]


def _workers(client) -> list[str]:
    return sorted(client.scheduler_info()["workers"])


# ---------------------------------------------------------------------- blocks (no cluster)
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 30), st.integers(1, 6), st.integers(1, 5),
       st.integers(0, 2**32 - 1))
def test_blocks_rebuild_the_csr_of_the_data(n_users, n_items, n_blocks, n_parts, seed):
    """Whatever the partitions and blocks, the user blocks stacked (with their ``needed``
    indices mapped back) are the data's canonical CSR, and the item blocks its transpose."""
    from matfact.distributed.dask_als import _bounds, _build, _split

    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, size=rng.integers(1, n_users * n_items + 1),
                       replace=False)
    frame = pd.DataFrame({"user": cells // n_items, "item": cells % n_items,
                          "rating": rng.integers(1, 6, len(cells)).astype(float)})
    user_counts = np.bincount(frame["user"], minlength=n_users)
    item_counts = np.bincount(frame["item"], minlength=n_items)
    bounds = {"user": _bounds(user_counts, n_blocks), "item": _bounds(item_counts, n_blocks)}
    for side, counts in (("user", user_counts), ("item", item_counts)):
        b = bounds[side]
        assert b[0] == 0 and b[-1] == len(counts) and (np.diff(b) > 0).all()
        assert len(b) - 1 <= n_blocks
    edges = np.linspace(0, len(frame), n_parts + 1).astype(int)
    parts = [frame.iloc[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]
    columns = ("user", "item", "rating", None)
    splits = [_split(p, columns, False, None, None, bounds["user"], bounds["item"])
              for p in parts]
    n_user_blocks = len(bounds["user"]) - 1
    expected = sp.csr_matrix((frame["rating"], (frame["user"], frame["item"])),
                             shape=(n_users, n_items), dtype=np.float32)
    expected.sort_indices()
    for side, offset, matrix in (("user", 0, expected), ("item", n_user_blocks,
                                                          expected.T.tocsr())):
        b = bounds[side]
        rows = []
        for k in range(len(b) - 1):
            block = _build(int(b[k]), int(b[k + 1]), side, *[s[offset + k] for s in splits])
            assert (np.diff(block.needed) > 0).all()
            rows.append(sp.csr_matrix((block.values, block.needed[block.indices],
                                       block.indptr), shape=(b[k + 1] - b[k], matrix.shape[1])))
        got = sp.vstack(rows).tocsr()
        np.testing.assert_array_equal(got.indptr, matrix.indptr)
        np.testing.assert_array_equal(got.indices, matrix.indices)  # same order in each row
        np.testing.assert_array_equal(got.data, matrix.data)


# ---------------------------------------------------------------------- parity with the local fit
@pytest.mark.parametrize("transfer", ["rows", "broadcast"])
def test_dask_als_equals_local_als_on_ml100k(client, ml100k, transfer):
    params = {"n_factors": 16, "max_iter": 5, "reg": 0.1, "random_state": 0}
    local = ALS(**params, n_threads=1).fit(ml100k, progress=False)
    model = DaskALS(**params).fit(ml100k, client=client, progress=False, transfer=transfer)
    assert model.transfer_["mode"] == {"user": transfer, "item": transfer}
    assert model.transfer_["blocks"] == {"user": 2, "item": 2}
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        assert_factors_close(getattr(model, name), getattr(local, name))
    assert model.global_mean_ == local.global_mean_
    np.testing.assert_allclose(model.loss_history_["train_rmse"],
                               local.loss_history_["train_rmse"], rtol=1e-6)
    assert model.n_iter_ == local.n_iter_ == 5
    assert model.user_index_ == local.user_index_ and model.item_index_ == local.item_index_
    assert (model.seen_ != local.seen_).nnz == 0


def test_dask_frame_with_string_ids_and_weights_equals_local(client, synthetic):
    params = {"n_factors": 8, "max_iter": 4, "random_state": 1}
    reference = Interactions.from_pandas(synthetic, rating="rating", weight="weight")
    local = ALS(**params, n_threads=1).fit(reference, progress=False)
    ddf = dd.from_pandas(synthetic, npartitions=3)
    model = DaskALS(**params).fit(ddf, client=client, progress=False, weight="weight",
                                  n_blocks=3)
    assert model.user_index_ == local.user_index_
    assert model.user_index_.ids[:2].tolist() == ["u0", "u1"]
    assert model.rating_scale_ == local.rating_scale_
    assert model.global_mean_ == pytest.approx(local.global_mean_, rel=1e-6)
    assert (model.seen_ != local.seen_).nnz == 0 and model.seen_.dtype == np.float32
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        assert_factors_close(getattr(model, name), getattr(local, name))
    np.testing.assert_allclose(model.loss_history_["train_rmse"],
                               local.loss_history_["train_rmse"], rtol=1e-5)


def test_unbiased_plain_ridge_als_with_early_stopping_equals_local(client, synthetic):
    data = Interactions.from_pandas(synthetic, rating="rating")
    split = matfact.train_test_split(data, 0.2, "random", random_state=0)
    params = {"n_factors": 6, "max_iter": 8, "biased": False, "weighted_reg": False,
              "reg": 0.5, "early_stopping": True, "patience": 1, "random_state": 4}
    local = ALS(**params, n_threads=1).fit(split.train, validation=split.test, progress=False)
    model = DaskALS(**params).fit(split.train, validation=split.test, client=client,
                                  progress=False, transfer="rows")
    assert model.user_bias_ is None and model.global_mean_ == 0.0
    assert model.n_iter_ == local.n_iter_ and model.best_iter_ == local.best_iter_
    np.testing.assert_allclose(model.loss_history_["validation_rmse"],
                               local.loss_history_["validation_rmse"], rtol=1e-6)
    assert_factors_close(model.user_factors_, local.user_factors_)
    assert_factors_close(model.item_factors_, local.item_factors_)


def test_dask_implicit_cholesky_equals_local_with_loss(client, ml100k):
    params = {"n_factors": 16, "max_iter": 4, "alpha": 1.0, "reg": 0.05,
              "solver": "cholesky", "calculate_loss": True, "random_state": 0}
    frame = ml100k.to_pandas()
    local = ImplicitALS(**params, n_threads=1).fit(
        Interactions.from_pandas(frame, weight="rating"), progress=False)
    model = DaskImplicitALS(**params).fit(dd.from_pandas(frame, npartitions=4), client=client,
                                          progress=False, weight="rating")
    assert_factors_close(model.user_factors_, local.user_factors_)
    assert_factors_close(model.item_factors_, local.item_factors_)
    np.testing.assert_allclose(model.loss_history_["train_loss"],
                               local.loss_history_["train_loss"], rtol=1e-6)
    assert model.is_implicit_ and model.rating_scale_ is None
    assert (model.seen_ != local.seen_).nnz == 0


def test_dask_implicit_cg_equals_local_on_synthetic(client, synthetic):
    data = Interactions.from_pandas(synthetic, weight="rating")
    params = {"n_factors": 8, "max_iter": 2, "alpha": 1.0, "reg": 0.05, "random_state": 2}
    local = ImplicitALS(**params, n_threads=1).fit(data, progress=False)
    model = DaskImplicitALS(**params).fit(data, client=client, progress=False, n_blocks=3)
    assert_factors_close(model.user_factors_, local.user_factors_)
    assert_factors_close(model.item_factors_, local.item_factors_)
    assert model.loss_history_ == local.loss_history_ == {"train_loss": [],
                                                          "validation_rmse": []}


# ---------------------------------------------------------------------- the result is a local model
def test_saved_model_loads_as_plain_als(client, ml100k, tmp_path):
    model = DaskALS(n_factors=8, max_iter=2, random_state=0).fit(ml100k, client=client,
                                                                 progress=False)
    assert isinstance(model, ALS)
    model.save(tmp_path / "model.zip")
    loaded = matfact.load(tmp_path / "model.zip")
    assert type(loaded) is ALS
    users, items = ml100k.users[:50], ml100k.items[:50]
    np.testing.assert_array_equal(loaded.predict(users, items), model.predict(users, items))
    ids, _ = loaded.recommend([1, 2], n=5)
    np.testing.assert_array_equal(ids, model.recommend([1, 2], n=5)[0])
    local = model.to_local()
    assert type(local) is ALS and local.get_params() == model.get_params()
    assert "DaskALS" not in matfact.models.MODEL_REGISTRY


def test_partial_fit_after_a_cluster_fit_runs_locally(client, ml100k):
    model = DaskALS(n_factors=8, max_iter=2, random_state=0).fit(ml100k, client=client,
                                                                 progress=False)
    local = ALS(n_factors=8, max_iter=2, random_state=0, n_threads=1).fit(ml100k,
                                                                          progress=False)
    extra = Interactions.from_arrays([1, 99999], [1, 2], [5.0, 4.0])
    model.partial_fit(extra, max_iter=1)
    local.partial_fit(extra, max_iter=1)
    assert_factors_close(model.user_factors_, local.user_factors_)


# ---------------------------------------------------------------------- a worker dies mid-fit
def test_fit_survives_a_killed_worker(client, ml100k):
    params = {"n_factors": 16, "max_iter": 6, "random_state": 0}
    local = ALS(**params, n_threads=1).fit(ml100k, progress=False)
    pids = client.run(os.getpid)
    victim = _workers(client)[0]
    killed = []

    def kill_during_next_iteration(iteration, info):
        if iteration == 1:
            # SIGKILL while the next half-step is being sent: its blocks and factor
            # rows on that worker are lost; the nanny starts a fresh worker.
            os.kill(pids[victim], signal.SIGKILL)
            killed.append(time.monotonic())

    model = DaskALS(**params).fit(ml100k, client=client, progress=False,
                                  callback=kill_during_next_iteration)
    assert killed, "the worker was not killed"
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        assert_factors_close(getattr(model, name), getattr(local, name))
    assert model.n_iter_ == 6
    client.wait_for_workers(2, timeout=30)
    assert pids[victim] not in client.run(os.getpid).values()


@pytest.mark.parametrize("cls", [DaskALS, DaskImplicitALS])
def test_half_step_resends_factor_rows_lost_with_a_worker(client, ml100k, monkeypatch, cls):
    """Killed right after a half-step's tasks were sent: the rows scattered to the worker,
    and for CG the block's previous result it warm-starts from, are gone; re-sent."""
    from matfact.distributed import dask_als

    params = {"n_factors": 16, "max_iter": 3, "random_state": 0}
    local = cls._local_class(**params, n_threads=1).fit(ml100k, progress=False)
    submit = dask_als._Plan._submit
    calls = []

    def submit_then_kill(plan, side, pending, *args):
        futures = submit(plan, side, pending, *args)
        calls.append(len(pending))
        if len(calls) == 3:
            # Kill the worker holding the first block right after its task was sent:
            # the rows scattered to it (and maybe its result) are gone.
            holder = client.who_has([plan.blocks[side][pending[0]]])
            address = next(iter(holder.values()))[0]
            os.kill(client.run(os.getpid, workers=[address])[address], signal.SIGKILL)
            deadline = time.monotonic() + 30
            while address in client.scheduler_info()["workers"] and time.monotonic() < deadline:
                time.sleep(0.05)
        return futures

    monkeypatch.setattr(dask_als._Plan, "_submit", submit_then_kill)
    # "rows": each block's rows live only on its worker (a broadcast has a copy on every
    # worker, which Dask recovers from by itself: the other kill test).
    model = cls(**params).fit(ml100k, client=client, progress=False, transfer="rows")
    assert len(calls) > 6, f"no half-step was re-sent: {calls}"
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        if getattr(local, name) is not None:
            assert_factors_close(getattr(model, name), getattr(local, name))
    client.wait_for_workers(2, timeout=30)


# ---------------------------------------------------------------------- distributed evaluation
def test_distributed_evaluate_ranking_equals_local(client, ml100k):
    from distributed import get_task_stream

    split = matfact.train_test_split(ml100k.to_implicit(), 0.2, "per_user", random_state=0)
    model = ImplicitALS(n_factors=8, max_iter=3, random_state=0).fit(split.train,
                                                                     progress=False)
    metrics = ["ndcg", "precision@5", "map", "coverage", "novelty", "auc"]
    expected, expected_frame = matfact.evaluate_ranking(model, split.test, k=10,
                                                        metrics=metrics, per_user=True)
    with get_task_stream(client) as tasks:
        got, frame = evaluate_ranking(model, split.test, client=client, k=10,
                                      metrics=metrics, per_user=True, n_blocks=3)
    # Both the top-k lists and the AUC were computed on the workers, block by block.
    ran = {str(task["key"]).split("-", 1)[0] for task in tasks.data}  # name-uuid
    assert {"_recommend_block", "_auc_block"} <= ran, ran
    assert got.keys() == expected.keys()
    assert frame.index.equals(expected_frame.index)
    # The top-10 lists (integer ids) come back from the workers as the driver would rank
    # them, and every top-k metric is then computed on the driver from those lists: the
    # same lists give the same values to the bit, per user and overall.
    topk = [c for c in expected_frame.columns if c != "auc"]
    pd.testing.assert_frame_equal(frame[topk], expected_frame[topk], check_exact=True)
    assert {k: v for k, v in got.items() if k != "auc"} == \
        {k: v for k, v in expected.items() if k != "auc"}
    # AUC ranks all 1,682 items of every user by float32 scores, which the workers get
    # from matrix products over other batches of users than the driver's: a score can
    # differ by a couple of ulps (2.4e-7 measured), which swaps two items whose scores
    # are closer than that. Rare among ten items, such near-ties do occur among 1,682
    # (0 to 2 of the 943 users, over a dozen seeds). One swap moves that user's AUC by
    # 1/(|relevant|·|others|) < 1e-3, and the mean by at most the mean of the changes.
    auc, expected_auc = frame["auc"].to_numpy(), expected_frame["auc"].to_numpy()
    moved = auc != expected_auc
    assert moved.sum() <= 0.01 * len(auc), f"{moved.sum()} users' AUC moved"
    np.testing.assert_allclose(auc, expected_auc, rtol=0, atol=1e-3)
    assert abs(got["auc"] - expected["auc"]) <= np.abs(auc - expected_auc).mean() + 1e-12


# ---------------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors(client, synthetic):
    ddf = dd.from_pandas(synthetic, npartitions=2)
    with pytest.raises(ParameterError, match="transfer"):
        DaskALS().fit(ddf, client=client, transfer="fast")
    with pytest.raises(ParameterError, match="n_blocks"):
        DaskALS().fit(ddf, client=client, n_blocks=0)
    with pytest.raises(ParameterError, match="client"):
        DaskALS().fit(ddf, client="tcp://nowhere:8786")
    with pytest.raises(DataError, match="missing column"):
        DaskALS().fit(ddf, client=client, rating="stars")
    with pytest.raises(DataError, match="dask.dataframe.DataFrame or a matfact.Interactions"):
        DaskALS().fit(synthetic, client=client)
    with pytest.raises(ParameterError, match="time_decay"):
        DaskALS(time_decay=30.0).fit(ddf, client=client)
    with pytest.raises(ParameterError, match="n_factors"):
        DaskALS(n_factors=0).fit(ddf, client=client)
    repeated = dd.from_pandas(pd.concat([synthetic, synthetic.iloc[:3]]), npartitions=2)
    with pytest.raises(DataError, match="repeated"):
        DaskALS(max_iter=1).fit(repeated, client=client, progress=False)
    holes = synthetic.copy()
    holes.loc[5, "rating"] = np.nan
    with pytest.raises(DataError, match="NaN"):
        DaskALS(max_iter=1).fit(dd.from_pandas(holes, npartitions=2), client=client)
    negative = synthetic.assign(weight=-synthetic["weight"])
    with pytest.raises(DataError, match="> 0"):
        DaskImplicitALS(max_iter=1).fit(dd.from_pandas(negative, npartitions=2),
                                        client=client, weight="weight")
    with pytest.raises(ParameterError, match="validation"):
        DaskImplicitALS(max_iter=1).fit(ddf, client=client,
                                        validation=Interactions.from_pandas(synthetic,
                                                                            rating="rating"))
    # a failed fit leaves nothing that looks fitted
    model = DaskALS(max_iter=1)
    with pytest.raises(DataError):
        model.fit(repeated, client=client, progress=False)
    assert not model.is_fitted


# ---------------------------------------------------------------------- command line
def test_cli_trains_on_a_local_cluster(tmp_path, synthetic, capsys):
    from matfact.cli import main

    path = tmp_path / "ratings.csv"
    synthetic[["user", "item", "rating"]].to_csv(path, index=False)
    target = tmp_path / "model.zip"
    code = main(["-q", "train", "--data", str(path), "--model", "als", "--param", "max_iter=2",
                 "--param", "n_factors=4", "--param", "random_state=0", "--local-cluster",
                 "2", "--out", str(target)])
    assert code == 0, capsys.readouterr().err
    loaded = matfact.load(target)
    assert type(loaded) is ALS
    local = ALS(max_iter=2, n_factors=4, random_state=0, n_threads=1).fit(
        Interactions.from_pandas(synthetic, rating="rating"), progress=False)
    assert_factors_close(loaded.item_factors_, local.item_factors_)
    code = main(["-q", "train", "--data", str(path), "--model", "baseline", "--local-cluster",
                 "2", "--out", str(target)])
    assert code == 2
    assert "als and implicit_als only" in capsys.readouterr().err


def test_cli_trains_on_a_running_scheduler(client, tmp_path, ml100k, capsys):
    from matfact.cli import main

    target = tmp_path / "model.zip"
    code = main(["-q", "train", "--data", str(tmp_path / "u.csv"), "--model", "als",
                 "--scheduler", client.scheduler.address, "--out", str(target)])
    assert code == 1 and "no such file" in capsys.readouterr().err.lower()
    ml100k.to_pandas()[["user", "item", "rating"]].to_csv(tmp_path / "u.csv", index=False)
    code = main(["-q", "train", "--data", str(tmp_path / "u.csv"), "--model", "als",
                 "--param", "max_iter=2", "--param", "n_factors=8", "--param",
                 "random_state=0", "--scheduler", client.scheduler.address, "--out",
                 str(target)])
    assert code == 0, capsys.readouterr().err
    assert "on 100,000 interactions (943 users x 1,682 items)" in capsys.readouterr().out
    local = ALS(max_iter=2, n_factors=8, random_state=0, n_threads=1).fit(ml100k,
                                                                          progress=False)
    assert_factors_close(matfact.load(target).user_factors_, local.user_factors_)
    assert client.run(os.getpid)  # the command closed its own client, not the cluster


def test_cli_reads_a_parquet_glob_on_the_workers(tmp_path, synthetic, capsys):
    from matfact.cli import main

    frame = synthetic.rename(columns={"user": "visitor", "weight": "plays"})
    for part, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[rows].to_parquet(tmp_path / f"part-{part}.parquet", index=False)
    target = tmp_path / "model"
    code = main(["-q", "train", "--data", str(tmp_path / "*.parquet"), "--model",
                 "implicit_als", "--user-col", "visitor", "--weight-col", "plays", "--param",
                 "max_iter=2", "--param", "n_factors=4", "--param", "solver=\"cholesky\"",
                 "--param", "random_state=0", "--local-cluster", "2", "--out", str(target)])
    assert code == 0, capsys.readouterr().err
    assert f"on {len(frame):,} interactions" in capsys.readouterr().out
    loaded = matfact.load(target)
    local = ImplicitALS(max_iter=2, n_factors=4, solver="cholesky", random_state=0).fit(
        Interactions.from_pandas(frame, user="visitor", weight="plays"), progress=False)
    assert type(loaded) is ImplicitALS and loaded.user_index_ == local.user_index_
    assert_factors_close(loaded.user_factors_, local.user_factors_)
