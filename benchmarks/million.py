"""Catalogues of millions (issue 21): approximate top-k in process and over HTTP, against
implicit's faiss wrapper, and exact batch scoring of every user.

One process, one run, side by side:

- **model**: ``ImplicitALS(n_factors=64)`` fitted on ``make_synthetic(1_000_000,
  1_000_000, 30_000_000, implicit=True, random_state=0)`` (a real fit, ~1 minute here;
  cached as a model file under ``$MATFACT_BENCH_CACHE``, default ``/tmp/matfact-bench``,
  keyed by the sizes);
- **index**: ``model.build_index()`` with its defaults (recall target 0.95), its build
  time and memory, recall@10 against the exact top-10 (seen items excluded in both) over
  10,000 query users drawn with ``default_rng(0)``, and ``model.recommend([u], n=10,
  approximate=True)`` latency one query at a time;
- **implicit**: ``implicit.ann.faiss.FaissModel`` wrapping an
  ``AlternatingLeastSquares`` that holds the same factors (its ``fit`` builds the
  indexes; the ALS fit itself is skipped), at its defaults and at the smallest
  ``nprobe`` of a sweep whose recall reaches matfact's;
- **HTTP**: ``matfact serve --index approximate`` on that model file (index included):
  sequential and 32-connection top-10 requests, the server's RSS, and an item posted
  live, then looked for in the next requests;
- **exact batch**: :func:`benchmarks.million_batch.run_batch`.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import matfact
from benchmarks.common import BenchmarkSkipped, environment, print_tables, wait_for_quiet
from benchmarks.serve_load import _phase, _request, _serve, _stop

__all__ = ["run", "PROTOCOL", "GOALS"]

SIZES = (1_000_000, 1_000_000, 30_000_000)
QUICK_SIZES = (50_000, 50_000, 1_500_000)
FACTORS = 64
QUERIES, QUICK_QUERIES = 10_000, 1_000
SEQUENTIAL, CONCURRENT, CONNECTIONS = 3_000, 20_000, 32
GOALS = {"recall": 0.95, "p99_ms": 1.0, "http_p99_ms": 2.0, "rps": 3000.0, "build_s": 60.0,
         "index_memory": 2.0, "server_rss": 3.0}
#: The live item's weight from each of its 500 users (a play count): with weight 1 an item
#: placed from 500 users reaches almost no one's top 10 (0 of 2,000 in the quick model),
#: with 20 about a third of them.
LIVE_WEIGHT = 20.0
#: nprobe values tried for implicit's wrapper (its default nlist is 400, nprobe 20).
IMPLICIT_PROBES = (20, 40, 80, 160, 400)

PROTOCOL = f"""\
- Model: `ImplicitALS(n_factors={FACTORS})` fitted (default iterations) on
  `make_synthetic(1_000_000, 1_000_000, 30_000_000, implicit=True, random_state=0)` — a real
  fit, not a model made to look like one (`--quick`: 50,000 × 50,000, 1.5M interactions).
- Queries: {QUERIES:,} users drawn with `numpy.random.default_rng(0).choice(n_users, {QUERIES:,},
  replace=False)` (`--quick`: {QUICK_QUERIES:,}); exact truth: `model.recommend_codes(users, 10)`
  (every item scored, seen items excluded); recall@10 = |approximate ∩ exact| / 10 per user,
  mean and 5th percentile.
- matfact: `model.build_index()` (defaults: about √n lists, k-means on 32 vectors per list,
  `n_probe` calibrated to recall ≥ 0.95 by two standard errors on 1,000 trained users);
  latency of `model.recommend([user], n=10, approximate=True)` (the public call: ids in,
  ids and exact scores out, seen items excluded), one query at a time, after 200 warm-up
  queries; index memory = vectors + ids + centroids against the item factors' bytes.
- implicit {{implicit}}: `FaissModel(AlternatingLeastSquares(factors={FACTORS}) holding
  matfact's factors)`, `recommend(userid, user_items[userid], N=10,
  filter_already_liked_items=True)` one query at a time; its default (nlist 400, nprobe 20)
  and an nprobe sweep {IMPLICIT_PROBES}.
- HTTP: `matfact serve --index approximate` on the saved model (the index saved in the file),
  client as in the `serve_load` suite (raw asyncio sockets, same machine): {SEQUENTIAL:,}
  sequential top-10 requests, then {CONCURRENT:,} over {CONNECTIONS} connections; the server's
  RSS (`/proc/<pid>/status` VmRSS) after the phases, against the two factor tables' bytes.
  Live: 500 users who interacted with the most popular item post an interaction of weight
  20 with a new item (one request); the same ratings are applied to the benchmark's own copy of the
  model, whose exact top-10 of 2,000 random users says who should now get the item; the
  server is asked for those users' lists.
- Goals (issue 21): recall@10 ≥ {GOALS['recall']}; in-process p99 ≤ {GOALS['p99_ms']:g} ms;
  HTTP p99 ≤ {GOALS['http_p99_ms']:g} ms sequential, ≥ {GOALS['rps']:,.0f} requests/s at
  {CONNECTIONS} connections; build ≤ {GOALS['build_s']:g} s; index memory ≤
  {GOALS['index_memory']:g}× the item factors; server RSS ≤ {GOALS['server_rss']:g}× the two
  factor tables; against implicit's faiss wrapper, p99 no worse at recall no lower.
"""


def _cache_path(sizes: tuple[int, int, int]) -> Path:
    from benchmarks.million_batch import _cache_dir

    return _cache_dir() / f"million-{sizes[0]}x{sizes[1]}-{sizes[2]}-k{FACTORS}.zip"


def _model(quick: bool) -> tuple[Any, dict[str, Any]]:
    sizes = QUICK_SIZES if quick else SIZES
    path = _cache_path(sizes)
    if path.exists():
        start = time.perf_counter()
        model = matfact.load(path)
        return model, {"cached": str(path), "load_s": time.perf_counter() - start}
    start = time.perf_counter()
    data = matfact.make_synthetic(*sizes, implicit=True, random_state=0)
    made = time.perf_counter() - start
    start = time.perf_counter()
    model = matfact.ImplicitALS(n_factors=FACTORS, random_state=0).fit(data, progress=False)
    fitted = time.perf_counter() - start
    del data
    model.save(path)
    return model, {"generate_s": made, "fit_s": fitted}


def _recall(truth: np.ndarray, found: np.ndarray) -> np.ndarray:
    return np.array([len(set(t[t >= 0].tolist()) & set(f[f >= 0].tolist())) / max((t >= 0).sum(), 1)
                     for t, f in zip(truth, found, strict=True)])


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _matfact_index(model: Any, queries: np.ndarray, truth: np.ndarray,
                   recall: float = 0.95) -> dict[str, Any]:
    from matfact.models.ann import model_index

    start = time.perf_counter()
    model.build_index(recall=recall)
    build = time.perf_counter() - start
    index = model_index(model, "recommend")
    ids = model.user_index_.ids[queries]
    for user in ids[:200]:  # warm-up
        model.recommend([user], n=10, approximate=True)
    wait_for_quiet(max_wait=20)
    times, found = [], np.empty((len(ids), 10), np.int64)
    for row, user in enumerate(ids):
        start = time.perf_counter()
        got, _ = model.recommend([user], n=10, approximate=True)
        times.append(time.perf_counter() - start)
        found[row] = model.item_index_.get_indexer(got[0])
    recall = _recall(truth, found)
    return {"build_s": build, "settings": dict(model.ann_settings_),
            "index_bytes": index.nbytes, "item_factor_bytes": model.item_factors_.nbytes,
            "recall_mean": float(recall.mean()), "recall_p5": float(np.percentile(recall, 5)),
            **_percentiles(times)}


def _implicit(model: Any, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any] | None:
    try:
        import implicit
        from implicit.ann.faiss import FaissModel
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        return None
    als = AlternatingLeastSquares(factors=FACTORS, random_state=0)
    als.user_factors = np.ascontiguousarray(model.user_factors_, dtype=np.float32)
    als.item_factors = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
    als.fit = lambda *args, **kwargs: None  # the factors are matfact's: only the index is built
    wrapper = FaissModel(als, approximate_similar_items=False, use_gpu=False)
    start = time.perf_counter()
    wrapper.fit(model.seen_, show_progress=False)
    build = time.perf_counter() - start
    seen = model.seen_.tocsr()
    rows = []
    for probe in IMPLICIT_PROBES:
        wrapper.recommend_index.nprobe = probe
        for user in queries[:200]:
            wrapper.recommend(int(user), seen[int(user)], N=10)
        times, found = [], np.empty((len(queries), 10), np.int64)
        for row, user in enumerate(queries.tolist()):
            items = seen[user]
            start = time.perf_counter()
            got, _ = wrapper.recommend(user, items, N=10, filter_already_liked_items=True)
            times.append(time.perf_counter() - start)
            found[row] = -1
            found[row, :len(got)] = got
        recall = _recall(truth, found)
        rows.append({"nprobe": probe, "recall_mean": float(recall.mean()),
                     "recall_p5": float(np.percentile(recall, 5)), **_percentiles(times)})
        print(f"  implicit nprobe {probe}: recall {recall.mean():.4f}, "
              f"p99 {rows[-1]['p99_ms']:.3f} ms", flush=True)
    return {"version": implicit.__version__, "build_s": build, "nlist": wrapper.nlist,
            "rows": rows}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _http(model: Any, path: Path, quick: bool) -> dict[str, Any]:
    import urllib.request

    start = time.perf_counter()
    # It accepts connections once the model is loaded and its index ready.
    process, port = _serve(path, path.with_suffix(".sqlite"), ("--index", "approximate"))
    try:
        started = time.perf_counter() - start
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:
            health = json.load(r)
        rss_start = _rss_mib(process.pid)
        rng = np.random.default_rng(1)
        users = model.user_index_.ids

        def recs(count: int) -> list[bytes]:
            return [_request("GET", f"/users/{u}/recommendations?n=10")
                    for u in rng.choice(users, count)]

        scale = 0.1 if quick else 1.0
        asyncio.run(_phase(port, recs(300), 4))
        out: dict[str, Any] = {"start_s": started, "health_index": health.get("index"),
                               "rss_start_mib": rss_start}
        for shape, count, connections in (("sequential", SEQUENTIAL, 1),
                                           ("concurrent", CONCURRENT, CONNECTIONS)):
            wait_for_quiet(max_wait=20)
            phase = asyncio.run(_phase(port, recs(max(int(count * scale), connections)),
                                       connections))
            out[shape] = phase
            print(f"  HTTP {shape}: p50 {phase['p50_ms']:.2f} ms, p99 {phase['p99_ms']:.2f} ms, "
                  f"{phase['rps']:,.0f} req/s, failures {phase['failures']}", flush=True)
        out["rss_mib"] = _rss_mib(process.pid)
        # Live: a new item rated by the users of the most popular one.
        popular = int(np.argmax(model.item_popularity()))
        column = model.seen_.tocsc()[:, popular]
        raters = users[column.indices[:500]]
        new_item = int(model.item_index_.ids.max()) + 1
        body = json.dumps({"ratings": [{"user": int(u), "item": new_item, "rating": LIVE_WEIGHT}
                                       for u in raters]}).encode()
        write = asyncio.run(_phase(port, [_request("POST", "/ratings", body)], 1))
        # Who should get it: the same ratings applied in this process, lists ranked exactly.
        model.apply_ratings(raters, np.full(len(raters), new_item),
                            np.full(len(raters), LIVE_WEIGHT))
        asked = rng.choice(users, 2000, replace=False)
        exact = model.recommend(asked, n=10)[0]
        getters = asked[(exact == new_item).any(axis=1)]
        hits, first = 0, None
        for user in getters:
            start = time.perf_counter()
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/users/{user}/recommendations?n=10",
                    timeout=30) as r:
                answer = json.load(r)
            first = first if first is not None else time.perf_counter() - start
            hits += new_item in answer["items"]
        out["live"] = {"raters": int(len(raters)), "write_failures": write["failures"],
                       "first_request_ms": None if first is None else first * 1e3,
                       "asked": int(len(asked)), "getters": int(len(getters)),
                       "lists_with_it": hits}
        print(f"  live item: exact lists of {len(getters)} of {len(asked):,} random users hold "
              f"it; the server's lists of {hits} of them", flush=True)
        return out
    finally:
        _stop(process)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def run(quick: bool = False) -> dict[str, Any]:
    """Run the suite; print and return its tables.

    Parameters
    ----------
    quick : bool, default=False
        50,000 × 50,000 with 1.5M interactions and 1,000 query users.
    """
    try:
        import faiss  # noqa: F401
    except ImportError:
        raise BenchmarkSkipped("faiss is not installed (pip install 'matfact[ann]')") from None
    env = environment()
    model, made = _model(quick)
    n_items = model.n_items_  # before the live item the HTTP part adds
    print(f"  model: {model.n_users_:,} users x {model.n_items_:,} items, {made}", flush=True)
    queries = np.sort(np.random.default_rng(0).choice(
        model.n_users_, QUICK_QUERIES if quick else QUERIES, replace=False))
    start = time.perf_counter()
    truth = model.recommend_codes(queries, 10)[0]
    truth_s = time.perf_counter() - start
    runs = {}
    for target in (0.99, 0.95):  # the default (0.95) last: the file served below holds it
        runs[target] = _matfact_index(model, queries, truth, target)
        print(f"  matfact recall={target}: build {runs[target]['build_s']:.1f} s, recall "
              f"{runs[target]['recall_mean']:.4f} (p5 {runs[target]['recall_p5']:.2f}), p50 "
              f"{runs[target]['p50_ms']:.3f} ms, p99 {runs[target]['p99_ms']:.3f} ms, "
              f"{runs[target]['settings']}", flush=True)
    ours = runs[0.95]
    theirs = _implicit(model, queries, truth)
    with tempfile.TemporaryDirectory(prefix="matfact-million-") as tmp:
        path = Path(tmp) / "model.zip"
        model.save(path)
        http = _http(model, path, quick)
    factor_bytes = model.user_factors_.nbytes + model.item_factors_.nbytes
    batch = None
    try:
        from benchmarks.million_batch import run_batch
    except ImportError:
        run_batch = None
    if run_batch is not None:
        batch = run_batch(quick)

    # ------------------------------------------------------------------ tables
    index_rows = [["matfact `recommend(..., approximate=True)`",
                   f"{run['settings']['n_lists']} lists, n_probe {run['settings']['n_probe']} "
                   f"(calibrated to recall {target})"
                   + (" (default)" if target == 0.95 else ""), f"{run['build_s']:.1f} s",
                   f"{run['recall_mean']:.4f}", f"{run['recall_p5']:.2f}",
                   f"{run['p50_ms']:.3f} ms", f"{run['p99_ms']:.3f} ms"]
                  for target, run in sorted(runs.items())]
    if theirs:
        for row in theirs["rows"]:
            index_rows.append([f"implicit {theirs['version']} FaissModel",
                               f"{theirs['nlist']} lists, nprobe {row['nprobe']}"
                               + (" (default)" if row["nprobe"] == 20 else ""),
                               f"{theirs['build_s']:.1f} s", f"{row['recall_mean']:.4f}",
                               f"{row['recall_p5']:.2f}", f"{row['p50_ms']:.3f} ms",
                               f"{row['p99_ms']:.3f} ms"])
    memory = ours["index_bytes"] / ours["item_factor_bytes"]
    rss = http["rss_mib"] * 2**20 / factor_bytes
    goals = [
        ["recall@10 (mean over the queries)", f"{ours['recall_mean']:.4f}",
         f"≥ {GOALS['recall']}", "✓" if ours["recall_mean"] >= GOALS["recall"] else "✗"],
        ["in-process p99, top-10 with exclude_seen", f"{ours['p99_ms']:.3f} ms",
         f"≤ {GOALS['p99_ms']:g} ms", "✓" if ours["p99_ms"] <= GOALS["p99_ms"] else "✗"],
        ["HTTP p99, sequential", f"{http['sequential']['p99_ms']:.2f} ms",
         f"≤ {GOALS['http_p99_ms']:g} ms",
         "✓" if http["sequential"]["p99_ms"] <= GOALS["http_p99_ms"] else "✗"],
        [f"HTTP requests/s, {CONNECTIONS} connections", f"{http['concurrent']['rps']:,.0f}",
         f"≥ {GOALS['rps']:,.0f}", "✓" if http["concurrent"]["rps"] >= GOALS["rps"] else "✗"],
        ["index build", f"{ours['build_s']:.1f} s", f"≤ {GOALS['build_s']:g} s",
         "✓" if ours["build_s"] <= GOALS["build_s"] else "✗"],
        ["index memory / item factor bytes", f"{memory:.2f}×", f"≤ {GOALS['index_memory']:g}×",
         "✓" if memory <= GOALS["index_memory"] else "✗"],
        ["server RSS / two factor tables", f"{rss:.2f}× ({http['rss_mib']:,.0f} MiB)",
         f"≤ {GOALS['server_rss']:g}×", "✓" if rss <= GOALS["server_rss"] else "✗"],
    ]
    if theirs:
        for target, run in sorted(runs.items()):
            # implicit's cheapest setting that reaches this recall, and whether any of its
            # settings beats matfact on both counts (higher recall at a lower p99).
            reaching = [r for r in theirs["rows"] if r["recall_mean"] >= run["recall_mean"]]
            cheapest = min(reaching, key=lambda r: r["p99_ms"]) if reaching else None
            beaten = any(r["recall_mean"] > run["recall_mean"] and r["p99_ms"] < run["p99_ms"]
                         for r in theirs["rows"])
            goals.append([
                f"against implicit's FaissModel (matfact calibrated to {target})",
                f"matfact recall {run['recall_mean']:.4f} at p99 {run['p99_ms']:.3f} ms; "
                + (f"implicit reaches it at nprobe {cheapest['nprobe']}, p99 "
                   f"{cheapest['p99_ms']:.3f} ms" if cheapest else "implicit never reaches it"),
                "p99 no worse at recall no lower",
                "✓" if not beaten and (cheapest is None
                                       or cheapest["p99_ms"] >= run["p99_ms"]) else "✗"])
    live = http["live"]
    goals.append(["a live item recommendable at the next request (the users whose exact "
                  "top-10 holds it)", f"{live['lists_with_it']} of {live['getters']}",
                  "> 0", "✓" if live["lists_with_it"] > 0 else "✗"])
    tables = [
        {"title": f"Approximate top-10 over {n_items:,} items "
                  f"({len(queries):,} query users)",
         "columns": ["library", "index", "build", "recall@10 mean", "recall@10 p5",
                     "p50", "p99"], "rows": index_rows,
         "note": f"Exact truth for the {len(queries):,} users: {truth_s:.1f} s "
                 f"(`recommend_codes`, every item scored). Model: "
                 f"{'; '.join(f'{k} {v:.1f} s' if isinstance(v, float) else f'{k} {v}' for k, v in made.items())}."},
        {"title": "Served over HTTP (`matfact serve --index approximate`)",
         "columns": ["phase", "requests", "connections", "p50", "p99", "requests/s",
                     "failures"],
         "rows": [[shape, f"{http[shape]['requests']:,}", str(http[shape]["connections"]),
                   f"{http[shape]['p50_ms']:.2f} ms", f"{http[shape]['p99_ms']:.2f} ms",
                   f"{http[shape]['rps']:,.0f}", str(http[shape]["failures"])]
                  for shape in ("sequential", "concurrent")],
         "note": f"Server start (load, index from the file's arrays, first /health): "
                 f"{http['start_s']:.1f} s; RSS {http['rss_start_mib']:,.0f} MiB after start, "
                 f"{http['rss_mib']:,.0f} MiB after the phases (factor tables "
                 f"{factor_bytes / 2**20:,.0f} MiB). Live item rated by {live['raters']} "
                 f"users: first request after the write "
                 f"{_fmt(live['first_request_ms'], '.2f')} ms (the index takes the item in)."},
        {"title": "Goals (issue 21)", "columns": ["goal", "measured", "target", "met"],
         "rows": goals},
    ]
    if batch is not None:
        tables += batch.get("tables", [])
    result = {
        "suite": "million",
        "title": "Catalogues of millions: approximate top-k, serving and exact batch scoring",
        "quick": quick, "environment": env,
        "protocol": PROTOCOL.replace("{implicit}", theirs["version"] if theirs else "(absent)")
        + ("\n" + batch["protocol"] if batch and batch.get("protocol") else ""),
        "tables": tables,
        "results": {"model": made, "truth_s": truth_s,
                    "matfact": {str(k): v for k, v in runs.items()}, "implicit": theirs,
                    "http": http, "batch": batch.get("results") if batch else None},
    }
    print_tables(result)
    return result
