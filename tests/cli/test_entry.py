"""``matfact`` itself: help, version, and errors in one line with an exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import matfact
from matfact import cli
from matfact.cli import main
from tests.cli.helpers import (
    COMMANDS,
    assert_one_error_line,
    run,
)
from tests.conftest import REPO


# ------------------------------------------------------------------------------ help
def test_help_in_a_real_subprocess():
    result = subprocess.run([sys.executable, "-m", "matfact", "--help"], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: matfact")
    for command in COMMANDS:
        assert command in result.stdout
    assert result.stderr == ""


def test_help_imports_no_plotting_or_data_code():
    code = ("import sys\nfrom matfact.cli import main\nmain(['train', '--help'])\n"
            "print(sorted(m for m in ('matplotlib', 'matfact.datasets', 'matfact.plots') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_building_the_parser_imports_nothing_heavy():
    heavy = ("numpy", "pandas", "scipy", "numba", "sklearn", "matplotlib", "fastapi",
             "pyarrow", "matfact.data", "matfact.models", "matfact.apps")
    code = ("import sys\nfrom matfact.cli import build_parser\nbuild_parser()\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_matfact_help_imports_no_numba_pandas_or_sklearn():
    # Issue 20: start-up. `python -m matfact --help` runs the real entry point; what it
    # imports is checked at exit (no timing: the modules are what cost the seconds).
    heavy = ("numba", "pandas", "sklearn", "scipy", "matfact.models", "matfact.data")
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: print(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
            "import runpy\nsys.argv = ['matfact', '--help']\n"
            "runpy.run_module('matfact', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert "usage: matfact" in result.stdout, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name, others", [
    ("BiasedMF", ("matfact.models.nmf", "matfact.models.svd", "matfact.models.als")),
    ("PureSVD", ("matfact.models.nmf", "matfact.models.truncated_svd", "matfact.models.sgd")),
])
def test_recommend_from_a_model_file_imports_no_sklearn_or_other_models(tmp_path, name,
                                                                          others):
    # Issue 20: `matfact recommend` loads one model and answers; scikit-learn alone
    # took ~0.5 s of its start-up, and only NMF / TruncatedSVD need it.
    import matfact

    data = matfact.Interactions.from_arrays([1, 1, 2, 3], [1, 2, 1, 2], [4.0, 3.0, 5.0, 2.0])
    getattr(matfact, name)(n_factors=1).fit(data, progress=False).save(tmp_path / "m.zip")
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print(sorted(m for m in sys.modules if m == 'sklearn' or "
            f"m in {others!r})))\n"
            "import runpy\n"
            f"sys.argv = ['matfact', 'recommend', '--model', {str(tmp_path / 'm.zip')!r}, "
            "'--user', '1', '-n', '2']\n"
            "runpy.run_module('matfact', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_nothing_but_python_m_matfact_imports_the_cli():
    import ast

    src = REPO / "src" / "matfact"
    importers = []
    for path in src.rglob("*.py"):
        if path.relative_to(src).parts[0] in ("cli", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{alias.name}" for alias in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(name == "matfact.cli" or name.startswith("matfact.cli.") for name in names):
                importers.append(f"{path.relative_to(src)}:{node.lineno}")
    assert not importers


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(capsys, command):
    code, out, err = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: matfact {command}")
    assert "--quiet" in out
    assert err == ""


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.strip() == f"matfact {matfact.__version__}"


def test_no_command_is_a_usage_error(capsys):
    code, out, err = run(capsys)
    assert code == 2
    assert_one_error_line(err)
    assert out == ""


# ------------------------------------------------------------------------------ errors
def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"\x00\xff\xfe\x01 not a csv \x80\x81")
    return path


def _bad_ratings(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,rating\n1,2,five\n")
    return path


@pytest.mark.parametrize("argv,status", [
    (["train", "--data", "{csv}", "--model", "nosuchmodel", "--out", "{tmp}/m.zip"], 2),
    (["train", "--data", "{tmp}/missing.csv", "--out", "{tmp}/m.zip"], 1),
    (["train", "--data", "{garbage}", "--out", "{tmp}/m.zip"], 1),
    (["train", "--data", "{bad}", "--out", "{tmp}/m.zip"], 1),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "reg_user"], 2),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "nope=1"], 2),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "reg_user=-1"], 1),
    (["train", "--data", "{csv}", "--out", "{tmp}/m.zip", "--param", "max_iter=ten"], 1),
    (["train", "--data", "{csv}"], 2),
    (["evaluate", "--data", "{csv}", "--model", "{tmp}/missing.zip"], 1),
    (["evaluate", "--data", "{csv}", "--model", "baseline", "--metrics", "bogus@3"], 1),
    (["evaluate", "--data", "{csv}", "--model", "baseline", "--split", "sideways"], 2),
    (["evaluate", "--data", "{csv}", "--model", "popularity", "--metrics", "rmse"], 1),
    (["recommend", "--model", "{tmp}/missing.zip", "--user", "1"], 1),
    (["recommend", "--model", "{garbage}", "--user", "1"], 1),
    (["bogus-command"], 2),
])
def test_errors_print_one_line_and_exit_nonzero(capsys, tmp_path, comma_csv, argv, status):
    names = {"csv": comma_csv, "tmp": tmp_path, "garbage": _garbage(tmp_path),
             "bad": _bad_ratings(tmp_path)}
    code, out, err = run(capsys, "--quiet", *(arg.format(**names) for arg in argv))
    assert code == status, err
    assert_one_error_line(err)
    assert err.count("\n") == 1  # --quiet: nothing but the error
    assert out == ""


def test_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MATFACT_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["train", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "m")])


def test_keyboard_interrupt_is_one_line(capsys, monkeypatch, comma_csv, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.data, "read_interactions", interrupted)
    code, _, err = run(capsys, "train", "--data", comma_csv, "--out", tmp_path / "m")
    assert code == 130
    assert_one_error_line(err)


def test_unexpected_errors_are_one_line_too(capsys, monkeypatch, comma_csv, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli.data, "read_interactions", broken)
    code, _, err = run(capsys, "train", "--data", comma_csv, "--out", tmp_path / "m")
    assert code == 1
    assert_one_error_line(err)
    assert "boom" in err and "MATFACT_DEBUG" in err


# ------------------------------------------------------------------------------ progress
def test_progress_is_plain_lines_when_stderr_is_no_terminal(capsys, comma_csv, tmp_path):
    # Issue 20: a log of a long run shows it advancing, without bar fragments.
    code, _, err = run(capsys, "train", "--data", comma_csv, "--model", "biased_mf",
                       "--param", "max_iter=3", "--out", tmp_path / "m.zip")
    assert code == 0
    assert "BiasedMF: iteration 1/3 (train=" in err and "BiasedMF: iteration 3/3" in err
    assert "\r" not in err
    code, _, err = run(capsys, "train", "--data", comma_csv, "--model", "biased_mf",
                       "--param", "max_iter=3", "--out", tmp_path / "m.zip", "-q")
    assert code == 0 and "iteration" not in err
