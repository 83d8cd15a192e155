"""Load test of ``matfact serve`` on loopback, with a light raw-socket asyncio client.

Bounded: each phase sends a fixed number of requests and stops. The server is the
real command (uvicorn with uvloop and httptools, one worker) in its own process;
the client is this process, on the same 2-core machine, so the figures include
the client. The client writes HTTP/1.1 requests on keep-alive connections and
reads each response by its Content-Length: no HTTP library in the way (httpx was
itself the bottleneck in the issue's measurements).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import matfact
from benchmarks.common import environment, load_ml100k, print_tables, wait_for_quiet

__all__ = ["run", "PROTOCOL"]

API_KEY = "bench-key-0123456789"
SEQUENTIAL = 3000
CONCURRENT = 20000
CONNECTIONS = 32
WRITES = 3000
WRITE_CONNECTIONS = 8
SYNTH_ITEMS, SYNTH_USERS, SYNTH_FACTORS = 20_000, 20_000, 64
GOALS = {"p99_ms": 2.0, "rps": 1500.0, "writes_per_s": 500.0, "explain_p99_ms": 3.0}
#: History items listed per recommended item in the explained phases (issue 22).
EXPLAIN = 3

PROTOCOL = f"""\
- Server: `matfact serve` (uvicorn, uvloop, httptools, one worker process) on 127.0.0.1 with a
  fresh SQLite log (WAL, `synchronous=FULL`); client: this process, raw asyncio sockets,
  HTTP/1.1 keep-alive, one request in flight per connection. Same 2-core machine.
- Models: `BiasedMF(n_factors={SYNTH_FACTORS})` fitted for 2 epochs on a synthetic
  {SYNTH_USERS:,} × {SYNTH_ITEMS:,} set (`make_synthetic`, 400,000 ratings) — the issue's
  20,000-item, k = 64 case — and `BiasedMF()` on ML-100K (1,682 items).
- Phases (after 300 warm-up requests, once the server has precomputed every user's top
  100): top-10 `GET /users/{{u}}/recommendations?n=10` for random known users, {SEQUENTIAL:,}
  sequential requests on one connection, then {CONCURRENT:,} over {CONNECTIONS} connections
  (answered from the precomputed lists); the same with `exclude_seen=false`, which the lists
  do not hold, so every request is scored (one matrix–vector product and a partition); the
  precomputed top 10 with `explain={EXPLAIN}` (issue 22: each of the 10 items explained by the
  user's history, one fold-in solve per request); `POST /predict` with 100 random pairs,
  same two shapes; `POST /ratings`, one rating per request, {WRITES:,} over
  {WRITE_CONNECTIONS} connections (each acknowledged after its commit and the user's update).
- Latency: from writing the request to reading the whole response, per request; p50/p99
  over the phase; requests/s = requests / phase wall time.
- Goals (synthetic 20,000-item model): top-10 p99 ≤ {GOALS['p99_ms']:g} ms sequential,
  ≥ {GOALS['rps']:,.0f} requests/s with {CONNECTIONS} connections; top-10 with
  `explain={EXPLAIN}` p99 ≤ {GOALS['explain_p99_ms']:g} ms sequential; rating writes
  ≥ {GOALS['writes_per_s']:,.0f}/s over {WRITE_CONNECTIONS} connections.
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(method: str, path: str, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {API_KEY}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _connection(port: int, requests: list[bytes], latencies: list[float],
                      failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            start = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                failures.append(status)
    finally:
        writer.close()


async def _phase(port: int, requests: list[bytes], connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[int] = []
    shares = [requests[i::connections] for i in range(connections)]
    start = time.perf_counter()
    await asyncio.gather(*(_connection(port, share, latencies, failures) for share in shares))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {"requests": len(requests), "connections": connections, "wall_s": wall,
            "rps": len(requests) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "failures": len(failures)}


def _serve(model_path: Path, db: Path, args: tuple[str, ...] = ()) -> tuple[subprocess.Popen,
                                                                         int]:
    """``matfact serve`` in its own process, once it accepts connections; ``(process, port)``."""
    port = _free_port()
    env = {**os.environ, "MATFACT_API_KEY": API_KEY}
    process = subprocess.Popen([sys.executable, "-m", "matfact", "-q", "serve", "--model",
                                str(model_path), "--db", str(db), "--port", str(port), *args],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode(errors="replace")) from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def _wait_for_lists(port: int, n_users: int, timeout: float = 300.0) -> None:
    """Until the server has precomputed every user's list (``/health``'s ``precomputed``)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            if json.load(response)["precomputed"] >= n_users * 0.99:  # ties are not kept
                return
        time.sleep(0.5)


def _measure(name: str, model: Any, workdir: Path, quick: bool) -> list[dict[str, Any]]:
    model_path = workdir / f"{name}.zip"
    model.save(model_path)
    process, port = _serve(model_path, workdir / f"{name}.sqlite")
    rng = np.random.default_rng(0)
    users = model.user_index_.ids
    items = model.item_index_.ids
    scale = 0.1 if quick else 1.0

    def recs(count: int) -> list[bytes]:
        return [_request("GET", f"/users/{u}/recommendations?n=10")
                for u in rng.choice(users, count)]

    def scored(count: int) -> list[bytes]:
        # Seen items kept: never from the precomputed lists, scored per request.
        return [_request("GET", f"/users/{u}/recommendations?n=10&exclude_seen=false")
                for u in rng.choice(users, count)]

    def explained(count: int) -> list[bytes]:
        # The precomputed lists, each item explained by the user's history (issue 22).
        return [_request("GET", f"/users/{u}/recommendations?n=10&explain={EXPLAIN}")
                for u in rng.choice(users, count)]

    def predicts(count: int) -> list[bytes]:
        return [_request("POST", "/predict", json.dumps(
            {"users": rng.choice(users, 100).tolist(),
             "items": rng.choice(items, 100).tolist()}).encode()) for _ in range(count)]

    def writes(count: int) -> list[bytes]:
        return [_request("POST", "/ratings", json.dumps({"ratings": [
            {"user": int(u), "item": int(i), "rating": float(r)}]}).encode())
            for u, i, r in zip(rng.choice(users, count), rng.choice(items, count),
                               rng.integers(1, 6, count), strict=True)]

    rows = []
    try:
        _wait_for_lists(port, len(users))
        asyncio.run(_phase(port, recs(300), 4))  # warm-up: compile, caches, connections
        plan = [("top-10", "sequential", recs, SEQUENTIAL, 1),
                ("top-10", "concurrent", recs, CONCURRENT, CONNECTIONS),
                ("top-10 scored per request", "sequential", scored, SEQUENTIAL, 1),
                ("top-10 scored per request", "concurrent", scored, CONCURRENT // 2,
                 CONNECTIONS),
                (f"top-10 explain={EXPLAIN}", "sequential", explained, SEQUENTIAL, 1),
                (f"top-10 explain={EXPLAIN}", "concurrent", explained, CONCURRENT // 4,
                 CONNECTIONS),
                ("predict 100 pairs", "sequential", predicts, SEQUENTIAL // 3, 1),
                ("predict 100 pairs", "concurrent", predicts, CONCURRENT // 4, CONNECTIONS),
                ("rating write", "concurrent", writes, WRITES, WRITE_CONNECTIONS)]
        for what, shape, make, count, connections in plan:
            requests = make(max(int(count * scale), connections))
            quiet = wait_for_quiet(max_wait=20)
            result = asyncio.run(_phase(port, requests, connections))
            result.update({"model": name, "endpoint": what, "shape": shape,
                           "others_cores": quiet["others_cores"]})
            print(f"  {name:28s} {what:18s} {shape:10s} {connections:2d} conn: "
                  f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                  f"{result['rps']:,.0f} req/s, failures {result['failures']}", flush=True)
            rows.append(result)
    finally:
        _stop(process)
    return rows


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (the server's graceful stop), then SIGKILL after 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _synthetic_model(quick: bool) -> Any:
    data = matfact.make_synthetic(SYNTH_USERS, SYNTH_ITEMS, 100_000 if quick else 400_000,
                                  random_state=0)
    return matfact.BiasedMF(n_factors=SYNTH_FACTORS, max_iter=2, random_state=0).fit(
        data, progress=False)


def _goal_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    synth = {(r["endpoint"], r["shape"]): r for r in rows if r["model"].startswith("synthetic")}
    checks = [
        ("top-10 p99, sequential", synth.get(("top-10", "sequential"), {}).get("p99_ms"),
         f"≤ {GOALS['p99_ms']:g} ms", lambda v: v <= GOALS["p99_ms"], "{:.2f} ms"),
        (f"top-10 requests/s, {CONNECTIONS} connections",
         synth.get(("top-10", "concurrent"), {}).get("rps"), f"≥ {GOALS['rps']:,.0f}",
         lambda v: v >= GOALS["rps"], "{:,.0f}"),
        (f"top-10 explain={EXPLAIN} p99, sequential",
         synth.get((f"top-10 explain={EXPLAIN}", "sequential"), {}).get("p99_ms"),
         f"≤ {GOALS['explain_p99_ms']:g} ms", lambda v: v <= GOALS["explain_p99_ms"],
         "{:.2f} ms"),
        (f"rating writes/s, {WRITE_CONNECTIONS} connections",
         synth.get(("rating write", "concurrent"), {}).get("rps"),
         f"≥ {GOALS['writes_per_s']:,.0f}", lambda v: v >= GOALS["writes_per_s"], "{:,.0f}"),
    ]
    return [[name, "—" if value is None else fmt.format(value), goal,
             "—" if value is None else ("✓" if ok(value) else "✗")]
            for name, value, goal, ok, fmt in checks]


def run(quick: bool = False) -> dict[str, Any]:
    """Load-test the service on the synthetic and ML-100K models; print the tables.

    Parameters
    ----------
    quick : bool, default=False
        A tenth of the requests and a smaller synthetic training set.

    Returns
    -------
    dict
    """
    env = environment()
    models = {f"synthetic {SYNTH_ITEMS:,} items, k={SYNTH_FACTORS}": _synthetic_model(quick),
              "ML-100K BiasedMF()": matfact.BiasedMF(random_state=0).fit(load_ml100k(),
                                                                         progress=False)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="matfact-serve-") as tmp:
        for n, (name, model) in enumerate(models.items()):
            workdir = Path(tmp) / str(n)
            workdir.mkdir()
            rows += _measure(name, model, workdir, quick)
    table = [[r["model"], r["endpoint"], r["shape"], str(r["connections"]),
              f"{r['p50_ms']:.2f} ms", f"{r['p99_ms']:.2f} ms", f"{r['rps']:,.0f}",
              str(r["failures"]),
              "—" if r["others_cores"] is None else f"{r['others_cores']:.2f}"] for r in rows]
    result = {
        "suite": "serve_load",
        "title": "Serving: latency and throughput of matfact serve on loopback",
        "quick": quick,
        "environment": env,
        "protocol": PROTOCOL,
        "tables": [
            {"title": "Requests (client included: raw asyncio sockets, same machine)",
             "columns": ["model", "endpoint", "shape", "connections", "p50", "p99",
                         "requests/s", "failures", "other processes' cores before"],
             "rows": table},
            {"title": "Goals (synthetic 20,000-item model)",
             "columns": ["goal", "measured", "target", "met"], "rows": _goal_rows(rows)},
        ],
        "results": {"rows": rows},
    }
    print_tables(result)
    return result
