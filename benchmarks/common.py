"""Shared machinery of the benchmark suites: data, timing, environment, results and tables."""

from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SUITES",
    "ROOT",
    "RESULTS_DIR",
    "DOCS_FILE",
    "PEER_PACKAGES",
    "BenchmarkSkipped",
    "Timing",
    "data_home",
    "load_ml100k",
    "timed",
    "OtherCpu",
    "wait_for_quiet",
    "environment",
    "write_results",
    "fmt_seconds",
    "fmt_ratio",
    "markdown_table",
    "print_tables",
]

#: Every suite, in page order; ``benchmarks.<name>`` defines ``run(quick: bool) -> dict``.
SUITES = ("rating", "topn", "speed", "als", "nmf", "svd", "selection", "coldstart", "hybrid",
          "bayesian", "onboarding", "replay", "serve_load", "dask_als", "implicit_defaults",
          "million")
#: The repository root (the directory holding ``benchmarks/`` and ``docs/``).
ROOT = Path(__file__).resolve().parent.parent
#: Default directory of the JSON results (gitignored: ``docs/benchmarks.md`` is the record).
RESULTS_DIR = ROOT / "benchmarks" / "results"
#: The page :mod:`benchmarks.report` regenerates.
DOCS_FILE = ROOT / "docs" / "benchmarks.md"
#: Where the real datasets live when ``MATFACT_DATA`` is unset (the Makefile's ``SHARED_DATA``).
DEFAULT_DATA_HOME = ROOT.parent / "shared" / "data"
#: Longest wait (seconds) for other processes to leave the CPUs before a timed measurement.
QUIET_WAIT_S = 60.0
#: Other processes count as quiet below this many cores' worth of CPU.
QUIET_CORES = 0.3
#: Distribution names of the peer libraries (the ``bench`` extra, plus LightFM).
PEER_PACKAGES = ("scikit-surprise", "implicit", "lightfm", "myfm", "pyspark")

_NUMBER = re.compile(r"[-+−]?[0-9]")


class BenchmarkSkipped(Exception):
    """A suite cannot run here (e.g. its dataset is absent); the message says why and what to do."""


# ------------------------------------------------------------------------------------ data
def data_home() -> Path:
    """The directory searched for dataset folders: ``$MATFACT_DATA``, else ``../shared/data``."""
    return Path(os.environ.get("MATFACT_DATA") or DEFAULT_DATA_HOME)


def load_ml100k():
    """MovieLens 100K as a :class:`matfact.Interactions`, in ``u.data`` order; never downloads.

    Returns
    -------
    Interactions
        100,000 ratings in [1, 5] of 943 users × 1,682 items, with timestamps.

    Raises
    ------
    BenchmarkSkipped
        If the files are not in :func:`data_home` (nor the matfact cache).
    """
    import matfact
    from matfact.exceptions import DatasetNotFoundError

    home = data_home()
    try:
        return matfact.load_dataset("ml-100k", data_home=home, download=False)
    except DatasetNotFoundError as exc:
        raise BenchmarkSkipped(
            f"MovieLens 100K is not available (MATFACT_DATA, else {DEFAULT_DATA_HOME}, "
            f"else matfact's cache), so the suite is skipped. {exc}"
        ) from None


# ------------------------------------------------------------------------------------ timing
@dataclass(frozen=True)
class Timing:
    """Wall-clock times (seconds, :func:`time.perf_counter`) of repeated calls.

    Attributes
    ----------
    times : tuple of float
        One entry per repeat, in call order.
    """

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median of :attr:`times`."""
        return statistics.median(self.times)

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "times_s": list(self.times)}


def timed(func: Callable[[], Any], repeats: int = 1) -> tuple[Timing, Any]:
    """Call ``func()`` ``repeats`` times, timing each call; garbage is collected before each.

    Parameters
    ----------
    func : callable
        Called without arguments.
    repeats : int, default=1
        Number of calls, >= 1.

    Returns
    -------
    timing : Timing
    result : object
        What the last call returned.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times = []
    result = None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return Timing(tuple(times)), result


# ------------------------------------------------------------------------------------ contention
def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine spent busy since boot (all cores), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system  # every thread of this process


class OtherCpu:
    """How many cores other processes kept busy, on average, since the meter was started.

    The machine's busy CPU time (``/proc/stat``) minus this process's own (all its
    threads), divided by the wall time: 0 on an otherwise idle machine, 1 when another
    job keeps one core busy. ``None`` where ``/proc/stat`` is unavailable.
    """

    def __init__(self) -> None:
        self._start = (time.perf_counter(), _busy_cpu_seconds(), _own_cpu_seconds())

    def cores(self) -> float | None:
        wall0, busy0, own0 = self._start
        busy = _busy_cpu_seconds()
        if busy is None or busy0 is None:
            return None
        wall = time.perf_counter() - wall0
        return max(0.0, (busy - busy0 - (_own_cpu_seconds() - own0)) / wall) if wall > 0 else 0.0


def wait_for_quiet(max_wait: float = QUIET_WAIT_S, cores: float = QUIET_CORES,
                   check: float = 1.0) -> dict[str, Any]:
    """Sleep until other processes use less than ``cores`` cores over ``check`` seconds.

    Gives up after ``max_wait`` seconds (0: one check, no waiting). Returns ``waited_s``,
    ``quiet`` (whether the threshold was reached) and ``others_cores`` (the last check).
    """
    start = time.perf_counter()
    while True:
        meter = OtherCpu()
        time.sleep(check)
        others = meter.cores()
        waited = time.perf_counter() - start
        if others is None or others < cores or waited >= max_wait:
            return {"waited_s": waited, "quiet": others is None or others < cores,
                    "others_cores": others}


# ------------------------------------------------------------------------------------ environment
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _blas() -> list[str]:
    try:
        import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, so it is listed too)
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed"]
    described = []
    for pool in threadpool_info():
        if pool.get("user_api") != "blas":
            continue
        # the library that ships it, from e.g. .../site-packages/numpy.libs/libscipy_openblas.so
        owner = Path(pool.get("filepath", "")).parent.name.removesuffix(".libs")
        text = (f"{owner}: {pool.get('internal_api')} {pool.get('version') or '?'} "
                f"({pool.get('threading_layer', '?')}, {pool.get('num_threads')} threads, "
                f"{pool.get('architecture', '?')})")
        if text not in described:
            described.append(text)
    return described or ["no BLAS found by threadpoolctl"]


def _git_revision() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.strip() + (" + uncommitted changes" if dirty.strip() else "")


def environment() -> dict[str, Any]:
    """Describe the machine and software a suite runs on.

    Returns
    -------
    dict
        ``date`` (UTC, ISO 8601), ``cpu``, ``cores`` (logical CPUs, and those this
        process may use), ``load_average`` (1/5/15 min, at capture), ``platform``,
        ``python``, versions of numpy/scipy/pandas/numba/matfact and of every peer in
        :data:`PEER_PACKAGES`, ``blas`` (threadpoolctl's view) and ``matfact_git``.
    """
    import matfact

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable",
        "load_average": load,
        "platform": platform.platform(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "versions": {
            "matfact": matfact.__version__,
            "numpy": np.__version__,
            **{name: _version(name) for name in ("scipy", "pandas", "numba")},
            **{name: _version(name) for name in PEER_PACKAGES},
        },
        "blas": _blas(),
        "matfact_git": _git_revision(),
        "argv": sys.argv[1:],
    }


# ------------------------------------------------------------------------------------ results
def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_results(result: dict[str, Any], out_dir: str | os.PathLike = RESULTS_DIR) -> Path:
    """Write a suite's result to ``<out_dir>/<suite>.json`` (``<suite>-quick.json`` if quick).

    Parameters
    ----------
    result : dict
        What the suite's ``run`` returned; needs ``suite`` and ``quick``.
    out_dir : path-like, default=RESULTS_DIR

    Returns
    -------
    Path
        The file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{result['suite']}{'-quick' if result['quick'] else ''}.json"
    path.write_text(json.dumps(result, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ formatting
def fmt_seconds(seconds: float | None) -> str:
    """A duration with three significant figures: ``"16.8 ms"``, ``"18.0 ms"``, ``"1.23 s"``."""
    if seconds is None:
        return "—"
    for scale, unit in ((1e6, "µs"), (1e3, "ms")):
        if float(f"{seconds * scale:.3g}") < 1000:
            return f"{seconds * scale:#.3g}".rstrip(".") + f" {unit}"
    return (f"{seconds:#.3g}".rstrip(".") if seconds < 999.5 else f"{seconds:.0f}") + " s"


def fmt_ratio(ratio: float | None) -> str:
    """A ratio such as ``"8.53×"`` or ``"11.8×"`` (two decimals below 10, one above)."""
    if ratio is None or not np.isfinite(ratio):
        return "—"
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.1f}×"


def _is_number(cell: str) -> bool:
    return bool(_NUMBER.match(cell))


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table, padded so it also reads well as plain text.

    A column is right-aligned when its non-empty cells (other than "—") all start with a
    number, left-aligned otherwise.
    """
    cells = [[str(c) for c in columns]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    right = [all(_is_number(row[i]) for row in cells[1:] if row[i] not in ("", "—"))
             and any(row[i] not in ("", "—") for row in cells[1:])
             for i in range(len(columns))]

    def line(row: Sequence[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w)
                  for c, w, r in zip(row, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def print_tables(result: dict[str, Any]) -> None:
    """Print a suite's tables (and their notes) to stdout."""
    print(f"\n## {result['title']}" + ("  [quick run]" if result["quick"] else ""))
    for table in result["tables"]:
        print(f"\n### {table['title']}\n")
        print(markdown_table(table["columns"], table["rows"]))
        if table.get("note"):
            print(f"\n{table['note']}")
    print()
