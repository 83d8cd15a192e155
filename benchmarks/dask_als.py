"""Implicit ALS on a Dask cluster against the local model and Spark's ALS.

Per-iteration time of ``matfact.distributed.DaskImplicitALS`` on a ``LocalCluster`` of 2
worker processes × 1 thread, of the local ``ImplicitALS`` on 2 threads, and of Spark's
``pyspark.ml.recommendation.ALS`` (``implicitPrefs=True``) on ``local[2]``, all on the same
synthetic implicit data with the ratings as weights, read from the same Parquet files.

Each part runs in its own Python process (``OPENBLAS_NUM_THREADS=1``, ``TQDM_DISABLE=1``):
``data`` writes the Parquet files, then ``local``, ``dask`` and ``spark`` time their fits.
``python -m benchmarks.dask_als [--quick] [--out DIR]`` runs the suite and writes
``<DIR>/dask_als.json`` (``dask_als-quick.json``); ``python -m benchmarks.dask_als part
TASK ...`` is the per-process entry point (internal).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    environment,
    fmt_ratio,
    fmt_seconds,
    print_tables,
    wait_for_quiet,
    write_results,
)

__all__ = ["PROTOCOL", "run", "assemble", "main"]

N_USERS = 100_000
N_ITEMS = 20_000
SIZES = (10_000_000, 30_000_000)
QUICK_SIZES = (1_000_000,)
DATA_SEED = 0
SEED = 0
K = 64
ALPHA = 1.0
REG = 0.05
CG_STEPS = 3
INIT_STD = 0.01
THREADS = 2
WORKERS = 2
#: Iterations of the timed matfact fits; the per-iteration time is the median of the last
#: ``ITERATIONS - 1`` (the first also loads the kernels in fresh worker processes).
ITERATIONS = 4
SPARK_ITERATIONS = (1, 6)
#: Rows per Parquet file.
ROWS_PER_FILE = 2_500_000
#: Spark's 6-iteration fit is skipped when its 1-iteration fit took longer than this.
SPARK_LIMIT_S = 300.0
SPARK_DRIVER_MEMORY = "12g"
GOAL_DASK_OVER_LOCAL = 1.5
GOAL_SPARK_OVER_DASK = 5.0
GOAL_SIZE = 30_000_000
#: Longest wait (seconds) for other processes to leave the CPUs before each part.
QUIET_WAIT_S = 20.0

PROTOCOL = f"""\
- **Data**: `d = matfact.make_synthetic({N_USERS:_}, {N_ITEMS:_}, N, random_state={DATA_SEED})`
  for N = 10M and 30M (`--quick`: 1M), written to Parquet files of {ROWS_PER_FILE:_} rows
  (columns `user`, `item` int32, `rating` float32). Every library reads those files and
  uses the ratings as implicit weights with confidence 1 + α·r (Spark's `implicitPrefs`).
- **Parameters**: k = {K}, α = {ALPHA:g}, λ = {REG:g}; matfact: CG with {CG_STEPS} steps,
  `reg_exponent=0`, `init_std={INIT_STD:g}`, `random_state={SEED}`.
- **Local**: `ImplicitALS(..., n_threads={THREADS})` on `Interactions.from_arrays(user, item,
  weights=rating)`; a 1-iteration warm-up fit, then a {ITERATIONS}-iteration fit whose
  callback reports each iteration's seconds: the median of the last {ITERATIONS - 1}.
- **Dask**: `LocalCluster(n_workers={WORKERS}, threads_per_worker=1, processes=True)` (real
  processes over loopback TCP); `DaskImplicitALS(...).fit(dd.read_parquet(dir),
  client=client, weight="rating")` for {ITERATIONS} iterations (default `n_blocks` = 2 user
  and 2 item blocks, `transfer="auto"`); per-iteration = the median of the last
  {ITERATIONS - 1} iterations' seconds (both half-steps with every transfer and the driver's
  Gram matrices). *Setup* = the rest of the fit's wall time (two passes over the Parquet
  files, the repartitioning into blocks, gathering the seen-items matrix). Its factors are
  compared with the local fit's (same seed, same {ITERATIONS} iterations).
- **Spark**: `pyspark.ml.recommendation.ALS(rank={K}, regParam={REG:g}, alpha={ALPHA:g},
  implicitPrefs=True, seed={SEED})` on `local[{THREADS}]` (driver memory
  {SPARK_DRIVER_MEMORY}), the Parquet files read and cached first;
  per-iteration = (fit with {SPARK_ITERATIONS[1]} iterations − fit with
  {SPARK_ITERATIONS[0]}) / {SPARK_ITERATIONS[1] - SPARK_ITERATIONS[0]}. The Spark parts run
  last, largest size first; when the {SPARK_ITERATIONS[1]}-iteration fit would not end
  before the run's deadline (`--spark-until HH:MM`; without one: when the 1-iteration fit
  took over {SPARK_LIMIT_S:.0f} s) a 2-iteration fit replaces it, per-iteration = fit(2) −
  fit(1), and the table names the formula used. (Spark scales λ by each row's number of
  ratings: not exactly the same objective, the same work per iteration.)
- **Goals** (from the issue), at {GOAL_SIZE / 1e6:g}M: Dask ≤ {GOAL_DASK_OVER_LOCAL:g}× the
  local per-iteration time, and ≥ {GOAL_SPARK_OVER_DASK:g}× faster than Spark.
- Every part runs in a fresh process with `OPENBLAS_NUM_THREADS=1`; before each, the suite
  waits (up to {QUIET_WAIT_S:.0f} s, not with `--quick`) for other processes to use < 0.3 cores.
"""


# ------------------------------------------------------------------------------------ parts
def _label(n: int) -> str:
    return f"{n / 1e6:g}M"


def _part_data(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    import matfact

    start = time.perf_counter()
    data = matfact.make_synthetic(N_USERS, N_ITEMS, args.size, random_state=DATA_SEED)
    frame = pd.DataFrame({"user": data.user_codes.astype(np.int32),
                          "item": data.item_codes.astype(np.int32),
                          "rating": data.ratings.astype(np.float32)})
    del data
    out = Path(args.dir) / "parquet"
    out.mkdir(parents=True, exist_ok=True)
    n_files = max(2, -(-len(frame) // ROWS_PER_FILE))
    bounds = np.linspace(0, len(frame), n_files + 1).astype(np.int64)
    for f in range(n_files):
        frame.iloc[bounds[f]:bounds[f + 1]].to_parquet(out / f"part-{f:03d}.parquet",
                                                      index=False)
    return {"files": n_files, "rows": len(frame), "seconds": time.perf_counter() - start}


def _ials(max_iter: int, cls: Any = None) -> Any:
    import matfact

    cls = cls or matfact.ImplicitALS
    return cls(n_factors=K, alpha=ALPHA, reg=REG, reg_exponent=0.0, cg_steps=CG_STEPS,
               init_std=INIT_STD, max_iter=max_iter, n_threads=THREADS, random_state=SEED)


def _part_local(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    import matfact

    frame = pd.read_parquet(Path(args.dir) / "parquet")
    data = matfact.Interactions.from_arrays(frame["user"].to_numpy(), frame["item"].to_numpy(),
                                            weights=frame["rating"].to_numpy())
    del frame
    _ials(1).fit(data, progress=False)
    seconds: list[float] = []
    gc.collect()
    start = time.perf_counter()
    model = _ials(ITERATIONS).fit(data, progress=False,
                                  callback=lambda it, info: seconds.append(info["seconds"]))
    wall = time.perf_counter() - start
    np.save(Path(args.dir) / "local_users.npy", model.user_factors_)
    np.save(Path(args.dir) / "local_items.npy", model.item_factors_)
    return {"iteration_s": seconds, "iteration_median_s": statistics.median(seconds[1:]),
            "wall_s": wall, "nnz": data.nnz}


def _relative(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(a.astype(np.float64) - b)
    return {"max_over_max": float(diff.max() / np.abs(b).max()),
            "frobenius": float(np.linalg.norm(diff) / np.linalg.norm(b.astype(np.float64)))}


def _part_dask(args: argparse.Namespace) -> dict[str, Any]:
    import dask.dataframe as dd

    from distributed import Client, LocalCluster
    from matfact.distributed import DaskImplicitALS

    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    try:
        with Client(cluster) as client:
            seconds: list[float] = []
            gc.collect()
            start = time.perf_counter()
            ratings = dd.read_parquet(Path(args.dir) / "parquet",
                                      columns=["user", "item", "rating"])
            model = _ials(ITERATIONS, DaskImplicitALS).fit(
                ratings, client=client, weight="rating", progress=False,
                callback=lambda it, info: seconds.append(info["seconds"]))
            wall = time.perf_counter() - start
    finally:
        cluster.close()
    out: dict[str, Any] = {"iteration_s": seconds,
                           "iteration_median_s": statistics.median(seconds[1:]),
                           "wall_s": wall, "setup_s": wall - sum(seconds),
                           "transfer": model.transfer_, "nnz": int(model.seen_.nnz)}
    users = Path(args.dir) / "local_users.npy"
    if users.exists():
        out["vs_local_users"] = _relative(model.user_factors_, np.load(users))
        out["vs_local_items"] = _relative(model.item_factors_,
                                          np.load(Path(args.dir) / "local_items.npy"))
    return out


def _part_spark(args: argparse.Namespace) -> dict[str, Any]:
    from pyspark.ml.recommendation import ALS as SparkALS
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master(f"local[{THREADS}]").appName("matfact-dask-bench")
             .config("spark.driver.memory", SPARK_DRIVER_MEMORY)
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", str(2 * THREADS))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    fits: dict[str, float] = {}
    low, high = SPARK_ITERATIONS
    try:
        ratings = spark.read.parquet(str(Path(args.dir) / "parquet")).cache()
        count = ratings.count()
        for iterations in (low, high, low + 1):
            if iterations != low:
                # The 6-iteration fit (the protocol) if it fits in the time left, else a
                # 2-iteration fit (per-iteration = fit(2) - fit(1)), else nothing.
                needed = fits[str(low)] * iterations * 1.2 + 30.0
                too_long = (fits[str(low)] > SPARK_LIMIT_S if args.until is None
                            else time.time() + needed > args.until)
                if too_long or (iterations == low + 1 and str(high) in fits):
                    continue
            als = SparkALS(rank=K, maxIter=iterations, regParam=REG, alpha=ALPHA,
                           implicitPrefs=True, userCol="user", itemCol="item",
                           ratingCol="rating", seed=SEED)
            gc.collect()
            start = time.perf_counter()
            model = als.fit(ratings)
            model.userFactors.count()  # make sure the factors exist
            fits[str(iterations)] = time.perf_counter() - start
            print(f"    spark: {iterations} iteration(s) in {fits[str(iterations)]:.1f} s",
                  flush=True)
            # What is measured so far survives the process being stopped at the deadline.
            args.out.write_text(json.dumps(_spark_result(fits, count)), encoding="utf-8")
    finally:
        spark.stop()
    return _spark_result(fits, count)


def _spark_result(fits: dict[str, float], count: int) -> dict[str, Any]:
    low, high = SPARK_ITERATIONS
    per, method = None, None
    for other in (high, low + 1):
        if str(other) in fits:
            per = (fits[str(other)] - fits[str(low)]) / (other - low)
            method = f"(fit({other}) − fit({low})) / {other - low}"
            break
    skipped = None
    if per is None:
        skipped = (f"{low}-iteration fit took {fits[str(low)]:.0f} s; no time for a second fit"
                   if str(low) in fits else "no fit ended before the deadline")
    return {"fit_s": fits, "iteration_s": per, "method": method, "rows": count,
            "skipped": skipped}


_TASKS = {"data": _part_data, "local": _part_local, "dask": _part_dask, "spark": _part_spark}


def _run_part(task: str, size: int, directory: Path,
              until: float | None = None) -> dict[str, Any]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    extra = [] if until is None else ["--until", str(until)]
    with tempfile.TemporaryDirectory(prefix="matfact-dask-") as tmp:
        out = Path(tmp) / "result.json"
        start = time.perf_counter()
        timeout = None if until is None else max(1.0, until - time.time())
        command = [sys.executable, "-m", "benchmarks.dask_als", "part", task, "--size",
                   str(size), "--dir", str(directory), "--out", str(out), *extra]
        # A session of its own, so that stopping it at the deadline also stops what it
        # started (Spark's JVM).
        process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            # Stopped at the deadline: keep what the part wrote so far, and say so.
            if not out.exists():
                return {"iteration_s": None, "error": "stopped at the deadline, nothing measured"}
            result = json.loads(out.read_text(encoding="utf-8"))
            result["stopped_at_deadline"] = True
            if result.get("skipped"):
                result["skipped"] += " (stopped at the deadline)"
            return result
        if code != 0:
            raise subprocess.CalledProcessError(code, command)
        result = json.loads(out.read_text(encoding="utf-8"))
        result["process_s"] = time.perf_counter() - start
        return result


# ------------------------------------------------------------------------------------ tables
def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def assemble(env: dict[str, Any], sizes: list[dict[str, Any]], quick: bool) -> dict[str, Any]:
    """The suite's result (protocol and tables) from the raw per-size results."""
    rows, details, goals = [], [], []
    for r in sizes:
        local, dask, spark = r["local"], r["dask"], r["spark"]
        d_over_l = _ratio(dask["iteration_median_s"], local["iteration_median_s"])
        s_over_d = _ratio(spark.get("iteration_s"), dask["iteration_median_s"])
        rows.append([_label(r["size"]), fmt_seconds(local["iteration_median_s"]),
                     fmt_seconds(dask["iteration_median_s"]),
                     (fmt_seconds(spark["iteration_s"])
                      + ("" if spark.get("method", "").startswith("(fit(6)")
                         else f" ({spark.get('method')})"))
                     if spark.get("iteration_s") else
                     f"— ({spark.get('skipped') or spark.get('error')})",
                     fmt_ratio(d_over_l), fmt_ratio(s_over_d)])
        transfer = dask["transfer"]
        users = dask.get("vs_local_users", {})
        items = dask.get("vs_local_items", {})
        nan = float("nan")
        details.append([_label(r["size"]), fmt_seconds(dask["setup_s"]),
                        f"{transfer['mode']['user']}/{transfer['mode']['item']}",
                        f"{transfer['bytes_from_driver'] / 1e6:.1f} MB",
                        f"{transfer['bytes_to_workers'] / 1e6:.1f} MB",
                        f"{transfer['bytes_from_workers'] / 1e6:.1f} MB",
                        f"{users.get('max_over_max', nan):.1e} / "
                        f"{items.get('max_over_max', nan):.1e}",
                        f"{users.get('frobenius', nan):.1e} / {items.get('frobenius', nan):.1e}"])
        if r["size"] == GOAL_SIZE or quick:
            goals.append([f"Dask ≤ {GOAL_DASK_OVER_LOCAL:g}× local per iteration",
                          _label(r["size"]), fmt_ratio(d_over_l),
                          "yes" if d_over_l is not None and d_over_l <= GOAL_DASK_OVER_LOCAL
                          else "no"])
            goals.append([f"Dask ≥ {GOAL_SPARK_OVER_DASK:g}× faster than Spark",
                          _label(r["size"]), fmt_ratio(s_over_d),
                          "—" if s_over_d is None else
                          ("yes" if s_over_d >= GOAL_SPARK_OVER_DASK else "no")])
    tables = [
        {"title": "Implicit ALS, time per iteration (k = 64, 2 cores)",
         "columns": ["interactions", "ImplicitALS local (2 threads)",
                     "DaskImplicitALS (2 workers × 1 thread)", "Spark ALS local[2]",
                     "Dask / local", "Spark / Dask"],
         "rows": rows},
        {"title": "DaskImplicitALS: setup, transfers and parity with the local fit",
         "columns": ["interactions", "setup (read + repartition + seen)",
                     "transfer user/item", "driver → workers / iteration",
                     "received by workers / iteration", "workers → driver / iteration",
                     "max abs(Δ) / max (users / items)",
                     "‖Δ‖ / ‖local‖, Frobenius (users / items)"],
         "rows": details,
         "note": "Parity: after the same 4 iterations from the same seed, local factors "
                 "against the cluster's (each row's arithmetic does not depend on the thread "
                 "count or on the blocks, so 0 means equal bit for bit)."},
        {"title": "Goals", "columns": ["goal", "data", "measured", "met"], "rows": goals},
    ]
    return {"suite": "dask_als",
            "title": "Implicit ALS on a Dask cluster against local and Spark",
            "quick": quick, "environment": env, "protocol": PROTOCOL, "tables": tables,
            "results": {"sizes": sizes}}


def run(quick: bool = False, until: float | None = None) -> dict[str, Any]:
    """Run the suite (each part in its own process) and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        1M interactions only, no waiting for a quiet machine.
    until : float, default=None
        A deadline (Unix time) for the Spark parts, which run last, largest size first:
        Spark's 6-iteration fit is replaced by a 2-iteration one, or skipped, when it
        would not end in time (the table says which).

    Returns
    -------
    dict
        ``suite``, ``title``, ``quick``, ``environment``, ``protocol``, ``tables``,
        ``results``.
    """
    env = environment()
    sizes = list(QUICK_SIZES if quick else SIZES)
    entries: dict[int, dict[str, Any]] = {}
    directories = {size: Path(tempfile.mkdtemp(prefix=f"matfact-dask-{_label(size)}-"))
                   for size in sizes}
    try:
        for size in sizes:
            print(f"  {_label(size)}: data", flush=True)
            entries[size] = {"size": size,
                             "data": _run_part("data", size, directories[size])}
            for task in ("local", "dask"):
                entries[size][f"{task}_quiet"] = None if quick else wait_for_quiet(QUIET_WAIT_S)
                print(f"  {_label(size)}: {task}", flush=True)
                entries[size][task] = _run_part(task, size, directories[size])
        for size in sorted(sizes, reverse=True):  # the goal size first
            entries[size]["spark_quiet"] = None if quick else wait_for_quiet(QUIET_WAIT_S)
            print(f"  {_label(size)}: spark", flush=True)
            try:
                entries[size]["spark"] = _run_part("spark", size, directories[size], until)
            except subprocess.CalledProcessError as err:
                entries[size]["spark"] = {"iteration_s": None,
                                          "error": f"failed ({err.returncode})"}
    finally:
        for directory in directories.values():
            shutil.rmtree(directory, ignore_errors=True)
    result = assemble(env, [entries[size] for size in sizes], quick)
    print_tables(result)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.dask_als [--quick] [--out DIR]``, or one ``part``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_als")
    parser.add_argument("mode", nargs="?", choices=["run", "part"], default="run")
    parser.add_argument("task", nargs="?", choices=list(_TASKS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--size", type=int, default=QUICK_SIZES[0])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--until", type=float, default=None,
                        help="deadline (Unix time) for the Spark fits")
    parser.add_argument("--spark-until", default=None, metavar="HH:MM",
                        help="deadline (UTC, today) for the Spark fits")
    args = parser.parse_args(argv)
    if args.mode == "part":
        result = _TASKS[args.task](args)
        args.out.write_text(json.dumps(result), encoding="utf-8")
        return 0
    until = args.until
    if args.spark_until:
        import datetime

        hour, minute = (int(x) for x in args.spark_until.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        until = now.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()
    result = run(quick=args.quick, until=until)
    print(f"wrote {write_results(result, args.out or RESULTS_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
