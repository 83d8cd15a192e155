"""The README quickstart runs as written; `import matfact` stays light; benchmarks smoke-run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_readme_quickstart_runs(data_dir, tmp_path, monkeypatch):
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    monkeypatch.setenv("MATFACT_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(REPO / "README.md")
    assert blocks, "the README lost its Python quickstart"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert round(namespace["matfact"].evaluate(namespace["model"], namespace["test"])["rmse"],
                 4) == 0.9395  # the figure the README quotes
    assert namespace["ids"].shape == (5,)
    assert (tmp_path / "model.zip").exists()


def test_import_matfact_is_light():
    code = ("import sys, matfact; heavy = [m for m in ('numba', 'pandas', 'scipy', 'sklearn', "
            "'matplotlib') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"`import matfact` loaded {out.stdout.strip()}"


def _run_benchmarks(data_dir, tmp_path, *suites):
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", *suites, "--quick", "--no-docs", "--out",
         str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "MATFACT_DATA": str(data_dir)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_benchmarks_smoke(data_dir, tmp_path):
    result = _run_benchmarks(data_dir, tmp_path, "topn")
    assert "0.2142" in result.stdout  # Popularity NDCG@10 on the per-user split
    assert (tmp_path / "topn-quick.json").exists()


@pytest.mark.slow
def test_every_benchmark_suite_runs(data_dir, tmp_path):
    # The ALS suite times the peers themselves: it needs the `bench` extra (`make bench`).
    for peer in ("implicit", "surprise", "myfm"):
        pytest.importorskip(peer, reason=f"{peer} not installed (make bench installs the peers)")
    _run_benchmarks(data_dir, tmp_path, "all")
    written = {p.name for p in tmp_path.glob("*.json")}
    assert {"rating-quick.json", "topn-quick.json", "speed-quick.json"} <= written


#: Guide pages whose Python blocks run as they are, in order, on the real data.
RUNNABLE_PAGES = ("sgd.md", "als.md", "svd.md", "hybrid.md", "onboarding.md", "explanations.md")


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_guide_examples_run(page, data_dir, tmp_path, monkeypatch):
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    monkeypatch.setenv("MATFACT_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(REPO / "docs" / page)
    assert blocks, f"docs/{page} lost its examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, page, "exec"), namespace)  # noqa: S102 - our own docs


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_benchmark_page_draws_the_speed_ratios_beside_it(tmp_path):
    from benchmarks.common import SUITES
    from benchmarks.report import SPEED_FIGURE, speed_ratios, write_docs

    env = {"date": "2026-01-01", "cpu": "x", "cores": 2, "load_average": None,
           "platform": "p", "python": "3", "versions": {}, "blas": [], "matfact_git": "r"}
    results = tmp_path / "results"
    results.mkdir()
    for n, suite in enumerate(SUITES):
        table = {"title": "t", "columns": ["case", "peer", "speed ratio (peer / matfact)"],
                 "rows": [["a", "b", f"{n + 0.5:.2f}×"], ["c", "d", "—"], ["e", "f", "1.00×"]]}
        (results / f"{suite}.json").write_text(json.dumps(
            {"suite": suite, "title": suite, "environment": env, "protocol": "p",
             "tables": [table]}), encoding="utf-8")
    page = write_docs(results, tmp_path / "docs" / "benchmarks.md")
    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in results.glob("*.json")]
    assert sorted(v for _, v in speed_ratios(loaded)) == [n + 0.5 for n in range(len(SUITES))]
    assert (page.parent / SPEED_FIGURE).read_bytes()[:4] == b"\x89PNG"
    assert f"]({SPEED_FIGURE})" in page.read_text(encoding="utf-8")
