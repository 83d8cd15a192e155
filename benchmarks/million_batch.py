"""Exact batch scoring (issue 21): top-10 for every user of the synthetic 10M model.

The batch part of the ``million`` suite: ``model.recommend_all`` (blocked matrix
products plus the one top-k) over all 100,000 users × 20,000 items of
``make_synthetic(100_000, 20_000, 10_000_000, implicit=True, random_state=0)`` fitted by
``ImplicitALS(n_factors=64)``, against the machine's float32 GEMM rate measured in the
same run and against implicit's batch ``recommend`` on the same factors and exclusions.

:func:`run_batch` returns the tables and goals; run it with implicit installed
(``/work/benchvenv/bin/python -m benchmarks.million_batch [--quick]`` from the
repository root, ``PYTHONPATH=src:.``). The fitted model is cached under
``$MATFACT_BENCH_CACHE`` (default ``/tmp/matfact-bench``), never in the repository.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    QUIET_CORES,
    QUIET_WAIT_S,
    OtherCpu,
    environment,
    fmt_ratio,
    fmt_seconds,
    print_tables,
    wait_for_quiet,
    write_results,
)

__all__ = ["PROTOCOL", "run_batch", "run"]

FULL = (100_000, 20_000, 10_000_000)
QUICK = (10_000, 2_000, 200_000)
K = 64
N = 10
DATA_SEED = 0
SEED = 0
REPEATS = 3
PEAK_SIZE = 4096
GOAL_GEMM_FRACTION = 0.5
GOAL_SPEEDUP = 2.0

PROTOCOL = f"""\
- **Model**: `ImplicitALS(n_factors={K}, random_state={SEED})` fitted on
  `make_synthetic({FULL[0]:_}, {FULL[1]:_}, {FULL[2]:_}, implicit=True,
  random_state={DATA_SEED})` (quick run: {QUICK[0]:_} × {QUICK[1]:_}, {QUICK[2]:_}
  interactions), fitted once and cached under `$MATFACT_BENCH_CACHE` (default
  `/tmp/matfact-bench`).
- **Peak**: the machine's float32 GEMM rate, measured in the same run: NumPy
  `a @ a` of a {PEAK_SIZE} × {PEAK_SIZE} float32 matrix on BLAS's default threads,
  2·{PEAK_SIZE}³ flops, median of 3 after a warm-up.
- **matfact**: `for block in model.recommend_all({N}, exclude_seen=True)` over every user
  (default blocks and threads: one block per core, each scored and ranked on one thread),
  wall clock, median of {REPEATS} (quick: 1). Its **scoring part** is timed alone: the same
  blocks, the same workers, `model.score_users(block)` only. GEMM rate = 2·users·items·k /
  time, for the scoring part and for the whole run.
- **implicit**: `implicit.cpu.als.AlternatingLeastSquares(factors={K})` with
  `user_factors` / `item_factors` set to matfact's (float32), `recommend(all user ids,
  model.seen_ as float32 CSR, N={N}, filter_already_liked_items=True)`, median of
  {REPEATS} (quick: 1), with BLAS on its default threads and on one thread (what implicit
  recommends); the faster is the comparison.
- **Memory**: peak RSS (`VmHWM`, reset before) above the RSS before one more
  `recommend_all` pass whose lists are not kept.
- **Agreement**: the lists of `recommend_all` against `model.recommend` of the same
  blocks of users on one thread (its contract: identical ids and scores), against
  `model.recommend(all users)` (2,048 users per product on BLAS's threads, whose float32
  rounding differs in the last bit) and against implicit's lists.
- **Parquet**: `matfact.io.write_recommendations(model, path, {N})` (scoring included),
  one run, and the file size.
- Each timed run first waits (up to {QUIET_WAIT_S:.0f} s) for other processes to use less
  than {QUIET_CORES:g} cores; the tables give the cores they used meanwhile.
"""


# ------------------------------------------------------------------------------------ helpers
def _cache_dir() -> Path:
    path = Path(os.environ.get("MATFACT_BENCH_CACHE") or "/tmp/matfact-bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _model(shape: tuple[int, int, int]) -> tuple[Any, float | None]:
    """The fitted model of ``shape`` (users, items, interactions), from the cache if there."""
    import matfact

    users, items, nnz = shape
    path = _cache_dir() / f"million_batch_ials_{users}x{items}_{nnz}_k{K}_seed{SEED}.zip"
    if path.exists():
        return matfact.load(path), None
    print(f"  fitting ImplicitALS(n_factors={K}) on {users:_} × {items:_}, {nnz:_}", flush=True)
    data = matfact.make_synthetic(users, items, nnz, implicit=True, random_state=DATA_SEED)
    start = time.perf_counter()
    model = matfact.ImplicitALS(n_factors=K, random_state=SEED).fit(data, progress=False)
    fit_s = time.perf_counter() - start
    model.save(path)
    return model, fit_s


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # VmHWM back to the current RSS
        return True
    except OSError:
        return False


def _timed(func: Any, repeats: int, wait: bool) -> tuple[list[float], list[float | None], Any]:
    times: list[float] = []
    others: list[float | None] = []
    result = None
    for _ in range(repeats):
        if wait:
            wait_for_quiet()
        gc.collect()
        meter = OtherCpu()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
        cores = meter.cores()
        others.append(None if cores is None else round(cores, 3))
    return times, others, result


def _peak_gflops(repeats: int = 3) -> float:
    a = np.random.default_rng(0).standard_normal((PEAK_SIZE, PEAK_SIZE), dtype=np.float32)
    a @ a
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * PEAK_SIZE**3 / statistics.median(times) / 1e9


def _gathered(blocks: Any) -> tuple[np.ndarray, np.ndarray]:
    ids, scores = [], []
    for block in blocks:
        ids.append(block.ids)
        scores.append(block.scores)
    return np.concatenate(ids), np.concatenate(scores)


def _agreement(ids_a: np.ndarray, scores_a: np.ndarray, ids_b: np.ndarray,
               scores_b: np.ndarray) -> dict[str, Any]:
    """Identical lists, and how far apart the scores rank by rank are where they differ."""
    same_rows = (ids_a == ids_b).all(axis=1)
    diff = np.abs(scores_a.astype(np.float64) - scores_b.astype(np.float64))
    scale = np.maximum(np.abs(scores_a), np.abs(scores_b)).astype(np.float64)
    return {"users": int(len(ids_a)), "identical_lists": int(same_rows.sum()),
            "identical_slots": float((ids_a == ids_b).mean()),
            "max_abs_score_diff": float(np.nanmax(diff)) if diff.size else 0.0,
            "max_rel_score_diff": float(np.nanmax(diff / np.where(scale > 0, scale, 1.0)))
            if diff.size else 0.0}


# ------------------------------------------------------------------------------------ parts
def _matfact(model: Any, repeats: int, wait: bool) -> dict[str, Any]:
    from matfact._threads import resolve_n_threads, single_thread
    from matfact.models.batch import block_rows

    n_users, n_items = model.n_users_, model.n_items_
    rows = block_rows(n_items)
    workers = resolve_n_threads(None, work=n_users * n_items)
    codes = np.arange(n_users)
    # warm-up: numba kernels, BLAS threads, the seen matrix's pages
    _gathered(model.recommend_all(N, users=model.user_index_.ids[:2 * rows], progress=False))

    def score_only() -> None:
        def score(start: int) -> None:
            with single_thread():
                model.score_users(codes[start:start + rows])

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(score, range(0, n_users, rows)))

    print(f"  matfact: scoring part alone ({rows} users a block, {workers} workers)", flush=True)
    score_times, score_others, _ = _timed(score_only, repeats, wait)
    print("  matfact: recommend_all", flush=True)
    times, others, (ids, scores) = _timed(
        lambda: _gathered(model.recommend_all(N, progress=False)), repeats, wait)
    print("  matfact: memory of one more pass", flush=True)
    gc.collect()
    hwm_reset = _reset_peak()
    before = _status("VmRSS")
    for _ in model.recommend_all(N, progress=False):
        pass
    peak = _status("VmHWM") - before
    print("  matfact: recommend(all users), and recommend of the same blocks on one thread",
          flush=True)
    rec_times, rec_others, (rec_ids, rec_scores) = _timed(
        lambda: model.recommend(model.user_index_.ids, N), 1, wait)
    with single_thread():
        parts = [model.recommend(model.user_index_.ids[s:s + rows], N)
                 for s in range(0, n_users, rows)]
    by_block = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return {
        "block_rows": rows, "workers": workers, "block_bytes": rows * n_items * 4,
        "score_times_s": score_times, "score_others": score_others,
        "times_s": times, "others": others,
        "recommend_times_s": rec_times, "recommend_others": rec_others,
        "peak_rss_delta": peak, "rss_before": before, "vm_hwm_reset": hwm_reset,
        "same_blocks": _agreement(ids, scores, *by_block),
        "recommend_all_users": _agreement(ids, scores, rec_ids, rec_scores),
        "ids": ids, "scores": scores,
    }


def _implicit(model: Any, repeats: int, wait: bool) -> dict[str, Any]:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError as err:
        return {"skipped": f"implicit is not installed here ({err})"}
    import warnings

    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its BLAS-threads advice: we time both ways
        als = AlternatingLeastSquares(factors=K, random_state=SEED)
    als.user_factors = np.ascontiguousarray(model.user_factors_, dtype=np.float32)
    als.item_factors = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
    seen = model.seen_.tocsr().astype(np.float32)
    users = np.arange(model.n_users_)

    def recommend() -> tuple[np.ndarray, np.ndarray]:
        return als.recommend(users, seen, N=N, filter_already_liked_items=True)

    recommend()  # warm-up
    out: dict[str, Any] = {}
    for label, blas in (("blas_default", None), ("blas_1", 1)):
        print(f"  implicit: recommend, BLAS {'default threads' if blas is None else '1 thread'}",
              flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if blas is None:
                times, others, result = _timed(recommend, repeats, wait)
            else:
                with threadpool_limits(blas, "blas"):
                    times, others, result = _timed(recommend, repeats, wait)
        out[label] = {"times_s": times, "others": others}
    out["ids"], out["scores"] = result
    import implicit

    out["version"] = implicit.__version__
    return out


def _parquet(model: Any, wait: bool) -> dict[str, Any]:
    from matfact.io import write_recommendations

    with tempfile.TemporaryDirectory(prefix="matfact-batch-") as tmp:
        path = Path(tmp) / "recs.parquet"
        print("  matfact: write_recommendations to Parquet", flush=True)
        times, others, written = _timed(
            lambda: write_recommendations(model, path, N, progress=False), 1, wait)
        size = path.stat().st_size
    return {"times_s": times, "others": others, "rows": written.n_rows, "bytes": size}


# ------------------------------------------------------------------------------------ tables
def _gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9


def _cores(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known):.2f}" if known else "—"


def _mark(ok: bool | None) -> str:
    return "—" if ok is None else "✓" if ok else "✗"


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def _tables(res: dict[str, Any], quick: bool) -> tuple[list[dict[str, Any]], list[list[str]]]:
    n_users, n_items = res["n_users"], res["n_items"]
    flops = 2.0 * n_users * n_items * K
    peak = res["peak_gflops"]
    m, imp, pq = res["matfact"], res["implicit"], res["parquet"]
    t_score = statistics.median(m["score_times_s"])
    t_all = statistics.median(m["times_s"])
    t_rec = statistics.median(m["recommend_times_s"])
    rows = [["peak: NumPy float32 GEMM, 4096²", "—", f"{peak:.0f}", "100%", "—"]]

    def row(label: str, seconds: float, others: list) -> list[str]:
        rate = _gflops(flops, seconds)
        return [label, fmt_seconds(seconds), f"{rate:.0f}", f"{rate / peak:.0%}", _cores(others)]

    rows.append(row("matfact scoring part alone (`score_users` per block)", t_score,
                    m["score_others"]))
    rows.append(row(f"matfact `recommend_all({N})` (scores, exclusions, top-{N})", t_all,
                    m["others"]))
    rows.append(row(f"matfact `recommend(all users, {N})` (before: 2,048 users a product)",
                    t_rec, m["recommend_others"]))
    best_imp = None
    if "skipped" not in imp:
        for label, key in (("implicit `recommend`, BLAS default threads", "blas_default"),
                           ("implicit `recommend`, BLAS 1 thread", "blas_1")):
            seconds = statistics.median(imp[key]["times_s"])
            rows.append(row(label, seconds, imp[key]["others"]))
            best_imp = seconds if best_imp is None else min(best_imp, seconds)
    t_pq = pq["times_s"][0]
    rows.append(row("matfact `write_recommendations` to Parquet (scoring included)", t_pq,
                    pq["others"]))
    speedup = None if best_imp is None else best_imp / t_all
    same, full = m["same_blocks"], m["recommend_all_users"]
    agreement = [
        ["`recommend` of the same blocks, one thread (the contract)",
         f"{same['identical_lists']:,} / {same['users']:,}",
         f"{same['max_abs_score_diff']:.2g}"],
        ["`recommend(all users)` (other batching and BLAS threads)",
         f"{full['identical_lists']:,} / {full['users']:,}",
         f"{full['max_abs_score_diff']:.2g} (rel. {full['max_rel_score_diff']:.2g})"],
    ]
    if "agreement" in imp:
        a = imp["agreement"]
        agreement.append(["implicit's lists (same factors, same exclusions)",
                          f"{a['identical_lists']:,} / {a['users']:,}",
                          f"{a['max_abs_score_diff']:.2g} (rel. {a['max_rel_score_diff']:.2g})"])
    budget = 2 * m["workers"] * m["block_bytes"] + 64 * 2**20
    memory = [[f"{m['workers']} × {m['block_rows']} users × {n_items:,} items × 4 B",
               _mib(m["workers"] * m["block_bytes"]), _mib(m["rss_before"]),
               _mib(m["peak_rss_delta"]), _mib(n_users * n_items * 4), _mib(budget),
               _mark(m["peak_rss_delta"] <= budget)]]
    label = f"{n_users:,} × {n_items:,}"
    goals = [
        [f"scoring part ≥ {GOAL_GEMM_FRACTION:.0%} of the float32 GEMM rate", label,
         f"{_gflops(flops, t_score) / peak:.0%} ({_gflops(flops, t_score):.0f} of "
         f"{peak:.0f} GFLOP/s)", _mark(_gflops(flops, t_score) / peak >= GOAL_GEMM_FRACTION)],
        [f"recommend_all ≥ {GOAL_SPEEDUP:g}× faster than implicit's batch recommend", label,
         "not measured (implicit missing)" if speedup is None else fmt_ratio(speedup),
         _mark(None if speedup is None else speedup >= GOAL_SPEEDUP)],
        ["memory bounded by a block (peak RSS above before ≤ 2 × blocks in flight + 64 MiB)",
         label, _mib(m["peak_rss_delta"]), _mark(m["peak_rss_delta"] <= budget)],
        ["results identical to recommend (same blocks)", label,
         f"{same['identical_lists']:,} / {same['users']:,} lists, score diff "
         f"{same['max_abs_score_diff']:.2g}",
         _mark(same["identical_lists"] == same["users"] and same["max_abs_score_diff"] == 0)],
    ]
    quick_note = " Quick run: 10,000 × 2,000, one timed run each, no waiting." if quick else ""
    tables = [
        {"title": f"Exact top-{N} for every user: {label}, k = {K}",
         "columns": ["what", "time", "GFLOP/s (2·users·items·k / time)", "of peak",
                     "other processes' cores"],
         "rows": rows,
         "note": (f"{m['workers']} workers, {m['block_rows']} users a block. Speed-up over "
                  f"implicit (the faster of its two BLAS settings): "
                  f"{'—' if speedup is None else fmt_ratio(speedup)}. Parquet: "
                  f"{pq['rows']:,} rows, {pq['bytes'] / 2**20:.1f} MiB." + quick_note)},
        {"title": "Agreement of the lists of `recommend_all`",
         "columns": ["against", "identical lists", "largest score difference"],
         "rows": agreement,
         "note": ("float32 products round according to their shape and BLAS's thread count; "
                  "lists that differ swap items whose scores tie to that rounding.")},
        {"title": "Peak memory of `recommend_all`",
         "columns": ["blocks in flight", "their scores", "RSS before", "peak above before",
                     "full score matrix", "budget", "within"],
         "rows": memory,
         "note": ("Peak from VmHWM, reset before the pass; the lists were not kept. The RSS "
                  "before holds the model, the libraries and what the allocator kept of the "
                  "earlier passes' blocks, which a pass reuses: its peak above that is what "
                  "it allocates beyond them, whatever the number of users.")},
        {"title": "Goals", "columns": ["goal", "data", "measured", "met"], "rows": goals,
         "note": "From issue 21 (exact batch)."},
    ]
    return tables, goals


# ------------------------------------------------------------------------------------ suite
def run_batch(quick: bool = False) -> dict[str, Any]:
    """Run the exact batch part of the ``million`` suite and print its tables.

    Parameters
    ----------
    quick : bool, default=False
        10,000 users × 2,000 items, one timed run of each, no waiting for a quiet machine.

    Returns
    -------
    dict
        ``suite``, ``title``, ``quick``, ``environment``, ``protocol`` (markdown),
        ``tables`` (formatted, the last one the goals), ``goals`` (rows: goal, data,
        measured, met) and ``results`` (raw numbers).
    """
    env = environment()
    shape = QUICK if quick else FULL
    repeats, wait = (1, False) if quick else (REPEATS, True)
    model, fit_s = _model(shape)
    if wait:
        wait_for_quiet()
    print("  peak GEMM", flush=True)
    peak = _peak_gflops()
    mf = _matfact(model, repeats, wait)
    imp = _implicit(model, repeats, wait)
    if "skipped" not in imp:
        imp["agreement"] = _agreement(mf["ids"], mf["scores"], imp.pop("ids").astype(np.int64),
                                      imp.pop("scores"))
    pq = _parquet(model, wait)
    mf.pop("ids")
    mf.pop("scores")
    results = {"n_users": model.n_users_, "n_items": model.n_items_, "nnz": model.seen_.nnz,
               "fit_s": fit_s, "peak_gflops": peak, "matfact": mf, "implicit": imp,
               "parquet": pq}
    tables, goals = _tables(results, quick)
    result = {"suite": "million_batch", "title": "Exact batch scoring: every user's top-10",
              "quick": quick, "environment": env, "protocol": PROTOCOL, "tables": tables,
              "goals": goals, "results": results}
    print_tables(result)
    return result


#: The suite runner's name for it (``benchmarks.<suite>.run``).
run = run_batch


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="also write <DIR>/million_batch[-quick].json")
    args = parser.parse_args()
    outcome = run_batch(args.quick)
    if args.out is not None:
        print(f"wrote {write_results(outcome, args.out)}")
