"""Issue 19's model-file figure: crafted files are refused, in bounded memory and time.

From real saved models of every class (and the variants that carry more state),
:mod:`tests.hardening._model_file_corpus` crafts files an attacker would write:
inconsistent and inflated shapes, decompression bombs (a ~1 MB member declaring
1 GiB), lying zip entries, deep JSON, huge numbers, the encryption flag,
non-finite values, wrong dtypes, inverted scales, truncated members, checksum
mismatches, duplicate members, path-traversal names. Every one must raise
:class:`~matfact.exceptions.ModelFormatError`.

The fast sample (``make test``) loads a few of each kind in this process. The
slow test (``make test-slow``) loads ≥ 1,000 in fresh subprocesses, each load's
peak RSS measured above the RSS just before it (VmHWM reset through
``/proc/self/clear_refs``), and asserts the issue's acceptance figures: every
file refused, peak RSS ≤ 100 MiB above the baseline, ≤ 1 s per file.
``MATFACT_MODEL_FILES_REPORT=path`` writes the figures as JSON (for
docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import matfact
from matfact.exceptions import ModelFormatError
from tests.hardening._cases import CASES, CRASHES, REFUSED, check
from tests.hardening._model_file_corpus import CRAFTS, base_models, corpus

AREA = "crafted model files"
FAST_CASES = 2 * len(CRAFTS)
SLOW_CASES = 1_050
BATCHES = 3
MAX_PEAK = 100 * 2**20      # bytes of RSS above the baseline, per refused load
MAX_SECONDS = 1.0           # per refused load
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, bytes]:
    return base_models(tmp_path_factory.mktemp("bases"), large=True)


def test_every_base_model_loads(bases, tmp_path):
    # The corpus edits working files: each base must load before it is broken.
    for label, blob in bases.items():
        path = tmp_path / f"{label}.zip"
        path.write_bytes(blob)
        matfact.load(path)


def test_fast_sample_of_crafted_files_is_refused(bases, tmp_path):
    path = tmp_path / "crafted.zip"
    for description, blob in corpus(bases, FAST_CASES, big=False):
        path.write_bytes(blob)
        _, error = check(AREA, lambda: matfact.load(path))
        assert isinstance(error, ModelFormatError), f"{description}: {error!r}"


@pytest.mark.slow
def test_crafted_model_files_are_refused_in_bounded_memory_and_time(bases, tmp_path):
    warm = []
    for label, blob in bases.items():
        path = tmp_path / f"base-{label}.zip"
        path.write_bytes(blob)
        warm.append(str(path))
    files, descriptions = [], {}
    for description, blob in corpus(bases, SLOW_CASES, big=True):
        path = tmp_path / f"case-{len(files):04d}.zip"
        path.write_bytes(blob)
        files.append(str(path))
        descriptions[str(path)] = description
    results = []
    for batch in range(BATCHES):
        manifest = tmp_path / f"batch-{batch}.json"
        manifest.write_text(json.dumps({"files": files[batch::BATCHES], "warm": warm}))
        # A fresh interpreter per batch: its baseline is matfact imported and the
        # base models loaded once (compiled kernels, caches), nothing of this process.
        run = subprocess.run([sys.executable, "-m", "tests.hardening._model_file_corpus",
                              str(manifest)], cwd=ROOT, capture_output=True, text=True,
                             timeout=1800, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert run.returncode == 0, run.stderr[-3000:]
        results += json.loads(run.stdout)

    refused = [r for r in results if r["outcome"] == "ModelFormatError"]
    others = [r for r in results if r["outcome"] != "ModelFormatError"]
    CASES[AREA] += len(results)
    REFUSED[AREA] += len(refused)
    CRASHES[AREA] += len(others)
    figures = {
        "files": len(results),
        "refused": len(refused),
        "bases": sorted(bases),
        "crafts": [craft.__name__ for craft in CRAFTS],
        "max_peak_above_baseline_mib": max(r["peak_above_baseline"] for r in results) / 2**20,
        "max_peak_above_warm_process_mib": max(r["peak_above_start"] for r in results) / 2**20,
        "warm_process_rss_mib": sorted({round(r["start"] / 2**20, 1) for r in results}),
        "max_seconds": max(r["seconds"] for r in results),
        "median_seconds": sorted(r["seconds"] for r in results)[len(results) // 2],
        "heaviest": sorted(({"case": descriptions[r["file"]],
                             "peak_above_baseline_mib": r["peak_above_baseline"] / 2**20,
                             "seconds": r["seconds"]} for r in results),
                           key=lambda r: -r["peak_above_baseline_mib"])[:5],
        "slowest": sorted(({"case": descriptions[r["file"]], "seconds": r["seconds"]}
                           for r in results), key=lambda r: -r["seconds"])[:5],
    }
    print(json.dumps(figures, indent=1))
    report = os.environ.get("MATFACT_MODEL_FILES_REPORT")
    if report:
        Path(report).write_text(json.dumps(figures, indent=1), encoding="utf-8")

    assert len(results) >= 1_000
    assert not others, [(descriptions[r["file"]], r["outcome"], r["message"])
                        for r in others[:10]]
    heavy = [r for r in results
             if max(r["peak_above_baseline"], r["peak_above_start"]) > MAX_PEAK]
    assert not heavy, [(descriptions[r["file"]], r["peak_above_baseline"]) for r in heavy]
    slow = [r for r in results if r["seconds"] > MAX_SECONDS]
    assert not slow, [(descriptions[r["file"]], r["seconds"]) for r in slow]
