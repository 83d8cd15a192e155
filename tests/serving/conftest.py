"""A real ``matfact serve`` process on a free loopback port, with a real SQLite log."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed")

API_KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``matfact serve`` as a subprocess; ``start`` waits for ``/health``."""

    def __init__(self, model: Path, db: Path | str, *, key: str | None = API_KEY,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.model, self.db, self.key = model, db, key
        self.args, self.env = tuple(args), dict(env or {})
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        env = {k: v for k, v in os.environ.items() if k != "MATFACT_API_KEY"}
        if self.key is not None:
            env["MATFACT_API_KEY"] = self.key
        env.update(self.env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "matfact", "-q", "serve", "--model", str(self.model),
             "--db", str(self.db), "--port", str(self.port), *self.args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # Drained all along: a server that logs a lot must never block on a full pipe.
        self._lines: collections.deque[str] = collections.deque(maxlen=2000)
        self._drain = threading.Thread(target=self._read_output, args=(self.process,),
                                       daemon=True)
        self._drain.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: "
                                   f"{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not answer /health in time")

    def kill(self) -> None:
        """kill -9: no shutdown handler runs."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> float:
        """SIGTERM, then wait for the exit (kill -9 after 30 s); the seconds it took."""
        started = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return time.monotonic() - started

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mib(self) -> float:
        """The server's resident memory now (``VmRSS`` of /proc/<pid>/status), in MiB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def _read_output(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self._lines.append(line.decode(errors="replace"))

    def output(self) -> str:
        """The last 2,000 lines the server wrote to stdout and stderr (complete once it exited)."""
        if self.process is not None and self.process.poll() is not None:
            self._drain.join(timeout=10)
        return "".join(self._lines)

    def client(self, key: str | bytes | None = None) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@pytest.fixture(scope="session")
def trained_model(ml100k_full, tmp_path_factory) -> Path:
    """BiasedMF on ML-100K (with titles), saved once."""
    import matfact

    path = tmp_path_factory.mktemp("served") / "model.zip"
    matfact.BiasedMF(n_factors=16, max_iter=10, random_state=0).fit(
        ml100k_full, progress=False).save(path)
    return path


@pytest.fixture
def model_copy(trained_model, tmp_path) -> Path:
    target = tmp_path / "model.zip"
    target.write_bytes(trained_model.read_bytes())
    return target


@pytest.fixture
def server(model_copy, tmp_path):
    running = Server(model_copy, tmp_path / "ratings.sqlite").start()
    yield running
    running.stop()


def _postgres_binaries() -> dict[str, str] | None:
    import glob
    import shutil

    found = {}
    for name in ("initdb", "postgres"):
        path = shutil.which(name) or next(iter(sorted(glob.glob(
            f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
        if path is None:
            return None
        found[name] = path
    return found


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on a free loopback port, for the session; skips if absent."""
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, postgres) on this machine")
    import shutil
    import tempfile

    # Not under pytest's temporary root: that is private to this user (0700), and the
    # server may have to run as another one.
    root = Path(tempfile.mkdtemp(prefix="matfact-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: run the server as the postgres user.
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the server")
        for path in (root, sockets):
            shutil.chown(path, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run([*prefix, binaries["initdb"], "-D", str(data), "-A", "trust",
                           "-U", "matfact", "--no-sync"], capture_output=True, text=True)
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr[-300:]}")
    port = free_port()
    server = subprocess.Popen([*prefix, binaries["postgres"], "-D", str(data), "-p", str(port),
                               "-k", str(sockets), "-c", "listen_addresses=127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    url = f"postgresql+psycopg://matfact@127.0.0.1:{port}/postgres"
    import psycopg

    while True:
        try:
            psycopg.connect(f"postgresql://matfact@127.0.0.1:{port}/postgres").close()
            break
        except psycopg.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.skip(f"PostgreSQL did not start: {server.stderr.read()[-300:]!r}")
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def fresh_database(postgres_url: str, name: str) -> str:
    """A new, empty database on the test server; its URL."""
    import psycopg

    base = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"
