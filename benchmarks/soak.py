"""Soak test of ``matfact serve`` and the peak memory of a 30M-rating fit (``make soak``).

Two bounded runs, each in its own process so their memory is measured apart:

``soak``
    A real ``matfact serve`` on 127.0.0.1 (BiasedMF on ML-100K, SQLite log) for
    ``--minutes`` (10 by default). Client threads send a fixed mix of valid
    requests — top-10 recommendations (70 %), ``POST /predict`` (10 %), anonymous
    ``POST /recommendations`` (10 %) and ``POST /ratings`` (10 %, acknowledged
    writes) — at a bounded total rate. Once a minute ``matfact retrain`` refits the
    model file from the data plus the log and ``POST /admin/reload`` hot-swaps it.
    The server's RSS is sampled every few seconds. Every request must answer 200:
    anything else (or a transport error) is an error. Reported: requests, errors,
    p50/p99 latency per endpoint and overall, reloads, RSS at start (after warm-up),
    end and max, and the RSS trend (least-squares slope, MB per minute, over the whole run and
    over its second half), with every sample in the JSON.

``fit``
    ``make_synthetic`` draws ``--ratings`` (30M) ratings in a child process, which
    then resets its peak-RSS counter (``/proc/self/clear_refs``) and fits
    ``BiasedMF``; its ``VmHWM`` during the fit is compared with the bytes of the
    input arrays (user codes, item codes, ratings).

Run: ``python -m benchmarks.soak`` (both), ``--minutes 1`` for a short run,
``--only soak|fit``, ``--json PATH`` to keep the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

API_KEY = "soak-key-0123456789"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _start_server(model: Path, db: Path, port: int) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "MATFACT_API_KEY": API_KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "matfact", "-q", "serve", "--model", str(model), "--db", str(db),
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not answer /health in 120 s")


class _Client(threading.Thread):
    """One keep-alive connection sending the request mix at ``rate`` requests/s."""

    def __init__(self, url: str, users: list, items: list, rate: float, stop: threading.Event,
                 seed: int) -> None:
        super().__init__(daemon=True)
        self.url, self.users, self.items, self.rate, self.stop = url, users, items, rate, stop
        self.random = random.Random(seed)
        self.latency: dict[str, list[float]] = {}
        self.errors: list[str] = []

    def _request(self, client: Any) -> tuple[str, Any]:
        pick, r = self.random.random(), self.random
        if pick < 0.7:
            user = r.choice(self.users)
            return "GET /users/{user}/recommendations", lambda: client.get(
                f"/users/{user}/recommendations", params={"n": 10})
        if pick < 0.8:
            pairs = {"users": r.choices(self.users, k=20), "items": r.choices(self.items, k=20)}
            return "POST /predict", lambda: client.post("/predict", json=pairs)
        if pick < 0.9:
            history = {"items": r.sample(self.items, 5), "ratings": [5, 4, 4, 3, 5], "n": 10}
            return "POST /recommendations", lambda: client.post("/recommendations", json=history)
        rating = {"ratings": [{"user": r.choice(self.users), "item": r.choice(self.items),
                               "rating": r.randint(1, 5)}]}
        return "POST /ratings", lambda: client.post("/ratings", json=rating,
                                                    headers={"X-API-Key": API_KEY})

    def run(self) -> None:
        import httpx

        interval = 1.0 / self.rate
        with httpx.Client(base_url=self.url, timeout=30) as client:
            next_at = time.perf_counter()
            while not self.stop.is_set():
                name, send = self._request(client)
                start = time.perf_counter()
                try:
                    response = send()
                    if response.status_code != 200:
                        self.errors.append(f"{name}: {response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.errors.append(f"{name}: {exc!r}")
                self.latency.setdefault(name, []).append(time.perf_counter() - start)
                next_at += interval
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                else:
                    next_at = time.perf_counter()  # behind: do not burst to catch up


def soak(minutes: float, rate: float, threads: int, sample_every: float = 5.0) -> dict:
    """The soak run; returns its figures."""
    import httpx
    import psutil

    import matfact

    work = Path(tempfile.mkdtemp(prefix="matfact-soak-"))
    data = matfact.load_dataset("ml-100k")
    model_path, db = work / "model.zip", work / "ratings.sqlite"
    # Ten epochs: the minute's retrain must take seconds, not the whole minute.
    matfact.BiasedMF(n_factors=32, max_iter=10, random_state=0).fit(
        data, progress=False).save(model_path)
    users, items = data.user_ids.tolist(), data.item_ids.tolist()
    from benchmarks.serve_load import _free_port

    port = _free_port()
    server = _start_server(model_path, db, port)
    url = f"http://127.0.0.1:{port}"
    process = psutil.Process(server.pid)
    rss: list[tuple[float, float]] = []
    reloads: list[dict] = []
    stop = threading.Event()
    clients = [_Client(url, users, items, rate / threads, stop, seed) for seed in range(threads)]
    try:
        with httpx.Client(base_url=url, timeout=30) as warm:  # warm-up: every route once
            for user in users[:200]:
                warm.get(f"/users/{user}/recommendations")
        time.sleep(2)
        start = time.monotonic()
        for client in clients:
            client.start()
        next_reload = start + 60
        next_sample = start
        while time.monotonic() - start < minutes * 60:
            now = time.monotonic()
            if now >= next_sample:
                rss.append(((now - start) / 60, process.memory_info().rss / 2**20))
                next_sample += sample_every
            if now >= next_reload:
                reloads.append(_retrain_and_reload(url, db, model_path))
                next_reload += 60
            time.sleep(0.2)
        stop.set()
        for client in clients:
            client.join()
        rss.append(((time.monotonic() - start) / 60, process.memory_info().rss / 2**20))
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    latency: dict[str, list[float]] = {}
    for client in clients:
        for name, values in client.latency.items():
            latency.setdefault(name, []).extend(values)
    everything = [v for values in latency.values() for v in values]
    errors = [e for client in clients for e in client.errors]
    errors += [f"reload: {r}" for r in reloads if not r["ok"]]
    minutes_axis, mb = zip(*rss, strict=True)
    slope = (statistics.linear_regression(minutes_axis, mb).slope if len(rss) > 2 else 0.0)
    # Growth that levels off (allocator arenas filled by the first reloads) shows as a
    # second-half slope near zero; a leak keeps the same slope in both halves.
    half = len(rss) // 2
    late = (statistics.linear_regression(minutes_axis[half:], mb[half:]).slope
            if len(rss) - half > 2 else 0.0)
    return {
        "minutes": round(elapsed / 60, 2), "requests": len(everything),
        "requests_per_s": round(len(everything) / elapsed, 1), "errors": len(errors),
        "first_errors": errors[:10], "p50_ms": round(1000 * _percentile(everything, 50), 2),
        "p99_ms": round(1000 * _percentile(everything, 99), 2),
        "by_endpoint": {name: {"requests": len(v), "p50_ms": round(1000 * _percentile(v, 50), 2),
                               "p99_ms": round(1000 * _percentile(v, 99), 2)}
                        for name, v in sorted(latency.items())},
        "reloads": len(reloads), "reloads_ok": sum(r["ok"] for r in reloads),
        "retrain_s": [r["retrain_s"] for r in reloads],
        "rss_mb": {"start": round(mb[0], 1), "end": round(mb[-1], 1), "max": round(max(mb), 1),
                   "slope_mb_per_min": round(slope, 2),
                   "second_half_slope_mb_per_min": round(late, 2), "samples": len(mb),
                   "series": [[round(t, 2), round(v, 1)] for t, v in rss]},
    }


def _retrain_and_reload(url: str, db: Path, model: Path) -> dict:
    import httpx

    start = time.monotonic()
    retrain = subprocess.run([sys.executable, "-m", "matfact", "-q", "retrain", "--data",
                              "ml-100k", "--db", str(db), "--model", str(model)],
                             capture_output=True, text=True, timeout=600)
    took = round(time.monotonic() - start, 1)
    if retrain.returncode != 0:
        return {"ok": False, "retrain_s": took, "error": retrain.stderr[-500:]}
    response = httpx.post(f"{url}/admin/reload", headers={"X-API-Key": API_KEY}, timeout=120)
    return {"ok": response.status_code == 200, "retrain_s": took,
            "error": None if response.status_code == 200 else response.text[:300]}


_FIT_CHILD = r"""
import json, sys, time
import numpy as np
import matfact

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
n_ratings, n_users, n_items = map(int, sys.argv[1:4])
baseline = status("VmRSS")
data = matfact.make_synthetic(n_users, n_items, n_ratings, random_state=0)
inputs = data.user_codes.nbytes + data.item_codes.nbytes + data.ratings.nbytes
generation_peak = status("VmHWM")
# Load the kernels first (numba/LLVM code, ~100 MB), so the peak below is the fit's data.
small = matfact.make_synthetic(200, 100, 2000, random_state=0)
matfact.BiasedMF(n_factors=32, max_iter=2, random_state=0, n_threads=2).fit(small,
                                                                            progress=False)
del small
# Count the fit alone: reset the peak to the current RSS (Linux >= 4.0).
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before_fit = status("VmRSS")
start = time.perf_counter()
matfact.BiasedMF(n_factors=32, max_iter=2, random_state=0, n_threads=2).fit(data,
                                                                            progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"ratings": data.nnz, "users": n_users, "items": n_items,
                  "input_bytes": inputs, "baseline_rss": baseline,
                  "rss_before_fit": before_fit, "generation_peak": generation_peak,
                  "fit_peak": status("VmHWM"), "fit_seconds": round(seconds, 1)}))
"""


def fit_peak(n_ratings: int) -> dict:
    """Peak RSS of a BiasedMF fit on ``n_ratings`` synthetic ratings, in a child process."""
    n_users, n_items = n_ratings // 100, max(n_ratings // 600, 100)
    out = subprocess.run([sys.executable, "-c", _FIT_CHILD, str(n_ratings), str(n_users),
                          str(n_items)], capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "NUMBA_NUM_THREADS": "2"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    mb = {k: round(v / 2**20, 1) for k, v in figures.items() if k.endswith(("_rss", "_peak",
                                                                            "_bytes", "_fit"))}
    figures["mb"] = mb
    # The fit's own memory: its peak above what the process held when it started.
    figures["fit_peak_over_inputs"] = round(figures["fit_peak"] / figures["input_bytes"], 2)
    figures["fit_extra_over_inputs"] = round(
        (figures["fit_peak"] - figures["rss_before_fit"]) / figures["input_bytes"], 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="total requests per second the clients aim at (default 200)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--ratings", type=int, default=30_000_000,
                        help="ratings of the memory-measured fit (default 30M)")
    parser.add_argument("--only", choices=["soak", "fit"], help="run one of the two")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.only in (None, "soak"):
        results["soak"] = soak(args.minutes, args.rate, args.threads)
        print(json.dumps({"soak": results["soak"]}, indent=1), flush=True)
    if args.only in (None, "fit"):
        results["fit"] = fit_peak(args.ratings)
        print(json.dumps({"fit": results["fit"]}, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    failed = ("soak" in results and results["soak"]["errors"] > 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
