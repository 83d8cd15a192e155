"""Release readiness: one version, a changelog, and a wheel that works on its own.

The slow test builds the sdist and the wheel with ``python -m build`` into a
temporary directory, runs ``twine check`` on both, installs the wheel alone into
a fresh virtual environment (dependencies from the package index) and runs the
README's first Python block there, outside the source tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import matfact
from tests.conftest import REPO


def _readme_quickstart() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"),
                        flags=re.S)
    assert blocks, "the README lost its Python quickstart"
    return blocks[0]


def test_the_version_has_one_source():
    tomllib = pytest.importorskip("tomllib", reason="Python < 3.11 has no tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    attr = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "matfact._version.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", matfact.__version__)
    # No other file spells the version out (the changelog names releases, by design).
    spelled = [path for path in (REPO / "src").rglob("*.py")
               if f'"{matfact.__version__}"' in path.read_text(encoding="utf-8")]
    assert spelled == [REPO / "src" / "matfact" / "_version.py"]


def test_the_changelog_covers_this_version():
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[?{re.escape(matfact.__version__)}\]?", text, flags=re.M), \
        f"CHANGELOG.md has no section for {matfact.__version__}"


@pytest.mark.slow
def test_the_wheel_alone_runs_the_readme_quickstart(data_dir, tmp_path):
    pytest.importorskip("build", reason="the dev extra (build) is not installed")
    pytest.importorskip("twine", reason="the dev extra (twine) is not installed")
    if not (data_dir / "ml-100k" / "u.data").exists():
        pytest.skip("ML-100K absent")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=900)
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    assert f"matfact-{matfact.__version__}" in wheels[0].name
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *wheels,
                            *sdists], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", str(wheels[0])],
                             capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = _readme_quickstart() + (
        "\nimport importlib.metadata, pathlib\n"
        "assert pathlib.Path(matfact.__file__).is_relative_to(pathlib.Path(__import__("
        "'sys').prefix)), matfact.__file__\n"
        "print('VERSION', matfact.__version__, importlib.metadata.version('matfact'))\n"
        "print('RMSE', round(matfact.evaluate(model, test)['rmse'], 4))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MATFACT_DATA"] = str(data_dir)
    run = subprocess.run([str(python), "-c", script], cwd=work, env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"VERSION {matfact.__version__} {matfact.__version__}" in run.stdout
    assert "RMSE 0.9395" in run.stdout  # the figure the README quotes
    assert (work / "model.zip").exists()
