"""Regressions the soak run found in ``matfact retrain`` (benchmarks/soak.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import matfact


def test_retrain_with_a_repeated_pair_in_the_log(ml100k_full, data_dir, tmp_path):
    # The soak's random writes rated some (user, item) pair twice; retrain then failed with
    # "timestamps must have shape (n,) like the ids, got (n + 1,)" and nothing was reloaded.
    pytest.importorskip("sqlalchemy", reason="the serve extra is not installed")
    from matfact.serving.store import Rating, RatingStore

    model = tmp_path / "model.zip"
    matfact.BiasedMF(n_factors=4, max_iter=2, random_state=0).fit(
        ml100k_full, progress=False).save(model)
    db = tmp_path / "log.sqlite"
    with RatingStore(db) as store:
        store.append([Rating(196, 1, 2.0), Rating(7, 50, 5.0)])
        store.append([Rating(196, 1, 4.0, 1.9e9)])  # the same pair again, later
    run = subprocess.run([sys.executable, "-m", "matfact", "-q", "retrain", "--data", "ml-100k",
                          "--db", str(db), "--model", str(model)], capture_output=True,
                         text=True, timeout=600, env={"MATFACT_DATA": str(data_dir),
                                                      "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    retrained = matfact.load(model)
    user, item = retrained.user_index_.get_indexer([196])[0], \
        retrained.item_index_.get_indexer([1])[0]
    assert retrained.seen_[user, item] == 4.0  # the later rating of the pair wins
    assert retrained.seen_.nnz == ml100k_full.nnz + 1  # (196, 1) is new to ML-100K
